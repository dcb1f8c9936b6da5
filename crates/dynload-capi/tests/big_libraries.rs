//! Big real C/C++ libraries through the C ABI, each run compared with
//! glibc's run of the same program (`fixtures/big_libraries.c`, every
//! function found with `dlsym`): LLVM 15 (~382k relocations, TLS, lazy
//! PLT slots) builds, verifies, prints and JIT-compiles a function; Z3
//! solves integer constraints; ICU 72 formats numbers in three locales and
//! collates German words with its 30 MB data library. Each library is
//! closed afterwards, and what stays mapped is what glibc keeps: LLVM is
//! `DF_1_NODELETE`, Z3 becomes NODELETE through its `STB_GNU_UNIQUE`
//! symbols, ICU is unmapped.

use testkit::{mapped_in, out_root, program, run_program, Loader, Run};

/// Run `big_libraries which` under glibc and under dynload; both must
/// succeed with the same output, and dynload must have mapped every file
/// of `mapped`. Returns dynload's run.
fn same_as_glibc(which: &str, mapped: &[&str]) -> Run {
    for file in mapped {
        let path = format!("/usr/lib/x86_64-linux-gnu/{file}");
        assert!(
            std::path::Path::new(&path).exists(),
            "{path} is missing: install libllvm15, libz3-4 and libicu72"
        );
    }
    let prog = program("big_libraries.c");
    let args = vec![which.to_string()];
    // A directory per test: the debug output files are named by the test
    // process's id, which the tests running beside this one share.
    let dir = out_root().join(format!("capi-big-{which}"));
    std::fs::create_dir_all(&dir).unwrap();
    let (g, gs) = run_program(&prog, &args, &dir, Loader::Glibc, &[]);
    assert!(gs.success(), "glibc: {gs}\n{}\n{}", g.stdout, g.stderr);
    let (d, ds) = run_program(&prog, &args, &dir, Loader::Dynload, &[]);
    assert!(ds.success(), "dynload: {ds}\n{}\n{}", d.stdout, d.stderr);
    assert_eq!(
        g.stdout, d.stdout,
        "glibc and dynload disagree on {which}:\n{}",
        d.stderr
    );
    for file in mapped {
        assert!(mapped_in(&d.debug, file), "{file}:\n{}", d.debug);
    }
    assert!(d.stdout.ends_with("closed\n"), "{}", d.stdout);
    d
}

fn assert_lines(run: &Run, lines: &[&str]) {
    for line in lines {
        assert!(run.stdout.contains(line), "{line}:\n{}", run.stdout);
    }
}

#[test]
fn llvm_builds_verifies_and_jit_compiles_a_function() {
    let d = same_as_glibc(
        "llvm",
        // Its dependencies, libz3 and libstdc++ among them, are dynload's
        // too.
        &[
            "libLLVM-15.so.1",
            "libz3.so.4",
            "libstdc++.so.6",
            "libxml2.so.2",
        ],
    );
    assert_lines(
        &d,
        &[
            "verify: ok\n",
            "define i32 @add(i32 %a, i32 %b) {\nentry:\n  %sum = add i32 %a, %b\n  ret i32 %sum\n}\n",
            "verify bad: broken: Basic Block in function 'f' does not have terminator!\n",
            "jit add(40, 2) = 42\n",
            // DF_1_NODELETE in its dynamic section.
            "libLLVM-15.so.1 mapped after dlclose: yes\n",
        ],
    );
}

#[test]
fn z3_solves_and_proves_unsat() {
    let d = same_as_glibc("z3", &["libz3.so.4", "libstdc++.so.6"]);
    assert_lines(
        &d,
        &[
            "x + y = 10, x > y, y > 2: sat\nmodel ok\n",
            "and y > 3: sat, x = 6, y = 4\n",
            "and x < y: unsat\nafter pop: sat\n",
            // Its own relocations bind to its STB_GNU_UNIQUE definitions
            // (`std::piecewise_construct`, ...): glibc and dynload both
            // mark it NODELETE.
            "libz3.so.4 mapped after dlclose: yes\n",
        ],
    );
}

#[test]
fn icu_formats_numbers_collates_and_is_unloaded() {
    let d = same_as_glibc(
        "icu",
        &["libicui18n.so.72", "libicuuc.so.72", "libicudata.so.72"],
    );
    assert_lines(
        &d,
        &[
            "de_DE: 1.234.567,891\n",
            "en_US: 1,234,567.891\n",
            // French groups digits with a narrow no-break space.
            "fr_FR: 1\u{202f}234\u{202f}567,891\n",
            "de: Äpfel < Birne\nde: Zebra > Äpfel\n",
            // No unique symbols, no NODELETE: closed means unmapped, even
            // with the NODELETE libstdc++ it brought staying.
            "libicui18n.so.72 mapped after dlclose: no\nlibicuuc.so.72 mapped after dlclose: no\n",
        ],
    );
    for file in ["libicui18n.so.72", "libicuuc.so.72", "libicudata.so.72"] {
        let destroyed = format!("{file} [0];  destroying link map");
        assert!(d.debug.contains(&destroyed), "{destroyed}:\n{}", d.debug);
    }
}
