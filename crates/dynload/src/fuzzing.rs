//! Entry points for the `cargo fuzz` targets in `fuzz/` (README,
//! "Fuzzing"): each feeds arbitrary bytes to the loader's own parsers — the
//! same functions loading uses, not copies. Errors are expected; a panic,
//! an abort or a crash is a bug.
//!
//! The table parsers read an object's memory through an [`Image`], so each
//! input first becomes memory, in one of two ways:
//!
//! - An ELF file (the input starts with `\x7fELF`): its header and program
//!   headers are checked by the real header code, and its PT_LOAD segments
//!   are laid out in zero-filled, page-aligned heap memory where `map.rs`
//!   would map them (file pages from `page_down(p_offset)` at
//!   `page_down(p_vaddr)`, zeros up to `p_memsz`); segments `map.rs` would
//!   refuse to place (offset and address not congruent, `p_filesz >
//!   p_memsz`, past the end of the file) make the input uninteresting.
//! - Anything else is a raw image: the input itself is the memory of one
//!   readable and writable segment at virtual address 0, followed by `tail`
//!   zero bytes, and a header at its start says where the tables are
//!   ([`RAW_TABLES`], [`RAW_DYNAMIC`]). The fuzzer then reaches the table
//!   parsers without having to build a valid ELF file first.
//!
//! The memory of one input is capped at [`MAX_SPAN`]; bigger layouts are
//! skipped, as the fuzzer's time is better spent elsewhere.

#![doc(hidden)]

use std::alloc::Layout;
use std::io::Write;

use crate::elf::dynamic::{self, DynInfo, DynTable, DynValue, Table};
use crate::elf::hash::elf_hash;
use crate::elf::image::Image;
use crate::elf::symbols::{NameHash, SymbolTable};
use crate::elf::versions::Versions;
use crate::elf::{elf, header, page_down, page_up, Phdr, LE, PAGE_SIZE};
use crate::find::cache::{libcmp, LdCache};
use crate::relocate::{check_entry, rela_entries, walk_relr};

/// The most memory one input is laid out in.
pub const MAX_SPAN: usize = 64 << 20;

/// Raw-image header of `hash_tables`, `version_tables` and
/// `relocation_tables`: 16 little-endian u32 words. Word 0: flags (bit 1:
/// the segment is read-only); word 1: `tail`; words 2 to 15: DT_GNU_HASH,
/// DT_HASH, DT_SYMTAB, DT_STRTAB, DT_STRSZ, DT_VERSYM, DT_VERDEF,
/// DT_VERNEED, DT_RELA, DT_RELASZ, DT_JMPREL, DT_PLTRELSZ, DT_RELR,
/// DT_RELRSZ, as offsets in the image (an address of 0, this header, means
/// "absent").
pub const RAW_TABLES: usize = 64;

/// Raw-image header of `dynamic_section`: 4 little-endian u32 words. Word
/// 0: flags (bit 0: pointers may be absolute, as in objects glibc loaded;
/// bit 1: the segment is read-only); word 1: `tail`; words 2 and 3: offset
/// and size of the dynamic section in the image.
pub const RAW_DYNAMIC: usize = 16;

/// The name errors are reported against.
const NAME: &str = "fuzz input";

/// Zero-filled, page-aligned heap memory standing in for a mapping.
struct Memory {
    ptr: *mut u8,
    layout: Layout,
}

impl Memory {
    fn zeroed(len: usize) -> Option<Memory> {
        if len == 0 || len > MAX_SPAN {
            return None;
        }
        let layout = Layout::from_size_align(len, PAGE_SIZE).ok()?;
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        (!ptr.is_null()).then_some(Memory { ptr, layout })
    }

