//! GDB names the frames of dynload's objects (through GDB's JIT interface,
//! since glibc's `_r_debug` list is glibc's): `bt` under dynload shows the
//! same function names as under glibc, including a static function that
//! only the file's `.symtab` names, and unwinds through them to `main`.

use std::process::Command;

use testkit::{driver, libdynload, Lib, Set};

/// The function names of `bt`'s frames, innermost first.
fn frames(bt: &str) -> Vec<String> {
    bt.lines()
        .filter(|l| l.starts_with('#'))
        .filter_map(|l| {
            let after = l
                .split(" in ")
                .nth(1)
                .unwrap_or(l.split_whitespace().nth(1)?);
            Some(after.split_whitespace().next()?.to_string())
        })
        .collect()
}

fn gdb_bt(set: &Set, env: &[&str]) -> Vec<String> {
    let mut cmd = Command::new("gdb");
    cmd.args(["-q", "-batch", "-nx"]);
    for e in env {
        cmd.args(["-ex", &format!("set environment {e}")]);
    }
    cmd.args(["-ex", "run", "-ex", "bt", "--args"])
        .arg(driver())
        .arg(format!("open {}", set.path("frames")))
        .arg("call h1 gdb_frames_entry")
        .env_remove("LD_LIBRARY_PATH");
    let out = testkit::run(&mut cmd);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("SIGUSR1"),
        "the program did not stop:\n{text}"
    );
    frames(&text)
}

#[test]
fn gdb_bt_names_frames_in_dynload_objects() {
    let set = Set::build("capi-gdb", &[Lib::src("frames", "gdb_frames.c").no_log()]);
    let preload = format!("LD_PRELOAD={}", libdynload().display());
    let want = ["deep_static_frame", "gdb_frames_entry", "main"];
    let tail = |f: &[String]| -> Vec<String> {
        let at = f.iter().position(|n| n == "deep_static_frame");
        at.map(|i| f[i..].to_vec()).unwrap_or_default()
    };
    let glibc = gdb_bt(&set, &[]);
    assert_eq!(tail(&glibc), want, "{glibc:?}");
    let dynload = gdb_bt(&set, &[&preload]);
    assert_eq!(tail(&dynload), want, "{dynload:?}");
    // The names come from what dynload hands GDB: without it, none.
    let off = gdb_bt(&set, &[&preload, "DYNLOAD_GDB=0"]);
    assert!(!off.iter().any(|n| n == "deep_static_frame"), "{off:?}");
}

#[test]
fn the_jit_interface_stays_out_of_the_dynamic_symbols() {
    // Another JIT in the process (libLLVM has its own descriptor, which it
    // reaches through a GLOB_DAT relocation) must keep binding to its own:
    // libdynload.so's pair is in its symbol table only, where debuggers
    // look for it in each object.
    let dynsyms = testkit::dynamic_symbols(libdynload());
    assert!(!dynsyms.contains("__jit_debug"), "{dynsyms}");
    let all = testkit::readelf("-sW", libdynload());
    assert!(all.contains("__jit_debug_descriptor"), "not in .symtab");
    assert!(all.contains("__jit_debug_register_code"), "not in .symtab");
}
