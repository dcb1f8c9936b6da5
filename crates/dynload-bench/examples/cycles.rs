//! Open+close cycles of one library, by glibc or by dynload, in a loop of
//! their own: what `perf stat -e user_time,system_time` and callgrind
//! (`--toggle-collect=measured_cycles`) look at when the README splits a
//! criterion case into user and kernel time.
//!
//! `cycles glibc|dynload now|lazy PATH N [DEPENDENCY]` loads DEPENDENCY
//! first (kept), runs 100 uncounted cycles, then N, and prints the mean.

use std::ffi::{c_int, c_void, CString};

/// `n` open+close cycles of `path` (unmangled and not inlined, for
/// callgrind's `--toggle-collect`).
#[no_mangle]
#[inline(never)]
pub extern "C" fn measured_cycles(glibc: bool, path: &CString, mode: c_int, n: usize) {
    for _ in 0..n {
        let handle = open(glibc, path, mode);
        // SAFETY: a handle just returned by the same loader's dlopen.
        let closed = unsafe {
            if glibc {
                libc::dlclose(handle)
            } else {
                dynload::dlfcn::dl_close(handle)
            }
        };
        assert_eq!(closed, 0, "dlclose failed");
    }
}

fn open(glibc: bool, path: &CString, mode: c_int) -> *mut c_void {
    // SAFETY: `path` is a C string; loading runs the library's
    // constructors, which the caller chose to run.
    let handle = unsafe {
        if glibc {
            libc::dlopen(path.as_ptr(), mode)
        } else {
            dynload::dlfcn::dlopen_from(path.as_ptr(), mode, measured_cycles as *const c_void)
        }
    };
    assert!(!handle.is_null(), "cannot load {path:?}");
    handle
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: cycles glibc|dynload now|lazy PATH N [DEPENDENCY]";
    let [_, loader, mode, path, n, rest @ ..] = args.as_slice() else {
        panic!("{usage}");
    };
    let glibc = match loader.as_str() {
        "glibc" => true,
        "dynload" => false,
        _ => panic!("{usage}"),
    };
    let mode = match mode.as_str() {
        "now" => libc::RTLD_NOW,
        "lazy" => libc::RTLD_LAZY,
        _ => panic!("{usage}"),
    };
    let n: usize = n.parse().expect(usage);
    let c = |p: &str| CString::new(p).expect("a path without NUL");
    if let Some(dependency) = rest.first() {
        // Kept loaded: the cycles bind to it.
        open(glibc, &c(dependency), mode);
    }
    let path = c(path);
    measured_cycles(glibc, &path, mode, 100);
    let start = std::time::Instant::now();
    measured_cycles(glibc, &path, mode, n);
    let per_cycle = start.elapsed().as_secs_f64() / n as f64;
    println!("{:.2} us/cycle", per_cycle * 1e6);
}
