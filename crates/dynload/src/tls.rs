//! Thread-local storage of the objects dynload loads.
//!
//! Module ids: glibc numbers its modules 1, 2, 3, ...; dynload's start at
//! [`MODULE_BASE`], so the two never collide and dynload's
//! `__tls_get_addr` (bound into every object dynload loads) tells them
//! apart with one comparison, forwarding glibc's ids to glibc's own
//! `__tls_get_addr`. Objects glibc loaded keep glibc's ids.
//!
//! Blocks are allocated on first use in each thread (so a thread created
//! before the dlopen sees the initial values), with `mmap`, never `malloc`:
//! a `malloc` that itself uses thread-local storage must not recurse into a
//! half-done allocation. A thread's blocks are freed when it exits (a
//! pthread key destructor, which glibc runs after C++ `thread_local`
//! destructors) and every thread's block of a module when the module is
//! unloaded.

use std::ffi::c_void;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use parking_lot::Mutex;

use crate::elf::PAGE_SIZE;
use crate::process::fatal;
use crate::state::{enter_saved, leave_saved, SAVE_KIND, SAVE_MASK, SAVE_SIZE};

/// The first module id dynload gives out.
pub(crate) const MODULE_BASE: usize = 1 << 40;

/// The argument of `__tls_get_addr` (and of TLS descriptors).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct TlsIndex {
    pub module: usize,
    pub offset: usize,
}

/// What a module's block is made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Module {
    image: usize,
    filesz: usize,
    memsz: usize,
    align: usize,
}

static MODULES: Mutex<Vec<Option<Module>>> = Mutex::new(Vec::new());

/// One allocated block: where the block is, and the mapping to unmap.
#[repr(C)]
#[derive(Clone, Copy)]
struct Entry {
    block: *mut u8,
    map: *mut u8,
    len: usize,
}

/// A thread's table of blocks, in one mmap'ed region: this header, then
/// `cap` entries. Threads' tables are linked so that unloading a module
/// can free its block in every thread.
#[repr(C)]
struct Dtv {
    cap: usize,
    map_len: usize,
    next: *mut Dtv,
    prev: *mut Dtv,
}

impl Dtv {
    /// # Safety
    /// `dtv` is a live table and `i < cap`.
    unsafe fn entry(dtv: *mut Dtv, i: usize) -> *mut Entry {
        // SAFETY: the entries follow the header inside the same mapping.
        unsafe { (dtv.add(1) as *mut Entry).add(i) }
    }
}

struct Threads {
    head: *mut Dtv,
}

// SAFETY: the list is only touched with the THREADS lock held.
unsafe impl Send for Threads {}

static THREADS: Mutex<Threads> = Mutex::new(Threads {
    head: std::ptr::null_mut(),
});

// This thread's table, in an initial-exec TLS variable that assembly reads
// with one instruction: the fast paths of `__tls_get_addr` and of TLS
// descriptors (which may change no register but %rax) find blocks without
// calling Rust code. (Initial-exec: the object holding dynload is loaded at
// start-up, or is given a slot of glibc's static TLS surplus when
// dlopened.)
core::arch::global_asm!(
    ".pushsection .tbss,\"awT\",@nobits",
    ".p2align 3",
    ".globl __dynload_fast_dtv",
    ".hidden __dynload_fast_dtv",
    ".type __dynload_fast_dtv, @object",
    ".size __dynload_fast_dtv, 8",
    "__dynload_fast_dtv:",
    ".zero 8",
    ".popsection",
);

/// This thread's table (null before its first block).
fn current() -> *mut Dtv {
    let dtv: *mut Dtv;
    // SAFETY: reads this thread's own initial-exec TLS slot, defined above.
    unsafe {
        core::arch::asm!(
            "mov {dtv}, qword ptr [rip + __dynload_fast_dtv@GOTTPOFF]",
            "mov {dtv}, qword ptr fs:[{dtv}]",
            dtv = out(reg) dtv,
            options(nostack, preserves_flags, readonly),
        );
    }
    dtv
}

