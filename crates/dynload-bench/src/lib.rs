//! Benchmark support: the fixture libraries, built with gcc on first use,
//! and the few measurements that need /proc.
//!
//! Each loader gets its own copy of every fixture, under a file name with
//! its own prefix (`g_`, `d_`, `r_`), so that one loader never finds the
//! other's copy already loaded and measures a reference count instead of a
//! load.

pub mod first_load;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Which loader a fixture copy is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loader {
    /// glibc's `dlopen`, called through `libc`.
    Glibc,
    /// dynload, through the same C entry points `libdynload.so` exports.
    Dynload,
    /// The `dlopen-rs` crate.
    DlopenRs,
}

impl Loader {
    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Loader::Glibc => "glibc",
            Loader::Dynload => "dynload",
            Loader::DlopenRs => "dlopen-rs",
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            Loader::Glibc => "g_",
            Loader::Dynload => "d_",
            Loader::DlopenRs => "r_",
        }
    }
}

/// Symbols in the big symbol table.
pub const MANY_SYMBOLS: usize = 10_000;
/// Functions (each a JUMP_SLOT) and data objects (each an R_X86_64_64) the
/// relocation fixture takes from its dependency.
pub const RELOCATED_FUNCTIONS: usize = 2_000;
/// See [`RELOCATED_FUNCTIONS`].
pub const RELOCATED_DATA: usize = 2_000;

/// The built fixtures of one loader.
#[derive(Clone, Debug)]
pub struct Fixtures {
    dir: PathBuf,
    prefix: &'static str,
}

impl Fixtures {
    /// Build (or reuse) the fixtures for `loader`.
    pub fn for_loader(loader: Loader) -> Fixtures {
        // (Tests build them from several threads.)
        static BUILDING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one_at_a_time = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
        let dir = target_dir().join("bench-fixtures");
        std::fs::create_dir_all(&dir).expect("create target/bench-fixtures");
        let f = Fixtures {
            dir,
            prefix: loader.prefix(),
        };
        f.build("tiny", &tiny_source(), &[]);
        f.build("many", &many_symbols_source(), &[]);
        f.build("relocdep", &reloc_dependency_source(), &[]);
        f.build("reloc", &reloc_source(), &["relocdep"]);
        f.build("pltdep", PLT_DEPENDENCY, &[]);
        f.build("plt", PLT_CALLER, &["pltdep"]);
        f.build("tls", TLS_SOURCE, &[]);
        f
    }

    /// The path of fixture `name` (one of tiny, many, reloc, relocdep, plt,
    /// pltdep, tls).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("lib{}{name}.so", self.prefix))
    }

    /// The path as a C string, for the dlopen-style entry points.
    pub fn c_path(&self, name: &str) -> std::ffi::CString {
        use std::os::unix::ffi::OsStrExt;
        std::ffi::CString::new(self.path(name).as_os_str().as_bytes()).expect("no NUL in path")
    }

    /// Compile `source` into fixture `name`, linked against the fixtures
    /// `deps` (found through RUNPATH `$ORIGIN`). Skipped when the source is
    /// unchanged since the last build.
    fn build(&self, name: &str, source: &str, deps: &[&str]) {
        let out = self.path(name);
        let src = self.dir.join(format!("{}{name}.c", self.prefix));
        let fresh = out.exists() && std::fs::read_to_string(&src).ok().as_deref() == Some(source);
        if fresh {
            return;
        }
        std::fs::write(&src, source).expect("write fixture source");
        let mut cmd = Command::new("gcc");
        cmd.args(["-shared", "-fPIC", "-O2", "-Wl,-z,lazy"])
            .arg(format!("-Wl,-soname,lib{}{name}.so", self.prefix))
            .arg("-Wl,-rpath,$ORIGIN")
            .arg("-o")
            .arg(&out)
            .arg(&src)
            .arg(format!("-L{}", self.dir.display()));
        for d in deps {
            cmd.arg(format!("-l{}{d}", self.prefix));
        }
        testkit::run(&mut cmd);
    }
}

/// `target/` of this workspace (or `CARGO_TARGET_DIR`).
pub fn target_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(d);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target")
}

fn tiny_source() -> String {
    "int tiny_value(void) { return 42; }\n".to_string()
}

/// The name of symbol `i` of the big symbol table.
pub fn many_symbol(i: usize) -> String {
    format!("many_{i:05}")
}

fn many_symbols_source() -> String {
    let mut s = String::new();
    for i in 0..MANY_SYMBOLS {
        writeln!(s, "int {}(void) {{ return {i}; }}", many_symbol(i)).unwrap();
    }
    s
}

fn reloc_dependency_source() -> String {
    let mut s = String::new();
    for i in 0..RELOCATED_FUNCTIONS {
        writeln!(s, "int rf_{i}(void) {{ return {i}; }}").unwrap();
    }
    for i in 0..RELOCATED_DATA {
        writeln!(s, "int rd_{i} = {i};").unwrap();
    }
    s
}

fn reloc_source() -> String {
    let mut s = String::new();
    for i in 0..RELOCATED_FUNCTIONS {
        writeln!(s, "extern int rf_{i}(void);").unwrap();
    }
    for i in 0..RELOCATED_DATA {
        writeln!(s, "extern int rd_{i};").unwrap();
    }
    // Each address in this table is one R_X86_64_64 against the dependency.
    s.push_str("int *const reloc_data[] = {\n");
    for i in 0..RELOCATED_DATA {
        writeln!(s, "  &rd_{i},").unwrap();
    }
    s.push_str("};\n");
    // Each call is one JUMP_SLOT.
    s.push_str("long reloc_call_all(void) {\n  long sum = 0;\n");
    for i in 0..RELOCATED_FUNCTIONS {
        writeln!(s, "  sum += rf_{i}();").unwrap();
    }
    s.push_str("  return sum;\n}\n");
    s
}

