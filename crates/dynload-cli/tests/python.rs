//! CPython under `dynload run`: every extension module of lib-dynload that
//! imports under plain glibc imports under dynload — loaded by dynload,
//! with its own dependencies — and works, for both kinds of interpreter on
//! this platform: pyenv's (libpython3.11.so as a shared library) and
//! Debian's /usr/bin/python3.11 (libpython linked into the executable).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

mod common;
use common::{pyenv_python, under_dynload};

const C_RUNTIME: &[&str] = &[
    "libc.so.6",
    "libm.so.6",
    "libpthread.so.0",
    "libdl.so.2",
    "librt.so.1",
    "libutil.so.1",
    "ld-linux-x86-64.so.2",
];

/// A tiny JSON reader for the script's flat output (no dependency needed).
fn json_field<'a>(text: &'a str, key: &str) -> &'a str {
    let start = text
        .find(&format!("\"{key}\": "))
        .unwrap_or_else(|| panic!("no {key} in {text}"))
        + key.len()
        + 4;
    &text[start..]
}

fn modules(text: &str) -> BTreeMap<String, String> {
    let body = json_field(text, "modules");
    let body = &body[1..body.find('}').unwrap()];
    let mut out = BTreeMap::new();
    for item in body.split("\", \"") {
        let item = item.trim_matches('"');
        if let Some((k, v)) = item.split_once("\": \"") {
            out.insert(k.to_string(), v.to_string());
        }
    }
    out
}

fn checks(text: &str) -> &str {
    let body = json_field(text, "checks");
    &body[..body.find(", \"executable\"").unwrap_or(body.len())]
}

fn needed(path: &Path) -> Vec<String> {
    testkit::dynamic_section(path)
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| Some(l.split('[').nth(1)?.trim_end_matches(']').to_string()))
        .collect()
}

fn check_interpreter(python: &Path, expect_shared_libpython: bool) {
    assert!(python.exists(), "{} is missing", python.display());
    let shared = needed(python).iter().any(|n| n.starts_with("libpython"));
    assert_eq!(
        shared,
        expect_shared_libpython,
        "{}: libpython in DT_NEEDED = {shared}",
        python.display()
    );
    let script = testkit::fixtures_src().join("python_imports.py");
    let plain = testkit::run(Command::new(python).arg(&script));
    let plain = String::from_utf8_lossy(&plain.stdout).into_owned();
    let tag = if expect_shared_libpython {
        "python-debug-shared"
    } else {
        "python-debug-static"
    };
    let (under, debug) = under_dynload(&python, &[script.as_os_str()], tag);
    let (g, d) = (modules(&plain), modules(&under));
    assert!(g.len() > 30, "too few modules found: {g:?}");
    let lib_dynload = json_field(&plain, "lib_dynload")
        .split('"')
        .nth(1)
        .unwrap()
        .to_string();
    let ldd =
        String::from_utf8_lossy(&testkit::run(Command::new("ldd").arg(python)).stdout).into_owned();
    let mut mapped = 0;
    for (name, status) in &g {
        if !status.starts_with("ok") {
            continue;
        }
        let file = status.trim_start_matches("ok ").to_string();
        let dstatus = d
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing under dynload"));
        assert!(
            dstatus.starts_with("ok"),
            "{name} imports under glibc but not under dynload: {dstatus}"
        );
        let path = Path::new(&lib_dynload).join(&file);
        assert!(
            testkit::mapped_in(&debug, &path.to_string_lossy()),
            "{name}: dynload did not map {}",
            path.display()
        );
        for dep in needed(&path) {
            if C_RUNTIME.contains(&dep.as_str()) || dep.starts_with("libpython") {
                continue;
            }
            // Either dynload mapped it (file=DEP ... generating link map), or
            // glibc had already loaded it for the interpreter.
            let by_dynload = debug
                .lines()
                .any(|l| l.contains(&format!("file={dep} [0];  generating link map")));
            let by_glibc = ldd.contains(&dep);
            assert!(
                by_dynload || by_glibc,
                "{name}: dependency {dep} was not loaded by dynload"
            );
        }
        mapped += 1;
    }
    assert!(mapped > 30, "only {mapped} modules mapped by dynload");
    for dep in [
        "libffi.so.8",
        "libsqlite3.so.0",
        "libcrypto.so.3",
        "libz.so.1",
        "libbz2.so.1.0",
        "liblzma.so.5",
    ] {
        let by_dynload = debug.contains(&format!("file={dep} [0];  generating link map"));
        // Debian's interpreter links libz itself: glibc's copy is reused.
        assert!(
            by_dynload || ldd.contains(dep),
            "{dep} not mapped by dynload"
        );
        assert!(!(by_dynload && ldd.contains(dep)), "{dep} was loaded twice");
    }
    for dep in ["libffi.so.8", "libsqlite3.so.0", "libcrypto.so.3"] {
        assert!(
            debug.contains(&format!("file={dep} [0];  generating link map")),
            "{dep} not mapped by dynload"
        );
    }
    assert_eq!(
        checks(&plain),
        checks(&under),
        "the modules behave differently under dynload"
    );
    for want in [
        "\"json\": \"{\\\"a\\\"",
        "\"sqlite3\": [[45,",
        "openssl_sha256",
        "\"compression\": [true, true, true,",
        "\"ctypes\": 14",
        "\"elementtree\": [\"1\", \"2\", \"t\"]",
        "\"decimal\": \"2.6428",
    ] {
        assert!(
            checks(&under).contains(want),
            "check {want} failed: {}",
            checks(&under)
        );
    }
    assert!(!checks(&under).contains("error"), "{}", checks(&under));
}

#[test]
fn pyenv_python_with_shared_libpython() {
    check_interpreter(&pyenv_python(), true);
}

#[test]
fn debian_python_with_libpython_in_the_executable() {
    check_interpreter(Path::new("/usr/bin/python3.11"), false);
}
