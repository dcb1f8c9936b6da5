//! Unwinding through dynload's objects: telling unwinders where each
//! object's unwind tables are.
//!
//! libgcc's unwinder on glibc 2.35+ finds a frame's FDE by asking
//! `_dl_find_object`, never `dl_iterate_phdr`, and glibc's `_dl_find_object`
//! knows only glibc's objects. Two mechanisms cover dynload's:
//!
//! - [`find_object`] is a `_dl_find_object` that answers for dynload's
//!   objects and forwards every other address to glibc's. Objects loaded by
//!   dynload are bound to it (so an unwinder that dynload loaded, such as a
//!   `-static-libgcc` copy inside a plugin or a second libgcc_s, asks it),
//!   and it is exported under its C name ([`_dl_find_object`]): from
//!   libdynload.so, and from any program that links dynload, so that the
//!   process's libgcc_s asks it, preloaded or linked.
//! - Where the process's libgcc_s is not bound to it (dynload inside an
//!   object loaded RTLD_LOCAL, such as libdynload.so opened by dlopen; a
//!   glibc without `_dl_find_object`; a libgcc_s that does not call it),
//!   each object's `.eh_frame` is registered with that libgcc_s
//!   (`__register_frame`) before its constructors run, and deregistered
//!   before it is unmapped. libgcc searches registered frames before asking
//!   `_dl_find_object`.
//!
//! The lookup table is read without a lock (unwinders call
//! `_dl_find_object` for every frame, from any thread, from signal
//! handlers): readers announce themselves in a counter and read an
//! immutable, address-sorted table; writers (under the loader lock) publish
//! a new table and free old ones only once no reader can hold them.

use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use crate::debug::{self, debug};
use crate::elf::image::Image;
use crate::elf::{elf, LE};
use crate::host::glibc;
use crate::object::{ObjId, Object};

/// glibc's `struct dl_find_object` on x86_64 (no `dlfo_eh_dbase`, no
/// `dlfo_eh_count`), from <dlfcn.h>.
#[repr(C)]
pub struct DlFindObject {
    /// Always 0.
    pub dlfo_flags: u64,
    /// The start of the object's mapping.
    pub dlfo_map_start: *mut c_void,
    /// The end of the object's mapping.
    pub dlfo_map_end: *mut c_void,
    /// The object's `struct link_map`.
    pub dlfo_link_map: *mut c_void,
    /// Its PT_GNU_EH_FRAME segment (`.eh_frame_hdr`), or NULL.
    pub dlfo_eh_frame: *mut c_void,
    reserved: [u64; 7],
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    start: usize,
    end: usize,
    link_map: usize,
    /// The PT_GNU_EH_FRAME segment (`.eh_frame_hdr`), or 0.
    eh_frame_hdr: usize,
    id: ObjId,
    /// The `.eh_frame` registered with the process's libgcc_s, or 0.
    registered: usize,
    /// The object's `tls_dtors` counter (`Arc::as_ptr`; the object holds
    /// the `Arc` while it is in the table).
    tls_dtors: usize,
}

/// An immutable table, sorted by `start`.
struct Table(Box<[Entry]>);

static CURRENT: AtomicPtr<Table> = AtomicPtr::new(std::ptr::null_mut());
static READERS: AtomicUsize = AtomicUsize::new(0);
/// Replaced tables that a reader may still hold (as addresses).
static RETIRED: Mutex<Vec<usize>> = Mutex::new(Vec::new());

/// Find glibc's functions before `main` ([`FIND_GLIBCS`]): every program
/// that links dynload sends every frame libgcc unwinds to [`find_object`],
/// from any thread, from signal handlers too, and forwarding to glibc's
/// `_dl_find_object` must then not allocate or call `dlopen`, as finding
/// glibc's functions the first time does (afterwards it is one atomic
/// load).
extern "C" fn find_glibcs() {
    let _ = crate::host::glibc_if_any();
}

