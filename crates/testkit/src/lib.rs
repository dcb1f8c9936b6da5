//! Test support shared by dynload's test suites.
//!
//! Fixtures are built from `fixtures/*.c` with gcc at test time, into
//! `target/test-fixtures/<set>/`, with file names prefixed by the set name
//! so that tests running in one process never share an object by accident.
//! The scripted driver (`fixtures/driver.c`) runs the same scenario under
//! glibc and, with `LD_PRELOAD=libdynload.so`, under dynload.

pub mod damage;
pub mod scenarios;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

/// The directory with the fixture sources.
pub fn fixtures_src() -> PathBuf {
    root().join("fixtures")
}

/// Where built fixtures go.
pub fn out_root() -> PathBuf {
    let d = root().join("target/test-fixtures");
    std::fs::create_dir_all(&d).expect("create target/test-fixtures");
    d
}

/// Run a command, panicking with its output if it fails.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed: {}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// What `readelf -W <option>` prints for `path` (how tests check that a
/// fixture really has what it is meant to test).
pub fn readelf(option: &str, path: impl AsRef<Path>) -> String {
    let out = run(Command::new("readelf")
        .args([option, "-W"])
        .arg(path.as_ref()));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The relocations of an object, as `readelf -r` names them.
pub fn relocations(path: impl AsRef<Path>) -> String {
    readelf("-r", path)
}

/// The dynamic symbol table of an object (`readelf --dyn-syms`).
pub fn dynamic_symbols(path: impl AsRef<Path>) -> String {
    readelf("--dyn-syms", path)
}

/// The dynamic section of an object (`readelf -d`).
pub fn dynamic_section(path: impl AsRef<Path>) -> String {
    readelf("-d", path)
}

/// The subdirectories glibc's own search tries inside a search directory,
/// in its order, each once, the directory itself ("") last: what
/// `LD_DEBUG=libs` prints for an `LD_LIBRARY_PATH` search. (On AMD
/// processors glibc's platform and hwcap names are both "x86_64", and it
/// lists `tls/x86_64/` and `x86_64/` twice.)
pub fn glibc_hwcaps_subdirs() -> Vec<String> {
    let dir = "/nonexistent-hwcaps-test";
    let out = Command::new("/bin/true")
        .env("LD_LIBRARY_PATH", dir)
        .env("LD_DEBUG", "libs")
        .output()
        .expect("run /bin/true");
    let text = String::from_utf8_lossy(&out.stderr);
    let path = text
        .lines()
        .find_map(|l| l.split_once("search path=").map(|(_, rest)| rest))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("LD_DEBUG=libs prints the search path");
    let mut once: Vec<String> = Vec::new();
    for d in path.split(':') {
        let sub = d.strip_prefix(dir).expect("a subdirectory of the path set");
        let sub = match sub.strip_prefix('/') {
            Some(s) => format!("{s}/"),
            None => String::new(),
        };
        if !once.contains(&sub) {
            once.push(sub);
        }
    }
    once
}

/// One shared object of a fixture set.
#[derive(Debug, Clone)]
pub struct Lib {
    name: String,
    src: String,
    defines: Vec<(String, String)>,
    deps: Vec<String>,
    flags: Vec<String>,
    subdir: Option<String>,
    log: bool,
    origin_runpath: bool,
}

impl Lib {
    /// A `node.c` object named `name` whose `which()` returns `value`.
    pub fn node(name: &str, value: i32) -> Lib {
        Lib::src(name, "node.c")
            .define("ID", name)
            .define("VALUE", &value.to_string())
    }

    /// A `node.c` object that defines no symbol shared with other nodes
    /// (so that nothing binds across objects).
    pub fn plain(name: &str) -> Lib {
        Lib::node(name, 0).define("NO_SHARED", "1")
    }

    /// An object built from `fixtures/<src>`.
    pub fn src(name: &str, src: &str) -> Lib {
        Lib {
            name: name.into(),
            src: src.into(),
            defines: Vec::new(),
            deps: Vec::new(),
            flags: Vec::new(),
            subdir: None,
            log: true,
            origin_runpath: true,
        }
    }

    /// `ver` from ver.c and its version script: f@V1 (hidden), f@@V2,
    /// g@V1. `old` (f@@V1 only) and `future` (f@@V3) are other builds of
    /// the same library, for the subdirectories of those names.
    pub fn versioned(build: &str) -> Lib {
        let (src, sub) = match build {
            "current" => ("ver", None),
            "old" => ("ver_old", Some("old")),
            "future" => ("ver_future", Some("future")),
            other => panic!("no {other} build of the versioned library"),
        };
        let l = Lib::src("ver", &format!("{src}.c"))
            .flag(&format!("-Wl,--version-script={{src}}/{src}.map"))
            .no_log();
        match sub {
            Some(d) => l.subdir(d),
            None => l,
        }
    }

    /// Add a DT_NEEDED on another object of the set.
    pub fn dep(mut self, name: &str) -> Lib {
        self.deps.push(name.into());
        self
    }

    /// Add a `-D` definition.
    pub fn define(mut self, k: &str, v: &str) -> Lib {
        self.defines.push((k.into(), v.into()));
        self
    }

    /// Add a compiler or linker flag (`{dir}` is the set's directory,
    /// `{src}` the fixture sources, `{prefix}` the file-name prefix).
    pub fn flag(mut self, f: &str) -> Lib {
        self.flags.push(f.into());
        self
    }

    /// Put the object in a subdirectory of the set.
    pub fn subdir(mut self, d: &str) -> Lib {
        self.subdir = Some(d.into());
        self
    }

    /// Do not link the set's liblog.
    pub fn no_log(mut self) -> Lib {
        self.log = false;
        self
    }

    /// Do not give the object the default DT_RUNPATH `$ORIGIN`.
    pub fn no_runpath(mut self) -> Lib {
        self.origin_runpath = false;
        self
    }
}

/// A built fixture set.
#[derive(Debug, Clone)]
pub struct Set {
    /// Its directory.
    pub dir: PathBuf,
    /// The prefix of its file names (the set name).
    pub prefix: String,
}

impl Set {
    /// Build liblog and `libs` (in order: dependencies first) as set `name`.
    pub fn build(name: &str, libs: &[Lib]) -> Set {
        let dir = out_root().join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let set = Set {
            dir: dir.clone(),
            prefix: name.replace('-', "_"),
        };
        set.compile(&Lib::src("log", "log.c").no_log());
        for l in libs {
            set.compile(l);
        }
        set
    }

    /// The file name of object `name`.
    pub fn file(&self, name: &str) -> String {
        format!("lib{}_{}.so", self.prefix, name)
    }

    /// The absolute path of object `name` (in the set's directory).
    pub fn path(&self, name: &str) -> String {
        self.dir
            .join(self.file(name))
            .to_string_lossy()
            .into_owned()
    }

    /// Compile one more object into the set.
    pub fn compile(&self, l: &Lib) {
        let out_dir = match &l.subdir {
            Some(s) => self.dir.join(s),
            None => self.dir.clone(),
        };
        std::fs::create_dir_all(&out_dir).unwrap();
        let out = out_dir.join(self.file(&l.name));
        // C++ sources are compiled (and linked against libstdc++) by g++.
        let compiler = if l.src.ends_with(".cpp") {
            "g++"
        } else {
            "gcc"
        };
        let mut cmd = Command::new(compiler);
        cmd.args([
            "-shared",
            "-fPIC",
            "-O1",
            "-g0",
            "-Wall",
            "-Wl,--no-as-needed",
            "-Wl,-z,noexecstack",
        ]);
        cmd.arg("-o").arg(&out);
        cmd.arg(fixtures_src().join(&l.src));
        for (k, v) in &l.defines {
            cmd.arg(format!("-D{k}={v}"));
        }
        if l.origin_runpath {
            cmd.arg("-Wl,-rpath,$ORIGIN");
        }
        for f in &l.flags {
            cmd.arg(
                f.replace("{dir}", &self.dir.to_string_lossy())
                    .replace("{prefix}", &self.prefix)
                    .replace("{src}", &fixtures_src().to_string_lossy()),
            );
        }
        cmd.arg(format!("-L{}", self.dir.display()));
        for s in ["sub", "other"] {
            cmd.arg(format!("-L{}", self.dir.join(s).display()));
        }
        for d in &l.deps {
            cmd.arg(format!("-l{}_{}", self.prefix, d));
        }
        if l.log {
            cmd.arg(format!("-l{}_log", self.prefix));
        }
        run(&mut cmd);
    }

    /// Expand `$x`, `@x` and `{dir}` anywhere in a text (for expected
    /// output): `$x` followed by an identifier.
    pub fn expand_text(&self, text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(i) = rest.find(['$', '@']) {
            out.push_str(&rest[..i]);
            let sigil = rest.as_bytes()[i];
            let tail = &rest[i + 1..];
            let n = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            if n == 0 {
                out.push(sigil as char);
            } else if sigil == b'$' {
                out.push_str(&self.path(&tail[..n]));
            } else {
                out.push_str(&self.file(&tail[..n]));
            }
            rest = &tail[n..];
        }
        out.push_str(rest);
        out.replace("{dir}", &self.dir.to_string_lossy())
    }

    /// Expand a script line: `$x` is object x's absolute path, `@x` its bare
    /// file name, `{dir}` the set directory.
    pub fn expand(&self, line: &str) -> String {
        let mut out = String::new();
        for (i, word) in line.split(' ').enumerate() {
            if i > 0 {
                out.push(' ');
            }
            let w = word.replace("{dir}", &self.dir.to_string_lossy());
            if let Some(n) = w.strip_prefix('$') {
                out.push_str(&self.path(n));
            } else if let Some(n) = w.strip_prefix('@') {
                out.push_str(&self.file(n));
            } else {
                out.push_str(&w);
            }
        }
        out
    }
}

static BUILD_LOCK: Mutex<()> = Mutex::new(());

/// The scripted driver, compiled once per test process.
pub fn driver() -> PathBuf {
    program("driver.c")
}

/// A fixture program (`fixtures/<src>`, C or C++), compiled once per test
/// process.
pub fn program(src: &str) -> PathBuf {
    static BUILT: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, p)) = built.iter().find(|(s, _)| s == src) {
        return p.clone();
    }
    let _g = BUILD_LOCK.lock().unwrap();
    let stem = src.rsplit_once('.').map_or(src, |(s, _)| s);
    let out = out_root().join(format!("{stem}-{}", std::process::id()));
    let compiler = if src.ends_with(".cpp") { "g++" } else { "gcc" };
    run(Command::new(compiler)
        .args(["-O1", "-pthread", "-o"])
        .arg(&out)
        .arg(fixtures_src().join(src)));
    built.push((src.to_string(), out.clone()));
    out
}

