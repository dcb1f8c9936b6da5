//! Real-world code through the C ABI, each run compared with glibc's run of
//! the same program: C++ plugins (exceptions inside, across and out of
//! them, dynamic_cast and typeid across two objects, static and
//! thread_local destructors, a `-static-libstdc++ -static-libgcc` build
//! with its own unwinder) and a Rust cdylib (panics, backtraces, threads,
//! thread_local destructors, unloading and reloading).

use testkit::scenarios::cxx_objects;
use testkit::{
    cargo_cdylib, compare, mapped_in, program, run_driver, run_program, Lib, Loader, Run, Set,
};

/// Run the C++ host on `lib` under glibc and dynload; both must succeed
/// with the same output, and dynload must have mapped `watch`.
fn host_runs(set: &Set, lib: &str, watch: &str) -> Run {
    let host = program("cxx_host.cpp");
    let args = vec![set.path(lib), set.path("log"), set.file(watch)];
    let (g, gs) = run_program(&host, &args, &set.dir, Loader::Glibc, &[]);
    assert!(gs.success(), "glibc: {gs}\n{}\n{}", g.stdout, g.stderr);
    let (d, ds) = run_program(&host, &args, &set.dir, Loader::Dynload, &[]);
    assert!(ds.success(), "dynload: {ds}\n{}\n{}", d.stdout, d.stderr);
    assert_eq!(
        g.stdout, d.stdout,
        "glibc and dynload disagree:\n{}",
        d.stderr
    );
    assert!(mapped_in(&d.debug, &set.file(watch)), "{}", d.debug);
    d
}

#[test]
fn cxx_exceptions_casts_and_destructors_as_under_glibc() {
    let set = cxx_objects("capi-cxx");
    let thrower = set.file("thrower");
    let d = host_runs(&set, "catcher", "thrower");
    for line in [
        "catch_inside: 107".to_string(),
        "catch_across: 42".into(),
        "catch_std_across: 1".into(),
        "cast_across: 15".into(),
        "iostream: circle 42 ff\nstream_across: 1".into(),
        "host caught: plugin error".into(),
        "host caught: thrown by thrower".into(),
        // A thread_local destructor pending on a live thread keeps its
        // object mapped through dlclose; it runs at the thread's exit and
        // the object is gone afterwards.
        format!("after dlclose: {thrower} mapped: yes\nthread_local dtor 3\n"),
        format!("after the thread exited: {thrower} mapped: no"),
    ] {
        assert!(d.stdout.contains(&line), "{line}:\n{}", d.stdout);
    }
    // Static destructors: once per load (at dlclose, then at exit).
    assert_eq!(
        d.stdout.matches("static dtor thrower").count(),
        2,
        "{}",
        d.stdout
    );
    assert_eq!(
        d.stdout.matches("static ctor thrower").count(),
        2,
        "{}",
        d.stdout
    );
}

#[test]
fn static_libgcc_unwinder_inside_a_plugin_finds_its_frames() {
    // This object carries its own libgcc unwinder, which asks
    // `_dl_find_object` through its own reference: dynload binds it.
    let set = cxx_objects("capi-cxx-static");
    let readelf = testkit::dynamic_symbols(set.path("thrower_static"));
    assert!(readelf.contains("_dl_find_object"), "{readelf}");
    let d = host_runs(&set, "thrower_static", "thrower_static");
    for line in [
        "catch_inside: 107",
        "host caught: plugin error",
        "thread_local dtor 3",
    ] {
        assert!(d.stdout.contains(line), "{line}:\n{}", d.stdout);
    }
}

fn rust_plugin_set(name: &str) -> (Set, String) {
    let set = Set::build(name, &[]);
    let path = set.dir.join("librust_plugin.so");
    cargo_cdylib("rust_plugin", &[("PLUGIN_VERSION", "1")], &path);
    cargo_cdylib(
        "rust_plugin",
        &[("PLUGIN_VERSION", "2")],
        &set.dir.join("librust_plugin.so.v2"),
    );
    (set, path.to_string_lossy().into_owned())
}

#[test]
fn rust_cdylib_panics_backtraces_and_threads_as_under_glibc() {
    let (set, path) = rust_plugin_set("capi-rust-plugin");
    let open = format!("open {path}");
    let (_, d) = compare(
        &set,
        &[
            &open,
            "call h1 plugin_catch_panic",
            "call h1 plugin_backtrace_names_frames",
            "call h1 plugin_threads",
            "call h1 plugin_version",
        ],
    );
    for line in [
        "call plugin_catch_panic: 1",
        "call plugin_backtrace_names_frames: 3",
        "thread 3 runs version 1\nthread 3 drops its value (version 1)",
        "call plugin_threads: 6",
    ] {
        assert!(d.stdout.contains(line), "{line}:\n{}", d.stdout);
    }
    assert!(mapped_in(&d.debug, "librust_plugin.so"), "{}", d.debug);
}

