//! C ABI behaviour with no Rust API counterpart: per-thread dlerror state,
//! RTLD_NEXT and RTLD_DEFAULT from the main program, dlinfo, dlopen(NULL),
//! relative paths, dl_iterate_phdr, and a name found only through
//! /etc/ld.so.cache — compared with glibc.

use testkit::{compare, dynload_mapped, Lib, Set};

#[test]
fn dlerror_is_cleared_and_reported_once() {
    let set = Set::build("capi-dlerror", &[]);
    // The last error wins, is reported once, and the next successful call
    // clears it; a failed dladdr sets none.
    let script = [
        "openq libnope-1.so NOW",
        "openq libnope-2.so NOW",
        "dlerror",
        "dlerror",
        "openq libnope-3.so NOW",
        "openq NULL NOW",
        "dlerror",
        "symq h1 no_such_symbol_xyz",
        "dlerror",
        "dlerror",
        "symq h1 no_such_symbol_xyz",
        "dladdr 0x10",
        "dlerror",
    ];
    let (g, _) = compare(&set, &script);
    assert!(g.stdout.contains("dlerror: libnope-2.so: cannot open shared object file: No such file or directory\ndlerror: NULL\n"), "{}", g.stdout);
    assert!(
        g.stdout.contains("openq NULL: h1\ndlerror: NULL\n"),
        "{}",
        g.stdout
    );
    assert!(
        g.stdout
            .contains("undefined symbol: no_such_symbol_xyz\ndlerror: NULL\n"),
        "{}",
        g.stdout
    );
    // A failed dladdr neither sets nor clears the error: dlerror still
    // reports the failed lookup before it.
    let tail = g
        .stdout
        .split("dladdr 0x10: 0\n")
        .nth(1)
        .unwrap_or_default();
    assert!(
        tail.starts_with("dlerror: ") && tail.contains("undefined symbol: no_such_symbol_xyz"),
        "{}",
        g.stdout
    );
}

#[test]
fn rtld_next_and_default_from_the_main_program() {
    let set = Set::build("capi-next", &[]);
    let script = [
        "sym NEXT puts",
        "sym DEFAULT puts",
        "sym DEFAULT no_such_symbol_anywhere",
        "dlerror",
    ];
    let (g, _) = compare(&set, &script);
    assert!(
        g.stdout.contains("sym puts: found\nsym puts: found"),
        "{}",
        g.stdout
    );
}

#[test]
fn rtld_default_from_the_main_program_marks_the_definer_nodelete() {
    // glibc records a dependency of the caller on the object a RTLD_DEFAULT
    // lookup found; the main program can never be unloaded, so the object
    // becomes NODELETE and survives its last dlclose.
    let set = Set::build("capi-defaultpin", &[Lib::node("a", 1)]);
    let script = [
        "open $a NOW|GLOBAL",
        "call DEFAULT id_a",
        "close h1",
        "maps @a",
        "open $a NOW|NOLOAD",
    ];
    let (g, _) = compare(&set, &script);
    assert!(g.stdout.contains("call id_a: 1\nclose h1: 0\nmaps libcapi_defaultpin_a.so: 1\nopen libcapi_defaultpin_a.so: h2"), "{}", g.stdout);
}

#[test]
fn a_c_runtime_dependency_is_handed_to_glibc_before_the_others_are_mapped() {
    // m needs x, then libm, which the driver does not link: glibc loads
    // libm and the load starts over. x is not mapped in the round that
    // stops for libm, only in the one that completes.
    let set = Set::build(
        "capi-cruntimefirst",
        &[
            Lib::node("x", 1).no_log(),
            Lib::node("m", 2).no_log().flag("-l{prefix}_x").flag("-lm"),
        ],
    );
    let script = ["open $m NOW", "call h1 id_m", "maps /libm.so.6"];
    let (g, d) = compare(&set, &script);
    assert!(g.stdout.ends_with("maps /libm.so.6: 1\n"), "{}", g.stdout);
    let rounds = |what: &str| {
        d.debug
            .lines()
            .filter(|l| l.contains(what) && l.contains("generating link map"))
            .count()
    };
    assert_eq!(rounds("libcapi_cruntimefirst_m.so"), 2, "{}", d.debug);
    assert_eq!(rounds("libcapi_cruntimefirst_x.so"), 1, "{}", d.debug);
}

