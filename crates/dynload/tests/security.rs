//! The security settings of the Rust API and their environment variables:
//! the load policy (allowed directories and SHA-256 digests), the opt-in
//! for text relocations (never writable and executable at once), and the
//! test hook that makes the loader's open, mmap and mprotect fail — each
//! failure a clean error with nothing left mapped, and a later load fine.
//! Each test changes process-wide settings, so it runs in a child.

use std::path::Path;
use std::process::Command;

use dynload::testing::{fail_nth, Syscall};
use dynload::{ErrorKind, Library, LoadPolicy, OpenFlags};
use testkit::{Lib, Loader, Set};

const CHILD: &str = "DYNLOAD_SECURITY_CHILD";

fn in_child() -> bool {
    std::env::var_os(CHILD).is_some()
}

fn sha256(path: &str) -> String {
    let out = testkit::run(Command::new("sha256sum").arg(path));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn mapped_under(dir: &Path) -> Vec<String> {
    let d = dir.to_string_lossy().into_owned();
    testkit::self_maps()
        .lines()
        .filter(|l| l.contains(&d))
        .map(str::to_string)
        .collect()
}

fn open(path: &str) -> Result<Library, dynload::Error> {
    // SAFETY: the test's own fixtures.
    unsafe { Library::open(path, OpenFlags::NOW) }
}

/// Built once per test process (two tests use them).
fn policy_sets() -> &'static (Set, Set) {
    static SETS: std::sync::OnceLock<(Set, Set)> = std::sync::OnceLock::new();
    SETS.get_or_init(build_policy_sets)
}

fn build_policy_sets() -> (Set, Set) {
    let allowed = Set::build(
        "sec-allowed",
        &[
            Lib::node("b", 2),
            Lib::node("a", 1).dep("b"),
            // In a subdirectory, needing b from the directory above.
            Lib::node("s", 3)
                .subdir("sub")
                .dep("b")
                .flag("-Wl,-rpath,{dir}"),
        ],
    );
    let other = Set::build("sec-other", &[Lib::node("c", 4)]);
    (allowed, other)
}

#[test]
fn the_load_policy_allows_only_what_it_names() {
    if !in_child() {
        policy_sets();
        testkit::rerun_in_child(
            "the_load_policy_allows_only_what_it_names",
            None,
            &[(CHILD, "1")],
        );
        return;
    }
    let allowed = testkit::Set {
        dir: testkit::out_root().join("sec-allowed"),
        prefix: "sec_allowed".into(),
    };
    let other = testkit::Set {
        dir: testkit::out_root().join("sec-other"),
        prefix: "sec_other".into(),
    };
    dynload::set_load_policy(Some(LoadPolicy::new().allow_directory(&allowed.dir)));
    // Allowed: the library, its dependency and liblog are in the directory.
    let a = open(&allowed.path("a")).expect("allowed directory");
    a.close().unwrap();
    // Refused: another directory, with glibc's shape of error and the why.
    let c = other.path("c");
    let err = open(&c).unwrap_err();
    assert_eq!(err.kind(), Some(ErrorKind::Denied));
    assert_eq!(
        err.to_string(),
        format!("{c}: cannot open shared object file: Operation not permitted")
    );
    let why = err.explain();
    assert!(why.contains("refused by dynload's load policy"), "{why}");
    assert!(why.contains(&allowed.dir.display().to_string()), "{why}");
    assert!(mapped_under(&other.dir).is_empty());
    // A symbolic link inside the allowed directory to a file outside it
    // is judged by the file it opens.
    let link = allowed.dir.join("link-to-c.so");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&c, &link).unwrap();
    let err = open(&link.to_string_lossy()).unwrap_err();
    assert_eq!(err.kind(), Some(ErrorKind::Denied), "{}", err.explain());
    // A dependency outside the allowed subdirectory refuses the whole
    // load, and nothing of it stays mapped.
    dynload::set_load_policy(Some(
        LoadPolicy::new().allow_directory(allowed.dir.join("sub")),
    ));
    let s = allowed.dir.join("sub").join(allowed.file("s"));
    let err = open(&s.to_string_lossy()).unwrap_err();
    assert_eq!(err.kind(), Some(ErrorKind::Denied));
    assert!(
        err.to_string()
            .starts_with(&allowed.dir.display().to_string()),
        "{err}"
    );
    assert!(mapped_under(&allowed.dir.join("sub")).is_empty());
    // A digest allows exactly that file, wherever it is: c alone is not
    // enough (it needs liblog), c and its liblog are.
    dynload::set_load_policy(Some(LoadPolicy::new().allow_sha256(&sha256(&c)).unwrap()));
    let err = open(&c).unwrap_err();
    assert!(err.to_string().starts_with(&other.path("log")), "{err}");
    dynload::set_load_policy(Some(
        LoadPolicy::new()
            .allow_sha256(&sha256(&c))
            .unwrap()
            .allow_sha256(&sha256(&other.path("log")))
            .unwrap(),
    ));
    let lib = open(&c).expect("allowed digests");
    lib.close().unwrap();
    let err = open(&allowed.path("b")).unwrap_err();
    assert!(
        err.explain().contains("is not an allowed digest"),
        "{}",
        err.explain()
    );
    assert!(LoadPolicy::new().allow_sha256("not hex").is_err());
    // No policy: everything loads again.
    dynload::set_load_policy(None);
    open(&allowed.path("b")).unwrap().close().unwrap();
}