/// Run `program` with `args` in `dir` under `loader` (dynload: through
/// LD_PRELOAD, with DYNLOAD_DEBUG=files collected into the result), with
/// cargo's LD_LIBRARY_PATH removed; returns the output and exit status.
pub fn run_program(
    program: &Path,
    args: &[String],
    dir: &Path,
    loader: Loader,
    env: &[(&str, &str)],
) -> (Run, std::process::ExitStatus) {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(dir)
        .env_remove("LD_LIBRARY_PATH");
    let stem = format!("debug-prog-{}", std::process::id());
    if loader == Loader::Dynload {
        cmd.env("LD_PRELOAD", libdynload());
        cmd.env("DYNLOAD_DEBUG", "files");
        cmd.env("DYNLOAD_DEBUG_OUTPUT", dir.join(&stem));
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run program");
    let debug = if loader == Loader::Dynload {
        read_debug_files(dir, &stem)
    } else {
        String::new()
    };
    (
        Run {
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            debug,
        },
        out.status,
    )
}

/// Build the Cargo project `fixtures/<name>` (a cdylib) with `env` set and
/// copy its `lib<name>.so` to `dest` (written beside it and renamed into
/// place, so a mapped old copy is never overwritten). Each (project,
/// environment) has its own target directory, so that builds that differ
/// only in the environment do not rebuild each other.
pub fn cargo_cdylib(name: &str, env: &[(&str, &str)], dest: &Path) {
    use std::hash::{Hash, Hasher};
    let _g = BUILD_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let mut h = std::collections::hash_map::DefaultHasher::new();
    env.hash(&mut h);
    let target = out_root()
        .join("cargo-target")
        .join(format!("{name}-{:016x}", h.finish()));
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(fixtures_src().join(name))
        .args(["build", "-q", "--release", "--target-dir"])
        .arg(&target)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(&mut cmd);
    let built = target
        .join("release")
        .join(format!("lib{}.so", name.replace('-', "_")));
    let tmp = dest.with_extension("so.new");
    std::fs::copy(&built, &tmp).expect("copy the cdylib");
    std::fs::rename(&tmp, dest).expect("rename the cdylib into place");
}

/// `libdynload.so`, built (or brought up to date) once per test process by
/// `cargo build -p dynload-capi` in the profile the tests run in.
pub fn libdynload() -> PathBuf {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let _g = BUILD_LOCK.lock().unwrap();
        let release = !cfg!(debug_assertions);
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.current_dir(root())
            .args(["build", "-q", "-p", "dynload-capi"]);
        if release {
            cmd.arg("--release");
        }
        run(&mut cmd);
        let p = root()
            .join("target")
            .join(if release { "release" } else { "debug" })
            .join("libdynload.so");
        assert!(p.exists(), "{} was not built", p.display());
        p
    })
    .clone()
}