#[test]
fn rtld_default_from_the_main_program_makes_a_glibc_object_nodelete() {
    // The same for libm, which glibc loaded for the set's object: dynload
    // asks glibc to make it NODELETE (RTLD_NOLOAD|RTLD_NODELETE).
    let set = Set::build(
        "capi-defaultpinhost",
        &[Lib::node("m", 1).no_log().flag("-lm")],
    );
    let script = [
        "open $m NOW|GLOBAL",
        "sym DEFAULT cos",
        "close h1",
        "maps /libm.so.6",
    ];
    let (g, _) = compare(&set, &script);
    assert!(
        g.stdout
            .ends_with("sym cos: found\nclose h1: 0\nmaps /libm.so.6: 1\n"),
        "{}",
        g.stdout
    );
}

#[test]
fn dlinfo_origin_and_relative_paths() {
    let set = Set::build("capi-dlinfo", &[Lib::node("a", 1)]);
    std::os::unix::fs::symlink(set.path("a"), set.dir.join("alias.so")).unwrap();
    // A relative name's origin is the current directory plus its directory.
    let script = [
        "open ./alias.so NOW",
        "origin h1",
        "open $a NOW",
        "origin h1",
    ];
    let (g, d) = compare(&set, &script);
    assert!(
        g.stdout.contains(&format!(
            "open alias.so: h1\norigin: {}/.\n",
            set.dir.display()
        )),
        "{}",
        g.stdout
    );
    assert!(dynload_mapped(&d, "alias.so"), "{}", d.debug);
}

#[test]
fn dl_iterate_phdr_sees_both_worlds() {
    let set = Set::build("capi-iterate", &[Lib::node("a", 1)]);
    let script = [
        "iterate libc.so",
        "open $a NOW",
        "iterate _iterate_",
        "iterate libc.so",
        // dlpi_phdr points into the mapped image (PT_PHDR), as glibc's
        // does: code finds the ELF header from it.
        "phdroff _iterate_a",
        "close h1",
        "iterate _iterate_",
    ];
    let (g, _) = compare(&set, &script);
    assert!(
        g.stdout.contains("phdroff: libcapi_iterate_a.so 0x40\n"),
        "{}",
        g.stdout
    );
    assert!(
        g.stdout
            .contains("iterate: libcapi_iterate_a.so libcapi_iterate_log.so\n"),
        "{}",
        g.stdout
    );
    assert!(g.stdout.ends_with("iterate:\n"), "{}", g.stdout);
}

#[test]
fn a_name_found_only_through_ld_so_cache() {
    let (name, cleanup) = testkit::cache_only_library();
    let set = Set::build("capi-cache", &[]);
    let script = [
        format!("open {name} NOW"),
        "call h1 id_cached".to_string(),
        "close h1".to_string(),
    ];
    let script: Vec<&str> = script.iter().map(String::as_str).collect();
    let (g, d) = compare(&set, &script);
    drop(cleanup);
    assert!(
        g.stdout
            .starts_with(&format!("open {name}: h1\ncall id_cached: 77\n")),
        "{}",
        g.stdout
    );
    assert!(dynload_mapped(&d, &name), "{}", d.debug);
}

#[test]
fn dlerror_is_per_thread() {
    let set = Set::build("capi-tdlerror", &[]);
    let script = ["openq libnope-thread.so NOW", "tdlerror", "dlerror"];
    let (g, _) = compare(&set, &script);
    assert!(
        g.stdout
            .contains("tdlerror: NULL\ndlerror: libnope-thread.so: cannot open"),
        "{}",
        g.stdout
    );
}

#[test]
fn dlinfo_requests() {
    // SERINFO lists DT_RUNPATH ($ORIGIN of a) and the default directories;
    // LMID, LINKMAP (the handle itself), PHDR, and an unsupported request.
    let set = Set::build("capi-serinfo", &[Lib::node("a", 1)]);
    let script = [
        "open $a NOW",
        "serinfo h1",
        "dlinfo h1",
        "open NULL NOW",
        "dlinfo h2",
    ];
    let (g, _) = compare(&set, &script);
    assert!(
        g.stdout.contains(&format!(
            "serinfo: 5 dirs: {} /lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu /lib /usr/lib",
            set.dir.display()
        )),
        "{}",
        g.stdout
    );
    assert!(
        g.stdout
            .contains("dlinfo: lmid 0/0 linkmap 0 libcapi_serinfo_a.so handle=yes phnum 9 phdr ok"),
        "{}",
        g.stdout
    );
    assert!(
        g.stdout
            .contains("dlinfo bad request: -1 (unsupported dlinfo request)"),
        "{}",
        g.stdout
    );
}

