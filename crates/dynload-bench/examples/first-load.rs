//! `first-load dynload now|lazy PATH|DIR [WARM_PATH]`: one first load by
//! dynload linked into the program (its Rust API's C entry points), in a
//! fresh process, for `scripts/bench.py` (see `dynload_bench::first_load`).
//!
//! glibc and `dynload run` have `first-load-glibc`: a program that links
//! dynload exports dynload's `_dl_find_object`, which would make a
//! preloaded libdynload.so a second loader in the process.

use std::ffi::{c_char, c_int, c_void};

dynload_bench::dlopen_program!("dynload");

/// # Safety
/// `path` is a C string.
unsafe fn open(path: *const c_char, mode: c_int) -> *mut c_void {
    // SAFETY: the caller's C string; the caller is this program's code.
    unsafe { dynload::dlfcn::dlopen_from(path, mode, measured_load as *const c_void) }
}

/// # Safety
/// None beyond dlerror's.
unsafe fn error() -> *const c_char {
    // SAFETY: reads this thread's pending error.
    unsafe { dynload::dlfcn::dl_error() }
}