#[test]
fn the_policy_from_the_environment_applies_to_the_c_abi() {
    let (allowed, _) = policy_sets();
    let script = [
        "open {dir}/../sec-other/libsec_other_c.so NOW",
        "open $a NOW",
    ];
    let spec = format!("dir={}", allowed.dir.display());
    let run = testkit::run_driver(
        allowed,
        &script,
        Loader::Dynload,
        &[("DYNLOAD_POLICY", &spec)],
    );
    assert!(
        run.stdout.contains("open libsec_other_c.so: NULL (")
            && run
                .stdout
                .contains(": cannot open shared object file: Operation not permitted)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("open libsec_allowed_a.so: h"),
        "{}",
        run.stdout
    );
    // A malformed policy refuses everything (fail closed), and says why.
    let run = testkit::run_driver(
        allowed,
        &["open $a NOW"],
        Loader::Dynload,
        &[("DYNLOAD_POLICY", "dir=relative")],
    );
    assert!(
        run.stdout.contains("open libsec_allowed_a.so: NULL (")
            && run.stdout.contains("Operation not permitted"),
        "{}",
        run.stdout
    );
    // glibc has no policy: both load.
    let run = testkit::run_driver(
        allowed,
        &script,
        Loader::Glibc,
        &[("DYNLOAD_POLICY", &spec)],
    );
    assert!(!run.stdout.contains("NULL"), "{}", run.stdout);
}

/// Built once per test process: two tests use it, and a second build
/// removes the files while the first test's process opens them.
fn textrel_set() -> Set {
    static SET: std::sync::OnceLock<Set> = std::sync::OnceLock::new();
    SET.get_or_init(|| {
        Set::build(
            "sec-textrel",
            &[
                Lib::src("t", "textrel_user.c").no_log(),
                Lib::src("ti", "textrel_user.c")
                    .no_log()
                    .define("WITH_IFUNC", "1"),
            ],
        )
    })
    .clone()
}

#[test]
fn text_relocations_only_when_allowed_and_never_writable_and_executable() {
    if !in_child() {
        let set = textrel_set();
        assert!(testkit::dynamic_section(set.path("t")).contains("TEXTREL"));
        testkit::rerun_in_child(
            "text_relocations_only_when_allowed_and_never_writable_and_executable",
            None,
            &[(CHILD, "1")],
        );
        return;
    }
    let set = testkit::Set {
        dir: testkit::out_root().join("sec-textrel"),
        prefix: "sec_textrel".into(),
    };
    let t = set.path("t");
    let err = open(&t).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{t}: cannot load an object with text relocations (DT_TEXTREL)")
    );
    assert!(mapped_under(&set.dir).is_empty());
    dynload::allow_text_relocations(true);
    let lib = open(&t).expect("text relocations allowed");
    // SAFETY: read_target is `int (void)` in the fixture.
    let read = unsafe { lib.get::<unsafe extern "C" fn() -> i32>("read_target") }.unwrap();
    assert_eq!(unsafe { read() }, 7, "the text relocation was applied");
    // Its code is executable again and not writable; nothing is both.
    let maps = mapped_under(&set.dir);
    assert!(
        maps.iter()
            .any(|l| l.split_whitespace().nth(1) == Some("r-xp")),
        "{maps:?}"
    );
    for l in &maps {
        let perms = l.split_whitespace().nth(1).unwrap();
        assert!(!(perms.contains('w') && perms.contains('x')), "{l}");
    }
    lib.close().unwrap();
    // Its own IFUNC could not run while its code is not executable.
    let ti = set.path("ti");
    let err = open(&ti).unwrap_err();
    assert!(
        err.to_string()
            .contains("text relocations and IFUNC symbols"),
        "{err}"
    );
    dynload::allow_text_relocations(false);
    assert!(open(&t).is_err());
}

