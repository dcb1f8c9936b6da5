//! The dlfcn C ABI: `dlopen`, `dlsym`, `dlvsym`, `dlclose`, `dlerror`,
//! `dladdr`, `dladdr1`, `dlinfo`, `dlmopen` and `dl_iterate_phdr`, with
//! glibc's prototypes, per-thread `dlerror` and error wording.
//!
//! These functions are not exported under their C names from this crate
//! (a Rust program using dynload must keep glibc's); `libdynload.so`
//! exports them, and every object dynload loads is bound to them (see
//! [`replacement`]), whether or not libdynload.so is preloaded.
//!
//! `dlopen`, `dlsym`, `dlvsym` and `dlmopen` need their caller's address
//! (search paths and RTLD_NEXT depend on it). Stable Rust cannot read a
//! return address, so their entry points are naked functions that pass the
//! word at the top of the stack as an extra argument.

use std::cell::{Cell, RefCell};
use std::ffi::{c_char, c_int, c_long, c_void, CStr, CString};

use crate::error::{Error, ErrorKind};
use crate::query::{self, Answer, Target};

/// dynload's version, NUL-terminated for C.
pub static VERSION: &std::ffi::CStr = match std::ffi::CStr::from_bytes_with_nul(
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes(),
) {
    Ok(s) => s,
    Err(_) => panic!("version string"),
};

/// A `dlsym` that found nothing: enough to build glibc's message, and to
/// explain it, when asked. Its buffers are reused from miss to miss.
struct Undefined {
    /// The object the message names, as bytes of its name ("" for the
    /// main program, named by its program name).
    object: Vec<u8>,
    symbol: Vec<u8>,
    version: Option<Vec<u8>>,
    target: Target,
    caller: usize,
}

/// One thread's dlerror state.
struct ErrorState {
    /// The message, once built.
    text: Option<CString>,
    /// dlerror returned it already: the next call returns NULL.
    read: bool,
    /// A failed lookup whose message is not built yet.
    undefined: Option<Undefined>,
    /// The long explanation, once built.
    explanation: Option<CString>,
}

impl ErrorState {
    const fn new() -> ErrorState {
        ErrorState {
            text: None,
            read: false,
            undefined: None,
            explanation: None,
        }
    }

    fn clear(&mut self) {
        self.text = None;
        self.read = false;
        self.explanation = None;
        if let Some(u) = &mut self.undefined {
            // Kept for its buffers; `caller == 0` marks it unused.
            u.caller = 0;
        }
    }

    fn pending_undefined(&self) -> Option<&Undefined> {
        self.undefined.as_ref().filter(|u| u.caller != 0)
    }

    /// The message, built now if the error is a lazy one.
    fn text(&mut self) -> Option<&CString> {
        if self.text.is_none() {
            let u = self.pending_undefined()?;
            let object = if u.object.is_empty() {
                crate::process::program_name()
            } else {
                String::from_utf8_lossy(&u.object).into_owned()
            };
            let e = Error::UndefinedSymbol {
                object,
                symbol: String::from_utf8_lossy(&u.symbol).into_owned(),
                version: u
                    .version
                    .as_deref()
                    .map(|v| String::from_utf8_lossy(v).into_owned()),
                searched: Vec::new(),
                near_misses: Vec::new(),
            };
            self.text = Some(c_string(e.to_string()));
        }
        self.text.as_ref()
    }
}

thread_local! {
    static LAST_ERROR: RefCell<ErrorState> = const { RefCell::new(ErrorState::new()) };
    /// LAST_ERROR may hold something. A successful call reads only this:
    /// it has no destructor, so reaching it costs no registration check.
    static ERROR_SET: Cell<bool> = const { Cell::new(false) };
}

fn c_string(s: String) -> CString {
    CString::new(s.replace('\0', "")).unwrap_or_default()
}

/// This thread's last error, explained (NULL if the last call succeeded).
/// A failed lookup's explanation walks its scopes again, as they are now.
pub fn last_explanation() -> *const c_char {
    LAST_ERROR
        .try_with(|e| {
            let Ok(mut e) = e.try_borrow_mut() else {
                return std::ptr::null();
            };
            if e.explanation.is_none() {
                if let Some(u) = e.pending_undefined() {
                    let err =
                        query::undefined_error(u.target, &u.symbol, u.version.as_deref(), u.caller);
                    e.explanation = Some(c_string(err.explain()));
                }
            }
            e.explanation
                .as_ref()
                .map_or(std::ptr::null(), |s| s.as_ptr())
        })
        .unwrap_or(std::ptr::null())
}

