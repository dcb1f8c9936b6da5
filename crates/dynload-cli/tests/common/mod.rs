//! Shared by the CLI's tests.
// Each test binary uses part of these helpers.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
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

pub const MODULE_FILE: &str = "pyo3_demo.cpython-311-x86_64-linux-gnu.so";
pub const DEBIAN_PYTHON: &str = "/usr/bin/python3.11";
pub const DEBIAN_LIBPYTHON: &str = "/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0";

/// Build the module into `dir/right` (PYO3_BUILD_EXTENSION_MODULE=1) and
/// `dir/wrong` (linked against Debian's libpython).
pub fn build_pyo3_demo(dir: &Path) -> (PathBuf, PathBuf) {
    let pyenv = pyenv_python();
    let (right, wrong) = (dir.join("right"), dir.join("wrong"));
    for d in [&right, &wrong] {
        std::fs::create_dir_all(d).unwrap();
    }
    testkit::cargo_cdylib(
        "pyo3_demo",
        &[
            ("PYO3_BUILD_EXTENSION_MODULE", "1"),
            ("PYO3_PYTHON", &pyenv.to_string_lossy()),
        ],
        &right.join(MODULE_FILE),
    );
    testkit::cargo_cdylib(
        "pyo3_demo",
        &[("PYO3_PYTHON", DEBIAN_PYTHON)],
        &wrong.join(MODULE_FILE),
    );
    let needed = |p: &Path| testkit::dynamic_section(p).contains("[libpython3.11.so.1.0]");
    assert!(
        !needed(&right.join(MODULE_FILE)),
        "the right build links libpython"
    );
    assert!(
        needed(&wrong.join(MODULE_FILE)),
        "the wrong build does not link libpython"
    );
    (right, wrong)
}
