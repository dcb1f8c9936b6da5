//! Many threads and thousands of cycles, through the Rust API, leaving
//! nothing behind. The objects (`fixtures/stress_*.c`) share a dependency
//! with thread-local storage; one of them dlopens another from its
//! constructor and closes it from its destructor. Each test runs alone in
//! a child process of this binary (one malloc arena, so that arenas made
//! by contending threads do not look like leaks), and the two never run
//! at once: they count the whole process's mappings, descriptors and
//! memory.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dynload::{Library, OpenFlags};
use testkit::{Lib, Set};

const CHILD: &str = "DYNLOAD_STRESS_TEST_CHILD";

/// Run test `name` in a child process; returns false in the child, where
/// the caller runs the body.
fn in_parent(name: &str) -> bool {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    if std::env::var_os(CHILD).is_some() {
        return false;
    }
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let started = Instant::now();
    let out = testkit::rerun_in_child(
        name,
        None,
        &[(CHILD, "1"), ("GLIBC_TUNABLES", "glibc.malloc.arena_max=1")],
    );
    // The child's figures, for the log.
    for l in out
        .lines()
        .filter_map(|l| l.find("stress:").map(|at| &l[at..]))
    {
        println!("{l}");
    }
    println!("stress: {name} took {:.1?} in its child", started.elapsed());
    true
}

/// xorshift64*: the threads' choices, the same on every run.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as usize % n
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

/// How many copies of the objects above base the stress set has: threads
/// work mostly in their own family, so that objects really unload and load
/// again while other threads use the shared dependency.
const FAMILIES: usize = 4;

/// base (TLS), shared by all; in each family f: af and bf need base; cf
/// needs af (and calls value_a, wherever the global scope finds it); df
/// needs bf; innerf needs base; openerf needs cf and base, and its
/// constructor opens innerf by bare name (through its DT_RUNPATH) and
/// counts the load in tally (when tally is global).
fn stress_set(name: &str, families: usize) -> Set {
    let leaf = |n: &str, f: usize, v: i32| {
        Lib::src(&format!("{n}{f}"), "stress_leaf.c")
            .no_log()
            .define("NAME", n)
            .define("VALUE", &v.to_string())
    };
    let set = Set::build(
        name,
        &[
            Lib::src("base", "stress_base.c").no_log(),
            Lib::src("tally", "stress_tally.c").no_log(),
        ],
    );
    for f in 0..families {
        let dep = |n: &str| format!("{n}{f}");
        for l in [
            leaf("a", f, 1).dep("base"),
            leaf("b", f, 2).dep("base"),
            leaf("c", f, 3)
                .dep(&dep("a"))
                .dep("base")
                .define("USES", "value_a"),
            leaf("d", f, 4).dep(&dep("b")).define("USES", "value_b"),
            leaf("inner", f, 77).dep("base"),
            Lib::src(&dep("opener"), "stress_opener.c")
                .no_log()
                .dep(&dep("c"))
                .dep("base")
                .define("INNER", &format!("\"{}\"", set.file(&dep("inner")))),
        ] {
            set.compile(&l);
        }
    }
    set
}

/// The kinds of object the threads open (in every family), what
/// `value_<kind>()` returns for each, and their work function.
const OPENED: [(&str, i32, &str); 5] = [
    ("a", 1001, "work_a"),
    ("b", 1002, "work_b"),
    ("c", 2004, "work_c"),
    ("d", 2006, "work_d"),
    ("opener", 1077, "opener_work"),
];

type ValueFn = extern "C" fn() -> i32;
type CountFn = extern "C" fn() -> i64;

/// Open the tally, global, for good: returns its count of the opener's
/// loads.
fn tally(set: &Set) -> CountFn {
    let lib =
        unsafe { Library::open(set.path("tally"), OpenFlags::NOW | OpenFlags::GLOBAL) }.unwrap();
    let count = *unsafe { lib.get::<CountFn>("tally_loads") }.unwrap();
    std::mem::forget(lib);
    count
}
type WorkFn = extern "C" fn(i64) -> i64;