#[test]
fn text_relocations_allowed_from_the_environment() {
    let set = textrel_set();
    let script = ["open $t NOW", "call $t read_target"];
    let run = testkit::run_driver(&set, &script[..1], Loader::Dynload, &[]);
    assert!(
        run.stdout
            .contains("cannot load an object with text relocations"),
        "{}",
        run.stdout
    );
    let run = testkit::run_driver(
        &set,
        &script[..1],
        Loader::Dynload,
        &[("DYNLOAD_ALLOW_TEXTREL", "1")],
    );
    assert!(
        run.stdout.contains("open libsec_textrel_t.so: h1"),
        "{}",
        run.stdout
    );
    let _ = script;
}

/// Make the 1st, 2nd, ... `call` of opening `path` fail with `errno` until
/// a load no longer reaches it (every call of the load has failed once):
/// each failure must be an error ending in one of `texts` that leaves
/// nothing mapped under `dir`; the load that succeeds goes to `loaded`.
/// Returns the number of failure points.
fn fail_each_call(
    call: Syscall,
    errno: i32,
    path: &str,
    dir: &Path,
    texts: &[&str],
    loaded: impl FnOnce(Library),
) -> u32 {
    let mut loaded = Some(loaded);
    let mut failures = 0;
    for n in 1.. {
        fail_nth(call, n, errno);
        match open(path) {
            Ok(lib) => {
                fail_nth(call, 0, 0);
                (loaded.take().unwrap())(lib);
                break;
            }
            Err(e) => {
                failures += 1;
                assert!(
                    texts.iter().any(|t| e.to_string().ends_with(t)),
                    "{call:?} #{n}: {e}"
                );
                assert!(
                    mapped_under(dir).is_empty(),
                    "{call:?} #{n} left {:?}",
                    mapped_under(dir)
                );
            }
        }
        assert!(n < 100, "{call:?} never stopped failing");
    }
    failures
}

