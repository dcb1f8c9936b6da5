//! Lazy binding and thread-local storage through the C ABI, in the parts
//! the shared scenarios cannot show: that binding really is lazy, a missing
//! function ending the process as glibc ends it, binding from destructors
//! during dlclose, dlinfo and dl_iterate_phdr TLS fields, __tls_get_addr
//! on a misaligned stack and next to a malloc that uses TLS, TLS
//! modules loaded and unloaded in a loop while threads run, and a lazily
//! bound PLT slot whose entry follows a TLS descriptor's.
//! Each run is compared with glibc's run of the same script.

use testkit::scenarios::{
    big_relative_table, copies, dtor_lazy_objects, lazy_objects, tls_objects, unique_objects,
};
use testkit::{compare, compare_env, damage, run_driver, run_driver_status, Lib, Loader, Set};

/// Where in DYNLOAD_DEBUG output the first binding of `symbol` is.
fn binding_of(debug: &str, symbol: &str) -> Option<usize> {
    debug.find(&format!("symbol `{symbol}'"))
}

#[test]
fn lazy_slots_are_bound_at_their_first_call() {
    let set = lazy_objects(
        "capi-lazyproof",
        &[Lib::src("callernow", "lazy_caller.c")
            .no_log()
            .dep("callee")
            .flag("-Wl,-z,now")],
    );
    let env = [("DYNLOAD_DEBUG", "files,libs,bindings")];
    // Opened lazily, nothing the PLT calls is bound by dlopen.
    let opened = run_driver(&set, &["open $caller LAZY"], Loader::Dynload, &env);
    assert!(opened.debug.contains("calling init:"), "{}", opened.debug);
    for f in ["six_ints_eight_doubles", "format", "slot_0", "slot_31"] {
        assert_eq!(binding_of(&opened.debug, f), None, "{f}:\n{}", opened.debug);
    }
    // The first call binds its own slot, after the constructors ran.
    let called = run_driver(
        &set,
        &["open $caller LAZY", "call h1 check_ints_doubles"],
        Loader::Dynload,
        &env,
    );
    let init = called.debug.rfind("calling init:").unwrap();
    let bound = binding_of(&called.debug, "six_ints_eight_doubles").expect("bound at the call");
    assert!(bound > init, "{}", called.debug);
    assert_eq!(binding_of(&called.debug, "slot_0"), None);
    assert!(called.stdout.contains("call check_ints_doubles: 1"));

    // RTLD_NOW, LD_BIND_NOW, DYNLOAD_BIND_NOW bind at dlopen, and so does
    // each of DF_BIND_NOW, DF_1_NOW and DT_BIND_NOW alone (-z now sets the
    // first two; copies of its output keep one of the three).
    let now = set.path("callernow");
    let only = |name: &str, f: &dyn Fn(&mut Vec<u8>)| {
        damage::variant(&now, &set.dir, name, |b| f(b));
    };
    const DT_FLAGS: u64 = 30;
    const DT_FLAGS_1: u64 = 0x6fff_fffb;
    const DT_BIND_NOW: u64 = 24;
    const DF_BIND_NOW: u64 = 8;
    const DF_1_NOW: u64 = 1;
    let clear = |b: &mut Vec<u8>, tag: u64, bit: u64| {
        let e = damage::dynamic_entry(b, tag);
        let v = damage::dynamic_value(b, tag);
        assert!(v & bit != 0);
        damage::put_u64(b, e + 8, v & !bit);
    };
    only("df_bind_now", &|b| clear(b, DT_FLAGS_1, DF_1_NOW));
    only("df_1_now", &|b| clear(b, DT_FLAGS, DF_BIND_NOW));
    only("dt_bind_now", &|b| {
        clear(b, DT_FLAGS_1, DF_1_NOW);
        clear(b, DT_FLAGS, DF_BIND_NOW);
        let e = damage::dynamic_entry(b, DT_FLAGS);
        damage::put_u64(b, e, DT_BIND_NOW);
    });
    let eager = [
        ("open $caller NOW", None),
        ("open $caller LAZY", Some(("LD_BIND_NOW", "1"))),
        ("open $caller LAZY", Some(("DYNLOAD_BIND_NOW", "1"))),
        ("open $callernow LAZY", None),
        ("open {dir}/df_bind_now.so LAZY", None),
        ("open {dir}/df_1_now.so LAZY", None),
        ("open {dir}/dt_bind_now.so LAZY", None),
    ];
    for (open, extra) in eager {
        let mut env = env.to_vec();
        env.extend(extra);
        let r = run_driver(&set, &[open], Loader::Dynload, &env);
        let init = r.debug.rfind("calling init:").unwrap();
        let bound = binding_of(&r.debug, "slot_31")
            .unwrap_or_else(|| panic!("{open} {extra:?}:\n{}", r.debug));
        assert!(bound < init, "{open} {extra:?} bound late:\n{}", r.debug);
    }
}