/// glibc runs `.init_array` entries before `main` (and before a preloaded
/// or dlopened libdynload.so returns from loading).
#[used]
#[link_section = ".init_array"]
static FIND_GLIBCS: extern "C" fn() = find_glibcs;

/// `_dl_find_object(pc, result)`: dynload's objects, then glibc's.
///
/// # Safety
/// `result` must point to a writable `struct dl_find_object`.
pub unsafe extern "C" fn find_object(pc: *mut c_void, result: *mut DlFindObject) -> c_int {
    // (No object of dynload's: no need to count this reader.)
    let ours = if CURRENT.load(SeqCst).is_null() {
        None
    } else {
        lookup(pc as usize, |e| *e)
    };
    match ours {
        Some(e) => {
            // SAFETY: the caller provides a writable result.
            unsafe {
                (*result).dlfo_flags = 0;
                (*result).dlfo_map_start = e.start as *mut c_void;
                (*result).dlfo_map_end = e.end as *mut c_void;
                (*result).dlfo_link_map = e.link_map as *mut c_void;
                (*result).dlfo_eh_frame = e.eh_frame_hdr as *mut c_void;
            }
            0
        }
        // (Found before `main`; a process whose loader did not run
        // `.init_array` would find them here.)
        None => match crate::host::glibc_if_any().and_then(|g| g.find_object) {
            // SAFETY: glibc's `_dl_find_object`, with the caller's arguments.
            Some(f) => unsafe { f(pc, result) },
            None => -1,
        },
    }
}

/// [`find_object`] under its C name, in whatever links dynload.
///
/// libgcc_s refers to `_dl_find_object`, and GNU ld exports from a program
/// every symbol a linked shared library refers to: a program that links
/// dynload therefore exports this definition, which comes before glibc's
/// in the global scope, and its libgcc_s asks dynload, as it does under
/// LD_PRELOAD (libdynload.so exports this same function). Nothing then
/// needs registering with libgcc, whose registration reads pages of each
/// object's `.eh_frame` that glibc's loads never touch. (Two copies of
/// dynload in one program would define it twice: the link fails.)
///
/// # Safety
/// As `_dl_find_object(3)`: `result` points to a writable
/// `struct dl_find_object`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn _dl_find_object(pc: *mut c_void, result: *mut DlFindObject) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { find_object(pc, result) }
}

/// `f` of the entry containing `addr`, read as a counted reader.
fn lookup<R>(addr: usize, f: impl FnOnce(&Entry) -> R) -> Option<R> {
    READERS.fetch_add(1, SeqCst);
    let table = CURRENT.load(SeqCst);
    let mut found = None;
    if !table.is_null() {
        // SAFETY: a published table is freed only when no reader is
        // counted, and this reader was counted before loading it.
        let entries = unsafe { &(*table).0 };
        let i = entries.partition_point(|e| e.start <= addr);
        if i > 0 && addr < entries[i - 1].end {
            found = Some(f(&entries[i - 1]));
        }
    }
    READERS.fetch_sub(1, SeqCst);
    found
}

/// The object of dynload's that contains `addr`, and its `tls_dtors`
/// counter, found without the loader lock (for `thread_exit`).
pub(crate) fn tls_counter_at(addr: usize) -> Option<(ObjId, Arc<AtomicUsize>)> {
    lookup(addr, |e| {
        let counter = e.tls_dtors as *const AtomicUsize;
        // SAFETY: the object owns an `Arc` of its counter while its entry
        // is in the table; code that runs in an object (the only caller,
        // registering a destructor) runs while it is loaded.
        let counter = unsafe {
            Arc::increment_strong_count(counter);
            Arc::from_raw(counter)
        };
        (e.id, counter)
    })
}