/// Use an open object: its value (the opener's: what its constructor's
/// dlopen found), and its thread-local counter, which only this thread
/// changes: two calls differ by exactly the second call's argument.
fn exercise(lib: &Library, k: usize, salt: i64) -> Result<(), String> {
    let (name, want, work) = OPENED[k];
    let value_name = if name == "opener" {
        "opener_saw".to_string()
    } else {
        format!("value_{name}")
    };
    let value = *unsafe { lib.get::<ValueFn>(&value_name) }.map_err(|e| e.to_string())?;
    if value() != want {
        return Err(format!("{value_name}() = {}, not {want}", value()));
    }
    let work = *unsafe { lib.get::<WorkFn>(work) }.map_err(|e| e.to_string())?;
    let first = work(salt);
    let second = work(salt + 1);
    if second != first + salt + 1 {
        return Err(format!(
            "{name}: thread-local counter went {first} -> {second}"
        ));
    }
    Ok(())
}

/// What the process holds: the files it maps (and named regions such as
/// [heap]), the number of anonymous mappings, and its descriptors.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Holdings {
    files: BTreeSet<String>,
    anonymous: usize,
    fds: BTreeSet<(String, String)>,
}

fn holdings() -> Holdings {
    let maps = testkit::self_maps();
    let mut files = BTreeSet::new();
    let mut anonymous = 0;
    for l in maps.lines() {
        match l.split_whitespace().nth(5) {
            Some(path) => {
                files.insert(path.to_string());
            }
            None => anonymous += 1,
        }
    }
    let fds = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .map(|e| {
            let target = std::fs::read_link(e.path())
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            (e.file_name().to_string_lossy().into_owned(), target)
        })
        .collect();
    Holdings {
        files,
        anonymous,
        fds,
    }
}

fn rss_kb() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Write to standard error without Rust's lock (a stuck thread may hold
/// it), then abort: the watchdog's way out of a deadlock.
fn die(msg: &str) -> ! {
    // SAFETY: writing a buffer we own to descriptor 2.
    unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
    std::process::abort();
}

const THREADS: usize = 8;
/// Per thread; about 30 s for the whole run in a debug build on 2 cores.
const ITERATIONS: u64 = 10_000;
/// The anonymous mappings may differ by this many between the start and
/// the end. After the warm-up, thread stacks come from glibc's stack cache
/// and every TLS block dynload mapped for a thread has been unmapped at its
/// exit; what still moves is placement: glibc's malloc serves big requests
/// with mmap (its threshold adapts), and adjacent anonymous mappings with
/// the same protection merge or stay apart depending on what was unmapped
/// between them. A leak of one mapping per iteration would show as
/// thousands.
const ANONYMOUS_TOLERANCE: usize = 4;