#[test]
fn rust_cdylib_is_unloaded_and_reloaded_at_the_same_path() {
    // The main thread spawned threads through the plugin's std, which left
    // a thread_local destructor pending on the main thread: glibc keeps the
    // object until the process ends and the reopen returns the old code;
    // dynload runs the closing thread's destructors at dlclose, unloads,
    // and the reopen maps the new file.
    let (set, path) = rust_plugin_set("capi-rust-reload");
    let script = [
        format!("open {path}"),
        "call h1 plugin_threads".into(),
        "call h1 plugin_version".into(),
        "close h1".into(),
        format!("rename {path}.v2 {path}"),
        format!("open {path}"),
        "call h2 plugin_version".into(),
        "call h2 plugin_threads".into(),
    ];
    let script: Vec<&str> = script.iter().map(String::as_str).collect();
    let d = run_driver(&set, &script, Loader::Dynload, &[]);
    assert!(
        d.stdout
            .contains("call plugin_version: 1\nclose h1: 0\nrename: done\n"),
        "{}",
        d.stdout
    );
    assert!(d.stdout.contains("call plugin_version: 2"), "{}", d.stdout);
    assert!(d.stdout.contains("thread 0 runs version 2"), "{}", d.stdout);
    let destroyed = format!("file={path} [0];  destroying link map");
    assert!(d.debug.contains(&destroyed), "{}", d.debug);
    assert_eq!(
        d.debug
            .matches("librust_plugin.so [0];  generating link map")
            .count(),
        2
    );

    // glibc, same script on a fresh copy: the old code comes back.
    cargo_cdylib(
        "rust_plugin",
        &[("PLUGIN_VERSION", "2")],
        &set.dir.join("librust_plugin.so.v2"),
    );
    cargo_cdylib(
        "rust_plugin",
        &[("PLUGIN_VERSION", "1")],
        std::path::Path::new(&path),
    );
    let g = run_driver(&set, &script, Loader::Glibc, &[]);
    assert!(g.stdout.contains("call plugin_version: 1\nclose h1: 0\nrename: done\nopen librust_plugin.so: h2\ncall plugin_version: 1"), "{}", g.stdout);
}

