//! Lookup order and visibility: global before local, RTLD_LOCAL isolation,
//! RTLD_GLOBAL and its promotion, RTLD_DEEPBIND, DT_SYMBOLIC, protected
//! symbols, RTLD_DEFAULT and RTLD_NEXT — each compared with glibc.

use testkit::{compare, dynload_mapped, Lib, Set};

#[test]
fn global_scope_comes_before_the_local_one() {
    // g (global) and x (local) both define `which`; x's own reference binds
    // to g's, because the global scope is searched first.
    let set = Set::build("capi-order", &[Lib::node("g", 100), Lib::node("x", 1)]);
    let script = ["open $g NOW|GLOBAL", "open $x NOW", "call h2 call_which_x", "call h2 read_data_x", "call h2 which", "call DEFAULT which"];
    let (g, d) = compare(&set, &script);
    assert!(g.stdout.contains("call call_which_x: 100\ncall read_data_x: 100\ncall which: 1\ncall which: 100"), "{}", g.stdout);
    assert!(dynload_mapped(&d, "_x.so"));
}

#[test]
fn deepbind_puts_the_local_scope_first() {
    let set = Set::build("capi-deep", &[Lib::node("g", 100), Lib::node("x", 1)]);
    let script = ["open $g NOW|GLOBAL", "open $x NOW|DEEPBIND", "call h2 call_which_x", "call h2 read_data_x"];
    let (g, _) = compare(&set, &script);
    assert!(g.stdout.contains("call call_which_x: 1\ncall read_data_x: 1"), "{}", g.stdout);
}

#[test]
fn symbolic_binds_inside_the_object() {
    let set = Set::build("capi-symbolic", &[Lib::node("g", 100), Lib::node("s", 1).flag("-Wl,-Bsymbolic")]);
    let script = ["open $g NOW|GLOBAL", "open $s NOW", "call h2 call_which_s", "call h2 read_data_s"];
    let (g, _) = compare(&set, &script);
    assert!(g.stdout.contains("call call_which_s: 1\ncall read_data_s: 1"), "{}", g.stdout);
}

#[test]
fn protected_symbols_bind_inside_the_object() {
    let set = Set::build("capi-protected", &[Lib::node("g", 100), Lib::src("p", "protected.c")]);
    let script = ["open $g NOW|GLOBAL", "open $p NOW", "call h2 call_which_p", "call h2 read_data_p", "call h2 which"];
    let (g, _) = compare(&set, &script);
    assert!(g.stdout.contains("call call_which_p: 7\ncall read_data_p: 7"), "{}", g.stdout);
}

#[test]
fn local_objects_are_isolated() {
    // a is opened RTLD_LOCAL: neither the main program's RTLD_DEFAULT nor a
    // later object can see its symbols, until a is promoted to global.
    let set = Set::build("capi-local", &[Lib::node("a", 1), Lib::src("u", "uses_a.c")]);
    let script = [
        "open $a NOW",
        "call DEFAULT id_a",
        "open $u NOW",
        "open $a NOW|NOLOAD|GLOBAL",
        "call DEFAULT id_a",
        "open $u NOW",
        "call h2 call_id_a",
        "close h2",
        "close h1",
        "close h1",
        "maps _local_a",
    ];
    let (g, _) = compare(&set, &script);
    assert!(g.stdout.contains("call id_a: NULL (/") && g.stdout.contains("driver"), "the miss names the caller: {}", g.stdout);
    assert!(g.stdout.contains("open libcapi_local_u.so: NULL ("), "{}", g.stdout);
    assert!(g.stdout.contains("undefined symbol: id_a)"), "{}", g.stdout);
    assert!(g.stdout.contains("call call_id_a: 1"), "{}", g.stdout);
}

#[test]
fn later_global_open_promotes_without_rerunning_constructors() {
    let set = Set::build("capi-promote", &[Lib::node("a", 1)]);
    let script = ["open $log NOW", "open $a NOW", "call DEFAULT id_a", "open $a NOW|GLOBAL", "call DEFAULT id_a", "log h1"];
    let (g, _) = compare(&set, &script);
    assert!(g.stdout.contains("log: ctor a\n"), "{}", g.stdout);
}

#[test]
fn global_object_joins_the_scope_after_its_constructors() {
    // The main program's dlopen(NULL) handle searches the global scope,
    // including objects added later with RTLD_GLOBAL.
    let set = Set::build("capi-mainhandle", &[Lib::node("a", 1)]);
    let script = ["open NULL NOW", "call h1 id_a", "open $a NOW|GLOBAL", "call h1 id_a", "call h1 strlen_missing", "sym h1 getpid"];
    let (g, _) = compare(&set, &script);
    assert!(g.stdout.contains("call id_a: 1"), "{}", g.stdout);
}

#[test]
fn rtld_next_and_default_from_the_main_program() {
    let set = Set::build("capi-next", &[Lib::node("a", 1)]);
    let script = ["sym NEXT puts", "sym DEFAULT puts", "sym DEFAULT no_such_symbol_anywhere", "dlerror"];
    let (g, _) = compare(&set, &script);
    assert!(g.stdout.contains("sym puts: found\nsym puts: found"), "{}", g.stdout);
}

#[test]
fn handle_lookups_search_only_the_handle_and_its_dependencies() {
    let set = Set::build("capi-handle", &[Lib::node("b", 2), Lib::node("a", 1).dep("b"), Lib::node("c", 3)]);
    let script = [
        "open $a NOW",
        "open $c NOW",
        "call h1 id_b",
        "call h1 id_c",
        "call h1 which",
        "call h2 which",
        "sym h1 malloc",
        "same h1 h2 malloc",
    ];
    let (g, _) = compare(&set, &script);
    assert!(g.stdout.contains("call id_b: 2\ncall id_c: NULL ("), "{}", g.stdout);
    assert!(g.stdout.contains("undefined symbol: id_c)"), "{}", g.stdout);
}
