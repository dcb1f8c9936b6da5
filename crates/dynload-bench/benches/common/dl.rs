//! The dlfcn functions of glibc and of dynload behind one trait, for the
//! `loader` bench and the `cycles` example, which include this file by
//! path (in the library crate it would link dynload into the dlopen-rs
//! program, whose `_dl_find_object` it must not meet; `common/mod.rs` is
//! the dlopen-rs bench's too). Both loaders are called
//! through their C entry points with NUL-terminated names, as a C program
//! would: glibc's through `libc`, dynload's through the functions
//! `libdynload.so` exports (`dynload::dlfcn`).

use std::ffi::{c_char, c_int, c_void, CStr};

use dynload_bench::Loader;

/// The dlfcn functions of one loader, statically dispatched so that neither
/// pays for an indirect call the other does not.
pub trait Dl {
    /// Which loader this is.
    const LOADER: Loader;
    /// `dlopen`.
    ///
    /// # Safety
    /// `path` is a C string; loading runs the object's constructors.
    unsafe fn open(path: *const c_char, mode: c_int) -> *mut c_void;
    /// `dlsym`.
    ///
    /// # Safety
    /// `handle` is open (or a pseudo-handle) and `name` a C string.
    unsafe fn sym(handle: *mut c_void, name: *const c_char) -> *mut c_void;
    /// `dlvsym`.
    ///
    /// # Safety
    /// As for [`Dl::sym`], and `v` is a C string.
    unsafe fn vsym(handle: *mut c_void, name: *const c_char, v: *const c_char) -> *mut c_void;
    /// `dlclose`.
    ///
    /// # Safety
    /// `handle` came from [`Dl::open`]; closing may run destructors.
    unsafe fn close(handle: *mut c_void) -> c_int;
    /// `dladdr`.
    ///
    /// # Safety
    /// `info` is writable.
    unsafe fn addr(addr: *const c_void, info: *mut libc::Dl_info) -> c_int;
}

/// glibc's loader, through `libc`.
pub struct Glibc;
impl Dl for Glibc {
    const LOADER: Loader = Loader::Glibc;
    unsafe fn open(path: *const c_char, mode: c_int) -> *mut c_void {
        // SAFETY: the caller passes a C string.
        unsafe { libc::dlopen(path, mode) }
    }
    unsafe fn sym(handle: *mut c_void, name: *const c_char) -> *mut c_void {
        // SAFETY: as above.
        unsafe { libc::dlsym(handle, name) }
    }
    unsafe fn vsym(handle: *mut c_void, name: *const c_char, v: *const c_char) -> *mut c_void {
        // SAFETY: as above.
        unsafe { libc::dlvsym(handle, name, v) }
    }
    unsafe fn close(handle: *mut c_void) -> c_int {
        // SAFETY: a handle from `open`.
        unsafe { libc::dlclose(handle) }
    }
    unsafe fn addr(addr: *const c_void, info: *mut libc::Dl_info) -> c_int {
        // SAFETY: `info` is writable.
        unsafe { libc::dladdr(addr, info) }
    }
}

/// The caller dynload is told about: code of this program, like glibc's
/// return address.
pub fn caller() -> *const c_void {
    caller as *const c_void
}

/// dynload, through the functions `libdynload.so` exports.
pub struct Dynload;
impl Dl for Dynload {
    const LOADER: Loader = Loader::Dynload;
    unsafe fn open(path: *const c_char, mode: c_int) -> *mut c_void {
        // SAFETY: the caller passes a C string.
        unsafe { dynload::dlfcn::dlopen_from(path, mode, caller()) }
    }
    unsafe fn sym(handle: *mut c_void, name: *const c_char) -> *mut c_void {
        // SAFETY: as above.
        unsafe { dynload::dlfcn::dlsym_from(handle, name, caller()) }
    }
    unsafe fn vsym(handle: *mut c_void, name: *const c_char, v: *const c_char) -> *mut c_void {
        // SAFETY: as above.
        unsafe { dynload::dlfcn::dlvsym_from(handle, name, v, caller()) }
    }
    unsafe fn close(handle: *mut c_void) -> c_int {
        // SAFETY: a handle from `open`.
        unsafe { dynload::dlfcn::dl_close(handle) }
    }
    unsafe fn addr(addr: *const c_void, info: *mut libc::Dl_info) -> c_int {
        // SAFETY: `info` is writable.
        unsafe { dynload::dlfcn::dl_addr(addr, info) }
    }
}

/// Open `path` with `D`, or panic with its name.
pub fn open<D: Dl>(path: &CStr, mode: c_int) -> *mut c_void {
    // SAFETY: a C string.
    let h = unsafe { D::open(path.as_ptr(), mode) };
    assert!(!h.is_null(), "{}: cannot open {path:?}", D::LOADER.name());
    h
}
