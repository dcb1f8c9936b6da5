//! Finding files: $ORIGIN in DT_RPATH and DT_RUNPATH, RPATH inheritance
//! (and RUNPATH's lack of it), LD_LIBRARY_PATH and its place in the order,
//! dlopen from a library using that library's paths, and a name found only
//! through /etc/ld.so.cache — compared with glibc.

use testkit::{compare, compare_env, Lib, Set};

#[test]
fn origin_in_runpath() {
    let set = Set::build("capi-runpath", &[Lib::node("osub", 5).subdir("sub").no_log(), Lib::node("o", 1).no_runpath().no_log().flag("-Wl,-rpath,$ORIGIN/sub").dep("osub")]);
    let script = ["open $o NOW", "call h1 id_osub", "origin h1"];
    let (g, _) = compare(&set, &script);
    assert!(g.stdout.contains("call id_osub: 5"), "{}", g.stdout);
}

#[test]
fn origin_in_rpath_is_inherited_by_dependencies() {
    // r's DT_RPATH finds rsub, and also rsub's own dependency rsub2.
    let set = Set::build(
        "capi-rpath",
        &[
            Lib::node("rsub2", 7).subdir("other").no_runpath().no_log(),
            Lib::node("rsub", 6).subdir("other").no_runpath().no_log().dep("rsub2"),
            Lib::node("r", 1).no_runpath().no_log().flag("-Wl,--disable-new-dtags,-rpath,$ORIGIN/other").dep("rsub"),
        ],
    );
    let script = ["open $r NOW", "call h1 id_rsub2"];
    let (g, _) = compare(&set, &script);
    assert!(g.stdout.contains("call id_rsub2: 7"), "{}", g.stdout);
}

#[test]
fn runpath_is_not_inherited() {
    let set = Set::build(
        "capi-noinherit",
        &[
            Lib::node("nsub2", 7).subdir("sub").no_runpath().no_log(),
            Lib::node("nsub", 6).subdir("sub").no_runpath().no_log().dep("nsub2"),
            Lib::node("n", 1).no_runpath().no_log().flag("-Wl,-rpath,$ORIGIN/sub").dep("nsub"),
        ],
    );
    let script = ["open $n NOW", "maps _noinherit_nsub"];
    let (g, _) = compare(&set, &script);
    assert!(g.stdout.contains("NULL (libcapi_noinherit_nsub2.so: cannot open shared object file: No such file or directory)"), "{}", g.stdout);
}

#[test]
fn dlopen_from_a_library_uses_its_runpath() {
    let set = Set::build("capi-plugin", &[Lib::node("plugin", 42).subdir("plugins").no_log()]);
    set.compile(&Lib::src("opener", "opener.c").no_runpath().no_log().flag("-Wl,-rpath,$ORIGIN/plugins").define("PLUGIN", "\"libcapi_plugin_plugin.so\""));
    let script = ["open @plugin NOW", "open $opener NOW", "call h1 open_plugin", "call h1 plugin_which", "call h1 next_which"];
    let (g, _) = compare(&set, &script);
    assert!(g.stdout.contains("call open_plugin: 1\ncall plugin_which: 42"), "{}", g.stdout);
}

#[test]
fn ld_library_path_and_its_place_in_the_order() {
    // twin exists in sub/ (10) and other/ (20). p finds it through its
    // RUNPATH (sub) unless LD_LIBRARY_PATH (other) comes first; q's DT_RPATH
    // (sub) comes before LD_LIBRARY_PATH.
    let set = Set::build(
        "capi-ldpath",
        &[
            Lib::node("twin", 10).subdir("sub").no_runpath().no_log(),
            Lib::node("twin", 20).subdir("other").no_runpath().no_log(),
            Lib::node("p", 1).no_runpath().no_log().flag("-Wl,-rpath,$ORIGIN/sub").flag("-L{dir}/sub").dep("twin"),
            Lib::node("q", 2).no_runpath().no_log().flag("-Wl,--disable-new-dtags,-rpath,$ORIGIN/sub").flag("-L{dir}/sub").dep("twin"),
        ],
    );
    let script = ["open @p NOW", "open $p NOW", "call h1 id_twin"];
    let (g, _) = compare(&set, &script);
    assert!(g.stdout.contains("call id_twin: 10"), "{}", g.stdout);
    let other = set.dir.join("other").to_string_lossy().into_owned();
    let (g, _) = compare_env(&set, &script, &[("LD_LIBRARY_PATH", &other)]);
    assert!(g.stdout.contains("call id_twin: 20"), "{}", g.stdout);
    let script = ["open $q NOW", "call h1 id_twin"];
    let (g, _) = compare_env(&set, &script, &[("LD_LIBRARY_PATH", &other)]);
    assert!(g.stdout.contains("call id_twin: 10"), "{}", g.stdout);
    // A bare name through LD_LIBRARY_PATH, with ':' and ';' separators and
    // an empty element.
    let path = format!("/nonexistent;{}::{}", set.dir.join("sub").display(), set.dir.display());
    let script = ["open @p NOW", "call h1 id_twin"];
    compare_env(&set, &script, &[("LD_LIBRARY_PATH", &path)]);
}

#[test]
fn a_name_found_only_through_ld_so_cache() {
    let (name, cleanup) = testkit::cache_only_library();
    let set = Set::build("capi-cache", &[]);
    let script = [format!("open {name} NOW"), "sym h1 id_cached".to_string(), "close h1".to_string()];
    let script: Vec<&str> = script.iter().map(String::as_str).collect();
    let (g, d) = compare(&set, &script);
    drop(cleanup);
    assert!(g.stdout.starts_with(&format!("open {name}: h1\n")), "{}", g.stdout);
    assert!(testkit::dynload_mapped(&d, &name), "{}", d.debug);
}
