//! DYNLOAD_DEBUG: what the loader does, in the line shapes of glibc's
//! LD_DEBUG where glibc has one, so that users can reuse their greps.

use std::fmt::Arguments;
use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

/// Debug categories (bit values as in glibc's `DL_DEBUG_*`).
pub(crate) const LIBS: u32 = 1 << 0;
pub(crate) const BINDINGS: u32 = 1 << 2;
pub(crate) const SYMBOLS: u32 = 1 << 3;
pub(crate) const VERSIONS: u32 = 1 << 4;
pub(crate) const RELOC: u32 = 1 << 5;
pub(crate) const FILES: u32 = 1 << 6;
pub(crate) const STATISTICS: u32 = 1 << 7;
pub(crate) const SCOPES: u32 = 1 << 9;
/// dynload's own: symbols an object joining the global scope defines a
/// second time (a bit glibc does not use).
pub(crate) const COLLISIONS: u32 = 1 << 12;

const CATEGORIES: &[(&str, u32, &str)] = &[
    ("libs", LIBS, "display library search paths"),
    ("reloc", RELOC, "display relocation processing"),
    ("files", FILES, "display progress for input file"),
    ("symbols", SYMBOLS, "display symbol table processing"),
    (
        "bindings",
        BINDINGS,
        "display information about symbol binding",
    ),
    ("versions", VERSIONS, "display version dependencies"),
    ("scopes", SCOPES, "display scope information"),
    ("statistics", STATISTICS, "display relocation statistics"),
    (
        "collisions",
        COLLISIONS,
        "display symbols an RTLD_GLOBAL load defines a second time in the global scope",
    ),
    // glibc's set: tests compare `all` with LD_DEBUG=all.
    (
        "all",
        LIBS | RELOC | FILES | SYMBOLS | BINDINGS | VERSIONS | SCOPES,
        "all previous options combined, except statistics and collisions",
    ),
];

static MASK: AtomicU32 = AtomicU32::new(0);
static OUTPUT: OnceLock<Mutex<Box<dyn Write + Send>>> = OnceLock::new();

/// Read DYNLOAD_DEBUG and DYNLOAD_DEBUG_OUTPUT (once).
pub(crate) fn init(spec: Option<&str>, output: Option<&std::ffi::OsStr>) {
    let Some(spec) = spec else { return };
    let mut mask = 0;
    for word in spec.split([',', ' ', ':']).filter(|w| !w.is_empty()) {
        if word == "help" {
            let mut text =
                String::from("Valid options for the DYNLOAD_DEBUG environment variable are:\n\n");
            for (name, _, help) in CATEGORIES {
                text.push_str(&format!("  {name:<10} {help}\n"));
            }
            text.push_str("\nTo direct the debugging output into a file instead of standard output\na filename can be specified using the DYNLOAD_DEBUG_OUTPUT environment variable.\n");
            let _ = std::io::stderr().write_all(text.as_bytes());
            continue;
        }
        match CATEGORIES.iter().find(|(n, _, _)| *n == word) {
            Some((_, bits, _)) => mask |= bits,
            None => {
                let _ = writeln!(
                    std::io::stderr(),
                    "warning: debug option `{word}' unknown; try DYNLOAD_DEBUG=help"
                );
            }
        }
    }
    let sink: Box<dyn Write + Send> = match output {
        Some(path) if !path.is_empty() => {
            let mut name = path.to_os_string();
            name.push(format!(".{}", std::process::id()));
            match std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&name)
            {
                Ok(f) => Box::new(f),
                Err(_) => Box::new(std::io::stderr()),
            }
        }
        _ => Box::new(std::io::stderr()),
    };
    let _ = OUTPUT.set(Mutex::new(sink));
    MASK.store(mask, Ordering::Relaxed);
}

#[inline]
pub(crate) fn enabled(category: u32) -> bool {
    MASK.load(Ordering::Relaxed) & category != 0
}

/// Print one message; each line gets glibc's "<pid>:\t" prefix.
pub(crate) fn print(args: Arguments<'_>) {
    let text = args.to_string();
    let pid = std::process::id();
    let mut out = String::with_capacity(text.len() + 16);
    for line in text.split_inclusive('\n') {
        out.push_str(&format!("{pid:>10}:\t{line}"));
    }
    if !out.ends_with('\n') {
        out.push('\n');
    }
    if let Some(sink) = OUTPUT.get() {
        if let Ok(mut w) = sink.lock() {
            let _ = w.write_all(out.as_bytes());
            let _ = w.flush();
        }
    }
}

/// `debug!(CATEGORY, "format", args...)`: print when the category is on.
macro_rules! debug {
    ($cat:expr, $($arg:tt)*) => {
        if $crate::debug::enabled($cat) {
            $crate::debug::print(format_args!($($arg)*));
        }
    };
}
pub(crate) use debug;
