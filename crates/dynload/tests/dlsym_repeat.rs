//! `dlsym` through the same handle, or `dlsym(RTLD_DEFAULT)` from the same
//! call site, again and again. From the second hit on, a thread answers from
//! its own copy of the search list, without the loader lock. The answers
//! must be the first lookup's (and glibc's) for every kind of definition,
//! must stop when an object on the list is closed, and must not skip what
//! the locked lookup records (a unique symbol's definer pinned, the
//! dependency RTLD_DEFAULT's caller comes to have on a definer).

use std::ffi::{c_char, c_int, c_void, CStr, CString};

use dynload::dlfcn;
use testkit::{Lib, Set};

fn caller() -> *const c_void {
    caller as *const c_void
}

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

fn open(path: &str) -> usize {
    open_with(path, libc::RTLD_NOW)
}

fn open_with(path: &str, mode: c_int) -> usize {
    let p = c(path);
    // SAFETY: a C string.
    let h = unsafe { dlfcn::dlopen_from(p.as_ptr(), mode, caller()) };
    assert!(!h.is_null(), "dynload cannot open {path}: {:?}", error());
    h as usize
}

fn open_glibc(path: &str) -> usize {
    open_glibc_with(path, libc::RTLD_NOW)
}

fn open_glibc_with(path: &str, mode: c_int) -> usize {
    let p = c(path);
    // SAFETY: a C string.
    let h = unsafe { libc::dlopen(p.as_ptr(), mode) };
    assert!(!h.is_null(), "glibc cannot open {path}");
    h as usize
}

fn sym(h: usize, name: &str) -> usize {
    let n = c(name);
    // SAFETY: a handle (open or not: dynload checks it) and a C string.
    unsafe { dlfcn::dlsym_from(h as *mut c_void, n.as_ptr(), caller()) as usize }
}

fn sym_glibc(h: usize, name: &str) -> usize {
    let n = c(name);
    // SAFETY: an open glibc handle and a C string.
    unsafe { libc::dlsym(h as *mut c_void, n.as_ptr()) as usize }
}

fn error() -> Option<String> {
    // SAFETY: dlerror takes no arguments; it returns its string or NULL.
    let p = unsafe { dlfcn::dl_error() };
    // SAFETY: as above.
    (!p.is_null()).then(|| {
        unsafe { CStr::from_ptr(p as *const c_char) }
            .to_string_lossy()
            .into()
    })
}

/// Five lookups of `name`: all the same (the first is locked, the second
/// makes the copy, the rest are answered from it).
fn repeated(h: usize, name: &str) -> usize {
    let first = sym(h, name);
    for round in 1..5 {
        assert_eq!(sym(h, name), first, "{name}, lookup {}", round + 1);
    }
    first
}

/// Through `h`: glibc's `dlopen` is dynload's, every time, and `missing`
/// stays a miss, with glibc's message.
fn replaced_and_missed(h: usize, missing: &str) {
    assert_eq!(
        repeated(h, "dlopen"),
        dlfcn::dlopen_entry as *const () as usize
    );
    for _ in 0..3 {
        assert_eq!(sym(h, missing), 0);
        let e = error().expect("a message");
        assert!(e.ends_with(&format!("undefined symbol: {missing}")), "{e}");
    }
}

/// A miss of `missing` through `h` on a thread with no copies (the locked
/// lookup), then again once lookups of `hit` made the copy: the same
/// message, given once.
fn copy_misses_as_the_lock(h: usize, hit: &str, missing: &str) {
    let (hit, missing) = (hit.to_string(), missing.to_string());
    std::thread::spawn(move || {
        assert_eq!(sym(h, &missing), 0);
        let locked = error().expect("a message");
        assert!(locked.ends_with(&format!("undefined symbol: {missing}")));
        repeated(h, &hit);
        for _ in 0..3 {
            assert_eq!(sym(h, &missing), 0);
            assert_eq!(error().as_deref(), Some(locked.as_str()));
            assert_eq!(error(), None);
        }
    })
    .join()
    .unwrap();
}