/// Which loader a driver run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loader {
    /// glibc's own dlopen.
    Glibc,
    /// dynload, through LD_PRELOAD=libdynload.so.
    Dynload,
}

/// Run test `name` of this test binary alone in a child process, in `dir`,
/// with `env` added and cargo's LD_LIBRARY_PATH removed (for tests that
/// change process-wide state, or count the process's mappings); asserts
/// that it ran and passed, and returns its standard output.
pub fn rerun_in_child(name: &str, dir: Option<&Path>, env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
    cmd.args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env_remove("LD_LIBRARY_PATH");
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let stdout = String::from_utf8_lossy(&run(&mut cmd).stdout).into_owned();
    assert!(
        stdout.contains("test result: ok. 1 passed"),
        "the child ran no test {name}:\n{stdout}"
    );
    stdout
}

/// This process's `/proc/self/maps`.
pub fn self_maps() -> String {
    std::fs::read_to_string("/proc/self/maps").expect("/proc/self/maps")
}

/// Each mapping in this process of the file whose path ends with `file`:
/// (start, end, permissions, file offset).
pub fn mappings_of(file: &str) -> Vec<(usize, usize, String, u64)> {
    self_maps()
        .lines()
        .filter(|l| l.ends_with(file))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (lo, hi) = f[0].split_once('-').unwrap();
            (
                usize::from_str_radix(lo, 16).unwrap(),
                usize::from_str_radix(hi, 16).unwrap(),
                f[1].to_owned(),
                u64::from_str_radix(f[2], 16).unwrap(),
            )
        })
        .collect()
}

