//! The shared loader scenarios (testkit::scenarios) through dynload's C ABI:
//! each runs in the driver with glibc, then with LD_PRELOAD=libdynload.so,
//! and the two outputs must be identical; DYNLOAD_DEBUG=files shows that
//! dynload, not glibc, mapped the objects.

use testkit::scenarios::{self, Scenario};

fn run(sc: Scenario) {
    let env: Vec<(&str, &str)> = sc
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let (g, d) = testkit::compare_env(&sc.set, &sc.script(), &env);
    sc.check(&g.stdout);
    let ours = format!("lib{}_", sc.set.prefix);
    let mapped_ours = d
        .debug
        .lines()
        .any(|l| l.contains("generating link map") && l.contains(&ours));
    let glibc_opened_any = g
        .stdout
        .lines()
        .any(|l| l.starts_with("open lib") && l.contains(": h"));
    assert!(
        mapped_ours || !glibc_opened_any,
        "dynload mapped none of the set's objects:\n{}",
        d.debug
    );
}

macro_rules! scenario_tests {
    ($($name:ident),* $(,)?) => {
        $(#[test] fn $name() { run(scenarios::$name("capi")) })*
        const LISTED: &[&str] = &[$(stringify!($name)),*];
    };
}

scenario_tests!(
    chain,
    held_dependency,
    relocation_dependency,
    diamond,
    cycle,
    reopen_dependency,
    global_before_local,
    deepbind,
    symbolic,
    protected,
    local_isolation,
    promotion,
    main_handle,
    handle_scope,
    noload,
    refcount,
    nodelete,
    nodelete_later,
    df_1_nodelete,
    invalid_modes,
    same_file,
    versions,
    ifunc,
    relr,
    missing_dependency,
    undefined_symbol,
    missing_version,
    origin_runpath,
    origin_rpath,
    runpath_not_inherited,
    plugin_runpath,
    ld_library_path,
    ld_library_path_vs_rpath,
    dladdr,
    nodeflib,
    sysv_hash,
    weak_references,
    constructor_arguments,
    constructor_reenters_the_loader,
    damaged_headers,
    unloadable_kinds,
    c_runtime_dependency,
);

#[test]
fn every_scenario_is_run() {
    let all: Vec<&str> = scenarios::ALL.iter().map(|(n, _)| *n).collect();
    assert_eq!(all, LISTED);
}
