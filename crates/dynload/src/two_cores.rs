//! Big pieces of memory work split over two threads: the largest objects'
//! RELRO copies (`map::copy_big_relro`, started ahead, see [`Ahead`]) and
//! their run of RELATIVE relocations ([`join`]).
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

use rustix::process::Pid;
use rustix::thread::CpuSet;

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

/// A piece of work cut in chunks, which a helper thread starts on at once
/// and this thread joins in when it gets there ([`Ahead::finish`]): for
/// work this thread would otherwise do later, such as a big object's RELRO
/// copies, which the helper makes while the object's dependencies are
/// relocated. Chunks are handed out one at a time, the helper's from the
/// front and this thread's from the back, so that whichever thread is free
/// takes the next. Dropping it unfinished
/// (a load that failed) stops the helper after its current chunk and waits
/// for it.
///
/// `work(i, on_helper)` does chunk `i`, on the helper or on this thread as
/// `on_helper` says; on the helper it runs under the rules of [`join`] (no
/// thread-local storage). `'static`: nothing it refers to may
/// go away while the helper runs, even if this value is leaked.
pub(crate) struct Ahead<W: Fn(usize, bool) + Sync + 'static> {
    chunks: Box<Chunks<W>>,
    thread: Option<Started>,
}

/// The chunks of an [`Ahead`]: the helper takes them from the front, this
/// thread from the back, so that the two seldom work on the same 2 MiB of
/// memory (whose page table one lock guards) until they meet.
struct Chunks<W> {
    /// The chunks left, `front..back`: `front` in the low 32 bits, `back`
    /// in the high ones.
    left: AtomicU64,
    work: W,
}

/// `front..back` as [`Chunks::left`] holds it.
fn pack(front: u32, back: u32) -> u64 {
    u64::from(back) << 32 | u64::from(front)
}

impl<W: Fn(usize, bool)> Chunks<W> {
    /// Take the next chunk from the front or from the back, if any is left.
    fn take(&self, from_back: bool) -> Option<usize> {
        let mut left = self.left.load(Ordering::Relaxed);
        loop {
            let (front, back) = (left as u32, (left >> 32) as u32);
            if front >= back {
                return None;
            }
            let (rest, taken) = if from_back {
                (pack(front, back - 1), back - 1)
            } else {
                (pack(front + 1, back), front)
            };
            match self
                .left
                .compare_exchange_weak(left, rest, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Some(taken as usize),
                Err(now) => left = now,
            }
        }
    }

    /// Do chunks until there are none left.
    fn take_all(&self, from_back: bool) {
        while let Some(i) = self.take(from_back) {
            (self.work)(i, !from_back);
        }
    }
}

