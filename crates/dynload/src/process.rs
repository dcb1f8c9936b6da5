//! Facts about the process the loader lives in, read once: the program's
//! arguments (passed to constructors), the auxiliary vector, secure mode and
//! the environment variables that steer loading.

use std::ffi::{c_char, c_int, OsString};
use std::os::unix::ffi::OsStringExt;
use std::sync::atomic::{AtomicIsize, AtomicPtr, Ordering};
use std::sync::OnceLock;

static ARGC: AtomicIsize = AtomicIsize::new(-1);
static ARGV: AtomicPtr<*mut c_char> = AtomicPtr::new(std::ptr::null_mut());

/// glibc calls `.init_array` entries of the executable and of every shared
/// object with (argc, argv, envp); this is how a loader that is not ld.so
/// learns the arguments it must pass on to constructors.
extern "C" fn capture_args(argc: c_int, argv: *mut *mut c_char, _envp: *mut *mut c_char) {
    ARGC.store(argc as isize, Ordering::Relaxed);
    ARGV.store(argv, Ordering::Relaxed);
}

#[used]
#[link_section = ".init_array"]
static CAPTURE_ARGS: extern "C" fn(c_int, *mut *mut c_char, *mut *mut c_char) = capture_args;

/// The (argc, argv) glibc gave the program, for constructors.
pub(crate) fn args() -> (c_int, *mut *mut c_char) {
    let argc = ARGC.load(Ordering::Relaxed);
    let argv = ARGV.load(Ordering::Relaxed);
    if argc < 0 || argv.is_null() {
        // Not captured (should not happen in a glibc process): pass an empty
        // vector rather than garbage.
        static EMPTY: [usize; 1] = [0];
        return (0, EMPTY.as_ptr() as *mut *mut c_char);
    }
    (argc as c_int, argv)
}

/// The current environment, as glibc passes it to constructors.
pub(crate) fn environ() -> *mut *mut c_char {
    extern "C" {
        static mut environ: *mut *mut c_char;
    }
    // SAFETY: reading the `environ` pointer itself; glibc keeps it valid.
    unsafe { std::ptr::addr_of!(environ).read() }
}

