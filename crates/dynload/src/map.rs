//! Mapping an object: validate its program headers, map its first segment
//! over its whole span once, give each PT_LOAD its pages and permissions
//! (an `mprotect` where the first mapping already holds them), zero the
//! bss, and later make PT_GNU_RELRO read-only.
//!
//! Nothing of the object runs here, and every failure unmaps what was
//! mapped (the [`Mapping`] guard does it on drop).

use rustix::mm::{MapFlags, MprotectFlags, ProtFlags};

use crate::elf::image::Image;
use crate::elf::{elf, page_down, page_up, Phdr, LE, PAGE_SIZE};
use crate::error::Error;
use crate::find::Opened;

/// An address range this loader mapped; unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mapping {
    start: usize,
    len: usize,
}

impl Mapping {
    pub(crate) fn start(&self) -> usize {
        self.start
    }
    pub(crate) fn end(&self) -> usize {
        self.start + self.len
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if self.len != 0 {
            // SAFETY: the range was reserved by this loader in `map` and no
            // one else owns it; after drop nothing refers to it.
            unsafe {
                let _ = rustix::mm::munmap(self.start as *mut _, self.len);
            }
        }
    }
}

/// Zeroed words in an anonymous mapping of their own, returned to the
/// kernel when dropped: for a structure a process may build once and drop
/// (a one-off global scope filter, see `link::scope_filter`), whose heap
/// pages would stay resident after it is freed. (The mapping, its page
/// and the unmapping cost about 6.5 µs here, in a C program.)
#[derive(Debug)]
pub(crate) struct AnonWords {
    mapping: Mapping,
    len: usize,
}

impl AnonWords {
    /// `len` zeroed words (None if `len` is 0 or the mapping fails).
    pub(crate) fn new(len: usize) -> Option<AnonWords> {
        let bytes = len.checked_mul(8).filter(|&b| b > 0)?;
        // SAFETY: a new private anonymous mapping placed by the kernel
        // where nothing else is; only this value uses it.
        let start = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                bytes,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE,
            )
        }
        .ok()? as usize;
        Some(AnonWords {
            mapping: Mapping { start, len: bytes },
            len,
        })
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [u64] {
        // SAFETY: the mapping holds `len` words, readable and writable,
        // aligned (a page), zeroed when made; `&mut self` makes this the
        // only reference.
        unsafe { std::slice::from_raw_parts_mut(self.mapping.start as *mut u64, self.len) }
    }
}

/// A whole file mapped read-only and private (`/etc/ld.so.cache`, as glibc
/// maps it): its pages are the page cache's, shared with every process,
/// where a copy read into the heap was private memory of this one.
#[derive(Debug)]
pub(crate) struct FileMap {
    mapping: Mapping,
}

impl FileMap {
    /// Map all of `file` (None if it is empty or cannot be mapped).
    pub(crate) fn of(file: &std::fs::File) -> Option<FileMap> {
        let len = usize::try_from(file.metadata().ok()?.len()).ok()?;
        if len == 0 {
            return None;
        }
        // SAFETY: a new read-only private mapping of the file, placed by
        // the kernel where nothing else is; only `bytes` reads it.
        let start = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ,
                MapFlags::PRIVATE,
                file,
                0,
            )
        }
        .ok()? as usize;
        Some(FileMap {
            mapping: Mapping { start, len },
        })
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: `len` readable bytes at `start`, mapped while `self` is
        // (the cache file is replaced by a rename, never rewritten in
        // place, so its pages do not change under the reader).
        unsafe { std::slice::from_raw_parts(self.mapping.start as *const u8, self.mapping.len) }
    }
}

/// A PT_LOAD segment, with page-rounded addresses (relative to the base).
#[derive(Debug, Clone, Copy)]
struct Load {
    mapstart: usize,
    mapend: usize,
    dataend: usize,
    allocend: usize,
    mapoff: u64,
    prot: ProtFlags,
}

impl Load {
    /// The page (relative to the base) where `.bss` starts inside the last
    /// file page, which mapping zeroes from `dataend` on; none when there
    /// is no `.bss`, it starts on a page boundary, or the segment has no
    /// file pages.
    fn zeroed_page(&self) -> Option<usize> {
        (self.allocend > self.dataend
            && self.dataend % PAGE_SIZE != 0
            && self.mapend > self.mapstart)
            .then(|| page_down(self.dataend))
    }
}

/// The result of mapping one file.
#[derive(Debug)]
pub(crate) struct Mapped {
    pub mapping: Mapping,
    /// The load bias (`l_addr`).
    pub base: usize,
    /// The program headers as read from the file. Once the object is built,
    /// empty if the mapped image holds the same headers (they are used
    /// instead, as glibc does); else kept for `dl_iterate_phdr`.
    pub phdrs: Box<[Phdr]>,
    /// Absolute address and size of the dynamic section.
    pub dynamic: (usize, usize),
    /// PT_GNU_RELRO as (vaddr, memsz).
    pub relro: Option<(u64, u64)>,
    /// PT_TLS, if the object has thread-local storage. (Boxed: few objects
    /// have one, and every object keeps this record.)
    pub tls: Option<Box<TlsSegment>>,
    /// Were the writable segment's pages copied when it was mapped (see
    /// [`written_whole`])?
    pub populated: bool,
}

