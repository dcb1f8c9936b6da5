//! `first-load-glibc glibc now|lazy PATH|DIR [WARM_PATH]`: one first load
//! by glibc's `dlopen`, in a fresh process, for `scripts/bench.py` (see
//! `dynload_bench::first_load`). Run with libdynload.so preloaded, it is the
//! `dynload run` configuration: an ordinary program, which this one is (it
//! does not link dynload).

use std::ffi::{c_char, c_int, c_void};

dynload_bench::dlopen_program!("glibc");

/// # Safety
/// `path` is a C string.
unsafe fn open(path: *const c_char, mode: c_int) -> *mut c_void {
    // SAFETY: the caller's C string.
    unsafe { libc::dlopen(path, mode) }
}

/// # Safety
/// None beyond dlerror's.
unsafe fn error() -> *const c_char {
    // SAFETY: reads this thread's pending error.
    unsafe { libc::dlerror() }
}