/// Make `dtv` this thread's table.
fn set_current(dtv: *mut Dtv) {
    // SAFETY: writes this thread's own initial-exec TLS slot, defined above.
    unsafe {
        core::arch::asm!(
            "mov {tmp}, qword ptr [rip + __dynload_fast_dtv@GOTTPOFF]",
            "mov qword ptr fs:[{tmp}], {dtv}",
            tmp = out(reg) _,
            dtv = in(reg) dtv,
            options(nostack, preserves_flags),
        );
    }
}

/// glibc's `__tls_get_addr`, for glibc's module ids.
pub(crate) static GLIBC_TLS_GET_ADDR: AtomicUsize = AtomicUsize::new(0);

static KEY: OnceLock<libc::pthread_key_t> = OnceLock::new();

/// Prepare the TLS runtime (called when the loader starts).
pub(crate) fn init(glibc_tls_get_addr: usize) {
    GLIBC_TLS_GET_ADDR.store(glibc_tls_get_addr, Ordering::Relaxed);
    KEY.get_or_init(|| {
        let mut key: libc::pthread_key_t = 0;
        // SAFETY: creating a key with a destructor that takes the value we
        // store (a thread's table).
        unsafe { libc::pthread_key_create(&mut key, Some(thread_exit)) };
        key
    });
}

/// Give a module id to an object's PT_TLS (image at `image`).
pub(crate) fn register(image: usize, filesz: usize, memsz: usize, align: usize) -> usize {
    let m = Module {
        image,
        filesz,
        memsz,
        align: align.max(1),
    };
    let mut modules = MODULES.lock();
    let idx = match modules.iter().position(Option::is_none) {
        Some(i) => {
            modules[i] = Some(m);
            i
        }
        None => {
            modules.push(Some(m));
            modules.len() - 1
        }
    };
    MODULE_BASE + idx
}

/// Forget a module: free its block in every thread.
pub(crate) fn unregister(id: usize) {
    let idx = id - MODULE_BASE;
    // First forget the module, so that no thread allocates a new block of
    // it once the sweep below has passed its table.
    MODULES.lock()[idx] = None;
    let threads = THREADS.lock();
    let mut dtv = threads.head;
    while !dtv.is_null() {
        // SAFETY: every table in the list is live while THREADS is locked.
        unsafe {
            if idx < (*dtv).cap {
                let e = Dtv::entry(dtv, idx);
                free_entry(*e);
                *e = Entry {
                    block: std::ptr::null_mut(),
                    map: std::ptr::null_mut(),
                    len: 0,
                };
            }
            dtv = (*dtv).next;
        }
    }
}

fn map_anon(len: usize) -> *mut u8 {
    // SAFETY: a fresh private anonymous mapping.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        fatal("cannot allocate memory for thread-local data: ABORT");
    }
    p as *mut u8
}

fn free_entry(e: Entry) {
    if !e.map.is_null() {
        // SAFETY: the mapping was made by `alloc_block` and is no longer in
        // any table.
        unsafe { libc::munmap(e.map as *mut c_void, e.len) };
    }
}

/// A block for module `m`, initialised: the image, then zeros (fresh
/// anonymous memory is zero). Alignment up to the page size comes from
/// mmap itself; larger alignments are made by over-allocating.
fn alloc_block(m: &Module) -> Entry {
    let extra = if m.align > PAGE_SIZE { m.align } else { 0 };
    // A size no mapping can have (a damaged PT_TLS) fails as a mapping
    // that cannot be made would: glibc's fatal error, not an overflow.
    let len = m
        .memsz
        .max(1)
        .checked_add(extra)
        .and_then(|l| l.checked_next_multiple_of(PAGE_SIZE))
        .unwrap_or_else(|| fatal("cannot allocate memory for thread-local data: ABORT"));
    let map = map_anon(len);
    let block = ((map as usize + m.align - 1) & !(m.align - 1)) as *mut u8;
    // SAFETY: the image lies in the object's mapped PT_TLS segment
    // (checked at load) and the block has room for memsz >= filesz bytes.
    unsafe { std::ptr::copy_nonoverlapping(m.image as *const u8, block, m.filesz) };
    Entry { block, map, len }
}