/// Close `h` with the loader that opened it.
fn close_by(glibc: bool, h: usize) {
    // SAFETY: a handle of the loader that opened it.
    let closed = unsafe {
        if glibc {
            libc::dlclose(h as *mut c_void)
        } else {
            dlfcn::dl_close(h as *mut c_void)
        }
    };
    assert_eq!(closed, 0);
}

fn call(addr: usize) -> c_int {
    assert_ne!(addr, 0);
    // SAFETY: the address of an `int f(void)` in a loaded object.
    let f: extern "C" fn() -> c_int = unsafe { std::mem::transmute(addr) };
    f()
}

#[test]
fn repeated_lookups_answer_as_the_first_and_as_glibc() {
    let set = Set::build(
        "dlsym-repeat",
        &[
            Lib::node("dep", 5),
            Lib::node("top", 9).dep("dep"),
            Lib::src("ifunc", "ifunc.c").no_log(),
            Lib::src("tls", "tls.c").no_log(),
            Lib::versioned("current"),
        ],
    );
    let ours = |n: &str| open(&set.path(n));
    let theirs = |n: &str| open_glibc(&set.path(n));

    // Definitions in the handle's object and in its dependency.
    let (top, gtop) = (ours("top"), theirs("top"));
    for name in ["which", "id_top", "id_dep", "call_which_dep"] {
        assert_eq!(
            call(repeated(top, name)),
            call(sym_glibc(gtop, name)),
            "{name}"
        );
    }
    // A libc definition on the handle's list, one dynload replaces, and a
    // miss.
    assert_eq!(repeated(top, "malloc"), sym_glibc(gtop, "malloc"));
    replaced_and_missed(top, "no_such_symbol");
    copy_misses_as_the_lock(top, "id_top", "no_such_symbol");

    // The default version, as glibc picks it.
    let (ver, gver) = (ours("ver"), theirs("ver"));
    assert_eq!(call(repeated(ver, "f")), 2);
    assert_eq!(call(sym_glibc(gver, "f")), 2);
    assert_eq!(call(repeated(ver, "g")), 7);

    // An IFUNC gives the function its resolver picked, every time.
    let (ifunc, gifunc) = (ours("ifunc"), theirs("ifunc"));
    assert_eq!(call(repeated(ifunc, "pick")), 11);
    assert_eq!(call(sym_glibc(gifunc, "pick")), 11);
    assert_eq!(call(repeated(ifunc, "call_pick")), 11);
    assert_eq!(call(repeated(ifunc, "pick")), 11);

    // A TLS variable: the calling thread's copy, every time, on every
    // thread, after plain lookups made the copy.
    let tls = ours("tls");
    repeated(tls, "get_t");
    let here = repeated(tls, "t");
    // SAFETY: the address of this thread's `int t`.
    assert_eq!(unsafe { *(here as *const c_int) }, 3);
    let there = std::thread::spawn(move || {
        repeated(tls, "get_t");
        repeated(tls, "t")
    })
    .join()
    .unwrap();
    assert_ne!(here, there);
    assert_eq!(repeated(tls, "t"), here);

    for h in [top, ver, ifunc, tls] {
        // SAFETY: handles dynload opened.
        assert_eq!(unsafe { dlfcn::dl_close(h as *mut c_void) }, 0);
    }
    for h in [gtop, gver, gifunc] {
        // SAFETY: handles glibc opened.
        assert_eq!(unsafe { libc::dlclose(h as *mut c_void) }, 0);
    }
}

