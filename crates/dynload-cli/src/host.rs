//! Which program the inspected objects are loaded into: a minimal C
//! program, a given executable (`--host`), or a Python interpreter.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;

use dynload::inspect::Inspector;

/// The `--host` / `--python` options shared by `tree`, `check` and `why`.
#[derive(Debug, Clone, clap::Args)]
pub struct HostArgs {
    /// The program that loads the objects: its start-up objects form the
    /// global scope, searched first, and its DT_RPATH applies. Default: a
    /// minimal C program (libc.so.6 only).
    #[arg(long, value_name = "PROGRAM", conflicts_with = "python")]
    pub host: Option<PathBuf>,
    /// Check as Python extension modules imported by INTERPRETER (its
    /// executable and libpython are the host). `check` turns this on by
    /// itself for extension modules, with the `python3` on PATH.
    #[arg(long, value_name = "INTERPRETER", num_args = 0..=1, default_missing_value = "python3")]
    pub python: Option<OsString>,
}

/// What `check` needs to know about a Python interpreter.
#[derive(Debug, Clone)]
pub struct Interpreter {
    /// `sys.executable`, resolved.
    pub executable: PathBuf,
    /// "3.11".
    pub version: String,
    /// `EXT_SUFFIX`: ".cpython-311-x86_64-linux-gnu.so".
    pub ext_suffix: String,
    /// A free-threaded build.
    pub free_threaded: bool,
}

/// Ask the interpreter about itself (this runs the interpreter, not any
/// of the objects being checked).
pub fn query_python(named: &OsString) -> Result<Interpreter, String> {
    let script = "import sys, sysconfig\n\
print(sys.executable)\n\
print('%d.%d' % sys.version_info[:2])\n\
print(sysconfig.get_config_var('EXT_SUFFIX') or '')\n\
print(sysconfig.get_config_var('Py_GIL_DISABLED') or 0)\n";
    let out = Command::new(named)
        .args(["-I", "-c", script])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", named.to_string_lossy()))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed: {}",
            named.to_string_lossy(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() < 4 {
        return Err(format!(
            "{} did not describe itself",
            named.to_string_lossy()
        ));
    }
    let executable = std::fs::canonicalize(lines[0]).unwrap_or_else(|_| PathBuf::from(lines[0]));
    Ok(Interpreter {
        executable,
        version: lines[1].to_string(),
        ext_suffix: lines[2].to_string(),
        free_threaded: lines[3].trim() == "1",
    })
}

/// An inspector for the chosen host; with `python`, for that interpreter.
pub fn inspector(args: &HostArgs, python: Option<&Interpreter>) -> Result<Inspector, String> {
    let made = match (python, &args.host) {
        (Some(py), _) => Inspector::with_host(&py.executable),
        (None, Some(program)) => {
            let path = resolve_program(program)?;
            Inspector::with_host(&path)
        }
        (None, None) => Inspector::new(),
    };
    made.map_err(|e| e.explain())
}

/// An inspector for `--host`/`--python` as given (no extension-module
/// detection: that is `check`'s).
pub fn from_args(args: &HostArgs) -> Result<Inspector, String> {
    let py = args.python.as_ref().map(query_python).transpose()?;
    inspector(args, py.as_ref())
}

/// A program named without a '/' is looked up in PATH, as a shell would.
fn resolve_program(program: &std::path::Path) -> Result<PathBuf, String> {
    if program.as_os_str().to_string_lossy().contains('/') {
        return Ok(program.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("{}: not found in PATH", program.display()))
}

/// What to add to an error opening `name`: the places tried (folded), and
/// a hint when a bare name that was searched for exists right here.
pub fn open_error_details(e: &dynload::Error, name: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    if let dynload::Error::NotFound { tried, .. } = e {
        if !tried.is_empty() {
            out.push(format!(
                "tried, in order: {}",
                dynload::inspect::fold_tried(tried).join(", ")
            ));
        }
        let bare = !name.as_os_str().to_string_lossy().contains('/');
        if bare && name.is_file() {
            out.push(format!(
                "a name without a '/' is searched for, as dlopen does, not looked up in the current directory; for the file here, write ./{}",
                name.display()
            ));
        }
    }
    out
}