/// 8 threads open, use and close overlapping sets of objects that share
/// dependencies (one opens another from its constructor), in shuffled
/// orders, with RTLD_NOW, RTLD_LAZY and RTLD_GLOBAL: every value is right,
/// no thread waits for 60 s (a watchdog aborts the process), and afterwards
/// the process maps exactly the files it mapped after a warm-up round, as
/// many anonymous mappings (within ANONYMOUS_TOLERANCE), and has the same
/// descriptors.
#[test]
fn eight_threads_open_use_and_close_overlapping_sets() {
    if in_parent("eight_threads_open_use_and_close_overlapping_sets") {
        return;
    }
    let set = stress_set("api-stress", FAMILIES);
    let loads = tally(&set);
    // paths[family][kind]
    let paths: Vec<Vec<String>> = (0..FAMILIES)
        .map(|f| {
            OPENED
                .iter()
                .map(|(n, _, _)| set.path(&format!("{n}{f}")))
                .collect()
        })
        .collect();
    let progress: Vec<AtomicU64> = (0..THREADS).map(|_| AtomicU64::new(0)).collect();
    let doing: Vec<AtomicU64> = (0..THREADS).map(|_| AtomicU64::new(0)).collect();
    let stop = AtomicBool::new(false);
    let run = |round: u64, iterations: u64| -> Vec<String> {
        std::thread::scope(|s| {
            let threads: Vec<_> = (0..THREADS)
                .map(|t| {
                    let (paths, progress, doing) = (&paths, &progress[t], &doing[t]);
                    s.spawn(move || {
                        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15 ^ (round << 32 | t as u64));
                        for i in 0..iterations {
                            // Its own family, or one in four times another.
                            let family = if rng.below(4) == 0 {
                                rng.below(FAMILIES)
                            } else {
                                t % FAMILIES
                            };
                            let mask = 1 + rng.below(31);
                            let mut order: Vec<usize> =
                                (0..OPENED.len()).filter(|k| mask & (1 << k) != 0).collect();
                            rng.shuffle(&mut order);
                            let flags = [
                                OpenFlags::NOW,
                                OpenFlags::LAZY,
                                OpenFlags::NOW | OpenFlags::GLOBAL,
                                OpenFlags::LAZY | OpenFlags::GLOBAL,
                            ][rng.below(4)];
                            let mut open = Vec::new();
                            for &k in &order {
                                // What this thread is doing, for the watchdog.
                                doing.store(1 + k as u64, Ordering::Relaxed);
                                let lib = unsafe { Library::open(&paths[family][k], flags) }
                                    .map_err(|e| format!("thread {t}, {i}: open: {e}"))?;
                                doing.store(10 + k as u64, Ordering::Relaxed);
                                exercise(&lib, k, i as i64)
                                    .map_err(|e| format!("thread {t}, {i}: {e}"))?;
                                open.push((k, lib));
                            }
                            rng.shuffle(&mut open);
                            for (k, lib) in open {
                                doing.store(20 + k as u64, Ordering::Relaxed);
                                lib.close()
                                    .map_err(|e| format!("thread {t}, {i}: close: {e}"))?;
                            }
                            doing.store(0, Ordering::Relaxed);
                            progress.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok::<(), String>(())
                    })
                })
                .collect();
            threads
                .into_iter()
                .filter_map(|t| t.join().unwrap().err())
                .collect()
        })
    };
    std::thread::scope(|s| {
        // The watchdog: the sum of the threads' iterations must move at
        // least once a minute.
        s.spawn(|| {
            let (mut last, mut since) = (u64::MAX, Instant::now());
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                let now: u64 = progress.iter().map(|p| p.load(Ordering::Relaxed)).sum();
                if now != last {
                    (last, since) = (now, Instant::now());
                } else if since.elapsed() > Duration::from_secs(60) {
                    let state: Vec<String> = (0..THREADS)
                        .map(|t| {
                            let d = doing[t].load(Ordering::Relaxed) as usize;
                            let what = match d {
                                0 => "between iterations".to_string(),
                                1..=9 => format!("opening {}", OPENED[d - 1].0),
                                10..=19 => format!("using {}", OPENED[d - 10].0),
                                _ => format!("closing {}", OPENED[d - 20].0),
                            };
                            format!(
                                "thread {t}: {} iterations, {what}",
                                progress[t].load(Ordering::Relaxed)
                            )
                        })
                        .collect();
                    die(&format!(
                        "\nstress watchdog: no progress for 60 s (deadlock?):\n{}\n",
                        state.join("\n")
                    ));
                }
            }
        });
        // Warm-up: every object loaded and unloaded by every thread, so
        // that what is made once (thread stacks in glibc's cache, the
        // loader's tables) exists before the first count.
        let warm = run(0, 32);
        assert!(warm.is_empty(), "warm-up: {warm:#?}");
        let before = holdings();
        let (start, loads_before) = (Instant::now(), loads());
        let failures = run(1, ITERATIONS);
        let (took, reloads) = (start.elapsed(), loads() - loads_before);
        stop.store(true, Ordering::Relaxed);
        assert!(failures.is_empty(), "{failures:#?}");
        let after = holdings();
        let done: u64 = progress.iter().map(|p| p.load(Ordering::Relaxed)).sum();
        assert_eq!(done, THREADS as u64 * (32 + ITERATIONS));
        println!(
            "stress: {THREADS} threads x {ITERATIONS} iterations in {took:.1?}, the opener loaded {reloads} times; {} files mapped, {} anonymous mappings before, {} after; {} descriptors",
            before.files.len(),
            before.anonymous,
            after.anonymous,
            before.fds.len()
        );
        // The objects really came and went, not only their counts.
        assert!(
            reloads > (THREADS as u64 * ITERATIONS / 20) as i64,
            "only {reloads} loads"
        );
        assert!(
            !after
                .files
                .iter()
                .any(|f| f.contains("/api-stress/") && !f.contains("_tally")),
            "still mapped: {:#?}",
            after.files
        );
        assert_eq!(
            before.files,
            after.files,
            "mapped files changed: gone {:?}, new {:?}",
            before.files.difference(&after.files).collect::<Vec<_>>(),
            after.files.difference(&before.files).collect::<Vec<_>>()
        );
        assert_eq!(before.fds, after.fds, "descriptors changed");
        assert!(
            after.anonymous.abs_diff(before.anonymous) <= ANONYMOUS_TOLERANCE,
            "anonymous mappings: {} before, {} after",
            before.anonymous,
            after.anonymous
        );
    });
}

