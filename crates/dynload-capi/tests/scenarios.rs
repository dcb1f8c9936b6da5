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
/// scope filter was built, after checking that it was `times` times.
fn filters_built(sc: &Scenario, times: usize) -> (Vec<String>, Vec<usize>) {
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
    assert_eq!(built.len(), times, "filters built:\n{}", run.debug);
    (lines, built)
}

/// The scenario `global_scope_filter` checks that bindings stay right; this
/// checks that the filter it is about was in play: built for `u1` (after
/// `u0`'s one-off), kept, dropped when `i` became global, and built again
/// for `u2`.
#[test]
fn global_scope_filter_is_built_again_after_the_scope_changes() {
    let sc = scenarios::global_scope_filter("capi-filter");
    let (lines, built) = filters_built(&sc, 3);
    let at = |object: &str| first_mention(&sc, &lines, object);
    assert!(
        built[0] < at("u1") && built[1] < at("i") && built[2] > at("i"),
        "{}",
        lines.join("\n")
    );
}

/// The scenario `lazy_calls_and_the_global_scope_filter` checks the
/// bindings; this checks that its lazily bound calls were made with the
/// filter built (for `u1`, after `u0`'s one-off, then again for `u3`), so
/// that they are the ones the filter answered.
#[test]
fn lazy_calls_are_made_with_the_global_scope_filter_built() {
    let sc = scenarios::lazy_calls_and_the_global_scope_filter("capi-lazy-filter");
    let (lines, built) = filters_built(&sc, 3);
    let at = |object: &str| first_mention(&sc, &lines, object);
    assert!(
        built[0] < at("u1") && built[1] < at("u2") && built[2] < at("u4"),
        "{}",
        lines.join("\n")
    );
}

/// Where the trace first names `object`'s file.
fn first_mention(sc: &Scenario, lines: &[String], object: &str) -> usize {
    let file = sc.set.file(object);
    lines
        .iter()
        .position(|l| l.contains(&file))
        .unwrap_or_else(|| panic!("no {file:?} in:\n{}", lines.join("\n")))
}

/// The scenario `global_scope_filter_refined` checks the bindings made with
/// the finer filter; this checks that it was the finer one: built coarse
/// for `u1` (after `u0`'s one-off), rebuilt fine during `u1`'s loads, at
/// twice the bytes for the same symbols, and built fine again for `u2`
/// once `i` joined the scope.
#[test]
fn global_scope_filter_is_refined_after_many_lookups() {
    let sc = scenarios::global_scope_filter_refined("capi-refined");
    let (lines, all) = filters_built(&sc, 4);
    // (The first, `u0`'s, is the one-off.)
    assert!(all[0] < first_mention(&sc, &lines, "u1"));
    let built = &all[1..];
    let filter = |i: usize| {
        let l = &lines[built[i]];
        let field = |after: &str| -> usize {
            let rest = &l[l.find(after).unwrap_or_else(|| panic!("{l}")) + after.len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().unwrap_or_else(|_| panic!("{l}"))
        };
        (
            field("objects, "),
            field("symbols, "),
            l.ends_with("(Fine)"),
        )
    };
    let (symbols, coarse_bytes, coarse_is_fine) = filter(0);
    let (same_symbols, fine_bytes, fine) = filter(1);
    assert!(!coarse_is_fine && fine, "{}", lines.join("\n"));
    assert_eq!(symbols, same_symbols);
    assert!(
        fine_bytes >= 2 * coarse_bytes - 8 && fine_bytes <= 2 * coarse_bytes,
        "{coarse_bytes} then {fine_bytes} bytes"
    );
    // Refined while `u1` came and went, before `i` was opened; and still fine
    // when built again for `u2`.
    let i = first_mention(&sc, &lines, "i");
    assert!(built[1] < i && built[2] > i && filter(2).2);
    // Enough loads to refine it: 512 lookups each.
    assert!(
        scenarios::REFINING_LOADS * 512 >= 8 * symbols,
        "{symbols} symbols"
    );
}