/// Every dl* call clears a pending error on entry, as glibc's
/// `_dlerror_run` does.
fn clear_error() {
    if !ERROR_SET.get() {
        return;
    }
    ERROR_SET.set(false);
    let _ = LAST_ERROR.try_with(|e| {
        if let Ok(mut e) = e.try_borrow_mut() {
            e.clear();
        }
    });
}

fn set_error(err: &Error) {
    ERROR_SET.set(true);
    let _ = LAST_ERROR.try_with(|e| {
        if let Ok(mut e) = e.try_borrow_mut() {
            e.clear();
            e.text = Some(c_string(err.to_string()));
            e.explanation = Some(c_string(err.explain()));
        }
    });
}

/// Record a lookup that found nothing, without building its message.
fn set_undefined(
    object: &[u8],
    symbol: &[u8],
    version: Option<&[u8]>,
    target: Target,
    caller: usize,
) {
    ERROR_SET.set(true);
    let _ = LAST_ERROR.try_with(|e| {
        let Ok(mut e) = e.try_borrow_mut() else {
            return;
        };
        e.clear();
        let u = e.undefined.get_or_insert_with(|| Undefined {
            object: Vec::new(),
            symbol: Vec::new(),
            version: None,
            target,
            caller,
        });
        u.object.clear();
        u.object.extend_from_slice(object);
        u.symbol.clear();
        u.symbol.extend_from_slice(symbol);
        u.version = version.map(<[u8]>::to_vec);
        u.target = target;
        // (Never 0: the caller's address is in some code.)
        u.caller = caller.max(1);
    });
}

/// Run `f`, turning a panic into an error: a Rust panic must never unwind
/// into C callers.
fn guarded<T>(f: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => Err(Error::internal(p.as_ref())),
    }
}

fn bytes<'a>(p: *const c_char) -> Option<&'a [u8]> {
    // SAFETY: C callers pass NUL-terminated strings (or NULL).
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_bytes())
}

/// `dlopen` with the caller's address.
///
/// # Safety
/// As for the C function: valid C strings and pointers, as glibc requires.
pub unsafe extern "C" fn dlopen_from(
    file: *const c_char,
    mode: c_int,
    caller: *const c_void,
) -> *mut c_void {
    clear_error();
    // RTLD_NOLOAD of an object that is not loaded: NULL, and no error.
    or_null(guarded(|| {
        let opened = crate::load::dlopen(bytes(file), mode, caller as usize)?;
        Ok(opened.map_or(std::ptr::null_mut(), |o| o.handle as *mut c_void))
    }))
}

fn target_of(handle: *mut c_void) -> Target {
    match handle as isize {
        0 => Target::Default,
        -1 => Target::Next,
        h => Target::Handle(h as usize),
    }
}

/// `dlsym` with the caller's address.
///
/// # Safety
/// As for the C function: valid C strings and pointers, as glibc requires.
pub unsafe extern "C" fn dlsym_from(
    handle: *mut c_void,
    name: *const c_char,
    caller: *const c_void,
) -> *mut c_void {
    // A handle (or RTLD_DEFAULT from one call site) this thread looks up
    // again and again is answered from its copy of the search list, before
    // anything else.
    let name = bytes(name);
    if let Some(n) = name {
        let (h, c) = (handle as usize, caller as usize);
        let undefined = |object: &[u8]| set_undefined(object, n, None, target_of(handle), c);
        if let Some(found) = answered(query::cached_lookup(h, c, n, undefined)) {
            return found;
        }
    }
    lookup(handle, name, None, caller)
}

/// What `dlsym` or `dlvsym` returns for a copy's answer (None: take the
/// locked lookup).
#[inline(always)]
fn answered(answer: Option<Answer>) -> Option<*mut c_void> {
    match answer? {
        Answer::Address(addr) => {
            clear_error();
            Some(addr as *mut c_void)
        }
        Answer::Undefined => Some(std::ptr::null_mut()),
    }
}