fn prot_of(flags: u32) -> ProtFlags {
    let mut p = ProtFlags::empty();
    if flags & elf::PF_R != 0 {
        p |= ProtFlags::READ;
    }
    if flags & elf::PF_W != 0 {
        p |= ProtFlags::WRITE;
    }
    if flags & elf::PF_X != 0 {
        p |= ProtFlags::EXEC;
    }
    p
}

/// Check the program headers of `o` before anything is mapped.
/// What `plan` decided: the segments, the alignment and size of the whole
/// span, and where PT_DYNAMIC and PT_GNU_RELRO are (vaddr, memsz).
struct Plan {
    loads: Vec<Load>,
    align: usize,
    span: usize,
    dynamic: (u64, u64),
    relro: Option<(u64, u64)>,
    tls: Option<TlsSegment>,
}

/// A PT_TLS segment: the initialisation image (`filesz` bytes at `vaddr`,
/// then zeros up to `memsz`) and the block's alignment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TlsSegment {
    pub vaddr: u64,
    pub filesz: u64,
    pub memsz: u64,
    pub align: u64,
}

/// Why an object is mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// To run it: each segment with its own permissions.
    Load,
    /// Only to read its tables (diagnostics): every segment read-only,
    /// nothing executable, and what loading would refuse (an executable,
    /// an executable stack, a writable and executable segment) is left for
    /// the reader to report.
    Read,
}

fn plan(o: &Opened, name: impl Into<String> + Copy, purpose: Purpose) -> Result<Plan, Error> {
    let mut loads = Vec::new();
    let mut align_max = PAGE_SIZE;
    let mut dynamic: Option<(u64, u64)> = None;
    let mut empty_dynamic = false;
    let mut stack_flags = elf::PF_R | elf::PF_W | elf::PF_X; // x86_64 default without PT_GNU_STACK
    let mut relro = None;
    let mut tls = None;
    let mut last_end = 0usize;
    for ph in o.phdrs.iter() {
        let (vaddr, memsz, filesz, offset) = (
            ph.p_vaddr.get(LE),
            ph.p_memsz.get(LE),
            ph.p_filesz.get(LE),
            ph.p_offset.get(LE),
        );
        match ph.p_type.get(LE) {
            elf::PT_LOAD => {
                if (vaddr.wrapping_sub(offset)) as usize & (PAGE_SIZE - 1) != 0 {
                    return Err(Error::invalid(
                        name,
                        "ELF load command address/offset not page-aligned",
                    ));
                }
                if filesz > memsz {
                    return Err(Error::invalid(
                        name,
                        "ELF load command with p_filesz > p_memsz",
                    ));
                }
                let end_in_file = offset.checked_add(filesz);
                if end_in_file.is_none_or(|e| e > o.size) {
                    return Err(Error::invalid(
                        name,
                        "ELF load command extends beyond the end of the file",
                    )
                    .with_why(format!(
                        "segment at offset {offset:#x} with {filesz:#x} bytes; the file has {:#x}",
                        o.size
                    )));
                }
                let (Some(dataend), Some(allocend)) =
                    (vaddr.checked_add(filesz), vaddr.checked_add(memsz))
                else {
                    return Err(Error::invalid(name, "ELF load command address overflows"));
                };
                if allocend > (1u64 << 46) {
                    return Err(Error::invalid(
                        name,
                        "ELF load command address out of range",
                    ));
                }
                let flags = ph.p_flags.get(LE);
                if flags & elf::PF_W != 0 && flags & elf::PF_X != 0 && purpose == Purpose::Load {
                    return Err(Error::unsupported(
                        name,
                        "ELF load command is both writable and executable",
                    )
                    .with_why("dynload never maps a page writable and executable at once (W^X)"));
                }
                let l = Load {
                    mapstart: page_down(vaddr as usize),
                    mapend: page_up(dataend as usize).unwrap_or(usize::MAX),
                    dataend: dataend as usize,
                    allocend: allocend as usize,
                    mapoff: page_down(offset as usize) as u64,
                    prot: match purpose {
                        Purpose::Load => prot_of(flags),
                        Purpose::Read => prot_of(flags & elf::PF_R),
                    },
                };
                if !loads.is_empty() && l.mapstart < last_end {
                    return Err(Error::invalid(
                        name,
                        "ELF load commands are not in ascending order or overlap",
                    ));
                }
                last_end = page_up(l.allocend).unwrap_or(usize::MAX);
                let align = ph.p_align.get(LE) as usize;
                if align.is_power_of_two() && align > align_max {
                    // glibc aligns the whole object to the largest p_align;
                    // more than 1 GiB would only waste address space.
                    align_max = align.min(1 << 30);
                }
                loads.push(l);
            }
            elf::PT_DYNAMIC => {
                if filesz == 0 {
                    empty_dynamic = true;
                } else {
                    dynamic = Some((vaddr, memsz));
                }
            }
            elf::PT_GNU_STACK => stack_flags = ph.p_flags.get(LE),
            elf::PT_GNU_RELRO => relro = Some((vaddr, memsz)),
            elf::PT_TLS if memsz > 0 => {
                let align = ph.p_align.get(LE).max(1);
                if filesz > memsz || !align.is_power_of_two() || align > 1 << 20 {
                    return Err(Error::invalid(name, "invalid PT_TLS segment"));
                }
                tls = Some(TlsSegment {
                    vaddr,
                    filesz,
                    memsz,
                    align,
                });
            }
            _ => {}
        }
    }
    if loads.is_empty() {
        return Err(Error::invalid(name, "object file has no loadable segments"));
    }
    if o.header.e_type != elf::ET_DYN && purpose == Purpose::Load {
        return Err(Error::invalid(name, "cannot dynamically load executable"));
    }
    let dynamic = match dynamic {
        Some(d) if !empty_dynamic => d,
        // (Read only: a statically linked executable, glibc's words.)
        _ if o.header.e_type != elf::ET_DYN => {
            return Err(Error::invalid(name, "cannot dynamically load executable"))
        }
        _ => return Err(Error::invalid(name, "object file has no dynamic section")),
    };
    if stack_flags & elf::PF_X != 0 && purpose == Purpose::Load {
        return Err(executable_stack_error(name));
    }
    if let Some(t) = tls.filter(|t| t.filesz > 0) {
        let (start, end) = (t.vaddr as usize, t.vaddr.saturating_add(t.filesz) as usize);
        let inside = loads
            .iter()
            .any(|l| l.prot.contains(ProtFlags::READ) && l.mapstart <= start && end <= l.allocend);
        if !inside {
            return Err(Error::invalid(
                name,
                "PT_TLS initialisation image lies outside the loaded segments",
            ));
        }
    }
    let span = loads.last().map(|l| l.allocend).unwrap_or(0) - loads[0].mapstart;
    Ok(Plan {
        loads,
        align: align_max,
        span,
        dynamic,
        relro,
        tls,
    })
}