#[test]
fn a_unique_definition_still_pins_its_object() {
    // glibc makes an object NODELETE when dlsym returns one of its
    // STB_GNU_UNIQUE definitions (and only then, for this object: nothing
    // in it refers to the definition). The copy must not skip that.
    let lib = |name| Set::build(name, &[Lib::src("uq", "lone_unique.c").no_log()]);
    let (mine, glibc) = (lib("dlsym-repeat-unique-d"), lib("dlsym-repeat-unique-g"));
    for (set, pinned) in [
        (&mine, false),
        (&glibc, false),
        (&mine, true),
        (&glibc, true),
    ] {
        let ours = std::ptr::eq(set, &mine);
        let (h, lookup): (usize, fn(usize, &str) -> usize) = if ours {
            (open(&set.path("uq")), repeated)
        } else {
            (open_glibc(&set.path("uq")), sym_glibc)
        };
        assert_eq!(call(lookup(h, "plain_fn")), 3);
        if pinned {
            let value = lookup(h, "lone_unique");
            // SAFETY: the address of an int.
            assert_eq!(unsafe { *(value as *const c_int) }, 42);
        }
        close_by(!ours, h);
        let who = if ours { "dynload" } else { "glibc" };
        assert_eq!(
            testkit::mapped_here(&set.file("uq")),
            pinned,
            "{who}, pinned: {pinned}"
        );
    }
}

#[test]
fn a_closed_handle_is_not_answered_from_a_copy() {
    let set = Set::build(
        "dlsym-repeat-closed",
        &[Lib::node("a", 1), Lib::node("b", 2)],
    );
    let a = open(&set.path("a"));
    assert_eq!(call(repeated(a, "id_a")), 1);

    // Another thread copies the list too, then waits while `a` is closed.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (closed_tx, closed_rx) = std::sync::mpsc::channel::<()>();
    let other = std::thread::spawn(move || {
        assert_eq!(call(repeated(a, "id_a")), 1);
        ready_tx.send(()).unwrap();
        closed_rx.recv().unwrap();
        (sym(a, "id_a"), error())
    });
    ready_rx.recv().unwrap();
    // SAFETY: a handle dynload opened.
    assert_eq!(unsafe { dlfcn::dl_close(a as *mut c_void) }, 0);
    assert!(!testkit::mapped_here(&set.file("a")));
    closed_tx.send(()).unwrap();

    for (addr, e) in [other.join().unwrap(), (sym(a, "id_a"), error())] {
        assert_eq!(addr, 0);
        let e = e.expect("an error");
        assert!(e.contains("invalid handle"), "{e}");
    }

    // A new object may get the closed handle's address: it answers for
    // itself only.
    let b = open(&set.path("b"));
    assert_eq!(sym(b, "id_a"), 0);
    assert_eq!(call(repeated(b, "id_b")), 2);
    // SAFETY: a handle dynload opened.
    assert_eq!(unsafe { dlfcn::dl_close(b as *mut c_void) }, 0);
}

/// `dlsym(RTLD_DEFAULT)` from this test program: the global scope.
const DEFAULT: usize = 0;

#[test]
fn rtld_default_repeated_lookups_answer_as_the_first_and_as_glibc() {
    let set = Set::build("dlsym-repeat-default", &[Lib::node("b", 2)]);
    let glibc = |name: &str| sym_glibc(DEFAULT, name);
    // Plain definitions in libc, an IFUNC (the function its resolver
    // picked), one dynload puts in place of glibc's, and a miss.
    for name in ["malloc", "printf", "strlen", "memcpy"] {
        assert_eq!(repeated(DEFAULT, name), glibc(name), "{name}");
    }
    replaced_and_missed(DEFAULT, "id_b");
    copy_misses_as_the_lock(DEFAULT, "malloc", "id_b");

    // An object opened RTLD_GLOBAL joins the scope, and leaves it when
    // closed, after lookups that copied the scope with it. (Lookups that
    // walk past it: nothing finds a definition there, which would make it
    // NODELETE.)
    let b = open_with(&set.path("b"), libc::RTLD_NOW | libc::RTLD_GLOBAL);
    assert_eq!(repeated(DEFAULT, "malloc"), glibc("malloc"));
    for _ in 0..3 {
        assert_eq!(sym(DEFAULT, "no_such_symbol"), 0);
    }
    // SAFETY: a handle dynload opened.
    assert_eq!(unsafe { dlfcn::dl_close(b as *mut c_void) }, 0);
    assert!(!testkit::mapped_here(&set.file("b")));
    assert_eq!(sym(DEFAULT, "id_b"), 0);
    assert_eq!(repeated(DEFAULT, "malloc"), glibc("malloc"));

    // A definition found there from the main program makes the object
    // NODELETE, as glibc does.
    let theirs = Set::build("dlsym-repeat-default-g", &[Lib::node("b", 2)]);
    for by_glibc in [false, true] {
        let (set, h) = if by_glibc {
            let flags = libc::RTLD_NOW | libc::RTLD_GLOBAL;
            (&theirs, open_glibc_with(&theirs.path("b"), flags))
        } else {
            (
                &set,
                open_with(&set.path("b"), libc::RTLD_NOW | libc::RTLD_GLOBAL),
            )
        };
        let found = if by_glibc {
            glibc("id_b")
        } else {
            repeated(DEFAULT, "id_b")
        };
        assert_eq!(call(found), 2);
        close_by(by_glibc, h);
        assert!(testkit::mapped_here(&set.file("b")), "glibc: {by_glibc}");
    }
    assert_eq!(call(repeated(DEFAULT, "id_b")), 2);
}

