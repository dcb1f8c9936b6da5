//! Output for people: colour only where it helps and only on a terminal.

use std::io::IsTerminal;

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    /// Colour when standard output is a terminal and NO_COLOR is unset.
    Auto,
    Always,
    Never,
}

/// `--json` and `--color`, shared by the explaining commands.
#[derive(Debug, Clone, clap::Args)]
pub struct OutputArgs {
    /// Print JSON instead of text (schemas "dynload-tree/1",
    /// "dynload-check/1", "dynload-why/1": see the README).
    #[arg(long)]
    pub json: bool,
    /// Colour the text output.
    #[arg(long, value_enum, default_value = "auto")]
    pub color: ColorChoice,
}

/// Colours for one run.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    on: bool,
}

impl Style {
    pub fn new(choice: ColorChoice) -> Style {
        let on = match choice {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                // (no-color.org: set and not empty.)
                std::io::stdout().is_terminal()
                    && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            }
        };
        Style { on }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    pub fn bold(&self, t: &str) -> String {
        self.paint("1", t)
    }
    pub fn red(&self, t: &str) -> String {
        self.paint("1;31", t)
    }
    pub fn yellow(&self, t: &str) -> String {
        self.paint("33", t)
    }
    pub fn green(&self, t: &str) -> String {
        self.paint("32", t)
    }
    pub fn cyan(&self, t: &str) -> String {
        self.paint("36", t)
    }
    pub fn dim(&self, t: &str) -> String {
        self.paint("2", t)
    }
}