#[test]
fn a_missing_function_ends_the_process_as_glibc_does() {
    let set = Set::build(
        "capi-lazydie",
        &[Lib::node("dep", 1), Lib::src("u", "undef.c").dep("dep")],
    );
    let script = [
        "open $u LAZY",
        "call h1 harmless",
        "call h1 call_missing",
        "call h1 harmless",
    ];
    let (g, gs) = run_driver_status(&set, &script, Loader::Glibc, &[]);
    let (d, ds) = run_driver_status(&set, &script, Loader::Dynload, &[]);
    assert_eq!(gs.code(), Some(127), "glibc: {gs} {}", g.stderr);
    assert_eq!(ds.code(), Some(127), "dynload: {ds} {}", d.stderr);
    assert_eq!(
        g.stdout,
        "open libcapi_lazydie_u.so: h1\ncall harmless: 5\n"
    );
    assert_eq!(d.stdout, g.stdout);
    let want = format!(
        "{}: symbol lookup error: {}: undefined symbol: missing_function\n",
        testkit::driver().display(),
        set.path("u")
    );
    assert_eq!(g.stderr, want);
    assert_eq!(d.stderr, want);
}

#[test]
fn a_destructor_binds_lazily_during_dlclose() {
    let set = dtor_lazy_objects("capi-dtorlazy");
    let script = [
        "open $log NOW",
        "open $top LAZY|GLOBAL",
        "call h2 alive",
        "close h2",
        "log h1",
        "maps @callee",
    ];
    let want = "open libcapi_dtorlazy_log.so: h1\nopen libcapi_dtorlazy_top.so: h2\ncall alive: 1\nclose h2: 0\nlog: dtor slot_5=42 lazy_function=42\nmaps libcapi_dtorlazy_callee.so: 0\n";
    // glibc 2.36 crashes here unless binding is eager (fixed in 2.38):
    // its eager run is the reference.
    let eager = run_driver(&set, &script, Loader::Glibc, &[("LD_BIND_NOW", "1")]);
    assert_eq!(eager.stdout, want);
    let (lazy_glibc, status) = run_driver_status(&set, &script, Loader::Glibc, &[]);
    eprintln!("glibc with lazy binding: {status}");
    assert!(
        !status.success() || lazy_glibc.stdout == want,
        "glibc: {status}\n{}",
        lazy_glibc.stdout
    );
    let d = run_driver(
        &set,
        &script,
        Loader::Dynload,
        &[("DYNLOAD_DEBUG", "files,libs,bindings")],
    );
    assert_eq!(d.stdout, want);
    let fini = d.debug.find("calling fini:").unwrap();
    for f in ["slot_5", "lazy_function"] {
        let bound = binding_of(&d.debug, f).unwrap();
        assert!(bound > fini, "{f} was not bound lazily:\n{}", d.debug);
    }
}

#[test]
fn dlinfo_and_dl_iterate_phdr_report_tls() {
    let set = tls_objects("capi-tlsinfo");
    let script = [
        "open $gd NOW",
        "open $notls NOW",
        "tlsinfo h1",
        "tlsiter _gd.so",
        "call h1 tls_initial_ok",
        "tlsinfo h1",
        "tlsiter _gd.so",
        "tlsinfo h2",
        "tlsiter _notls.so",
        "open $desc NOW",
        "call h3 tls_initial_ok",
        "tlsinfo h3",
    ];
    let (g, _) = compare(&set, &script);
    assert!(
        g.stdout.contains("call tls_initial_ok: 1\ntlsinfo: 0 0 modid=set data=set\ntlsiter: libcapi_tlsinfo_gd.so modid=set data=set\ntlsinfo: 0 0 modid=0 data=NULL\ntlsiter: libcapi_tlsinfo_notls.so modid=0 data=NULL\n"),
        "{}",
        g.stdout
    );
}

