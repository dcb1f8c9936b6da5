//! The `dynload` command: run programs with dynload as their runtime
//! loader, and (later) explain dynamic linking.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, ExitCode};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "dynload",
    version,
    about = "A dynamic loader for Linux, written in Rust"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run PROGRAM with libdynload.so preloaded, so that its dlopen, dlsym,
    /// dlclose... go through dynload.
    ///
    /// Example: dynload run --debug files -- python3 -c 'import json'
    Run {
        /// DYNLOAD_DEBUG categories: libs, files, bindings, symbols, reloc,
        /// versions, scopes, statistics, all (comma-separated; "help" lists them).
        #[arg(long, value_name = "CATEGORIES")]
        debug: Option<String>,
        /// Write debug output to FILE.<pid> instead of standard error.
        #[arg(long, value_name = "FILE")]
        debug_output: Option<PathBuf>,
        /// The program and its arguments.
        #[arg(
            required = true,
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "PROGRAM"
        )]
        program: Vec<OsString>,
    },
}

/// libdynload.so: next to this executable (cargo puts both in target/<profile>/),
/// or where DYNLOAD_LIBRARY says.
fn libdynload() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("DYNLOAD_LIBRARY") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
    let lib = exe.with_file_name("libdynload.so");
    if lib.exists() {
        Ok(lib)
    } else {
        Err(format!(
            "{} not found; build it with `cargo build --release -p dynload-capi` (or set DYNLOAD_LIBRARY)",
            lib.display()
        ))
    }
}

fn run(
    debug: Option<String>,
    debug_output: Option<PathBuf>,
    program: Vec<OsString>,
) -> Result<(), String> {
    let lib = libdynload()?;
    let mut preload = OsString::from(lib.as_os_str());
    if let Some(existing) = std::env::var_os("LD_PRELOAD").filter(|v| !v.is_empty()) {
        preload.push(":");
        preload.push(existing);
    }
    let (prog, args) = program.split_first().ok_or("no program given")?;
    let mut cmd = Command::new(prog);
    cmd.args(args).env("LD_PRELOAD", preload);
    if let Some(d) = debug {
        cmd.env("DYNLOAD_DEBUG", d);
    }
    if let Some(o) = debug_output {
        cmd.env("DYNLOAD_DEBUG_OUTPUT", o);
    }
    let err = cmd.exec();
    Err(format!("cannot run {}: {err}", prog.to_string_lossy()))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Run {
            debug,
            debug_output,
            program,
        } => run(debug, debug_output, program),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dynload: {e}");
            ExitCode::from(127)
        }
    }
}
