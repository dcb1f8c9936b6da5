//! `libdynload.so`: dynload's dlfcn C ABI.
//!
//! Preload it (`LD_PRELOAD=libdynload.so PROGRAM`, or `dynload run --
//! PROGRAM`) and every runtime load of an unmodified program goes through
//! dynload: these unversioned definitions come before libc's in the global
//! scope, so they satisfy the program's `dlopen@GLIBC_2.34` references.
//! glibc's internal loads (NSS, iconv) do not use these entry points and
//! stay glibc's. No logic lives here: see `dynload::dlfcn`.

use std::ffi::{c_char, c_int, c_long, c_void};

use dynload::dlfcn;

/// `dlopen(3)`. A tail jump keeps the caller's return address on the stack,
/// where dynload reads it (the caller's RPATH/RUNPATH matter).
///
/// # Safety
/// As `dlopen(3)`.
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlopen(file: *const c_char, mode: c_int) -> *mut c_void {
    core::arch::naked_asm!("jmp {}", sym dlfcn::dlopen_entry)
}

/// `dlmopen(3)`: LM_ID_BASE only.
///
/// # Safety
/// As `dlmopen(3)`.
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlmopen(lmid: c_long, file: *const c_char, mode: c_int) -> *mut c_void {
    core::arch::naked_asm!("jmp {}", sym dlfcn::dlmopen_entry)
}

/// `dlsym(3)`.
///
/// # Safety
/// As `dlsym(3)`.
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlsym(handle: *mut c_void, name: *const c_char) -> *mut c_void {
    core::arch::naked_asm!("jmp {}", sym dlfcn::dlsym_entry)
}

/// `dlvsym(3)`.
///
/// # Safety
/// As `dlvsym(3)`.
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlvsym(
    handle: *mut c_void,
    name: *const c_char,
    version: *const c_char,
) -> *mut c_void {
    core::arch::naked_asm!("jmp {}", sym dlfcn::dlvsym_entry)
}

/// `dlclose(3)`.
///
/// # Safety
/// As `dlclose(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlclose(handle: *mut c_void) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { dlfcn::dl_close(handle) }
}

/// `dlerror(3)`.
///
/// # Safety
/// As `dlerror(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlerror() -> *mut c_char {
    // SAFETY: forwarded contract.
    unsafe { dlfcn::dl_error() }
}

/// `dladdr(3)`.
///
/// # Safety
/// As `dladdr(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dladdr(addr: *const c_void, info: *mut libc::Dl_info) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { dlfcn::dl_addr(addr, info) }
}

/// `dladdr1(3)`.
///
/// # Safety
/// As `dladdr1(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dladdr1(
    addr: *const c_void,
    info: *mut libc::Dl_info,
    extra: *mut *mut c_void,
    flags: c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { dlfcn::dl_addr1(addr, info, extra, flags) }
}

/// `dlinfo(3)`.
///
/// # Safety
/// As `dlinfo(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlinfo(handle: *mut c_void, request: c_int, arg: *mut c_void) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { dlfcn::dl_info(handle, request, arg) }
}

/// `dl_iterate_phdr(3)`: glibc's objects, then dynload's.
///
/// # Safety
/// As `dl_iterate_phdr(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dl_iterate_phdr(
    callback: Option<unsafe extern "C" fn(*mut libc::dl_phdr_info, usize, *mut c_void) -> c_int>,
    data: *mut c_void,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { dlfcn::dl_iterate_phdr(callback, data) }
}

// `_dl_find_object` is exported from here too: the loader crate defines it
// under its C name (dynload::unwind), for programs that link it as well.

/// dynload's version string (see `dynload.h`).
#[unsafe(no_mangle)]
pub extern "C" fn dynload_version() -> *const c_char {
    dlfcn::VERSION.as_ptr()
}

/// A longer explanation of this thread's last dl* error: the dlerror text
/// plus what dynload knows about why (see `dynload.h`). NULL when the last
/// call succeeded.
#[unsafe(no_mangle)]
pub extern "C" fn dynload_explain_error() -> *const c_char {
    dlfcn::last_explanation()
}

/// At exit, `dynload run --stats` wants a summary: glibc runs this
/// object's `.fini_array` after the program's `atexit` handlers.
extern "C" fn report_at_exit() {
    dlfcn::report_at_exit();
}

#[used]
#[unsafe(link_section = ".fini_array")]
static REPORT_AT_EXIT: extern "C" fn() = report_at_exit;