/// `argv[0]`, which glibc reports as the main program's name.
pub(crate) fn program_name() -> String {
    let (argc, argv) = args();
    if argc < 1 {
        return String::new();
    }
    // SAFETY: argv has argc valid C strings (from glibc's start-up code).
    unsafe {
        let p = *argv;
        if p.is_null() {
            return String::new();
        }
        std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

/// Settings read once, the first time the loader is used.
#[derive(Debug)]
pub(crate) struct Settings {
    /// AT_SECURE: a set-user-ID or set-group-ID program (or similar).
    pub secure: bool,
    /// LD_LIBRARY_PATH, split (empty elements mean the current directory).
    pub library_path: Option<Vec<Vec<u8>>>,
    /// DYNLOAD_DEBUG
    pub debug: Option<String>,
    /// DYNLOAD_DEBUG_OUTPUT
    pub debug_output: Option<OsString>,
    /// LD_PRELOAD entries, to recognise preloaded objects in glibc's list.
    pub preload: Vec<Vec<u8>>,
    /// LD_BIND_NOW or DYNLOAD_BIND_NOW set to a non-empty value.
    pub bind_now: bool,
    /// DYNLOAD_STATS: which processes print a summary at exit.
    pub stats: SummaryScope,
    /// DYNLOAD_STATE_SAVE: `xsave` or `fxsave`, to use an older way of
    /// saving register state than the CPU allows (for testing those paths).
    pub state_save: Option<String>,
    /// DYNLOAD_GDB: `1` describes every object to debuggers, `0` none;
    /// unset, only while a debugger has its breakpoint set (see `debugger`).
    pub gdb: Option<bool>,
    /// DYNLOAD_POLICY: the load policy (`dir=PATH;sha256=HEX;...`).
    pub policy: Option<Vec<u8>>,
    /// DYNLOAD_ALLOW_TEXTREL set to a non-empty value other than `0`.
    pub allow_textrel: bool,
}

fn env_bytes(name: &str) -> Option<Vec<u8>> {
    std::env::var_os(name).map(OsString::into_vec)
}

pub(crate) fn settings() -> &'static Settings {
    static SETTINGS: OnceLock<Settings> = OnceLock::new();
    SETTINGS.get_or_init(|| {
        // SAFETY: getauxval has no preconditions.
        let secure = unsafe { libc::getauxval(libc::AT_SECURE) } != 0;
        // In secure mode glibc scrubs these variables from the environment;
        // dynload ignores its own and glibc's alike.
        let trusted = |name: &str| if secure { None } else { env_bytes(name) };
        let library_path = trusted("LD_LIBRARY_PATH").map(|v| split_path(&v));
        let mut preload: Vec<Vec<u8>> = env_bytes("LD_PRELOAD")
            .map(|v| {
                v.split(|&c| c == b' ' || c == b':')
                    .filter(|s| !s.is_empty())
                    .map(<[u8]>::to_vec)
                    .collect()
            })
            .unwrap_or_default();
        if let Ok(text) = std::fs::read("/etc/ld.so.preload") {
            preload.extend(
                text.split(|&c| c == b' ' || c == b'\t' || c == b'\n' || c == b':')
                    .filter(|s| !s.is_empty())
                    .map(<[u8]>::to_vec),
            );
        }
        Settings {
            secure,
            library_path,
            debug: trusted("DYNLOAD_DEBUG").map(|v| String::from_utf8_lossy(&v).into_owned()),
            debug_output: trusted("DYNLOAD_DEBUG_OUTPUT").map(OsString::from_vec),
            preload,
            bind_now: ["LD_BIND_NOW", "DYNLOAD_BIND_NOW"]
                .iter()
                .any(|n| trusted(n).is_some_and(|v| !v.is_empty())),
            stats: trusted("DYNLOAD_STATS").map_or(SummaryScope::Off, |v| SummaryScope::parse(&v)),
            state_save: trusted("DYNLOAD_STATE_SAVE")
                .map(|v| String::from_utf8_lossy(&v).into_owned()),
            gdb: trusted("DYNLOAD_GDB").map(|v| v != b"0" && !v.is_empty()),
            policy: trusted("DYNLOAD_POLICY"),
            allow_textrel: trusted("DYNLOAD_ALLOW_TEXTREL")
                .is_some_and(|v| !v.is_empty() && v != b"0"),
        }
    })
}

/// Who prints the `--stats` summary at exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SummaryScope {
    Off,
    /// Every process that has the variable.
    All,
    /// Only the process with this id: `dynload run --stats` sets `pid=N`,
    /// N being the program's id, which it keeps across its own execs; the
    /// processes it starts (forked copies included) print nothing.
    Process(u32),
}

impl SummaryScope {
    fn parse(value: &[u8]) -> SummaryScope {
        if let Some(pid) = value.strip_prefix(b"pid=") {
            return std::str::from_utf8(pid)
                .ok()
                .and_then(|p| p.parse().ok())
                .map_or(SummaryScope::Off, SummaryScope::Process);
        }
        if value.is_empty() || value == b"0" {
            SummaryScope::Off
        } else {
            SummaryScope::All
        }
    }

    /// Does this process print the summary?
    pub(crate) fn here(self) -> bool {
        match self {
            SummaryScope::Off => false,
            SummaryScope::All => true,
            SummaryScope::Process(pid) => pid == std::process::id(),
        }
    }
}

/// Print `message` to standard error and end the process with status 127,
/// as glibc's `_dl_fatal_printf` does (an unresolvable lazy call, no memory
/// for a thread's TLS block): there is no caller to return an error to.
pub(crate) fn fatal(message: &str) -> ! {
    let text = format!("{message}\n");
    // SAFETY: write a buffer to stderr, then end the process.
    unsafe {
        libc::write(2, text.as_ptr() as *const libc::c_void, text.len());
        libc::_exit(127);
    }
}

/// Split a path list at ':' and ';' as glibc does for LD_LIBRARY_PATH.
pub(crate) fn split_path(v: &[u8]) -> Vec<Vec<u8>> {
    v.split(|&c| c == b':' || c == b';')
        .map(<[u8]>::to_vec)
        .collect()
}

/// The kernel's AT_PLATFORM string ("x86_64").
pub(crate) fn at_platform() -> Option<String> {
    // SAFETY: getauxval has no preconditions; a non-zero AT_PLATFORM is a
    // pointer to a NUL-terminated string on the initial stack.
    unsafe {
        let p = libc::getauxval(libc::AT_PLATFORM) as *const c_char;
        if p.is_null() {
            return None;
        }
        Some(std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned())
    }
}