/// `__tls_get_addr`'s slow path for dynload's modules: the first use of a
/// module in this thread (the assembly fast path found no block).
extern "C" fn get_addr(ti: *const TlsIndex) -> *mut u8 {
    // SAFETY: compiled code passes a pointer to its GOT's tls_index pair.
    let ti = unsafe { *ti };
    slow(ti.module - MODULE_BASE, ti.offset)
}

/// First use of a module in this thread.
#[cold]
fn slow(idx: usize, offset: usize) -> *mut u8 {
    let Some(m) = MODULES.lock().get(idx).copied().flatten() else {
        fatal("dynload: thread-local storage of an object that is not loaded was used");
    };
    let entry = alloc_block(&m);
    let mut threads = THREADS.lock();
    // Installed under THREADS only if the module is still the one the block
    // was made for: `unregister` forgets it before sweeping the tables.
    if MODULES.lock().get(idx).copied().flatten() != Some(m) {
        free_entry(entry);
        drop(threads);
        fatal("dynload: thread-local storage of an object that is not loaded was used");
    }
    let mut dtv = current();
    let mut new_table = false;
    // SAFETY: tables are only created, grown and freed here and in
    // `thread_exit`, with THREADS locked; `dtv` is this thread's.
    let block = unsafe {
        if dtv.is_null() || idx >= (*dtv).cap {
            let cap = (idx + 1).max(16).next_power_of_two();
            let map_len = (std::mem::size_of::<Dtv>() + cap * std::mem::size_of::<Entry>())
                .next_multiple_of(PAGE_SIZE);
            let cap = (map_len - std::mem::size_of::<Dtv>()) / std::mem::size_of::<Entry>();
            let grown = map_anon(map_len) as *mut Dtv;
            (*grown).cap = cap;
            (*grown).map_len = map_len;
            (*grown).prev = std::ptr::null_mut();
            (*grown).next = threads.head;
            if !dtv.is_null() {
                std::ptr::copy_nonoverlapping(Dtv::entry(dtv, 0), Dtv::entry(grown, 0), (*dtv).cap);
                unlink(&mut threads, dtv);
                (*grown).next = threads.head;
                libc::munmap(dtv as *mut c_void, (*dtv).map_len);
            }
            if !threads.head.is_null() {
                (*threads.head).prev = grown;
            }
            threads.head = grown;
            dtv = grown;
            set_current(dtv);
            new_table = true;
        }
        let e = Dtv::entry(dtv, idx);
        if (*e).block.is_null() {
            *e = entry;
        } else {
            free_entry(entry);
        }
        (*e).block
    };
    drop(threads);
    if new_table {
        if let Some(&key) = KEY.get() {
            // SAFETY: registering this thread's table for its exit; outside
            // the lock, as pthread_setspecific may allocate.
            unsafe { libc::pthread_setspecific(key, dtv as *const c_void) };
        }
    }
    block.wrapping_add(offset)
}

/// # Safety
/// `dtv` is in the list and THREADS is locked (`threads`).
unsafe fn unlink(threads: &mut Threads, dtv: *mut Dtv) {
    // SAFETY: per the contract.
    unsafe {
        if (*dtv).prev.is_null() {
            threads.head = (*dtv).next;
        } else {
            (*(*dtv).prev).next = (*dtv).next;
        }
        if !(*dtv).next.is_null() {
            (*(*dtv).next).prev = (*dtv).prev;
        }
    }
}

/// pthread key destructor: the thread is exiting; free its blocks.
unsafe extern "C" fn thread_exit(value: *mut c_void) {
    let dtv = value as *mut Dtv;
    let mut threads = THREADS.lock();
    // SAFETY: `value` is this thread's table (set by `slow`), still in the
    // list; nothing else frees it.
    unsafe {
        if current() != dtv {
            return;
        }
        unlink(&mut threads, dtv);
        for i in 0..(*dtv).cap {
            free_entry(*Dtv::entry(dtv, i));
        }
        libc::munmap(dtv as *mut c_void, (*dtv).map_len);
    }
    set_current(std::ptr::null_mut());
}