#[test]
fn failed_system_calls_leave_nothing_behind() {
    if !in_child() {
        Set::build(
            "sec-faults",
            &[Lib::node("b", 2), Lib::node("a", 1).dep("b")],
        );
        let out = testkit::rerun_in_child(
            "failed_system_calls_leave_nothing_behind",
            None,
            &[(CHILD, "1")],
        );
        // Three objects (liblog, b and a), each with four segments: the
        // first mapped over the whole span (as glibc does), the text given
        // its permissions there, the next read-only one left as mapped, the
        // writable one mapped, RELRO protected; opens: every candidate the
        // searches try.
        for line in [
            "Open: ",
            "Mmap: 6 failure points",
            "Mprotect: 6 failure points",
        ] {
            assert!(out.contains(line), "{line:?} not in:\n{out}");
        }
        return;
    }
    let set = testkit::Set {
        dir: testkit::out_root().join("sec-faults"),
        prefix: "sec_faults".into(),
    };
    let a = set.path("a");
    let segment = "failed to map segment from shared object";
    let cases = [
        (
            Syscall::Open,
            libc::EMFILE,
            ["cannot open shared object file: Too many open files"].as_slice(),
        ),
        (Syscall::Mmap, libc::ENOMEM, &[segment]),
        (
            Syscall::Mprotect,
            libc::ENOMEM,
            &[
                segment,
                "cannot apply additional memory protection after relocation: Cannot allocate memory",
            ],
        ),
    ];
    for (call, errno, texts) in cases {
        let failures = fail_each_call(call, errno, &a, &set.dir, texts, |lib| {
            lib.close().unwrap();
        });
        println!("{call:?}: {failures} failure points");
        // A panic inside the loader at the same place (a stand-in for a
        // bug) is rolled back as well, and becomes an error.
        fail_nth(call, 2, dynload::testing::PANIC);
        let err = open(&a).unwrap_err();
        fail_nth(call, 0, 0);
        assert!(
            err.to_string().starts_with(&format!(
                "dynload: internal error: injected panic at {call:?}"
            )),
            "{err}"
        );
        assert!(
            mapped_under(&set.dir).is_empty(),
            "{:?}",
            mapped_under(&set.dir)
        );
        // SAFETY: only asks whether it is loaded.
        assert!(unsafe { Library::open(&a, OpenFlags::NOW | OpenFlags::NOLOAD) }.is_err());
        assert!(failures >= 2, "{call:?}: only {failures} failure points");
        // Everything works afterwards.
        let lib = open(&a).unwrap();
        // SAFETY: id_a is `int (void)`.
        let f = unsafe { lib.get::<unsafe extern "C" fn() -> i32>("id_a") }.unwrap();
        assert_eq!(unsafe { f() }, 1);
        lib.close().unwrap();
        assert!(mapped_under(&set.dir).is_empty());
    }
}

