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
        // In the child: run the parent's script on the parent's set.
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
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD, &sc.set.dir)
        .env("DYNLOAD_TEST_PREFIX", &sc.set.prefix)
        .env("DYNLOAD_TEST_SCRIPT", sc.script.join("\n"))
        .current_dir(&sc.set.dir)
        .env_remove("LD_LIBRARY_PATH");
    for (k, v) in &sc.env {
        cmd.env(k, v);
    }
    let out = testkit::run(&mut cmd);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
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