/// This thread's block of module `id`, if it has one (`dlpi_tls_data`,
/// RTLD_DI_TLS_DATA); never allocates.
pub(crate) fn current_block(id: usize) -> *mut c_void {
    let idx = id - MODULE_BASE;
    let dtv = current();
    if dtv.is_null() {
        return std::ptr::null_mut();
    }
    // SAFETY: this thread's live table.
    unsafe {
        if idx < (*dtv).cap {
            (*Dtv::entry(dtv, idx)).block as *mut c_void
        } else {
            std::ptr::null_mut()
        }
    }
}

/// The calling thread's address of `offset` in module `id` (ours or
/// glibc's), allocating the block if needed (`dlsym` of a TLS symbol).
pub(crate) fn address(id: usize, offset: usize) -> usize {
    let ti = TlsIndex { module: id, offset };
    // SAFETY: a valid tls_index for a loaded module.
    unsafe { tls_get_addr(&ti) as usize }
}

/// Assembly: the address of the variable `ti` (a register holding a
/// `TlsIndex` pointer) describes, into register `out`, when this thread
/// already has the block of that dynload module; otherwise (no block yet,
/// or one of glibc's module ids) a jump to `miss`. Uses `tmp`; `ti` is kept.
/// Dynload's ids are MODULE_BASE (bit 40) plus an index below 2^40, so
/// clearing bit 40 gives the index and tells glibc's ids apart.
/// Operands: `cap`, `entry_size`, `entries`, `block`.
macro_rules! find_block {
    ($ti:literal, $out:literal, $tmp:literal, $miss:literal) => {
        concat!(
            "mov ",
            $tmp,
            ", qword ptr [rip + __dynload_fast_dtv@GOTTPOFF]\n",
            "mov ",
            $tmp,
            ", qword ptr fs:[",
            $tmp,
            "]\n",
            "test ",
            $tmp,
            ", ",
            $tmp,
            "\n",
            "jz ",
            $miss,
            "\n",
            "mov ",
            $out,
            ", qword ptr [",
            $ti,
            "]\n",
            "btr ",
            $out,
            ", 40\n",
            "jnc ",
            $miss,
            "\n",
            "cmp ",
            $out,
            ", qword ptr [",
            $tmp,
            " + {cap}]\n",
            "jae ",
            $miss,
            "\n",
            "imul ",
            $out,
            ", ",
            $out,
            ", {entry_size}\n",
            "mov ",
            $out,
            ", qword ptr [",
            $tmp,
            " + ",
            $out,
            " + {entries} + {block}]\n",
            "test ",
            $out,
            ", ",
            $out,
            "\n",
            "jz ",
            $miss,
            "\n",
            "add ",
            $out,
            ", qword ptr [",
            $ti,
            " + 8]\n",
        )
    };
}

/// `__tls_get_addr`, as bound into objects dynload loads: a fast path for
/// blocks this thread has, then, for dynload's modules, an aligned call
/// (callers may have a misaligned stack, GCC PR58066) to allocate the
/// block, and for glibc's ids a tail jump to glibc's `__tls_get_addr`.
///
/// # Safety
/// `ti` must point to a `tls_index` of a loaded module.
#[unsafe(naked)]
pub(crate) unsafe extern "C" fn tls_get_addr(ti: *const TlsIndex) -> *mut c_void {
    core::arch::naked_asm!(
        find_block!("rdi", "rax", "rcx", "3f"),
        "ret",
        "3:",
        "mov rax, qword ptr [rdi]",
        "mov rcx, {base}",
        "cmp rax, rcx",
        "jb 2f",
        "push rbp",
        "mov rbp, rsp",
        "and rsp, -16",
        "call {ours}",
        "mov rsp, rbp",
        "pop rbp",
        "ret",
        "2:",
        "jmp qword ptr [rip + {glibc}]",
        base = const MODULE_BASE,
        ours = sym get_addr,
        glibc = sym GLIBC_TLS_GET_ADDR,
        cap = const std::mem::offset_of!(Dtv, cap),
        entry_size = const std::mem::size_of::<Entry>(),
        entries = const std::mem::size_of::<Dtv>(),
        block = const std::mem::offset_of!(Entry, block),
    )
}