/// glibc's error for an object that wants an executable stack (glibc 2.41
/// and later refuse it too).
pub(crate) fn executable_stack_error(name: impl Into<String>) -> Error {
    Error::system(
        name,
        "cannot enable executable stack as shared object requires",
        libc::EINVAL,
    )
    .with_why("the object asks for an executable stack (PT_GNU_STACK with PF_X, or no PT_GNU_STACK); dynload refuses it, as glibc 2.41 and later do")
}

/// glibc's error for a failed mapping: the name the object was asked for,
/// and no errno (glibc's `_dl_map_segments` failure carries none).
pub(crate) fn map_failed(name: impl Into<String>) -> Error {
    Error::load(
        crate::error::ErrorKind::System,
        name,
        "failed to map segment from shared object",
    )
}

/// Map the file `o` (already opened and checked by `find`).
/// The program headers move from `o` to the result.
pub(crate) fn map(o: &mut Opened, name: impl Into<String> + Copy) -> Result<Mapped, Error> {
    let mut mapped = map_for(o, name, Purpose::Load)?;
    mapped.phdrs = std::mem::take(&mut o.phdrs).into_boxed_slice();
    Ok(mapped)
}

/// Map the file `o` read-only, only to read its tables: the checks and the
/// layout are those of [`map`], but no page is writable or executable.
pub(crate) fn map_for_reading(o: &Opened, name: impl Into<String> + Copy) -> Result<Mapped, Error> {
    let mut mapped = map_for(o, name, Purpose::Read)?;
    mapped.phdrs = o.phdrs.clone().into_boxed_slice();
    Ok(mapped)
}