/// One loader's `dlopen`, `dlsym` and `dlclose`.
struct Loader {
    open: fn(&str, c_int) -> usize,
    sym: fn(usize, &str) -> usize,
    close: unsafe extern "C" fn(*mut c_void) -> c_int,
}

#[test]
fn rtld_default_from_a_loaded_object_answers_as_glibc_and_records_what_it_uses() {
    type Lookup = extern "C" fn(*const c_char) -> usize;
    for by_glibc in [false, true] {
        let who = if by_glibc { "glibc" } else { "dynload" };
        let set = Set::build(
            if by_glibc {
                "dlsym-repeat-default-from-g"
            } else {
                "dlsym-repeat-default-from-d"
            },
            &[
                Lib::node("dep", 5),
                Lib::src("looker", "default_lookup.c").dep("dep"),
                Lib::node("g", 3),
            ],
        );
        let loader = if by_glibc {
            Loader {
                open: open_glibc_with,
                sym: sym_glibc,
                close: libc::dlclose,
            }
        } else {
            Loader {
                open: open_with,
                sym,
                close: dlfcn::dl_close,
            }
        };
        let (open_mode, lookup, close) = (loader.open, loader.sym, loader.close);
        let looker = open_mode(&set.path("looker"), libc::RTLD_NOW | libc::RTLD_LOCAL);
        let g = open_mode(&set.path("g"), libc::RTLD_NOW | libc::RTLD_GLOBAL);
        // SAFETY: `default_lookup` has this type.
        let default_lookup: Lookup =
            unsafe { std::mem::transmute(lookup(looker, "default_lookup")) };
        let from_looker = |name: &str| {
            let n = c(name);
            let first = default_lookup(n.as_ptr());
            for round in 1..5 {
                assert_eq!(
                    default_lookup(n.as_ptr()),
                    first,
                    "{who}: {name}, lookup {}",
                    round + 1
                );
            }
            first
        };
        // Its own dependency is in its scope, not in the program's.
        assert_eq!(call(from_looker("id_dep")), 5, "{who}");
        assert_eq!(lookup(DEFAULT, "id_dep"), 0, "{who}");
        assert_eq!(from_looker("malloc"), sym_glibc(DEFAULT, "malloc"), "{who}");
        if !by_glibc {
            assert_eq!(
                from_looker("dlopen"),
                dlfcn::dlopen_entry as *const () as usize
            );
        }
        // A definition in `g`, which the scope had when the lookups above
        // were made: finding it makes `looker` depend on `g`, so closing
        // `g`'s handle leaves it loaded until `looker` goes.
        let n = c("id_g");
        assert_eq!(call(default_lookup(n.as_ptr())), 3, "{who}");
        // SAFETY: handles of the loader that opened them.
        assert_eq!(unsafe { close(g as *mut c_void) }, 0);
        assert!(testkit::mapped_here(&set.file("g")), "{who}: g unloaded");
        assert_eq!(call(from_looker("id_g")), 3, "{who}");
        // SAFETY: as above.
        assert_eq!(unsafe { close(looker as *mut c_void) }, 0);
        assert!(
            !testkit::mapped_here(&set.file("g")),
            "{who}: g still loaded"
        );
    }
}

