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
    };
}

testkit::with_scenarios!(scenario_tests);