fn map_for(o: &Opened, name: impl Into<String> + Copy, purpose: Purpose) -> Result<Mapped, Error> {
    let Plan {
        loads,
        align,
        span,
        dynamic,
        relro,
        tls,
    } = plan(o, name, purpose)?;
    let span = page_up(span).ok_or_else(|| Error::invalid(name, "object too large"))?;
    if crate::fault::injected(crate::fault::Syscall::Mmap).is_some() {
        return Err(map_failed(name));
    }
    let first = &loads[0];
    let (mapping, mapped_first) = if first.mapend > first.mapstart {
        // As glibc does: the first segment is mapped over the whole span
        // (into an aligned reservation if the object wants more than a
        // page), the others replace their parts of it or keep them (below),
        // and what lies between segments is made inaccessible.
        let reserved = if align > PAGE_SIZE {
            Some(reserve(span, align).map_err(|_| map_failed(name))?)
        } else {
            None
        };
        let (hint, flags) = match &reserved {
            Some(r) => (r.start as *mut _, MapFlags::PRIVATE | MapFlags::FIXED),
            None => (std::ptr::null_mut(), MapFlags::PRIVATE),
        };
        // SAFETY: a fresh mapping of our own file, at an address the kernel
        // chooses or over our own reservation of exactly this size.
        let start =
            unsafe { rustix::mm::mmap(hint, span, first.prot, flags, &o.file, first.mapoff) }
                .map_err(|_| map_failed(name))? as usize;
        // (Built only without a reservation: a `Mapping` unmaps on drop.)
        let mapping = reserved.unwrap_or_else(|| Mapping { start, len: span });
        (mapping, true)
    } else {
        (reserve(span, align).map_err(|_| map_failed(name))?, false)
    };
    let base = mapping.start.wrapping_sub(first.mapstart);
    let mut populated = false;
    for l in &loads {
        // A segment at the same distance from the first in the file as in
        // memory (with GNU ld's layout, all up to the writable one) already
        // has its pages from the first mapping: an `mprotect` to its own
        // permissions replaces an `mmap` over them, or nothing if they are
        // the same (about 2 µs less a load, measured: 4 to 2 `mmap` calls).
        let in_place = mapped_first
            && l.mapoff.checked_sub(first.mapoff) == Some((l.mapstart - first.mapstart) as u64);
        let pages = if in_place {
            Pages::Mapped(first.prot)
        } else {
            Pages::Unmapped
        };
        let populate = purpose == Purpose::Load && !in_place && written_whole(l, relro);
        populated |= populate;
        map_segment(o, base, l, pages, populate).map_err(|_| map_failed(name))?;
    }
    if mapped_first {
        close_holes(&mapping, base, &loads).map_err(|_| map_failed(name))?;
    }
    if purpose == Purpose::Load && !populated {
        populate_relro(base, &loads, relro);
    }
    let (dyn_vaddr, dyn_size) = dynamic;
    Ok(Mapped {
        mapping,
        base,
        phdrs: Box::default(),
        dynamic: (base.wrapping_add(dyn_vaddr as usize), dyn_size as usize),
        relro,
        tls: tls.map(Box::new),
        populated,
    })
}

/// Have the kernel make the private copies of PT_GNU_RELRO's pages, which
/// relocation is about to write, in one call instead of one write fault a
/// page (a link editor puts there only data that relocation writes, though
/// a page of it may hold none, which is then copied where glibc leaves it
/// the file's: one page of libaom's 17, in 190 of the system's objects).
/// Done right after mapping, before anything reads them: after the read
/// of the dynamic section (which lies in RELRO), each copy replaced a file
/// page that the read had mapped along with its neighbours (the kernel's
/// fault-around), and flushed it from the TLB; the PLT slots' pages,
/// mapped by the same read, paid the same. (The 4,000-relocation fixture's
/// `RTLD_LAZY` cycle: 2 TLB flushes instead of 10, by the `tlb:tlb_flush`
/// tracepoint, and 37.3 µs of system time instead of 47.5, medians of 12
/// interleaved runs.) Not for a big RELRO, copied once relocation starts
/// (see [`copy_big_relro`]).
fn populate_relro(base: usize, loads: &[Load], relro: Option<(u64, u64)>) {
    if relro_is_big(relro) {
        return;
    }
    let Some((vaddr, memsz)) = relro.filter(|&(_, memsz)| memsz > 0) else {
        return;
    };
    let lo = vaddr as usize;
    let Some(hi) = lo.checked_add(memsz as usize) else {
        return;
    };
    let inside = |l: &Load| {
        l.prot.contains(ProtFlags::WRITE)
            && l.mapstart <= page_down(lo)
            && hi <= l.mapend.max(l.allocend)
    };
    if !loads.iter().any(inside) {
        return;
    }
    if let Some(end) = page_up(base + hi) {
        // SAFETY: whole pages of a writable segment of the mapping just made
        // (checked above), which nothing refers into yet.
        unsafe { populate_write(page_down(base + lo), end) };
    }
}

/// `madvise(MADV_POPULATE_WRITE)` on `[start, end)`. Best effort: if the
/// call fails (a kernel before 5.14), the faults happen as they would have.
///
/// # Safety
/// Whole pages of this loader's writable mappings, which nothing is using:
/// populating them changes no byte of them.
unsafe fn populate_write(start: usize, end: usize) {
    // SAFETY: the caller's contract.
    let _ = unsafe {
        rustix::mm::madvise(
            start as *mut _,
            end - start,
            rustix::mm::Advice::LinuxPopulateWrite,
        )
    };
}

