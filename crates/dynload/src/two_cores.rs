//! One big piece of memory work split over two threads: the largest
//! objects' RELRO copies (`map::populate_big_relro`) and their run of
//! RELATIVE relocations.
//!
//! Why: libLLVM-15's load spends milliseconds having the kernel copy 8 MiB
//! of RELRO and writing 362,379 RELATIVE relocations, on one core while
//! the machine's other core idles. With the copy on two threads its first
//! load took 0.781 and 0.770 of glibc's time against 0.813 and 0.829 on
//! one (two series of 41 interleaved fresh processes each, an Intel
//! machine); when RELRO went to huge pages,
//! both pieces on two threads took the load to 0.93 of its time on one.
//! A bare thread is started per piece of work (see [`join`]) rather than
//! kept in a pool: only loads that take milliseconds qualify, and an idle
//! thread in every process that ever loaded a big library would be a cost
//! of its own.

use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

/// Pieces of work that ran on two threads (for `--stats` and tests).
static SPLIT: AtomicU64 = AtomicU64::new(0);

/// The helper's stack: the work needs little.
const HELPER_STACK: usize = 256 * 1024;

/// Run `helper` on a thread of its own while `here` runs on this one, and
/// return both results. If no thread can be started (a limit on threads, or
/// a test that made it fail), `helper` runs here after `here`: the results
/// are the same, only later.
///
/// The helper is a bare thread made with `clone`, not a pthread: glibc
/// marks a process that ever started a pthread as multi-threaded for good
/// (`__libc_single_threaded`, which makes its malloc and libstdc++'s
/// reference counts take atomic paths), and a load should not change that.
/// So `helper` must not use thread-local storage, whose pointer it shares
/// with this thread: no allocation, no glibc call that may set `errno`, no
/// panic (its system calls go through rustix's raw backend). It starts with
/// every signal blocked, so that no handler of the program runs on it.
pub(crate) fn join<A: Send, B, F: FnOnce() -> A + Send>(
    helper: F,
    here: impl FnOnce() -> B,
) -> (A, B) {
    let mut task = Task::<F, A> {
        work: Some(helper),
        result: None,
    };
    let started = if crate::fault::injected(crate::fault::Syscall::Thread).is_some() {
        None
    } else {
        // SAFETY: `task` outlives the thread: `Started` waits for it to end
        // when dropped, before `task` goes out of scope, even if `here`
        // panics. `run::<F, A>` matches the task's type.
        unsafe { Started::new(run::<F, A>, (&mut task as *mut Task<F, A>).cast()) }
    };
    let b = here();
    let a = match started {
        Some(thread) => {
            drop(thread);
            SPLIT.fetch_add(1, Ordering::Relaxed);
            task.result.take()
        }
        None => None,
    };
    // (Not started, or, not reached, started without running the task.)
    let a = a.unwrap_or_else(|| (task.work.take().expect("the task runs once"))());
    (a, b)
}

/// The helper's work and, once done, its result.
struct Task<F, A> {
    work: Option<F>,
    result: Option<A>,
}

/// The helper thread's entry point (`clone` calls it with the task).
extern "C" fn run<F: FnOnce() -> A, A>(task: *mut c_void) -> c_int {
    // SAFETY: `join` passed its `Task<F, A>`, which it leaves alone until
    // this thread has ended.
    let task = unsafe { &mut *task.cast::<Task<F, A>>() };
    if let Some(work) = task.work.take() {
        task.result = Some(work());
    }
    0
}

/// A started helper thread; dropping it waits for the thread to end and
/// frees its stack.
struct Started {
    stack: *mut c_void,
    /// The thread's id until it ends; the kernel clears it then and wakes
    /// a waiter (`CLONE_CHILD_CLEARTID`, as `pthread_join` waits).
    tid: Box<AtomicI32>,
}

