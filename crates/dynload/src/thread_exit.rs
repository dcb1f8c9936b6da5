//! `thread_local` destructors registered by dynload's objects.
//!
//! C++ `thread_local` objects and Rust `thread_local!` values with `Drop`
//! register their destructors through `__cxa_thread_atexit_impl(func, obj,
//! dso_symbol)`. glibc attributes a registration to the object containing
//! `dso_symbol` and keeps that object loaded until the destructor has run;
//! for an address it does not know (any of dynload's objects) it blames the
//! main program, so a dlclose followed by a thread exit would call into
//! unmapped memory. Objects loaded by dynload are bound to
//! [`thread_atexit`] instead: it counts the registration against the
//! object (see `Object::tls_dtors`) and hands glibc a wrapper that lives in
//! dynload's own object, which runs the destructor and then lowers the
//! count (unloading the object if it was closed meanwhile).
//!
//! Neither path waits for the loader lock: a thread may exit while another
//! holds it and waits for that thread (a constructor that joins a worker),
//! and glibc's thread exit does not wait either. The object is found in the
//! lock-free table of `unwind`; an unload the exiting thread cannot do at
//! once is left to the lock's holder (see `unload::collect_when_idle`).
//!
//! One step beyond glibc: when the last handle of an object is closed, the
//! destructors that the *closing* thread has pending for it run at once
//! (that thread could only reach those values through the object, which is
//! going away). Otherwise every Rust cdylib that ever spawned a thread or
//! printed from the main thread would stay loaded until the process ends,
//! which is what stops hot reloading under glibc. Destructors pending on
//! other live threads still keep the object loaded until those threads exit.

use std::cell::{Cell, RefCell};
use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use crate::host::{glibc, ThreadDtor};
use crate::object::ObjId;

pub(crate) struct Pending {
    func: ThreadDtor,
    arg: *mut c_void,
    id: ObjId,
    /// The object's `tls_dtors`.
    count: Arc<AtomicUsize>,
    /// Run early by a dlclose on this thread; glibc's later call only frees.
    done: Cell<bool>,
}

thread_local! {
    /// This thread's registrations that have not run, oldest first.
    static MINE: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// `__cxa_thread_atexit_impl` (and libstdc++'s `__cxa_thread_atexit`) for
/// objects loaded by dynload.
///
/// # Safety
/// As glibc's: `func(arg)` must be safe to call when this thread exits.
pub unsafe extern "C" fn thread_atexit(
    func: ThreadDtor,
    arg: *mut c_void,
    dso_symbol: *mut c_void,
) -> c_int {
    let Some((id, count)) = crate::unwind::tls_counter_at(dso_symbol as usize) else {
        // SAFETY: glibc's function with the caller's arguments.
        return unsafe { (glibc().thread_atexit)(func, arg, dso_symbol) };
    };
    count.fetch_add(1, SeqCst);
    let pending = Box::into_raw(Box::new(Pending {
        func,
        arg,
        id,
        count,
        done: Cell::new(false),
    }));
    // The wrapper's own address names dynload's object, which glibc then
    // keeps loaded (it never unloads the main program or libdynload.so).
    let here = run_pending as *const () as *mut c_void;
    // SAFETY: `run_pending` takes ownership of `pending` when it runs.
    let r = unsafe { (glibc().thread_atexit)(run_pending, pending as *mut c_void, here) };
    if r != 0 {
        // SAFETY: glibc did not take it.
        let p = unsafe { Box::from_raw(pending) };
        p.count.fetch_sub(1, SeqCst);
    } else {
        let _ = MINE.try_with(|m| m.borrow_mut().push(pending as usize));
    }
    r
}

/// How many registrations this thread has pending, per object.
pub(crate) fn this_threads_counts() -> std::collections::HashMap<ObjId, usize> {
    let mut counts = std::collections::HashMap::new();
    let _ = MINE.try_with(|m| {
        for &p in m.borrow().iter() {
            // SAFETY: records in MINE are live until their glibc call.
            *counts
                .entry(unsafe { (*(p as *const Pending)).id })
                .or_insert(0) += 1;
        }
    });
    counts
}

/// Take this thread's pending registrations for objects that `wanted`
/// accepts, newest first (the order thread exit would run them in).
pub(crate) fn take_this_threads(wanted: impl Fn(ObjId) -> bool) -> Vec<*const Pending> {
    MINE.try_with(|m| {
        let mut m = m.borrow_mut();
        let mut taken = Vec::new();
        m.retain(|&p| {
            // SAFETY: records in MINE are live until their glibc call.
            let hit = wanted(unsafe { (*(p as *const Pending)).id });
            if hit {
                taken.push(p as *const Pending);
            }
            !hit
        });
        taken.reverse();
        taken
    })
    .unwrap_or_default()
}

/// Run a registration taken by [`take_this_threads`] now and lower its
/// object's count. glibc's call at thread exit will only free the record.
///
/// # Safety
/// `p` must come from `take_this_threads` on this thread, and its object
/// must still be mapped.
pub(crate) unsafe fn run_early(p: *const Pending) {
    // SAFETY: live until glibc calls `run_pending`, which this thread does
    // only at its exit.
    let p = unsafe { &*p };
    p.done.set(true);
    // SAFETY: the caller keeps the object mapped.
    unsafe { (p.func)(p.arg) };
    p.count.fetch_sub(1, SeqCst);
}

/// Run one registered destructor at thread exit, then release its object.
unsafe extern "C" fn run_pending(p: *mut c_void) {
    let addr = p as usize;
    // SAFETY: `p` is the box `thread_atexit` leaked for exactly this call.
    let p = unsafe { Box::from_raw(p as *mut Pending) };
    if p.done.get() {
        return;
    }
    let _ = MINE.try_with(|m| m.borrow_mut().retain(|&q| q != addr));
    // SAFETY: the object is still loaded: its count includes this one.
    unsafe { (p.func)(p.arg) };
    if p.count.fetch_sub(1, SeqCst) == 1 {
        crate::unload::collect_when_idle();
    }
}