/// The handle [`close_on_another_thread`] closes (0: none, or done).
static TO_CLOSE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Close [`TO_CLOSE`]'s handle on a thread of its own and wait for it: what
/// another thread can do while this one, preempted, is between finding its
/// copy current and reading it.
fn close_on_another_thread() {
    let h = TO_CLOSE.swap(0, std::sync::atomic::Ordering::SeqCst);
    if h != 0 {
        std::thread::spawn(move || {
            // SAFETY: a handle dynload opened, closed once.
            assert_eq!(unsafe { dlfcn::dl_close(h as *mut c_void) }, 0);
        })
        .join()
        .unwrap();
    }
}

#[test]
fn a_copy_never_reads_an_object_another_thread_can_unload() {
    const CHILD: &str = "DYNLOAD_COPY_UNLOAD_CHILD";
    if std::env::var_os(CHILD).is_none() {
        // (In a process of its own: the failure it guards against is a
        // read of unmapped memory.)
        testkit::rerun_in_child(
            "a_copy_never_reads_an_object_another_thread_can_unload",
            None,
            &[(CHILD, "1")],
        );
        return;
    }
    let set = Set::build(
        "dlsym-repeat-unload",
        &[
            Lib::node("b", 2),
            Lib::node("dep", 5),
            Lib::src("looker", "default_lookup.c").dep("dep"),
        ],
    );
    // `b` joins the global scope, held by its handle alone: another thread
    // may close it at any time. (Opened after `looker`, which then binds
    // nothing to it.)
    let looker = open_with(&set.path("looker"), libc::RTLD_NOW | libc::RTLD_LOCAL);
    let b = open_with(&set.path("b"), libc::RTLD_NOW | libc::RTLD_GLOBAL);
    // What lies after `b` in a scope is found there, by the locked lookup:
    // `looker`'s own dependency, in its RTLD_DEFAULT scope.
    // SAFETY: `default_lookup` has this type.
    let default_lookup: extern "C" fn(*const c_char) -> usize =
        unsafe { std::mem::transmute(sym(looker, "default_lookup")) };
    let id_dep = c("id_dep");
    for round in 0..5 {
        let found = default_lookup(id_dep.as_ptr());
        assert_eq!(call(found), 5, "lookup {}", round + 1);
    }
    // The lookups of `malloc` make this thread's copy of the main
    // program's scope (`malloc` is found in libc, before `b`).
    assert_eq!(repeated(DEFAULT, "malloc"), sym_glibc(DEFAULT, "malloc"));
    // A miss walks the whole scope. `b` is closed, and unmapped, once this
    // thread has found its copy current, before it reads it.
    TO_CLOSE.store(b, std::sync::atomic::Ordering::SeqCst);
    dynload::testing::on_copy_read(Some(close_on_another_thread));
    let missed = sym(DEFAULT, "no_such_symbol");
    dynload::testing::on_copy_read(None);
    assert_eq!(
        TO_CLOSE.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the lookup did not reach the copy"
    );
    assert!(!testkit::mapped_here(&set.file("b")));
    assert_eq!(missed, 0);
    let e = error().expect("a message");
    assert!(e.ends_with("undefined symbol: no_such_symbol"), "{e}");
    // What lies before such an object is still answered, as glibc does.
    assert_eq!(repeated(DEFAULT, "malloc"), sym_glibc(DEFAULT, "malloc"));
}