/// Reserve `span` bytes, PROT_NONE, starting at a multiple of `align` (a
/// power of two): gaps between segments stay inaccessible, and nothing
/// else can be mapped in between.
fn reserve(span: usize, align: usize) -> Result<Mapping, rustix::io::Errno> {
    let reserve = span + (align - PAGE_SIZE);
    // SAFETY: a fresh anonymous mapping at an address the kernel chooses.
    let raw = unsafe {
        rustix::mm::mmap_anonymous(
            std::ptr::null_mut(),
            reserve,
            ProtFlags::empty(),
            MapFlags::PRIVATE | MapFlags::NORESERVE,
        )
    }? as usize;
    let aligned = (raw + align - 1) & !(align - 1);
    // SAFETY: trimming the parts of our own reservation outside the
    // aligned span; nothing refers to them.
    unsafe {
        if aligned > raw {
            let _ = rustix::mm::munmap(raw as *mut _, aligned - raw);
        }
        let tail = raw + reserve - (aligned + span);
        if tail > 0 {
            let _ = rustix::mm::munmap((aligned + span) as *mut _, tail);
        }
    }
    Ok(Mapping {
        start: aligned,
        len: span,
    })
}

/// Make the pages of `mapping` that no segment covers inaccessible (the
/// first segment was mapped over all of them).
fn close_holes(mapping: &Mapping, base: usize, loads: &[Load]) -> Result<(), i32> {
    let mut covered = mapping.start;
    let ends = loads.iter().map(|l| {
        let end = page_up(base + l.allocend).unwrap_or(base + l.mapend);
        (base + l.mapstart, end.max(base + l.mapend))
    });
    for (start, end) in ends.chain([(mapping.start + mapping.len, 0)]) {
        if start > covered {
            if let Some(errno) = crate::fault::injected(crate::fault::Syscall::Mprotect) {
                return Err(errno);
            }
            // SAFETY: a gap inside our own mapping, between two segments.
            unsafe {
                rustix::mm::mprotect(covered as *mut _, start - covered, MprotectFlags::empty())
                    .map_err(|e| e.raw_os_error())?;
            }
        }
        covered = covered.max(end);
    }
    Ok(())
}

/// Whether a segment's file pages are mapped before `map_segment`.
#[derive(Clone, Copy)]
enum Pages {
    Unmapped,
    /// By the first mapping, from the right file offset, with these
    /// permissions.
    Mapped(ProtFlags),
}

/// Is every file page of writable segment `l` one that the load writes
/// anyway: PT_GNU_RELRO's (see [`populate_relro`]), or the page where
/// `.bss` starts, which is zeroed? Then the segment is mapped with
/// MAP_POPULATE, its copies made by the `mmap` itself. (The usual layout of
/// a small object: one page of RELRO, then `.got.plt`, `.data` and the
/// start of `.bss` in one page. Its load then takes two faults instead of
/// five, and the open+close benchmark's ratio went from 1.02 to 0.91.)
fn written_whole(l: &Load, relro: Option<(u64, u64)>) -> bool {
    let Some((vaddr, memsz)) = relro.filter(|&(_, memsz)| memsz < BIG_RELRO as u64) else {
        return false;
    };
    let Some(end) = vaddr.checked_add(memsz).and_then(|e| page_up(e as usize)) else {
        return false;
    };
    let bss_page = l.zeroed_page();
    l.prot.contains(ProtFlags::WRITE)
        && page_down(vaddr as usize) <= l.mapstart
        && (end >= l.mapend || (bss_page == Some(end) && end + PAGE_SIZE >= l.mapend))
}