/// [`mappings_of`] with the addresses made relative to the first mapping.
pub fn layout_of(file: &str) -> Vec<(usize, usize, String, u64)> {
    let rows = mappings_of(file);
    let base = rows.first().map_or(0, |r| r.0);
    rows.into_iter()
        .map(|(lo, hi, p, off)| (lo - base, hi - base, p, off))
        .collect()
}

/// Does a mapping of this process mention `needle` (a file name)?
pub fn mapped_here(needle: &str) -> bool {
    self_maps().lines().any(|l| l.contains(needle))
}

/// The distinct files mapped in this process whose path contains `needle`.
pub fn files_mapped_here(needle: &str) -> std::collections::BTreeSet<String> {
    self_maps()
        .lines()
        .filter(|l| l.contains(needle))
        .filter_map(|l| l.split_whitespace().nth(5).map(str::to_string))
        .collect()
}

/// An LD_PRELOAD value: `first`, then libdynload.so.
pub fn preload_with_dynload(first: &str) -> String {
    format!("{first} {}", libdynload().display())
}

/// Run `script` under glibc with `first` preloaded, and under dynload with
/// `first` preloaded before libdynload.so (glibc's run first).
pub fn runs_with_preload(set: &Set, script: &[&str], first: &str) -> (Run, Run) {
    let g = run_driver(set, script, Loader::Glibc, &[("LD_PRELOAD", first)]);
    let both = preload_with_dynload(first);
    let d = run_driver(set, script, Loader::Dynload, &[("LD_PRELOAD", &both)]);
    (g, d)
}