/// `dlvsym` with the caller's address.
///
/// # Safety
/// As for the C function: valid C strings and pointers, as glibc requires.
pub unsafe extern "C" fn dlvsym_from(
    handle: *mut c_void,
    name: *const c_char,
    version: *const c_char,
    caller: *const c_void,
) -> *mut c_void {
    // As `dlsym`: this thread's copy of the search list first.
    let name = bytes(name);
    if let (Some(n), Some(v)) = (name, bytes(version)) {
        let (h, c) = (handle as usize, caller as usize);
        let undefined = |object: &[u8]| set_undefined(object, n, Some(v), target_of(handle), c);
        if let Some(found) = answered(query::cached_lookup_version(h, c, n, v, undefined)) {
            return found;
        }
    }
    lookup(handle, name, Some(version), caller)
}

/// `name` is the C string's bytes, measured by the caller (None: NULL).
fn lookup(
    handle: *mut c_void,
    name: Option<&[u8]>,
    version: Option<*const c_char>,
    caller: *const c_void,
) -> *mut c_void {
    clear_error();
    or_null(guarded(|| {
        let name =
            name.ok_or_else(|| Error::load(ErrorKind::InvalidArgument, "", "symbol name is NULL"))?;
        let version =
            match version {
                Some(v) => Some(bytes(v).ok_or_else(|| {
                    Error::load(ErrorKind::InvalidArgument, "", "version is NULL")
                })?),
                None => None,
            };
        let target = target_of(handle);
        let caller = caller as usize;
        let found = query::lookup_symbol_or_miss(target, name, version, caller, |o| {
            set_undefined(o, name, version, target, caller)
        })?;
        Ok(found.map_or(std::ptr::null_mut(), |a| a as *mut c_void))
    }))
}

/// The value, or NULL with the error recorded for dlerror.
fn or_null(r: Result<*mut c_void, Error>) -> *mut c_void {
    r.unwrap_or_else(|e| {
        set_error(&e);
        std::ptr::null_mut()
    })
}

/// `dlmopen` with the caller's address. dynload has one namespace, shared
/// with glibc's base namespace: LM_ID_BASE works, new namespaces do not.
///
/// # Safety
/// As for the C function: valid C strings and pointers, as glibc requires.
pub unsafe extern "C" fn dlmopen_from(
    lmid: c_long,
    file: *const c_char,
    mode: c_int,
    caller: *const c_void,
) -> *mut c_void {
    if lmid == 0 {
        // SAFETY: forwarding the caller's own arguments.
        return unsafe { dlopen_from(file, mode, caller) };
    }
    clear_error();
    let name = bytes(file)
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default();
    let e = if lmid == -1 {
        Error::unsupported(name, "dlmopen(LM_ID_NEWLM) is not supported by dynload")
            .with_why("dynload shares glibc's base namespace; it cannot make a second copy of libc")
    } else {
        Error::load(
            ErrorKind::InvalidArgument,
            name,
            "invalid target namespace in dlmopen()",
        )
    };
    set_error(&e);
    std::ptr::null_mut()
}

/// `dlclose`.
///
/// # Safety
/// As for the C function: valid C strings and pointers, as glibc requires.
pub unsafe extern "C" fn dl_close(handle: *mut c_void) -> c_int {
    clear_error();
    let r = guarded(|| crate::unload::dlclose_handle(handle as usize));
    match r {
        Ok(()) => 0,
        Err(e) => {
            set_error(&e);
            -1
        }
    }
}

/// `dlerror`: the pending message once, then NULL.
///
/// # Safety
/// As for the C function: valid C strings and pointers, as glibc requires.
pub unsafe extern "C" fn dl_error() -> *mut c_char {
    LAST_ERROR
        .try_with(|e| {
            let Ok(mut e) = e.try_borrow_mut() else {
                return std::ptr::null_mut();
            };
            if e.read {
                e.clear();
                return std::ptr::null_mut();
            }
            match e.text() {
                None => std::ptr::null_mut(),
                Some(msg) => {
                    let p = msg.as_ptr() as *mut c_char;
                    e.read = true;
                    p
                }
            }
        })
        .unwrap_or(std::ptr::null_mut())
}