#[test]
fn tls_get_addr_on_a_misaligned_stack_and_beside_a_tls_using_malloc() {
    let set = Set::build(
        "capi-tlsmisaligned",
        &[Lib::src("mis", "tls_misaligned.c")
            .no_log()
            .flag("-mno-red-zone")],
    );
    set.compile(&Lib::src("malloc", "tls_malloc.c").no_log());
    let script = [
        "open $mis NOW",
        "call h1 read_misaligned",
        "threads 8 h1 read_misaligned",
    ];
    let (g, _) = compare(&set, &script);
    assert!(
        g.stdout
            .contains("call read_misaligned: 5\nthreads read_misaligned: 40"),
        "{}",
        g.stdout
    );
    // The same with a malloc that uses dynamic TLS preloaded before
    // dynload (the slow paths above allocate blocks).
    let preload = testkit::preload_with_dynload(&set.path("malloc"));
    let d = run_driver(&set, &script, Loader::Dynload, &[("LD_PRELOAD", &preload)]);
    assert_eq!(d.stdout, g.stdout);
    assert!(testkit::dynload_mapped(&d, "_mis.so"), "{}", d.debug);
}

#[test]
fn tls_modules_load_and_unload_with_threads_running() {
    // 64 distinct TLS objects (copies of one file), opened, used by the
    // main thread and by short-lived threads, and closed, five times over,
    // while a background thread keeps using TLS of an object that stays.
    let set = tls_objects("capi-tlschurn");
    copies(&set, "gd", 64);
    let mut script: Vec<String> = vec!["open $desc NOW".into(), "bgstart h1 tls_worker".into()];
    let mut next = 2;
    for round in 0..5 {
        for k in 0..64 {
            script.push(format!("open {{dir}}/m{k}.so NOW"));
        }
        for k in 0..64 {
            let h = next + k;
            script.push(format!("call h{h} tls_initial_ok"));
            if k % 8 == 0 {
                script.push(format!("threads 4 h{h} tls_worker"));
            }
        }
        for k in 0..64 {
            script.push(format!("close h{}", next + k));
        }
        next += 64;
        script.push(if round == 0 {
            "mark".into()
        } else {
            "delta".into()
        });
    }
    script.push("maps /m1.so".into());
    script.push("bgstop".into());
    let script: Vec<&str> = script.iter().map(String::as_str).collect();
    // One malloc arena: new arenas appear whenever threads contend in
    // malloc (64 MiB of address space each), which would hide a leak in
    // noise; the mappings and address space must not grow after round one.
    let (g, d) = compare_env(
        &set,
        &script,
        &[("GLIBC_TUNABLES", "glibc.malloc.arena_max=1")],
    );
    assert!(
        g.stdout
            .ends_with("delta: +0 mappings, grew: no\nmaps /m1.so: 0\nbgstop: ran, 0 failures\n"),
        "{}",
        g.stdout
    );
    assert_eq!(g.stdout.matches("call tls_initial_ok: 1").count(), 5 * 64);
    assert_eq!(g.stdout.matches("threads tls_worker: 4").count(), 5 * 8);
    assert!(testkit::dynload_mapped(&d, "/m63.so"));
}

/// The churn again, shorter, under valgrind's memcheck: no invalid read or
/// write of a freed TLS block or DTV (CI installs valgrind).
#[test]
fn tls_churn_under_valgrind() {
    assert!(
        std::process::Command::new("valgrind")
            .arg("--version")
            .output()
            .is_ok(),
        "this test runs valgrind: install it (CI does)"
    );
    let set = tls_objects("capi-tlsvalgrind");
    copies(&set, "gd", 8);
    let mut script: Vec<String> = Vec::new();
    let mut next = 1;
    for _ in 0..3 {
        for k in 0..8 {
            script.push(format!("open {}/m{k}.so NOW", set.dir.display()));
        }
        for k in 0..8 {
            script.push(format!("threads 2 h{} tls_worker", next + k));
            script.push(format!("call h{} tls_initial_ok", next + k));
        }
        for k in 0..8 {
            script.push(format!("close h{}", next + k));
        }
        next += 8;
    }
    let debug = set.dir.join("valgrind-debug");
    let (stdout, _) = driver_under_valgrind(
        &script,
        &[
            ("DYNLOAD_DEBUG", "files"),
            ("DYNLOAD_DEBUG_OUTPUT", &debug.display().to_string()),
        ],
    );
    // dynload, not glibc, loaded the objects under valgrind.
    let debug = testkit::read_debug_files(&set.dir, "valgrind-debug");
    assert!(testkit::mapped_in(&debug, "/m7.so"), "{debug}");
    assert_eq!(
        stdout.matches("call tls_initial_ok: 1").count(),
        24,
        "{stdout}"
    );
    assert_eq!(
        stdout.matches("threads tls_worker: 2").count(),
        24,
        "{stdout}"
    );
}

