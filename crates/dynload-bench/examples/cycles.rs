//! Open+close cycles of one library, by glibc or by dynload, in a loop of
//! their own: what `perf stat -e user_time,system_time` and callgrind
//! (`--toggle-collect=measured_cycles`) look at when the README splits a
//! criterion case into user and kernel time.
//!
//! `cycles glibc|dynload now|lazy PATH N [DEPENDENCY]` loads DEPENDENCY
//! first (kept), runs 100 uncounted cycles, then N, and prints the mean.

use std::ffi::{c_int, CStr, CString};

// (Only `open` and `close` are used here.)
#[allow(dead_code)]
#[path = "../benches/common/dl.rs"]
mod dl;
use dl::{open, Dl, Dynload, Glibc};

/// `n` open+close cycles of `path` (unmangled and not inlined, for
/// callgrind's `--toggle-collect`).
#[no_mangle]
#[inline(never)]
pub fn measured_cycles(glibc: bool, path: &CStr, mode: c_int, n: usize) {
    fn cycles<D: Dl>(path: &CStr, mode: c_int, n: usize) {
        for _ in 0..n {
            let handle = open::<D>(path, mode);
            // SAFETY: a handle just returned by the same loader's dlopen.
            assert_eq!(unsafe { D::close(handle) }, 0, "dlclose failed");
        }
    }
    if glibc {
        cycles::<Glibc>(path, mode, n)
    } else {
        cycles::<Dynload>(path, mode, n)
    }
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
        let dependency = c(dependency);
        if glibc {
            open::<Glibc>(&dependency, mode);
        } else {
            open::<Dynload>(&dependency, mode);
        }
    }
    let path = c(path);
    measured_cycles(glibc, &path, mode, 100);
    let start = std::time::Instant::now();
    measured_cycles(glibc, &path, mode, n);
    let per_cycle = start.elapsed().as_secs_f64() / n as f64;
    println!("{:.2} us/cycle", per_cycle * 1e6);
}
