//! The `dynload` command: run programs with dynload as their runtime
//! loader, and explain dynamic linking: what loads, why, and what breaks.

mod check;
mod host;
mod python;
mod style;
mod tree;
mod why;

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
    /// Load libraries with dynload (through its Rust API, in this process)
    /// and report what was loaded and from where, or why loading failed.
    ///
    /// Example: dynload load --symbol deflate libz.so.1
    Load {
        /// Bind lazily (RTLD_LAZY) instead of at load time.
        #[arg(long)]
        lazy: bool,
        /// Open with RTLD_GLOBAL.
        #[arg(long)]
        global: bool,
        /// Look these symbols up in each library after loading it.
        #[arg(long = "symbol", value_name = "NAME")]
        symbols: Vec<String>,
        /// Libraries, by path or by name (searched like dlopen does).
        #[arg(required = true, value_name = "LIBRARY")]
        libraries: Vec<OsString>,
    },
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
        /// At exit, print what dynload loaded, how many relocations it
        /// applied and the time it spent (to standard error).
        #[arg(long)]
        stats: bool,
        /// The program and its arguments.
        #[arg(
            required = true,
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "PROGRAM"
        )]
        program: Vec<OsString>,
    },
    /// Show the dependency tree dynload would load, with the reason each
    /// object was found ([rpath], [runpath], [ld.so.cache], ...) and, for
    /// what is missing, every place tried in order. Nothing is run.
    ///
    /// Examples:
    ///   dynload tree /usr/lib/x86_64-linux-gnu/libLLVM-15.so.1
    ///   dynload tree --paths --all libz3.so
    ///   dynload tree --python python3 ./mymodule.cpython-311-x86_64-linux-gnu.so
    ///
    /// Exit status: 0, or 2 when something is not found.
    #[command(verbatim_doc_comment)]
    Tree {
        /// Show every DT_NEEDED entry, also of objects already shown.
        #[arg(long)]
        all: bool,
        /// Show full paths instead of the names asked for.
        #[arg(long)]
        paths: bool,
        #[command(flatten)]
        output: style::OutputArgs,
        #[command(flatten)]
        host: host::HostArgs,
        /// Files (paths) or library names (searched as dlopen does).
        #[arg(required = true, value_name = "FILE|NAME")]
        files: Vec<OsString>,
    },
    /// Find what would break if these objects were loaded, without running
    /// any of them: missing dependencies, undefined symbols (with the
    /// nearest candidates), unmet versions, symbols that several objects
    /// define, executable stacks, text relocations, initial-exec TLS, RPATH
    /// and RUNPATH surprises. Python extension modules (objects exporting
    /// PyInit_*) are checked against the interpreter: libpython linked in,
    /// a wrong PyInit_ name, Python API the interpreter does not provide.
    /// A wheel (.whl) or a directory checks every extension module in it.
    ///
    /// Examples:
    ///   dynload check ./plugin.so
    ///   dynload check --python python3.11 dist/mypkg-1.0-cp311-cp311-linux_x86_64.whl
    ///   dynload check --json ./a.so ./b.so
    ///
    /// Exit status: 0 clean, 1 warnings, 2 errors.
    #[command(verbatim_doc_comment)]
    Check {
        #[command(flatten)]
        output: style::OutputArgs,
        #[command(flatten)]
        host: host::HostArgs,
        /// Shared objects, wheels or directories.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<OsString>,
    },
    /// Explain which object SYMBOL binds to, from FILE's point of view (or
    /// a dlsym on the host's global scope): every object of every scope in
    /// search order, with what each has of it (absent, hidden version,
    /// wrong version, weak, protected, not exported).
    ///
    /// Examples:
    ///   dynload why malloc
    ///   dynload why --in ./plugin.so compress2
    ///   dynload why --python python3 --in ./ext.so PyLong_FromLong
    ///
    /// Exit status: 0 when it binds, 2 when nothing defines it.
    #[command(verbatim_doc_comment)]
    Why {
        /// Look up as a reference from this object (opened by the host).
        #[arg(long = "in", value_name = "FILE")]
        within: Option<OsString>,
        /// The version asked for (default: the version FILE's own
        /// reference asks for, if any).
        #[arg(long, value_name = "VERSION")]
        version: Option<String>,
        /// As if FILE's root were opened with RTLD_DEEPBIND.
        #[arg(long)]
        deepbind: bool,
        #[command(flatten)]
        output: style::OutputArgs,
        #[command(flatten)]
        host: host::HostArgs,
        /// The symbol's name.
        symbol: String,
    },
}

