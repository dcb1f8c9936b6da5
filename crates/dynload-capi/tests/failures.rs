//! Failed loads: a missing dependency, an undefined symbol under RTLD_NOW,
//! a missing version. Each must give glibc's message and roll back
//! completely: nothing mapped, no constructor run, no count changed.

use testkit::{compare, Lib, Set};

#[test]
fn missing_dependency_rolls_back() {
    let set = Set::build("capi-missing", &[Lib::node("dep", 1), Lib::node("gone", 2), Lib::node("top", 3).dep("dep").dep("gone")]);
    std::fs::remove_file(set.path("gone")).unwrap();
    let script = [
        "open $log NOW",
        "open $top NOW",
        "maps _missing_top",
        "maps _missing_dep",
        "log h1",
        // A dependency that was already open keeps exactly its count.
        "open $dep NOW",
        "open $top NOW",
        "close h2",
        "maps _missing_dep",
        "log h1",
    ];
    let (g, _) = compare(&set, &script);
    assert!(g.stdout.contains("open libcapi_missing_top.so: NULL (libcapi_missing_gone.so: cannot open shared object file: No such file or directory)"), "{}", g.stdout);
    assert!(g.stdout.contains("maps _missing_top: 0\nmaps _missing_dep: 0\nlog: \n"), "{}", g.stdout);
    assert!(g.stdout.ends_with("close h2: 0\nmaps _missing_dep: 0\nlog: ctor dep,dtor dep\n"), "{}", g.stdout);
}

#[test]
fn undefined_symbol_under_rtld_now_rolls_back() {
    let set = Set::build("capi-undef", &[Lib::node("dep", 1), Lib::src("u", "undef.c").dep("dep")]);
    let script = ["open $log NOW", "open $u NOW", "maps _undef_u", "maps _undef_dep", "log h1", "dlerror"];
    let (g, _) = compare(&set, &script);
    assert!(g.stdout.contains("libcapi_undef_u.so: undefined symbol: missing_function)"), "{}", g.stdout);
    assert!(g.stdout.contains("maps _undef_u: 0\nmaps _undef_dep: 0\nlog: \ndlerror: NULL"), "{}", g.stdout);
}

#[test]
fn missing_version_is_reported_with_glibcs_words() {
    let set = Set::build("capi-vermiss", &[Lib::src("ver", "ver.c").flag("-Wl,--version-script={src}/ver.map").no_log()]);
    set.compile(&Lib::src("ver", "ver_future.c").flag("-Wl,--version-script={src}/ver_future.map").subdir("future").no_log());
    set.compile(&Lib::src("c", "use_f.c").flag("-L{dir}/future").dep("ver"));
    let script = ["open $c NOW", "maps _vermiss_ver", "maps _vermiss_c"];
    let (g, _) = compare(&set, &script);
    assert!(g.stdout.contains(": version `V3' not found (required by "), "{}", g.stdout);
    assert!(g.stdout.contains("maps _vermiss_ver: 0\nmaps _vermiss_c: 0"), "{}", g.stdout);
}

#[test]
fn a_failed_open_can_be_retried_once_the_cause_is_gone() {
    let set = Set::build("capi-retry", &[Lib::node("gone", 2), Lib::node("top", 3).dep("gone")]);
    let gone = set.path("gone");
    std::fs::rename(&gone, format!("{gone}.away")).unwrap();
    let script = ["open $top NOW", "maps _retry_top"];
    compare(&set, &script);
    std::fs::rename(format!("{gone}.away"), &gone).unwrap();
    let script = ["open $top NOW", "call h1 id_gone", "close h1", "maps _retry_top"];
    let (g, _) = compare(&set, &script);
    assert!(g.stdout.contains("call id_gone: 2"), "{}", g.stdout);
}