/// Run the driver with `script` and `env`, libdynload.so preloaded, under
/// valgrind's memcheck, which must find no error; its standard output and
/// error.
fn driver_under_valgrind(script: &[String], env: &[(&str, &str)]) -> (String, String) {
    let out = std::process::Command::new("valgrind")
        .args(["-q", "--error-exitcode=99", "--trace-children=no"])
        .arg(testkit::driver())
        .args(script)
        .env("LD_PRELOAD", testkit::libdynload())
        .envs(env.iter().copied())
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .expect("these tests run valgrind: install it (CI does)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "valgrind: {}\n{stdout}\n{stderr}",
        out.status
    );
    (stdout, stderr)
}

/// A load that shares work with a helper thread (a 5 MiB RELRO's copies,
/// started ahead, and 655,360 RELATIVE relocations) runs under valgrind's
/// memcheck as well: no invalid access, and the table comes out right.
/// (Placing the helper once read the vDSO, which valgrind does not map.)
#[test]
fn work_shared_with_a_helper_thread_under_valgrind() {
    let set = Set::build("capi-helper-valgrind", &[big_relative_table()]);
    let script = [
        format!("open {} NOW", set.path("table")),
        "call h1 big_relro_mismatches".to_owned(),
    ];
    let (stdout, stderr) = driver_under_valgrind(&script, &[("DYNLOAD_STATS", "1")]);
    assert!(stdout.contains("call big_relro_mismatches: 0"), "{stdout}");
    assert!(
        stderr.contains("2 pieces of work shared with a helper thread"),
        "{stderr}"
    );
}

/// A process that may run on one CPU only gets no helper thread: the copies
/// and relocations a helper would share run on the loading thread, with
/// the same table (a helper could only take turns with it there).
#[test]
fn a_process_on_one_cpu_shares_no_work_with_a_helper() {
    let set = Set::build("capi-one-cpu", &[big_relative_table()]);
    let out = std::process::Command::new("taskset")
        .args(["-c", "0"])
        .arg(testkit::driver())
        .arg(format!("open {} NOW", set.path("table")))
        .arg("call h1 big_relro_mismatches")
        .env("LD_PRELOAD", testkit::libdynload())
        .env("DYNLOAD_STATS", "1")
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .expect("taskset (util-linux)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}\n{stdout}\n{stderr}", out.status);
    assert!(stdout.contains("call big_relro_mismatches: 0"), "{stdout}");
    // The copies were made before relocation all the same, by this thread.
    assert!(
        stderr.contains("KiB of RELRO copied before relocation")
            && !stderr.contains("shared with a helper thread"),
        "{stderr}"
    );
}

#[test]
fn unique_symbols_are_shared_with_preloaded_objects() {
    // ua is preloaded (glibc loads it and registers its unique symbol);
    // ub, opened later, must use ua's variable.
    let set = unique_objects("capi-uniquepre");
    let script = [
        "call DEFAULT bump",
        "open $ub LOCAL|NOW",
        "call h1 bump",
        "call DEFAULT bump",
        "same h1 DEFAULT _ZZ14shared_countervE1c",
    ];
    let ua = set.path("ua");
    let (g, d) = testkit::runs_with_preload(&set, &script, &ua);
    assert_eq!(
        g.stdout,
        "call bump: 1\nopen libcapi_uniquepre_ub.so: h1\ncall bump: 2\ncall bump: 3\nsame _ZZ14shared_countervE1c: yes\n"
    );
    assert_eq!(d.stdout, g.stdout);
    assert!(testkit::dynload_mapped(&d, "_ub.so"), "{}", d.debug);
}

