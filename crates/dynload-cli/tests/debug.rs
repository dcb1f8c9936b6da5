//! DYNLOAD_DEBUG through `dynload run --debug`: every category produces
//! its lines, in glibc's LD_DEBUG shapes where glibc has them, to the file
//! DYNLOAD_DEBUG_OUTPUT names (with the pid appended, as glibc does).

use std::process::Command;
use testkit::{Lib, Set};

fn run_with(set: &Set, categories: &str, script: &[&str]) -> (String, String) {
    let out_file = set.dir.join("dbg");
    let args: Vec<String> = script.iter().map(|l| set.expand(l)).collect();
    let out = testkit::run(
        Command::new(env!("CARGO_BIN_EXE_dynload"))
            .env("DYNLOAD_LIBRARY", testkit::libdynload())
            .env_remove("LD_LIBRARY_PATH")
            .args(["run", "--debug", categories, "--debug-output"])
            .arg(&out_file)
            .arg("--")
            .arg(testkit::driver())
            .args(&args),
    );
    let text = testkit::read_debug_files(&set.dir, "dbg");
    (String::from_utf8_lossy(&out.stdout).into_owned(), text)
}

#[test]
fn every_category_reports() {
    let set = Set::build(
        "cli-debug",
        &[
            Lib::versioned("current"),
            Lib::src("c", "use_f.c").dep("ver"),
            Lib::node("b", 2),
            Lib::node("a", 1).dep("b").dep("c"),
        ],
    );
    let script = [
        "open $a NOW|GLOBAL",
        "call h1 id_b",
        "open @nothere NOW",
        "close h1",
    ];
    let (stdout, text) = run_with(&set, "all,statistics", &script);
    assert!(stdout.contains("call id_b: 2"), "{stdout}");
    let pid_prefix = text.lines().next().unwrap_or_default();
    assert!(
        pid_prefix
            .trim_start()
            .split(':')
            .next()
            .unwrap()
            .parse::<u32>()
            .is_ok(),
        "lines start with the pid: {pid_prefix:?}"
    );
    for want in [
        "file=libcli_debug_b.so [0];  needed by",
        "file=libcli_debug_b.so [0];  generating link map",
        "find library=libcli_debug_b.so [0]; searching",
        " search path=",
        "(RUNPATH from file ",
        "  trying file=",
        " search cache=/etc/ld.so.cache",
        "relocation processing: ",
        "symbol=id_b;  lookup in file=",
        "binding file ",
        "normal symbol `log_event'",
        "checking for version `V2' in file ",
        "[0] to global scope",
        "calling init: ",
        "calling fini: ",
        "opening file=",
        "number of relocations: ",
        "number of relative relocations: ",
        "destroying link map",
    ] {
        assert!(
            text.contains(want),
            "no {want:?} in the debug output:\n{text}"
        );
    }
}

#[test]
fn help_lists_the_categories_and_unknown_ones_are_reported() {
    let set = Set::build("cli-debug-help", &[]);
    let out = testkit::run(
        Command::new(env!("CARGO_BIN_EXE_dynload"))
            .env("DYNLOAD_LIBRARY", testkit::libdynload())
            .args(["run", "--debug", "help,nonsense", "--"])
            .arg(testkit::driver())
            .arg("open libnope.so NOW")
            .current_dir(&set.dir),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    for c in [
        "libs",
        "reloc",
        "files",
        "symbols",
        "bindings",
        "versions",
        "scopes",
        "statistics",
        "all",
    ] {
        assert!(err.contains(&format!("  {c} ")), "{c} missing from:\n{err}");
    }
    assert!(err.contains("debug option `nonsense' unknown"), "{err}");
}

/// `dynload run --stats` reports for the program it runs (across the
/// program's own execs, as pyenv's shim does), not for every process the
/// program starts: their standard error stays theirs.
#[test]
fn stats_are_printed_for_the_program_not_its_children() {
    let set = Set::build("cli-stats", &[Lib::node("a", 1)]);
    // The driver opens a library, then runs a copy of itself (a child
    // process) that opens it too.
    let child = format!(
        "{} 'open {} NOW'",
        testkit::driver().display(),
        set.path("a")
    );
    let out = testkit::run(
        Command::new(env!("CARGO_BIN_EXE_dynload"))
            .env("DYNLOAD_LIBRARY", testkit::libdynload())
            .env_remove("LD_LIBRARY_PATH")
            .args(["run", "--stats", "--"])
            .arg("/bin/sh")
            .arg("-c")
            .arg(format!(
                "sh -c \"$1\"; exec {} 'open {} NOW'",
                testkit::driver().display(),
                set.path("a")
            ))
            .arg("sh")
            .arg(&child),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.matches("open libcli_stats_a.so: h1").count(),
        2,
        "{stdout}"
    );
    assert_eq!(
        stderr.matches("dynload: 1 dlopen calls").count(),
        1,
        "one summary, from the program dynload run started:\n{stderr}"
    );
    // What it says: objects loaded by dynload and by glibc, relocations,
    // time, and each object with the reason it was found.
    let summary = stderr
        .lines()
        .find(|l| l.starts_with("dynload: 1 dlopen calls"))
        .unwrap();
    for part in [
        " objects loaded by dynload (",
        " by glibc; ",
        " relocations (",
        " ms in dlopen",
    ] {
        assert!(summary.contains(part), "{part:?} not in {summary:?}");
    }
    assert!(
        stderr.contains(&format!("  {} [path]", set.path("a"))),
        "{stderr}"
    );
}

#[test]
fn run_refuses_a_missing_libdynload() {
    // glibc would warn and run the program without dynload: refuse instead.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dynload"))
        .env("DYNLOAD_LIBRARY", "/nonexistent/libdynload.so")
        .args(["run", "--", "true"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent/libdynload.so (DYNLOAD_LIBRARY) not found"),
        "{err}"
    );
}
