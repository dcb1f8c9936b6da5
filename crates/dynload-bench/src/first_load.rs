//! What the `first-load` programs share: each knows one way to load (its
//! `measured_load`), and this does the rest.
//!
//! `PROGRAM LOADER now|lazy PATH|DIR [WARM_PATH]`: with `WARM_PATH`, that
//! object is loaded first, so the figures are for one more object, not for
//! the loader's start-up. A directory as `PATH` loads each `*.so` in it, in
//! name order, and reports the totals and their number (`objects`): the
//! memory of many copies of one object, divided by their number, does not
//! depend on which pages of the loader's own code the first one touched.
//! Prints one JSON object: the time of the loads alone, and what they added
//! to resident memory, mappings and the heap. `FIRST_LOAD_HEAP_OFFSET=N`
//! allocates N bytes (kept, not written) just before the counted loads.

use std::ffi::{c_char, CStr, CString};
use std::os::unix::ffi::OsStrExt;

use crate::{objects_at, Footprint};

/// Run a first-load program whose only loader is `loader`: `warm` loads
/// the warm-up object, `measured` each counted one (the program's own
/// `measured_load`, which callgrind counts alone); both take a path and
/// whether to bind now, and return what keeps the object loaded or the
/// loader's error.
pub fn run<T>(
    loader: &str,
    warm: impl Fn(&CStr, bool) -> Result<T, String>,
    measured: impl Fn(&CStr, bool) -> Result<T, String>,
) {
    let args: Vec<String> = std::env::args().collect();
    let usage = format!("usage: {} {loader} now|lazy PATH|DIR [WARM_PATH]", args[0]);
    let (now, path) = match &args[1..] {
        [l, m, p, ..] if l == loader && (m == "now" || m == "lazy") => (m == "now", p.as_str()),
        _ => panic!("{usage}"),
    };
    let c = |p: &str| CString::new(std::path::Path::new(p).as_os_str().as_bytes()).unwrap();
    let fail = |what: String| -> ! {
        eprintln!("{loader}: {what}");
        std::process::exit(1)
    };
    let _warm = args.get(4).map(|w| {
        warm(&c(w), now)
            .unwrap_or_else(|e| fail(format!("cannot load the warm-up object {w}: {e}")))
    });
    let targets: Vec<CString> = objects_at(path).iter().map(|p| c(p)).collect();
    let mut kept = Vec::with_capacity(targets.len());
    // Where the top of the heap sits in its page decides whether a load's
    // last few hundred bytes of records take one page more or not: the
    // bench moves it from run to run, and takes the mean.
    let _heap_offset: Vec<u8> = Vec::with_capacity(heap_offset());
    let before = Footprint::now();
    let start = std::time::Instant::now();
    for target in &targets {
        match measured(target, now) {
            Ok(t) => kept.push(t),
            Err(e) => fail(format!("cannot load {}: {e}", target.to_string_lossy())),
        }
    }
    let ns = start.elapsed().as_nanos();
    let grown = Footprint::now().since(before);
    println!(
        "{{\"loader\":\"{loader}\",\"ns\":{ns},\"rss_kb\":{},\"anon_kb\":{},\"mappings\":{},\"heap_bytes\":{},\"objects\":{}}}",
        grown.rss_kb,
        grown.anon_kb,
        grown.mappings,
        grown.heap_bytes,
        grown.objects
    );
    // Left loaded: unloading is not measured.
    std::mem::forget(kept);
}

/// Bytes to allocate, and keep, just before the counted loads:
/// `FIRST_LOAD_HEAP_OFFSET`, or none.
fn heap_offset() -> usize {
    std::env::var("FIRST_LOAD_HEAP_OFFSET")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The text of a `dlerror` result (empty for NULL).
///
/// # Safety
/// `e` is NULL or a C string.
pub unsafe fn error_text(e: *const c_char) -> String {
    if e.is_null() {
        return String::new();
    }
    // SAFETY: a C string, as the caller promises.
    unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned()
}

/// A first-load program for a loader with `dlopen`'s shape: defines its
/// `measured_load` (unmangled and not inlined, so that `valgrind
/// --tool=callgrind --toggle-collect=measured_load` counts this call and
/// nothing else), the same load uncounted for the warm-up object, and
/// `main`. The program defines `unsafe fn open(*const c_char, c_int) ->
/// *mut c_void` and `unsafe fn error() -> *const c_char` (its `dlerror`).
#[macro_export]
macro_rules! dlopen_program {
    ($loader:literal) => {
        /// The measured call.
        #[inline(never)]
        #[no_mangle]
        pub fn measured_load(
            path: &std::ffi::CStr,
            now: bool,
        ) -> Result<*mut std::ffi::c_void, String> {
            load(path, now)
        }

        /// The same load, for the warm-up object (not counted).
        #[inline(never)]
        fn load(path: &std::ffi::CStr, now: bool) -> Result<*mut std::ffi::c_void, String> {
            let mode = if now { libc::RTLD_NOW } else { libc::RTLD_LAZY };
            // SAFETY: `path` is a C string; the error is read at once.
            unsafe {
                let h = open(path.as_ptr(), mode);
                if h.is_null() {
                    return Err($crate::first_load::error_text(error()));
                }
                Ok(h)
            }
        }

        fn main() {
            $crate::first_load::run($loader, load, measured_load);
        }
    };
}