/// A TLS descriptor's function for a module whose offset from the thread
/// pointer is not fixed: called with %rax pointing to the descriptor
/// {function, argument}, where the argument points to a `TlsIndex`; returns
/// in %rax the variable's offset from the thread pointer, and preserves
/// every other register, x87 and vector state included.
///
/// # Safety
/// Only to be called by TLSDESC code sequences, with a valid descriptor.
#[unsafe(naked)]
pub(crate) unsafe extern "C" fn tlsdesc_dynamic() {
    core::arch::naked_asm!(
        // Fast path, when this thread already has the block: no state to
        // save, as only %rcx, %rdx and %rsi are used, and restored.
        "push rcx",
        "push rdx",
        "push rsi",
        "mov rsi, qword ptr [rax + 8]",
        find_block!("rsi", "rcx", "rdx", "5f"),
        "sub rcx, qword ptr fs:[0]",
        "mov rax, rcx",
        "pop rsi",
        "pop rdx",
        "pop rcx",
        "ret",
        // Slow path (a first use, or one of glibc's modules): with every
        // register and the whole extended state saved.
        "5:",
        "pop rsi",
        "pop rdx",
        "pop rcx",
        enter_saved!(),
        "mov rdi, [rbx + 56]",
        "mov rdi, [rdi + 8]",
        "call {get}",
        "sub rax, qword ptr fs:[0]",
        "mov [rbx + 72], rax",
        leave_saved!(),
        "mov r11, [rsp + 64]",
        "mov rax, [rsp + 72]",
        "mov rbx, [rbp - 8]",
        "mov rsp, rbp",
        "pop rbp",
        "ret",
        size = sym SAVE_SIZE,
        mask = sym SAVE_MASK,
        kind = sym SAVE_KIND,
        get = sym tls_get_addr,
        cap = const std::mem::offset_of!(Dtv, cap),
        entry_size = const std::mem::size_of::<Entry>(),
        entries = const std::mem::size_of::<Dtv>(),
        block = const std::mem::offset_of!(Entry, block),
    )
}

/// A TLS descriptor for a variable at a fixed offset from the thread
/// pointer (in glibc's static TLS): the argument is that offset.
///
/// # Safety
/// Only to be called by TLSDESC code sequences.
#[unsafe(naked)]
pub(crate) unsafe extern "C" fn tlsdesc_static() {
    core::arch::naked_asm!("mov rax, qword ptr [rax + 8]", "ret")
}

/// A TLS descriptor for an undefined weak symbol: its address is the
/// addend (NULL plus the addend), so the offset is that minus the thread
/// pointer.
///
/// # Safety
/// Only to be called by TLSDESC code sequences.
#[unsafe(naked)]
pub(crate) unsafe extern "C" fn tlsdesc_undefweak() {
    core::arch::naked_asm!(
        "mov rax, qword ptr [rax + 8]",
        "sub rax, qword ptr fs:[0]",
        "ret"
    )
}

/// The thread pointer (%fs:0), to turn static TLS addresses into offsets.
/// Is glibc's module `id` in glibc's static TLS, at one offset from the
/// thread pointer in every thread? glibc places a module loaded after
/// start-up there only when an initial-exec relocation needs it, which
/// dynload cannot see; the offsets in this thread and in a new one agree
/// only if so. (Asked only for objects glibc loaded with DF_STATIC_TLS,
/// once per module for each object relocated.)
pub(crate) fn glibc_module_is_static(id: usize) -> bool {
    let here = address(id, 0).wrapping_sub(thread_pointer());
    let there = std::thread::Builder::new()
        .name("dynload-tls-probe".into())
        .spawn(move || address(id, 0).wrapping_sub(thread_pointer()))
        .ok()
        .and_then(|t| t.join().ok());
    there == Some(here)
}

pub(crate) fn thread_pointer() -> usize {
    let tp: usize;
    // SAFETY: reads the TCB's self pointer, which glibc keeps at %fs:0.
    unsafe {
        std::arch::asm!("mov {}, qword ptr fs:[0]", out(reg) tp, options(nostack, readonly, preserves_flags))
    };
    tp
}