/// Publish a table changed by `change`, which adds at most `added`
/// entries (loader lock held).
fn update(added: usize, change: impl FnOnce(&mut Vec<Entry>)) {
    let mut retired = RETIRED.lock().unwrap_or_else(|p| p.into_inner());
    let old = CURRENT.load(SeqCst);
    // SAFETY: only writers (serialised by RETIRED's lock) replace or free
    // the current table.
    let current: &[Entry] = if old.is_null() {
        &[]
    } else {
        unsafe { &(*old).0 }
    };
    // Sized once: a table grown by doubling and then shrunk would leave a
    // hole in the heap at every load, which stays resident.
    let mut entries = Vec::with_capacity(current.len() + added);
    entries.extend_from_slice(current);
    change(&mut entries);
    entries.sort_unstable_by_key(|e| e.start);
    let new = Box::into_raw(Box::new(Table(entries.into_boxed_slice())));
    CURRENT.store(new, SeqCst);
    if !old.is_null() {
        retired.push(old as usize);
    }
    // A reader counted after this load sees the new table; a reader counted
    // before it keeps the count above zero.
    if READERS.load(SeqCst) == 0 {
        for t in retired.drain(..) {
            // SAFETY: unreachable from CURRENT and no reader holds it.
            drop(unsafe { Box::from_raw(t as *mut Table) });
        }
    }
}

/// Make relocated objects known to unwinders (before their constructors),
/// in one new table.
pub(crate) fn publish<'a>(objects: impl IntoIterator<Item = &'a Object>) {
    let entries: Vec<Entry> = objects.into_iter().map(entry_for).collect();
    if entries.is_empty() {
        return;
    }
    update(entries.len(), |v| {
        v.retain(|e| !entries.iter().any(|n| n.id == e.id));
        v.extend_from_slice(&entries);
    });
}

/// An object's entry, its frames registered with libgcc if need be.
fn entry_for(obj: &Object) -> Entry {
    let eh_frame_hdr = eh_frame_hdr(obj).unwrap_or(0);
    let registered = match (eh_frame_hdr, registrar()) {
        (0, _) | (_, None) => 0,
        (hdr, Some(r)) => match eh_frame_of(&obj.view.image, hdr) {
            Ok((start, _)) => {
                // SAFETY: `start` is the object's `.eh_frame`, checked to
                // end with a terminator inside its segment; it stays mapped
                // until `forget` deregisters it.
                unsafe { (r.register)(start as *mut c_void) };
                start
            }
            Err(why) => {
                debug!(
                    debug::FILES,
                    "\nfile={}: unwind tables not registered: {why}\n",
                    obj.display_name()
                );
                0
            }
        },
    };
    Entry {
        start: obj.map_start,
        end: obj.map_end,
        link_map: &*obj.link_map as *const _ as usize,
        eh_frame_hdr,
        id: obj.id,
        registered,
        tls_dtors: Arc::as_ptr(&obj.tls_dtors) as usize,
    }
}

/// Forget an object before it is unmapped (no-op if it was never
/// published).
pub(crate) fn forget(id: ObjId) {
    let mut gone = None;
    let cur = CURRENT.load(SeqCst);
    // SAFETY: writers are serialised by the loader lock, so the current
    // table is not freed while this writer reads it.
    if cur.is_null() || !unsafe { (*cur).0.iter().any(|e| e.id == id) } {
        return;
    }
    update(0, |v| {
        if let Some(i) = v.iter().position(|e| e.id == id) {
            gone = Some(v.remove(i));
        }
    });
    if let (Some(e), Some(r)) = (gone, registrar()) {
        if e.registered != 0 {
            // SAFETY: registered by `publish` with this same address.
            unsafe { (r.deregister)(e.registered as *mut c_void) };
        }
    }
}

/// libgcc_s's frame registration functions, when the process's libgcc_s
/// does not ask dynload's `_dl_find_object`.
struct Registrar {
    register: unsafe extern "C" fn(*mut c_void),
    deregister: unsafe extern "C" fn(*mut c_void),
}

