//! A PyO3 extension module built by the test, imported under `dynload run`
//! by both interpreters of this platform (pyenv's, with libpython as a
//! shared library, and Debian's /usr/bin/python3.11, with libpython inside
//! the executable), compared line for line with the same import under
//! glibc: Python exceptions, a Rust panic reaching Python as
//! `pyo3_runtime.PanicException`, thread-locals from Python threads, Rust
//! threads with thread_local destructors. The same module built wrongly
//! (linked against libpython) must behave as under glibc: the interpreter's
//! symbols win because the global scope is searched first, and an already
//! loaded libpython is not loaded again.

use std::path::Path;
use std::process::Command;

mod common;
use common::{
    build_pyo3_demo as build, pyenv_python, under_dynload, DEBIAN_LIBPYTHON, DEBIAN_PYTHON,
    MODULE_FILE,
};

/// Run the check script on `module_dir` with `python`, under glibc and
/// under `dynload run`; the outputs must be equal and dynload must have
/// mapped the module. Returns the output.
fn compare(python: &Path, module_dir: &Path, tag: &str) -> String {
    let script = testkit::fixtures_src().join("pyo3_check.py");
    let plain = testkit::run(Command::new(python).arg(&script).arg(module_dir));
    let plain = String::from_utf8_lossy(&plain.stdout).into_owned();
    let (under, debug) = under_dynload(
        &python,
        &[script.as_os_str(), module_dir.as_os_str()],
        &format!("pyo3-debug-{tag}"),
    );
    assert_eq!(plain, under, "{tag}: glibc and dynload disagree");
    let module = module_dir.join(MODULE_FILE);
    assert!(
        testkit::mapped_in(&debug, &module.to_string_lossy()),
        "{tag}: dynload did not map the module:\n{debug}"
    );
    for line in [
        "add 42",
        "fail ValueError bad value",
        "panic pyo3_runtime.PanicException explode was called",
        "alive after the panic 2",
        "calls per Python thread [3, 3, 3, 3]",
        "calls on the main thread 1 2",
        "rust threads (sum, destructors) (141400, 8)",
    ] {
        assert!(under.contains(line), "{tag}: {line}\n{under}");
    }
    under
}

fn line<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix} in {out}"))
}

#[test]
fn pyo3_module_right_and_wrong_under_both_interpreters() {
    let dir = testkit::out_root().join("pyo3-demo");
    let (right, wrong) = build(&dir);
    let pyenv = pyenv_python();
    let pyenv_libpython = pyenv
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("lib/libpython3.11.so.1.0");

    // Built right: the API comes from whatever provides it in the process.
    let out = compare(&pyenv, &right, "pyenv-right");
    assert_eq!(
        line(&out, "PyLong_FromLong bound in "),
        pyenv_libpython.to_string_lossy()
    );
    let out = compare(Path::new(DEBIAN_PYTHON), &right, "debian-right");
    assert_eq!(line(&out, "PyLong_FromLong bound in "), DEBIAN_PYTHON);
    assert_eq!(line(&out, "libpython files mapped "), "[]");

    // Built wrong, pyenv: DT_NEEDED libpython3.11.so.1.0 is the soname of
    // the interpreter's own libpython, which is reused: one copy.
    let out = compare(&pyenv, &wrong, "pyenv-wrong");
    assert_eq!(
        line(&out, "_Py_NoneStruct bound in "),
        pyenv_libpython.to_string_lossy()
    );
    assert_eq!(
        line(&out, "libpython files mapped "),
        format!("['{}']", pyenv_libpython.display())
    );
    // Built wrong, Debian: a second libpython is mapped, but the global
    // scope (the executable) is searched first, so the module still uses
    // the running interpreter.
    let out = compare(Path::new(DEBIAN_PYTHON), &wrong, "debian-wrong");
    assert_eq!(line(&out, "PyLong_FromLong bound in "), DEBIAN_PYTHON);
    assert_eq!(line(&out, "_Py_NoneStruct bound in "), DEBIAN_PYTHON);
    assert_eq!(
        line(&out, "libpython files mapped "),
        format!("['{DEBIAN_LIBPYTHON}']")
    );
}
