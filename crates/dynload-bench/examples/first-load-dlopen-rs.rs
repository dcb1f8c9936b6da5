//! `first-load` for the dlopen-rs crate (same arguments, same output), in
//! its own program because dlopen-rs registers itself with glibc from a
//! constructor.

use dlopen_rs::{ElfLibrary, OpenFlags};
use std::ffi::CStr;

/// The measured call (see `first-load`).
#[inline(never)]
#[no_mangle]
pub fn measured_load(path: &str, flags: OpenFlags) -> Result<ElfLibrary, String> {
    ElfLibrary::dlopen(path, flags).map_err(|e| e.to_string())
}

/// A C path as dlopen-rs takes it.
fn path(p: &CStr) -> Result<&str, String> {
    p.to_str().map_err(|e| e.to_string())
}

fn main() {
    let flags = |now: bool| {
        if now {
            OpenFlags::RTLD_NOW
        } else {
            OpenFlags::RTLD_LAZY
        }
    };
    dynload_bench::first_load::run(
        "dlopen-rs",
        |p, now| ElfLibrary::dlopen(path(p)?, flags(now)).map_err(|e| e.to_string()),
        |p, now| measured_load(path(p)?, flags(now)),
    );
}