/// `dladdr`: dynload's objects answered here, all others by glibc.
///
/// # Safety
/// As for the C function: valid C strings and pointers, as glibc requires.
pub unsafe extern "C" fn dl_addr(addr: *const c_void, info: *mut libc::Dl_info) -> c_int {
    // SAFETY: forwarding the caller's arguments; flags 0 ignores `extra`.
    unsafe { dl_addr1(addr, info, std::ptr::null_mut(), 0) }
}

const RTLD_DL_SYMENT: c_int = 1;
const RTLD_DL_LINKMAP: c_int = 2;

/// `dladdr1`.
///
/// # Safety
/// As for the C function: valid C strings and pointers, as glibc requires.
pub unsafe extern "C" fn dl_addr1(
    addr: *const c_void,
    info: *mut libc::Dl_info,
    extra: *mut *mut c_void,
    flags: c_int,
) -> c_int {
    let ours = guarded(|| Ok(query::address_info(addr as usize)))
        .ok()
        .flatten();
    let Some(a) = ours else {
        let g = crate::host::glibc();
        // SAFETY: glibc's dladdr1 with the caller's arguments.
        return unsafe { (g.dladdr1)(addr, info, extra, flags) };
    };
    // SAFETY: the caller passes a valid Dl_info (and `extra` when flags ask).
    unsafe {
        (*info).dli_fname = a.fname;
        (*info).dli_fbase = a.fbase as *mut c_void;
        (*info).dli_sname = a.sname;
        (*info).dli_saddr = a.saddr as *mut c_void;
        match flags {
            RTLD_DL_SYMENT if !extra.is_null() => *extra = a.sym as *mut c_void,
            RTLD_DL_LINKMAP if !extra.is_null() => *extra = a.link_map,
            _ => {}
        }
    }
    1
}

/// `dlinfo`.
///
/// # Safety
/// As for the C function: valid C strings and pointers, as glibc requires.
pub unsafe extern "C" fn dl_info(handle: *mut c_void, request: c_int, arg: *mut c_void) -> c_int {
    clear_error();
    // SAFETY: the caller's `arg` matches the request, as for glibc.
    match guarded(|| unsafe { query::info(handle as usize, request, arg) }) {
        Ok(r) => r,
        Err(e) => {
            set_error(&e);
            -1
        }
    }
}

type Callback = unsafe extern "C" fn(*mut libc::dl_phdr_info, usize, *mut c_void) -> c_int;

/// `dl_iterate_phdr`: glibc's objects, then dynload's, with `dlpi_adds` and
/// `dlpi_subs` counting both worlds so that unwinder caches see changes.
///
/// # Safety
/// As for the C function: valid C strings and pointers, as glibc requires.
pub unsafe extern "C" fn dl_iterate_phdr(callback: Option<Callback>, data: *mut c_void) -> c_int {
    let Some(callback) = callback else { return 0 };
    let (ours, adds, subs) = query::phdr_infos();
    struct Fwd {
        callback: Callback,
        data: *mut c_void,
        adds: u64,
        subs: u64,
        glibc_counters: (u64, u64),
    }
    unsafe extern "C" fn fwd(
        info: *mut libc::dl_phdr_info,
        size: usize,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: glibc passes a valid info of `size` bytes; `data` is our
        // `Fwd`, alive for the whole call.
        unsafe {
            let f = &mut *(data as *mut Fwd);
            let mut copy = *info;
            f.glibc_counters = (copy.dlpi_adds, copy.dlpi_subs);
            copy.dlpi_adds = copy.dlpi_adds.wrapping_add(f.adds);
            copy.dlpi_subs = copy.dlpi_subs.wrapping_add(f.subs);
            (f.callback)(
                &mut copy,
                size.min(std::mem::size_of::<libc::dl_phdr_info>()),
                f.data,
            )
        }
    }
    let mut f = Fwd {
        callback,
        data,
        adds,
        subs,
        glibc_counters: (0, 0),
    };
    let g = crate::host::glibc();
    // SAFETY: glibc's dl_iterate_phdr with our forwarding callback.
    let r = unsafe { (g.dl_iterate_phdr)(Some(fwd), &mut f as *mut Fwd as *mut c_void) };
    if r != 0 {
        return r;
    }
    let (glibc_adds, glibc_subs) = f.glibc_counters;
    for mut info in ours {
        info.dlpi_adds = info.dlpi_adds.wrapping_add(glibc_adds);
        info.dlpi_subs = info.dlpi_subs.wrapping_add(glibc_subs);
        // SAFETY: the caller's callback with a valid info for one of our
        // objects (kept mapped by the loader while it is listed).
        let r = unsafe { callback(&mut info, std::mem::size_of::<libc::dl_phdr_info>(), data) };
        if r != 0 {
            return r;
        }
    }
    0
}