/// libdynload.so: next to this executable (cargo puts both in target/<profile>/),
/// or where DYNLOAD_LIBRARY says.
fn libdynload() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("DYNLOAD_LIBRARY") {
        // glibc would only warn that it cannot preload a missing file and
        // run the program without dynload.
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("{} (DYNLOAD_LIBRARY) not found", p.display()))
        };
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
    stats: bool,
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
    if stats {
        // The program keeps this process's id (exec), through its own execs
        // too; the processes it starts do not, and print no summary.
        cmd.env("DYNLOAD_STATS", format!("pid={}", std::process::id()));
    }
    let err = cmd.exec();
    Err(format!("cannot run {}: {err}", prog.to_string_lossy()))
}

fn load(
    lazy: bool,
    global: bool,
    symbols: &[String],
    libraries: &[OsString],
) -> Result<(), String> {
    use dynload::{Library, LoadedBy, OpenFlags};
    let before: std::collections::HashSet<PathBuf> = dynload::loaded_objects()
        .into_iter()
        .map(|o| o.path)
        .collect();
    let mut flags = if lazy {
        OpenFlags::LAZY
    } else {
        OpenFlags::NOW
    };
    if global {
        flags = flags | OpenFlags::GLOBAL;
    }
    let mut failed = false;
    let mut keep = Vec::new();
    for name in libraries {
        // SAFETY: loading a library the user named runs its initialisers;
        // that is what this command is for.
        match unsafe { Library::open(name, flags) } {
            Ok(lib) => {
                println!("{}: {}", name.to_string_lossy(), lib.path().display());
                for sym in symbols {
                    // SAFETY: the address is only printed, never called.
                    match unsafe { lib.get::<*mut std::ffi::c_void>(sym) } {
                        Ok(p) => println!("  {sym} = {:p}", *p),
                        Err(e) => {
                            println!("  {sym}: {}", e.explain().replace('\n', "\n  "));
                            failed = true;
                        }
                    }
                }
                keep.push(lib);
            }
            Err(e) => {
                println!(
                    "{}: error: {}",
                    name.to_string_lossy(),
                    e.explain().replace('\n', "\n  ")
                );
                failed = true;
            }
        }
    }
    let objects = dynload::loaded_objects();
    let new: Vec<_> = objects
        .iter()
        .filter(|o| !before.contains(&o.path))
        .collect();
    if !new.is_empty() {
        println!("objects loaded:");
        for o in new {
            let who = match (o.loaded_by, &o.found_via) {
                (LoadedBy::Dynload, Some(via)) => format!("dynload, found via {via}"),
                (LoadedBy::Dynload, None) => "dynload".to_string(),
                (LoadedBy::Glibc, _) => "glibc (C runtime)".to_string(),
            };
            println!("  {} [{who}]", o.path.display());
        }
    }
    drop(keep);
    if failed {
        Err("some libraries or symbols could not be loaded".into())
    } else {
        Ok(())
    }
}

fn main() -> ExitCode {
    // Output piped into `head` ends quietly, as other command-line tools do.
    // SAFETY: restoring the default disposition of SIGPIPE before any
    // thread exists; no handler is involved.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    // `run` fails only when the program cannot be started: 127, as a shell.
    let status = if matches!(cli.command, Cmd::Run { .. }) {
        127
    } else {
        1
    };
    let diagnosis = match &cli.command {
        Cmd::Tree {
            all,
            paths,
            output,
            host,
            files,
        } => Some(
            host.python
                .as_ref()
                .map(host::query_python)
                .transpose()
                .and_then(|py| {
                    let opts = tree::TreeOptions {
                        all: *all,
                        paths: *paths,
                        json: output.json,
                    };
                    tree::run(
                        || host::inspector(host, py.as_ref()),
                        files,
                        &opts,
                        style::Style::new(output.color),
                    )
                }),
        ),
        Cmd::Check {
            output,
            host,
            files,
        } => Some(check::run(
            files,
            host,
            output.json,
            style::Style::new(output.color),
        )),
        Cmd::Why {
            within,
            version,
            deepbind,
            output,
            host,
            symbol,
        } => Some(host::from_args(host).and_then(|mut ins| {
            let opts = why::WhyOptions {
                symbol: symbol.clone(),
                within: within.clone(),
                version: version.clone(),
                deepbind: *deepbind,
                json: output.json,
            };
            why::run(&mut ins, &opts, style::Style::new(output.color))
        })),
        _ => None,
    };
    if let Some(result) = diagnosis {
        return match result {
            Ok(code) => ExitCode::from(code),
            Err(e) => {
                eprintln!("dynload: {e}");
                ExitCode::from(2)
            }
        };
    }
    let result = match cli.command {
        Cmd::Run {
            debug,
            debug_output,
            stats,
            program,
        } => run(debug, debug_output, stats, program),
        Cmd::Load {
            lazy,
            global,
            symbols,
            libraries,
        } => load(lazy, global, &symbols, &libraries),
        Cmd::Tree { .. } | Cmd::Check { .. } | Cmd::Why { .. } => unreachable!("handled above"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dynload: {e}");
            ExitCode::from(status)
        }
    }
}
