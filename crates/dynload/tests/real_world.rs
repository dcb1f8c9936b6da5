//! Real-world code through the Rust API, in a process with no LD_PRELOAD:
//! the program exports dynload's `_dl_find_object` (its libgcc_s refers to
//! the name), so libgcc_s asks dynload for the frames of its objects and
//! nothing is registered with libgcc. C++ exceptions and casts,
//! thread_local destructors that outlive a close, a second libgcc_s loaded
//! by dynload, and a Rust cdylib rebuilt and reloaded at the same path.

use std::ffi::c_void;
use std::sync::mpsc;

use dynload::{Library, OpenFlags};
use testkit::scenarios::cxx_objects;
use testkit::{cargo_cdylib, Set};

type IntFn = extern "C" fn() -> i32;

/// Is `file` mapped executable in this process (dynload's code mapping,
/// not a read-only copy some backtrace symboliser mapped)?
/// Every binding the relocation pass's fast lane makes in this process is
/// checked against the general walk (see `dynload::testing::check_fast_lane`).
fn lane_checked() {
    dynload::testing::check_fast_lane(true);
}

/// Run test `name` again in a child process with `var` set, for a process
/// of its own; true in that child.
fn in_child(name: &str, var: &str) -> bool {
    if std::env::var_os(var).is_some() {
        return true;
    }
    testkit::rerun_in_child(name, None, &[(var, "1")]);
    false
}

fn code_mapped(file: &str) -> bool {
    testkit::self_maps()
        .lines()
        .any(|l| l.contains(file) && l.split_whitespace().nth(1).is_some_and(|p| p.contains('x')))
}

/// A C++ plugin opened by a C++ program: libstdc++ is the program's,
/// loaded by glibc. (When dynload itself loads libstdc++ for a plugin,
/// libstdc++ binds to the plugin's copies of weak template functions and,
/// being NODELETE for its unique symbols, keeps the plugin loaded for good,
/// as under glibc: see the C ABI test `cxx_plugin_in_a_c_program_stays`.)
fn cxx_set(name: &str) -> Set {
    static LIBSTDCXX: std::sync::Once = std::sync::Once::new();
    LIBSTDCXX.call_once(|| {
        // SAFETY: glibc's dlopen of a system library.
        let h = unsafe {
            libc::dlopen(
                c"libstdc++.so.6".as_ptr(),
                libc::RTLD_NOW | libc::RTLD_GLOBAL,
            )
        };
        assert!(!h.is_null());
    });
    cxx_objects(name)
}

#[test]
fn cxx_exceptions_and_casts_through_dynloads_dl_find_object() {
    lane_checked();
    // The program's `_dl_find_object`, as its libgcc_s was bound to it, is
    // dynload's (this program's own), not ld.so's.
    unsafe extern "C" {
        fn _dl_find_object(pc: *mut c_void, result: *mut c_void) -> i32;
    }
    // SAFETY: glibc's dlsym and dlvsym with a C string; ld.so is loaded.
    let (global, ld_so) = unsafe {
        let ld = libc::dlopen(
            c"ld-linux-x86-64.so.2".as_ptr(),
            libc::RTLD_LAZY | libc::RTLD_NOLOAD,
        );
        assert!(!ld.is_null());
        (
            libc::dlsym(libc::RTLD_DEFAULT, c"_dl_find_object".as_ptr()) as usize,
            libc::dlvsym(ld, c"_dl_find_object".as_ptr(), c"GLIBC_2.35".as_ptr()) as usize,
        )
    };
    assert_eq!(global, _dl_find_object as *const () as usize);
    assert_ne!(global, ld_so);

    let set = cxx_set("api-cxx");
    let lib = unsafe { Library::open(set.path("catcher"), OpenFlags::NOW) }.unwrap();
    assert!(code_mapped(&set.file("thrower")));
    for (f, want) in [
        ("catch_inside", 107),
        ("catch_across", 42),
        ("catch_std_across", 1),
        ("cast_across", 15),
    ] {
        let f_ = unsafe { lib.get::<IntFn>(f) }.unwrap();
        assert_eq!(f_(), want, "{f}");
    }
    lib.close().unwrap();
    assert!(!code_mapped(&set.file("thrower")));
    // The object was forgotten before unmapping: a throw in a new load (at
    // whatever address) still works.
    let lib = unsafe { Library::open(set.path("catcher"), OpenFlags::LAZY) }.unwrap();
    let f = unsafe { lib.get::<IntFn>("catch_across") }.unwrap();
    assert_eq!(f(), 42);
}

