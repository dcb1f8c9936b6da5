//! Fault injection for tests: make the loader's n-th `open`, `mmap`,
//! `mprotect` or thread start from now on fail with a chosen errno, to prove that every
//! such failure ends in a clean error with nothing left mapped, and that a
//! later load succeeds. Off unless a test turns it on (one relaxed atomic
//! load per call otherwise); not reachable from the environment.

use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};

/// The system calls that can be made to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syscall {
    /// Opening a candidate file (during the search).
    Open,
    /// Reserving an object's address range or mapping a segment.
    Mmap,
    /// Changing protections (RELRO after relocation, text relocations).
    Mprotect,
    /// Starting a helper thread (see `two_cores`); its work then runs on
    /// the loading thread, so this fails nothing.
    Thread,
}

static COUNTDOWN: [AtomicU32; 4] = [const { AtomicU32::new(0) }; 4];
static ERRNO: [AtomicI32; 4] = [const { AtomicI32::new(0) }; 4];

/// Instead of an errno: panic at that call (a stand-in for a loader bug),
/// to test that a panic is rolled back like any failure.
pub const PANIC: i32 = i32::MIN;

/// Make the `n`-th (1 = the next) call of `call` fail with `errno` (or
/// panic, with [`PANIC`]); `n` 0 turns it off.
pub fn fail_nth(call: Syscall, n: u32, errno: i32) {
    ERRNO[call as usize].store(errno, Ordering::Relaxed);
    COUNTDOWN[call as usize].store(n, Ordering::Relaxed);
}

/// Called before each real call: the errno to fail with, if this is the
/// call chosen.
#[inline]
pub(crate) fn injected(call: Syscall) -> Option<i32> {
    let c = &COUNTDOWN[call as usize];
    if c.load(Ordering::Relaxed) == 0 {
        return None;
    }
    match c.fetch_sub(1, Ordering::Relaxed) {
        1 => match ERRNO[call as usize].load(Ordering::Relaxed) {
            PANIC => panic!("injected panic at {call:?}"),
            errno => Some(errno),
        },
        0 => {
            // Lost a race with another call; leave it off.
            c.store(0, Ordering::Relaxed);
            None
        }
        _ => None,
    }
}

/// A test's function, called by a lookup answered from a thread's copy of
/// a search list (see `query::search_list_copies`) once it has found the
/// copy current and before it reads any object's tables: there, a test can
/// have another thread unload an object, as a thread that is preempted at
/// that point would see it done.
static COPY_READ_HOOK: std::sync::atomic::AtomicPtr<()> =
    std::sync::atomic::AtomicPtr::new(std::ptr::null_mut());

/// Set (or, with None, clear) the function [`copy_read`] calls.
pub fn on_copy_read(hook: Option<fn()>) {
    let p = hook.map_or(std::ptr::null_mut(), |f| f as *mut ());
    COPY_READ_HOOK.store(p, Ordering::Release);
}

/// Called where a copy is about to be read: runs the test's function, if
/// one is set (one load otherwise).
#[inline]
pub(crate) fn copy_read() {
    let p = COPY_READ_HOOK.load(Ordering::Acquire);
    if !p.is_null() {
        // SAFETY: only `on_copy_read` stores here, and it stores `fn()`s.
        let f: fn() = unsafe { std::mem::transmute::<*mut (), fn()>(p) };
        f();
    }
}

/// Is every binding of the relocation pass's fast lane checked against the
/// general walk? (See [`check_fast_lane`].)
static CHECK_FAST_LANE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Check (or stop checking) every binding the relocation pass's fast lane
/// makes against the general walk's binding of the same entry, panicking
/// where they differ; build the global scope's filter, which the lane
/// needs, for every pass, and keep the lane however often it stops, so
/// that small tests' loads take the lane for every entry it knows.
/// (Differential tests run whole scenarios so.)
pub fn check_fast_lane(on: bool) {
    CHECK_FAST_LANE.store(on, Ordering::Relaxed);
}

/// See [`check_fast_lane`].
#[inline]
pub(crate) fn fast_lane_checked() -> bool {
    CHECK_FAST_LANE.load(Ordering::Relaxed)
}