/// The longest runs of RELATIVE relocations and the biggest RELRO copies
/// are split over two threads. The fixture has 655,360 RELATIVE entries,
/// one for every word of its 5 MiB table, and 5 MiB of RELRO to copy: both
/// pieces of work run on two threads, and the table comes out byte for
/// byte as glibc makes it. So it does when no thread can be started (each
/// start made to fail in turn: that piece runs on one thread), and when
/// two entries, one in each half, write one word (the later must win, as
/// in table order): the two halves' last and first entries, or two
/// entries further apart.
#[test]
fn big_relocation_runs_and_copies_on_two_threads_give_the_serial_result() {
    use dynload::testing::work_split_over_two_threads as splits;
    if !in_child() {
        Set::build("sec-two-cores", &[testkit::scenarios::big_relative_table()]);
        let out = testkit::rerun_in_child(
            "big_relocation_runs_and_copies_on_two_threads_give_the_serial_result",
            None,
            &[(CHILD, "1")],
        );
        assert!(out.contains("checked 5 loads"), "{out}");
        return;
    }
    let set = testkit::Set {
        dir: testkit::out_root().join("sec-two-cores"),
        prefix: "sec_two_cores".into(),
    };
    let good = set.path("table");
    let bytes = std::fs::read(&good).unwrap();
    let relacount = testkit::damage::dynamic_value(&bytes, 0x6fff_fff9) as usize;
    // (The table's words, and a few of the C runtime's.)
    assert!(
        (655_360..655_400).contains(&relacount),
        "DT_RELACOUNT {relacount}"
    );
    // Entry `later` of .rela.dyn (24 bytes each: offset, info, addend) made
    // to write the word entry `earlier` writes, a word further on.
    let same_word = |name: &str, earlier: usize, later: usize| {
        testkit::damage::variant(&good, &set.dir, name, |b| {
            let (rela, _) = testkit::damage::section(b, ".rela.dyn");
            let (e, l) = (rela + 24 * earlier, rela + 24 * later);
            let offset = testkit::damage::get_u64(b, e);
            let addend = testkit::damage::get_u64(b, e + 16);
            testkit::damage::put_u64(b, l, offset);
            testkit::damage::put_u64(b, l + 16, addend + 8);
        })
    };
    let mid = relacount / 2;
    let across = same_word("across", mid - 1, mid);
    // (The second half stops at the word that is not in order: had it gone
    // on, it would have written it long before the first half does.)
    let apart = same_word("apart", mid - 10, mid + 10);
    // The table's words as a loaded copy of the fixture holds them, each
    // with the table's address (a relocated word is an address in the copy,
    // and each loader puts the copy somewhere else).
    let table = |start: usize, len: usize| -> Vec<(u64, u64)> {
        // SAFETY: the fixture's table, `len` bytes at `start` (aligned),
        // mapped while the caller holds it open.
        let words = unsafe { std::slice::from_raw_parts(start as *const u64, len / 8) };
        words.iter().map(|&w| (w, start as u64)).collect()
    };
    // The same word: the file's value, or the same address in each copy.
    let same = |&(a, a_start): &(u64, u64), &(b, b_start): &(u64, u64)| {
        a == b || a.wrapping_sub(a_start) == b.wrapping_sub(b_start)
    };
    let glibc_table = |path: &str| -> Vec<(u64, u64)> {
        let c_path = std::ffi::CString::new(path).unwrap();
        // SAFETY: the test's own fixture; its functions are
        // `const void *(void)` and `unsigned long (void)`.
        unsafe {
            let h = libc::dlopen(c_path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
            assert!(!h.is_null(), "{path}");
            let start: unsafe extern "C" fn() -> usize =
                std::mem::transmute(libc::dlsym(h, c"big_relro_start".as_ptr()));
            let len: unsafe extern "C" fn() -> usize =
                std::mem::transmute(libc::dlsym(h, c"big_relro_bytes".as_ptr()));
            let t = table(start(), len());
            libc::dlclose(h);
            t
        }
    };
    let mut loads = 0;
    let mut check = |path: &str, thread_fails: u32, split: u64| {
        let want = glibc_table(path);
        fail_nth(Syscall::Thread, thread_fails, libc::EAGAIN);
        let before = splits();
        let lib = open(path).unwrap();
        fail_nth(Syscall::Thread, 0, 0);
        let what = format!("{path}, thread start {thread_fails} failing");
        assert_eq!(splits() - before, split, "{what}");
        // SAFETY: the fixture's functions, as above.
        let got = unsafe {
            let start = lib
                .get::<unsafe extern "C" fn() -> usize>("big_relro_start")
                .unwrap();
            let len = lib
                .get::<unsafe extern "C" fn() -> usize>("big_relro_bytes")
                .unwrap();
            table(start(), len())
        };
        assert_eq!(want.len(), got.len(), "{what}");
        let first_difference = want.iter().zip(&got).position(|(a, b)| !same(a, b));
        assert_eq!(
            first_difference, None,
            "{what}: a word differs from glibc's"
        );
        lib.close().unwrap();
        assert!(mapped_under(&set.dir).is_empty());
        loads += 1;
    };
    check(&good, 0, 2);
    check(&good, 1, 1);
    check(&good, 2, 1);
    check(&across, 0, 2);
    check(&apart, 0, 2);
    println!("checked {loads} loads");
}