/// A thread that has called `touch(value)` (giving it a pending
/// thread_local destructor in the object) and waits until `finish`.
struct Worker {
    go: mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Worker {
    fn touching(touch: extern "C" fn(i32) -> i32, value: i32) -> Worker {
        let (touched_tx, touched_rx) = mpsc::channel();
        let (go, go_rx) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            touch(value);
            touched_tx.send(()).unwrap();
            go_rx.recv().unwrap();
        });
        touched_rx.recv().unwrap();
        Worker { go, thread }
    }

    /// Let it exit (running its destructors) and wait for it.
    fn finish(self) {
        self.go.send(()).unwrap();
        self.thread.join().unwrap();
    }
}

#[test]
fn thread_local_destructor_keeps_its_object_until_the_thread_exits() {
    lane_checked();
    destructor_keeps_its_object(&cxx_set("api-cxx-tls"));
}

/// Another thread's thread_local destructor keeps `set`'s `thrower` loaded
/// after its last handle is closed, until that thread exits.
fn destructor_keeps_its_object(set: &Set) {
    let file = set.file("thrower");
    let lib = unsafe { Library::open(set.path("thrower"), OpenFlags::NOW) }.unwrap();
    let touch = unsafe { lib.get::<extern "C" fn(i32) -> i32>("touch_thread_local") }.unwrap();
    let worker = Worker::touching(*touch, 3);
    lib.close().unwrap();
    // The other thread's destructor is pending: still mapped.
    assert!(code_mapped(&file), "unmapped with a destructor pending");
    worker.finish();
    // It ran at the thread's exit, and the object went with it.
    assert!(!code_mapped(&file), "still mapped after the thread exited");
}

/// As above, in a process where glibc loaded libstdc++ itself, RTLD_LOCAL:
/// it is in the plugin's scope after the global scope, not in it, and the
/// plugin's reference to its `__cxa_thread_atexit` must still bind to
/// dynload's, which knows the object whose destructor it registers.
#[test]
fn thread_local_destructor_keeps_its_object_beside_a_local_libstdcxx() {
    if !in_child(
        "thread_local_destructor_keeps_its_object_beside_a_local_libstdcxx",
        "DYNLOAD_TEST_LOCAL_LIBSTDCXX",
    ) {
        return;
    }
    lane_checked();
    // SAFETY: glibc's dlopen of a system library.
    let h = unsafe {
        libc::dlopen(
            c"libstdc++.so.6".as_ptr(),
            libc::RTLD_NOW | libc::RTLD_LOCAL,
        )
    };
    assert!(!h.is_null());
    destructor_keeps_its_object(&cxx_objects("api-cxx-local-libstdcxx"));
}