#[test]
fn tls_of_objects_glibc_loaded() {
    // tls_malloc.c is preloaded (glibc loads it and owns its TLS module);
    // objects dynload loads reach its variable with each access model.
    let set = Set::build(
        "capi-tlshost",
        &[
            Lib::src("malloc", "tls_malloc.c").no_log(),
            Lib::src("gd", "tls_host_user.c").no_log().dep("malloc"),
            Lib::src("desc", "tls_host_user.c")
                .no_log()
                .dep("malloc")
                .flag("-mtls-dialect=gnu2"),
            Lib::src("ie", "tls_host_user.c")
                .no_log()
                .dep("malloc")
                .flag("-ftls-model=initial-exec"),
        ],
    );
    let mut script = Vec::new();
    for (h, lib) in [("h1", "gd"), ("h2", "desc"), ("h3", "ie")] {
        script.push(format!("open ${lib} NOW|GLOBAL"));
        script.push("sameaddr DEFAULT malloc_calls host_tls_address".to_string());
        script.push(format!("call {h} host_tls_counts"));
        script.push(format!("threads 4 {h} host_tls_counts"));
        script.push(format!("close {h}"));
    }
    let script: Vec<&str> = script.iter().map(String::as_str).collect();
    let malloc = set.path("malloc");
    let (g, d) = testkit::runs_with_preload(&set, &script, &malloc);
    let each = "sameaddr malloc_calls: yes\ncall host_tls_counts: 1\nthreads host_tls_counts: 4\n";
    assert!(
        g.stdout.contains(&format!("open libcapi_tlshost_gd.so: h1\n{each}close h1: 0\nopen libcapi_tlshost_desc.so: h2\n{each}close h2: 0\nopen libcapi_tlshost_ie.so: h3\n{each}close h3: 0\n")),
        "{}",
        g.stdout
    );
    assert_eq!(d.stdout, g.stdout, "dynload stderr:\n{}", d.stderr);
    for lib in ["_gd.so", "_desc.so", "_ie.so"] {
        assert!(testkit::dynload_mapped(&d, lib), "{}", d.debug);
    }
}

