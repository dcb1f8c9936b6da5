//! Symbol versioning, IFUNC (ours and libc's), and RELR relocations,
//! compared with glibc.

use testkit::{compare, run, Lib, Set};

fn versioned_set(name: &str) -> Set {
    let set = Set::build(name, &[Lib::src("ver", "ver.c").flag("-Wl,--version-script={src}/ver.map").no_log()]);
    set.compile(&Lib::src("ver", "ver_old.c").flag("-Wl,--version-script={src}/ver_old.map").subdir("old").no_log());
    set.compile(&Lib::src("ver", "ver_future.c").flag("-Wl,--version-script={src}/ver_future.map").subdir("future").no_log());
    set.compile(&Lib::src("c1", "use_f.c").flag("-L{dir}/old").dep("ver").no_log());
    set.compile(&Lib::src("c2", "use_f.c").dep("ver").no_log());
    set.compile(&Lib::src("c3", "use_f.c").flag("-L{dir}/future").dep("ver").no_log());
    set
}

#[test]
fn versioned_symbols() {
    let set = versioned_set("capi-ver");
    let script = [
        "open $c1 NOW",
        "call h1 use_f",
        "open $c2 NOW",
        "call h2 use_f",
        "open $c3 NOW",
        "open $ver NOW",
        "call h3 f",
        "vcall h3 f V1",
        "vcall h3 f V2",
        "vcall h3 f V3",
        "vcall h3 g V1",
        "vcall h3 g V2",
        "call DEFAULT f",
    ];
    let (g, _) = compare(&set, &script);
    let out = &g.stdout;
    assert!(out.contains("call use_f: 1\nopen libcapi_ver_c2.so: h2\ncall use_f: 2\n"), "{out}");
    assert!(out.contains("version `V3' not found (required by"), "{out}");
    assert!(out.contains("call f: 2\nvcall f: 1\nvcall f: 2\nvcall f: NULL ("), "{out}");
    assert!(out.contains("undefined symbol: f, version V3)"), "{out}");
}

#[test]
fn ifunc_ours_and_libcs() {
    let set = Set::build("capi-ifunc", &[Lib::src("i", "ifunc.c")]);
    let script = ["open $i NOW", "call h1 call_pick", "call h1 pick", "call h1 memcpy_works", "call h1 memcpy_matches_dlsym", "call h1 strlen_works", "same h1 DEFAULT memcpy"];
    let (g, _) = compare(&set, &script);
    assert!(g.stdout.contains("call call_pick: 11\ncall pick: 11\ncall memcpy_works: 1\ncall memcpy_matches_dlsym: 1\ncall strlen_works: 7\nsame memcpy: yes"), "{}", g.stdout);
}

#[test]
fn relr_relocations() {
    let set = Set::build("capi-relr", &[Lib::src("r", "relr.c").flag("-Wl,-z,pack-relative-relocs")]);
    let dynamic = run(std::process::Command::new("readelf").arg("-d").arg(set.path("r")));
    assert!(String::from_utf8_lossy(&dynamic.stdout).contains("(RELR)"), "the fixture must use DT_RELR");
    let script = ["open $r NOW", "call h1 relr_ok", "close h1", "maps _relr_r"];
    let (g, _) = compare(&set, &script);
    assert!(g.stdout.contains("call relr_ok: 1"), "{}", g.stdout);
}