fn registrar() -> Option<&'static Registrar> {
    static FOUND: std::sync::OnceLock<Option<Registrar>> = std::sync::OnceLock::new();
    // Decided once, at the first object: libgcc_s is loaded at start-up by
    // every program that can unwind (C++ and Rust programs; libdynload.so
    // itself needs it).
    FOUND
        .get_or_init(|| {
            let g = glibc();
            let sym = |n: &std::ffi::CStr| {
                // SAFETY: glibc's dlsym with its own RTLD_DEFAULT handle.
                unsafe { (g.dlsym)(libc::RTLD_DEFAULT, n.as_ptr()) as usize }
            };
            let (reg, dereg) = (sym(c"__register_frame"), sym(c"__deregister_frame"));
            if reg == 0 || dereg == 0 {
                return None;
            }
            // Nothing to register when the libgcc_s that would take the
            // frames asks dynload's `_dl_find_object`: it is the global
            // definition (`find_object`, not the exported
            // `_dl_find_object`, is compared: inside a shared object, the
            // address of an exported function is the global definition's,
            // which may be glibc's), glibc has the function (2.35 and
            // later), and that libgcc_s refers to it at all (an older one
            // walks `dl_iterate_phdr`, which knows only glibc's objects).
            let asks_dynload =
                same_object(sym(c"_dl_find_object"), find_object as *const () as usize)
                    && g.find_object.is_some()
                    && crate::host::object_refers_to(reg, b"_dl_find_object");
            if asks_dynload {
                return None;
            }
            // SAFETY: libgcc's functions, with the prototypes of
            // unwind-dw2-fde.h: void (void *).
            unsafe {
                Some(Registrar {
                    register: std::mem::transmute::<usize, unsafe extern "C" fn(*mut c_void)>(reg),
                    deregister: std::mem::transmute::<usize, unsafe extern "C" fn(*mut c_void)>(
                        dereg,
                    ),
                })
            }
        })
        .as_ref()
}

/// Do two addresses lie in the same glibc-loaded object?
fn same_object(a: usize, b: usize) -> bool {
    if a == 0 || b == 0 {
        return false;
    }
    let base = |addr: usize| {
        // SAFETY: dladdr only reads glibc's tables; `info` is written.
        let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
        let ok = unsafe { (glibc().dladdr)(addr as *const c_void, &mut info) };
        (ok != 0).then_some(info.dli_fbase as usize)
    };
    matches!((base(a), base(b)), (Some(x), Some(y)) if x == y)
}

/// The object's PT_GNU_EH_FRAME segment (`.eh_frame_hdr`), if mapped.
pub(crate) fn eh_frame_hdr(obj: &Object) -> Option<usize> {
    let base = obj.view.image.base;
    // SAFETY: `phdr` points to the object's `phnum` program headers, kept
    // alive with the object.
    let phdrs = unsafe { std::slice::from_raw_parts(obj.phdr, obj.phnum) };
    phdrs
        .iter()
        .find(|p| p.p_type.get(LE) == elf::PT_GNU_EH_FRAME)
        .map(|p| base.wrapping_add(p.p_vaddr.get(LE) as usize))
        .filter(|&a| obj.view.image.contains(a, 4))
}

