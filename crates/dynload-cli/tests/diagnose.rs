//! `dynload tree`, `check` and `why` on objects built here for each pitfall
//! (golden outputs in tests/golden/, the fixture directory written as
//! `$DIR`), compared with what glibc does with the same files: the objects
//! `ld.so --list` loads, the errors glibc's dlopen reports, the bindings
//! LD_DEBUG shows. `DYNLOAD_BLESS=1` rewrites the golden files.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

mod common;

const PYENV_TAG: &str = "cpython-311-x86_64-linux-gnu";

fn gcc(dir: &Path, args: &[&str]) {
    testkit::run(Command::new("gcc").current_dir(dir).args(args));
}

/// Build every fixture once per test binary.
fn fixtures() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = testkit::out_root().join("diagnose");
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["lib", "deps", "v1", "v2", "wheel/pkg"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let src = testkit::fixtures_src().join("diag");
        let s = |f: &str| src.join(f).to_string_lossy().into_owned();
        let so = ["-shared", "-fPIC"];
        let build = |out: &str, inputs: &[String], extra: &[&str]| {
            let mut args: Vec<&str> = so.to_vec();
            args.extend(["-o", out]);
            args.extend(inputs.iter().map(String::as_str));
            args.extend(extra);
            gcc(&dir, &args);
        };
        build("deps/libleaf.so", &[s("leaf.c")], &[]);
        build("lib/libmid.so", &[s("mid.c")], &["-Ldeps", "-lleaf"]);
        build(
            "libtop_runpath.so",
            &[s("top.c")],
            &[
                "-Llib",
                "-lmid",
                "-Wl,--enable-new-dtags,-rpath,$ORIGIN/lib:$ORIGIN/deps",
            ],
        );
        build(
            "libtop_rpath.so",
            &[s("top.c")],
            &[
                "-Llib",
                "-lmid",
                "-Wl,--disable-new-dtags,-rpath,$ORIGIN/lib:$ORIGIN/deps",
            ],
        );
        let v1 = format!("-Wl,--version-script={}", s("ver1.map"));
        let v2 = format!("-Wl,--version-script={}", s("ver2.map"));
        build(
            "v1/libver.so",
            &[s("ver.c")],
            &[&v1, "-Wl,-soname,libver.so"],
        );
        build(
            "v2/libver.so",
            &[s("ver.c")],
            &["-DV2", &v2, "-Wl,-soname,libver.so"],
        );
        build(
            "libuser.so",
            &[s("user.c")],
            &["-Lv2", "-lver", "-Wl,--disable-new-dtags,-rpath,$ORIGIN/v1"],
        );
        build("libplug.so", &[s("plug.c")], &["-lz"]);
        build(
            "libplug2.so",
            &[s("plug2.c")],
            &[
                "-Ldeps",
                "-Wl,--no-as-needed",
                "-lleaf",
                "-Wl,--enable-new-dtags,-rpath,$ORIGIN/deps",
            ],
        );
        build("libunder.so", &[s("under.c")], &[]);
        build("libtextrel.so", &[s("textrel.c")], &[]);
        build("libietls.so", &[s("ietls.c")], &[]);
        build("libexecstack.so", &[s("leaf.c")], &["-Wl,-z,execstack"]);
        build("libdep.so", &[s("ie_dep.c")], &[]);
        build(
            "libie.so",
            &[s("ietls.c")],
            &["-L.", "-Wl,--no-as-needed", "-ldep", "-Wl,-rpath,$ORIGIN"],
        );
        build(
            "libieroot.so",
            &[s("ie_root.c")],
            &[
                "-L.",
                "-Wl,--no-as-needed",
                "-ldep",
                "-lie",
                "-Wl,-rpath,$ORIGIN",
            ],
        );
        gcc(&dir, &["-static", "-o", "static_main", &s("static_main.c")]);
        let kinds = format!("-Wl,--version-script={}", s("kinds.map"));
        build("libkinds.so", &[s("kinds.c")], &[&kinds]);
        gcc(
            &dir,
            &[
                "-o",
                "kinds_host",
                &s("kinds_host.c"),
                "-L.",
                "-lkinds",
                "-Wl,-rpath,$ORIGIN",
            ],
        );
        // Python extension modules written in C.
        let py = common::pyenv_python();
        let include = python_var(
            &py,
            "import sysconfig; print(sysconfig.get_paths()['include'])",
        );
        let libdir = python_var(
            &py,
            "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))",
        );
        let inc = format!("-I{include}");
        let ext = |name: &str, modname: &str, extra: &[&str]| {
            let out = format!("{name}.{PYENV_TAG}.so");
            let def = format!("-DMODNAME={modname}");
            let mut args = vec![inc.as_str(), def.as_str()];
            args.extend(extra);
            build(&out, &[s("spam.c")], &args);
        };
        ext("spam", "spam", &[]);
        let ldir = format!("-L{libdir}");
        let rp = format!("-Wl,-rpath,{libdir}");
        ext("spamlinked", "spamlinked", &[&ldir, "-lpython3.11", &rp]);
        ext("wrongname", "spam", &[]);
        for tag in ["cpython-313", "cpython-313t"] {
            build(
                &format!("newapi.{tag}-x86_64-linux-gnu.so"),
                &[s("newapi.c")],
                &[&inc],
            );
        }
        // A wheel holding a good module and a bad one.
        for f in ["spam", "spamlinked"] {
            let name = format!("{f}.{PYENV_TAG}.so");
            std::fs::copy(dir.join(&name), dir.join("wheel/pkg").join(&name)).unwrap();
        }
        testkit::run(Command::new(&py).current_dir(dir.join("wheel")).args([
            "-m",
            "zipfile",
            "-c",
            "../pkg-1.0-cp311-cp311-linux_x86_64.whl",
            "pkg",
        ]));
        dir
    })
}

