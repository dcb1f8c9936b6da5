//! Fault injection without loader changes: loads that fail because the
//! process ran out of descriptors (RLIMIT_NOFILE) or address space
//! (RLIMIT_AS), because a dependency three levels down is missing, or in a
//! constructor's own dlopens. `fixtures/fault_injection.c` makes each
//! happen under glibc and under dynload: the error must be glibc's text,
//! nothing of the failed load may stay mapped or open, and the same load
//! must succeed once the cause is gone, in the same process.

use testkit::{mapped_in, program, run_program, Lib, Loader, Run, Set};

/// A node object with no shared symbols, whose `id_<name>()` is `value`.
fn node(name: &str, value: i32) -> Lib {
    Lib::node(name, value).define("NO_SHARED", "1").no_log()
}

/// Run the program in `mode` under glibc and under dynload; both must
/// exit 0. `watch` names the files whose mappings and descriptors count.
fn both(set: &Set, args: &[String], watch: &str) -> (Run, Run) {
    let prog = program("fault_injection.c");
    let env = [("WATCH", watch)];
    let (g, gs) = run_program(&prog, args, &set.dir, Loader::Glibc, &env);
    assert!(gs.success(), "glibc: {gs}\n{}\n{}", g.stdout, g.stderr);
    let (d, ds) = run_program(&prog, args, &set.dir, Loader::Dynload, &env);
    assert!(ds.success(), "dynload: {ds}\n{}\n{}", d.stdout, d.stderr);
    (g, d)
}

fn contains(run: &Run, line: &str) {
    assert!(
        run.stdout.contains(line),
        "no {line:?} in:\n{}\n{}",
        run.stdout,
        run.stderr
    );
}

/// The file-name prefix of a set's objects (what `WATCH` matches).
fn prefix(set: &Set) -> String {
    format!("lib{}_", set.prefix)
}

/// No descriptor left (RLIMIT_NOFILE at the lowest free one): glibc's
/// "Too many open files", nothing mapped or open, and the load succeeds
/// once the limit is back (dynload's first call, which sets it up, is the
/// limited one). With exactly one descriptor left (after a first call) the
/// load succeeds: dynload, like glibc, holds one object's file at a time.
#[test]
fn descriptors_run_out_then_come_back() {
    let set = Set::build(
        "capi-faults-nofile",
        &[
            node("l2", 2),
            node("l1", 1).dep("l2"),
            node("top", 4).dep("l1"),
        ],
    );
    let watch = prefix(&set);
    let args = |mode: &str| vec![mode.to_string(), set.path("top"), "id_top".into()];
    let (g, d) = both(&set, &args("nofile"), &watch);
    assert_eq!(g.stdout, d.stdout, "glibc and dynload disagree");
    contains(
        &d,
        &format!(
            "limited: NULL ({}: cannot open shared object file: Too many open files)\nmapped: 0, open: 0, dlerror: NULL\nrestored: ok id_top=4\nclose: 0\nmapped at the end: 0\n",
            set.path("top")
        ),
    );
    // dynload set itself up at that first dlopen, with no descriptor for
    // its DYNLOAD_DEBUG_OUTPUT file: its debug output went to stderr.
    let debug = format!("{}{}", d.debug, d.stderr);
    assert!(mapped_in(&debug, &set.file("l2")), "{debug}");

    let (g, d) = both(&set, &args("onefd"), &watch);
    assert_eq!(g.stdout, d.stdout, "glibc and dynload disagree");
    contains(&d, "limited: ok id_top=4\nclose: 0\nmapped at the end: 0\n");
    assert!(mapped_in(&d.debug, &set.file("l2")), "{}", d.debug);
}

