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

/// Run a scenario through the C ABI with the files and scopes traced, check
/// its output, and give the trace's lines and where in them a global
/// scope filter was built, after checking that it was twice.
fn filters_built(sc: &Scenario) -> (Vec<String>, Vec<usize>) {
    let run = testkit::run_driver(
        &sc.set,
        &sc.script(),
        testkit::Loader::Dynload,
        &[("DYNLOAD_DEBUG", "files,scopes")],
    );
    sc.check(&run.stdout);
    let lines: Vec<String> = run.debug.lines().map(str::to_owned).collect();
    let built: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].contains("global scope filter:"))
        .collect();
    assert_eq!(built.len(), 2, "filters built:\n{}", run.debug);
    (lines, built)
}

/// The scenario `global_scope_filter` checks that bindings stay right; this
/// checks that the filter it is about was in play: built for `u1`, dropped
/// when `i` became global, and built again for `u2`.
#[test]
fn global_scope_filter_is_built_again_after_the_scope_changes() {
    filters_built(&scenarios::global_scope_filter("capi-filter"));
}

/// The scenario `lazy_calls_and_the_global_scope_filter` checks the
/// bindings; this checks that its lazily bound calls were made with the
/// filter built (for `u1`, then again for `u3`), so that they are the ones
/// the filter answered.
#[test]
fn lazy_calls_are_made_with_the_global_scope_filter_built() {
    let sc = scenarios::lazy_calls_and_the_global_scope_filter("capi-lazy-filter");
    let (lines, built) = filters_built(&sc);
    let at = |object: &str| {
        let file = sc.set.file(object);
        lines
            .iter()
            .position(|l| l.contains(&file))
            .unwrap_or_else(|| panic!("no {file:?} in:\n{}", lines.join("\n")))
    };
    assert!(
        built[0] < at("u2") && built[1] < at("u4"),
        "{}",
        lines.join("\n")
    );
}
