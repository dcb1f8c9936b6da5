//! The Rust API in-process: typed errors and their explanations, objects
//! dynload refuses, the C runtime handed to glibc, address lookup and the
//! list of loaded objects, and concurrent use from many threads.

use std::ffi::{c_void, CStr};
use std::sync::Arc;

use dynload::{Error, Library, LoadedBy, OpenFlags};
use testkit::{Lib, Set};

use testkit::{files_mapped_here, layout_of, mapped_here as mapped, mappings_of};

#[test]
fn not_found_says_where_it_looked() {
    let err = unsafe { Library::open("libdynload-api-nope.so.7", OpenFlags::NOW) }.unwrap_err();
    assert_eq!(
        err.to_string(),
        "libdynload-api-nope.so.7: cannot open shared object file: No such file or directory"
    );
    let Error::NotFound { tried, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(
        tried
            .iter()
            .any(|t| t == "/lib/x86_64-linux-gnu/libdynload-api-nope.so.7"),
        "{tried:?}"
    );
    assert!(
        tried.iter().any(|t| t.contains("glibc-hwcaps/")),
        "{tried:?}"
    );
    assert!(
        err.explain().contains("tried, in order:\n    "),
        "{}",
        err.explain()
    );
}

#[test]
fn undefined_symbol_lists_scopes_and_near_misses() {
    let set = Set::build("api-err-ver", &[Lib::versioned("current")]);
    let lib = unsafe { Library::open(set.path("ver"), OpenFlags::NOW) }.unwrap();
    let f = unsafe { lib.get::<extern "C" fn() -> i32>("f") }.unwrap();
    assert_eq!(f(), 2);
    let old = unsafe { lib.get_versioned::<extern "C" fn() -> i32>("f", "V1") }.unwrap();
    assert_eq!(old(), 1);
    let err = unsafe { lib.get_versioned::<extern "C" fn() -> i32>("f", "V9") }.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{}: undefined symbol: f, version V9", set.path("ver"))
    );
    let Error::UndefinedSymbol {
        searched,
        near_misses,
        ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert!(
        searched
            .iter()
            .any(|s| s.ends_with("libapi_err_ver_ver.so")),
        "{searched:?}"
    );
    assert!(
        near_misses.iter().any(|m| m.ends_with("f@V1"))
            && near_misses.iter().any(|m| m.ends_with("f@@V2")),
        "{near_misses:?}"
    );
    assert!(
        err.explain().contains("definitions that did not match"),
        "{}",
        err.explain()
    );
    // A type that is not pointer-sized is refused rather than transmuted.
    assert!(unsafe { lib.get::<u8>("f") }.is_err());
}

#[test]
fn missing_version_names_what_exists() {
    let set = Set::build("api-err-vermiss", &[Lib::versioned("current")]);
    set.compile(&Lib::versioned("future"));
    set.compile(
        &Lib::src("c", "use_f.c")
            .flag("-L{dir}/future")
            .dep("ver")
            .no_log(),
    );
    let err = unsafe { Library::open(set.path("c"), OpenFlags::NOW) }.unwrap_err();
    let Error::VersionNotFound {
        version, available, ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(version, "V3");
    assert_eq!(available, &["V1", "V2"]);
    assert!(!mapped("libapi_err_vermiss_"));
}

#[test]
fn refused_objects_leave_nothing_mapped() {
    let set = Set::build(
        "api-refused",
        &[
            Lib::node("execstack", 1).no_log().flag("-Wl,-z,execstack"),
            Lib::src("textrel", "textrel.c")
                .no_log()
                .flag("-Wl,-z,notext"),
            Lib::src("tls", "tls.c")
                .no_log()
                .flag("-ftls-model=initial-exec"),
        ],
    );
    let cases = [
        (
            "execstack",
            "cannot enable executable stack as shared object requires: Invalid argument",
        ),
        (
            "textrel",
            "cannot load an object with text relocations (DT_TEXTREL)",
        ),
    ];
    for (name, want) in cases {
        let err = unsafe { Library::open(set.path(name), OpenFlags::NOW) }.unwrap_err();
        assert_eq!(err.to_string(), format!("{}: {want}", set.path(name)));
        assert!(!err.explain().is_empty());
        assert!(!mapped(&set.file(name)), "{name} stayed mapped");
    }
    // Initial-exec TLS (DF_STATIC_TLS) is not refused: glibc loads the
    // object, from its static TLS surplus, and dynload uses glibc's copy.
    assert!(testkit::dynamic_section(set.path("tls")).contains("STATIC_TLS"));
    let ie = unsafe { Library::open(set.path("tls"), OpenFlags::NOW) }.unwrap();
    let get_t = unsafe { ie.get::<extern "C" fn() -> i32>("get_t") }.unwrap();
    assert_eq!(get_t(), 3);
    let by = dynload::loaded_objects()
        .into_iter()
        .find(|o| o.path.to_string_lossy() == set.path("tls"))
        .map(|o| o.loaded_by);
    assert_eq!(by, Some(LoadedBy::Glibc));
}

#[test]
fn the_c_runtime_is_glibcs() {
    let libm = unsafe { Library::open("libm.so.6", OpenFlags::NOW) }.unwrap();
    let cos = unsafe { libm.get::<extern "C" fn(f64) -> f64>("cos") }.unwrap();
    assert_eq!(cos(0.0), 1.0);
    let objects = dynload::loaded_objects();
    let m: Vec<_> = objects
        .iter()
        .filter(|o| o.soname.as_deref() == Some("libm.so.6"))
        .collect();
    assert_eq!(m.len(), 1, "{objects:?}");
    assert_eq!(m[0].loaded_by, LoadedBy::Glibc);
    // A dependency on the C runtime is satisfied by glibc's copy too.
    let set = Set::build("api-cruntime", &[Lib::node("m", 1).no_log().flag("-lm")]);
    let lib = unsafe { Library::open(set.path("m"), OpenFlags::NOW) }.unwrap();
    let libm_files = files_mapped_here("libm.so.6");
    assert_eq!(libm_files.len(), 1, "{libm_files:?}");
    lib.close().unwrap();
    libm.close().unwrap();
}

#[test]
fn same_file_same_library_and_address_lookup() {
    let set = Set::build("api-addr", &[Lib::node("a", 1)]);
    let a1 = unsafe { Library::open(set.path("a"), OpenFlags::NOW) }.unwrap();
    let a2 = unsafe { Library::open(set.path("a"), OpenFlags::LAZY) }.unwrap();
    assert_eq!(a1.as_raw(), a2.as_raw());
    assert_eq!(a1.path().to_string_lossy(), set.path("a"));
    let id = unsafe { a1.get::<extern "C" fn() -> i32>("id_a") }.unwrap();
    let p = id.as_ptr();
    let info = dynload::find_address(p as *const c_void).unwrap();
    assert_eq!(info.object.to_string_lossy(), set.path("a"));
    assert_eq!(info.symbol.as_deref(), Some("id_a"));
    assert_eq!(info.symbol_address, Some(p as usize));
    let inside = dynload::find_address((p as usize + 1) as *const c_void).unwrap();
    assert_eq!(inside.symbol.as_deref(), Some("id_a"));
    let objects = dynload::loaded_objects();
    let me = objects
        .iter()
        .find(|o| o.path.to_string_lossy() == set.path("a"))
        .unwrap();
    assert_eq!(me.loaded_by, LoadedBy::Dynload);
    assert_eq!(me.open_count, 2);
    assert!(a1.base_address() != 0);
    drop(a2);
    a1.close().unwrap();
    assert!(!mapped(&set.file("a")));
    assert!(dynload::find_address(p as *const c_void)
        .is_none_or(|i| !i.object.to_string_lossy().contains("api_addr")));
}

#[test]
fn the_global_scope_handle() {
    let global = Library::this();
    let getpid = unsafe { global.get::<extern "C" fn() -> i32>("getpid") }.unwrap();
    assert_eq!(getpid() as u32, std::process::id());
    let err = unsafe { global.get::<*mut c_void>("dynload_no_such_symbol") }.unwrap_err();
    assert!(
        err.to_string()
            .ends_with(": undefined symbol: dynload_no_such_symbol"),
        "{err}"
    );
}

/// Once repeated hits made this thread's copy of a handle's search list,
/// a name later on the list is still found, and a miss gives the error a
/// miss gave before the copy.
#[test]
fn lookups_after_the_copy_find_and_miss_as_before() {
    let set = Set::build(
        "api-copy",
        &[Lib::node("dep", 5), Lib::node("top", 9).dep("dep")],
    );
    // A thread of its own: no copies yet.
    std::thread::spawn(move || {
        let lib = unsafe { Library::open(set.path("top"), OpenFlags::NOW) }.unwrap();
        let miss = || {
            unsafe { lib.get::<*mut c_void>("dynload_no_such_symbol") }
                .unwrap_err()
                .to_string()
        };
        let before = miss();
        assert!(
            before.ends_with(": undefined symbol: dynload_no_such_symbol"),
            "{before}"
        );
        for _ in 0..3 {
            let id_top = unsafe { lib.get::<extern "C" fn() -> i32>("id_top") }.unwrap();
            assert_eq!(id_top(), 9);
        }
        let id_dep = unsafe { lib.get::<extern "C" fn() -> i32>("id_dep") }.unwrap();
        assert_eq!(id_dep(), 5);
        assert_eq!(miss(), before);
    })
    .join()
    .unwrap();
}

/// 8 threads open, look up, call and close overlapping sets of libraries
/// that share dependencies; at the end nothing of them is mapped.
#[test]
fn concurrent_open_get_close() {
    let set = Arc::new(Set::build(
        "api-threads",
        &[
            Lib::node("base", 1),
            Lib::node("left", 2).dep("base"),
            Lib::node("right", 3).dep("base"),
            Lib::node("top", 4).dep("left").dep("right"),
        ],
    ));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let set = Arc::clone(&set);
            std::thread::spawn(move || {
                let names = ["top", "left", "right", "base"];
                for i in 0..60 {
                    let name = names[(t + i) % 4];
                    let lib = unsafe { Library::open(set.path(name), OpenFlags::NOW) }.unwrap();
                    let f = unsafe { lib.get::<extern "C" fn() -> i32>(&format!("id_{name}")) }
                        .unwrap();
                    assert_eq!(f(), [4, 2, 3, 1][(t + i) % 4]);
                    let base = unsafe { lib.get::<extern "C" fn() -> i32>("id_base") }.unwrap();
                    assert_eq!(base(), 1);
                    if i % 3 == 0 {
                        lib.close().unwrap();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(!mapped("libapi_threads_top") && !mapped("libapi_threads_base"));
}

/// PT_GNU_RELRO is read-only after relocation, and no page of a dynload
/// object is ever writable and executable.
#[test]
fn relro_is_read_only_and_nothing_is_writable_and_executable() {
    let set = Set::build("api-relro", &[Lib::src("r", "relro.c")]);
    let lib = unsafe { Library::open(set.path("r"), OpenFlags::NOW) }.unwrap();
    let value = unsafe { lib.get::<extern "C" fn() -> i32>("relro_value") }.unwrap();
    assert_eq!(value(), 42);
    let addr = unsafe { lib.get::<extern "C" fn() -> usize>("relro_address") }.unwrap()();
    let mut saw = false;
    for (lo, hi, perms, _) in mappings_of(&set.file("r")) {
        assert!(
            !(perms.contains('w') && perms.contains('x')),
            "W+X mapping at {lo:#x}: {perms}"
        );
        if (lo..hi).contains(&addr) {
            assert!(perms.starts_with("r--"), "RELRO page is {perms} at {lo:#x}");
            saw = true;
        }
    }
    assert!(saw, "no mapping holds the RELRO data at {addr:#x}");
}

/// dynload maps the segments that the first mapping already holds from the
/// right file offset by changing their permissions (or not at all) instead
/// of mapping them again: the result is the layout glibc makes, mapping for
/// mapping, with GNU ld's default layout, the older one without a separate
/// code segment, segments aligned beyond a page, and a real library.
#[test]
fn segments_are_laid_out_as_glibc_lays_them_out() {
    let layouts = [
        ("default", ""),
        ("joined", "-Wl,-z,noseparate-code"),
        ("aligned", "-Wl,-z,max-page-size=0x10000"),
    ];
    let mut libs = Vec::new();
    for (name, flag) in layouts {
        for loader in ["g", "d"] {
            let l = Lib::src(&format!("{loader}_{name}"), "relro.c").no_log();
            libs.push(if flag.is_empty() { l } else { l.flag(flag) });
        }
    }
    let set = Set::build("api-layout", &libs);
    let zlib = std::path::Path::new("/lib/x86_64-linux-gnu/libz.so.1");
    let mut files: Vec<(String, String)> = layouts
        .iter()
        .map(|(name, _)| {
            (
                set.path(&format!("g_{name}")),
                set.path(&format!("d_{name}")),
            )
        })
        .collect();
    for loader in ["g", "d"] {
        std::fs::copy(zlib, set.dir.join(format!("{loader}_libz.so"))).unwrap();
    }
    files.push((
        set.dir.join("g_libz.so").to_str().unwrap().to_owned(),
        set.dir.join("d_libz.so").to_str().unwrap().to_owned(),
    ));
    for (by_glibc, by_dynload) in files {
        let c = std::ffi::CString::new(by_glibc.as_str()).unwrap();
        // SAFETY: a path; the objects have no constructors that matter.
        let h = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        assert!(!h.is_null(), "glibc could not load {by_glibc}");
        let lib = unsafe { Library::open(&by_dynload, OpenFlags::NOW) }.unwrap();
        let glibc = layout_of(&by_glibc);
        let ours = layout_of(&by_dynload);
        assert!(glibc.len() >= 2, "{by_glibc}: {glibc:?}");
        assert_eq!(ours, glibc, "{by_dynload} against {by_glibc}");
        // The code runs, and reads its relocated data.
        if by_dynload.ends_with("libz.so") {
            // SAFETY: zlibVersion is `const char *(void)`.
            let version =
                unsafe { lib.get::<extern "C" fn() -> *const i8>("zlibVersion") }.unwrap()();
            // SAFETY: a NUL-terminated string of libz's.
            let version = unsafe { std::ffi::CStr::from_ptr(version) };
            assert!(version.to_bytes().starts_with(b"1."), "{version:?}");
        } else {
            // SAFETY: relro_value is `int (void)`.
            let value = unsafe { lib.get::<extern "C" fn() -> i32>("relro_value") }.unwrap();
            assert_eq!(value(), 42);
        }
        lib.close().unwrap();
        // SAFETY: the handle from above, nothing of it in use.
        assert_eq!(unsafe { libc::dlclose(h) }, 0);
    }
}

/// A PT_GNU_RELRO of megabytes is populated just before its object is
/// relocated, in 2 MiB stretches that hold at least as many RELATIVE
/// relocations as pages (two pointers a page here); where relocations are
/// sparse (one every 16 pages) its pages are left to their first write.
/// In the mixed build, sparse for its first 2 MiB and dense after, only
/// what follows is populated. Under either loader the table is then the
/// file's bytes, relocated, read-only and mapped from the file, and the
/// very same pages are private copies; dynload's loading thread takes no
/// fault in the pages it populated (a helper thread copies part of them by
/// faults of its own), where glibc's takes one a page. (The fixtures
/// count on gcc's defaults here: RELA with DT_RELACOUNT, not
/// `-z pack-relative-relocs`.)
#[test]
fn big_relro_is_copied_before_relocation_only_where_relocations_are_dense() {
    // (name, pointer period, first word of the period, the table's pages
    // dynload populates, at least: all 1,281 in the dense build, the 768
    // after the first 2 MiB in the mixed one, which the second stretch
    // holds but for its first few hundred bytes)
    let builds = [
        ("dense", "256", "0", 1279),
        ("sparse", "8192", "0", 0),
        ("mixed", "256", "262144", 767),
    ];
    let mut libs = Vec::new();
    for (name, every, from, _) in builds {
        for loader in ["g", "d"] {
            libs.push(
                Lib::src(&format!("{loader}_{name}"), "big_relro.c")
                    .flag("{src}/big_relro_table.S")
                    .define("POINTER_EVERY", every)
                    .define("DENSE_FROM", from)
                    .no_log(),
            );
        }
    }
    let set = Set::build("api-big-relro", &libs);
    for (name, _, _, populated) in builds {
        // (A counter for each build: its ring buffer holds 4,096 faults.)
        let counter = FaultCounter::start();
        let by_glibc = std::ffi::CString::new(set.path(&format!("g_{name}"))).unwrap();
        let (before, sampled) = (counter.count(), counter.addresses().len());
        // SAFETY: a path; the fixture has no constructors.
        let h = unsafe { libc::dlopen(by_glibc.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        let glibc_faults = (counter.count() - before) as usize;
        let glibc_addresses = counter.addresses().split_off(sampled);
        assert!(!h.is_null(), "glibc could not load the {name} build");
        let glibc = |symbol: &CStr| {
            // SAFETY: a symbol of the handle above.
            let f = unsafe { libc::dlsym(h, symbol.as_ptr()) };
            assert!(!f.is_null(), "{name}: no {symbol:?} under glibc");
            f
        };
        // SAFETY: the fixture's functions, with these signatures.
        let (glibc_mismatches, glibc_start, glibc_bytes) = unsafe {
            (
                std::mem::transmute::<*mut c_void, extern "C" fn() -> i64>(glibc(
                    c"big_relro_mismatches",
                )),
                std::mem::transmute::<*mut c_void, extern "C" fn() -> usize>(glibc(
                    c"big_relro_start",
                )),
                std::mem::transmute::<*mut c_void, extern "C" fn() -> usize>(glibc(
                    c"big_relro_bytes",
                )),
            )
        };
        assert_eq!(glibc_mismatches(), 0, "{name} under glibc");

        let (before, sampled) = (counter.count(), counter.addresses().len());
        let lib = unsafe { Library::open(set.path(&format!("d_{name}")), OpenFlags::NOW) }.unwrap();
        let dynload_faults = (counter.count() - before) as usize;
        let dynload_addresses = counter.addresses().split_off(sampled);
        // SAFETY: the fixture's functions, with these signatures.
        let (mismatches, start, bytes) = unsafe {
            (
                lib.get::<extern "C" fn() -> i64>("big_relro_mismatches")
                    .unwrap(),
                lib.get::<extern "C" fn() -> usize>("big_relro_start")
                    .unwrap(),
                lib.get::<extern "C" fn() -> usize>("big_relro_bytes")
                    .unwrap(),
            )
        };
        assert_eq!(mismatches(), 0, "{name} under dynload");

        let table =
            |start: usize, bytes: usize| (start & !4095, (start + bytes).next_multiple_of(4096));
        let (lo, hi) = table(start(), bytes());
        let (glibc_lo, glibc_hi) = table(glibc_start(), glibc_bytes());
        let files = [
            set.path(&format!("g_{name}")),
            set.path(&format!("d_{name}")),
        ];
        for (who, file, lo, hi) in [
            ("glibc", &files[0], glibc_lo, glibc_hi),
            ("dynload", &files[1], lo, hi),
        ] {
            // The file's own mappings, read-only, cover the whole table.
            let rows: Vec<_> = testkit::mappings_of(file)
                .into_iter()
                .filter(|r| r.0 < hi && lo < r.1)
                .collect();
            let covered: usize = rows.iter().map(|r| r.1.min(hi) - r.0.max(lo)).sum();
            assert!(
                covered == hi - lo && rows.iter().all(|r| r.2.starts_with("r--")),
                "{name} under {who}: not the file's read-only pages: {rows:x?}"
            );
        }
        // The same pages are private copies (each page's offset in the
        // table, which the two loaders place alike within a page).
        let private = |lo: usize, hi: usize| -> Vec<usize> {
            let pages = pages_of(lo, hi);
            (0..pages.len()).filter(|&i| pages[i].1).collect()
        };
        assert_eq!(
            private(lo, hi),
            private(glibc_lo, glibc_hi),
            "{name}: private pages under dynload, then glibc"
        );
        let faults_in = |addresses: &[usize], lo: usize, hi: usize| {
            addresses.iter().filter(|&&a| (lo..hi).contains(&a)).count()
        };
        let (glibc_in, dynload_in) = (
            faults_in(&glibc_addresses, glibc_lo, glibc_hi),
            faults_in(&dynload_addresses, lo, hi),
        );
        eprintln!(
            "{name}: faults in the table: glibc {glibc_in} (of {glibc_faults}), dynload {dynload_in} (of {dynload_faults})"
        );
        let written = private(lo, hi).len();
        assert!(
            glibc_in >= written,
            "{name}: glibc took {glibc_in} faults in the table, for {written} pages written"
        );
        // What dynload did not populate, it faults in, as glibc does.
        assert!(
            dynload_in <= glibc_in && glibc_in - dynload_in >= populated,
            "{name}: dynload took {dynload_in} faults in the table, glibc {glibc_in}: {populated} or more pages should have been populated"
        );
        lib.close().unwrap();
        // SAFETY: the handle from above, nothing of it in use.
        assert_eq!(unsafe { libc::dlclose(h) }, 0);
    }
}

/// A big RELRO is copied once relocation starts (by a helper thread while
/// the dependencies are relocated), not when the object is mapped: a load
/// that fails on a missing dependency copies
/// nothing, and one that starts over because glibc must first load a
/// C-runtime library it needs (here librt, which the driver has not
/// loaded) copies once. The `--stats` summary counts the bytes.
#[test]
fn big_relro_is_copied_only_by_loads_that_get_to_relocation() {
    let dense = |name: &str| {
        Lib::src(name, "big_relro.c")
            .flag("{src}/big_relro_table.S")
            .flag("-Wl,-z,nopack-relative-relocs")
            .define("POINTER_EVERY", "256")
            .define("DENSE_FROM", "0")
            .no_log()
    };
    let set = Set::build(
        "api-big-relro-late",
        &[
            Lib::plain("gone").no_log(),
            dense("needs_gone").dep("gone"),
            dense("needs_rt").flag("-Wl,-l:librt.so.1"),
        ],
    );
    std::fs::remove_file(set.path("gone")).unwrap();
    let needed = testkit::dynamic_section(set.path("needs_rt"));
    assert!(needed.contains("[librt.so.1]"), "{needed}");
    let run = testkit::run_driver(
        &set,
        &["open $needs_gone NOW", "open $needs_rt NOW"],
        testkit::Loader::Dynload,
        &[("DYNLOAD_STATS", "1")],
    );
    assert!(
        run.stdout
            .contains("open libapi_big_relro_late_needs_gone.so: NULL (")
            && run
                .stdout
                .contains("open libapi_big_relro_late_needs_rt.so: h"),
        "{}",
        run.stdout
    );
    assert!(
        run.debug
            .contains("librt.so.1 [0];  C runtime, loaded by glibc"),
        "librt was not left to glibc:\n{}",
        run.debug
    );
    // All of RELRO's pages (dense throughout), once.
    let file = std::fs::read(set.path("needs_rt")).unwrap();
    const PT_GNU_RELRO: u32 = 0x6474_e552;
    let relro = testkit::damage::phdrs_of(&file, PT_GNU_RELRO)[0];
    let (vaddr, memsz) = (
        testkit::damage::get_u64(&file, relro + 16),
        testkit::damage::get_u64(&file, relro + 40),
    );
    let kib = ((vaddr + memsz).next_multiple_of(4096) - vaddr / 4096 * 4096) / 1024;
    assert!(kib > 5 * 1024, "{kib} KiB of RELRO");
    let summary = run
        .stderr
        .lines()
        .find(|l| l.starts_with("dynload: 2 dlopen calls"))
        .unwrap_or_else(|| panic!("no summary:\n{}", run.stderr));
    assert!(
        summary.contains(&format!("; {kib} KiB of RELRO copied before relocation;")),
        "{summary}"
    );
}

/// This thread's page faults, counted by the kernel's software event (the
/// faults a program takes; not those `madvise` takes on its behalf, which
/// `getrusage` would count too), each sampled with its address into a ring
/// buffer.
struct FaultCounter(std::os::fd::OwnedFd, RingBuffer);

/// The pages a perf event's samples go to: a header page, then `DATA`.
struct RingBuffer(*mut u8);

impl RingBuffer {
    const DATA: usize = 16 * 4096;
}

impl Drop for RingBuffer {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `FaultCounter::start`, of this size.
        unsafe { libc::munmap(self.0.cast(), 4096 + RingBuffer::DATA) };
    }
}

impl FaultCounter {
    fn start() -> FaultCounter {
        // perf_event_attr as of PERF_ATTR_SIZE_VER0 (64 bytes).
        #[repr(C)]
        struct Attr {
            kind: u32,
            size: u32,
            config: u64,
            sample_period: u64,
            sample_type: u64,
            read_format: u64,
            flags: u64,
            wakeup_events: u32,
            bp_type: u32,
            config1: u64,
        }
        const PERF_TYPE_SOFTWARE: u32 = 1;
        const PERF_COUNT_SW_PAGE_FAULTS: u64 = 2;
        const PERF_SAMPLE_ADDR: u64 = 1 << 3;
        const EXCLUDE_HV: u64 = 1 << 6;
        let attr = Attr {
            kind: PERF_TYPE_SOFTWARE,
            size: std::mem::size_of::<Attr>() as u32,
            config: PERF_COUNT_SW_PAGE_FAULTS,
            sample_period: 1,
            sample_type: PERF_SAMPLE_ADDR,
            read_format: 0,
            flags: EXCLUDE_HV,
            wakeup_events: 0,
            bp_type: 0,
            config1: 0,
        };
        // SAFETY: perf_event_open(&attr, this thread, any CPU, no group, no
        // flags); `attr` outlives the call.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_perf_event_open,
                &attr as *const Attr,
                0,
                -1,
                -1,
                libc::c_ulong::from(0u8),
            )
        };
        assert!(
            fd >= 0,
            "perf_event_open: {} (perf_event_paranoid: {:?})",
            std::io::Error::last_os_error(),
            std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        );
        // SAFETY: a descriptor just returned to us and owned by nobody else.
        let fd: std::os::fd::OwnedFd = unsafe { std::os::fd::FromRawFd::from_raw_fd(fd as i32) };
        // SAFETY: a new shared mapping of the event's ring buffer.
        let ring = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096 + RingBuffer::DATA,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                0,
            )
        };
        assert_ne!(
            ring,
            libc::MAP_FAILED,
            "{}",
            std::io::Error::last_os_error()
        );
        FaultCounter(fd, RingBuffer(ring.cast()))
    }

    /// The address of each fault so far, in order (each sample is its
    /// header and the address).
    fn addresses(&self) -> Vec<usize> {
        let ring = self.1 .0;
        // SAFETY: `data_head` of the header page (perf_event_mmap_page, at
        // byte 1024), written by the kernel; read once, with acquire order.
        let head = unsafe {
            (*ring.add(1024).cast::<std::sync::atomic::AtomicU64>())
                .load(std::sync::atomic::Ordering::Acquire)
        } as usize;
        assert!(head <= RingBuffer::DATA, "the ring buffer overflowed");
        // SAFETY: the data pages, of which the kernel wrote `head` bytes.
        let data = unsafe { std::slice::from_raw_parts(ring.add(4096), head) };
        let mut addresses = Vec::new();
        let mut at = 0;
        while at + 8 <= head {
            let kind = u32::from_ne_bytes(data[at..at + 4].try_into().unwrap());
            let size = u16::from_ne_bytes(data[at + 6..at + 8].try_into().unwrap()) as usize;
            const PERF_RECORD_SAMPLE: u32 = 9;
            if kind == PERF_RECORD_SAMPLE {
                addresses
                    .push(u64::from_ne_bytes(data[at + 8..at + 16].try_into().unwrap()) as usize);
            }
            at += size.max(8);
        }
        addresses
    }

    fn count(&self) -> u64 {
        use std::io::Read;
        let mut buf = [0u8; 8];
        std::fs::File::from(self.0.try_clone().unwrap())
            .read_exact(&mut buf)
            .unwrap();
        u64::from_ne_bytes(buf)
    }
}

/// Each page of `[lo, hi)`: present, and if so a private copy (not the
/// file's page), from `/proc/self/pagemap`.
fn pages_of(lo: usize, hi: usize) -> Vec<(bool, bool)> {
    use std::os::unix::fs::FileExt;
    let map = std::fs::File::open("/proc/self/pagemap").unwrap();
    (lo / 4096..hi.div_ceil(4096))
        .map(|page| {
            let mut entry = [0u8; 8];
            map.read_exact_at(&mut entry, page as u64 * 8).unwrap();
            let e = u64::from_ne_bytes(entry);
            let present = e >> 63 & 1 == 1;
            (present, present && e >> 61 & 1 == 0)
        })
        .collect()
}

/// Before relocating, dynload has the kernel make private copies of the
/// pages relocation is about to write (PT_GNU_RELRO and the PLT slots) in
/// one call each instead of one write fault a page, and of no other page:
/// after the load the same pages are private copies as under glibc, the
/// `.data` no relocation touches is still the file's, and the load takes
/// fewer faults than glibc's.
#[test]
fn pages_relocation_writes_are_copied_in_one_call_and_no_others() {
    let set = Set::build(
        "api-written",
        &[
            Lib::src("g_written", "written_pages.c").no_log(),
            Lib::src("d_written", "written_pages.c").no_log(),
            Lib::src("g_warm", "relro.c").no_log(),
            Lib::src("d_warm", "relro.c").no_log(),
            Lib::src("g_small", "relro.c").no_log(),
            Lib::src("d_small", "relro.c").no_log(),
        ],
    );
    // (Each loader's first load takes faults of its own: its heap, the
    // library path's caches.)
    let warm = std::ffi::CString::new(set.path("g_warm")).unwrap();
    // SAFETY: a path; the fixture has no constructors.
    let h = unsafe { libc::dlopen(warm.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    assert!(!h.is_null());
    // SAFETY: the handle just returned.
    assert_eq!(unsafe { libc::dlclose(h) }, 0);
    unsafe { Library::open(set.path("d_warm"), OpenFlags::NOW) }
        .unwrap()
        .close()
        .unwrap();
    let file = set.path("g_written");
    let bytes = std::fs::read(&file).unwrap();
    let section = |name| testkit::damage::section_address(&bytes, name);
    let (relro_at, _) = section(".data.rel.ro");
    let (slots_at, slots_len) = section(".got.plt");
    let (plain_at, plain_len) = section(".data");
    let page = |a: usize| a & !4095;
    // Whole pages of each: the table's, the slots' and .data's inside.
    let check = |who: &str, relro: usize, faults: u64| {
        let base = relro - relro_at;
        let written = pages_of(relro, relro + 32 * 4096)
            .into_iter()
            .chain(pages_of(base + slots_at, base + slots_at + slots_len));
        for (i, (present, private)) in written.enumerate() {
            assert!(
                present && private,
                "{who}: written page {i} is not a private copy"
            );
        }
        let inside = (
            page(base + plain_at) + 4096,
            page(base + plain_at + plain_len),
        );
        let untouched = pages_of(inside.0, inside.1);
        assert_eq!(untouched.len(), 7, "{who}");
        for (i, (_, private)) in untouched.iter().enumerate() {
            assert!(!private, "{who}: .data page {i} was copied: {untouched:?}");
        }
        eprintln!("{who}: {faults} page faults in the load");
    };

    // The faults of a load at addresses from the first page of the table
    // to the end of the slots' (.dynamic lies in between).
    let in_written = |addresses: &[usize], relro: usize| {
        let base = relro - relro_at;
        let written = page(base + relro_at)..(base + slots_at + slots_len).next_multiple_of(4096);
        addresses.iter().filter(|a| written.contains(a)).count()
    };

    let path = std::ffi::CString::new(file.as_str()).unwrap();
    let counter = FaultCounter::start();
    let before = counter.count();
    // SAFETY: a path; the fixture has no constructors.
    let h = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    let glibc_faults = counter.count() - before;
    let glibc_addresses = counter.addresses();
    assert!(!h.is_null(), "glibc could not load {file}");
    // SAFETY: symbols of the handle above, of these types.
    let (relro, calls): (usize, extern "C" fn() -> i32) = unsafe {
        (
            libc::dlsym(h, c"written_relro".as_ptr()) as usize,
            std::mem::transmute::<*mut c_void, extern "C" fn() -> i32>(libc::dlsym(
                h,
                c"written_calls".as_ptr(),
            )),
        )
    };
    check("glibc", relro, glibc_faults);
    assert_eq!(calls(), 900);
    // (A read fault on .dynamic, then a write fault on each written page.)
    let glibc_written = in_written(&glibc_addresses, relro);
    assert!(
        glibc_written >= 36,
        "glibc: {glibc_written} faults in written pages"
    );

    let before = counter.count();
    let sampled = counter.addresses().len();
    let lib = unsafe { Library::open(set.path("d_written"), OpenFlags::NOW) }.unwrap();
    let dynload_faults = counter.count() - before;
    let dynload_addresses = counter.addresses().split_off(sampled);
    // SAFETY: the fixture's symbols, of these types.
    let (relro, calls) = unsafe {
        (
            lib.get::<*const c_void>("written_relro").unwrap().as_ptr() as usize,
            lib.get::<extern "C" fn() -> i32>("written_calls").unwrap(),
        )
    };
    check("dynload", relro, dynload_faults);
    assert_eq!(calls(), 900);
    // None at all in those pages: RELRO's were copied before the dynamic
    // section in them was read (a read there would have mapped the
    // segment's file pages around it, for each copy to replace), the
    // slots' before relocation.
    let dynload_written = in_written(&dynload_addresses, relro);
    assert_eq!(
        dynload_written, 0,
        "dynload: faults in written pages at {:x?}",
        dynload_addresses
    );
    // 33 pages of RELRO and three of slots are written: under glibc each
    // is a fault. (The page where .bss starts is zeroed by both loaders.)
    assert!(glibc_faults >= 36, "glibc: {glibc_faults} faults");
    assert!(
        dynload_faults + 30 <= glibc_faults,
        "dynload: {dynload_faults} faults, glibc: {glibc_faults}"
    );
    lib.close().unwrap();
    // SAFETY: the handle from above, nothing of it in use.
    assert_eq!(unsafe { libc::dlclose(h) }, 0);

    // A small object: its writable segment is a page of RELRO and the
    // page where .bss starts, both written by any load, and dynload maps it
    // with its copies made by the `mmap`. glibc takes a read and a write
    // fault on .dynamic and a write fault on .bss; dynload none.
    let small = std::ffi::CString::new(set.path("g_small")).unwrap();
    let before = counter.count();
    // SAFETY: a path; the fixture has no constructors.
    let h = unsafe { libc::dlopen(small.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    let glibc_faults = counter.count() - before;
    assert!(!h.is_null());
    let before = counter.count();
    let lib = unsafe { Library::open(set.path("d_small"), OpenFlags::NOW) }.unwrap();
    let dynload_faults = counter.count() - before;
    eprintln!("small object: glibc {glibc_faults} faults, dynload {dynload_faults}");
    assert!(
        dynload_faults + 2 <= glibc_faults,
        "small object: dynload {dynload_faults} faults, glibc {glibc_faults}"
    );
    // SAFETY: relro_value is `int (void)`.
    assert_eq!(
        unsafe { lib.get::<extern "C" fn() -> i32>("relro_value") }.unwrap()(),
        42
    );
    let writable: Vec<_> = mappings_of(&set.file("d_small"))
        .into_iter()
        .filter(|m| m.2.starts_with("rw"))
        .collect();
    assert_eq!(writable.len(), 1, "{writable:?}");
    for (i, (present, private)) in pages_of(writable[0].0, writable[0].1)
        .into_iter()
        .enumerate()
    {
        assert!(present && private, "small object: writable page {i}");
    }
    lib.close().unwrap();
    // SAFETY: the handle from above, nothing of it in use.
    assert_eq!(unsafe { libc::dlclose(h) }, 0);
}

/// A re-open by the path of one of dynload's objects gives that object,
/// first in load order, also after glibc mapped the same file again for a
/// caller of its own (glibc cannot know dynload's copy); and it is found
/// without reading glibc's list of objects, which may have changed.
#[test]
fn reopen_by_path_gives_dynloads_object_first_in_load_order() {
    let set = Set::build("api-reopen-path", &[Lib::src("r", "relro.c").no_log()]);
    let path = set.path("r");
    let value_at = |lib: &Library| {
        // SAFETY: relro_value is `int (void)`.
        unsafe { lib.get::<extern "C" fn() -> i32>("relro_value") }
            .unwrap()
            .as_ptr() as usize
    };
    let first = unsafe { Library::open(&path, OpenFlags::NOW) }.unwrap();
    let ours = value_at(&first);
    let c = std::ffi::CString::new(path.as_str()).unwrap();
    // SAFETY: a path; the fixture has no constructors.
    let h = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    assert!(!h.is_null());
    // SAFETY: a symbol of the handle above.
    let glibcs = unsafe { libc::dlsym(h, c"relro_value".as_ptr()) } as usize;
    assert_ne!(glibcs, ours, "glibc reused dynload's copy?");
    let again = unsafe { Library::open(&path, OpenFlags::NOW) }.unwrap();
    assert_eq!(value_at(&again), ours, "the re-open found glibc's copy");
    // SAFETY: the handle from above, nothing of it in use.
    assert_eq!(unsafe { libc::dlclose(h) }, 0);
    // After glibc unloaded its copy, the re-open still finds dynload's.
    let third = unsafe { Library::open(&path, OpenFlags::NOW) }.unwrap();
    assert_eq!(value_at(&third), ours);
    for lib in [first, again, third] {
        lib.close().unwrap();
    }
    assert!(!mapped(&set.file("r")), "still mapped after the last close");
}

/// An object glibc already loaded (here libgcc_s, a dependency of this
/// test program) is reused by path, through a symlink, and by soname.
#[test]
fn objects_glibc_loaded_are_reused_never_mapped_twice() {
    let glibc_copy = dynload::loaded_objects()
        .into_iter()
        .find(|o| o.soname.as_deref() == Some("libgcc_s.so.1"))
        .expect("libgcc_s is a dependency of Rust test programs");
    assert_eq!(glibc_copy.loaded_by, LoadedBy::Glibc);
    let link = std::env::temp_dir().join(format!("dynload-gcc-link-{}.so", std::process::id()));
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&glibc_copy.path, &link).unwrap();
    for name in [
        glibc_copy.path.clone(),
        link.clone(),
        "libgcc_s.so.1".into(),
    ] {
        let lib = unsafe { Library::open(&name, OpenFlags::NOW) }.unwrap();
        assert_eq!(lib.path(), glibc_copy.path, "{}", name.display());
        let unwind = unsafe { lib.get::<*mut c_void>("_Unwind_RaiseException") }.unwrap();
        assert!(!unwind.as_ptr().is_null());
        lib.close().unwrap();
    }
    std::fs::remove_file(&link).unwrap();
    let files = files_mapped_here("libgcc_s");
    assert_eq!(files.len(), 1, "{files:?}");
}

/// Objects glibc's own dlopen loaded: RTLD_GLOBAL ones are in the global
/// scope dynload's objects bind against, RTLD_LOCAL ones are not — dynload
/// asks glibc (a dlsym on the main program's handle searches exactly the
/// global scope) rather than reading glibc's private lists.
#[test]
fn objects_glibc_opened_global_are_in_the_global_scope() {
    let set = Set::build(
        "api-glibcopen",
        &[
            Lib::node("gglobal", 7).no_log(),
            Lib::node("glocal", 8).no_log(),
            Lib::src("useg", "uses_a.c")
                .no_log()
                .define("id_a", "id_gglobal"),
            Lib::src("usel", "uses_a.c")
                .no_log()
                .define("id_a", "id_glocal"),
        ],
    );
    let c = |p: String| std::ffi::CString::new(p).unwrap();
    // SAFETY: glibc's own dlopen, on fixtures whose constructors are sound.
    let (hg, hl) = unsafe {
        (
            libc::dlopen(
                c(set.path("gglobal")).as_ptr(),
                libc::RTLD_NOW | libc::RTLD_GLOBAL,
            ),
            libc::dlopen(
                c(set.path("glocal")).as_ptr(),
                libc::RTLD_NOW | libc::RTLD_LOCAL,
            ),
        )
    };
    assert!(!hg.is_null() && !hl.is_null());
    let useg = unsafe { Library::open(set.path("useg"), OpenFlags::NOW) }.unwrap();
    let call = unsafe { useg.get::<extern "C" fn() -> i32>("call_id_a") }.unwrap();
    assert_eq!(call(), 7);
    let err = unsafe { Library::open(set.path("usel"), OpenFlags::NOW) }.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{}: undefined symbol: id_glocal", set.path("usel"))
    );
    // Opening glibc's objects through dynload gives glibc's copies.
    let g = unsafe { Library::open(set.path("gglobal"), OpenFlags::NOW) }.unwrap();
    assert!(dynload::loaded_objects()
        .iter()
        .any(|o| o.path == g.path() && o.loaded_by == LoadedBy::Glibc));
    drop(g);
    useg.close().unwrap();
}

/// An object that exports no symbol has a GNU hash table without chains;
/// it loads, and a lookup in it finds nothing.
#[test]
fn an_object_that_exports_nothing() {
    let set = Set::build(
        "api-exportsnothing",
        &[Lib::src("nothing", "exports_nothing.c").no_log()],
    );
    let lib = unsafe { Library::open(set.path("nothing"), OpenFlags::NOW) }.unwrap();
    let err = unsafe { lib.get::<*mut c_void>("init") }.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{}: undefined symbol: init", set.path("nothing"))
    );
    lib.close().unwrap();
}

/// A destructor that makes the first (lazily bound) calls into objects
/// unloaded by the same close still reaches them (glibc bug 30425, which
/// glibc 2.36 fails; the C ABI test compares with glibc's eager run).
#[test]
fn a_destructor_binds_lazily_during_close() {
    let set = testkit::scenarios::dtor_lazy_objects("api-dtorlazy");
    let log = unsafe { Library::open(set.path("log"), OpenFlags::NOW) }.unwrap();
    let dump =
        *unsafe { log.get::<extern "C" fn() -> *const std::ffi::c_char>("log_dump") }.unwrap();
    let top =
        unsafe { Library::open(set.path("top"), OpenFlags::LAZY | OpenFlags::GLOBAL) }.unwrap();
    let alive = *unsafe { top.get::<extern "C" fn() -> i32>("alive") }.unwrap();
    assert_eq!(alive(), 1);
    top.close().unwrap();
    let text = unsafe { std::ffi::CStr::from_ptr(dump()) };
    assert_eq!(text.to_str().unwrap(), "dtor slot_5=42 lazy_function=42");
    assert!(!mapped(&set.file("callee")));
}

/// Two unique symbols whose names have the same GNU hash stay two
/// definitions, each shared by the objects that define it, as in glibc.
#[test]
fn unique_symbols_with_the_same_hash_stay_apart() {
    type Address = extern "C" fn() -> *const i32;
    let lib = |name| Lib::src(name, "unique_same_hash.c").no_log();
    let set = Set::build(
        "api-uniquehash",
        &[lib("da"), lib("db"), lib("ga"), lib("gb")],
    );
    // (Each loader opens its own pair: a definition glibc made would
    // otherwise be dynload's too.)
    let ours: Vec<[*const i32; 2]> = ["da", "db"]
        .iter()
        .map(|n| {
            // SAFETY: the fixture has no constructors; both functions are
            // `int *f(void)`.
            let l =
                unsafe { Library::open(set.path(n), OpenFlags::NOW | OpenFlags::LOCAL) }.unwrap();
            let a = *unsafe { l.get::<Address>("address_Az") }.unwrap();
            let b = *unsafe { l.get::<Address>("address_BY") }.unwrap();
            std::mem::forget(l);
            [a(), b()]
        })
        .collect();
    let glibc: Vec<[*const i32; 2]> = ["ga", "gb"]
        .iter()
        .map(|n| {
            let path = std::ffi::CString::new(set.path(n)).unwrap();
            // SAFETY: glibc's dlopen and dlsym on the same fixture.
            unsafe {
                let h = libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
                assert!(!h.is_null());
                let f = |s: &std::ffi::CStr| {
                    let f = libc::dlsym(h, s.as_ptr());
                    assert!(!f.is_null());
                    std::mem::transmute::<*mut c_void, Address>(f)()
                };
                [f(c"address_Az"), f(c"address_BY")]
            }
        })
        .collect();
    for (who, pair) in [("dynload", &ours), ("glibc", &glibc)] {
        let (a, b) = (pair[0], pair[1]);
        assert_eq!(a, b, "{who}: each name has one definition");
        assert_ne!(a[0], a[1], "{who}: the two names are two definitions");
        // SAFETY: addresses of the fixture's ints.
        assert_eq!(unsafe { (*a[0], *a[1]) }, (1, 2), "{who}");
    }
}

/// A unique symbol (an inline function's static variable) that glibc
/// already resolved, in an object glibc opened RTLD_LOCAL, is the one
/// dynload's object uses too.
#[test]
fn unique_symbols_are_shared_with_glibcs_objects() {
    let set = testkit::scenarios::unique_objects("api-uniqueglibc");
    let path = std::ffi::CString::new(set.path("ua")).unwrap();
    // SAFETY: glibc's own dlopen and dlsym, on a fixture whose constructors
    // are sound; `bump` is `int bump(void)`.
    let glibc_bump = unsafe {
        let h = libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
        assert!(!h.is_null());
        let f = libc::dlsym(h, c"bump".as_ptr());
        assert!(!f.is_null());
        std::mem::transmute::<*mut c_void, extern "C" fn() -> i32>(f)
    };
    let ub = unsafe { Library::open(set.path("ub"), OpenFlags::NOW | OpenFlags::LOCAL) }.unwrap();
    assert!(dynload::loaded_objects()
        .iter()
        .any(|o| o.path == ub.path() && o.loaded_by == LoadedBy::Dynload));
    let bump = *unsafe { ub.get::<extern "C" fn() -> i32>("bump") }.unwrap();
    assert_eq!((glibc_bump(), bump(), glibc_bump(), bump()), (1, 2, 3, 4));
}

/// Loading a library big enough for its RELRO copy and its RELATIVE
/// relocations to be shared with a helper thread (655,360 RELATIVE
/// entries, 5 MiB of RELRO) leaves a single-threaded C program
/// single-threaded in glibc's eyes, as glibc's own load does: the helper
/// is not a pthread (a pthread would turn `__libc_single_threaded` off for
/// good, and with it the fast paths of malloc and libstdc++'s reference
/// counts). The table is right, and the `--stats` summary counts the two
/// pieces of work.
#[test]
fn a_load_shared_with_a_helper_thread_leaves_the_program_single_threaded() {
    let set = Set::build(
        "api-two-cores",
        &[testkit::scenarios::big_relative_table().no_log()],
    );
    let program = testkit::program("single_threaded.c");
    let args = [set.path("table")];
    let want = "single-threaded before: 1, after: 1; 0 words wrong\n";
    let (glibc, status) =
        testkit::run_program(&program, &args, &set.dir, testkit::Loader::Glibc, &[]);
    assert!(status.success() && glibc.stdout == want, "glibc: {glibc:?}");
    let (ours, status) = testkit::run_program(
        &program,
        &args,
        &set.dir,
        testkit::Loader::Dynload,
        &[("DYNLOAD_STATS", "1")],
    );
    assert!(status.success() && ours.stdout == want, "dynload: {ours:?}");
    assert!(
        ours.stderr
            .contains("; 2 pieces of work shared with a helper thread; "),
        "{}",
        ours.stderr
    );
}

/// A process's first filter over the global scope is a one-off, in a
/// mapping of its own, dropped when the `dlopen` that built it ends (a
/// process that loads once keeps none); the next is built on the heap and
/// kept, and lookups through either find what glibc's do.
#[test]
fn the_first_global_scope_filter_is_dropped_after_its_dlopen() {
    use testkit::scenarios::{many_refs_definer, many_refs_user};
    const CHILD: &str = "DYNLOAD_TEST_FILTER_CHILD";
    let set = Set::build(
        "api-one-off-filter",
        &[
            many_refs_definer("d", 1000),
            many_refs_user("u1"),
            many_refs_user("u2"),
        ],
    );
    if std::env::var_os(CHILD).is_none() {
        // (A process of its own: the filters built are counted per process.)
        testkit::rerun_in_child(
            "the_first_global_scope_filter_is_dropped_after_its_dlopen",
            None,
            &[(CHILD, "1")],
        );
        return;
    }
    assert_eq!(dynload::testing::global_filter_state(), (0, None));
    // 512 lookups each, enough for the filter (see the test below).
    let probe = |name: &str| {
        // SAFETY: the fixture's constructors only register.
        let lib = unsafe { Library::open(set.path(name), OpenFlags::NOW) }.unwrap();
        // SAFETY: probe is `int (void)`.
        let value = unsafe { lib.get::<extern "C" fn() -> i32>("probe") }.unwrap()();
        assert_eq!(value, 1167, "{name}");
        lib
    };
    let u1 = probe("u1");
    assert_eq!(dynload::testing::global_filter_state(), (1, None));
    drop(u1);
    let _u2 = probe("u2");
    let (built, kept) = dynload::testing::global_filter_state();
    assert_eq!(built, 2);
    let (bytes, one_off) = kept.expect("the second filter is kept");
    assert!(bytes > 0 && !one_off, "{kept:?}");
    // Loaded again, u1 binds through the kept filter, which is not rebuilt.
    let _u1 = probe("u1");
    assert_eq!(
        dynload::testing::global_filter_state(),
        (2, Some((bytes, false)))
    );
}

/// glibc's own loads change its list of objects. One it loads locally
/// leaves its global scope, and so dynload's filter over that scope, as it
/// was; one it makes global (`i`, defining the same functions as `d`) is
/// in the scope from then on, and dynload's next lookups find it first, as
/// glibc's own do.
#[test]
fn the_global_scope_filter_follows_glibcs_own_loads() {
    use testkit::scenarios::{many_refs_definer, many_refs_user};
    let set = Set::build(
        "api-glibc-global",
        &[
            many_refs_definer("d", 1000),
            many_refs_definer("i", 2000),
            Lib::src("other", "relro.c").no_log(),
            many_refs_user("u0"),
            many_refs_user("u1"),
            many_refs_user("u2"),
            many_refs_user("u3"),
        ],
    );
    let glibc_open = |name: &str, mode: libc::c_int| {
        let path = std::ffi::CString::new(set.path(name)).unwrap();
        // SAFETY: a path; the fixtures' constructors only register.
        let h = unsafe { libc::dlopen(path.as_ptr(), mode) };
        assert!(!h.is_null(), "glibc could not load {name}");
        h
    };
    // (u1's 512 lookups are enough for dynload to build the filter.)
    let probe = |name: &str| {
        // SAFETY: the fixture's constructors only register.
        let lib = unsafe { Library::open(set.path(name), OpenFlags::NOW) }.unwrap();
        // SAFETY: probe is `int (void)`.
        let value = unsafe { lib.get::<extern "C" fn() -> i32>("probe") }.unwrap()();
        (lib, value)
    };
    // (The process's first filter is dropped when its dlopen ends: u0's,
    // unless a test before built one. u1's is kept for u2's load.)
    let (_u0, value) = probe("u0");
    assert_eq!(value, 1167);
    let (_u1, value) = probe("u1");
    assert_eq!(value, 1167);
    assert!(matches!(
        dynload::testing::global_filter_state().1,
        Some((_, false))
    ));
    let _other = glibc_open("other", libc::RTLD_NOW | libc::RTLD_LOCAL);
    let (_u2, value) = probe("u2");
    assert_eq!(value, 1167, "after glibc's local load");
    let _i = glibc_open("i", libc::RTLD_NOW | libc::RTLD_GLOBAL);
    let (_u3, value) = probe("u3");
    let glibc_u3 = glibc_open("u3", libc::RTLD_NOW | libc::RTLD_LOCAL);
    // SAFETY: probe is `int (void)`, in the object glibc just loaded.
    let glibc_value = unsafe {
        std::mem::transmute::<*mut c_void, extern "C" fn() -> i32>(libc::dlsym(
            glibc_u3,
            c"probe".as_ptr(),
        ))()
    };
    assert_eq!(glibc_value, 2167);
    assert_eq!(value, glibc_value, "after glibc's global load");
}