/// A reference without a version to `__cxa_thread_atexit`, which only an
/// object glibc loaded RTLD_LOCAL defines (in the scope after the global
/// scope, where the fast lane looks): bound to dynload's function, not to
/// that object's, as every reference of a dynload object to it is.
#[test]
fn thread_exit_registration_found_in_a_glibc_object_goes_to_dynload() {
    if !in_child(
        "thread_exit_registration_found_in_a_glibc_object_goes_to_dynload",
        "DYNLOAD_TEST_FAKE_THREAD_ATEXIT",
    ) {
        return;
    }
    lane_checked();
    let set = Set::build(
        "api-fake-thread-atexit",
        &[
            testkit::Lib::src("fake", "fake_thread_atexit.c").no_log(),
            testkit::Lib::src("user", "uses_thread_atexit.c")
                .dep("fake")
                .no_log(),
        ],
    );
    let fake = std::ffi::CString::new(set.path("fake")).unwrap();
    // SAFETY: glibc's dlopen of a test object without constructors.
    let h = unsafe { libc::dlopen(fake.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    assert!(!h.is_null());
    let lib = unsafe { Library::open(set.path("user"), OpenFlags::NOW) }.unwrap();
    let register = unsafe { lib.get::<extern "C" fn() -> i32>("register_thread_exit") }.unwrap();
    assert_eq!(register(), 0, "bound to the glibc object's function");
}

#[test]
fn closing_thread_runs_its_own_pending_destructors() {
    lane_checked();
    let set = cxx_set("api-cxx-own-tls");
    let file = set.file("thrower");
    let lib = unsafe { Library::open(set.path("thrower"), OpenFlags::NOW) }.unwrap();
    let touch = unsafe { lib.get::<extern "C" fn(i32) -> i32>("touch_thread_local") }.unwrap();
    // A thread that uses the object, closes it and lives on.
    let touch: extern "C" fn(i32) -> i32 = *touch;
    std::thread::spawn(move || {
        touch(4);
        lib.close().unwrap();
        assert!(
            !code_mapped(&file),
            "the closing thread's destructor pinned it"
        );
    })
    .join()
    .unwrap();
}

#[test]
fn closing_thread_keeps_its_values_while_another_thread_keeps_the_object() {
    lane_checked();
    // Another thread's destructor keeps the object loaded through the
    // close, so the closing thread's values must survive too: a reopen
    // gets the same object, and its value.
    let set = cxx_set("api-cxx-shared-tls");
    let lib = unsafe { Library::open(set.path("thrower"), OpenFlags::NOW) }.unwrap();
    let touch = *unsafe { lib.get::<extern "C" fn(i32) -> i32>("touch_thread_local") }.unwrap();
    let worker = Worker::touching(touch, 3);
    touch(5);
    lib.close().unwrap();
    let lib = unsafe { Library::open(set.path("thrower"), OpenFlags::NOW) }.unwrap();
    let read = unsafe { lib.get::<IntFn>("read_thread_local") }.unwrap();
    assert_eq!(read(), 5, "this thread's value was destroyed at the close");
    worker.finish();
}

#[test]
fn libgcc_s_loaded_by_dynload_finds_frames_of_both_worlds() {
    lane_checked();
    let set = cxx_set("api-libgcc-copy");
    // A second libgcc_s: a copy at another path is a new object, mapped by
    // dynload, whose `_dl_find_object` reference dynload binds.
    let copy = set.dir.join("libgcc_s.so.1");
    std::fs::copy("/lib/x86_64-linux-gnu/libgcc_s.so.1", &copy).unwrap();
    let gcc = unsafe { Library::open(&copy, OpenFlags::NOW) }.unwrap();
    assert!(code_mapped(&copy.to_string_lossy()));
    let plugin = unsafe { Library::open(set.path("thrower"), OpenFlags::NOW) }.unwrap();
    type FindFde = unsafe extern "C" fn(*const c_void, *mut [usize; 3]) -> *const c_void;
    let find = unsafe { gcc.get::<FindFde>("_Unwind_Find_FDE") }.unwrap();
    let ours = *unsafe { plugin.get::<*const c_void>("catch_inside") }.unwrap();
    let glibcs = libc::getpid as *const c_void;
    let mut bases = [0usize; 3];
    // SAFETY: libgcc's lookup only reads the unwind tables.
    unsafe {
        assert!(!find(ours, &mut bases).is_null(), "dynload's object");
        assert_eq!(bases[2], ours as usize, "the FDE's function start");
        assert!(!find(glibcs, &mut bases).is_null(), "libc, through glibc");
        assert!(find(16 as *const c_void, &mut bases).is_null());
    }
}

#[test]
fn rust_cdylib_rebuilt_and_reloaded_at_the_same_path() {
    lane_checked();
    let set = Set::build("api-rust-reload", &[]);
    let path = set.dir.join("librust_plugin.so");
    cargo_cdylib("rust_plugin", &[("PLUGIN_VERSION", "1")], &path);
    let lib = unsafe { Library::open(&path, OpenFlags::NOW) }.unwrap();
    let call = |lib: &Library, f: &str| unsafe { lib.get::<IntFn>(f) }.unwrap()();
    assert_eq!(call(&lib, "plugin_version"), 1);
    assert_eq!(call(&lib, "plugin_catch_panic"), 1);
    assert_eq!(call(&lib, "plugin_backtrace_names_frames"), 3);
    assert_eq!(call(&lib, "plugin_threads"), 6);
    lib.close().unwrap();
    assert!(
        !code_mapped("librust_plugin.so"),
        "still mapped after close"
    );

    cargo_cdylib("rust_plugin", &[("PLUGIN_VERSION", "2")], &path);
    let lib = unsafe { Library::open(&path, OpenFlags::NOW) }.unwrap();
    assert_eq!(call(&lib, "plugin_version"), 2);
    assert_eq!(call(&lib, "plugin_threads"), 6);
    assert_eq!(call(&lib, "plugin_catch_panic"), 1);
}

#[test]
fn gdb_bt_names_frames_without_preload() {
    lane_checked();
    // The body runs in a child of this test binary, under gdb; the Rust API
    // loads the object, whose function stops the program with SIGUSR1.
    const CHILD: &str = "DYNLOAD_GDB_TEST_CHILD";
    let set = Set::build(
        "api-gdb",
        &[testkit::Lib::src("frames", "gdb_frames.c").no_log()],
    );
    if std::env::var_os(CHILD).is_some() {
        let lib = unsafe { Library::open(set.path("frames"), OpenFlags::NOW) }.unwrap();
        let f = unsafe { lib.get::<IntFn>("gdb_frames_entry") }.unwrap();
        f();
        return;
    }
    let out = testkit::run(
        std::process::Command::new("gdb")
            .args(["-q", "-batch", "-nx"])
            .args(["-ex", &format!("set environment {CHILD}=1")])
            .args(["-ex", "run", "-ex", "bt", "--args"])
            .arg(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "gdb_bt_names_frames_without_preload",
                "--nocapture",
                "--test-threads=1",
            ]),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let entry = text.find(" in gdb_frames_entry ");
    let deep = text.find(" in deep_static_frame ");
    assert!(deep.is_some() && entry.is_some() && deep < entry, "{text}");
    assert!(
        text.contains("gdb_bt_names_frames_without_preload"),
        "{text}"
    );
}

#[test]
fn destructors_of_objects_still_loaded_run_at_exit() {
    lane_checked();
    // In a child, objects opened through the Rust API are left open; their
    // destructors run when the child exits (object before dependency).
    const CHILD: &str = "DYNLOAD_EXIT_DTORS_CHILD";
    let name = "destructors_of_objects_still_loaded_run_at_exit";
    if std::env::var_os(CHILD).is_some() {
        let set = Set::build(
            "api-exit-dtors",
            &[
                testkit::Lib::src("b", "exit_dtor.c")
                    .no_log()
                    .define("NAME", "\"b\""),
                testkit::Lib::src("a", "exit_dtor.c")
                    .no_log()
                    .define("NAME", "\"a\"")
                    .dep("b"),
            ],
        );
        let lib = unsafe { Library::open(set.path("a"), OpenFlags::NOW) }.unwrap();
        std::mem::forget(lib);
        return;
    }
    let out = testkit::rerun_in_child(name, None, &[(CHILD, "1")]);
    let tail = &out[out.find("constructor b").expect("constructors ran")..];
    assert!(tail.contains("constructor a\n"), "{out}");
    assert!(tail.ends_with("destructor a\ndestructor b\n"), "{out}");
}