/// How a child run with a time limit ended ([`run_bounded`]).
#[derive(Debug)]
pub struct Bounded {
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
    /// Its exit status, or None if it was still running at the time limit
    /// (it was then killed).
    pub status: Option<std::process::ExitStatus>,
}

impl Bounded {
    /// Did it end by exiting (any status), not by a signal or the limit?
    pub fn exited(&self) -> bool {
        self.status.is_some_and(|s| s.code().is_some())
    }

    /// How it ended, in words: `exit N`, `signal N (SIGxxx)` or `hung`.
    pub fn how(&self) -> String {
        use std::os::unix::process::ExitStatusExt;
        match self.status {
            None => "hung (killed at the time limit)".into(),
            Some(s) => match (s.code(), s.signal()) {
                (Some(c), _) => format!("exit {c}"),
                (None, Some(sig)) => format!("signal {sig} ({})", signal_name(sig)),
                _ => format!("{s}"),
            },
        }
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        15 => "SIGTERM",
        31 => "SIGSYS",
        _ => "other",
    }
}

/// Run `cmd` (standard input closed, output collected) for at most
/// `limit`: a child still running then is killed with SIGKILL and reported
/// with no status. For children that might hang (a deadlock, a loop over
/// damaged tables) where the test must fail rather than wait forever.
pub fn run_bounded(cmd: &mut Command, limit: std::time::Duration) -> Bounded {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    // Read both pipes while waiting, so that a talkative child cannot block.
    let reader = |mut p: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = p.read_to_end(&mut v);
            String::from_utf8_lossy(&v).into_owned()
        })
    };
    let out = reader(Box::new(child.stdout.take().unwrap()));
    let err = reader(Box::new(child.stderr.take().unwrap()));
    let start = std::time::Instant::now();
    let mut nap = std::time::Duration::from_micros(200);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for the child") {
            break Some(s);
        }
        if start.elapsed() >= limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(std::time::Duration::from_millis(20));
    };
    Bounded {
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        status,
    }
}

/// The result of one driver run.
#[derive(Debug)]
pub struct Run {
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
    /// DYNLOAD_DEBUG=files output (dynload runs only).
    pub debug: String,
}