    fn addr(&self) -> usize {
        self.ptr as usize
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` is a live allocation of `layout.size()` initialised
        // (zeroed) bytes, borrowed mutably through `self`.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.layout.size()) }
    }
}

impl Drop for Memory {
    fn drop(&mut self) {
        // SAFETY: allocated in `zeroed` with this layout, freed once.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) }
    }
}

/// An input laid out as an object's memory.
pub(crate) struct Loaded {
    pub(crate) image: Image,
    /// Absolute address and size of the dynamic section, if any.
    dynamic: Option<(usize, usize)>,
    /// Absolute address of `.eh_frame_hdr`, if any.
    pub(crate) eh_frame_hdr: Option<usize>,
    maybe_relocated: bool,
    /// Declared after `image`: the memory it describes outlives it.
    _memory: Memory,
}

fn is_elf(data: &[u8]) -> bool {
    data.starts_with(&elf::ELFMAG)
}

fn u32_at(data: &[u8], word: usize) -> u32 {
    data.get(4 * word..4 * word + 4)
        .map_or(0, |b| u32::from_le_bytes(b.try_into().unwrap_or_default()))
}

/// `f` of a copy of `bytes` in 8-aligned memory: the header code reads ELF
/// structures in place, as the loader does from its heap buffer, and an
/// input (a test's constant, say) need not be aligned.
fn aligned<R>(bytes: &[u8], f: impl FnOnce(&[u8]) -> R) -> R {
    let mut words = vec![0u64; bytes.len().div_ceil(8)];
    object::pod::bytes_of_slice_mut(&mut words)[..bytes.len()].copy_from_slice(bytes);
    f(&object::pod::bytes_of_slice(&words)[..bytes.len()])
}

/// An ELF file laid out as `map.rs` would map it (see the module comment).
pub(crate) fn layout_elf(data: &[u8]) -> Option<Loaded> {
    let head = &data[..data.len().min(header::HEADER_READ)];
    let hdr = aligned(head, header::check).ok()?;
    let count = usize::from(hdr.phnum);
    let start = usize::try_from(hdr.phoff).ok()?;
    let ph_bytes = data.get(start..start.checked_add(count * std::mem::size_of::<Phdr>())?)?;
    let phdrs = aligned(ph_bytes, |b| header::program_headers(b, count))?;
    let loads = || phdrs.iter().filter(|p| p.p_type.get(LE) == elf::PT_LOAD);
    let (mut low, mut high) = (usize::MAX, 0usize);
    for p in loads() {
        let (vaddr, memsz) = (p.p_vaddr.get(LE) as usize, p.p_memsz.get(LE) as usize);
        let (offset, filesz) = (p.p_offset.get(LE) as usize, p.p_filesz.get(LE) as usize);
        if vaddr.wrapping_sub(offset) % PAGE_SIZE != 0
            || filesz > memsz
            || offset.checked_add(filesz)? > data.len()
        {
            return None;
        }
        low = low.min(page_down(vaddr));
        high = high.max(page_up(vaddr.checked_add(memsz)?)?);
    }
    let mut memory = Memory::zeroed(high.checked_sub(low)?)?;
    for p in loads() {
        let (vaddr, offset) = (p.p_vaddr.get(LE) as usize, p.p_offset.get(LE) as usize);
        let file = &data[page_down(offset)..offset + p.p_filesz.get(LE) as usize];
        let at = page_down(vaddr) - low;
        memory.bytes_mut()[at..at + file.len()].copy_from_slice(file);
    }
    let base = memory.addr().wrapping_sub(low);
    // SAFETY: every PT_LOAD segment lies in [low, high), which `memory`
    // holds at `base + low`; `memory` lives as long as the image (`Loaded`).
    let image = unsafe { Image::new(base, &phdrs) };
    let dynamic = phdrs
        .iter()
        .find(|p| p.p_type.get(LE) == elf::PT_DYNAMIC)
        .map(|p| {
            let addr = base.wrapping_add(p.p_vaddr.get(LE) as usize);
            (addr, p.p_memsz.get(LE) as usize)
        });
    let eh_frame_hdr = phdrs
        .iter()
        .find(|p| p.p_type.get(LE) == elf::PT_GNU_EH_FRAME)
        .map(|p| base.wrapping_add(p.p_vaddr.get(LE) as usize));
    Some(Loaded {
        image,
        dynamic,
        eh_frame_hdr,
        maybe_relocated: false,
        _memory: memory,
    })
}

/// A raw image: `data` and `tail` zero bytes as one segment at vaddr 0.
fn layout_raw(data: &[u8], header_len: usize) -> Option<Loaded> {
    if data.len() < header_len {
        return None;
    }
    let flags = u32_at(data, 0);
    let memsz = data.len().checked_add(u32_at(data, 1) as usize)?;
    let mut memory = Memory::zeroed(page_up(memsz)?)?;
    memory.bytes_mut()[..data.len()].copy_from_slice(data);
    let u32_ = |v| object::U32::new(LE, v);
    let u64_ = |v: usize| object::U64::new(LE, v as u64);
    let write = if flags & 2 == 0 { elf::PF_W } else { 0 };
    let phdr = Phdr {
        p_type: u32_(elf::PT_LOAD),
        p_flags: u32_(elf::PF_R | write),
        p_offset: u64_(0),
        p_vaddr: u64_(0),
        p_paddr: u64_(0),
        p_filesz: u64_(data.len()),
        p_memsz: u64_(memsz),
        p_align: u64_(PAGE_SIZE),
    };
    // SAFETY: the one segment, [0, memsz), is `memory`, which lives as long
    // as the image (`Loaded`).
    let image = unsafe { Image::new(memory.addr(), &[phdr]) };
    let dynamic = (header_len == RAW_DYNAMIC).then(|| {
        let offset = u32_at(data, 2) as usize;
        (memory.addr().wrapping_add(offset), u32_at(data, 3) as usize)
    });
    Some(Loaded {
        image,
        dynamic,
        eh_frame_hdr: None,
        maybe_relocated: header_len == RAW_DYNAMIC && flags & 1 != 0,
        _memory: memory,
    })
}

/// The decoded dynamic section of an ELF input (checked as loading checks
/// it), or the tables a raw image's header names.
pub(crate) fn tables(data: &[u8]) -> Option<(Loaded, DynInfo)> {
    if is_elf(data) {
        let l = layout_elf(data)?;
        let (addr, size) = l.dynamic?;
        let d = dynamic::parse(&l.image, addr, size, l.maybe_relocated).ok()?;
        dynamic::check_tables(&l.image, &d).ok()?;
        return Some((l, d));
    }
    let l = layout_raw(data, RAW_TABLES)?;
    let at = |word| Some(u64::from(u32_at(data, word))).filter(|&v| v != 0);
    let table = |word| {
        at(word).map(|vaddr| Table {
            vaddr,
            size: u64::from(u32_at(data, word + 1)),
        })
    };
    let mut d = DynInfo::default();
    for (slot, word) in [
        (DynValue::gnu_hash, 2),
        (DynValue::hash, 3),
        (DynValue::symtab, 4),
        (DynValue::versym, 7),
        (DynValue::verdef, 8),
        (DynValue::verneed, 9),
    ] {
        if let Some(v) = at(word) {
            d.set_value(slot, v);
        }
    }
    for (slot, word) in [
        (DynTable::strtab, 5),
        (DynTable::rela, 10),
        (DynTable::jmprel, 12),
        (DynTable::relr, 14),
    ] {
        d.set_table(slot, table(word));
    }
    dynamic::check_tables(&l.image, &d).ok()?;
    Some((l, d))
}

/// Names looked up in every symbol table, besides the table's own.
const NAMES: &[&[u8]] = &[
    b"",
    b"malloc",
    b"printf",
    b"__libc_start_main",
    b"PyInit_fuzz",
    b"_ZSt4cout",
    b"GLIBC_2.2.5",
];

/// The ELF header and program-header checks, and the mapper: the input is
/// put in a memory file and goes through `find::open_verify`,
/// `map::map_for_reading` and `View::of_mapped`, as `dynload check` reads
/// a file.
pub fn elf_header(data: &[u8]) {
    let Ok(fd) = rustix::fs::memfd_create(c"dynload-fuzz", rustix::fs::MemfdFlags::CLOEXEC) else {
        return;
    };
    let mut file = std::fs::File::from(fd);
    if file.write_all(data).is_err() {
        return;
    }
    let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&file));
    let opened = match crate::find::open_verify(path.as_bytes()) {
        Ok(o) => o,
        Err(crate::find::Rejected::Fatal(e)) => {
            let _ = e.to_string();
            return;
        }
        Err(crate::find::Rejected::Skipped(p)) => {
            let _ = (p.message(), p.skips_in_search());
            return;
        }
        Err(crate::find::Rejected::Missing(_)) => return,
    };
    // The span the mapper would reserve, capped like the other targets'.
    let loads = opened
        .phdrs
        .iter()
        .filter(|p| p.p_type.get(LE) == elf::PT_LOAD);
    let low = loads.clone().map(|p| p.p_vaddr.get(LE)).min().unwrap_or(0);
    let high = loads
        .map(|p| p.p_vaddr.get(LE).saturating_add(p.p_memsz.get(LE)))
        .max()
        .unwrap_or(0);
    if high.saturating_sub(low) > MAX_SPAN as u64 {
        return;
    }
    let Ok(mapped) = crate::map::map_for_reading(&opened, NAME) else {
        return;
    };
    // SAFETY: `mapped` owns the read-only mapping and the program headers
    // and outlives the view (dropped at the end of this block first).
    let view = unsafe {
        crate::host::View::of_mapped(
            mapped.base,
            mapped.phdrs.as_ptr(),
            mapped.phdrs.len(),
            false,
        )
    };
    if let Ok(view) = view {
        symbols(&view.symbols);
        versions(&view.symbols, &view.versions);
    }
}

/// `dynamic::parse` and `check_tables`, then the strings the section names;
/// for ELF inputs, also the `.eh_frame` check of unwind registration.
pub fn dynamic_section(data: &[u8]) {
    let l = if is_elf(data) {
        layout_elf(data)
    } else {
        layout_raw(data, RAW_DYNAMIC)
    };
    let Some(l) = l else { return };
    if let Some(hdr) = l.eh_frame_hdr {
        let _ = crate::unwind::eh_frame_of(&l.image, hdr);
    }
    let Some((addr, size)) = l.dynamic else {
        return;
    };
    let Ok(d) = dynamic::parse(&l.image, addr, size, l.maybe_relocated) else {
        return;
    };
    let _ = (d.has_textrel(), d.is_symbolic(), d.wants_bind_now());
    let _ = d.flag_1(elf::DF_1_NODELETE);
    if dynamic::check_tables(&l.image, &d).is_err() {
        return;
    }
    if let Ok(syms) = SymbolTable::parse(&l.image, &d) {
        let names = [d.soname(), d.rpath(), d.runpath()];
        for off in d.needed.iter().chain(names.iter().flatten()) {
            let _ = syms.string(*off as usize);
        }
    }
}

/// `SymbolTable::parse` (GNU or SysV hash table), lookups, the symbol
/// iterator and `hash_order` (what `dladdr`'s index is built from).
pub fn hash_tables(data: &[u8]) {
    let Some((l, d)) = tables(data) else { return };
    if let Ok(syms) = SymbolTable::parse(&l.image, &d) {
        symbols(&syms);
    }
}

/// `Versions::parse` over the symbol table, and the queries lookups make.
pub fn version_tables(data: &[u8]) {
    let Some((l, d)) = tables(data) else { return };
    let Ok(syms) = SymbolTable::parse(&l.image, &d) else {
        return;
    };
    if let Ok(v) = Versions::parse(&l.image, &d, &syms) {
        versions(&syms, &v);
    }
}

/// The checks relocation makes on every DT_RELR, DT_RELA and DT_JMPREL
/// entry before it writes anything (nothing is written here).
pub fn relocation_tables(data: &[u8]) {
    let Some((l, d)) = tables(data) else { return };
    let Ok(syms) = SymbolTable::parse(&l.image, &d) else {
        return;
    };
    if let Some(t) = d.relr() {
        let _ = walk_relr(&l.image, t, NAME, |_| {});
    }
    for (t, plt) in [(d.rela(), false), (d.jmprel(), true)] {
        let Some(Ok(entries)) = t.map(|t| rela_entries(&l.image, t, NAME)) else {
            continue;
        };
        // As relocation: the first refused entry ends the table.
        for rela in entries {
            if check_entry(&l.image, &syms, rela, plt, NAME).is_err() {
                break;
            }
        }
    }
}

/// `LdCache::parse`, then lookups as the search makes them.
pub fn ld_so_cache(data: &[u8]) {
    let Ok(cache) = LdCache::parse(data.to_vec()) else {
        return;
    };
    // Names of the input's own strings too, so that lookups can hit.
    let own = data
        .rsplit(|&b| b == 0)
        .filter(|s| !s.is_empty() && s.len() < 64)
        .take(4);
    let fixed: [&[u8]; 5] = [b"libc.so.6", b"libz.so.1", b"libfoo.so.10", b"lib", b""];
    for name in own.chain(fixed) {
        let _ = libcmp(name, b"libc.so.6");
        for (active, hwcap) in [
            (&[][..], 0),
            (&["x86-64-v3", "x86-64-v2"][..], 2),
            (&["x86-64-v4", "x86-64-v3", "x86-64-v2"][..], u64::MAX),
        ] {
            let _ = cache.lookup(name, active, hwcap);
        }
    }
}

/// What lookups and `dladdr` do with a symbol table.
fn symbols(syms: &SymbolTable) {
    let order = syms.hash_order();
    let own = order.iter().take(64).filter_map(|&i| syms.get(i));
    let own: Vec<&[u8]> = own.map(|s| syms.name(s)).collect();
    for name in NAMES.iter().copied().chain(own) {
        let mut hash = NameHash::new(name);
        // Every definition of the name, then the first.
        let _ = syms.find(name, &mut hash, |_, _| false);
        let _ = syms.find(name, &mut hash, |i, s| {
            let _ = syms.address(s);
            syms.versym(i).is_none_or(|v| v & 0x8000 == 0)
        });
    }
    for (i, s) in syms.iter().take(4096) {
        let _ = (syms.name(s), syms.address(s), syms.versym(i));
    }
}

/// What symbol lookups and the version checks of loading ask `v`.
fn versions(syms: &SymbolTable, v: &Versions) {
    for (i, _) in syms.iter().take(4096) {
        if let Some(versym) = syms.versym(i) {
            let _ = (v.entry(versym), v.at(versym));
        }
    }
    for r in v.requirements() {
        let _ = (v.defines(r.hash, r.name), v.unmet(&r));
    }
    let _ = v.defines(elf_hash(b"GLIBC_2.2.5"), b"GLIBC_2.2.5");
    let _ = (v.entry(u16::MAX), v.at(u16::MAX), v.at(0), v.at(1));
}