fn python_var(py: &Path, code: &str) -> String {
    let out = testkit::run(Command::new(py).args(["-c", code]));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Run `dynload ARGS` (no colour); returns stdout, stderr and the status.
fn dynload(args: &[&str]) -> (String, String, i32) {
    dynload_with(args, &[], None)
}

/// `dynload ARGS` with `env` added, in `dir`.
fn dynload_with(args: &[&str], env: &[(&str, &str)], dir: Option<&Path>) -> (String, String, i32) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dynload"));
    cmd.args(args)
        .env_remove("LD_LIBRARY_PATH")
        .env_remove("NO_COLOR");
    cmd.envs(env.iter().copied());
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    let out = cmd.output().expect("run dynload");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code().unwrap_or(-1),
    )
}

fn path(name: &str) -> String {
    fixtures().join(name).to_string_lossy().into_owned()
}

/// How many CPU-specific subdirectories glibc tries in each search
/// directory on this machine, each counted once (18 on an Intel processor
/// with AVX-512, 7 on an AMD one with AVX2).
fn hwcaps_count() -> usize {
    static N: OnceLock<usize> = OnceLock::new();
    // (Less the directory itself.)
    *N.get_or_init(|| testkit::glibc_hwcaps_subdirs().len() - 1)
}

/// Compare with tests/golden/NAME.txt, the fixture directory as `$DIR` and
/// the machine's count of CPU-specific subdirectories as `$HWCAPS`.
fn golden(name: &str, actual: &str) {
    let text = actual
        .replace(&fixtures().to_string_lossy().into_owned(), "$DIR")
        .replace(
            &format!("after {} CPU-specific", hwcaps_count()),
            "after $HWCAPS CPU-specific",
        );
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.txt"));
    if std::env::var_os("DYNLOAD_BLESS").is_some() {
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, &text).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("{}: {e} (DYNLOAD_BLESS=1 writes it)", file.display()));
    assert_eq!(
        text,
        expected,
        "{name}: output differs from {}",
        file.display()
    );
}

/// What glibc's dlopen(RTLD_NOW) says about a file: "ok" or dlerror's text
/// (through ctypes: plain glibc, no dynload).
fn glibc_dlopen(file: &str) -> String {
    let code = "import ctypes, os, sys\ntry:\n    ctypes.CDLL(sys.argv[1], mode=os.RTLD_NOW)\n    print('ok')\nexcept OSError as e:\n    print(e)";
    let out = testkit::run(Command::new("python3").args(["-c", code, file]));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The files glibc would load for `file` (`ld.so --list`), vdso excluded.
fn glibc_list(file: &str) -> std::collections::BTreeSet<String> {
    let out = Command::new("/lib64/ld-linux-x86-64.so.2")
        .args(["--list", file])
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            match l.split_once(" => ") {
                Some((_, rest)) => rest.split(" (").next().map(str::to_string),
                None if l.starts_with('/') => l.split(" (").next().map(str::to_string),
                None => None,
            }
        })
        .filter(|p| p.starts_with('/'))
        .map(|p| canonical(&p))
        .collect()
}

fn canonical(p: &str) -> String {
    std::fs::canonicalize(p)
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_else(|_| p.to_string())
}