/// Map segment `l` (its file pages, or only their permissions if `pages`
/// says they are mapped; with `populate`, its pages copied at once), then
/// its bss.
fn map_segment(o: &Opened, base: usize, l: &Load, pages: Pages, populate: bool) -> Result<(), i32> {
    let err = |e: rustix::io::Errno| e.raw_os_error();
    if let Pages::Mapped(prot) = pages {
        if l.mapend > l.mapstart && prot != l.prot {
            if let Some(errno) = crate::fault::injected(crate::fault::Syscall::Mprotect) {
                return Err(errno);
            }
            // SAFETY: the segment's pages, inside the span mapped in
            // `map_for` (checked by `plan`), nothing in them used yet.
            unsafe {
                rustix::mm::mprotect(
                    (base + l.mapstart) as *mut _,
                    l.mapend - l.mapstart,
                    mprotect_flags(l.prot),
                )
                .map_err(err)?;
            }
        }
    } else if l.mapend > l.mapstart {
        if let Some(errno) = crate::fault::injected(crate::fault::Syscall::Mmap) {
            return Err(errno);
        }
        // SAFETY: the target range lies inside the span mapped in `map_for`
        // (checked by `plan`: ascending, non-overlapping, within the span),
        // so MAP_FIXED replaces only our own pages.
        unsafe {
            rustix::mm::mmap(
                (base + l.mapstart) as *mut _,
                l.mapend - l.mapstart,
                l.prot,
                if populate {
                    MapFlags::PRIVATE | MapFlags::FIXED | MapFlags::POPULATE
                } else {
                    MapFlags::PRIVATE | MapFlags::FIXED
                },
                &o.file,
                l.mapoff,
            )
            .map_err(err)?;
        }
    }
    if l.allocend > l.dataend {
        // The bss: zero its part of the last file page (up to its end, if
        // it ends there, as glibc does), then map anonymous zero pages for
        // the remainder.
        let zero = base + l.dataend;
        let zeropage = page_up(zero).ok_or(libc::EINVAL)?.min(base + l.allocend);
        let zeroend = page_up(base + l.allocend).ok_or(libc::EINVAL)?;
        if let Some(page) = l.zeroed_page().map(|p| base + p) {
            let writable = l.prot.contains(ProtFlags::WRITE);
            // SAFETY: `page` is a page of this segment, mapped just above.
            // A read-only segment is made writable (never also executable)
            // for the duration of the memset.
            unsafe {
                if !writable {
                    rustix::mm::mprotect(
                        page as *mut _,
                        PAGE_SIZE,
                        MprotectFlags::READ | MprotectFlags::WRITE,
                    )
                    .map_err(err)?;
                }
                std::ptr::write_bytes(zero as *mut u8, 0, zeropage - zero);
                if !writable {
                    rustix::mm::mprotect(page as *mut _, PAGE_SIZE, mprotect_flags(l.prot))
                        .map_err(err)?;
                }
            }
        }
        let anon_start = page_up(zeropage).ok_or(libc::EINVAL)?.max(base + l.mapend);
        if zeroend > anon_start {
            // SAFETY: inside our reservation, as above.
            unsafe {
                rustix::mm::mmap_anonymous(
                    anon_start as *mut _,
                    zeroend - anon_start,
                    l.prot,
                    MapFlags::PRIVATE | MapFlags::FIXED,
                )
                .map_err(err)?;
            }
        }
    }
    Ok(())
}

/// PT_GNU_RELRO this big or bigger is copied when its object is about to
/// be relocated, or while its dependencies are ([`copy_big_relro`]), not
/// when it is mapped ([`populate_relro`]).
const BIG_RELRO: usize = 2 << 20;

/// Is PT_GNU_RELRO (vaddr, memsz) big enough to be copied once relocation
/// starts rather than when mapped?
pub(crate) fn relro_is_big(relro: Option<(u64, u64)>) -> bool {
    relro.is_some_and(|(_, memsz)| memsz >= BIG_RELRO as u64)
}

/// Have the kernel make the private copies of a big PT_GNU_RELRO's pages
/// (see [`BIG_RELRO`]) before the object is relocated, each stretch of
/// 2 MiB in which `dense` finds at least as many RELATIVE relocations as
/// pages. Where relocations are sparse, the pages are left to their first
/// write, so that those no relocation writes stay the file's, shared, as
/// under glibc.
///
/// When there are two stretches or more, a helper thread starts on them at
/// once, in chunks (see `two_cores::Ahead`), while this thread relocates
/// the object's dependencies, and this thread joins in when it reaches the
/// object ([`BigRelroCopies::finish`]). The helper copies each page by a
/// fault ([`copy_by_touch`]); this thread, which by then does nothing
/// else, has the kernel copy each chunk it takes with one
/// `madvise(MADV_POPULATE_WRITE)`, as it does all the pages of a smaller
/// RELRO.
///
/// Why not when mapping: a load that fails, or starts over because glibc
/// must first load a C-runtime library (libLLVM-15's libm, in a program
/// without it), would copy megabytes for nothing. Why not anonymous huge
/// pages filled with `pread`, as dynload did before: in back-to-back loads
/// of libLLVM-15 that was about as fast as populating at relocation (0.796
/// and 0.772 of glibc's time against 0.781 and 0.770 in two series of 41
/// interleaved fresh processes each, 0.776 and 0.760 against 0.806 and
/// 0.823 in two of 31), but the kernel zeroes each fresh huge page, and
/// on a virtual machine that hands free 2 MiB blocks back to its host
/// (free page reporting) a block the host must back again made that
/// zeroing slow: some loads took twice as long, and series of loads 1.5 s
/// apart took 0.75 to 1.47 of glibc's time, against 0.80 to 0.84 for small
/// pages, which are copied from the page cache and never zeroed
/// (docs/performance.md).
///
/// `phdrs` are the object's program headers (`mapped.phdrs` may be empty
/// once the object is built).
///
/// # Safety
/// The object's pages must stay mapped until the returned value is
/// finished or dropped, and nothing may write them before it is finished.
pub(crate) unsafe fn copy_big_relro(
    mapped: &Mapped,
    phdrs: &[Phdr],
    dense: &dyn Fn(u64, u64) -> bool,
) -> BigRelroCopies {
    let runs = big_relro_runs(mapped, phdrs, dense);
    let bytes: usize = runs.iter().map(|&(from, to)| to - from).sum();
    // Each run's chunks, as (start, end) addresses.
    let chunks: Vec<(usize, usize)> = runs
        .iter()
        .flat_map(|&(from, to)| {
            (from..to)
                .step_by(RELRO_CHUNK)
                .map(move |at| (at, (at + RELRO_CHUNK).min(to)))
        })
        .collect();
    // (Fewer than 2^32 chunks: the address space has room for 2^47 bytes.)
    let count = u32::try_from(chunks.len()).expect("fewer than 2^32 chunks");
    let threaded = bytes >= 2 * BIG_RELRO;
    let work: ChunkWork = Box::new(move |i: usize, on_helper: bool| {
        let (start, end) = chunks[i];
        // SAFETY: whole pages of a writable segment's file data in this
        // object's own mapping (checked by `big_relro_runs`), which the
        // caller keeps mapped, and does not write, until the copies are
        // done; neither way of copying changes a byte of them.
        unsafe {
            if on_helper {
                copy_by_touch(start, end)
            } else {
                populate_write(start, end)
            }
        }
    });
    let ahead = if threaded {
        crate::two_cores::Ahead::start(count, work)
    } else {
        crate::two_cores::Ahead::here(count, work)
    };
    BigRelroCopies { ahead, bytes }
}