/// The `.eh_frame` that `.eh_frame_hdr` at `hdr` describes, as (start,
/// length up to and including its zero terminator), checked to end with
/// that terminator inside its segment (`__register_frame` reads until one;
/// crtend.o provides it in objects linked by gcc).
///
/// The check walks the records from the FDE the header's search table
/// lists last (the one for the highest address: in a linker's output the
/// last FDE, or one of the last), not from the start: `.eh_frame` is
/// megabytes in big libraries, and reading all of it cost libLLVM-15's load
/// 12% of its time and libz3's 2.7 MB of resident memory. The records
/// before that FDE are trusted to lead to it, as glibc's `_dl_find_object`
/// and libgcc trust the table (see SECURITY.md).
pub(crate) fn eh_frame_of(img: &Image, hdr: usize) -> Result<(usize, usize), String> {
    let head = img.bytes(hdr, 4).ok_or(".eh_frame_hdr is not mapped")?;
    if head[0] != 1 {
        return Err(format!(".eh_frame_hdr version {}", head[0]));
    }
    // The pointer encodings linkers write: pcrel|sdata4 (0x1b) or absptr.
    let start = match head[1] {
        0x1b => {
            let b = img.bytes(hdr + 4, 4).ok_or("truncated .eh_frame_hdr")?;
            let off = i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as isize;
            (hdr + 4).wrapping_add_signed(off)
        }
        0x00 => {
            // An address as linked: add the load bias.
            let b = img.bytes(hdr + 4, 8).ok_or("truncated .eh_frame_hdr")?;
            (u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize).wrapping_add(img.base)
        }
        e => return Err(format!("eh_frame_ptr encoding {e:#x}")),
    };
    let end = img.segment_end(start).ok_or(".eh_frame is not mapped")?;
    let mut at = last_listed_fde(img, hdr, head)
        .filter(|&f| start <= f && f < end)
        .unwrap_or(start);
    while at.checked_add(4).is_some_and(|e| e <= end) {
        let b = img.bytes(at, 4).ok_or(".eh_frame is not mapped")?;
        let len = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
        if len == 0 {
            return Ok((start, at + 4 - start));
        }
        let next = if len == 0xffff_ffff {
            let b = img.bytes(at + 4, 8).ok_or("truncated .eh_frame")?;
            let l = u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize;
            at.checked_add(12).and_then(|a| a.checked_add(l))
        } else {
            at.checked_add(4 + len)
        };
        at = next.ok_or("an .eh_frame length overflows")?;
    }
    Err(".eh_frame has no terminator inside its segment".into())
}

/// The FDE of the last entry of `.eh_frame_hdr`'s search table, when the
/// table has the encodings linkers write (count udata4, entries
/// datarel|sdata4 pairs).
fn last_listed_fde(img: &Image, hdr: usize, head: &[u8]) -> Option<usize> {
    let pointer_len = match head[1] {
        0x1b => 4,
        0x00 => 8,
        _ => return None,
    };
    if head[2] != 0x03 || head[3] != 0x3b {
        return None;
    }
    let count_at = hdr + 4 + pointer_len;
    let word = |at: usize| img.bytes(at, 4).map(|b| [b[0], b[1], b[2], b[3]]);
    let count = u32::from_le_bytes(word(count_at)?) as usize;
    let last = count_at
        .checked_add(4)?
        .checked_add(count.checked_sub(1)?.checked_mul(8)?)?;
    let offset = i32::from_le_bytes(word(last.checked_add(4)?)?) as isize;
    Some(hdr.wrapping_add_signed(offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole walk from the first record, as `__register_frame` does.
    fn walk_from_start(img: &Image, hdr: usize) -> (usize, usize) {
        let b = img.bytes(hdr + 4, 4).unwrap();
        let start =
            (hdr + 4).wrapping_add_signed(i32::from_le_bytes(b.try_into().unwrap()) as isize);
        let mut at = start;
        loop {
            let len = u32::from_le_bytes(img.bytes(at, 4).unwrap().try_into().unwrap()) as usize;
            if len == 0 {
                return (start, at + 4 - start);
            }
            assert_ne!(len, 0xffff_ffff, "64-bit records are not in these files");
            at += 4 + len;
        }
    }

    #[test]
    fn the_terminator_found_from_the_last_listed_fde_is_the_one_the_whole_walk_finds() {
        let dir = std::path::Path::new("/usr/lib/x86_64-linux-gnu");
        for lib in [
            "libstdc++.so.6",
            "libz3.so.4",
            "libcrypto.so.3",
            "libicuuc.so.72",
            "libz.so.1",
        ] {
            let data = std::fs::read(dir.join(lib)).unwrap();
            let loaded = crate::fuzzing::layout_elf(&data).expect(lib);
            let hdr = loaded.eh_frame_hdr.expect(lib);
            let head = loaded.image.bytes(hdr, 4).unwrap();
            assert!(
                last_listed_fde(&loaded.image, hdr, head).is_some(),
                "{lib}: no search table"
            );
            assert_eq!(
                eh_frame_of(&loaded.image, hdr),
                Ok(walk_from_start(&loaded.image, hdr)),
                "{lib}"
            );
        }
    }
}
