//! The loader scenarios of the test suite, defined once and run three ways:
//! with glibc's dlopen, through dynload's C ABI (LD_PRELOAD), and through
//! dynload's Rust API. Each builds its own fixture set, named after the
//! runner (`prefix`) so that runs never share files.
//!
//! Scripts use the driver's commands (see `fixtures/driver.c`); `$x` is
//! object x's path and `@x` its file name. `expect` lists what glibc's own
//! output must contain, so a scenario also checks that it tests what it
//! says.

use crate::{dynamic_section, dynamic_symbols, relocations, Lib, Set};

/// One scenario: its objects, its script, and what glibc's run shows.
pub struct Scenario {
    pub set: Set,
    pub script: Vec<String>,
    pub expect: Vec<String>,
    /// Extra environment for the process (runs that need it are children).
    pub env: Vec<(String, String)>,
}

impl Scenario {
    fn new(set: Set, script: &[&str], expect: &[&str]) -> Scenario {
        Scenario {
            set,
            script: script.iter().map(|s| s.to_string()).collect(),
            expect: expect.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
        }
    }

    pub fn script(&self) -> Vec<&str> {
        self.script.iter().map(String::as_str).collect()
    }

    /// The extra environment, as `run_driver` takes it.
    pub fn env_refs(&self) -> Vec<(&str, &str)> {
        self.env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    /// Check glibc's output against the scenario's expectations.
    pub fn check(&self, glibc_output: &str) {
        for e in &self.expect {
            let e = self.set.expand_text(e);
            assert!(
                glibc_output.contains(&e),
                "expected {e:?} in glibc's output:\n{glibc_output}"
            );
        }
    }
}

/// Calls macro `$m` with the names of every scenario, so that each test
/// suite makes one test per scenario from this single list.
#[macro_export]
macro_rules! with_scenarios {
    ($m:ident) => {
        $m!(
            chain,
            held_dependency,
            relocation_dependency,
            diamond,
            cycle,
            reopen_dependency,
            global_before_local,
            deepbind,
            symbolic,
            protected,
            local_isolation,
            promotion,
            main_handle,
            handle_scope,
            noload,
            refcount,
            nodelete,
            nodelete_later,
            df_1_nodelete,
            invalid_modes,
            same_file,
            versions,
            ifunc,
            relr,
            missing_dependency,
            undefined_symbol,
            missing_version,
            origin_runpath,
            origin_rpath,
            runpath_not_inherited,
            plugin_runpath,
            ld_library_path,
            ld_library_path_vs_rpath,
            dladdr,
            nodeflib,
            sysv_hash,
            weak_references,
            constructor_arguments,
            constructor_reenters_the_loader,
            damaged_headers,
            unloadable_kinds,
            c_runtime_dependency,
            lazy_arguments,
            lazy_vector_arguments,
            lazy_threads,
            lazy_undefined_function,
            lazy_versions_and_ifunc,
            register_preservation,
            tls_models,
            tls_threads_before_dlopen,
            tls_undefined_weak,
            tls_cxx_thread_local,
            unique_symbols,
            unique_symbols_after_a_failed_load,
            symbol_kinds,
            global_scope_filter,
            global_scope_filter_refined,
            lazy_calls_and_the_global_scope_filter,
            unique_symbols_from_another_object,
            own_names_with_the_same_hash,
            definers_that_change,
            fast_lane_refusals,
        );
    };
}

/// Rewrite the object file at `path` with `f`.
fn damage_file(path: &str, f: &dyn Fn(&mut Vec<u8>)) {
    let mut bytes = std::fs::read(path).unwrap();
    f(&mut bytes);
    std::fs::write(path, bytes).unwrap();
}

fn set(prefix: &str, name: &str, libs: &[Lib]) -> Set {
    Set::build(&format!("{prefix}-{name}"), libs)
}

/// a needs b, which needs c; `which()` returns 1, 2 and 3.
fn chain_a_b_c() -> [Lib; 3] {
    [
        Lib::node("c", 3),
        Lib::node("b", 2).dep("c"),
        Lib::node("a", 1).dep("b"),
    ]
}

pub fn chain(p: &str) -> Scenario {
    let s = set(p, "chain", &chain_a_b_c());
    Scenario::new(
        s,
        &[
            "open $log NOW",
            "open $a NOW",
            "log h1",
            "close h2",
            "log h1",
            "maps @a",
            "maps @c",
        ],
        &["log: ctor c,ctor b,ctor a,dtor a,dtor b,dtor c\nmaps @a: 0\nmaps @c: 0"],
    )
}

/// With b held by its own handle, closing a runs only a's destructor (the
/// objects share no symbols, so no relocation dependency keeps a).
pub fn held_dependency(p: &str) -> Scenario {
    let s = set(
        p,
        "held",
        &[
            Lib::plain("c"),
            Lib::plain("b").dep("c"),
            Lib::plain("a").dep("b"),
        ],
    );
    Scenario::new(
        s,
        &[
            "open $log NOW",
            "open $a NOW",
            "open $b NOW",
            "close h2",
            "log h1",
            "close h3",
            "log h1",
        ],
        &[
            "log: ctor c,ctor b,ctor a,dtor a\n",
            "dtor a,dtor b,dtor c\n",
        ],
    )
}

/// b and c bind `which` to a (first in a's search list): closing a while b
/// is held keeps a loaded.
pub fn relocation_dependency(p: &str) -> Scenario {
    let s = set(p, "reldep", &chain_a_b_c());
    Scenario::new(
        s,
        &[
            "open $log NOW",
            "open $a NOW",
            "open $b NOW",
            "close h2",
            "log h1",
            "maps @a",
            "close h3",
            "log h1",
            "maps @a",
        ],
        &[
            "log: ctor c,ctor b,ctor a\nmaps @a: 1",
            "dtor a,dtor b,dtor c\nmaps @a: 0\n",
        ],
    )
}

pub fn diamond(p: &str) -> Scenario {
    let s = set(
        p,
        "diamond",
        &[
            Lib::node("bottom", 4),
            Lib::node("right", 3).dep("bottom"),
            Lib::node("left", 2).dep("bottom"),
            Lib::node("top", 1).dep("left").dep("right"),
        ],
    );
    Scenario::new(
        s,
        &[
            "open $log NOW",
            "open $top NOW",
            "log h1",
            "close h2",
            "log h1",
        ],
        &[
            "log: ctor bottom,ctor right,ctor left,ctor top\n",
            "dtor top,dtor right,dtor left,dtor bottom",
        ],
    )
}

/// x needs y and y needs x.
pub fn cycle(p: &str) -> Scenario {
    let s = set(p, "cycle", &[Lib::node("y", 2), Lib::node("x", 1).dep("y")]);
    s.compile(&Lib::node("y", 2).dep("x"));
    Scenario::new(
        s,
        &[
            "open $log NOW",
            "open $x NOW",
            "log h1",
            "close h2",
            "log h1",
            "open $y NOW",
            "log h1",
            "close h3",
            "log h1",
        ],
        &["log: ctor y,ctor x\n", "ctor x,ctor y,dtor x,dtor y\n"],
    )
}

/// dlopen of an object loaded as a dependency runs nothing again.
pub fn reopen_dependency(p: &str) -> Scenario {
    let s = set(
        p,
        "depopen",
        &[Lib::node("b", 2), Lib::node("a", 1).dep("b")],
    );
    Scenario::new(
        s,
        &[
            "open $log NOW",
            "open $a NOW",
            "open $b NOW",
            "log h1",
            "close h2",
            "log h1",
            "close h3",
            "log h1",
        ],
        &["log: ctor b,ctor a\n"],
    )
}

/// g (global) and x (local) both define `which`; x's own reference binds
/// to g's, because the global scope is searched first.
pub fn global_before_local(p: &str) -> Scenario {
    let s = set(p, "order", &[Lib::node("g", 100), Lib::node("x", 1)]);
    Scenario::new(
        s,
        &[
            "open $g NOW|GLOBAL",
            "open $x NOW",
            "call h2 call_which_x",
            "call h2 read_data_x",
            "call h2 which",
            "call DEFAULT which",
        ],
        &["call call_which_x: 100\ncall read_data_x: 100\ncall which: 1\ncall which: 100"],
    )
}

pub fn deepbind(p: &str) -> Scenario {
    let s = set(p, "deep", &[Lib::node("g", 100), Lib::node("x", 1)]);
    Scenario::new(
        s,
        &[
            "open $g NOW|GLOBAL",
            "open $x NOW|DEEPBIND",
            "call h2 call_which_x",
            "call h2 read_data_x",
        ],
        &["call call_which_x: 1\ncall read_data_x: 1"],
    )
}

pub fn symbolic(p: &str) -> Scenario {
    let s = set(
        p,
        "symbolic",
        &[
            Lib::node("g", 100),
            Lib::node("s", 1).flag("-Wl,-Bsymbolic"),
        ],
    );
    Scenario::new(
        s,
        &[
            "open $g NOW|GLOBAL",
            "open $s NOW",
            "call h2 call_which_s",
            "call h2 read_data_s",
        ],
        &["call call_which_s: 1\ncall read_data_s: 1"],
    )
}

pub fn protected(p: &str) -> Scenario {
    let s = set(
        p,
        "protected",
        &[Lib::node("g", 100), Lib::src("p", "protected.c")],
    );
    Scenario::new(
        s,
        &[
            "open $g NOW|GLOBAL",
            "open $p NOW",
            "call h2 call_which_p",
            "call h2 read_data_p",
            "call h2 which",
        ],
        &["call call_which_p: 7\ncall read_data_p: 7"],
    )
}

/// a is RTLD_LOCAL: neither the main program nor a later object sees its
/// symbols, until a is promoted to global.
pub fn local_isolation(p: &str) -> Scenario {
    let s = set(p, "local", &[Lib::node("a", 1), Lib::src("u", "uses_a.c")]);
    Scenario::new(
        s,
        &[
            "open $a NOW",
            "call DEFAULT id_a",
            "open $u NOW",
            "open $a NOW|NOLOAD|GLOBAL",
            "open $u NOW",
            "call h2 call_id_a",
            "close h2",
            "close h1",
            "close h1",
            "maps @a",
        ],
        &[
            "call id_a: NULL (",
            "open @u: NULL ($u: undefined symbol: id_a)",
            "call call_id_a: 1",
            "close h1: 0\nmaps @a: 0",
        ],
    )
}

/// A later RTLD_GLOBAL open promotes without re-running constructors.
pub fn promotion(p: &str) -> Scenario {
    let s = set(p, "promote", &[Lib::node("a", 1)]);
    Scenario::new(
        s,
        &[
            "open $log NOW",
            "open $a NOW",
            "call DEFAULT id_a",
            "open $a NOW|GLOBAL",
            "call DEFAULT id_a",
            "log h1",
        ],
        &["call id_a: 1\nlog: ctor a\n"],
    )
}

/// dlopen(NULL) searches the global scope, including later RTLD_GLOBAL
/// objects.
pub fn main_handle(p: &str) -> Scenario {
    let s = set(p, "mainhandle", &[Lib::node("a", 1)]);
    Scenario::new(
        s,
        &[
            "open NULL NOW",
            "call h1 id_a",
            "open $a NOW|GLOBAL",
            "call h1 id_a",
            "call h1 strlen_missing",
            "sym h1 getpid",
            "open NULL LAZY|GLOBAL",
            "close h1",
            "close h1",
        ],
        &[
            "call id_a: 1",
            "undefined symbol: strlen_missing",
            "sym getpid: found",
        ],
    )
}

/// A handle lookup searches only the object and its dependencies.
pub fn handle_scope(p: &str) -> Scenario {
    let s = set(
        p,
        "handle",
        &[
            Lib::node("b", 2),
            Lib::node("a", 1).dep("b"),
            Lib::node("c", 3),
        ],
    );
    Scenario::new(
        s,
        &[
            "open $a NOW",
            "open $c NOW",
            "call h1 id_b",
            "call h1 id_c",
            "call h1 which",
            "call h2 which",
            "sym h1 malloc",
            "same h1 h2 malloc",
        ],
        &[
            "call id_b: 2\ncall id_c: NULL ($a: undefined symbol: id_c)",
            "call which: 1\ncall which: 3",
            "same malloc: yes",
        ],
    )
}

pub fn noload(p: &str) -> Scenario {
    let s = set(p, "noload", &[Lib::node("a", 1)]);
    Scenario::new(
        s,
        &["open $a NOW|NOLOAD", "maps @a", "open $a NOW", "open $a NOW|NOLOAD", "open @a NOW|NOLOAD", "close h1", "close h1", "maps @a", "open $a LAZY|NOLOAD|NODELETE"],
        // A bare name is searched for even with RTLD_NOLOAD, and this one is
        // in no search directory.
        &[
            "open @a: NULL (no error)\nmaps @a: 0\n",
            "open @a: h1\nopen @a: h1\nopen @a: NULL (@a: cannot open shared object file: No such file or directory)",
            "maps @a: 0\nopen @a: NULL (no error)",
        ],
    )
}

pub fn refcount(p: &str) -> Scenario {
    let s = set(
        p,
        "refcount",
        &[Lib::node("b", 2), Lib::node("a", 1).dep("b")],
    );
    Scenario::new(
        s,
        &["open $log NOW", "open $a NOW", "open $a LAZY", "close h2", "maps @a", "maps @b", "close h2", "maps @a", "maps @b", "log h1"],
        &["maps @a: 1\nmaps @b: 1\nclose h2: 0\nmaps @a: 0\nmaps @b: 0\nlog: ctor b,ctor a,dtor a,dtor b"],
    )
}

pub fn nodelete(p: &str) -> Scenario {
    let s = set(p, "nodelete", &[Lib::node("a", 1)]);
    Scenario::new(
        s,
        &[
            "open $log NOW",
            "open $a NOW|NODELETE",
            "close h2",
            "maps @a",
            "open $a NOW|NOLOAD",
            "log h1",
        ],
        &["maps @a: 1\nopen @a: h3", "log: ctor a\n"],
    )
}

pub fn nodelete_later(p: &str) -> Scenario {
    let s = set(p, "nodelete2", &[Lib::node("a", 1)]);
    Scenario::new(
        s,
        &[
            "open $a NOW",
            "open $a NOW|NOLOAD|NODELETE",
            "close h1",
            "close h1",
            "maps @a",
        ],
        &["maps @a: 1\n"],
    )
}

pub fn df_1_nodelete(p: &str) -> Scenario {
    let s = set(
        p,
        "dfnodelete",
        &[Lib::node("a", 1).flag("-Wl,-z,nodelete")],
    );
    Scenario::new(
        s,
        &["open $a NOW", "close h1", "maps @a", "open $a NOW|NOLOAD"],
        &["maps @a: 1\nopen @a: h"],
    )
}

pub fn invalid_modes(p: &str) -> Scenario {
    let s = set(p, "modes", &[Lib::node("a", 1)]);
    Scenario::new(
        s,
        &[
            "open $a 0",
            "open $a GLOBAL",
            "open $a NOW|0x40000",
            "maps @a",
        ],
        &[
            "open @a: NULL ($a: invalid mode for dlopen(): Invalid argument)",
            "NULL (invalid mode parameter)",
            "maps @a: 0",
        ],
    )
}

/// By name, through a symlink (device and inode), by path again.
pub fn same_file(p: &str) -> Scenario {
    let s = set(p, "samefile", &[Lib::node("a", 1)]);
    std::os::unix::fs::symlink(s.path("a"), s.dir.join("alias.so")).unwrap();
    Scenario::new(
        s,
        &[
            "open $a NOW",
            "open {dir}/alias.so NOW",
            "open $a NOW",
            "close h1",
            "close h1",
            "maps @a",
            "close h1",
            "maps @a",
        ],
        &[
            "open @a: h1\nopen alias.so: h1\nopen @a: h1\n",
            "maps @a: 1\nclose h1: 0\nmaps @a: 0\n",
        ],
    )
}

/// The versioned library (f@V1 hidden, f@@V2, g@V1), an old build of it
/// with only f@@V1 in `old/`, and consumers linked against the old (c1)
/// and the current one (c2).
fn version_consumers(p: &str, name: &str) -> Set {
    let s = set(p, name, &[Lib::versioned("current")]);
    s.compile(&Lib::versioned("old"));
    s.compile(
        &Lib::src("c1", "use_f.c")
            .flag("-L{dir}/old")
            .dep("ver")
            .no_log(),
    );
    s.compile(&Lib::src("c2", "use_f.c").dep("ver").no_log());
    s
}

/// f@V1 (hidden) and f@@V2 in one library; consumers linked against each;
/// a consumer requiring a version that does not exist.
pub fn versions(p: &str) -> Scenario {
    let s = version_consumers(p, "ver");
    s.compile(&Lib::versioned("future"));
    s.compile(
        &Lib::src("c3", "use_f.c")
            .flag("-L{dir}/future")
            .dep("ver")
            .no_log(),
    );
    Scenario::new(
        s,
        &[
            "open $c1 NOW",
            "call h1 use_f",
            "open $c2 NOW",
            "call h2 use_f",
            "open $c3 NOW",
            "maps @c3",
            "open $ver NOW",
            "call h3 f",
            "vcall h3 f V1",
            "vcall h3 f V2",
            "vcall h3 f V3",
            "vcall h3 g V1",
            "vcall h3 g V2",
            "call DEFAULT f",
        ],
        &[
            "call use_f: 1\nopen @c2: h2\ncall use_f: 2\n",
            "open @c3: NULL ({dir}/@ver: version `V3' not found (required by $c3))\nmaps @c3: 0",
            "call f: 2\nvcall f: 1\nvcall f: 2\nvcall f: NULL ($ver: undefined symbol: f, version V3)",
            "vcall g: 7\nvcall g: NULL ($ver: undefined symbol: g, version V2)",
        ],
    )
}

pub fn ifunc(p: &str) -> Scenario {
    let s = set(p, "ifunc", &[Lib::src("i", "ifunc.c")]);
    Scenario::new(
        s,
        &["open $i NOW", "call h1 call_pick", "call h1 pick", "call h1 memcpy_works", "call h1 memcpy_matches_dlsym", "call h1 strlen_works", "same h1 DEFAULT memcpy"],
        &["call call_pick: 11\ncall pick: 11\ncall memcpy_works: 1\ncall memcpy_matches_dlsym: 1\ncall strlen_works: 7\nsame memcpy: yes"],
    )
}

pub fn relr(p: &str) -> Scenario {
    let s = set(
        p,
        "relr",
        &[Lib::src("r", "relr.c").flag("-Wl,-z,pack-relative-relocs")],
    );
    assert!(
        dynamic_section(s.path("r")).contains("(RELR)"),
        "the fixture must use DT_RELR"
    );
    Scenario::new(
        s,
        &["open $r NOW", "call h1 relr_ok", "close h1", "maps @r"],
        &["call relr_ok: 1\nclose h1: 0\nmaps @r: 0"],
    )
}

/// A dependency that is missing: nothing stays, and an object that was
/// already open keeps exactly its count.
pub fn missing_dependency(p: &str) -> Scenario {
    let s = set(
        p,
        "missing",
        &[
            Lib::node("dep", 1),
            Lib::node("gone", 2),
            Lib::node("top", 3).dep("dep").dep("gone"),
        ],
    );
    std::fs::remove_file(s.path("gone")).unwrap();
    Scenario::new(
        s,
        &[
            "open $log NOW",
            "open $top NOW",
            "maps @top",
            "maps @dep",
            "log h1",
            "open $dep NOW",
            "open $top NOW",
            "close h2",
            "maps @dep",
            "log h1",
        ],
        &[
            "open @top: NULL (@gone: cannot open shared object file: No such file or directory)",
            "maps @top: 0\nmaps @dep: 0\nlog: \n",
            "close h2: 0\nmaps @dep: 0\nlog: ctor dep,dtor dep\n",
        ],
    )
}

pub fn undefined_symbol(p: &str) -> Scenario {
    let s = set(
        p,
        "undef",
        &[Lib::node("dep", 1), Lib::src("u", "undef.c").dep("dep")],
    );
    Scenario::new(
        s,
        &["open $log NOW", "open $u NOW", "maps @u", "maps @dep", "log h1", "open $dep NOW", "log h1"],
        &["open @u: NULL ($u: undefined symbol: missing_function)\nmaps @u: 0\nmaps @dep: 0\nlog: \n", "log: ctor dep\n"],
    )
}

pub fn missing_version(p: &str) -> Scenario {
    let s = set(p, "vermiss", &[Lib::versioned("current")]);
    s.compile(&Lib::versioned("future"));
    s.compile(&Lib::src("c", "use_f.c").flag("-L{dir}/future").dep("ver"));
    Scenario::new(
        s,
        &["open $c NOW", "maps @ver", "maps @c"],
        &[
            ": version `V3' not found (required by $c)",
            "maps @ver: 0\nmaps @c: 0",
        ],
    )
}

pub fn origin_runpath(p: &str) -> Scenario {
    let s = set(
        p,
        "runpath",
        &[
            Lib::node("osub", 5).subdir("sub").no_log(),
            Lib::node("o", 1)
                .no_runpath()
                .no_log()
                .flag("-Wl,-rpath,$ORIGIN/sub")
                .dep("osub"),
        ],
    );
    Scenario::new(s, &["open $o NOW", "call h1 id_osub"], &["call id_osub: 5"])
}

/// r's DT_RPATH finds rsub, and also rsub's own dependency rsub2.
pub fn origin_rpath(p: &str) -> Scenario {
    let s = set(
        p,
        "rpath",
        &[
            Lib::node("rsub2", 7).subdir("other").no_runpath().no_log(),
            Lib::node("rsub", 6)
                .subdir("other")
                .no_runpath()
                .no_log()
                .dep("rsub2"),
            Lib::node("r", 1)
                .no_runpath()
                .no_log()
                .flag("-Wl,--disable-new-dtags,-rpath,$ORIGIN/other")
                .dep("rsub"),
        ],
    );
    Scenario::new(
        s,
        &["open $r NOW", "call h1 id_rsub2"],
        &["call id_rsub2: 7"],
    )
}

pub fn runpath_not_inherited(p: &str) -> Scenario {
    let s = set(
        p,
        "noinherit",
        &[
            Lib::node("nsub2", 7).subdir("sub").no_runpath().no_log(),
            Lib::node("nsub", 6)
                .subdir("sub")
                .no_runpath()
                .no_log()
                .dep("nsub2"),
            Lib::node("n", 1)
                .no_runpath()
                .no_log()
                .flag("-Wl,-rpath,$ORIGIN/sub")
                .dep("nsub"),
        ],
    );
    Scenario::new(s, &["open $n NOW", "maps @nsub"], &["NULL (@nsub2: cannot open shared object file: No such file or directory)\nmaps @nsub: 0"])
}

/// dlopen by bare name from inside an object uses that object's RUNPATH.
pub fn plugin_runpath(p: &str) -> Scenario {
    let s = set(
        p,
        "plugin",
        &[Lib::node("plugin", 42).subdir("plugins").no_log()],
    );
    let plugin = format!("\"{}\"", s.file("plugin"));
    s.compile(
        &Lib::src("opener", "opener.c")
            .no_runpath()
            .no_log()
            .flag("-Wl,-rpath,$ORIGIN/plugins")
            .define("PLUGIN", &plugin),
    );
    Scenario::new(
        s,
        &[
            "open @plugin NOW",
            "open $opener NOW",
            "call h1 open_plugin",
            "call h1 plugin_which",
            "call h1 next_which",
            "call h1 iterate_sees_self",
            "call h1 dladdr_knows_self",
        ],
        &[
            "open @plugin: NULL (@plugin: cannot open shared object file: No such file or directory)",
            "call open_plugin: 1\ncall plugin_which: 42",
            "call iterate_sees_self: 1\ncall dladdr_knows_self: 1",
        ],
    )
}

/// twin exists in sub/ (10) and other/ (20); p finds it through its RUNPATH
/// (sub) unless LD_LIBRARY_PATH (other) comes first.
pub fn ld_library_path(p: &str) -> Scenario {
    let s = twins(p, "ldpath");
    let other = s.dir.join("other").to_string_lossy().into_owned();
    let mut sc = Scenario::new(
        s,
        &["open $p NOW", "call h1 id_twin", "open @q NOW"],
        &["call id_twin: 20"],
    );
    sc.env
        .push(("LD_LIBRARY_PATH".into(), format!("/nonexistent;{other}::")));
    sc
}

/// q's DT_RPATH (sub) comes before LD_LIBRARY_PATH (other).
pub fn ld_library_path_vs_rpath(p: &str) -> Scenario {
    let s = twins(p, "ldrpath");
    let other = s.dir.join("other").to_string_lossy().into_owned();
    let mut sc = Scenario::new(
        s,
        &["open $q NOW", "call h1 id_twin"],
        &["call id_twin: 10"],
    );
    sc.env.push(("LD_LIBRARY_PATH".into(), other));
    sc
}

fn twins(p: &str, name: &str) -> Set {
    set(
        p,
        name,
        &[
            Lib::node("twin", 10).subdir("sub").no_runpath().no_log(),
            Lib::node("twin", 20).subdir("other").no_runpath().no_log(),
            Lib::node("p", 1)
                .no_runpath()
                .no_log()
                .flag("-Wl,-rpath,$ORIGIN/sub")
                .flag("-L{dir}/sub")
                .dep("twin"),
            Lib::node("q", 2)
                .no_runpath()
                .no_log()
                .flag("-Wl,--disable-new-dtags,-rpath,$ORIGIN/sub")
                .flag("-L{dir}/sub")
                .dep("twin"),
        ],
    )
}

/// dladdr of dynload's objects: the nearest symbol, exact and inside.
pub fn dladdr(p: &str) -> Scenario {
    let s = set(p, "dladdr", &[Lib::node("a", 1)]);
    Scenario::new(
        s,
        &[
            "open $a NOW",
            "addr h1 id_a",
            "addr h1 which 2",
            "addr h1 shared_data",
            "addr DEFAULT printf",
            "addr DEFAULT printf 3",
        ],
        &[
            "addr id_a: @a id_a exact",
            "addr which: @a which exact",
            "addr shared_data: @a shared_data exact",
            "addr printf: libc.so.6 ",
        ],
    )
}

/// DF_1_NODEFLIB: neither ld.so.cache entries in system directories nor
/// the default directories are searched for this object's dependencies.
pub fn nodeflib(p: &str) -> Scenario {
    let s = set(
        p,
        "nodeflib",
        &[Lib::node("n", 1)
            .no_log()
            .flag("-Wl,-z,nodefaultlib")
            .flag("-lz")],
    );
    Scenario::new(
        s,
        &["open $n NOW", "maps @n"],
        &["open @n: NULL (libz.so.1: cannot open shared object file: No such file or directory)\nmaps @n: 0"],
    )
}

/// An object with only a SysV DT_HASH table (no DT_GNU_HASH).
pub fn sysv_hash(p: &str) -> Scenario {
    let s = set(
        p,
        "sysv",
        &[
            Lib::node("b", 2).flag("-Wl,--hash-style=sysv"),
            Lib::node("a", 1).dep("b").flag("-Wl,--hash-style=sysv"),
        ],
    );
    Scenario::new(
        s,
        &[
            "open $a NOW",
            "call h1 id_a",
            "call h1 id_b",
            "call h1 call_which_a",
            "call h1 no_such_symbol",
        ],
        &["call id_a: 1\ncall id_b: 2\ncall call_which_a: 1\ncall no_such_symbol: NULL ("],
    )
}

/// An object's references to names it defines itself, two of them with
/// the same GNU hash: each binds to its own definition, or to an earlier
/// global object's (`same_BA` and `same_data_BA` in `inter`, which has a
/// SysV hash table only, so that the walk reads the name there), through
/// the PLT (`RTLD_NOW` and `RTLD_LAZY`) and the GOT.
pub fn own_names_with_the_same_hash(p: &str) -> Scenario {
    let own = |name| Lib::src(name, "same_hash_own.c").no_log();
    let s = set(
        p,
        "samehash",
        &[
            own("own"),
            own("own_now"),
            own("own_lazy"),
            own("inter")
                .define("INTERPOSE", "1")
                .flag("-Wl,--hash-style=sysv"),
        ],
    );
    let relocations = relocations(s.path("own"));
    for name in ["same_Ab", "same_BA", "same_data_Ab", "same_data_BA"] {
        assert!(relocations.contains(name), "{name}: {relocations}");
    }
    let tables = dynamic_section(s.path("inter"));
    assert!(
        tables.contains("(HASH)") && !tables.contains("GNU_HASH"),
        "{tables}"
    );
    Scenario::new(
        s,
        &[
            "open $own NOW",
            "call h1 calls_same",
            "call h1 reads_same",
            "open $inter NOW|GLOBAL",
            "open $own_now NOW",
            "call h3 calls_same",
            "call h3 reads_same",
            "open $own_lazy LAZY",
            "call h4 calls_same",
            "call h4 reads_same",
        ],
        &["call calls_same: 12
call reads_same: 34
open @inter: h2
open @own_now: h3
call calls_same: 30
call reads_same: 70
open @own_lazy: h4
call calls_same: 30
call reads_same: 70"],
    )
}

/// An undefined weak reference is 0; a weak definition is used.
pub fn weak_references(p: &str) -> Scenario {
    let s = set(p, "weak", &[Lib::src("w", "weak.c")]);
    Scenario::new(
        s,
        &["open $w NOW", "call h1 weak_is_null", "call h1 call_weak"],
        &["call weak_is_null: 1\ncall call_weak: 4"],
    )
}

/// Constructors are called with the program's (argc, argv, envp).
pub fn constructor_arguments(p: &str) -> Scenario {
    let s = set(p, "ctorargs", &[Lib::src("c", "ctor_args.c")]);
    Scenario::new(
        s,
        &[
            "open $c NOW",
            "call h1 ctor_argc_ok",
            "call h1 ctor_argv_ok",
            "call h1 ctor_env_ok",
        ],
        &["call ctor_argc_ok: 1\ncall ctor_argv_ok: 1\ncall ctor_env_ok: 1"],
    )
}

/// A constructor that dlopens and dlsyms (no deadlock), and does not see
/// its own object in the global scope yet, even when opened RTLD_GLOBAL.
pub fn constructor_reenters_the_loader(p: &str) -> Scenario {
    let s = set(p, "ctorreenter", &[Lib::src("inner", "probe.c").no_log()]);
    let inner = format!("\"{}\"", s.path("inner"));
    s.compile(&Lib::src("outer", "ctor_dlopen.c").define("INNER", &inner));
    Scenario::new(
        s,
        &[
            "open $outer NOW|GLOBAL",
            "call h1 ctor_inner_value",
            "call h1 ctor_saw_itself",
            "call DEFAULT self_marker",
            "open $inner NOW|NOLOAD",
            "call h2 probe_marker",
        ],
        &["call ctor_inner_value: 9\ncall ctor_saw_itself: 0\ncall self_marker: 1\nopen @inner: h2\ncall probe_marker: 1"],
    )
}

/// Header damage gets glibc's messages, and nothing stays mapped.
pub fn damaged_headers(p: &str) -> Scenario {
    use crate::damage::{put_u64, variant};
    let s = set(p, "badheader", &[Lib::node("good", 1).no_log()]);
    let good = s.path("good");
    let d = &s.dir;
    variant(&good, d, "truncated", |b| b.truncate(40));
    variant(&good, d, "empty", |b| b.clear());
    variant(&good, d, "magic", |b| b[1] = b'X');
    variant(&good, d, "class32", |b| b[4] = 1);
    variant(&good, d, "bigendian", |b| b[5] = 2);
    variant(&good, d, "machine", |b| {
        b[18..20].copy_from_slice(&3u16.to_le_bytes())
    });
    variant(&good, d, "etype", |b| {
        b[16..18].copy_from_slice(&1u16.to_le_bytes())
    });
    variant(&good, d, "phentsize", |b| {
        b[54..56].copy_from_slice(&32u16.to_le_bytes())
    });
    variant(&good, d, "phoff", |b| put_u64(b, 32, 1 << 30));
    std::fs::write(
        d.join("script.so"),
        "/* GNU ld script\n   Use the shared library, but some functions are only in\n   the static library.  */\nGROUP ( /lib/x86_64-linux-gnu/libc.so.6 )\n",
    )
    .unwrap();
    let names = [
        "truncated",
        "empty",
        "magic",
        "class32",
        "bigendian",
        "machine",
        "etype",
        "phentsize",
        "phoff",
        "script",
    ];
    let mut script: Vec<String> = names
        .iter()
        .map(|n| format!("open {{dir}}/{n}.so NOW"))
        .collect();
    script.extend([
        "maps lib{p}_badheader".replace("{p}", &s.prefix),
        "open $good NOW".into(),
        "call h1 id_good".into(),
    ]);
    let script: Vec<&str> = script.iter().map(String::as_str).collect();
    Scenario::new(
        s,
        &script,
        &[
            "truncated.so: file too short)",
            "empty.so: file too short)",
            "magic.so: invalid ELF header)",
            "class32.so: wrong ELF class: ELFCLASS32)",
            "bigendian.so: ELF file data encoding not little-endian)",
            "machine.so: cannot open shared object file: No such file or directory)",
            "etype.so: only ET_DYN and ET_EXEC can be loaded)",
            "phentsize.so: ELF file's phentsize not the expected size)",
            "phoff.so: cannot read file data)",
            "script.so: invalid ELF header)",
            "_badheader: 0\n",
            "call id_good: 1",
        ],
    )
}

/// Executables, position-independent executables and objects marked
/// `-z nodlopen` are refused with glibc's messages.
pub fn unloadable_kinds(p: &str) -> Scenario {
    let s = set(
        p,
        "exec",
        &[Lib::node("noopen", 1).no_log().flag("-Wl,-z,nodlopen")],
    );
    let main = s.dir.join("main.c");
    std::fs::write(&main, "int main(void) { return 0; }\n").unwrap();
    crate::run(
        std::process::Command::new("gcc")
            .args(["-no-pie", "-o"])
            .arg(s.dir.join("nopie"))
            .arg(&main),
    );
    crate::run(
        std::process::Command::new("gcc")
            .args(["-pie", "-fPIE", "-o"])
            .arg(s.dir.join("pie"))
            .arg(&main),
    );
    Scenario::new(
        s,
        &[
            "open {dir}/nopie NOW",
            "open {dir}/pie NOW",
            "open $noopen NOW",
            "maps @noopen",
        ],
        &[
            "nopie: cannot dynamically load executable)",
            "pie: cannot dynamically load position-independent executable)",
            "open @noopen: NULL ($noopen: shared object cannot be dlopen()ed)\nmaps @noopen: 0",
        ],
    )
}

/// A dependency on a C-runtime library that is not loaded yet (libm): it
/// is loaded by glibc, held while its user is, and released with it, also
/// when its user's load fails; once glibc unloads it, lookups do not see it.
pub fn c_runtime_dependency(p: &str) -> Scenario {
    let s = set(
        p,
        "cruntime",
        &[
            Lib::node("m", 1).no_log().flag("-lm"),
            Lib::node("mbad", 2)
                .no_log()
                .flag("-lm")
                .flag("{src}/undef.c"),
        ],
    );
    Scenario::new(
        s,
        &[
            "maps /libm.so.6",
            "open $m NOW",
            "maps /libm.so.6",
            "open libm.so.6 NOW",
            "sym h2 cos",
            "close h2",
            "maps /libm.so.6",
            "close h1",
            "maps /libm.so.6",
            "open $mbad NOW|GLOBAL",
            "maps /libm.so.6",
            "sym DEFAULT cos",
            "open $m NOW|GLOBAL",
            "close h3",
            "maps /libm.so.6",
            "sym DEFAULT cos",
        ],
        &[
            "maps /libm.so.6: 0\nopen @m: h1\nmaps /libm.so.6: 1\n",
            "close h1: 0\nmaps /libm.so.6: 0\n",
            "open @mbad: NULL ($mbad: undefined symbol: missing_function)\nmaps /libm.so.6: 0\nsym cos: ",
            "open @m: h3\nclose h3: 0\nmaps /libm.so.6: 0\nsym cos: ",
        ],
    )
}

/// Set `name`: lazy_caller.c (`caller`) calling lazy_callee.c (`callee`)
/// through PLT slots with no BIND_NOW anywhere, plus `extra`.
pub fn lazy_objects(name: &str, extra: &[Lib]) -> Set {
    let mut libs = vec![
        Lib::src("callee", "lazy_callee.c").no_log(),
        Lib::src("caller", "lazy_caller.c").no_log().dep("callee"),
    ];
    libs.extend_from_slice(extra);
    let s = Set::build(name, &libs);
    let dynamic = dynamic_section(s.path("caller"));
    assert!(
        dynamic.contains("JMPREL") && !dynamic.contains("NOW"),
        "the caller must have PLT relocations and no BIND_NOW:\n{dynamic}"
    );
    s
}

/// Integer, double and varargs calls (%al carries the vector count)
/// through PLT slots that are still unbound when called.
pub fn lazy_arguments(p: &str) -> Scenario {
    let s = lazy_objects(&format!("{p}-lazyargs"), &[]);
    Scenario::new(
        s,
        &[
            "open $caller LAZY",
            "call h1 check_ints_doubles",
            "call h1 check_varargs",
            "call h1 call_all_slots",
            "call h1 call_all_slots",
        ],
        &["call check_ints_doubles: 1\ncall check_varargs: 1\ncall call_all_slots: 1\ncall call_all_slots: 1"],
    )
}

/// __m256d and __m512d arguments through unbound PLT slots: the lazy
/// resolver must keep the full ymm/zmm state. AVX-512 is only checked on
/// CPUs that have it (the test says so when it cannot).
pub fn lazy_vector_arguments(p: &str) -> Scenario {
    let libs = [
        Lib::src("vectors", "lazy_vectors.c")
            .no_log()
            .flag("-mavx2")
            .flag("-mavx512f"),
        Lib::src("vcaller", "lazy_vcaller.c")
            .no_log()
            .flag("-mavx2")
            .flag("-mavx512f")
            .dep("vectors"),
    ];
    let s = set(p, "lazyvec", &libs);
    let mut script = vec!["open $vcaller LAZY"];
    let mut expect = vec![];
    if std::arch::is_x86_feature_detected!("avx2") {
        script.push("call h1 check_m256");
        expect.push("call check_m256: 1");
    } else {
        eprintln!("lazy_vector_arguments: this CPU has no AVX2: __m256d arguments not checked");
    }
    if std::arch::is_x86_feature_detected!("avx512f") {
        script.push("call h1 check_m512");
        expect.push("call check_m512: 1");
    } else {
        eprintln!("lazy_vector_arguments: this CPU has no AVX-512F: __m512d arguments not checked");
    }
    Scenario::new(s, &script, &expect)
}

/// Eight threads call the same 32 unbound stubs at once.
pub fn lazy_threads(p: &str) -> Scenario {
    let s = lazy_objects(&format!("{p}-lazythreads"), &[]);
    Scenario::new(
        s,
        &[
            "open $caller LAZY",
            "threads 8 h1 call_all_slots",
            "threads 8 h1 call_all_slots",
        ],
        &["threads call_all_slots: 8\nthreads call_all_slots: 8"],
    )
}

/// A library with an undefined function: RTLD_NOW refuses it at dlopen;
/// RTLD_LAZY opens it and its other functions work (calling the missing
/// one ends the process; the C ABI tests check that in a child).
pub fn lazy_undefined_function(p: &str) -> Scenario {
    let s = set(
        p,
        "lazyundef",
        &[Lib::node("dep", 1), Lib::src("u", "undef.c").dep("dep")],
    );
    Scenario::new(
        s,
        &[
            "open $u NOW",
            "maps @u",
            "open $u LAZY",
            "call h1 harmless",
            "maps @u",
        ],
        &[
            "open @u: NULL ($u: undefined symbol: missing_function)\nmaps @u: 0\n",
            "open @u: h1\ncall harmless: 5\nmaps @u: 1",
        ],
    )
}

/// Lazy binding honours symbol versions (the caller built against the
/// old library gets f@V1) and calls IFUNC resolvers (ifunc.c's own `pick`
/// from another object, and libc's strlen).
pub fn lazy_versions_and_ifunc(p: &str) -> Scenario {
    let s = version_consumers(p, "lazyver");
    s.compile(&Lib::src("i", "ifunc.c").no_log());
    s.compile(&Lib::src("u", "use_pick.c").dep("i").no_log());
    for lib in ["c1", "u"] {
        let r = relocations(s.path(lib));
        assert!(
            r.contains("R_X86_64_JUMP_SLOT"),
            "{lib} has no PLT slots:\n{r}"
        );
    }
    Scenario::new(
        s,
        &[
            "open $c1 LAZY",
            "call h1 use_f",
            "open $c2 LAZY",
            "call h2 use_f",
            "open $u LAZY",
            "call h3 call_pick_outside",
            "call h3 libc_ifunc_outside",
        ],
        &["call use_f: 1\nopen @c2: h2\ncall use_f: 2\nopen @u: h3\ncall call_pick_outside: 11\ncall libc_ifunc_outside: 7"],
    )
}

/// The TLS descriptor function keeps every register but %rax (x87 and
/// vector state included), on its slow path (a thread's first access) and
/// its fast path; the lazy resolver passes %rax and the argument registers
/// through and keeps the vector state (xmm, ymm, and zmm with the AVX-512 mask
/// registers where the CPU has them; the test says when it cannot check),
/// also when the caller left the stack misaligned.
pub fn register_preservation(p: &str) -> Scenario {
    let s = set(
        p,
        "regs",
        &[
            Lib::src("noop", "lazy_noop.S").no_log(),
            Lib::src("regs", "regs_check.S").no_log().dep("noop"),
        ],
    );
    let r = relocations(s.path("regs"));
    assert!(
        r.contains("R_X86_64_TLSDESC") && r.contains("R_X86_64_JUMP_SLOT"),
        "{r}"
    );
    let mut script = vec!["open $regs LAZY".to_string()];
    let mut expect = String::new();
    let mut check = |feature: &str, have: bool, width: &'static str| {
        if !have {
            eprintln!(
                "register_preservation: this CPU has no {feature}: the {width} checks were not run"
            );
            return;
        }
        for line in [
            "call h1 tlsdesc_preserves_{w}",
            "call h1 tlsdesc_preserves_{w}",
            "threads 4 h1 tlsdesc_preserves_{w}",
            "call h1 lazy_preserves_{w}",
            "threads 4 h1 lazy_preserves_{w}",
        ] {
            script.push(line.replace("{w}", width));
        }
        expect.push_str(&format!("call tlsdesc_preserves_{width}: 1\ncall tlsdesc_preserves_{width}: 1\nthreads tlsdesc_preserves_{width}: 4\ncall lazy_preserves_{width}: 1\nthreads lazy_preserves_{width}: 4\n"));
    };
    check("SSE2", true, "xmm");
    check("AVX2", std::arch::is_x86_feature_detected!("avx2"), "ymm");
    // ymm registers again, with the stack misaligned by 8 at the call.
    check(
        "AVX2",
        std::arch::is_x86_feature_detected!("avx2"),
        "misaligned",
    );
    check(
        "AVX-512F",
        std::arch::is_x86_feature_detected!("avx512f"),
        "zmm",
    );
    let script: Vec<&str> = script.iter().map(String::as_str).collect();
    Scenario::new(s, &script, &[&expect])
}

/// Set `name`: tls_models.c built for each dynamic TLS model, general
/// dynamic (`gd`, the default), local dynamic (`ld`) and TLS descriptors
/// (`desc`, -mtls-dialect=gnu2), and an object without TLS (`notls`).
pub fn tls_objects(name: &str) -> Set {
    let s = Set::build(
        name,
        &[
            Lib::src("gd", "tls_models.c").no_log(),
            Lib::src("ld", "tls_models.c")
                .no_log()
                .flag("-ftls-model=local-dynamic"),
            Lib::src("desc", "tls_models.c")
                .no_log()
                .flag("-mtls-dialect=gnu2"),
            Lib::plain("notls").no_log(),
        ],
    );
    let gd = relocations(s.path("gd"));
    assert!(
        gd.contains("R_X86_64_DTPMOD64") && gd.contains("R_X86_64_DTPOFF64"),
        "{gd}"
    );
    assert!(!gd.contains("R_X86_64_TLSDESC"), "{gd}");
    let desc = relocations(s.path("desc"));
    assert!(
        desc.contains("R_X86_64_TLSDESC") && !desc.contains("DTPMOD64"),
        "{desc}"
    );
    s
}

/// `__thread` variables in every dynamic model: initial values, alignments
/// of 64 and 4096, eight threads writing distinct values, and dlsym of a
/// TLS symbol giving the calling thread's address.
pub fn tls_models(p: &str) -> Scenario {
    let s = tls_objects(&format!("{p}-tlsmodels"));
    let mut script = Vec::new();
    for (h, lib) in [("h1", "gd"), ("h2", "ld"), ("h3", "desc")] {
        script.push(format!("open ${lib} NOW"));
        for line in [
            "call {h} tls_initial_ok",
            "call {h} tls_alignment_ok",
            "threads 8 {h} tls_worker",
            "threads 8 {h} tls_alignment_ok",
            "sameaddr {h} counter counter_address",
            "data {h} counter",
        ] {
            script.push(line.replace("{h}", h));
        }
    }
    script.push("close h2".into());
    script.push("maps @ld".into());
    let script: Vec<&str> = script.iter().map(String::as_str).collect();
    let each = "call tls_initial_ok: 1\ncall tls_alignment_ok: 1\nthreads tls_worker: 8\nthreads tls_alignment_ok: 8\nsameaddr counter: yes\ndata counter: 42\n";
    Scenario::new(
        s,
        &script,
        &[
            &format!("open @gd: h1\n{each}open @ld: h2\n{each}open @desc: h3\n{each}"),
            "close h2: 0\nmaps @ld: 0",
        ],
    )
}

/// An undefined weak thread-local variable reached through a TLS
/// descriptor (the descriptor sits in the PLT relocations) has a null
/// address, in every thread.
pub fn tls_undefined_weak(p: &str) -> Scenario {
    let s = set(
        p,
        "tlsweak",
        &[Lib::src("w", "tls_weak.c")
            .no_log()
            .flag("-mtls-dialect=gnu2")],
    );
    let r = relocations(s.path("w"));
    assert!(
        r.contains("R_X86_64_TLSDESC") && r.contains("nobody_defines_this"),
        "{r}"
    );
    Scenario::new(
        s,
        &[
            "open $w LAZY",
            "call h1 weak_tls_is_null",
            "threads 4 h1 weak_tls_is_null",
        ],
        &["call weak_tls_is_null: 1\nthreads weak_tls_is_null: 4"],
    )
}

/// Threads that existed before the dlopen see the object's initial values.
pub fn tls_threads_before_dlopen(p: &str) -> Scenario {
    let s = tls_objects(&format!("{p}-tlsbefore"));
    Scenario::new(
        s,
        &[
            "pre 4",
            "open $gd NOW",
            "prerun h1 tls_initial_ok",
            "pre 4",
            "open $desc NOW",
            "prerun h2 tls_initial_ok",
        ],
        &["pre: 4 threads\nopen @gd: h1\nprerun tls_initial_ok: 4\npre: 4 threads\nopen @desc: h2\nprerun tls_initial_ok: 4"],
    )
}

/// A C++ `thread_local` with a constructor, in libstdc++ loaded by the
/// loader under test: each thread's first read sees the constructed value.
pub fn tls_cxx_thread_local(p: &str) -> Scenario {
    let s = set(p, "tlscxx", &[Lib::src("cxx", "unique.cpp").no_log()]);
    Scenario::new(
        s,
        &[
            "open $cxx NOW",
            "call h1 thread_local_value",
            "call h1 thread_local_value",
            "threads 8 h1 thread_local_value",
        ],
        &["call thread_local_value: 7\ncall thread_local_value: 8\nthreads thread_local_value: 56"],
    )
}

/// Set `name`: two libraries built from unique.cpp (`ua`, `ub`), each with
/// a definition of the STB_GNU_UNIQUE `shared_counter()::c`.
pub fn unique_objects(name: &str) -> Set {
    unique_objects_with(name, &[])
}

/// [`unique_objects`] and the objects `extra`.
fn unique_objects_with(name: &str, extra: &[Lib]) -> Set {
    let mut libs = vec![
        Lib::src("ua", "unique.cpp").no_log(),
        Lib::src("ub", "unique.cpp").no_log(),
    ];
    libs.extend_from_slice(extra);
    let s = Set::build(name, &libs);
    let syms = dynamic_symbols(s.path("ua"));
    assert!(
        syms.lines()
            .any(|l| l.contains("UNIQUE") && l.contains("_ZZ14shared_countervE1c")),
        "the fixture must define a unique symbol:\n{syms}"
    );
    s
}

/// Set `name`: `top` needs `dtor`, which needs `callee` (lazy_callee.c);
/// dtor's destructor makes the first calls of slot_5 (in callee) and of
/// lazy_function (in top), so that they bind while one dlclose unloads
/// all three (glibc bug 30425, tst-dlclose-lazy).
pub fn dtor_lazy_objects(name: &str) -> Set {
    Set::build(
        name,
        &[
            Lib::src("callee", "lazy_callee.c").no_log(),
            Lib::src("dtor", "dtor_lazy.c").dep("callee"),
            Lib::src("top", "dtor_lazy_top.c").dep("dtor"),
        ],
    )
}

/// `count` copies of set `set`'s object `lib` in its directory, as
/// `m0.so`, `m1.so`... (distinct files: distinct objects); their paths.
pub fn copies(set: &Set, lib: &str, count: usize) -> Vec<String> {
    (0..count)
        .map(|k| {
            let p = set.dir.join(format!("m{k}.so"));
            std::fs::copy(set.path(lib), &p).unwrap();
            p.to_string_lossy().into_owned()
        })
        .collect()
}

/// An inline function's static variable (STB_GNU_UNIQUE) in two RTLD_LOCAL
/// libraries is one variable; the object whose definition was chosen
/// becomes NODELETE (the other is unloaded normally); libstdc++'s
/// own unique symbols keep working.
pub fn unique_symbols(p: &str) -> Scenario {
    let s = unique_objects(&format!("{p}-unique"));
    Scenario::new(
        s,
        &[
            "open $ua LOCAL|NOW",
            "open $ub LOCAL|NOW",
            "call h1 bump",
            "call h2 bump",
            "call h1 bump",
            "same h1 h2 _ZZ14shared_countervE1c",
            "call h2 use_libstdcxx",
            "close h1",
            "close h2",
            "maps @ua",
            "maps @ub",
        ],
        &[
            "call bump: 1\ncall bump: 2\ncall bump: 3\nsame _ZZ14shared_countervE1c: yes\ncall use_libstdcxx: 14",
            "maps @ua: 1\nmaps @ub: 0",
        ],
    )
}

/// A unique definition found while loading an object whose load then
/// fails is forgotten with it: the next object (which may reuse its slot)
/// and a later definer are not confused with it.
pub fn unique_symbols_after_a_failed_load(p: &str) -> Scenario {
    let s = set(
        p,
        "uniquefail",
        &[
            Lib::src("bad", "unique.cpp").no_log().flag("{src}/undef.c"), // compiled as C++: missing_function is mangled
            Lib::plain("other").no_log(),
            Lib::src("good", "unique.cpp").no_log(),
        ],
    );
    Scenario::new(
        s,
        &[
            "open $bad NOW",
            "open $other NOW",
            "open $good NOW",
            "call h2 bump",
            "call h2 bump",
        ],
        &[
            "open @bad: NULL ($bad: undefined symbol: _Z16missing_functionv)\nopen @other: h1\nopen @good: h2\ncall bump: 1\ncall bump: 2",
        ],
    )
}

/// What check_match accepts and rejects: an STT_COMMON definition is
/// found, an SHN_ABS symbol's value is used without the load base, and a
/// definition whose value is 0 is not a definition.
pub fn symbol_kinds(p: &str) -> Scenario {
    let s = set(
        p,
        "symkinds",
        &[
            Lib::src("defs", "symkinds.c").no_log(),
            Lib::src("user", "symkinds_user.c").no_log().dep("defs"),
        ],
    );
    // (Made absolute after the user's link: linked against an absolute
    // symbol, the link editor gives the user a definition of its own, a
    // copy of the value, and its lookup would stop there.)
    let defs = s.path("defs");
    let mut bytes = std::fs::read(&defs).unwrap();
    crate::damage::retype_symbol(&mut bytes, "common_var", 5); // STT_COMMON
    crate::damage::set_symbol_value(&mut bytes, "zeroed", 0);
    crate::damage::make_absolute(&mut bytes, "abs_sym", 0x1234);
    std::fs::write(&defs, bytes).unwrap();
    let syms = dynamic_symbols(defs);
    for (kind, name) in [("COMMON", "common_var"), ("ABS", "abs_sym")] {
        assert!(
            syms.lines().any(|l| l.contains(kind) && l.contains(name)),
            "{syms}"
        );
    }
    let user = dynamic_symbols(s.path("user"));
    assert!(
        user.lines()
            .any(|l| l.contains("UND") && l.contains("abs_sym")),
        "{user}"
    );
    Scenario::new(
        s,
        &[
            "open $user NOW",
            "call h1 read_common",
            "call h1 abs_is_raw",
            "call h1 zeroed_is_null",
            "open $defs NOW",
            "data h2 common_var",
            "abs h2 abs_sym",
            "call h2 zeroed",
            "call h2 plain",
        ],
        &[
            "call read_common: 11\ncall abs_is_raw: 1\ncall zeroed_is_null: 1\n",
            "data common_var: 11\nabs abs_sym: 0x1234\ncall zeroed: NULL ($defs: undefined symbol: zeroed)\ncall plain: 6",
        ],
    )
}

/// Set `name`: the C++ plugins. `thrower` (cxx_thrower.cpp: classes with
/// their key functions, exceptions, a static and a thread_local object with
/// destructors), `catcher` (cxx_catcher.cpp, needs thrower: catches and
/// casts across the two) and `thrower_static` (thrower built with
/// `-static-libstdc++ -static-libgcc`: its own C++ runtime and unwinder).
pub fn cxx_objects(name: &str) -> Set {
    Set::build(
        name,
        &[
            Lib::src("thrower", "cxx_thrower.cpp").no_log(),
            Lib::src("catcher", "cxx_catcher.cpp")
                .no_log()
                .dep("thrower"),
            Lib::src("thrower_static", "cxx_thrower.cpp")
                .no_log()
                .flag("-static-libstdc++")
                .flag("-static-libgcc"),
        ],
    )
}

/// `many_refs.c` defining its 256 functions, each returning `value` plus
/// its number.
pub fn many_refs_definer(name: &str, value: u32) -> Lib {
    Lib::src(name, "many_refs.c")
        .define("DEFINE", "1")
        .define("VALUE", &value.to_string())
}

/// `many_refs.c` referring to those functions 512 times, with `d` (a
/// [`many_refs_definer`]) as its dependency.
pub fn many_refs_user(name: &str) -> Lib {
    Lib::src(name, "many_refs.c").dep("d")
}

/// The objects of the global scope filter's scenarios: `d` (the functions,
/// from 1000), `interposer` (named `i`), `u0` (for [`FIRST_FILTER`]) and
/// each of `users`.
fn many_refs_set(p: &str, name: &str, interposer: Lib, users: &[&str]) -> Set {
    let mut libs = vec![many_refs_definer("d", 1000), interposer];
    libs.extend(["u0"].iter().chain(users).map(|u| many_refs_user(u)));
    set(p, name, &libs)
}

/// The first step of the global scope filter's scenarios, handle `h1`: a
/// load with 512 lookups, whose filter, the process's first, dynload drops
/// when that `dlopen` ends (see its `Registry::drop_one_off_filter`), so
/// that the filters the scenarios are about are ones a process keeps.
const FIRST_FILTER: &str = "open $u0 NOW";

/// dynload's filter over the global scope (built by a relocation pass with
/// many lookups, here `u1`'s 512) must be dropped when the scope changes:
/// `i`, made global after `u1` was relocated, defines the same 256
/// functions as `u2`'s own dependency `d`, and being global it comes
/// first. `i` has only a SysV hash table, so the rebuilt filter hashes its
/// names itself.
pub fn global_scope_filter(p: &str) -> Scenario {
    let interposer = many_refs_definer("i", 2000).flag("-Wl,--hash-style=sysv");
    let s = many_refs_set(p, "scope-filter", interposer, &["u1", "u2"]);
    Scenario::new(
        s,
        &[
            FIRST_FILTER,
            "open $u1 NOW",
            "call h2 probe",
            "call h2 probe_call",
            "open $i NOW|GLOBAL",
            "open $u2 NOW",
            "call h4 probe",
            "call h4 probe_call",
            "call h4 call_all",
            "call h2 probe",
        ],
        &[
            "call probe: 1167\ncall probe_call: 1167\n",
            "call probe: 2167\ncall probe_call: 2167\ncall call_all: 544640\ncall probe: 1167",
        ],
    )
}

/// Lazily bound calls once the global scope's filter is built (by `u1`'s
/// 512 lookups): `u2`'s first calls, to names no global object defines,
/// bind to its own dependency `d`; after `i`, which defines the same
/// names, became global (and the filter was built again, by `u3`'s), `u4`'s
/// bind to `i`, which comes first.
pub fn lazy_calls_and_the_global_scope_filter(p: &str) -> Scenario {
    let interposer = many_refs_definer("i", 2000);
    let s = many_refs_set(p, "lazy-filter", interposer, &["u1", "u2", "u3", "u4"]);
    Scenario::new(
        s,
        &[
            FIRST_FILTER,
            "open $u1 NOW",
            "open $u2 LAZY",
            "call h3 probe_call",
            "call h3 call_all",
            "open $i NOW|GLOBAL",
            "open $u3 NOW",
            "open $u4 LAZY",
            "call h6 probe_call",
            "call h6 call_all",
            "call h3 probe_call",
        ],
        &[
            "call probe_call: 1167\ncall call_all: 288640\n",
            "call probe_call: 2167\ncall call_all: 544640\ncall probe_call: 1167",
        ],
    )
}

/// How many times [`global_scope_filter_refined`] loads and unloads `u1`.
pub const REFINING_LOADS: usize = 64;

/// A process that makes many lookups through dynload's filter over the
/// global scope gets it rebuilt at eight bits a symbol: here `u1`, with its
/// 512 lookups, is loaded and unloaded [`REFINING_LOADS`] times, more than
/// enough for the driver's scope. The finer filter must still let through
/// every name the scope defines: once `i` is global, `u2` binds to it, and
/// so does a lazily bound call of `u3`.
pub fn global_scope_filter_refined(p: &str) -> Scenario {
    let interposer = many_refs_definer("i", 2000);
    let s = many_refs_set(p, "refined-filter", interposer, &["u1", "u2", "u3"]);
    let mut script = vec![FIRST_FILTER.to_string()];
    for k in 2..=REFINING_LOADS + 1 {
        script.push("open $u1 NOW".to_string());
        script.push(format!("call h{k} probe"));
        script.push(format!("close h{k}"));
    }
    let n = REFINING_LOADS + 1;
    script.extend([
        "open $i NOW|GLOBAL".to_string(),
        "open $u2 NOW".to_string(),
        format!("call h{} probe", n + 2),
        "open $u3 LAZY".to_string(),
        format!("call h{} probe_call", n + 3),
    ]);
    let script: Vec<&str> = script.iter().map(String::as_str).collect();
    Scenario::new(
        s,
        &script,
        &[
            &format!("call probe: 1167\nclose h{n}: 0\n"),
            "call probe: 2167\n",
            "call probe_call: 2167",
        ],
    )
}

/// An object that only refers to a unique symbol (`user`, C) finds it first
/// in its own dependency `ub`, but is bound to the process-wide definition,
/// `ua`'s, which was loaded first: it shares `ua`'s counter.
pub fn unique_symbols_from_another_object(p: &str) -> Scenario {
    let s = unique_objects_with(
        &format!("{p}-uniqueuser"),
        &[Lib::src("user", "unique_user.c").no_log().dep("ub")],
    );
    Scenario::new(
        s,
        &[
            "open $ua LOCAL|NOW",
            "call h1 bump",
            "call h1 bump",
            "open $user LOCAL|NOW",
            "call h2 bump_from_user",
            "call h1 bump",
        ],
        &[
            "call bump: 1\ncall bump: 2\n",
            "call bump_from_user: 3\ncall bump: 4",
        ],
    )
}

/// Relocations whose definer changes from one entry to the next (dynload
/// skips the Bloom filter of the last definer, and binds plain runs of
/// entries in a loop of their own): `mu`'s table must bind each name to
/// the first of its scope (`ma`, then `mb`) that defines it, also right
/// after a binding to `mb`; its IFUNC entry, in the middle, to what the
/// resolver picks. Loaded `NOW` (JUMP_SLOT entries bound in the pass) and
/// `LAZY`.
pub fn definers_that_change(p: &str) -> Scenario {
    let side =
        |name: &str, define: &str| Lib::src(name, "mixed_refs.c").define(define, "1").no_log();
    let s = set(
        p,
        "changing-definers",
        &[
            side("ma", "SIDE_A"),
            side("mb", "SIDE_B"),
            Lib::src("mu", "mixed_refs.c").no_log().dep("ma").dep("mb"),
        ],
    );
    assert!(
        relocations(s.path("mu")).contains("R_X86_64_64"),
        "the table must be R_X86_64_64 entries"
    );
    Scenario::new(
        s,
        &[
            "open $mu NOW",
            "call h1 probe",
            "call h1 probe_got",
            "call h1 probe_call",
            "close h1",
            "open $mu LAZY",
            "call h2 probe",
            "call h2 probe_got",
            "call h2 probe_call",
        ],
        &[
            "call probe: 59222\ncall probe_got: 1142\ncall probe_call: 1431\n",
            "call probe: 59222\ncall probe_got: 1142\ncall probe_call: 1431",
        ],
    )
}

/// Definitions the relocation pass's fast lane must leave to the general
/// walk (tests run with `dynload::testing::check_fast_lane`): names in
/// several versions, of which a reference without a version binds the
/// oldest, V1, wherever the chain meets it (h's V1 comes last in the
/// file, k's first); and, in the first of two dependencies that define
/// the same names, a definition made hidden and one made local, which a
/// lookup passes over for the second's, and one made unique, which binds
/// to the unique definition an object loaded before entered; and the
/// first's reference to a name only the second defines, which keeps the
/// second loaded while the first is.
pub fn fast_lane_refusals(p: &str) -> Scenario {
    let dep =
        |name: &str, value: &str| Lib::src(name, "lane_dep.c").define("VALUE", value).no_log();
    let s = set(
        p,
        "lane",
        &[
            Lib::src("lv", "lane_defs_unversioned.c")
                .subdir("unversioned")
                .no_log(),
            dep("w1", "1"),
            dep("w2", "2"),
            dep("w0", "5"),
        ],
    );
    s.compile(
        &Lib::src("lv", "lane_defs.c")
            .flag("-Wl,--version-script={src}/lane_defs.map")
            .no_log(),
    );
    s.compile(
        &Lib::src("lu", "lane_user.c")
            .flag("-L{dir}/unversioned")
            .dep("lv")
            .dep("w1")
            .dep("w2")
            .no_log(),
    );
    damage_file(&s.path("lu"), &|b| {
        crate::damage::set_symbol_visibility(b, "own_base", 2); // STV_HIDDEN
        crate::damage::unname_relocation(b, "unnamed");
    });
    let damage = |name: &str, f: &dyn Fn(&mut Vec<u8>)| damage_file(&s.path(name), f);
    damage("w1", &|b| {
        crate::damage::set_symbol_visibility(b, "which", 2); // STV_HIDDEN
        crate::damage::set_symbol_binding(b, "local_in_first", 0); // STB_LOCAL
        crate::damage::set_symbol_binding(b, "shared_data", 10); // STB_GNU_UNIQUE
    });
    damage("w0", &|b| {
        crate::damage::set_symbol_binding(b, "shared_data", 10)
    });
    // The versions as the file lists them (the hash chain's order).
    let syms = dynamic_symbols(s.path("lv"));
    let order = |name: &str| -> Vec<String> {
        syms.lines()
            .filter_map(|l| l.split_whitespace().last())
            .filter(|n| n.starts_with(&format!("{name}@")))
            .map(str::to_owned)
            .collect()
    };
    let (h, k) = (order("h"), order("k"));
    assert!(
        h.len() == 3 && k.len() == 3 && (h[0] != "h@V1" || k[0] != "k@V1"),
        "a name's V1 must come after another of its versions: {h:?} {k:?}"
    );
    let refs = relocations(s.path("lu"));
    for kind in ["R_X86_64_64", "R_X86_64_GLOB_DAT", "R_X86_64_JUMP_SLO"] {
        assert!(refs.contains(kind), "no {kind} in lu:\n{refs}");
    }
    Scenario::new(
        s,
        &[
            "open $w0 NOW",
            "call h1 read_own_shared",
            "open $lu NOW",
            "call h2 call_h",
            "call h2 call_k",
            "call h2 h_via_data",
            "call h2 k_via_got",
            "call h2 call_which",
            "call h2 read_local_in_first",
            "call h2 read_shared",
            "call h2 own_base_is_own",
            "call h2 unnamed_is_base",
            "open $w1 NOW",
            "close h2",
            "maps @w2",
            "call h3 call_second",
            "close h3",
            "maps @w2",
        ],
        &[
            "call call_h: 1\ncall call_k: 1\ncall h_via_data: 1\ncall k_via_got: 1\n",
            "call call_which: 2\ncall read_local_in_first: 2\ncall read_shared: 5\ncall own_base_is_own: 1\ncall unnamed_is_base: 1",
            "maps @w2: 1\ncall call_second: 22\nclose h3: 0\nmaps @w2: 0",
        ],
    )
}

/// `table`: big_relro.c with a 5 MiB table of pointers, one RELATIVE entry
/// a word (655,360), RELA and not packed: a load big enough for dynload to
/// share its RELRO copies and RELATIVE relocations with a helper thread.
pub fn big_relative_table() -> Lib {
    Lib::src("table", "big_relro.c")
        .flag("{src}/big_relro_table.S")
        .flag("-Wl,-z,nopack-relative-relocs")
        .define("POINTER_EVERY", "1")
        .define("DENSE_FROM", "0")
}
