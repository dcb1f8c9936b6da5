//! The shared loader scenarios (testkit::scenarios) through dynload's Rust
//! API, compared line by line with glibc's run of the same script.
//!
//! Each scenario runs in its own child process of this test binary: a
//! scenario that opens objects RTLD_GLOBAL changes the global scope of the
//! whole process, which would leak into scenarios running beside it (and
//! LD_LIBRARY_PATH is read once, at start). The child runs the script
//! through the Rust API in-process and prints the driver's format.

mod common;

use testkit::scenarios::{self, Scenario};

const CHILD: &str = "DYNLOAD_TEST_SCENARIO_CHILD";

fn run(name: &str, make: fn(&str) -> Scenario) {
    if let Some(dir) = std::env::var_os(CHILD) {
        // In the child: run the parent's script on the parent's set, with
        // every binding of the relocation pass's fast lane checked against
        // the general walk (and the lane taken wherever a scope allows).
        dynload::testing::check_fast_lane(true);
        let set = testkit::Set {
            dir: dir.into(),
            prefix: std::env::var("DYNLOAD_TEST_PREFIX").unwrap(),
        };
        let script = std::env::var("DYNLOAD_TEST_SCRIPT").unwrap();
        let script: Vec<&str> = script.split('\n').collect();
        print!("<<<{}>>>", common::run_api(&set, &script));
        return;
    }
    let sc = make("api");
    let dir = sc.set.dir.to_string_lossy().into_owned();
    let script = sc.script.join("\n");
    let mut env = vec![
        (CHILD, dir.as_str()),
        ("DYNLOAD_TEST_PREFIX", sc.set.prefix.as_str()),
        ("DYNLOAD_TEST_SCRIPT", script.as_str()),
    ];
    env.extend(sc.env_refs());
    let stdout = testkit::rerun_in_child(name, Some(&sc.set.dir), &env);
    let api = stdout
        .split("<<<")
        .nth(1)
        .and_then(|s| s.split(">>>").next())
        .unwrap_or_else(|| panic!("no output from the child:\n{stdout}"));
    let env = sc.env_refs();
    let glibc = testkit::run_driver(&sc.set, &sc.script(), testkit::Loader::Glibc, &env).stdout;
    sc.check(&glibc);
    common::assert_same(&glibc, api, &sc.script());
}

macro_rules! scenario_tests {
    ($($name:ident),* $(,)?) => {
        $(#[test] fn $name() { run(stringify!($name), scenarios::$name) })*
    };
}

testkit::with_scenarios!(scenario_tests);
