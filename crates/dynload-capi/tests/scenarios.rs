//! The shared loader scenarios (testkit::scenarios) through dynload's C ABI:
//! each runs in the driver with glibc, then with LD_PRELOAD=libdynload.so,
//! and the two outputs must be identical; DYNLOAD_DEBUG=files shows that
//! dynload, not glibc, mapped the objects.

use testkit::scenarios::{self, Scenario};

fn run(sc: Scenario) {
    let (g, d) = testkit::compare_env(&sc.set, &sc.script(), &sc.env_refs());
    sc.check(&g.stdout);
    // Every object of the set that glibc opened, dynload mapped.
    let ours = format!("lib{}_", sc.set.prefix);
    for line in g.stdout.lines() {
        if let Some(name) = line
            .strip_prefix("open ")
            .filter(|l| l.starts_with(&ours) && l.contains(": h"))
            .and_then(|l| l.split(':').next())
        {
            // Named by path, or by the bare DT_NEEDED name.
            assert!(
                testkit::mapped_in(&d.debug, &format!("/{name} [0]"))
                    || testkit::mapped_in(&d.debug, &format!("={name} [0]")),
                "dynload did not map {name}:\n{}",
                d.debug
            );
        }
    }
}

macro_rules! scenario_tests {
    ($($name:ident),* $(,)?) => {
        $(#[test] fn $name() { run(scenarios::$name("capi")) })*
    };
}

testkit::with_scenarios!(scenario_tests);