/// Entry point: `dlopen(file, mode)`; passes its return address on.
///
/// # Safety
/// As for the C function: valid C strings and pointers, as glibc requires.
#[unsafe(naked)]
pub unsafe extern "C" fn dlopen_entry(file: *const c_char, mode: c_int) -> *mut c_void {
    core::arch::naked_asm!("mov rdx, [rsp]", "jmp {}", sym dlopen_from)
}

/// Entry point: `dlsym(handle, name)`.
///
/// # Safety
/// As for the C function: valid C strings and pointers, as glibc requires.
#[unsafe(naked)]
pub unsafe extern "C" fn dlsym_entry(handle: *mut c_void, name: *const c_char) -> *mut c_void {
    core::arch::naked_asm!("mov rdx, [rsp]", "jmp {}", sym dlsym_from)
}

/// Entry point: `dlvsym(handle, name, version)`.
///
/// # Safety
/// As for the C function: valid C strings and pointers, as glibc requires.
#[unsafe(naked)]
pub unsafe extern "C" fn dlvsym_entry(
    handle: *mut c_void,
    name: *const c_char,
    version: *const c_char,
) -> *mut c_void {
    core::arch::naked_asm!("mov rcx, [rsp]", "jmp {}", sym dlvsym_from)
}

/// Entry point: `dlmopen(lmid, file, mode)`.
///
/// # Safety
/// As for the C function: valid C strings and pointers, as glibc requires.
#[unsafe(naked)]
pub unsafe extern "C" fn dlmopen_entry(
    lmid: c_long,
    file: *const c_char,
    mode: c_int,
) -> *mut c_void {
    core::arch::naked_asm!("mov rcx, [rsp]", "jmp {}", sym dlmopen_from)
}

pub use crate::unwind::{find_object, DlFindObject};

/// The functions objects loaded by dynload are bound to instead of glibc's
/// (which would treat them as part of the main program, or not know them).
pub(crate) fn replacement(name: &[u8]) -> Option<usize> {
    Some(match name {
        b"dlopen" => dlopen_entry as *const () as usize,
        b"dlsym" => dlsym_entry as *const () as usize,
        b"dlvsym" => dlvsym_entry as *const () as usize,
        b"dlmopen" => dlmopen_entry as *const () as usize,
        b"dlclose" => dl_close as *const () as usize,
        b"dlerror" => dl_error as *const () as usize,
        b"dladdr" => dl_addr as *const () as usize,
        b"dladdr1" => dl_addr1 as *const () as usize,
        b"dlinfo" => dl_info as *const () as usize,
        b"dl_iterate_phdr" => dl_iterate_phdr as *const () as usize,
        b"__tls_get_addr" => crate::tls::tls_get_addr as *const () as usize,
        b"_dl_find_object" => crate::unwind::find_object as *const () as usize,
        // libstdc++'s `__cxa_thread_atexit` only forwards to glibc's
        // `__cxa_thread_atexit_impl`; both are taken over so that the
        // object registering a destructor is known.
        b"__cxa_thread_atexit_impl" | b"__cxa_thread_atexit" => {
            crate::thread_exit::thread_atexit as *const () as usize
        }
        _ => return None,
    })
}

/// Print the `dynload run --stats` summary (DYNLOAD_STATS) to standard
/// error; `libdynload.so` calls this when the process exits.
pub fn report_at_exit() {
    if !crate::process::settings().stats.here() {
        return;
    }
    if let Some(text) = crate::api::summary() {
        eprint!("{text}");
    }
}