/// The bytes of a big RELRO copied at a time by one thread or the other.
const RELRO_CHUNK: usize = 256 << 10;

/// Have the kernel make the private copy of each page of `[start, end)` by
/// writing its first word back to itself with a locked `or` of zero: one
/// write fault a page, and no byte changes, whatever another thread does
/// meanwhile.
///
/// For the helper, while the loading thread relocates other objects. Why
/// not `madvise(MADV_POPULATE_WRITE)` there, which saves the faults: it
/// holds the process's memory map for reading while it works, and the
/// other thread's `mprotect` calls and faults waited for it. Beside it,
/// libLLVM-15's dependencies took 2.7 to 4.9 ms to relocate, against 0.9
/// to 1.3 ms beside these faults (0.8 to 0.95 with no helper); its first
/// load took 0.784 of glibc's time against 0.685 (31 interleaved fresh
/// processes each). (Calls of 32 KiB or less slowed the other thread less,
/// but the kernel's lock makes no promise of it.)
///
/// # Safety
/// Whole pages of this loader's writable private mappings of file data
/// (a page past the file's end would raise SIGBUS), which stay mapped
/// while this runs.
unsafe fn copy_by_touch(start: usize, end: usize) {
    for page in (start..end).step_by(PAGE_SIZE) {
        // SAFETY: a writable page (the caller's), whose first word is
        // aligned; a locked read-modify-write keeps its value.
        unsafe { core::arch::asm!("lock or qword ptr [{0}], 0", in(reg) page, options(nostack)) };
    }
}

/// A big RELRO's copies under way ([`copy_big_relro`]).
pub(crate) struct BigRelroCopies {
    ahead: crate::two_cores::Ahead<ChunkWork>,
    bytes: usize,
}

/// Copies chunk `i` of a big RELRO, on the helper thread or not.
type ChunkWork = Box<dyn Fn(usize, bool) + Sync>;

impl BigRelroCopies {
    /// Make the copies the helper has not made yet, here, and wait for the
    /// rest; returns the bytes populated.
    pub(crate) fn finish(self) -> usize {
        self.ahead.finish();
        self.bytes
    }
}

/// The dense runs of a big RELRO, as page-aligned address ranges (see
/// [`copy_big_relro`]).
fn big_relro_runs(
    mapped: &Mapped,
    phdrs: &[Phdr],
    dense: &dyn Fn(u64, u64) -> bool,
) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let Some((vaddr, memsz)) = mapped.relro.filter(|&(_, memsz)| memsz >= BIG_RELRO as u64) else {
        return runs;
    };
    let lo = page_down(vaddr as usize);
    // The writable segment that holds RELRO's first page: its pages, up to
    // the last the file backs.
    let segment = phdrs.iter().find(|p| {
        let (start, filesz) = (p.p_vaddr.get(LE) as usize, p.p_filesz.get(LE) as usize);
        p.p_type.get(LE) == elf::PT_LOAD
            && p.p_flags.get(LE) & elf::PF_W != 0
            && page_down(start) <= lo
            && lo < start.saturating_add(filesz)
    });
    let Some(p) = segment else {
        return runs;
    };
    let data_end = (p.p_vaddr.get(LE) as usize).saturating_add(p.p_filesz.get(LE) as usize);
    let Some(end) = page_up((vaddr.saturating_add(memsz) as usize).min(data_end)) else {
        return runs;
    };
    let base = mapped.base;
    if base.wrapping_add(lo) < mapped.mapping.start()
        || base.wrapping_add(end) > mapped.mapping.end()
    {
        // (Not reached: `plan` checked that segments lie in the span.)
        return runs;
    }
    let stretch_end = |from: usize| (from + BIG_RELRO).min(end);
    let is_dense = |from: usize| dense(from as u64, stretch_end(from) as u64);
    let mut from = lo;
    while from < end {
        if !is_dense(from) {
            from = stretch_end(from);
            continue;
        }
        // A run of consecutive stretches that qualify, populated together.
        let mut to = stretch_end(from);
        while to < end && is_dense(to) {
            to = stretch_end(to);
        }
        runs.push((base + from, base + to));
        from = to;
    }
    runs
}