#[test]
fn unwind_tables_are_registered_when_libdynload_is_opened_locally() {
    // libdynload.so opened RTLD_LOCAL by a C++ program and used through
    // its handle: the program's libgcc_s asks glibc's `_dl_find_object`,
    // which does not know dynload's objects, so dynload registers their
    // unwind tables with libgcc (and deregisters them before unmapping:
    // the second round loads again). The same program on glibc's own
    // dlopen must print the same.
    let set = cxx_objects("capi-cxx-local");
    let host = program("local_dynload.cpp");
    let loaders = [
        "glibc".to_string(),
        testkit::libdynload().to_string_lossy().into_owned(),
    ];
    let [glibc, dynload] = loaders.map(|loader| {
        let out = testkit::run(
            std::process::Command::new(&host)
                .args([loader.as_str(), set.path("catcher").as_str()])
                .current_dir(&set.dir)
                .env_remove("LD_LIBRARY_PATH"),
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    });
    assert_eq!(glibc, dynload);
    for line in [
        "2 catch_across: 42\n",
        "2 cast_across: 15\n",
        "2 host caught: plugin error\n",
    ] {
        assert!(dynload.contains(line), "{line}{dynload}");
    }
}

#[test]
fn cxx_plugin_in_a_c_program_stays() {
    // In a C program the plugin brings libstdc++, which binds to the
    // plugin's copies of weak template functions (a relocation dependency)
    // and is NODELETE (it defines unique symbols): neither glibc nor
    // dynload can unload the plugin afterwards.
    let set = cxx_objects("capi-cxx-in-c");
    let (_, d) = compare(
        &set,
        &[
            "open $thrower",
            "call h1 catch_inside",
            "close h1",
            "maps @thrower",
            // libstdc++'s iostreams, initialised by dynload.
            "open $catcher",
            "call h2 stream_across",
        ],
    );
    assert!(
        d.stdout
            .contains("iostream: circle 42 ff\ncall stream_across: 1\n"),
        "{}",
        d.stdout
    );
    assert!(
        d.stdout
            .contains("call catch_inside: 107\nclose h1: 0\nmaps "),
        "{}",
        d.stdout
    );
    assert!(
        d.stdout.contains("maps libcapi_cxx_in_c_thrower.so: 1\n"),
        "{}",
        d.stdout
    );
    assert!(mapped_in(&d.debug, "libstdc++.so.6"), "{}", d.debug);
}

#[test]
fn initial_exec_tls_objects_are_loaded_by_glibc() {
    // libGLdispatch has initial-exec TLS of its own (DF_STATIC_TLS), which
    // needs glibc's static TLS: glibc loads it, dynload uses its copy; its
    // constructor calls dlopen and dlsym while glibc loads it. libGL reads
    // that variable with initial-exec accesses: dynload loads it and
    // serves them, the variable being in glibc's static TLS.
    let set = Set::build(
        "capi-ie-tls",
        &[
            Lib::src("ie", "tls_ie_ctor.c")
                .no_log()
                .flag("-ftls-model=initial-exec"),
            Lib::src("user", "tls_ie_user.c")
                .no_log()
                .dep("ie")
                .flag("-ftls-model=initial-exec"),
        ],
    );
    assert!(testkit::dynamic_section(set.path("ie")).contains("STATIC_TLS"));
    assert!(testkit::relocations(set.path("user")).contains("R_X86_64_TPOFF64"));
    // glibc loads them with the mode asked for: RTLD_NOW binds everything.
    set.compile(
        &Lib::src("undef", "tls_ie_undef.c")
            .no_log()
            .flag("-ftls-model=initial-exec"),
    );
    let (_, d) = compare(&set, &["open $undef NOW", "open $undef LAZY"]);
    assert!(
        d.stdout
            .contains("undefined symbol: no_such_function_anywhere"),
        "{}",
        d.stdout
    );
    let (_, d) = compare(
        &set,
        &[
            "open $user",
            "call h1 ie_user",
            "call h1 ie_ctor_result",
            "close h1",
        ],
    );
    assert!(
        d.stdout
            .contains("call ie_user: 135\ncall ie_ctor_result: 35"),
        "{}",
        d.stdout
    );
    assert!(mapped_in(&d.debug, &set.file("user")), "{}", d.debug);
    assert!(
        d.debug.contains(&format!(
            "file={} [0];  initial-exec TLS (DF_STATIC_TLS), loaded by glibc",
            set.path("ie")
        )),
        "{}",
        d.debug
    );
}

#[test]
fn thread_exit_while_the_loader_lock_is_held_does_not_deadlock() {
    // A constructor (run inside dlopen, with the loader's lock held) joins a
    // worker thread whose thread_local destructor belongs to another
    // dynload object: the worker's exit must not wait for the lock (glibc's
    // thread exit does not take its loader lock either).
    let set = Set::build(
        "capi-tls-exit-lock",
        &[
            Lib::src("pool", "tls_exit_pool.cpp").no_log(),
            Lib::src("joiner", "tls_exit_joiner.c").no_log().dep("pool"),
        ],
    );
    let script: Vec<String> = [
        "open $pool",
        "call h1 start_worker",
        "open $joiner",
        "call h2 joiner_loaded",
        "close h2",
        "close h1",
        "maps @pool",
        "iterate /libdynload.so",
    ]
    .iter()
    .map(|l| set.expand(l))
    .collect();
    // A watchdog: a deadlock ends in timeout's status 124.
    let mut args = vec![
        "60".to_string(),
        testkit::driver().to_string_lossy().into_owned(),
    ];
    args.extend(script);
    let timeout = std::path::Path::new("/usr/bin/timeout");
    let (g, gs) = run_program(timeout, &args, &set.dir, Loader::Glibc, &[]);
    let (d, ds) = run_program(timeout, &args, &set.dir, Loader::Dynload, &[]);
    assert!(gs.success(), "glibc: {gs}\n{}", g.stdout);
    assert!(ds.success(), "dynload: {ds} (124: deadlock)\n{}", d.stdout);
    let want = "call start_worker: 1\nworker's thread_local dtor 7\nopen libcapi_tls_exit_lock_joiner.so: h2\ncall joiner_loaded: 1\n";
    assert!(d.stdout.contains(want), "{}", d.stdout);
    assert!(
        d.stdout.contains(": 0\niterate: libdynload.so"),
        "{}",
        d.stdout
    );
    let without_iterate = |t: &str| -> String {
        t.lines()
            .filter(|l| !l.starts_with("iterate"))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    assert_eq!(without_iterate(&g.stdout), without_iterate(&d.stdout));
    assert!(mapped_in(&d.debug, &set.file("pool")), "{}", d.debug);
}

#[test]
fn tls_of_a_glibc_loaded_static_tls_object_that_glibc_keeps_dynamic() {
    // tls_mixed carries DF_STATIC_TLS (an initial-exec reference to the
    // preloaded tls_base) but glibc gives its own variable a dynamic block:
    // an object dynload loads must reach that variable per thread, not at
    // an offset from the thread pointer computed in the loading thread.
    let set = Set::build(
        "capi-tls-mixed",
        &[
            Lib::src("base", "tls_base.c").no_log(),
            Lib::src("mixed", "tls_mixed.c").no_log().dep("base"),
            Lib::src("desc", "tls_mixed_user.c")
                .no_log()
                .dep("mixed")
                .flag("-mtls-dialect=gnu2"),
            Lib::src("gd", "tls_mixed_user.c").no_log().dep("mixed"),
        ],
    );
    assert!(testkit::dynamic_section(set.path("mixed")).contains("STATIC_TLS"));
    let script = [
        "open $desc",
        "call h1 user_check",
        "threads 4 h1 user_check",
        "open $gd",
        "call h2 user_check",
        "threads 4 h2 user_check",
    ];
    let base = set.path("base");
    let (g, d) = testkit::runs_with_preload(&set, &script, &base);
    assert!(
        g.stdout
            .contains("call user_check: 1\nthreads user_check: 4\n"),
        "{}",
        g.stdout
    );
    assert_eq!(d.stdout, g.stdout, "{}", d.stderr);
    assert!(mapped_in(&d.debug, &set.file("desc")), "{}", d.debug);
}

#[test]
fn destructors_of_objects_still_loaded_run_at_exit() {
    // Left open at exit: their destructors run, after the program's, in
    // glibc's order (the object before its dependency).
    let set = Set::build(
        "capi-exit-dtors",
        &[
            Lib::src("b", "exit_dtor.c")
                .no_log()
                .define("NAME", "\"b\""),
            Lib::src("a", "exit_dtor.c")
                .no_log()
                .define("NAME", "\"a\"")
                .dep("b"),
        ],
    );
    let (_, d) = compare(&set, &["open $a", "call h1 exit_dtor_loaded"]);
    assert!(
        d.stdout
            .ends_with("call exit_dtor_loaded: 1\ndestructor a\ndestructor b\n"),
        "{}",
        d.stdout
    );
}

#[test]
fn constructors_of_objects_glibc_loads_for_dynload_use_dynload() {
    // glibc loads this object (initial-exec TLS) with dynload's registry
    // free: its constructor finds a dynload object in the global scope and
    // opens a library through its own RUNPATH; its destructor, run when
    // glibc unloads it, closes that handle.
    let set = Set::build(
        "capi-ie-calls",
        &[
            Lib::src("core", "core_fn.c").no_log(),
            Lib::node("sub", 5).no_log().subdir("sub"),
            Lib::src("calls", "tls_ie_calls.c")
                .no_log()
                .flag("-ftls-model=initial-exec")
                .flag("-Wl,-rpath,$ORIGIN/sub")
                .define("SUBNAME", "\"libcapi_ie_calls_sub.so\""),
        ],
    );
    let (_, d) = compare(
        &set,
        &[
            "open $core NOW|GLOBAL",
            "open $calls NOW",
            "call h2 ie_calls_result",
            "close h2",
        ],
    );
    assert!(
        d.stdout
            .contains("call ie_calls_result: 3\nie destructor: dlclose(sub) = 0\nclose h2: 0"),
        "{}",
        d.stdout
    );
    assert!(
        mapped_in(&d.debug, "libcapi_ie_calls_sub.so"),
        "{}",
        d.debug
    );

    // One that needs an object dynload already loaded is refused instead:
    // glibc would map a second copy of that dependency.
    set.compile(
        &Lib::src("needs_core", "tls_ie_ctor.c")
            .no_log()
            .dep("core")
            .flag("-ftls-model=initial-exec"),
    );
    let d = run_driver(
        &set,
        &[
            "open $core NOW|GLOBAL",
            "open $needs_core NOW",
            "maps @needs_core",
        ],
        Loader::Dynload,
        &[],
    );
    assert!(
        d.stdout.contains("_needs_core.so: cannot allocate memory in static TLS block)\nmaps libcapi_ie_calls_needs_core.so: 0"),
        "{}",
        d.stdout
    );
}