/// The files of a `tree --json` document but its root, canonical.
fn tree_files(doc: &Value) -> std::collections::BTreeSet<String> {
    let mut all = std::collections::BTreeSet::new();
    tree_paths(doc, &mut all);
    let root = canonical(doc["trees"][0]["path"].as_str().unwrap());
    all.into_iter()
        .map(|p| canonical(&p))
        .filter(|p| *p != root)
        .collect()
}

/// Every path in a `tree --json` document.
fn tree_paths(doc: &Value, out: &mut std::collections::BTreeSet<String>) {
    if let Some(p) = doc.get("path").and_then(Value::as_str) {
        out.insert(p.to_string());
    }
    for key in ["trees", "dependencies"] {
        if let Some(list) = doc.get(key).and_then(Value::as_array) {
            for d in list {
                tree_paths(d, out);
            }
        }
    }
}

fn json(args: &[&str]) -> (Value, i32) {
    let (out, err, code) = dynload(args);
    let v = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    (v, code)
}

fn codes(check: &Value) -> Vec<String> {
    let mut v: Vec<String> = check["files"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|f| f["findings"].as_array().unwrap().iter())
        .map(|f| {
            format!(
                "{}:{}",
                f["severity"].as_str().unwrap(),
                f["code"].as_str().unwrap()
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_dependency_missing_two_levels_down_shows_where_it_was_looked_for() {
    let top = path("libtop_runpath.so");
    let (out, _, code) = dynload(&["tree", "--color", "never", &top]);
    assert_eq!(code, 2);
    golden("tree-missing", &out);
    let (out, _, code) = dynload(&["check", "--color", "never", &top]);
    assert_eq!(code, 2);
    golden("check-missing", &out);
    // glibc fails the same way.
    let glibc = glibc_dlopen(&top);
    assert_eq!(
        glibc,
        "libleaf.so: cannot open shared object file: No such file or directory"
    );
    let (doc, _) = json(&["check", "--json", &top]);
    let missing = &doc["files"][0]["findings"][0];
    assert_eq!(missing["code"], "missing-dependency");
    assert!(missing["message"].as_str().unwrap().starts_with(&glibc));
    // With --all, every place tried, exactly as the search tried them.
    let (doc, _) = json(&["tree", "--json", &top]);
    let tried = doc["trees"][0]["dependencies"][0]["dependencies"][0]["tried"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(tried[0], "/etc/ld.so.cache (no entry)");
    assert!(tried.contains(&Value::from(
        "/lib/x86_64-linux-gnu/glibc-hwcaps/x86-64-v2/libleaf.so"
    )));
    assert_eq!(tried.last().unwrap(), "/usr/lib/libleaf.so");
    let (all, _, _) = dynload(&["tree", "--all", "--color", "never", &top]);
    for t in &tried {
        assert!(
            all.contains(t.as_str().unwrap()),
            "{t} missing from --all:\n{all}"
        );
    }
}

#[test]
fn rpath_is_inherited_and_runpath_is_not() {
    let top = path("libtop_rpath.so");
    let (out, _, code) = dynload(&["tree", "--color", "never", &top]);
    assert_eq!(code, 0);
    golden("tree-rpath", &out);
    let (out, _, code) = dynload(&["check", "--color", "never", &top]);
    assert_eq!(code, 0, "an inherited RPATH is a note, not a warning");
    golden("check-rpath", &out);
    // The same objects glibc loads.
    assert_eq!(glibc_dlopen(&top), "ok");
    let (doc, _) = json(&["tree", "--json", &top]);
    assert_eq!(tree_files(&doc), glibc_list(&top));
}

#[test]
fn a_version_too_new_names_the_highest_version_present() {
    let user = path("libuser.so");
    let (out, _, code) = dynload(&["check", "--color", "never", &user]);
    assert_eq!(code, 2);
    golden("check-version", &out);
    let glibc = glibc_dlopen(&user);
    assert_eq!(
        glibc,
        format!(
            "{}: version `VERS_2' not found (required by {user})",
            path("v1/libver.so")
        )
    );
    let (doc, _) = json(&["check", "--json", &user]);
    let f = &doc["files"][0]["findings"];
    assert!(f
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["message"] == glibc.as_str()));
    let (out, _, code) = dynload(&["why", "--color", "never", "--in", &user, "newfn"]);
    assert_eq!(code, 2);
    golden("why-version", &out);
}

#[test]
fn symbols_defined_twice_say_which_definition_wins() {
    let plug = path("libplug.so");
    let plug2 = path("libplug2.so");
    let (out, _, code) = dynload(&["check", "--color", "never", &plug, &plug2]);
    assert_eq!(code, 2, "plug2 also has an undefined symbol");
    golden("check-collisions", &out);
    let (out, _, code) = dynload(&["why", "--color", "never", "--in", &plug2, "strlen"]);
    assert_eq!(code, 0);
    golden("why-strlen", &out);
    let (out, _, code) = dynload(&[
        "why",
        "--color",
        "never",
        "--deepbind",
        "--in",
        &plug2,
        "strlen",
    ]);
    assert_eq!(code, 0);
    assert!(
        out.contains(&format!("binds to strlen in {plug2}")),
        "{out}"
    );
    let (out, _, _) = dynload(&["why", "--color", "never", "--in", &plug, "crc32"]);
    golden("why-crc32", &out);
    // glibc binds libplug2's strlen reference to libc's, as `why` says.
    std::fs::create_dir_all(testkit::out_root().join("diag")).unwrap();
    let driver = testkit::program("diag/dlopen_now.c");
    let out = Command::new(&driver)
        .arg(&plug)
        .env("LD_DEBUG", "bindings")
        .output()
        .unwrap();
    let debug = String::from_utf8_lossy(&out.stderr);
    assert!(
        debug.lines().any(
            |l| l.contains("binding file /lib/x86_64-linux-gnu/libz.so.1 [0] to")
                && l.contains(&format!("{plug} [0]"))
                && l.contains("`crc32'")
        ),
        "glibc did not bind libz's crc32 to the plugin:\n{debug}"
    );
}

#[test]
fn an_undefined_symbol_gets_its_nearest_candidates() {
    let under = path("libunder.so");
    let (out, _, code) = dynload(&["check", "--color", "never", &under]);
    assert_eq!(code, 2);
    golden("check-undefined", &out);
    assert_eq!(
        glibc_dlopen(&under),
        format!("{under}: undefined symbol: deflateEnd")
    );
    let (doc, _) = json(&["check", "--json", &path("libplug2.so")]);
    let typo = doc["files"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == "undefined-symbol")
        .unwrap()
        .clone();
    assert_eq!(typo["symbol"], "leaff");
    assert!(
        typo["details"].as_array().unwrap().iter().any(|d| d
            .as_str()
            .unwrap()
            .contains("similar names in scope: leaf (libleaf.so)")),
        "{typo}"
    );
}

#[test]
fn hand_written_extension_modules_checked_against_the_interpreter() {
    let good = path(&format!("spam.{PYENV_TAG}.so"));
    let (out, _, code) = dynload(&["check", "--color", "never", &good]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("(Python extension module)\n  ok\n"), "{out}");
    let linked = path(&format!("spamlinked.{PYENV_TAG}.so"));
    let (out, _, code) = dynload(&["check", "--color", "never", &linked]);
    assert_eq!(code, 2);
    let py = common::pyenv_python();
    let libdir = python_var(
        &py,
        "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))",
    );
    let generic = |text: &str| {
        let exe = std::fs::canonicalize(&py).unwrap();
        text.replace(&exe.to_string_lossy().into_owned(), "$PYTHON")
            .replace(&libdir, "$LIBDIR")
    };
    golden("check-libpython-pyenv", &generic(&out));
    // Under Debian's interpreter (libpython inside the executable) the
    // same file maps a second libpython: said so, and its 1,600 symbols
    // shadowed by the executable's are reported.
    let (doc, code) = json(&[
        "check",
        "--json",
        "--python",
        "/usr/bin/python3.11",
        &linked,
    ]);
    assert_eq!(code, 2);
    assert_eq!(
        codes(&doc),
        ["error:links-libpython", "warning:symbol-collision"]
    );
    let finding = &doc["files"][0]["findings"][0];
    // (its RPATH names pyenv's libpython)
    let here = finding["details"][2].as_str().unwrap();
    assert!(
        here.contains(&format!(
            "maps a second interpreter: {libdir}/libpython3.11.so.1.0"
        )),
        "{here}"
    );
    // `tree` with each interpreter as the host: pyenv's has this libpython
    // loaded already; Debian's would load it.
    let (out, _, _) = dynload(&["tree", "--color", "never", "--python", "python3", &linked]);
    assert!(
        out.contains("└── libpython3.11.so.1.0 [already loaded]"),
        "{out}"
    );
    let (out, _, _) = dynload(&[
        "tree",
        "--color",
        "never",
        "--python",
        "/usr/bin/python3.11",
        &linked,
    ]);
    assert!(out.contains("└── libpython3.11.so.1.0 [runpath]"), "{out}");
    let wrong = path(&format!("wrongname.{PYENV_TAG}.so"));
    let (out, _, code) = dynload(&["check", "--color", "never", &wrong]);
    assert_eq!(code, 2);
    golden("check-init-name", &generic(&out));
    let newer = path("newapi.cpython-313-x86_64-linux-gnu.so");
    let (out, _, code) = dynload(&["check", "--color", "never", &newer]);
    assert_eq!(code, 2);
    golden("check-python-api", &generic(&out));
    // Built for the free-threaded ABI: said so.
    let (doc, _) = json(&[
        "check",
        "--json",
        &path("newapi.cpython-313t-x86_64-linux-gnu.so"),
    ]);
    let f = &doc["files"][0]["findings"][0];
    assert_eq!(f["code"], "python-api-missing");
    assert!(
        f["details"][0]
            .as_str()
            .unwrap()
            .contains("free-threaded ABI (cpython-313t-x86_64-linux-gnu)"),
        "{f}"
    );
    // Python agrees: the module imports, the other cannot.
    let import = |dir: &Path, module: &str| {
        let out = Command::new(&py)
            .current_dir(dir)
            .args(["-c", &format!("import {module}; print({module}.hello())")])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
            + String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
    };
    assert_eq!(import(fixtures(), "spam"), "42");
    assert_eq!(
        import(fixtures(), "wrongname"),
        "ImportError: dynamic module does not define module export function (PyInit_wrongname)"
    );
}

#[test]
fn a_wheel_is_unpacked_and_every_extension_module_checked() {
    let wheel = path("pkg-1.0-cp311-cp311-linux_x86_64.whl");
    let (doc, code) = json(&["check", "--json", &wheel]);
    assert_eq!(code, 2);
    let files = doc["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    for f in files {
        assert_eq!(f["from"], wheel.as_str());
        assert_eq!(f["extension_module"], true);
    }
    assert!(files[0]["file"]
        .as_str()
        .unwrap()
        .ends_with(&format!("pkg/spam.{PYENV_TAG}.so")));
    assert!(files[0]["findings"].as_array().unwrap().is_empty());
    assert_eq!(files[1]["findings"][0]["code"], "links-libpython");
    // The unpacked copy is gone.
    let unpacked = files[0]["file"].as_str().unwrap();
    assert!(!Path::new(unpacked).exists(), "{unpacked} left behind");
}

#[test]
fn pyo3_extensions_built_right_and_wrong() {
    let dir = testkit::out_root().join("diagnose-pyo3");
    let (right, wrong) = common::build_pyo3_demo(&dir);
    let module = |d: &Path| d.join(common::MODULE_FILE).to_string_lossy().into_owned();
    for python in ["python3", common::DEBIAN_PYTHON] {
        let (doc, code) = json(&["check", "--json", "--python", python, &module(&right)]);
        assert_eq!(code, 0, "{python}: {doc}");
        assert_eq!(codes(&doc), Vec::<String>::new(), "{python}");
    }
    let (doc, code) = json(&[
        "check",
        "--json",
        "--python",
        common::DEBIAN_PYTHON,
        &module(&wrong),
    ]);
    assert_eq!(code, 2);
    assert_eq!(
        codes(&doc),
        ["error:links-libpython", "warning:symbol-collision"]
    );
    // The wrong build under pyenv's interpreter: Debian's libpython is not
    // the interpreter's own, so it is a second copy there too.
    let (doc, code) = json(&["check", "--json", &module(&wrong)]);
    assert_eq!(code, 2);
    assert!(codes(&doc).contains(&"error:links-libpython".to_string()));
    // `why` sees PyLong_FromLong bound to the running interpreter, as the
    // import under glibc does (tests/pyo3.rs).
    let (doc, _) = json(&[
        "why",
        "--json",
        "--python",
        common::DEBIAN_PYTHON,
        "--in",
        &module(&wrong),
        "PyLong_FromLong",
    ]);
    assert_eq!(doc["binds_to"]["object"], "/usr/bin/python3.11");
    let shadowed: Vec<&str> = doc["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["objects"].as_array().unwrap().iter())
        .filter(|o| o["status"] == "shadowed")
        .map(|o| o["object"].as_str().unwrap())
        .collect();
    assert_eq!(shadowed.len(), 1);
    assert_eq!(canonical(shadowed[0]), canonical(common::DEBIAN_LIBPYTHON));
}

#[test]
fn real_libraries_trees_match_glibc() {
    for lib in [
        "/usr/lib/x86_64-linux-gnu/libLLVM-15.so.1",
        "/usr/lib/x86_64-linux-gnu/libz3.so.4",
        "/usr/lib/x86_64-linux-gnu/libcrypto.so.3",
        "/usr/lib/x86_64-linux-gnu/libicui18n.so.72",
    ] {
        let (doc, code) = json(&["tree", "--json", lib]);
        assert_eq!(code, 0, "{lib}");
        assert_eq!(tree_files(&doc), glibc_list(lib), "{lib}");
        let (out, _, code) = dynload(&["check", "--color", "never", lib]);
        assert_eq!(code, 0, "{lib}:\n{out}");
    }
    let (out, _, code) = dynload(&[
        "tree",
        "--color",
        "never",
        "/usr/lib/x86_64-linux-gnu/libLLVM-15.so.1",
    ]);
    assert_eq!(code, 0);
    golden("tree-llvm", &out);
    let (out, _, code) = dynload(&["why", "--color", "never", "malloc"]);
    assert_eq!(code, 0);
    golden("why-malloc", &out);
}

#[test]
fn numpy_from_a_test_virtualenv() {
    let venv = testkit::out_root().join("numpy-venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        testkit::run(Command::new("python3").args(["-m", "venv"]).arg(&venv));
        testkit::run(Command::new(&python).args(["-m", "pip", "install", "-q", "numpy==2.4.6"]));
    }
    let site = python_var(
        &python,
        "import numpy, os; print(os.path.dirname(numpy.__file__))",
    );
    let py = python.to_string_lossy().into_owned();
    let (doc, code) = json(&["check", "--json", "--python", &py, &site]);
    let files = doc["files"].as_array().unwrap();
    assert!(files.len() >= 15, "{} extension modules", files.len());
    assert_eq!(doc["errors"], 0, "{doc:#}");
    assert!(code <= 1);
    // The tree of numpy's core module is what glibc loads.
    let core = format!("{site}/_core/_multiarray_umath.{PYENV_TAG}.so");
    let (doc, _) = json(&["tree", "--json", "--python", &py, &core]);
    let ours = tree_files(&doc);
    let glibc = glibc_list(&core);
    assert!(
        glibc.is_subset(&ours),
        "glibc: {glibc:?}\ndynload: {ours:?}"
    );
    let (out, _, _) = dynload(&["tree", "--color", "never", &core]);
    assert!(
        out.lines()
            .any(|l| l.contains("libscipy_openblas64_") && l.ends_with("[rpath]")),
        "{out}"
    );
}

#[test]
fn output_for_people_and_for_programs() {
    let top = path("libtop_runpath.so");
    let (out, _, _) = dynload(&["tree", "--color", "always", &top]);
    assert!(out.contains("\x1b["), "no colour with --color always");
    let (out, _, _) = dynload(&["tree", &top]);
    assert!(!out.contains("\x1b["), "colour when not on a terminal");
    for (cmd, schema) in [("tree", "dynload-tree/1"), ("check", "dynload-check/1")] {
        let (doc, _) = json(&[cmd, "--json", &top]);
        assert_eq!(doc["schema"], schema);
    }
    let (doc, _) = json(&["why", "--json", "malloc"]);
    assert_eq!(doc["schema"], "dynload-why/1");
    for cmd in ["tree", "check", "why"] {
        let (out, _, code) = dynload(&[cmd, "--help"]);
        assert_eq!(code, 0);
        assert!(
            out.contains("Examples:") && out.contains("dynload "),
            "{cmd} --help:\n{out}"
        );
    }
    // Errors go to standard error.
    let (out, err, code) = dynload(&["why", "--in", "/nonexistent.so", "x"]);
    assert_eq!(code, 2);
    assert!(out.is_empty());
    assert!(
        err.contains("/nonexistent.so: cannot open shared object file"),
        "{err}"
    );
}

#[test]
fn what_check_refuses_is_what_loading_refuses() {
    for (file, code) in [
        ("libtextrel.so", "text-relocations"),
        ("libexecstack.so", "executable-stack"),
    ] {
        let file = path(file);
        let (doc, status) = json(&["check", "--json", &file]);
        assert_eq!(status, 2);
        let finding = &doc["files"][0]["findings"][0];
        assert_eq!(finding["code"], code);
        // `dynload load` opens it with the loader: the same error text.
        let (out, _, status) = dynload(&["load", &file]);
        assert_ne!(status, 0);
        let first = out.lines().next().unwrap();
        assert_eq!(
            first,
            format!("{file}: error: {}", finding["message"].as_str().unwrap()),
            "{out}"
        );
    }
    // Initial-exec TLS: a warning; loading works (glibc loads it).
    let ie = path("libietls.so");
    let (doc, status) = json(&["check", "--json", &ie]);
    assert_eq!(status, 1);
    assert_eq!(codes(&doc), ["warning:initial-exec-tls"]);
    let (out, _, status) = dynload(&["load", &ie]);
    assert_eq!(status, 0, "{out}");
    assert_eq!(glibc_dlopen(&ie), "ok");
}

#[test]
fn why_tells_each_kind_of_definition_apart() {
    let kinds = path("libkinds.so");
    let status_of = |args: &[&str]| -> Vec<(String, String)> {
        let (doc, _) = json(args);
        doc["scopes"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["objects"].as_array().unwrap().iter())
            .filter(|o| o["object"] == kinds.as_str())
            .map(|o| {
                (
                    o["status"].as_str().unwrap().to_string(),
                    o["detail"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let one = |args: &[&str]| status_of(args).pop().unwrap();
    let (st, detail) = one(&["why", "--json", "--in", &kinds, "weak_fn"]);
    assert_eq!(
        (st.as_str(), detail.contains("weak")),
        ("binds", true),
        "{detail}"
    );
    let (st, detail) = one(&["why", "--json", "--in", &kinds, "protected_fn"]);
    assert_eq!(
        (st.as_str(), detail.contains("protected")),
        ("binds", true),
        "{detail}"
    );
    let (st, _) = one(&["why", "--json", "--in", &kinds, "hidden_fn"]);
    assert_eq!(
        st, "absent",
        "hidden symbols are not in the dynamic symbol table"
    );
    let (st, detail) = one(&[
        "why",
        "--json",
        "--in",
        &kinds,
        "--version",
        "KINDS_3",
        "versioned_fn",
    ]);
    assert_eq!(st, "wrong-version");
    assert!(detail.starts_with("versioned_fn@@KINDS_2"), "{detail}");
    let (st, detail) = one(&[
        "why",
        "--json",
        "--in",
        &kinds,
        "--version",
        "KINDS_1",
        "versioned_fn",
    ]);
    assert_eq!(
        (st.as_str(), detail.as_str()),
        ("binds", "versioned_fn@KINDS_1")
    );
    // dlsym from a program linked with it: the old version alone is hidden,
    // as glibc's dlsym finds.
    let host = path("kinds_host");
    let (st, detail) = one(&["why", "--json", "--host", &host, "only_old"]);
    assert_eq!(st, "hidden-version");
    assert!(detail.starts_with("only_old@KINDS_1"), "{detail}");
    let (out, _, status) = dynload(&["why", "--color", "never", "--host", &host, "only_old"]);
    assert_eq!(status, 2);
    golden("why-hidden-version", &out);
    let code = "import ctypes, sys\nl = ctypes.CDLL(sys.argv[1])\ntry:\n    l.only_old\n    print('found')\nexcept AttributeError as e:\n    print(e)";
    let glibc = testkit::run(Command::new("python3").args(["-c", code, &kinds]));
    assert_eq!(
        String::from_utf8_lossy(&glibc.stdout).trim(),
        format!("{kinds}: undefined symbol: only_old")
    );
}

/// What a review of the first version found, each compared with what
/// glibc or dynload's loader does.
#[test]
fn each_file_is_checked_on_its_own() {
    // libtop_runpath fails; that must not leak into libtop_rpath's check,
    // which glibc loads fine after the other failed.
    let (doc, _) = json(&[
        "check",
        "--json",
        &path("libtop_runpath.so"),
        &path("libtop_rpath.so"),
    ]);
    let files = doc["files"].as_array().unwrap();
    let second: Vec<&str> = files[1]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    assert_eq!(second, ["inherited-rpath"], "{doc:#}");
    let (out, _, _) = dynload(&[
        "tree",
        "--color",
        "never",
        &path("libtop_runpath.so"),
        &path("libtop_rpath.so"),
    ]);
    assert!(out.contains("    └── libleaf.so [rpath of "), "{out}");
}

#[test]
fn initial_exec_tls_is_judged_by_the_loaders_rule() {
    let root = path("libieroot.so");
    let (doc, status) = json(&["check", "--json", &root]);
    assert_eq!(status, 2, "{doc:#}");
    let f = doc["files"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == "initial-exec-tls")
        .unwrap()
        .clone();
    // The loader's own refusal, word for word.
    let (out, _, status) = dynload(&["load", &root]);
    assert_ne!(status, 0);
    assert!(out.contains(f["message"].as_str().unwrap()), "{out}\n{f}");
    assert!(f["message"]
        .as_str()
        .unwrap()
        .ends_with("cannot allocate memory in static TLS block"));
    // More initial-exec TLS than glibc's surplus: glibc refuses it, with
    // the same words.
    let lsan = "/usr/lib/x86_64-linux-gnu/liblsan.so.0";
    let (doc, status) = json(&["check", "--json", lsan]);
    assert_eq!(status, 2);
    assert_eq!(
        doc["files"][0]["findings"][0]["message"],
        glibc_dlopen(lsan).as_str(),
        "{doc:#}"
    );
    // An initial-exec reference into libc's TLS (errno) is no finding.
    let (doc, _) = json(&["check", "--json", &path("libdep.so")]);
    assert_eq!(codes(&doc), Vec::<String>::new());
}

#[test]
fn why_takes_the_version_a_relocation_asks_for() {
    let kinds = path("libkinds.so");
    let (doc, _) = json(&["why", "--json", "--in", &kinds, "versioned_fn"]);
    assert_eq!(doc["version"], "KINDS_2");
    assert_eq!(doc["binds_to"]["entry"], "versioned_fn@@KINDS_2");
    // glibc binds the same reference to the same version.
    let driver = {
        std::fs::create_dir_all(testkit::out_root().join("diag")).unwrap();
        testkit::program("diag/dlopen_now.c")
    };
    let out = Command::new(&driver)
        .arg(&kinds)
        .env("LD_DEBUG", "bindings")
        .output()
        .unwrap();
    let debug = String::from_utf8_lossy(&out.stderr);
    assert!(
        debug.contains("normal symbol `versioned_fn' [KINDS_2]"),
        "{debug}"
    );
}

#[test]
fn odd_files_and_names() {
    // libpython is not an extension module (it exports PyInit_ functions of
    // its built-in modules).
    let (doc, _) = json(&[
        "check",
        "--json",
        "/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0",
    ]);
    assert_eq!(doc["files"][0]["extension_module"], false);
    assert!(
        !codes(&doc)
            .iter()
            .any(|c| c.contains("missing-init-function")),
        "{doc:#}"
    );
    // A C-runtime library asked for directly is checked: glibc cannot load
    // libthread_db on its own either.
    let thread_db = "/usr/lib/x86_64-linux-gnu/libthread_db.so.1";
    let (doc, status) = json(&["check", "--json", thread_db]);
    assert_eq!(status, 2);
    let undefined: Vec<&str> = doc["files"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == "undefined-symbol")
        .map(|f| f["message"].as_str().unwrap())
        .collect();
    let glibc = glibc_dlopen(thread_db);
    assert!(
        undefined.contains(&glibc.as_str()),
        "{glibc}\n{undefined:?}"
    );
    // A statically linked executable: glibc's words.
    let (doc, _) = json(&["check", "--json", &path("static_main")]);
    assert_eq!(
        doc["files"][0]["findings"][0]["message"],
        format!(
            "{}: cannot dynamically load executable",
            path("static_main")
        )
    );
    // A bare name is searched for, not taken from the current directory:
    // said so when the file is right here.
    let (doc, _) = json_in(&["check", "--json", "libplug.so"], fixtures());
    let f = &doc["files"][0]["findings"][0];
    assert_eq!(f["code"], "cannot-open");
    assert!(
        f["details"].to_string().contains("write ./libplug.so"),
        "{f}"
    );
    // $ORIGIN in LD_LIBRARY_PATH is the host program's directory.
    let (doc, _) = {
        let (out, err, code) = dynload_with(
            &[
                "tree",
                "--json",
                "--host",
                &path("kinds_host"),
                &path("lib/libmid.so"),
            ],
            &[("LD_LIBRARY_PATH", "$ORIGIN/deps")],
            None,
        );
        (
            serde_json::from_str::<Value>(&out).unwrap_or_else(|e| panic!("{e}: {out} {err}")),
            code,
        )
    };
    let leaf = &doc["trees"][0]["dependencies"][0];
    assert_eq!(leaf["reason"], "ld-library-path", "{doc:#}");
    // A repeated entry has an empty list of dependencies, as documented.
    let (doc, _) = json(&[
        "tree",
        "--json",
        "/usr/lib/x86_64-linux-gnu/libLLVM-15.so.1",
    ]);
    let repeated = doc["trees"][0]["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["repeated"] == true)
        .expect("a repeated entry");
    assert_eq!(repeated["dependencies"], serde_json::json!([]));
}

fn json_in(args: &[&str], dir: &Path) -> (Value, i32) {
    let (out, err, code) = dynload_with(args, &[], Some(dir));
    let v = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    (v, code)
}
