//! `dynload::on_collision`: an object joining the global scope (opened
//! GLOBAL, or promoted to GLOBAL later) that defines a symbol an object
//! already there defines is reported, with the definition lookups get.
//!
//! The callback is process-wide, so every check is in one test.

use std::sync::{Arc, Mutex};

use dynload::{Collision, Library, OpenFlags};
use testkit::{Lib, Set};

/// (symbol, version, new object, existing object), sorted.
type Report = Vec<(String, Option<String>, String, String)>;

fn take(seen: &Mutex<Vec<Collision>>) -> Report {
    let mut out: Report = std::mem::take(&mut *seen.lock().unwrap())
        .into_iter()
        .map(|c| (c.symbol, c.version, c.new_object, c.existing_object))
        .collect();
    out.sort();
    out
}

fn expected(list: &[(&str, Option<&str>, &str, &str)]) -> Report {
    let mut out: Report = list
        .iter()
        .map(|(s, v, n, e)| {
            (
                s.to_string(),
                v.map(str::to_string),
                n.to_string(),
                e.to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

fn lib(name: &str, src: &str) -> Lib {
    Lib::src(name, src)
        .no_log()
        .flag("-Wl,--version-script={src}/collide_vers.map")
}

#[test]
fn global_loads_report_what_they_define_again() {
    let set = Set::build(
        "collide-api",
        &[
            lib("a", "collide_a.c"),
            lib("b", "collide_b.c"),
            lib("d", "collide_b.c"),
            lib("e", "collide_b.c"),
            Lib::src("user", "collide_user.c").no_log(),
        ],
    );
    let (a, b, d, e) = (set.path("a"), set.path("b"), set.path("d"), set.path("e"));
    // The fixtures have what the test is about.
    let syms = testkit::dynamic_symbols(&b);
    assert!(syms.contains("versioned_fn@@VERS_1"), "{syms}");
    let syms = testkit::dynamic_symbols(&a);
    assert!(
        syms.lines()
            .any(|l| l.contains(" WEAK ") && l.ends_with("weak_fn")),
        "{syms}"
    );

    let seen: Arc<Mutex<Vec<Collision>>> = Arc::default();
    let sink = seen.clone();
    dynload::on_collision(move |c| sink.lock().unwrap().push(c.clone()));
    let global = OpenFlags::NOW | OpenFlags::GLOBAL;

    // The first definer collides with nothing.
    let lib_a = unsafe { Library::open(&a, global) }.unwrap();
    assert_eq!(take(&seen), expected(&[]));

    // The second: every symbol both define, and nothing only one defines
    // (a_only, b_only); weak_fn is weak in A and still A's.
    let lib_b = unsafe { Library::open(&b, global) }.unwrap();
    assert_eq!(
        take(&seen),
        expected(&[
            ("shared_fn", None, &b, &a),
            ("versioned_fn", Some("VERS_1"), &b, &a),
            ("weak_fn", None, &b, &a),
        ])
    );
    // Opening it GLOBAL again adds nothing to the scope, and reports nothing.
    let again = unsafe { Library::open(&b, global) }.unwrap();
    assert_eq!(take(&seen), expected(&[]));
    again.close().unwrap();

    // The reported winner is what global lookups get...
    let this = Library::this();
    let call = |name: &str| unsafe { this.get::<extern "C" fn() -> i32>(name) }.unwrap()();
    assert_eq!(call("shared_fn"), 1);
    assert_eq!(call("weak_fn"), 100);
    assert_eq!(call("b_only"), 3);
    let v1 =
        unsafe { this.get_versioned::<extern "C" fn() -> i32>("versioned_fn", "VERS_1") }.unwrap();
    assert_eq!(v1(), 10);
    // ... and what the relocations of an object loaded later get. It is
    // opened LOCAL: no report.
    let user = unsafe { Library::open(set.path("user"), OpenFlags::NOW) }.unwrap();
    assert_eq!(take(&seen), expected(&[]));
    let ucall = |name: &str| unsafe { user.get::<extern "C" fn() -> i32>(name) }.unwrap()();
    assert_eq!(ucall("call_shared"), 1);
    assert_eq!(ucall("call_weak"), 100);
    assert_eq!(ucall("call_versioned"), 10);

    // LOCAL, then promoted with NOLOAD|GLOBAL: reported at the promotion,
    // each symbol against its first definer in the scope (b_only is B's).
    let lib_d = unsafe { Library::open(&d, OpenFlags::NOW) }.unwrap();
    assert_eq!(take(&seen), expected(&[]));
    let promoted = unsafe { Library::open(&d, OpenFlags::NOLOAD | global) }.unwrap();
    assert_eq!(
        take(&seen),
        expected(&[
            ("shared_fn", None, &d, &a),
            ("versioned_fn", Some("VERS_1"), &d, &a),
            ("weak_fn", None, &d, &a),
            ("b_only", None, &d, &b),
        ])
    );

    // LOCAL, then a later plain GLOBAL open.
    let lib_e = unsafe { Library::open(&e, OpenFlags::NOW) }.unwrap();
    assert_eq!(take(&seen), expected(&[]));
    let lib_e2 = unsafe { Library::open(&e, global) }.unwrap();
    assert_eq!(
        take(&seen),
        expected(&[
            ("shared_fn", None, &e, &a),
            ("versioned_fn", Some("VERS_1"), &e, &a),
            ("weak_fn", None, &e, &a),
            ("b_only", None, &e, &b),
        ])
    );
    assert_eq!(call("shared_fn"), 1);
    assert_eq!(call("b_only"), 3);

    // A replaced callback is the only one called.
    let replaced: Arc<Mutex<Vec<Collision>>> = Arc::default();
    let sink = replaced.clone();
    dynload::on_collision(move |c| sink.lock().unwrap().push(c.clone()));
    for l in [lib_e2, lib_e, promoted, lib_d, user, lib_b] {
        l.close().unwrap();
    }
    let lib_b = unsafe { Library::open(&b, global) }.unwrap();
    assert_eq!(take(&seen), expected(&[]));
    assert_eq!(
        take(&replaced),
        expected(&[
            ("shared_fn", None, &b, &a),
            ("versioned_fn", Some("VERS_1"), &b, &a),
            ("weak_fn", None, &b, &a),
        ])
    );
    lib_b.close().unwrap();
    lib_a.close().unwrap();
}