/// Have the kernel make the private copies of the PLT slots' pages at
/// `[slots.0, slots.1)` (each slot is written, bound or rebased) in one
/// call instead of one write fault a page, just before relocation (RELRO's
/// were copied when the object was mapped, see [`populate_relro`], or, if
/// big, once relocation started, see [`copy_big_relro`]). No
/// other page is copied: `.data` that no relocation touches stays the
/// file's, as under glibc. A stretch of one page is left to its fault,
/// which costs about what the call does. For an object whose writable
/// segment was not populated when it was mapped ([`Mapped::populated`]).
///
/// (Measured on the 4,000-relocation benchmark fixture, with RELRO then
/// copied here too: 6 faults a load instead of 15, and the paired bench's
/// `RTLD_NOW` ratio 0.585 to 0.602 against 0.611 to 0.631 without, in
/// interleaved processes.)
pub(crate) fn populate_slots(image: &Image, slots: Option<(usize, usize)>) {
    let Some((lo, hi)) = slots.filter(|&(lo, hi)| hi > lo && image.is_writable(lo, hi - lo)) else {
        return;
    };
    let Some(hi) = page_up(hi) else {
        return;
    };
    let lo = page_down(lo);
    if hi - lo >= 2 * PAGE_SIZE {
        // SAFETY: pages of this object's writable segments, not yet
        // relocated.
        unsafe { populate_write(lo, hi) };
    }
}

fn mprotect_flags(p: ProtFlags) -> MprotectFlags {
    let mut m = MprotectFlags::empty();
    if p.contains(ProtFlags::READ) {
        m |= MprotectFlags::READ;
    }
    if p.contains(ProtFlags::WRITE) {
        m |= MprotectFlags::WRITE;
    }
    if p.contains(ProtFlags::EXEC) {
        m |= MprotectFlags::EXEC;
    }
    m
}

/// Text relocations (opted in): make `ranges` (an object's read-only
/// segments) readable and writable — never executable — for the time of
/// its relocation, or, with `open` false, give them back their own
/// protections (`flags_of` gives the segment's p_flags by start address).
pub(crate) fn text_writable(
    ranges: &[(usize, usize)],
    open: bool,
    flags_of: impl Fn(usize) -> u32,
    name: &str,
) -> Result<(), Error> {
    for &(start, end) in ranges {
        let (s, e) = (page_down(start), page_up(end).unwrap_or(end));
        let prot = if open {
            MprotectFlags::READ | MprotectFlags::WRITE
        } else {
            mprotect_flags(prot_of(flags_of(start)))
        };
        // SAFETY: the range is a segment of the object being relocated,
        // mapped by this loader; nothing runs from it while it is changed.
        unsafe { rustix::mm::mprotect(s as *mut _, e - s, prot) }.map_err(|e| {
            Error::system(
                name,
                if open {
                    "cannot make segment writable for relocation"
                } else {
                    "cannot restore segment prot after reloc"
                },
                e.raw_os_error(),
            )
        })?;
    }
    Ok(())
}

/// Make PT_GNU_RELRO read-only after relocation. The end is rounded down,
/// as glibc does: the partial page at the end stays writable.
pub(crate) fn protect_relro(mapped: &Mapped, name: impl Into<String> + Copy) -> Result<(), Error> {
    let Some((vaddr, memsz)) = mapped.relro else {
        return Ok(());
    };
    let Some(relro_end) = vaddr.checked_add(memsz) else {
        return Err(Error::invalid(name, "PT_GNU_RELRO lies outside the object"));
    };
    let start = page_down(mapped.base.wrapping_add(vaddr as usize));
    let end = page_down(mapped.base.wrapping_add(relro_end as usize));
    if end > start {
        if start < mapped.mapping.start() || end > mapped.mapping.end() {
            return Err(Error::invalid(name, "PT_GNU_RELRO lies outside the object"));
        }
        if let Some(errno) = crate::fault::injected(crate::fault::Syscall::Mprotect) {
            return Err(Error::system(
                name,
                "cannot apply additional memory protection after relocation",
                errno,
            ));
        }
        // SAFETY: the range lies inside this object's own mapping.
        unsafe { rustix::mm::mprotect(start as *mut _, end - start, MprotectFlags::READ) }
            .map_err(|e| {
                Error::system(
                    name,
                    "cannot apply additional memory protection after relocation",
                    e.raw_os_error(),
                )
            })?;
    }
    Ok(())
}