impl<W: Fn(usize, bool) + Sync + 'static> Ahead<W> {
    /// Start a helper on chunks `0..count` of `work`. If no thread can be
    /// started, nothing is done until [`Ahead::finish`].
    pub(crate) fn start(count: u32, work: W) -> Self {
        Self::new(count, work, true)
    }

    /// Chunks `0..count` of `work`, all left for [`Ahead::finish`] (work too
    /// small to be worth a thread).
    pub(crate) fn here(count: u32, work: W) -> Self {
        Self::new(count, work, false)
    }

    fn new(count: u32, work: W, helper: bool) -> Self {
        let chunks = Box::new(Chunks {
            left: AtomicU64::new(pack(0, count)),
            work,
        });
        let thread = if !helper || crate::fault::injected(crate::fault::Syscall::Thread).is_some() {
            None
        } else {
            let arg = (&*chunks as *const Chunks<W>).cast_mut().cast();
            // SAFETY: the box stays where it is until the thread has ended
            // (`drop` waits for it first, and a leaked value leaks the box
            // too); `run_chunks::<W>` matches its type; `W: Sync`, so both
            // threads may call it.
            unsafe { Started::new(run_chunks::<W>, arg) }
        };
        Ahead { chunks, thread }
    }

    /// Do the chunks the helper has not taken, here, then wait for the
    /// helper's last one.
    pub(crate) fn finish(mut self) {
        self.chunks.take_all(true);
        if let Some(thread) = self.thread.take() {
            drop(thread);
            SPLIT.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl<W: Fn(usize, bool) + Sync + 'static> Drop for Ahead<W> {
    fn drop(&mut self) {
        // (Unfinished: no chunk is taken any more.)
        self.chunks.left.store(0, Ordering::Relaxed);
        drop(self.thread.take());
    }
}

/// The helper thread's entry point for an [`Ahead`].
extern "C" fn run_chunks<W: Fn(usize, bool)>(chunks: *mut c_void) -> c_int {
    // SAFETY: `Ahead::start` passed its `Chunks<W>`, which stays in place
    // until this thread has ended, and is only read (the counter is atomic).
    let chunks = unsafe { &*chunks.cast::<Chunks<W>>() };
    chunks.take_all(false);
    0
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
    /// What the thread runs, and where: read by it until it ends.
    _launch: Box<Launch>,
}

/// A helper thread's entry point, argument and CPUs ([`launch`]).
struct Launch {
    entry: extern "C" fn(*mut c_void) -> c_int,
    arg: *mut c_void,
    cpus: CpuSet,
}

/// A helper thread's first function: off its parent's CPU, then to work.
extern "C" fn launch(launch: *mut c_void) -> c_int {
    // SAFETY: `Started::new` passed its `Launch`, kept until this thread
    // has ended.
    let launch = unsafe { &*launch.cast::<Launch>() };
    // (The parent does the same once `clone` returns; this covers a helper
    // that runs first, on the parent's CPU, holding the parent off it.
    // rustix's raw system call sets no `errno`.)
    let _ = rustix::thread::sched_setaffinity(None, &launch.cpus);
    (launch.entry)(launch.arg)
}

impl Started {
    /// Start `entry(arg)` on a new thread of this process.
    ///
    /// # Safety
    /// What `arg` points to must stay valid until the returned value is
    /// dropped, and `entry` must keep to what `join` says a helper may do.
    unsafe fn new(entry: extern "C" fn(*mut c_void) -> c_int, arg: *mut c_void) -> Option<Started> {
        let launch = Box::new(Launch {
            entry,
            arg,
            cpus: other_cpus()?,
        });
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
            // promise, through `launch` with the `Launch` kept as long as
            // the stack; `tid_ptr` lives in `tid`, kept as long too.
            unsafe {
                libc::clone(
                    self::launch,
                    top,
                    flags,
                    (&*launch as *const Launch).cast_mut().cast(),
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
        // (If this fails, the helper may share this thread's CPU: the
        // results are the same.)
        let _ = rustix::thread::sched_setaffinity(Pid::from_raw(made), &launch.cpus);
        Some(Started {
            stack,
            tid,
            _launch: launch,
        })
    }
}

/// The CPUs this thread may run on but is not running on now, for a
/// helper: None if there are none (a helper would only take turns with
/// this thread) or they cannot be read.
///
/// Why a helper is kept off this thread's CPU: a new thread often starts
/// queued on its parent's CPU, and does not run until the parent blocks
/// (in [`Started`]'s `drop`, waiting for it) or the scheduler moves it,
/// which on a virtual machine with an idle second CPU took from 0.4 to
/// 3 ms; the work was then done one piece after the other. libLLVM-15's
/// first load took 0.835 of glibc's time with an unpinned helper, 0.685
/// with this (31 interleaved fresh processes each, docs/performance.md).
///
/// (glibc's `sched_getcpu`, not rustix's: rustix finds the vDSO through
/// the auxiliary vector and reads its ELF header, which is not mapped
/// under valgrind.)
fn other_cpus() -> Option<CpuSet> {
    let mut set = rustix::thread::sched_getaffinity(None).ok()?;
    // SAFETY: no arguments; on this (loading) thread, which may set errno.
    let here = usize::try_from(unsafe { libc::sched_getcpu() }).ok()?;
    set.unset(here);
    (set.count() > 0).then_some(set)
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

    #[test]
    fn every_chunk_is_done_once_by_one_thread_or_the_other() {
        let before = splits();
        let done: &'static [AtomicU64] = Box::leak((0..1000).map(|_| AtomicU64::new(0)).collect());
        let ahead = Ahead::start(done.len() as u32, move |i, _| {
            done[i].fetch_add(1, Ordering::Relaxed);
        });
        ahead.finish();
        assert!(done.iter().all(|d| d.load(Ordering::Relaxed) == 1));
        // (Other tests may split work meanwhile: at least this one.)
        assert!(splits() > before);
    }

    #[test]
    fn an_unfinished_ahead_stops_and_waits_for_its_helper() {
        let done: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(0)));
        let ahead = Ahead::start(u32::MAX, move |_, _| {
            done.fetch_add(1, Ordering::Relaxed);
        });
        drop(ahead);
        // (Once dropped, the helper has ended: the count stays.)
        let after = done.load(Ordering::Relaxed);
        assert!(after < u64::from(u32::MAX));
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(done.load(Ordering::Relaxed), after);
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
