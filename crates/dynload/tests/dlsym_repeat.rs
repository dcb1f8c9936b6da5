//! `dlsym` through the same handle again and again. From the second hit on,
//! a thread answers from its own copy of the handle's search list, without
//! the loader lock. The answers must be the first lookup's (and glibc's)
//! for every kind of definition, and must stop when the handle is closed.

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
    let p = c(path);
    // SAFETY: a C string.
    let h = unsafe { dlfcn::dlopen_from(p.as_ptr(), libc::RTLD_NOW, caller()) };
    assert!(!h.is_null(), "dynload cannot open {path}: {:?}", error());
    h as usize
}

fn open_glibc(path: &str) -> usize {
    let p = c(path);
    // SAFETY: a C string.
    let h = unsafe { libc::dlopen(p.as_ptr(), libc::RTLD_NOW) };
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
    // A libc definition on the handle's list, and one dynload replaces.
    assert_eq!(repeated(top, "malloc"), sym_glibc(gtop, "malloc"));
    assert_eq!(
        repeated(top, "dlopen"),
        dlfcn::dlopen_entry as *const () as usize
    );
    // A miss stays a miss, with glibc's message.
    for _ in 0..3 {
        assert_eq!(sym(top, "no_such_symbol"), 0);
        let e = error().expect("a message");
        assert!(e.ends_with("undefined symbol: no_such_symbol"), "{e}");
    }

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
        // SAFETY: a handle of the loader that opened it.
        let closed = unsafe {
            if ours {
                dlfcn::dl_close(h as *mut c_void)
            } else {
                libc::dlclose(h as *mut c_void)
            }
        };
        assert_eq!(closed, 0);
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