#[test]
fn every_way_of_saving_register_state() {
    // The register-preservation scenario with the state saved by XSAVE
    // instead of XSAVEC (everything checked), and by FXSAVE, as on CPUs
    // without XSAVE (x87 and xmm registers only: FXSAVE has no more).
    let sc = testkit::scenarios::register_preservation("capi-statesave");
    let script = sc.script();
    let glibc = run_driver(&sc.set, &script, Loader::Glibc, &[]);
    sc.check(&glibc.stdout);
    let xsave = run_driver(
        &sc.set,
        &script,
        Loader::Dynload,
        &[("DYNLOAD_STATE_SAVE", "xsave")],
    );
    assert_eq!(xsave.stdout, glibc.stdout);
    let xmm: Vec<&str> = script
        .iter()
        .copied()
        .filter(|l| l.starts_with("open") || l.ends_with("_xmm"))
        .collect();
    assert_eq!(xmm.len(), 6, "{xmm:?}");
    let fxsave = run_driver(
        &sc.set,
        &xmm,
        Loader::Dynload,
        &[("DYNLOAD_STATE_SAVE", "fxsave")],
    );
    let want: String = glibc
        .stdout
        .lines()
        .filter(|l| l.starts_with("open") || l.contains("_xmm:"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(want.contains("call lazy_preserves_xmm: 1"), "{want}");
    assert_eq!(fxsave.stdout, want);
}

/// An object with both DT_RPATH and DT_RUNPATH: glibc ignores its DT_RPATH
/// entirely, for its own dependencies and for theirs. Here top's RPATH
/// would find hid (needed by mid, which has no path of its own); with the
/// RUNPATH beside it, neither glibc nor dynload may find it.
#[test]
fn rpath_beside_runpath_is_ignored_for_the_whole_chain() {
    let set = Set::build(
        "capi-rpath-runpath",
        &[
            Lib::node("hid", 3).subdir("sub").no_log(),
            Lib::node("mid", 2).no_log().no_runpath().dep("hid"),
            Lib::node("top", 1)
                .no_log()
                .no_runpath()
                .dep("mid")
                .flag("-Wl,--disable-new-dtags,-rpath,{dir}/sub:{dir}"),
        ],
    );
    // Give top a DT_RUNPATH too (in place of DT_FINI), naming only its own
    // directory: mid is still found, hid only through the RPATH.
    let top = set.path("top");
    let both = damage::variant(&top, &set.dir, "libcapi_rpath_runpath_both", |b| {
        let rpath = damage::dynamic_value(b, 15);
        let fini = damage::dynamic_entry(b, 13);
        damage::put_u64(b, fini, 29);
        // "{dir}/sub:{dir}": point past "{dir}/sub:" at "{dir}".
        let skip = set.dir.join("sub").to_string_lossy().len() as u64 + 1;
        damage::put_u64(b, fini + 8, rpath + skip);
    });
    assert!(testkit::dynamic_section(&both).contains("(RUNPATH)"));
    // (both first: once top has loaded hid, it is found by name.)
    let script = [format!("open {both} NOW"), format!("open {top} NOW")];
    let script: Vec<&str> = script.iter().map(String::as_str).collect();
    let (g, d) = compare(&set, &script);
    assert!(
        g.stdout.contains("open libcapi_rpath_runpath_top.so: h"),
        "{}",
        g.stdout
    );
    assert!(
        d.stdout.contains("open libcapi_rpath_runpath_both.so: NULL (libcapi_rpath_runpath_hid.so: cannot open shared object file"),
        "{}",
        d.stdout
    );
}

/// A C-runtime library (libm here) found through the requester's
/// DT_RUNPATH: glibc loads the copy the search finds; dynload, which leaves
/// C-runtime libraries to glibc, must hand glibc that copy, not the name
/// (glibc's dlopen would then search from libdynload, without the
/// requester's RUNPATH, and find the system's).
#[test]
fn a_c_runtime_library_found_through_runpath_is_that_copy() {
    let set = Set::build(
        "capi-bundled-libm",
        &[Lib::node("use", 1)
            .no_log()
            .no_runpath()
            .flag("-Wl,--no-as-needed,-lm,--enable-new-dtags,-rpath,$ORIGIN/bundled")],
    );
    std::fs::create_dir_all(set.dir.join("bundled")).unwrap();
    std::fs::copy(
        "/lib/x86_64-linux-gnu/libm.so.6",
        set.dir.join("bundled/libm.so.6"),
    )
    .unwrap();
    let script = ["open $use NOW", "maps bundled/libm.so.6"];
    let (g, _) = compare(&set, &script);
    assert!(
        g.stdout.contains("maps bundled/libm.so.6: 1"),
        "{}",
        g.stdout
    );
}

#[test]
fn a_plt_slot_after_a_tls_descriptor_is_bound_lazily() {
    // GNU ld puts R_X86_64_TLSDESC after the JUMP_SLOTs in .rela.plt, so
    // dynload's run of PLT slots covers every slot. Here the last slot's
    // entry is moved after the descriptor's (and its PLT stub made to push
    // its new index): that slot is rebased on its own, after the run stops
    // at the descriptor, and still binds at its first call, as with glibc.
    let set = Set::build(
        "capi-slotafterdesc",
        &[
            Lib::src("callee", "lazy_callee.c").no_log(),
            Lib::src("caller", "lazy_tlsdesc.c")
                .no_log()
                .dep("callee")
                .flag("-mtls-dialect=gnu2")
                .flag("-Wl,-z,lazy"),
        ],
    );
    let moved = damage::variant(&set.path("caller"), &set.dir, "moved", |b| {
        let entries = damage::plt_relocations(b);
        let r_type = |e: usize| damage::get_u64(b, e + 8) & 0xffff_ffff;
        let types: Vec<u64> = entries.iter().map(|&e| r_type(e)).collect();
        assert_eq!(types, [[7; 8].as_slice(), &[36]].concat(), "{types:?}");
        // Swap the last JUMP_SLOT (index 7) and the TLSDESC (index 8).
        let (slot, desc) = (entries[7], entries[8]);
        let (a, c) = (b[slot..slot + 24].to_vec(), b[desc..desc + 24].to_vec());
        b[slot..slot + 24].copy_from_slice(&c);
        b[desc..desc + 24].copy_from_slice(&a);
        // The stub that pushed index 7 now pushes 8: stubs are 16 bytes
        // after PLT0's, `push imm32` at byte 6 of each.
        let (plt, _) = damage::find_section(b, ".plt").expect(".plt");
        let push = (0..=8)
            .map(|i| plt + 16 * (i + 1) + 6)
            .find(|&p| b[p] == 0x68 && b[p + 1..p + 5] == 7u32.to_le_bytes())
            .expect("the stub pushing 7");
        b[push + 1..push + 5].copy_from_slice(&8u32.to_le_bytes());
    });
    let open = format!("open {moved} LAZY");
    let script = [
        open.as_str(),
        "call h1 call_slots_count",
        "threads 3 h1 call_slots_count",
        "call h1 call_slots_count",
    ];
    let (g, d) = compare(&set, &script);
    assert!(
        g.stdout.ends_with(
            "call call_slots_count: 1\nthreads call_slots_count: 3\ncall call_slots_count: 2\n"
        ),
        "{}",
        g.stdout
    );
    assert_eq!(d.stdout, g.stdout);
}