const CYCLES: usize = 10_000;
/// Resident memory may grow this much between cycle 1,000 and the last.
const RSS_TOLERANCE_KB: usize = 2048;

/// 10,000 cycles of open, use, close of an object with dependencies, a
/// constructor that opens another object and TLS (its own and its
/// dependency's), used by the opening thread every cycle and by three
/// short-lived threads every 100th: between cycle 1,000 and the last the
/// process keeps exactly its mappings and descriptors, and its resident
/// memory grows less than RSS_TOLERANCE_KB.
#[test]
fn ten_thousand_cycles_leave_nothing_behind() {
    if in_parent("ten_thousand_cycles_leave_nothing_behind") {
        return;
    }
    let set = stress_set("api-leak", 1);
    let loads = tally(&set);
    let path = set.path("opener0");
    let file = set.file("opener0");
    let k = OPENED.iter().position(|(n, _, _)| *n == "opener").unwrap();
    let mut mark = None;
    let start = Instant::now();
    for cycle in 1..=CYCLES {
        let lib = unsafe { Library::open(&path, OpenFlags::NOW) }.unwrap();
        exercise(&lib, k, cycle as i64).unwrap_or_else(|e| panic!("cycle {cycle}: {e}"));
        // A dependency's symbol, through the handle.
        let c = *unsafe { lib.get::<ValueFn>("value_c") }.unwrap();
        assert_eq!(c(), 2004);
        if cycle % 100 == 0 {
            std::thread::scope(|s| {
                let ts: Vec<_> = (0..3)
                    .map(|t| {
                        let lib = &lib;
                        s.spawn(move || exercise(lib, k, t))
                    })
                    .collect();
                for t in ts {
                    t.join()
                        .unwrap()
                        .unwrap_or_else(|e| panic!("cycle {cycle}: {e}"));
                }
            });
        }
        lib.close().unwrap();
        if cycle % 100 == 0 {
            assert!(!testkit::mapped_here(&file), "cycle {cycle}: still mapped");
        }
        if cycle == 1000 {
            mark = Some((holdings(), rss_kb()));
        }
    }
    let took = start.elapsed();
    let (before, rss_before) = mark.unwrap();
    let (after, rss_after) = (holdings(), rss_kb());
    println!(
        "stress: {CYCLES} cycles in {took:.1?}; at cycle 1000 / {CYCLES}: VmRSS {rss_before} / {rss_after} kB, {} / {} mappings ({} / {} anonymous), {} / {} descriptors",
        before.files.len() + before.anonymous,
        after.files.len() + after.anonymous,
        before.anonymous,
        after.anonymous,
        before.fds.len(),
        after.fds.len()
    );
    // Every open loaded the object afresh: its constructor ran each time.
    assert_eq!(loads(), CYCLES as i64);
    assert!(
        !testkit::files_mapped_here("/api-leak/")
            .iter()
            .any(|f| !f.contains("_tally")),
        "still mapped"
    );
    assert_eq!(before.files, after.files, "mapped files changed");
    assert_eq!(
        before.anonymous, after.anonymous,
        "anonymous mappings changed"
    );
    assert_eq!(before.fds, after.fds, "descriptors changed");
    assert!(
        rss_after <= rss_before + RSS_TOLERANCE_KB,
        "VmRSS grew from {rss_before} kB to {rss_after} kB"
    );
}