#[test]
fn dl_iterate_phdr_counters_count_loads_and_unloads() {
    let set = Set::build(
        "capi-counters",
        &[Lib::node("b", 2), Lib::node("a", 1).dep("b")],
    );
    let script = [
        "counters",
        "open $a NOW",
        "counters",
        "close h1",
        "counters",
    ];
    let (g, _) = compare(&set, &script);
    assert!(g.stdout.contains("counters: +0 -0\nopen libcapi_counters_a.so: h1\ncounters: +3 -0\nclose h1: 0\ncounters: +3 -3\n"), "{}", g.stdout);
}

#[test]
fn a_closed_handle_is_refused_not_read() {
    // glibc reads freed memory here (undefined behaviour, so there is no
    // glibc run to compare with): dynload says what is wrong.
    let set = Set::build("capi-stale", &[Lib::node("a", 1).no_log()]);
    let script = [
        "open $a NOW",
        "close h1",
        "close h1",
        "sym h1 id_a",
        "dlerror",
    ];
    let d = testkit::run_driver(&set, &script, testkit::Loader::Dynload, &[]);
    assert_eq!(
        d.stdout,
        "open libcapi_stale_a.so: h1\nclose h1: 0\nclose h1: -1 (shared object not open)\nsym id_a: invalid handle\ndlerror: NULL\n"
    );
    assert!(testkit::dynload_mapped(&d, "_a.so"), "{}", d.debug);
}

#[test]
fn dladdr1_and_dlmopen_in_the_base_namespace() {
    let set = Set::build("capi-dladdr1", &[Lib::node("a", 1).no_log()]);
    let script = [
        "open $a NOW",
        "dladdr1 h1 id_a",
        "dlmopen BASE $a NOW",
        "close h1",
        "close h1",
        "maps @a",
    ];
    let (g, _) = compare(&set, &script);
    assert!(
        g.stdout.contains("dladdr1 id_a: 1 id_a size=")
            && g.stdout
                .contains(" 1 libcapi_dladdr1_a.so\ndlmopen libcapi_dladdr1_a.so: h1\n")
            && g.stdout.ends_with("maps libcapi_dladdr1_a.so: 0\n"),
        "{}",
        g.stdout
    );
}

#[test]
fn what_dynload_adds_and_refuses() {
    // dynload.h's additions; a new namespace (not supported, said so);
    // dl_iterate_phdr lists glibc's objects, then dynload's.
    let set = Set::build("capi-additions", &[Lib::node("a", 1).no_log().flag("-lm")]);
    let script = [
        "dynloadapi",
        "openq libdynload-nope.so NOW",
        "explain",
        "open $a NOW",
        "explain",
        "dlmopen NEWLM $a NOW",
        "iterate lib",
    ];
    let d = testkit::run_driver(&set, &script, testkit::Loader::Dynload, &[]);
    let out = &d.stdout;
    assert!(
        out.starts_with(&format!("dynloadapi: {}\n", env!("CARGO_PKG_VERSION"))),
        "{out}"
    );
    assert!(
        out.contains("explain: libdynload-nope.so: cannot open shared object file: No such file or directory\n  tried, in order:\n    /etc/ld.so.cache (no entry)\n"),
        "{out}"
    );
    assert!(
        out.contains("open libcapi_additions_a.so: h1\nexplain: NULL\n"),
        "{out}"
    );
    assert!(
        out.contains("dlmopen libcapi_additions_a.so: NULL (")
            && out.contains("dlmopen(LM_ID_NEWLM) is not supported by dynload)"),
        "{out}"
    );
    let order: Vec<&str> = out
        .lines()
        .find_map(|l| l.strip_prefix("iterate: "))
        .unwrap()
        .split(' ')
        .collect();
    let at = |n: &str| {
        order
            .iter()
            .position(|o| *o == n)
            .unwrap_or_else(|| panic!("{n} not in {order:?}"))
    };
    // libm was loaded by glibc for a (after a was mapped), yet comes first.
    assert!(at("libc.so.6") < at("libcapi_additions_a.so"), "{order:?}");
    assert!(at("libm.so.6") < at("libcapi_additions_a.so"), "{order:?}");
    assert_eq!(
        *order.last().unwrap(),
        "libcapi_additions_a.so",
        "{order:?}"
    );
}
