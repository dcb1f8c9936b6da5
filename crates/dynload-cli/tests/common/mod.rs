//! Shared by the CLI's tests.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Command;

/// The real executable behind `python3` on PATH (pyenv's shim execs it).
pub fn pyenv_python() -> PathBuf {
    let out =
        testkit::run(Command::new("python3").args(["-c", "import sys; print(sys.executable)"]));
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// Run `program args` under `dynload run --debug files`, asserting success;
/// returns its standard output and the debug output (`tag` names the debug
/// files).
pub fn under_dynload<S: AsRef<OsStr>>(program: &S, args: &[&OsStr], tag: &str) -> (String, String) {
    let stem = format!("{tag}-{}", std::process::id());
    let out = testkit::run(
        Command::new(env!("CARGO_BIN_EXE_dynload"))
            .env("DYNLOAD_LIBRARY", testkit::libdynload())
            .args(["run", "--debug", "files", "--debug-output"])
            .arg(testkit::out_root().join(&stem))
            .arg("--")
            .arg(program)
            .args(args),
    );
    let debug = testkit::read_debug_files(&testkit::out_root(), &stem);
    (String::from_utf8_lossy(&out.stdout).into_owned(), debug)
}