/// No room in the address space (RLIMIT_AS 64 MiB above what the process
/// uses) for a dependency whose bss is 256 MiB: the load fails with
/// glibc's "failed to map segment from shared object", neither object
/// stays mapped, and the load succeeds once the limit is back.
#[test]
fn address_space_runs_out_then_comes_back() {
    let set = Set::build(
        "capi-faults-as",
        &[
            Lib::src("big", "big_bss.c").no_log(),
            node("astop", 6).dep("big"),
        ],
    );
    let segments = testkit::readelf("-l", set.path("big"));
    assert!(segments.contains("0x10000"), "no 256 MiB bss:\n{segments}");
    let args = vec!["as".to_string(), set.path("astop"), "id_astop".into()];
    let (g, d) = both(&set, &args, &prefix(&set));
    for run in [&g, &d] {
        assert!(
            run.stdout.starts_with("limited: NULL (")
                && run
                    .stdout
                    .contains("failed to map segment from shared object"),
            "{}",
            run.stdout
        );
        contains(
            run,
            ")\nmapped: 0, open: 0, dlerror: NULL\nrestored: ok id_astop=6\nclose: 0\nmapped at the end: 0\n",
        );
    }
    assert!(mapped_in(&d.debug, &set.file("big")), "{}", d.debug);
    // The same words as glibc's: the dependency's name as DT_NEEDED gives
    // it, and no errno (glibc's _dl_map_segments failure has none).
    assert_eq!(
        g.stdout.lines().next(),
        d.stdout.lines().next(),
        "dlerror differs from glibc's"
    );
}

/// top needs l1, l1 needs l2, l2 needs l3, and l3 is missing: glibc's
/// error names l3, nothing of top, l1 or l2 stays mapped or open, and once
/// l3 is back the same open succeeds.
#[test]
fn dependency_missing_three_levels_down_then_restored() {
    let set = Set::build(
        "capi-faults-deep",
        &[
            node("l3", 3),
            node("l2", 2).dep("l3"),
            node("l1", 1).dep("l2"),
            node("top", 4).dep("l1"),
        ],
    );
    let hidden = set.dir.join("hidden-l3.so").to_string_lossy().into_owned();
    let args = vec![
        "deep".to_string(),
        set.path("top"),
        "id_top".into(),
        hidden,
        set.path("l3"),
    ];
    let (g, d) = both(&set, &args, &prefix(&set));
    assert_eq!(g.stdout, d.stdout, "glibc and dynload disagree");
    contains(
        &d,
        &format!(
            "hide: done\nmissing: NULL ({}: cannot open shared object file: No such file or directory)\nmapped: 0, open: 0, dlerror: NULL\nrestore: done\nrestored: ok id_top=4\nclose: 0\nmapped at the end: 0\n",
            set.file("l3")
        ),
    );
    assert!(mapped_in(&d.debug, &set.file("l3")), "{}", d.debug);
}

/// A constructor whose own dlopens fail — a name that exists nowhere, and
/// an object whose dependency is missing (rolled back in the middle of the
/// load that runs the constructor) — leaving that error pending and errno
/// dirty: the outer load succeeds, twice (the constructor runs again after
/// a close), nothing of the half-loaded object stays, and what the
/// constructor and the caller see from dlerror is what glibc shows: the
/// nested error stays pending for the caller after the outer dlopen, as
/// glibc 2.36 leaves it. (A constructor that aborts would end the process;
/// one that fails inside the loader and carries on is the case a loader
/// must survive.)
#[test]
fn constructor_whose_own_dlopens_fail() {
    let set = Set::build(
        "capi-faults-ctor",
        &[node("gone", 7), node("half", 8).dep("gone")],
    );
    std::fs::remove_file(set.path("gone")).unwrap();
    set.compile(
        &Lib::src("ctor", "ctor_failing_dlopen.c")
            .no_log()
            .define("MISSING", "\"libdynload-no-such-object.so\"")
            .define("HALF", &format!("\"{}\"", set.path("half"))),
    );
    let args = vec!["ctor".to_string(), set.path("ctor")];
    let (g, d) = both(&set, &args, &set.file("half"));
    assert_eq!(g.stdout, d.stdout, "glibc and dynload disagree");
    let round = format!(
        "loaded, dlerror after it: {}: cannot open shared object file: No such file or directory\nconstructor's dlopen of a missing name: libdynload-no-such-object.so: cannot open shared object file: No such file or directory\nconstructor's dlopen with a missing dependency refused: 1\nmapped: 0, open: 0\nclose: 0\n",
        set.file("gone")
    );
    contains(
        &d,
        &format!("round 1: {round}round 2: {round}mapped at the end: 0\n"),
    );
    assert!(mapped_in(&d.debug, &set.file("ctor")), "{}", d.debug);
}
