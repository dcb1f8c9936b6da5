//! Constructor and destructor order for chain, diamond and cyclic
//! dependency graphs, compared with glibc under LD_PRELOAD.

use testkit::{compare, dynload_mapped, Lib, Set};

#[test]
fn chain() {
    let set = Set::build(
        "capi-chain",
        &[
            Lib::node("c", 3),
            Lib::node("b", 2).dep("c"),
            Lib::node("a", 1).dep("b"),
        ],
    );
    let script = [
        "open $log NOW",
        "open $a NOW",
        "log h1",
        "close h2",
        "log h1",
        "maps _chain_a",
    ];
    let (g, d) = compare(&set, &script);
    assert!(
        g.stdout
            .contains("log: ctor c,ctor b,ctor a,dtor a,dtor b,dtor c"),
        "{}",
        g.stdout
    );
    assert!(
        dynload_mapped(&d, "_a.so") && dynload_mapped(&d, "_c.so"),
        "{}",
        d.debug
    );
}

#[test]
fn held_dependency_outlives_its_user() {
    // With b held by its own handle, closing a runs only a's destructor
    // (the objects share no symbols, so no relocation dependency keeps a).
    let set = Set::build(
        "capi-held",
        &[
            Lib::plain("c"),
            Lib::plain("b").dep("c"),
            Lib::plain("a").dep("b"),
        ],
    );
    let script = [
        "open $log NOW",
        "open $a NOW",
        "open $b NOW",
        "close h2",
        "log h1",
        "close h3",
        "log h1",
    ];
    let (g, _) = compare(&set, &script);
    assert!(
        g.stdout.contains("log: ctor c,ctor b,ctor a,dtor a\n"),
        "{}",
        g.stdout
    );
    assert!(g.stdout.contains("dtor a,dtor b,dtor c\n"), "{}", g.stdout);
}

#[test]
fn relocation_dependency_keeps_the_definer() {
    // b and c bind `which` to a (first in a's search list): closing a while
    // b is held keeps a loaded, in glibc and in dynload.
    let set = Set::build(
        "capi-reldep",
        &[
            Lib::node("c", 3),
            Lib::node("b", 2).dep("c"),
            Lib::node("a", 1).dep("b"),
        ],
    );
    let script = [
        "open $log NOW",
        "open $a NOW",
        "open $b NOW",
        "close h2",
        "log h1",
        "maps _reldep_a",
        "close h3",
        "log h1",
        "maps _reldep_a",
    ];
    let (g, _) = compare(&set, &script);
    assert!(
        g.stdout.contains(
            "log: ctor c,ctor b,ctor a
maps _reldep_a: 1"
        ),
        "{}",
        g.stdout
    );
    assert!(
        g.stdout.ends_with(
            "dtor a,dtor b,dtor c
maps _reldep_a: 0
"
        ),
        "{}",
        g.stdout
    );
}

#[test]
fn diamond() {
    let set = Set::build(
        "capi-diamond",
        &[
            Lib::node("bottom", 4),
            Lib::node("right", 3).dep("bottom"),
            Lib::node("left", 2).dep("bottom"),
            Lib::node("top", 1).dep("left").dep("right"),
        ],
    );
    let script = [
        "open $log NOW",
        "open $top NOW",
        "log h1",
        "close h2",
        "log h1",
    ];
    let (g, _) = compare(&set, &script);
    assert!(g.stdout.contains("ctor bottom"), "{}", g.stdout);
}

#[test]
fn cycle() {
    // x needs y and y needs x: build y without x first, then x, then y again.
    let set = Set::build(
        "capi-cycle",
        &[Lib::node("y", 2), Lib::node("x", 1).dep("y")],
    );
    set.compile(&Lib::node("y", 2).dep("x"));
    let script = [
        "open $log NOW",
        "open $x NOW",
        "log h1",
        "close h2",
        "log h1",
        "open $y NOW",
        "log h1",
        "close h3",
        "log h1",
    ];
    compare(&set, &script);
}

#[test]
fn dlopen_of_a_loaded_dependency_runs_nothing_again() {
    let set = Set::build(
        "capi-depopen",
        &[Lib::node("b", 2), Lib::node("a", 1).dep("b")],
    );
    let script = [
        "open $log NOW",
        "open $a NOW",
        "open $b NOW",
        "log h1",
        "close h2",
        "log h1",
        "close h3",
        "log h1",
    ];
    compare(&set, &script);
}