const PLT_DEPENDENCY: &str = "int plt_target(int x) { return x + 1; }\n";
const PLT_CALLER: &str =
    "extern int plt_target(int);\nint plt_call(int x) { return plt_target(x); }\n";
// Compiled with -fPIC for a shared object, the access goes through
// `__tls_get_addr` (the general-dynamic model, gcc's default there).
const TLS_SOURCE: &str =
    "__thread long tls_counter;\nlong tls_bump(void) { return ++tls_counter; }\n";

/// The objects a first-load program loads for `path`: the `*.so` files in
/// it, in name order, if it is a directory; otherwise `path` itself.
pub fn objects_at(path: &str) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(path) else {
        return vec![path.to_owned()];
    };
    let mut names: Vec<String> = dir
        .filter_map(|e| Some(e.ok()?.path().to_str()?.to_owned()))
        .filter(|p| p.ends_with(".so"))
        .collect();
    names.sort();
    names
}

/// Resident memory (kB), mappings and heap bytes in use, from /proc and
/// `mallinfo2`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Footprint {
    /// VmRSS, in kB.
    pub rss_kb: i64,
    /// RssAnon, in kB: the private part of VmRSS (heap, written pages),
    /// without the file pages the kernel maps around each fault.
    pub anon_kb: i64,
    /// Mappings in /proc/self/maps (see [`count_mappings`]).
    pub mappings: i64,
    /// Bytes malloc has handed out and not had back (its own chunks and
    /// the big allocations it maps separately).
    pub heap_bytes: i64,
    /// Loaded objects: the files with an executable mapping (see
    /// [`count_objects`]).
    pub objects: i64,
}

impl Footprint {
    /// The process now.
    pub fn now() -> Footprint {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let kb = |field: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        };
        let (mappings, objects) = std::fs::read_to_string("/proc/self/maps")
            .map(|m| (count_mappings(&m) as i64, count_objects(&m) as i64))
            .unwrap_or((0, 0));
        // SAFETY: mallinfo2 only reads malloc's counters.
        let m = unsafe { libc::mallinfo2() };
        let heap_bytes = (m.uordblks + m.hblkhd) as i64;
        Footprint {
            rss_kb: kb("VmRSS:"),
            anon_kb: kb("RssAnon:"),
            mappings,
            heap_bytes,
            objects,
        }
    }

    /// `self - earlier`, field by field.
    pub fn since(self, earlier: Footprint) -> Footprint {
        Footprint {
            rss_kb: self.rss_kb - earlier.rss_kb,
            anon_kb: self.anon_kb - earlier.anon_kb,
            mappings: self.mappings - earlier.mappings,
            heap_bytes: self.heap_bytes - earlier.heap_bytes,
            objects: self.objects - earlier.objects,
        }
    }
}

/// The mappings a text of /proc/self/maps lists, by start address. The
/// kernel writes the file a page at a time; when reading it grows the heap
/// between two reads, the heap's line comes again with its new end, and
/// counting lines would count one mapping more.
pub fn count_mappings(maps: &str) -> usize {
    let starts: std::collections::HashSet<&str> =
        maps.lines().filter_map(|l| l.split('-').next()).collect();
    starts.len()
}

/// The objects a text of /proc/self/maps shows: the files with an
/// executable mapping, each once, whichever loader mapped them (a loader's
/// data files, such as `/etc/ld.so.cache`, are mapped without execute
/// permission). Read from the text `Footprint` reads anyway, so counting
/// allocates nothing more around the measured loads.
pub fn count_objects(maps: &str) -> usize {
    let files: std::collections::HashSet<&str> = maps
        .lines()
        .filter_map(|l| {
            let mut fields = l.split_whitespace();
            let perms = fields.nth(1)?;
            let path = fields.nth(3)?;
            (perms.contains('x') && path.starts_with('/')).then_some(path)
        })
        .collect();
    files.len()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_line_repeated_by_a_growing_heap_counts_once() {
        let maps = "\
560e20da8000-560e20daa000 rw-p 000db000 fe:00 5333285    /bin/x
560e3db1b000-560e3db3c000 rw-p 00000000 00:00 0          [heap]
560e3db1b000-560e3db5d000 rw-p 00000000 00:00 0          [heap]
7fea782a3000-7fea782a4000 r--p 00000000 fe:00 5587752    /lib/y.so
";
        assert_eq!(super::count_mappings(maps), 3);
        let without_repeat: String = maps
            .lines()
            .filter(|l| !l.contains("5d000"))
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(super::count_mappings(&without_repeat), 3);
    }

    #[test]
    fn objects_are_files_mapped_executable() {
        let maps = "\
560e20da6000-560e20da8000 r--p 00000000 fe:00 5333285    /bin/x
560e20da8000-560e20daa000 r-xp 00002000 fe:00 5333285    /bin/x
560e3db1b000-560e3db3c000 rw-p 00000000 00:00 0          [heap]
7fea782a0000-7fea782a3000 r--p 00000000 fe:00 1234       /etc/ld.so.cache
7fea782a3000-7fea782a4000 r-xp 00001000 fe:00 5587752    /lib/y.so
7fea782a4000-7fea782a5000 r--p 00002000 fe:00 5587752    /lib/y.so
7ffd1e5f2000-7ffd1e5f4000 r-xp 00000000 00:00 0          [vdso]
";
        assert_eq!(super::count_objects(maps), 2);
        // This process: the program, libc and the dynamic linker at least.
        let own = std::fs::read_to_string("/proc/self/maps").unwrap();
        assert!(super::count_objects(&own) >= 3);
    }
}
