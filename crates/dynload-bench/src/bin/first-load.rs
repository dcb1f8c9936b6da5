//! One first load in a fresh process, for `scripts/bench.py`: the time of
//! the `dlopen` call alone, and what it added to resident memory, mappings
//! and the heap. Prints one JSON object.
//!
//! `first-load glibc|dynload now|lazy PATH [WARM_PATH]`: with `WARM_PATH`,
//! that object is loaded first, so the figures are for one more object, not
//! for the loader's start-up. A directory as `PATH` loads each `*.so` in it,
//! in name order, and reports the totals and their number (`objects`): the
//! memory of many copies of one object, divided by their number, does not
//! depend on which pages of the loader's own code the first one touched.
//!
//! The dlopen-rs crate has its own program (`first-load-dlopen-rs`): it
//! registers itself with glibc from a constructor, and must not run here.

use std::ffi::{c_int, c_void, CStr, CString};
use std::os::unix::ffi::OsStrExt;

use dynload_bench::{objects_at, Footprint};

/// The measured call. Not inlined, and unmangled, so that
/// `valgrind --tool=callgrind --toggle-collect=measured_load` counts the
/// instructions of this call and nothing else.
#[inline(never)]
#[no_mangle]
pub fn measured_load(dynload: bool, path: &CStr, mode: c_int) -> *mut c_void {
    load(dynload, path, mode)
}

/// The same load, for the warm-up object (not counted).
#[inline(never)]
fn load(dynload: bool, path: &CStr, mode: c_int) -> *mut c_void {
    let path = path.as_ptr();
    // SAFETY: `path` is a C string.
    unsafe {
        if dynload {
            dynload::dlfcn::dlopen_from(path, mode, measured_load as *const c_void)
        } else {
            libc::dlopen(path, mode)
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: first-load glibc|dynload now|lazy PATH|DIR [WARM_PATH]";
    let (loader, mode, path) = match &args[1..] {
        [l, m, p, ..] => (l.as_str(), m.as_str(), p),
        _ => panic!("{usage}"),
    };
    let dynload = match loader {
        "glibc" => false,
        "dynload" => true,
        _ => panic!("{usage}"),
    };
    let mode = match mode {
        "now" => libc::RTLD_NOW,
        "lazy" => libc::RTLD_LAZY,
        _ => panic!("{usage}"),
    };
    let c = |p: &str| CString::new(std::path::Path::new(p).as_os_str().as_bytes()).unwrap();
    if let Some(warm) = args.get(4) {
        if load(dynload, &c(warm), mode).is_null() {
            eprintln!("{loader}: cannot load the warm-up object {warm}");
            std::process::exit(1);
        }
    }
    let targets: Vec<CString> = objects_at(path).iter().map(|p| c(p)).collect();
    let before = Footprint::now();
    let start = std::time::Instant::now();
    let mut h = std::ptr::null_mut();
    for target in &targets {
        h = measured_load(dynload, target, mode);
        if h.is_null() {
            break;
        }
    }
    let ns = start.elapsed().as_nanos();
    let grown = Footprint::now().since(before);
    if h.is_null() {
        // SAFETY: reading the pending error of this thread.
        let e = unsafe {
            if dynload {
                dynload::dlfcn::dl_error()
            } else {
                libc::dlerror()
            }
        };
        // SAFETY: dlerror's string, or NULL.
        let msg = (!e.is_null()).then(|| unsafe { std::ffi::CStr::from_ptr(e) }.to_string_lossy());
        eprintln!("{loader}: cannot load {path}: {}", msg.unwrap_or_default());
        std::process::exit(1);
    }
    println!(
        "{{\"loader\":\"{loader}\",\"ns\":{ns},\"rss_kb\":{},\"mappings\":{},\"heap_bytes\":{},\"objects\":{}}}",
        grown.rss_kb,
        grown.mappings,
        grown.heap_bytes,
        targets.len()
    );
}
