//! DYNLOAD_DEBUG=collisions through the C ABI (`dynload run --debug
//! collisions`): a program that dlopens two libraries RTLD_GLOBAL which
//! define the same symbols gets one line per symbol defined twice, naming
//! both objects, the version, and the object whose definition global
//! lookups get; without the category (or with `all`) there are none.

use std::process::Command;
use testkit::{Lib, Set};

/// Run the driver with `script` under `dynload run`, with `debug` as the
/// categories (none if None); returns its standard output and error.
fn run(set: &Set, debug: Option<&str>, script: &[&str]) -> (String, String) {
    let args: Vec<String> = script.iter().map(|l| set.expand(l)).collect();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dynload"));
    cmd.env("DYNLOAD_LIBRARY", testkit::libdynload())
        .env_remove("LD_LIBRARY_PATH")
        .env_remove("DYNLOAD_DEBUG")
        .env_remove("DYNLOAD_DEBUG_OUTPUT")
        .arg("run");
    if let Some(d) = debug {
        cmd.args(["--debug", d]);
    }
    let out = testkit::run(cmd.arg("--").arg(testkit::driver()).args(&args));
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The debug lines about collisions, without their "<pid>:\t" prefix.
fn collision_lines(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|l| l.split_once(":\t").map(|(_, rest)| rest))
        .filter(|l| l.starts_with("collision"))
        .map(str::to_string)
        .collect()
}

fn lib(name: &str, src: &str) -> Lib {
    Lib::src(name, src)
        .no_log()
        .flag("-Wl,--version-script={src}/collide_vers.map")
}

#[test]
fn global_loads_print_collisions() {
    let set = Set::build(
        "collide-cli",
        &[
            lib("a", "collide_a.c"),
            lib("b", "collide_b.c"),
            lib("d", "collide_b.c"),
            Lib::src("user", "collide_user.c").no_log(),
        ],
    );
    let script = [
        "open $a NOW|GLOBAL",
        "open $b NOW|GLOBAL",
        "call DEFAULT shared_fn",
        "call DEFAULT weak_fn",
        "vcall DEFAULT versioned_fn VERS_1",
        "open $user NOW",
        "call h3 call_shared",
        "open $d NOW",
        "open $d NOW|NOLOAD|GLOBAL",
    ];
    let expected_stdout = set.expand_text(
        "open @a: h1\nopen @b: h2\ncall shared_fn: 1\ncall weak_fn: 100\nvcall versioned_fn: 10\n\
         open @user: h3\ncall call_shared: 1\nopen @d: h4\nopen @d: h4\n",
    );

    let (stdout, stderr) = run(&set, Some("collisions"), &script);
    assert_eq!(stdout, expected_stdout);
    let (a, b, d) = (set.path("a"), set.path("b"), set.path("d"));
    let line = |sym: &str, new: &str, old: &str| {
        format!(
            "collision: symbol={sym} defined by {new} [0] and already by {old} [0]; global lookups get {old}'s"
        )
    };
    let mut got = collision_lines(&stderr);
    // Per object, the order of its symbol table: compare sorted.
    got.sort();
    let mut want = vec![
        line("shared_fn", &b, &a),
        line("versioned_fn version=VERS_1", &b, &a),
        line("weak_fn", &b, &a),
        format!("collisions: 3 symbols of {b} [0] are already defined in the global scope"),
        line("shared_fn", &d, &a),
        line("versioned_fn version=VERS_1", &d, &a),
        line("weak_fn", &d, &a),
        line("b_only", &d, &b),
        format!("collisions: 4 symbols of {d} [0] are already defined in the global scope"),
    ];
    want.sort();
    assert_eq!(got, want, "stderr:\n{stderr}");
    // The summary of an object follows its lines: B's come before D's.
    let pos = |needle: &str| stderr.find(needle).unwrap_or_else(|| panic!("{needle}"));
    assert!(pos(&format!("collisions: 3 symbols of {b}")) < pos(&line("shared_fn", &d, &a)));

    // Without the category, and with `all` (glibc's set), nothing.
    let (stdout, stderr) = run(&set, None, &script);
    assert_eq!(stdout, expected_stdout);
    assert_eq!(collision_lines(&stderr), Vec::<String>::new(), "{stderr}");
    assert!(!stderr.contains("collision"), "{stderr}");
    let (stdout, stderr) = run(&set, Some("all"), &script);
    assert_eq!(stdout, expected_stdout);
    assert!(stderr.contains("to global scope"), "`all` is on:\n{stderr}");
    assert!(!stderr.contains("collision"), "{stderr}");
}

#[test]
fn help_lists_collisions() {
    let set = Set::build("collide-cli-help", &[]);
    let out = testkit::run(
        Command::new(env!("CARGO_BIN_EXE_dynload"))
            .env("DYNLOAD_LIBRARY", testkit::libdynload())
            .args(["run", "--debug", "help", "--"])
            .arg(testkit::driver())
            .arg("open libnope.so NOW")
            .current_dir(&set.dir),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "  collisions display symbols an RTLD_GLOBAL load defines a second time in the global scope\n"
        ),
        "{err}"
    );
    assert!(
        err.contains(
            "  all        all previous options combined, except statistics and collisions\n"
        ),
        "{err}"
    );
}