/// Run the driver on `script` (lines expanded by `set`), asserting that it
/// succeeds.
pub fn run_driver(set: &Set, script: &[&str], loader: Loader, env: &[(&str, &str)]) -> Run {
    let (run, status) = run_driver_status(set, script, loader, env);
    assert!(
        status.success(),
        "driver ({loader:?}) failed with {status}:\nscript: {script:?}\nstdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    run
}

/// Run the driver on `script` and return its output and exit status,
/// whatever they are (for scenarios where the process is meant to die).
pub fn run_driver_status(
    set: &Set,
    script: &[&str],
    loader: Loader,
    env: &[(&str, &str)],
) -> (Run, std::process::ExitStatus) {
    let mut args: Vec<String> = script.iter().map(|l| set.expand(l)).collect();
    // Under dynload, a last command shows that libdynload.so really is in
    // the process (its line is checked and removed below): otherwise a
    // comparison with glibc would compare glibc with itself.
    const PRESENT: &str = "iterate: libdynload.so\n";
    if loader == Loader::Dynload {
        args.push("iterate /libdynload.so".into());
    }
    let mut cmd = Command::new(driver());
    // cargo gives test processes an LD_LIBRARY_PATH of its own; the driver
    // runs with only what the scenario sets.
    cmd.args(&args)
        .current_dir(&set.dir)
        .env_remove("LD_LIBRARY_PATH");
    let debug_file = set.dir.join(format!("debug-{}", std::process::id()));
    if loader == Loader::Dynload {
        cmd.env("LD_PRELOAD", libdynload());
        cmd.env("DYNLOAD_DEBUG", "files");
        cmd.env("DYNLOAD_DEBUG_OUTPUT", &debug_file);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run driver");
    let debug = if loader == Loader::Dynload {
        read_debug_files(&set.dir, &format!("debug-{}", std::process::id()))
    } else {
        String::new()
    };
    let mut stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if loader == Loader::Dynload && out.status.success() {
        // The last line of the script, though destructors that run at exit
        // may print after it.
        let at = stdout.rfind(PRESENT).unwrap_or_else(|| {
            panic!("libdynload.so is not in the driver's process:\n{stdout}\n{stderr}")
        });
        stdout.replace_range(at..at + PRESENT.len(), "");
    }
    (
        Run {
            stdout,
            stderr,
            debug,
        },
        out.status,
    )
}

/// The debug output written to `dir/<stem>.<pid>` files
/// (DYNLOAD_DEBUG_OUTPUT=dir/stem), read and removed.
pub fn read_debug_files(dir: &Path, stem: &str) -> String {
    let mut text = String::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{stem}."))
            {
                text.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    text
}

/// Run `script` under glibc and under dynload, assert the outputs are
/// identical, and return them (glibc's run first).
pub fn compare(set: &Set, script: &[&str]) -> (Run, Run) {
    compare_env(set, script, &[])
}

/// [`compare`] with extra environment variables.
pub fn compare_env(set: &Set, script: &[&str], env: &[(&str, &str)]) -> (Run, Run) {
    let g = run_driver(set, script, Loader::Glibc, env);
    let d = run_driver(set, script, Loader::Dynload, env);
    assert_eq!(
        g.stdout, d.stdout,
        "glibc and dynload disagree on {script:?}\n--- glibc\n{}\n--- dynload\n{}\n--- dynload stderr\n{}",
        g.stdout, d.stdout, d.stderr
    );
    (g, d)
}

/// Did dynload (not glibc) map the object whose path contains `needle`?
/// (DYNLOAD_DEBUG=files names every object dynload maps.)
pub fn dynload_mapped(run: &Run, needle: &str) -> bool {
    mapped_in(&run.debug, needle)
}

/// Does DYNLOAD_DEBUG=files output `debug` show dynload mapping an object
/// whose path contains `needle`?
pub fn mapped_in(debug: &str, needle: &str) -> bool {
    debug
        .lines()
        .any(|l| l.contains("generating link map") && l.contains(needle))
}

/// Removes the cache-only test library (and refreshes the cache) on drop.
pub struct CacheCleanup(Option<PathBuf>);

impl Drop for CacheCleanup {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(&p);
            let _ = Command::new("ldconfig").status();
        }
    }
}

/// A library name that only /etc/ld.so.cache can find (it is in none of the
/// default directories): one this test installs into /usr/local/lib (listed
/// in Debian's ld.so.conf) and registers with `ldconfig` when running as
/// root, as CI does. It exports `id_cached`.
pub fn cache_only_library() -> (String, CacheCleanup) {
    require_root("installs a library into /usr/local/lib and runs ldconfig");
    let name = format!("libdynload_cachetest_{}.so.1", std::process::id());
    let dir = PathBuf::from("/usr/local/lib");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(&name);
    run(Command::new("gcc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&path)
        .arg(fixtures_src().join("cached.c"))
        .arg(format!("-Wl,-soname,{name}")));
    let cleanup = CacheCleanup(Some(path));
    run(&mut Command::new("ldconfig"));
    (name, cleanup)
}

/// Fail the test unless it runs as root (CI does); `what` says why it must.
pub fn require_root(what: &str) {
    // SAFETY: geteuid has no preconditions.
    let root_user = unsafe { geteuid() } == 0;
    assert!(root_user, "this test {what}: run it as root (CI does)");
}

extern "C" {
    fn geteuid() -> u32;
}
