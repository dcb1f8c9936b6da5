//! Thread-local storage through the Rust API, without LD_PRELOAD: the
//! objects dynload loads get dynload's own __tls_get_addr and TLS
//! descriptors. Each test runs alone in a child process of this binary so
//! that the mappings it counts are its own.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use dynload::{Library, OpenFlags};
use testkit::scenarios::tls_objects;

const CHILD: &str = "DYNLOAD_TLS_TEST_CHILD";

/// Run test `name` in a child process (with one malloc arena, so that
/// arenas created by contending threads do not look like leaks); returns
/// false in the child, where the caller runs the body.
fn in_parent(name: &str) -> bool {
    if std::env::var_os(CHILD).is_some() {
        return false;
    }
    testkit::rerun_in_child(
        name,
        None,
        &[(CHILD, "1"), ("GLIBC_TUNABLES", "glibc.malloc.arena_max=1")],
    );
    true
}

fn mappings() -> usize {
    testkit::self_maps().lines().count()
}

fn address_space_kb() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmSize:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

type IntFn = extern "C" fn() -> i32;

/// Each of `paths`, opened `RTLD_NOW`.
fn open_all(paths: &[String]) -> Vec<Library> {
    paths
        .iter()
        // SAFETY: the test fixture, whose initialisers do nothing of note.
        .map(|p| unsafe { Library::open(p, OpenFlags::NOW) }.unwrap())
        .collect()
}

/// 64 TLS objects loaded, used from the main thread and short-lived
/// threads, and unloaded, five times, while a thread keeps using TLS of
/// an object that stays: every value is right, and after the first round
/// neither the mappings nor the address space grow.
#[test]
fn tls_modules_load_and_unload_with_threads_running() {
    if in_parent("tls_modules_load_and_unload_with_threads_running") {
        return;
    }
    let set = tls_objects("api-tlschurn");
    let copies = testkit::scenarios::copies(&set, "gd", 64);
    let keep = unsafe { Library::open(set.path("desc"), OpenFlags::NOW) }.unwrap();
    let worker = *unsafe { keep.get::<IntFn>("tls_worker") }.unwrap();
    let stop = AtomicBool::new(false);
    let (calls, failures) = (AtomicUsize::new(0), AtomicUsize::new(0));
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                if worker() != 1 {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                calls.fetch_add(1, Ordering::Relaxed);
            }
        });
        let mut mark = None;
        for round in 0..5 {
            let libs = open_all(&copies);
            for (k, lib) in libs.iter().enumerate() {
                let initial = *unsafe { lib.get::<IntFn>("tls_initial_ok") }.unwrap();
                assert_eq!(initial(), 1, "round {round}, m{k}");
                if k % 8 == 0 {
                    let work = *unsafe { lib.get::<IntFn>("tls_worker") }.unwrap();
                    let ok: i32 = std::thread::scope(|t| {
                        let ts: Vec<_> = (0..4).map(|_| t.spawn(move || work())).collect();
                        ts.into_iter().map(|t| t.join().unwrap()).sum()
                    });
                    assert_eq!(ok, 4, "round {round}, m{k}");
                }
            }
            for lib in libs {
                lib.close().unwrap();
            }
            let now = (mappings(), address_space_kb());
            match mark {
                None => mark = Some(now),
                Some((maps, kb)) => {
                    assert_eq!(now.0, maps, "round {round}: mappings grew");
                    assert!(
                        now.1 <= kb + 1024,
                        "round {round}: {} kB -> {} kB",
                        kb,
                        now.1
                    );
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert!(calls.load(Ordering::Relaxed) > 0);
    assert_eq!(failures.load(Ordering::Relaxed), 0);
    assert!(!testkit::mapped_here("/m1.so"));
}

/// Threads that exist before the dlopen see the initial values, in both
/// dialects; dlsym of a TLS variable gives the calling thread's copy.
#[test]
fn threads_that_existed_before_the_open() {
    if in_parent("threads_that_existed_before_the_open") {
        return;
    }
    let set = tls_objects("api-tlsbefore");
    let barrier = std::sync::Barrier::new(5);
    let lib_slot = std::sync::OnceLock::<(Library, Library)>::new();
    std::thread::scope(|s| {
        let threads: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    let (gd, desc) = lib_slot.get().unwrap();
                    let mut ok = 0;
                    for lib in [gd, desc] {
                        let initial = *unsafe { lib.get::<IntFn>("tls_initial_ok") }.unwrap();
                        let here = *unsafe { lib.get::<*mut i64>("counter") }.unwrap();
                        let addr =
                            *unsafe { lib.get::<extern "C" fn() -> *mut i64>("counter_address") }
                                .unwrap();
                        ok += initial();
                        // SAFETY: `counter` is this thread's long.
                        unsafe { *here += 1 };
                        ok += i32::from(here == addr() && unsafe { *here } == 43);
                    }
                    ok
                })
            })
            .collect();
        let gd = unsafe { Library::open(set.path("gd"), OpenFlags::NOW) }.unwrap();
        let desc = unsafe { Library::open(set.path("desc"), OpenFlags::NOW) }.unwrap();
        assert!(lib_slot.set((gd, desc)).is_ok());
        barrier.wait();
        let total: i32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(total, 4 * 4);
    });
    // The main thread's copies were never written.
    let (gd, _) = lib_slot.get().unwrap();
    let counter = *unsafe { gd.get::<*mut i64>("counter") }.unwrap();
    assert_eq!(unsafe { *counter }, 42);
}

/// More TLS modules than a thread's first table holds (169, a page's
/// worth): the table grows, each module keeps its own block through the
/// move (values written before it are read back after it), in the thread
/// that grew it and in another, and all are freed at unload.
#[test]
fn a_threads_table_grows_past_its_first_page() {
    if in_parent("a_threads_table_grows_past_its_first_page") {
        return;
    }
    let set = tls_objects("api-tlsgrow");
    let copies = testkit::scenarios::copies(&set, "gd", 200);
    // (A thread first, whose stack glibc keeps for the next.)
    std::thread::spawn(|| ()).join().unwrap();
    let before = mappings();
    let libs = open_all(&copies);
    type AddrFn = extern "C" fn() -> *mut i64;
    let counters: Vec<AddrFn> = libs
        .iter()
        .map(|lib| *unsafe { lib.get::<AddrFn>("counter_address") }.unwrap())
        .collect();
    let check = || {
        // Each module's first use in this thread, the table growing on the
        // way; each block written as it comes, then all read back.
        let addresses: Vec<*mut i64> = counters.iter().map(|f| f()).collect();
        for (k, &a) in addresses.iter().enumerate() {
            // SAFETY: this thread's copy of module k's `counter`.
            unsafe {
                assert_eq!(*a, 42, "m{k}: its initial value");
                *a = k as i64;
            }
        }
        for (k, f) in counters.iter().enumerate() {
            assert_eq!(f(), addresses[k], "m{k}: its block moved");
            // SAFETY: as above.
            assert_eq!(unsafe { *f() }, k as i64, "m{k}: its value");
        }
        let mut distinct = addresses.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), addresses.len());
    };
    check();
    std::thread::scope(|s| s.spawn(check).join().unwrap());
    for lib in libs {
        lib.close().unwrap();
    }
    // (The main thread's table, grown, stays: one mapping more.)
    assert!(mappings() <= before + 1, "{before} -> {}", mappings());
    assert!(!testkit::mapped_here("/m199.so"));
}
