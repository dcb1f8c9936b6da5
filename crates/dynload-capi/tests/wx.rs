//! W^X, RELRO and descriptors, under glibc and under dynload: no mapping
//! is ever writable and executable at once (after loading a set of
//! objects, and while one is being relocated, seen by its own IFUNC
//! resolver), PT_GNU_RELRO is read-only after the load (a write into a
//! relocated pointer table or a GOT entry dies of SIGSEGV), and the
//! descriptor an object is loaded through is close-on-exec and gone once
//! the object is mapped.

use std::os::unix::process::ExitStatusExt;

use testkit::{mapped_in, program, run_program, Lib, Loader, Run, Set};

fn runs(set: &Set, prog: &str, args: &[String]) -> [(Run, std::process::ExitStatus); 2] {
    let prog = program(prog);
    [Loader::Glibc, Loader::Dynload].map(|l| run_program(&prog, args, &set.dir, l, &[]))
}

/// The probe's IFUNC resolver runs during its relocation and reads
/// /proc/self/maps with raw system calls (a control shows the scanner does
/// count a page mapped rwx): no writable and executable mapping anywhere, its RELRO data still writable (so the loader really
/// was in the middle of relocating it), its code r-x. After the probe and
/// objects with IFUNCs, TLS, RELR, RELRO and dependencies are loaded, each
/// has exactly glibc's page permissions, nothing in the process is
/// writable and executable, and no descriptor refers to any of them.
#[test]
fn no_mapping_is_ever_writable_and_executable() {
    let set = Set::build(
        "capi-wx",
        &[
            Lib::src("probe", "wx_ifunc_probe.c")
                .no_log()
                .flag("-fno-builtin")
                .flag("-fno-tree-loop-distribute-patterns")
                .flag("-fno-stack-protector"),
            Lib::src("relro", "relro_targets.c").no_log(),
            Lib::src("ifunc", "ifunc.c").no_log(),
            Lib::src("tls", "tls.c").no_log(),
            Lib::src("relr", "relr.c")
                .no_log()
                .flag("-Wl,-z,pack-relative-relocs"),
            Lib::node("b", 2).no_log(),
            Lib::node("a", 1).no_log().dep("b"),
        ],
    );
    // The probe's resolver is called for a relocation of its own object.
    let relocs = testkit::relocations(set.path("probe"));
    assert!(
        relocs
            .lines()
            .any(|l| l.contains("R_X86_64_64") && l.contains("probe()")),
        "{relocs}"
    );
    let names = ["probe", "relro", "ifunc", "tls", "relr", "a"];
    let args: Vec<String> = names.iter().map(|n| set.path(n)).collect();
    let [(g, gs), (d, ds)] = runs(&set, "wx_check.c", &args);
    assert!(gs.success(), "glibc: {gs}\n{}\n{}", g.stdout, g.stderr);
    assert!(ds.success(), "dynload: {ds}\n{}\n{}", d.stdout, d.stderr);
    for n in names {
        assert!(mapped_in(&d.debug, &set.file(n)), "{n}: {}", d.debug);
    }
    for run in [&g, &d] {
        for line in [
            "during relocation: ran 1, w+x mappings: 0 anywhere, 0 of this object; its code r-xp, its RELRO data rw-p; ",
            "in the constructor: ran 1, w+x mappings: 0 anywhere, 0 of this object; its code r-xp, its RELRO data r--p; ",
            // The scanner does see a writable and executable page.
            "probe_value: 7, scanner control: 1\n",
            "\nw+x mappings: 0\ndescriptors of the objects: 0\n",
        ] {
            assert!(run.stdout.contains(line), "no {line:?} in\n{}", run.stdout);
        }
        // A descriptor the probe saw of its own file was close-on-exec.
        assert!(!run.stdout.contains("WITHOUT"), "{}", run.stdout);
    }
    // Each object's mappings have glibc's permissions, in glibc's order.
    let layout = |r: &Run| -> Vec<String> {
        r.stdout
            .lines()
            .filter(|l| l.starts_with("lib") && l.contains(".so:"))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(layout(&g).len(), names.len(), "{}", g.stdout);
    assert_eq!(
        layout(&g),
        layout(&d),
        "page permissions differ from glibc's"
    );
}

/// A relocated pointer table (.data.rel.ro) and a GOT entry, both in
/// PT_GNU_RELRO, are read-only after the load: the page is r--, and a
/// write kills the process with SIGSEGV, under glibc and under dynload.
#[test]
fn relro_is_read_only_after_the_load() {
    let set = Set::build(
        "capi-relro-write",
        &[Lib::src("targets", "relro_targets.c").no_log()],
    );
    let segments = testkit::readelf("-l", set.path("targets"));
    assert!(segments.contains("GNU_RELRO"), "{segments}");
    for (target, check) in [
        ("table", "table holds pointers: yes"),
        ("got", "got entry holds got_target: yes"),
    ] {
        let args = vec![set.path("targets"), target.to_string()];
        let [(g, gs), (d, ds)] = runs(&set, "relro_write.c", &args);
        for (who, run, status) in [("glibc", &g, gs), ("dynload", &d, ds)] {
            assert_eq!(
                run.stdout,
                format!("{check}\npage: r--p\nwriting {target}\n"),
                "{who}, {target}: {status}\n{}",
                run.stderr
            );
            assert_eq!(status.signal(), Some(11), "{who}, {target}: {status}");
        }
        assert!(mapped_in(&d.debug, &set.file("targets")), "{}", d.debug);
    }
}

/// The descriptor an object is loaded through, caught by a thread that
/// scans /proc/self/fd while the main thread loads and unloads the object
/// over and over: it is close-on-exec every time it is seen (O_CLOEXEC),
/// and none is left once the loads are done. (The probe of the test above
/// sees none from its own resolver and constructor: the file is closed
/// before relocation, under both loaders.)
#[test]
fn descriptors_are_close_on_exec_and_closed_after_mapping() {
    let set = Set::build(
        "capi-fd-cloexec",
        &[Lib::src("obj", "relro_targets.c").no_log()],
    );
    let [(g, gs), (d, ds)] = runs(&set, "fd_watch.c", &[set.path("obj")]);
    for (who, run, status) in [("glibc", &g, gs), ("dynload", &d, ds)] {
        assert!(status.success(), "{who}: {status}\n{}", run.stderr);
        assert!(
            run.stdout
                .starts_with("seen: yes, all close-on-exec: yes\n")
                && run.stdout.ends_with("\nleft open: 0\n"),
            "{who}:\n{}",
            run.stdout
        );
    }
    assert!(mapped_in(&d.debug, &set.file("obj")), "{}", d.debug);
    println!(
        "glibc: {}\ndynload: {}",
        g.stdout.lines().nth(1).unwrap_or(""),
        d.stdout.lines().nth(1).unwrap_or("")
    );
}