fn vsym(h: usize, name: &str, version: &str) -> usize {
    let (n, v) = (c(name), c(version));
    // SAFETY: a handle (open or not: dynload checks it) and C strings.
    unsafe { dlfcn::dlvsym_from(h as *mut c_void, n.as_ptr(), v.as_ptr(), caller()) as usize }
}

fn vsym_glibc(h: usize, name: &str, version: &str) -> usize {
    let (n, v) = (c(name), c(version));
    // SAFETY: an open glibc handle (or RTLD_DEFAULT) and C strings.
    unsafe { libc::dlvsym(h as *mut c_void, n.as_ptr(), v.as_ptr()) as usize }
}

/// Five `dlvsym` lookups of `name` at `version`, all the same (the first
/// is locked, the second makes the copy, the rest are answered from it).
fn repeated_version(h: usize, name: &str, version: &str) -> usize {
    let first = vsym(h, name, version);
    for round in 1..5 {
        let again = vsym(h, name, version);
        assert_eq!(again, first, "{name}@{version}, lookup {}", round + 1);
    }
    first
}

#[test]
fn repeated_versioned_lookups_answer_as_the_first_and_as_glibc() {
    let ours = Set::build("dlsym-repeat-ver-d", &[Lib::versioned("current")]);
    let theirs = Set::build("dlsym-repeat-ver-g", &[Lib::versioned("current")]);
    let h = open(&ours.path("ver"));
    let g = open_glibc(&theirs.path("ver"));
    // The hidden old version, the default one, and a name with one version.
    for (name, version, value) in [("f", "V1", 1), ("f", "V2", 2), ("g", "V1", 7)] {
        assert_eq!(
            call(repeated_version(h, name, version)),
            value,
            "{name}@{version}"
        );
        assert_eq!(
            call(vsym_glibc(g, name, version)),
            value,
            "glibc: {name}@{version}"
        );
    }
    // Versions the object does not define for the name: misses, with
    // glibc's message, each time.
    for (name, version) in [("f", "V3"), ("g", "V2"), ("nope", "V1")] {
        assert_eq!(vsym_glibc(g, name, version), 0);
        // SAFETY: dlerror takes no arguments; it returns its string or NULL.
        let theirs = unsafe { CStr::from_ptr(libc::dlerror()) }.to_string_lossy();
        let tail = format!("undefined symbol: {name}, version {version}");
        assert!(theirs.ends_with(&tail), "{theirs}");
        for _ in 0..4 {
            assert_eq!(vsym(h, name, version), 0, "{name}@{version}");
            let e = error().expect("a message");
            assert!(e.ends_with(&tail), "{e}");
        }
    }
    // libc's through RTLD_DEFAULT: `memcpy` at both its versions is an
    // IFUNC, whose resolver's pick is the answer; `malloc` is plain.
    for (name, version) in [
        ("memcpy", "GLIBC_2.14"),
        ("memcpy", "GLIBC_2.2.5"),
        ("malloc", "GLIBC_2.2.5"),
    ] {
        let glibc = vsym_glibc(DEFAULT, name, version);
        assert_ne!(glibc, 0);
        assert_eq!(
            repeated_version(DEFAULT, name, version),
            glibc,
            "{name}@{version}"
        );
    }
    assert_eq!(repeated_version(DEFAULT, "memcpy", "GLIBC_2.0"), 0);

    // The Rust API's versioned lookups take the same copies.
    // SAFETY: the library's constructor only logs.
    let lib = unsafe { dynload::Library::open(ours.path("ver"), dynload::OpenFlags::NOW) }.unwrap();
    for round in 0..5 {
        // SAFETY: `f` at V1 is `int (void)`.
        let old = unsafe { lib.get_versioned::<extern "C" fn() -> c_int>("f", "V1") }.unwrap();
        assert_eq!(old(), 1, "lookup {}", round + 1);
        // SAFETY: as above (never called).
        let err = unsafe { lib.get_versioned::<extern "C" fn() -> c_int>("f", "V9") }.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{}: undefined symbol: f, version V9", ours.path("ver"))
        );
    }
}
