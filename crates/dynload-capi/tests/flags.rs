//! RTLD_NOLOAD, RTLD_NODELETE and DF_1_NODELETE, reference counts and
//! unmapping, invalid modes, and "the same file gives the same handle" —
//! each compared with glibc.

use testkit::{compare, Lib, Set};

#[test]
fn noload_returns_null_without_error_when_absent() {
    let set = Set::build("capi-noload", &[Lib::node("a", 1)]);
    let script = [
        "open $a NOW|NOLOAD",
        "dlerror",
        "maps _noload_a",
        "open $a NOW",
        "open $a NOW|NOLOAD",
        "open @a NOW|NOLOAD",
        "close h1",
        "close h1",
        "maps _noload_a",
        "open $a LAZY|NOLOAD|NODELETE",
        "dlerror",
    ];
    let (g, _) = compare(&set, &script);
    assert!(g.stdout.starts_with("open libcapi_noload_a.so: NULL (no error)\ndlerror: NULL\nmaps _noload_a: 0\n"), "{}", g.stdout);
}

#[test]
fn reference_counts_and_unmapping() {
    let set = Set::build("capi-refcount", &[Lib::node("b", 2), Lib::node("a", 1).dep("b")]);
    let script = [
        "open $log NOW",
        "open $a NOW",
        "open $a LAZY",
        "close h2",
        "maps _refcount_a",
        "maps _refcount_b",
        "close h2",
        "maps _refcount_a",
        "maps _refcount_b",
        "log h1",
    ];
    // (Closing h2 once more reads freed memory in glibc; dynload's answer,
    // "shared object not open", is tested in the Rust API tests.)
    let (g, _) = compare(&set, &script);
    assert!(g.stdout.contains("maps _refcount_a: 1\nmaps _refcount_b: 1\nclose h2: 0\nmaps _refcount_a: 0\nmaps _refcount_b: 0"), "{}", g.stdout);
}

#[test]
fn rtld_nodelete_keeps_the_object() {
    let set = Set::build("capi-nodelete", &[Lib::node("a", 1)]);
    let script = ["open $log NOW", "open $a NOW|NODELETE", "close h2", "maps _nodelete_a", "open $a NOW|NOLOAD", "log h1"];
    let (g, _) = compare(&set, &script);
    assert!(g.stdout.contains("maps _nodelete_a: 1\nopen libcapi_nodelete_a.so: h"), "{}", g.stdout);
    assert!(g.stdout.contains("log: ctor a\n"), "{}", g.stdout);
}

#[test]
fn nodelete_added_by_a_later_open() {
    let set = Set::build("capi-nodelete2", &[Lib::node("a", 1)]);
    let script = ["open $a NOW", "open $a NOW|NOLOAD|NODELETE", "close h1", "close h1", "maps _nodelete2_a"];
    let (g, _) = compare(&set, &script);
    assert!(g.stdout.ends_with("maps _nodelete2_a: 1\n"), "{}", g.stdout);
}

#[test]
fn df_1_nodelete_from_the_dynamic_section() {
    let set = Set::build("capi-dfnodelete", &[Lib::node("a", 1).flag("-Wl,-z,nodelete")]);
    let script = ["open $a NOW", "close h1", "maps _dfnodelete_a", "open $a NOW|NOLOAD"];
    let (g, _) = compare(&set, &script);
    assert!(g.stdout.contains("maps _dfnodelete_a: 1\nopen libcapi_dfnodelete_a.so: h"), "{}", g.stdout);
}

#[test]
fn invalid_modes_are_rejected_with_glibcs_messages() {
    let set = Set::build("capi-modes", &[Lib::node("a", 1)]);
    let script = ["open $a 0", "open $a GLOBAL", "open $a NOW|0x40000", "maps _modes_a", "dlerror"];
    let (g, _) = compare(&set, &script);
    assert!(g.stdout.contains("libcapi_modes_a.so: invalid mode for dlopen(): Invalid argument)"), "{}", g.stdout);
    assert!(g.stdout.contains("NULL (invalid mode parameter)"), "{}", g.stdout);
}

#[test]
fn the_same_file_gives_the_same_handle() {
    // By name, through a symlink (dev/inode), and by its bare name found
    // through the RUNPATH of the caller... here: via a relative path.
    let set = Set::build("capi-samefile", &[Lib::node("a", 1)]);
    std::os::unix::fs::symlink(set.path("a"), set.dir.join("alias.so")).unwrap();
    let script = ["open $a NOW", "open {dir}/alias.so NOW", "open ./alias.so NOW", "open $a NOW", "close h1", "close h1", "close h1", "maps _samefile_a", "close h1", "maps _samefile_a"];
    let (g, _) = compare(&set, &script);
    assert!(g.stdout.starts_with("open libcapi_samefile_a.so: h1\nopen alias.so: h1\nopen alias.so: h1\nopen libcapi_samefile_a.so: h1\n"), "{}", g.stdout);
    assert!(g.stdout.ends_with("maps _samefile_a: 1\nclose h1: 0\nmaps _samefile_a: 0\n"), "{}", g.stdout);
}

#[test]
fn dlopen_null_is_the_main_program() {
    let set = Set::build("capi-null", &[]);
    let script = ["open NULL NOW", "open NULL LAZY|GLOBAL", "sym h1 printf", "close h1", "close h1", "sym h1 printf"];
    compare(&set, &script);
}

#[test]
fn dlerror_is_cleared_and_reported_once() {
    let set = Set::build("capi-dlerror", &[]);
    let script = [
        "open libnope-1.so NOW",
        "open libnope-2.so NOW",
        "open NULL NOW",
        "dlerror",
        "sym h1 no_such_symbol_xyz",
        "dlerror",
        "dlerror",
        "addr DEFAULT printf",
        "dlerror",
    ];
    let (g, _) = compare(&set, &script);
    assert!(g.stdout.contains("open libnope-1.so: NULL (libnope-1.so: cannot open shared object file: No such file or directory)"), "{}", g.stdout);
    assert!(g.stdout.contains("open NULL: h1\ndlerror: NULL\n"), "{}", g.stdout);
}