impl Started {
    /// Start `entry(arg)` on a new thread of this process.
    ///
    /// # Safety
    /// What `arg` points to must stay valid until the returned value is
    /// dropped, and `entry` must keep to what `join` says a helper may do.
    unsafe fn new(entry: extern "C" fn(*mut c_void) -> c_int, arg: *mut c_void) -> Option<Started> {
        // SAFETY: a fresh private anonymous mapping; no address is given.
        let stack = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                HELPER_STACK,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if stack == libc::MAP_FAILED {
            return None;
        }
        // The lowest page stays unmapped in effect: an overflow faults
        // instead of writing below the stack.
        // SAFETY: the first page of the mapping just made.
        unsafe { libc::mprotect(stack, 4096, libc::PROT_NONE) };
        let tid = Box::new(AtomicI32::new(0));
        let flags = libc::CLONE_VM
            | libc::CLONE_FS
            | libc::CLONE_FILES
            | libc::CLONE_SIGHAND
            | libc::CLONE_THREAD
            | libc::CLONE_SYSVSEM
            | libc::CLONE_PARENT_SETTID
            | libc::CLONE_CHILD_CLEARTID;
        let top = stack.wrapping_byte_add(HELPER_STACK);
        let tid_ptr = tid.as_ptr();
        let made = with_signals_blocked(|| {
            // SAFETY: `top` is the top of a stack of HELPER_STACK bytes that
            // lives until the thread has ended (`drop`); the thread shares
            // this one's memory and runs `entry(arg)` under the caller's
            // promise; `tid_ptr` lives in `tid`, kept as long as the stack.
            unsafe {
                libc::clone(
                    entry,
                    top,
                    flags,
                    arg,
                    tid_ptr,
                    std::ptr::null_mut::<c_void>(),
                    tid_ptr,
                )
            }
        });
        if made <= 0 {
            // SAFETY: the mapping made above, which no thread uses.
            unsafe { libc::munmap(stack, HELPER_STACK) };
            return None;
        }
        Some(Started { stack, tid })
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        loop {
            let tid = self.tid.load(Ordering::Acquire);
            if tid == 0 {
                break;
            }
            // SAFETY: waits while the word still holds `tid`; the kernel
            // clears it and wakes this waiter when the thread ends.
            unsafe {
                libc::syscall(
                    libc::SYS_futex,
                    self.tid.as_ptr(),
                    libc::FUTEX_WAIT,
                    tid,
                    std::ptr::null::<libc::timespec>(),
                )
            };
        }
        // SAFETY: the thread has ended; nothing uses its stack any more.
        unsafe { libc::munmap(self.stack, HELPER_STACK) };
    }
}

/// How many pieces of work have run on two threads in this process.
pub fn splits() -> u64 {
    SPLIT.load(Ordering::Relaxed)
}

/// Run `f` with every signal blocked in this thread, then restore the mask
/// (threads started inside inherit the blocked mask). The system call is
/// made directly: glibc's `pthread_sigmask` leaves its own two signals
/// (thread cancellation and set*id) unblocked, and glibc only sends those
/// to threads it started, whose handlers would not expect a bare thread.
fn with_signals_blocked<T>(f: impl FnOnce() -> T) -> T {
    let all: u64 = !0;
    let mut old: u64 = 0;
    // SAFETY: the kernel's signal set is 8 bytes on x86_64; both pointers
    // are valid for that; only this thread's mask changes.
    let blocked = unsafe { sigprocmask(libc::SIG_BLOCK, &all, &mut old) } == 0;
    let result = f();
    if blocked {
        // SAFETY: restores the mask saved above.
        unsafe { sigprocmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    }
    result
}

/// `rt_sigprocmask` with the kernel's 8-byte signal set.
///
/// # Safety
/// `set` is null or points to 8 readable bytes, `old` null or to 8
/// writable ones.
unsafe fn sigprocmask(how: c_int, set: *const u64, old: *mut u64) -> i64 {
    // SAFETY: as the caller promises.
    unsafe { libc::syscall(libc::SYS_rt_sigprocmask, how, set, old, 8usize) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_halves_run_and_their_results_come_back() {
        let before = splits();
        let data: Vec<u64> = (0..100_000).collect();
        let (a, b) = join(
            || data[50_000..].iter().sum::<u64>(),
            || data[..50_000].iter().sum::<u64>(),
        );
        assert_eq!(a + b, data.iter().sum::<u64>());
        assert!(splits() > before);
    }

    /// This thread's signal mask.
    fn mask() -> u64 {
        let mut m = 0u64;
        // SAFETY: reads the mask into `m`.
        unsafe { sigprocmask(libc::SIG_BLOCK, std::ptr::null(), &mut m) };
        m
    }

    #[test]
    fn the_helper_has_every_signal_blocked_and_this_thread_keeps_its_mask() {
        let mine = mask();
        let (helpers, _) = join(mask, || ());
        // (The kernel never blocks SIGKILL and SIGSTOP.)
        let unblockable = 1 << (libc::SIGKILL - 1) | 1 << (libc::SIGSTOP - 1);
        assert_eq!(helpers, !unblockable);
        assert_eq!(mask(), mine);
    }
}
