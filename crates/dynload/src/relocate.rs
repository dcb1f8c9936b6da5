//! Relocation processing for x86_64: DT_RELR, DT_RELA, then DT_JMPREL, with
//! IRELATIVE entries of each table run last, and glibc's one-entry lookup
//! cache for consecutive relocations against the same symbol. In lazy mode
//! the PLT slots are only rebased, and bound at their first call (see
//! [`crate::lazy`]).
//!
//! Hand-written rather than taken from a crate: this loop is the bulk of a
//! large library's load time, and it must apply glibc's exact lookup rules
//! against dynload's own scopes.

use crate::debug::{self, debug};
use crate::dlfcn;
use crate::elf::dynamic::Table;
use crate::elf::image::Image;
use crate::elf::symbols::{NameHash, OwnName, SymbolTable, Wanted};
use crate::elf::versions::VersionEntry;
use crate::elf::{elf, Rela, Sym, SymExt, LE, PAGE_SIZE};
use crate::error::{Error, ErrorKind, Shown};
use crate::lazy::LazyInfo;
use crate::link::{Flags, Found, PreparedScope, Searched, NO_DEFINER};
use crate::object::{ObjId, Object};
use crate::registry::Registry;
use crate::tls::{self, TlsIndex};

/// What relocating one object found out, applied to the registry after.
#[derive(Default)]
pub(crate) struct Outcome {
    /// dynload objects bound to that are not dependencies (glibc's reldeps).
    pub reldeps: Vec<ObjId>,
    /// Objects that defined STB_GNU_UNIQUE symbols used here.
    pub unique_definers: Vec<ObjId>,
    /// TLS descriptor arguments, owned by the object from now on.
    // Boxed: GOT slots point to each one, so they must never move.
    #[allow(clippy::vec_box)]
    pub tls_descs: Vec<Box<TlsIndex>>,
    /// Set up for lazy binding: the resolver's per-object data.
    pub lazy: Option<Box<LazyInfo>>,
    pub relocations: u64,
    pub relative: u64,
    pub cached: u64,
    /// Of `relocations`, how many the fast lane bound (see `lane`).
    pub in_lane: u64,
    /// About how many lookups went through the global scope's filter (the
    /// pass's estimate, `symbolic_lookups`; 0 without the filter).
    pub filtered_lookups: usize,
    /// The definer of the last binding: its dependency record is made.
    pub last_definer: Option<ObjId>,
}

mod lane;

/// x86_64 relocation types (psABI).
pub(crate) mod r {
    pub const NONE: u32 = 0;
    pub const R64: u32 = 1;
    pub const PC32: u32 = 2;
    pub const COPY: u32 = 5;
    pub const GLOB_DAT: u32 = 6;
    pub const JUMP_SLOT: u32 = 7;
    pub const RELATIVE: u32 = 8;
    pub const R32: u32 = 10;
    pub const DTPMOD64: u32 = 16;
    pub const DTPOFF64: u32 = 17;
    pub const TPOFF64: u32 = 18;
    pub const SIZE32: u32 = 32;
    pub const SIZE64: u32 = 33;
    pub const TLSDESC: u32 = 36;
    pub const IRELATIVE: u32 = 37;
    pub const RELATIVE64: u32 = 38;
}

/// What a symbolic reference bound to.
#[derive(Clone, Copy)]
pub(crate) struct Binding {
    /// The definition; None for an undefined weak reference.
    pub found: Option<Found>,
    /// Its address (IFUNC resolved, glibc's dl* functions replaced by
    /// dynload's); for a TLS symbol, its offset in the module's block.
    pub value: usize,
    pub size: u64,
}

/// How many entries ahead the relocation loop prefetches the symbol an
/// entry names.
const PREFETCH_AHEAD: usize = 4;

/// When the entries the fast lane stopped at outnumber those it bound by
/// this many, the rest of the table is left to the general walk.
const LANE_MISSES: i64 = 8;

/// A run of RELATIVE relocations this long or longer is applied on two
/// threads (see `Relocator::relative_prefix_on_two_threads`). libLLVM-15
/// has 362,379, about 2 ms of work; at some 5 ns an entry, a run of 100,000
/// takes about 0.5 ms, where the tens of microseconds a thread takes to
/// start are well paid for.
const TWO_THREAD_RELATIVE: usize = 100_000;

/// Apply the RELATIVE entries at the head of `relas` while their targets
/// are 8-byte aligned words of a writable segment, each above the one
/// before: the part of a run that can share the work with another thread.
/// Returns how many entries it applied.
fn relative_in_order(image: &Image, relas: &[Rela]) -> usize {
    let base = image.base;
    if base % 8 != 0 {
        // (Not reached: objects are mapped at page boundaries.)
        return 0;
    }
    let mut window = WordWindow::EMPTY;
    // The lowest offset the next target may have: a multiple of 8.
    let mut above = 0u64;
    let mut count = relas.len();
    let mut entries = relas.iter();
    while let Some(rela) = entries.next() {
        let offset = rela.r_offset.get(LE);
        // Below `above`, the difference wraps and sets the top bit (offsets
        // of targets lie far below 2^63); not a multiple of 8, a low bit.
        // (Either stops the run; so does a wrong type or segment.)
        let disorder = offset.wrapping_sub(above) & (1 << 63 | 7);
        if rela.r_info.get(LE) as u32 != r::RELATIVE || disorder != 0 {
            count = relas.len() - entries.len() - 1;
            break;
        }
        let addr = image.addr(offset);
        if !window.holds(image, addr) {
            count = relas.len() - entries.len() - 1;
            break;
        }
        above = offset + 8;
        // SAFETY: `addr .. addr + 8` is an aligned word (`base` and
        // `offset` are multiples of 8) in a writable segment of this object
        // (checked above), which nothing else reads or writes while the two
        // threads run but the other half's atomic stores.
        unsafe { std::sync::atomic::AtomicUsize::from_ptr(addr as *mut usize) }.store(
            base.wrapping_add(rela.r_addend.get(LE) as usize),
            std::sync::atomic::Ordering::Relaxed,
        );
    }
    count
}

/// The one-entry cache's key for symbol `symidx` looked up for a
/// relocation of the PLT class or not.
#[inline(always)]
fn cache_key(symidx: u32, plt: bool) -> u64 {
    u64::from(symidx) | u64::from(plt) << 32
}

/// A key no reference has: the cache is empty.
const NO_CACHE_KEY: u64 = u64::MAX;

/// The refusal of an object with text relocations.
pub(crate) fn text_relocation_error(name: impl Into<String>) -> Error {
    Error::unsupported(name, "cannot load an object with text relocations (DT_TEXTREL)")
        .with_why("text relocations need its code pages written while relocating; glibc allows them, dynload only when asked to (DYNLOAD_ALLOW_TEXTREL=1 or dynload::allow_text_relocations), and then the pages are writable but not executable until relocation ends. Better: rebuild it with -fPIC")
}

/// Relocate one object of ours. Runs IFUNC resolvers (which are code of
/// already-relocated objects) but nothing else of the object. With `lazy`,
/// PLT slots are left to be bound at their first call.
pub(crate) fn relocate(reg: &Registry, id: ObjId, lazy: bool) -> Result<Outcome, Error> {
    let obj = reg.obj(id);
    // (Our objects are named by their paths.)
    let name = Shown(obj.name.to_bytes());
    let d = &obj.view.dyn_info;
    if d.has_textrel() {
        if !crate::policy::text_relocations_allowed() {
            return Err(text_relocation_error(name));
        }
        // Its code is not executable while it is written: its own IFUNC
        // resolvers could not run.
        let image = &obj.view.image;
        let irelative = [d.rela(), d.jmprel()].into_iter().flatten().any(|t| {
            image
                .slice::<crate::elf::Rela>(image.addr(t.vaddr), (t.size / 24) as usize)
                .is_some_and(|rs| {
                    rs.iter()
                        .any(|r| r.r_info.get(LE) & 0xffff_ffff == u64::from(r::IRELATIVE))
                })
        });
        if irelative
            || obj
                .view
                .symbols
                .iter()
                .any(|(_, s)| s.kind() == elf::STT_GNU_IFUNC && !s.is_undefined())
        {
            return Err(Error::unsupported(
                name,
                "cannot load an object with text relocations and IFUNC symbols of its own",
            )
            .with_why("during its relocation its code is writable and therefore not executable (W^X), so its IFUNC resolvers cannot run; rebuild it with -fPIC"));
        }
    }
    if d.rel().is_some_and(|t| t.size > 0) {
        return Err(Error::unsupported(
            name,
            "DT_REL relocations are not used on x86_64",
        ));
    }
    if d.pltrel().is_some_and(|p| p != u64::from(elf::DT_RELA)) && d.jmprel().is_some() {
        return Err(Error::unsupported(name, "DT_PLTREL is not DT_RELA"));
    }
    debug!(
        debug::RELOC,
        "\nrelocation processing: {name}{}",
        if lazy { " (lazy)" } else { "" }
    );
    let lookups = symbolic_lookups(d, lazy);
    let scopes = reg.prepare_scope(id, lookups);
    let filtered_lookups = if scopes.has_global_filter() {
        lookups
    } else {
        0
    };
    let mut rl = Relocator {
        reg,
        id,
        obj,
        scopes,
        cache_key: NO_CACHE_KEY,
        cache: Binding {
            found: None,
            value: 0,
            size: 0,
        },
        static_modules: Vec::new(),
        slot_segments: (WordWindow::EMPTY, (1, 0)),
        word_segment: WordWindow::EMPTY,
        plain_binds: false,
        lane: None,
        lane_credit: 0,
        out: Outcome::default(),
        name,
    };
    rl.plain_binds = rl.scopes.walks_fast() && !debug::enabled(debug::BINDINGS);
    if rl.plain_binds {
        rl.lane = lane::Lane::new(obj, &rl.scopes);
    }
    if let Some(t) = d.relr() {
        rl.relr(t)?;
    }
    if let Some(t) = d.rela() {
        rl.rela_table(t, false, false)?;
    }
    if let Some(t) = d.jmprel() {
        rl.rela_table(t, true, lazy)?;
    }
    let mut out = rl.out;
    out.filtered_lookups = filtered_lookups;
    out.reldeps.sort_unstable();
    out.reldeps.dedup();
    Ok(out)
}

/// About how many lookups relocating an object with `d` takes: its
/// DT_RELA entries that are not RELATIVE, and its PLT slots unless `lazy`.
fn symbolic_lookups(d: &crate::elf::dynamic::DynInfo, lazy: bool) -> usize {
    let entries = |t: Option<Table>| t.map_or(0, |t| (t.size / 24) as usize);
    let plt = if lazy { 0 } else { entries(d.jmprel()) };
    entries(d.rela()).saturating_sub(d.relacount as usize) + plt
}

struct Relocator<'a> {
    reg: &'a Registry,
    id: ObjId,
    obj: &'a Object,
    scopes: PreparedScope<'a>,
    /// glibc's `l_lookup_cache`: the key (see [`cache_key`]) of the last
    /// reference bound, and its binding. (Two plain fields, not an
    /// `Option` of a tuple: that was stored with narrow writes and read
    /// back with wide ones, and the failed store forwarding cost more than
    /// the lookup it saved.)
    cache_key: u64,
    cache: Binding,
    /// glibc modules already probed for static TLS (`glibc_module_is_static`
    /// starts a thread): module id → answer, for this object's relocation.
    static_modules: Vec<(usize, bool)>,
    /// The writable and the executable segment the last lazily bound PLT
    /// slot and its stub were in, each as [start, end): the slots of one
    /// table are contiguous, and their stubs too.
    slot_segments: (WordWindow, (usize, usize)),
    /// The writable segment the last symbolic word was in, as [start, end).
    word_segment: WordWindow,
    /// May bindings take `bind_plain`? (Not while bindings are traced, nor
    /// when the prepared walk cannot be taken.)
    plain_binds: bool,
    /// The fast lane, where the scope has its shape (see `lane`), until
    /// the entries it stopped at outnumber those it bound by
    /// [`LANE_MISSES`]; `lane_credit` is the difference.
    lane: Option<lane::Lane<'a>>,
    lane_credit: i64,
    out: Outcome,
    name: Shown<'a>,
}

impl<'a> Relocator<'a> {
    #[inline]
    fn target(&self, offset: u64, len: usize) -> Result<usize, Error> {
        check_target(self.obj, offset, len)
    }

    /// DT_RELR: every word [`walk_relr`] checked gets the load bias added.
    fn relr(&mut self, t: Table) -> Result<(), Error> {
        let image = &self.obj.view.image;
        let base = image.base;
        let relative = &mut self.out.relative;
        walk_relr(image, t, self.name, |addr| {
            // SAFETY: `walk_relr` checked that the word is writable memory
            // of this object.
            unsafe {
                (addr as *mut usize)
                    .write_unaligned((addr as *const usize).read_unaligned().wrapping_add(base))
            };
            *relative += 1;
        })
    }

    fn rela_table(&mut self, t: Table, plt: bool, lazy: bool) -> Result<(), Error> {
        let relas = rela_entries(&self.obj.view.image, t, self.name)?;
        if lazy {
            self.prepare_lazy(t, relas.len())?;
        }
        let mut irelative = Vec::new();
        // The symbol an entry names lies in a table of tens of kilobytes,
        // read in no order, and its cache miss was the costliest instruction
        // of the pass: ask for it a few entries ahead. (PLT slots left for
        // lazy binding read no symbol now.)
        let prefetch = !(plt && lazy);
        let syms = &self.obj.view.symbols;
        let mut rest = relas;
        if !plt {
            rest = &rest[self.relative_prefix_on_two_threads(relas)..];
        } else if lazy {
            rest = &rest[self.rebase_slot_run(relas)?..];
        }
        while let Some((rela, tail)) = rest.split_first() {
            if prefetch {
                if let Some(ahead) = rest.get(PREFETCH_AHEAD) {
                    syms.prefetch(rela_symbol(ahead));
                }
            }
            if rela_type(rela) == r::RELATIVE && !plt {
                let applied = self.relative_run(rest);
                if applied > 0 {
                    rest = &rest[applied..];
                    continue;
                }
            }
            let here = rest;
            rest = tail;
            match rela_type(rela) {
                r::IRELATIVE => {
                    irelative.push(rela);
                    continue;
                }
                // (One after another type of entry.)
                r::JUMP_SLOT if lazy => {
                    self.rebase_slot_run(std::slice::from_ref(rela))?;
                }
                r::JUMP_SLOT | r::GLOB_DAT | r::R64
                    if self.plain_binds && (!plt || rela_type(rela) == r::JUMP_SLOT) =>
                {
                    let mut general = here;
                    if let Some(l) = &self.lane {
                        let done = l.run(here, plt, &mut self.word_segment, &mut self.out);
                        if done > 0 {
                            if crate::fault::fast_lane_checked() {
                                self.check_lane(&here[..done], plt);
                            }
                            self.lane_credit += done as i64;
                            rest = &here[done..];
                            continue;
                        }
                        // The general walk takes this entry, then the lane
                        // tries again: where it stopped, the global scope's
                        // filter mostly passed a name it does not hold. But
                        // a table the lane stops at more often than it
                        // binds (references to the object's own names, or
                        // versioned ones: libLLVM-15's) is the general
                        // walk's.
                        self.lane_credit -= 1;
                        // (Kept under the test hook: a small test object's
                        // first misses, its weak references to names no one
                        // defines, would otherwise drop it before the
                        // entries a test is about.)
                        if self.lane_credit < -LANE_MISSES && !crate::fault::fast_lane_checked() {
                            self.lane = None;
                        } else {
                            general = &here[..1];
                        }
                    }
                    let (done, walked) = self.plain_run(general, plt);
                    match (walked, here.get(done)) {
                        // The entry it stopped at, walked already.
                        (Some(walked), Some(next)) => {
                            rest = &here[done + 1..];
                            self.symbolic_word(next, rela_type(next), Some(walked))?;
                        }
                        _ if done > 0 => rest = &here[done..],
                        // (Stopped at once, without a walk: the checks of
                        // the general path give its error.)
                        _ => self.symbolic_word(rela, rela_type(rela), None)?,
                    }
                }
                r::JUMP_SLOT => self.symbolic_word(rela, r::JUMP_SLOT, None)?,
                r::GLOB_DAT | r::R64 if !plt => self.symbolic_word(rela, rela_type(rela), None)?,
                _ => self.apply(rela, plt)?,
            }
        }
        for rela in irelative {
            self.apply(rela, plt)?;
        }
        Ok(())
    }

    /// For tests (see `fault::check_fast_lane`): the words the fast lane
    /// wrote for `relas` are the general walk's bindings.
    #[cold]
    fn check_lane(&self, relas: &[Rela], plt: bool) {
        let syms = &self.obj.view.symbols;
        for rela in relas {
            let symidx = rela_symbol(rela);
            let name = syms.get(symidx).map(|s| syms.name(s)).unwrap_or(b"");
            let name = String::from_utf8_lossy(name);
            let mut scratch = Outcome::default();
            let general = bind(self.reg, self.id, &self.scopes, symidx, plt, &mut scratch)
                .unwrap_or_else(|e| panic!("the fast lane bound {name}, the general walk: {e}"));
            let mut value = general.value;
            if rela_type(rela) == r::R64 {
                value = value.wrapping_add(rela.r_addend.get(LE) as usize);
            }
            let addr = self.obj.view.image.addr(rela.r_offset.get(LE));
            // SAFETY: the lane wrote this word: it is in a writable segment
            // of this object.
            let written = unsafe { (addr as *const usize).read_unaligned() };
            assert_eq!(
                written, value,
                "{}: the fast lane bound {name} to {written:#x}, the general walk to {value:#x}",
                self.name
            );
        }
    }

    /// Apply the R_X86_64_RELATIVE entries at the head of `relas` (linkers
    /// put them first, hundreds of thousands in big libraries) and return
    /// how many there were. The loop is written for this one type: the
    /// target is checked against the writable segment the previous entry
    /// hit, and any other entry (or a target elsewhere) ends the run, to be
    /// handled, or refused, by the general path.
    fn relative_run(&mut self, relas: &[Rela]) -> usize {
        let image = &self.obj.view.image;
        let base = image.base;
        let mut window = WordWindow::EMPTY;
        let mut done = relas.len();
        for (i, rela) in relas.iter().enumerate() {
            let addr = image.addr(rela.r_offset.get(LE));
            if rela.r_info.get(LE) as u32 != r::RELATIVE || !window.holds(image, addr) {
                done = i;
                break;
            }
            // SAFETY: `addr .. addr + 8` lies in a writable segment of this
            // object (checked just above).
            unsafe {
                (addr as *mut usize)
                    .write_unaligned(base.wrapping_add(rela.r_addend.get(LE) as usize))
            };
        }
        self.out.relative += done as u64;
        done
    }

    /// Apply the leading RELATIVE entries that DT_RELACOUNT counts, half on
    /// a helper thread (see `two_cores`), when there are at least
    /// [`TWO_THREAD_RELATIVE`] of them; return how many of `relas` are done
    /// (0 otherwise, or when the halves cannot be known to be independent).
    ///
    /// Each half stops where the serial loop would stop (another type, a
    /// target outside a writable segment), and also at a target not 8-byte
    /// aligned or not above the previous one. With the two halves in
    /// address order, as linkers sort them, no word is written by both, and
    /// the result is the serial loop's. Otherwise only what comes before
    /// the first stop counts as done, and the serial loop goes on from
    /// there, writing again, in table order, what the helper wrote after it
    /// (the stores are atomic, so that two threads writing one word of a
    /// table not in order is defined, if pointless).
    fn relative_prefix_on_two_threads(&mut self, relas: &[Rela]) -> usize {
        let count = self.obj.view.dyn_info.relacount as usize;
        if count < TWO_THREAD_RELATIVE || count > relas.len() {
            return 0;
        }
        let (low, high) = relas[..count].split_at(count / 2);
        let image = &self.obj.view.image;
        let (high_done, low_done) = crate::two_cores::join(
            || relative_in_order(image, high),
            || relative_in_order(image, low),
        );
        let offset = |r: &Rela| r.r_offset.get(LE);
        // (The low half done whole, its last target must lie below the
        // high half's first.)
        let done = if low_done < low.len() {
            low_done
        } else if high_done > 0
            && low
                .last()
                .is_some_and(|r| offset(r).saturating_add(8) > offset(&high[0]))
        {
            low.len()
        } else {
            low.len() + high_done
        };
        self.out.relative += done as u64;
        done
    }

    /// Lazy binding: GOT[1] identifies the object to the resolver, GOT[2]
    /// is the resolver.
    fn prepare_lazy(&mut self, t: Table, count: usize) -> Result<(), Error> {
        let pltgot = self
            .obj
            .view
            .dyn_info
            .pltgot()
            .ok_or_else(|| Error::invalid(self.name, "DT_JMPREL without DT_PLTGOT"))?;
        let got = self.target(pltgot, 24)?;
        let info = Box::new(LazyInfo {
            id: self.id,
            jmprel: self.obj.view.image.addr(t.vaddr),
            count,
        });
        // SAFETY: `target` checked that GOT[0..3] is writable memory of this
        // object.
        unsafe {
            ((got + 8) as *mut usize).write_unaligned(&*info as *const LazyInfo as usize);
            ((got + 16) as *mut usize)
                .write_unaligned(crate::lazy::runtime_resolve as *const () as usize);
        }
        self.out.lazy = Some(info);
        Ok(())
    }

    /// Lazy binding: the PLT slots point back into the PLT. Rebase the
    /// JUMP_SLOT entries at the head of `relas` (a whole PLT table in
    /// objects link editors make, but for TLSDESC and IRELATIVE entries)
    /// and return how many there were. A loop of its own: in the general
    /// loop each slot cost about 44 instructions, three times glibc's 15
    /// (the dispatch on the entry's type, the checks of the pass's mode,
    /// and the segments and counts kept in `self`, which the stores
    /// through raw addresses made the compiler read and write again for
    /// every slot); here about 24.
    fn rebase_slot_run(&mut self, relas: &[Rela]) -> Result<usize, Error> {
        let obj = self.obj;
        let image = &obj.view.image;
        let base = image.base;
        let (mut slots, (mut cs, mut ce)) = self.slot_segments;
        let mut done = relas.len();
        for (i, rela) in relas.iter().enumerate() {
            if rela_type(rela) != r::JUMP_SLOT {
                done = i;
                break;
            }
            let offset = rela.r_offset.get(LE);
            let addr = image.addr(offset);
            if !slots.holds(image, addr) {
                return Err(target_error(self.name, offset));
            }
            // The lazy fix-up stores the binding atomically: the slot must be
            // a whole aligned word (it always is in objects linkers make).
            if addr % 8 != 0 {
                return Err(unaligned_slot_error(self.name));
            }
            // SAFETY: a whole word in a writable segment (checked above, or
            // for an earlier slot in the same segment).
            let stub = unsafe { (addr as *const usize).read() }.wrapping_add(base);
            if !(cs <= stub && stub < ce) {
                (cs, ce) = code_segment(obj, stub).ok_or_else(|| stub_error(self.name))?;
            }
            // SAFETY: as above.
            unsafe { (addr as *mut usize).write(stub) };
        }
        self.slot_segments = (slots, (cs, ce));
        self.out.relative += done as u64;
        Ok(done)
    }

    /// Bind the GLOB_DAT, R_X86_64_64 (not in a PLT table) and JUMP_SLOT
    /// entries at the head of `relas` that [`PlainWalk::bind_plain`] binds
    /// to a plain definition, and return how many there were: the loop of
    /// [`Relocator::symbolic_word`] for the common case, with the pass's
    /// window, counts and one-entry cache in locals. It stops at the
    /// first entry of another type, or whose target or symbol index is out
    /// of range, or that binds otherwise; for that one it also hands back
    /// the walk made, so that the general path does not walk again.
    ///
    /// Each walk is told the last definer, whose Bloom filter it then
    /// skips (see [`PreparedScope::lookup`]): references to one library
    /// come in runs, and for them that check passes anyway.
    ///
    /// (Not inlined: in `rela_table`, whose other paths were inlined too,
    /// the loop's values lived on the stack; on its own, 3% fewer
    /// instructions a lookup.)
    #[inline(never)]
    fn plain_run(&mut self, relas: &[Rela], plt: bool) -> (usize, Option<Walked<'a>>) {
        let obj = self.obj;
        let image = &obj.view.image;
        let syms = &obj.view.symbols;
        // (Made of the fields, not by `walk()`: the loop writes `self.out`.
        // Called only where bindings may take the walk: the flag is a
        // constant here.)
        debug_assert!(self.plain_binds);
        let walk = PlainWalk::new(obj, &self.scopes, true);
        let mut window = self.word_segment;
        let (mut last_key, mut last_value) = (self.cache_key, self.cache.value);
        let mut definer = self.out.last_definer.unwrap_or(NO_DEFINER);
        let (mut done, mut cached) = (0, 0);
        let mut walked = None;
        for (i, rela) in relas.iter().enumerate() {
            if let Some(ahead) = relas.get(i + PREFETCH_AHEAD) {
                syms.prefetch(rela_symbol(ahead));
            }
            let rtype = rela_type(rela);
            let slot = match rtype {
                r::JUMP_SLOT if plt => true,
                r::GLOB_DAT | r::R64 if !plt => false,
                _ => break,
            };
            let addr = image.addr(rela.r_offset.get(LE));
            let symidx = rela_symbol(rela);
            if !window.holds(image, addr) || symidx >= syms.count() {
                break;
            }
            let key = cache_key(symidx, slot);
            let value = if key == last_key {
                cached += 1;
                last_value
            } else {
                let (value, def) = match walk.bind_plain(symidx, slot, definer) {
                    Ok(plain) => (plain.value(), plain.def),
                    Err(other) => {
                        walked = Some(other);
                        break;
                    }
                };
                if def.id != definer {
                    note_new_definer(obj, def, &mut self.out);
                    definer = def.id;
                }
                (last_key, last_value) = (key, value);
                value
            };
            let value = if rtype == r::R64 {
                value.wrapping_add(rela.r_addend.get(LE) as usize)
            } else {
                value
            };
            // SAFETY: `addr..addr + 8` is in a writable segment of this
            // object (checked above, or for an earlier word in the same
            // segment).
            unsafe { (addr as *mut usize).write_unaligned(value) };
            done = i + 1;
        }
        self.word_segment = window;
        if last_key != self.cache_key {
            // (Only the value was kept: the next reference walks.)
            self.cache_key = NO_CACHE_KEY;
        }
        self.out.relocations += done as u64;
        self.out.cached += cached;
        (done, walked)
    }

    /// GLOB_DAT, JUMP_SLOT and R_X86_64_64, the bulk of symbolic
    /// relocations, with [`Relocator::apply`]'s checks and results but
    /// without its general dispatch: the target is checked against the
    /// writable segment the previous word was in, and a repeated symbol
    /// comes from the one-entry cache before anything of it is read.
    #[inline(always)]
    fn symbolic_word(
        &mut self,
        rela: &Rela,
        rtype: u32,
        walked: Option<Walked<'a>>,
    ) -> Result<(), Error> {
        let image = &self.obj.view.image;
        let offset = rela.r_offset.get(LE);
        let addr = image.addr(offset);
        if !self.word_segment.holds(image, addr) {
            return Err(target_error(self.name, offset));
        }
        let symidx = rela_symbol(rela);
        if symidx >= self.obj.view.symbols.count() {
            return Err(symbol_index_error(self.name, symidx));
        }
        let plt = rtype == r::JUMP_SLOT;
        let value = match walked {
            Some(walked) => self.resolve_walked(symidx, plt, Err(walked))?,
            None => self.resolve(symidx, plt)?,
        }
        .value;
        self.out.relocations += 1;
        let value = if rtype == r::R64 {
            value.wrapping_add(rela.r_addend.get(LE) as usize)
        } else {
            value
        };
        // SAFETY: `addr..addr + 8` is in a writable segment of this object
        // (checked above, or for an earlier word in the same segment).
        unsafe { (addr as *mut usize).write_unaligned(value) };
        Ok(())
    }

    fn apply(&mut self, rela: &Rela, plt: bool) -> Result<(), Error> {
        let image = &self.obj.view.image;
        let base = image.base;
        let addend = rela.r_addend.get(LE);
        let rtype = rela_type(rela);
        let (addr, symidx) = match check_entry(image, &self.obj.view.symbols, rela, plt, self.name)?
        {
            Entry::Nothing => return Ok(()),
            Entry::Word(addr) if rtype == r::IRELATIVE => {
                let resolver = base.wrapping_add(addend as usize);
                if !is_code(self.obj, resolver) {
                    return Err(Error::invalid(
                        self.name,
                        format!("IRELATIVE resolver at {resolver:#x} is outside the object's executable segments"),
                    ));
                }
                // SAFETY: an IFUNC resolver of this object, inside its
                // executable segment; x86_64 resolvers take no arguments.
                let value = unsafe { call_resolver(resolver) };
                // SAFETY: checked writable by `check_entry`.
                unsafe { (addr as *mut usize).write_unaligned(value) };
                self.out.relocations += 1;
                return Ok(());
            }
            Entry::Word(addr) => {
                // SAFETY: checked writable by `check_entry`.
                unsafe { (addr as *mut usize).write_unaligned(base.wrapping_add(addend as usize)) };
                self.out.relative += 1;
                return Ok(());
            }
            Entry::Symbolic { addr, symidx } => (addr, symidx),
        };
        let tls = matches!(rtype, r::DTPMOD64 | r::DTPOFF64 | r::TPOFF64 | r::TLSDESC);
        // glibc's elf_machine_type_class: JUMP_SLOT and the TLS types are of
        // the PLT class.
        let b = self.resolve(symidx, rtype == r::JUMP_SLOT || tls)?;
        self.out.relocations += 1;
        if tls {
            return self.apply_tls(rtype, addr, symidx, b, addend);
        }
        let value = b.value;
        // SAFETY (all writes below): `check_entry` checked that the bytes
        // the type writes at `addr` are writable memory of this object.
        unsafe {
            match rtype {
                r::GLOB_DAT | r::JUMP_SLOT => (addr as *mut usize).write_unaligned(value),
                r::R64 => (addr as *mut usize).write_unaligned(value.wrapping_add(addend as usize)),
                r::SIZE64 => (addr as *mut u64).write_unaligned(b.size.wrapping_add(addend as u64)),
                r::SIZE32 | r::R32 => {
                    let v = if rtype == r::SIZE32 {
                        b.size as i64
                    } else {
                        value as i64
                    }
                    .wrapping_add(addend);
                    if v as u64 > u32::MAX as u64 {
                        return Err(self.overflow(symidx, "R_X86_64_32"));
                    }
                    (addr as *mut u32).write_unaligned(v as u32);
                }
                r::PC32 => {
                    let v = (value as i64)
                        .wrapping_add(addend)
                        .wrapping_sub(addr as i64);
                    if v != v as i32 as i64 {
                        return Err(self.overflow(symidx, "R_X86_64_PC32"));
                    }
                    (addr as *mut u32).write_unaligned(v as u32);
                }
                _ => unreachable!("filtered above"),
            }
        }
        Ok(())
    }

    /// `tls::glibc_module_is_static`, asked once per module.
    fn glibc_module_is_static(&mut self, module: usize) -> bool {
        if let Some(&(_, known)) = self.static_modules.iter().find(|(m, _)| *m == module) {
            return known;
        }
        let known = tls::glibc_module_is_static(module);
        self.static_modules.push((module, known));
        known
    }

    /// DTPMOD64, DTPOFF64, TPOFF64 and TLSDESC.
    fn apply_tls(
        &mut self,
        rtype: u32,
        addr: usize,
        symidx: u32,
        b: Binding,
        addend: i64,
    ) -> Result<(), Error> {
        // An undefined weak TLS reference: glibc leaves the GOT words alone,
        // except that a descriptor must still be callable.
        let Some(found) = b.found else {
            if rtype == r::TLSDESC {
                // SAFETY: a 16-byte descriptor slot, checked writable.
                unsafe {
                    (addr as *mut usize)
                        .write_unaligned(tls::tlsdesc_undefweak as *const () as usize);
                    ((addr + 8) as *mut usize).write_unaligned(addend as usize);
                }
            }
            return Ok(());
        };
        let def = self.reg.obj(found.obj);
        let dsym = def.view.symbols.sym(found.sym());
        if symidx != 0 && dsym.kind() != elf::STT_TLS {
            let syms = &self.obj.view.symbols;
            let n = String::from_utf8_lossy(syms.name(syms.sym(symidx))).into_owned();
            return Err(Error::invalid(
                self.name,
                format!("TLS relocation against `{n}', which is not a TLS symbol"),
            ));
        }
        let module = def.tls_module.ok_or_else(|| {
            Error::invalid(
                self.name,
                format!(
                    "TLS reference to {}, which has no TLS segment",
                    def.display_name()
                ),
            )
        })?;
        // The definition's offset in its module's block: its st_value, as
        // in glibc (symbol 0, which local-dynamic code names, gives 0; its
        // binding's value is the object's address, as for other types).
        let offset = (dsym.value() as usize).wrapping_add(addend as usize);
        // glibc's start-up modules are in its static TLS, and so may be
        // those it loaded later with DF_STATIC_TLS (if an initial-exec
        // relocation asked for it; checked): a variable there is at one
        // fixed offset from the thread pointer, the same in every thread.
        // dynload's blocks are allocated per thread and have none.
        let static_host = match def.host() {
            None => false,
            Some(h) if h.startup => true,
            Some(_) => {
                def.view.dyn_info.flags & u64::from(elf::DF_STATIC_TLS) != 0
                    && matches!(rtype, r::TPOFF64 | r::TLSDESC)
                    && self.glibc_module_is_static(module)
            }
        };
        // SAFETY (all writes): `target` checked the slot is writable.
        unsafe {
            match rtype {
                r::DTPMOD64 => (addr as *mut usize).write_unaligned(module),
                r::DTPOFF64 => (addr as *mut usize).write_unaligned(offset),
                r::TPOFF64 => {
                    if !static_host {
                        let sym = String::from_utf8_lossy(
                            self.obj
                                .view
                                .symbols
                                .name(self.obj.view.symbols.sym(symidx)),
                        )
                        .into_owned();
                        return Err(Error::load(ErrorKind::Unsupported, self.name, "cannot allocate memory in static TLS block")
                            .with_why(format!(
                                "the object uses initial-exec TLS (R_X86_64_TPOFF64 for `{sym}' in {}); dynload gives the objects it loads dynamic TLS blocks only, with no fixed offset from the thread pointer. Rebuild it with -ftls-model=global-dynamic (or -mtls-dialect=gnu2)",
                                def.display_name()
                            )));
                    }
                    (addr as *mut usize).write_unaligned(
                        tls::address(module, offset).wrapping_sub(tls::thread_pointer()),
                    );
                }
                r::TLSDESC if static_host => {
                    (addr as *mut usize).write_unaligned(tls::tlsdesc_static as *const () as usize);
                    ((addr + 8) as *mut usize).write_unaligned(
                        tls::address(module, offset).wrapping_sub(tls::thread_pointer()),
                    );
                }
                r::TLSDESC => {
                    let arg = Box::new(TlsIndex { module, offset });
                    (addr as *mut usize)
                        .write_unaligned(tls::tlsdesc_dynamic as *const () as usize);
                    ((addr + 8) as *mut usize).write_unaligned(&*arg as *const TlsIndex as usize);
                    self.out.tls_descs.push(arg);
                }
                _ => unreachable!("TLS types only"),
            }
        }
        Ok(())
    }

    fn overflow(&self, symidx: u32, kind: &str) -> Error {
        let syms = &self.obj.view.symbols;
        let sym = syms
            .get(symidx)
            .map(|s| String::from_utf8_lossy(syms.name(s)).into_owned());
        Error::invalid(
            self.name,
            format!(
                "Symbol `{}' causes overflow in {kind} relocation",
                sym.unwrap_or_default()
            ),
        )
    }

    /// The plain walk of this pass.
    fn walk(&self) -> PlainWalk<'_, 'a> {
        PlainWalk::new(self.obj, &self.scopes, self.plain_binds)
    }

    /// glibc's `RESOLVE_MAP`, with its one-entry cache.
    #[inline(always)]
    fn resolve(&mut self, symidx: u32, plt: bool) -> Result<Binding, Error> {
        let key = cache_key(symidx, plt);
        if self.cache_key == key {
            self.out.cached += 1;
            return Ok(self.cache);
        }
        let definer = self.out.last_definer.unwrap_or(NO_DEFINER);
        let walked = self.walk().bind_plain(symidx, plt, definer);
        self.resolve_walked(symidx, plt, walked)
    }

    /// [`Relocator::resolve`] once the walk is made (here, or by
    /// [`Relocator::plain_run`]): the binding, kept in the cache.
    #[inline(always)]
    fn resolve_walked(
        &mut self,
        symidx: u32,
        plt: bool,
        walked: PlainOr<'a>,
    ) -> Result<Binding, Error> {
        let b = match walked {
            Ok(plain) => {
                note_definer(self.obj, plain.def, &mut self.out);
                plain.binding()
            }
            Err(other) => self.bind_general(symidx, plt, other)?,
        };
        self.cache_key = cache_key(symidx, plt);
        self.cache = b;
        Ok(b)
    }

    /// The rest of [`bind`], out of the relocation loop, for what
    /// [`PlainWalk::bind_plain`] handed back (few references): what its
    /// walk found goes to `bind`'s tail (a unique definition made the
    /// process-wide one, as `Registry::lookup` does); a reference it did
    /// not take, to `bind` whole.
    #[inline(never)]
    fn bind_general(&mut self, symidx: u32, plt: bool, walked: Walked) -> Result<Binding, Error> {
        let Walked::Found(found) = walked else {
            return bind(self.reg, self.id, &self.scopes, symidx, plt, &mut self.out);
        };
        let obj = self.obj;
        let syms = &obj.view.symbols;
        let sym = syms.sym(symidx);
        let name = syms.name(sym);
        let version = syms.versym(symidx).and_then(|v| obj.view.versions.entry(v));
        let found = found.map(|(def, index, unique)| {
            let found = Found::new(def.id, index);
            if unique {
                self.reg
                    .unique_definition(name, NameHash::new(name).gnu, found)
            } else {
                found
            }
        });
        let out = &mut self.out;
        bound(
            self.reg,
            obj,
            &self.scopes,
            sym,
            found,
            name,
            version.as_ref(),
            out,
        )
    }
}

/// What [`PlainWalk::bind_plain`] reads of a pass: the object, its
/// prepared scope, and whether bindings may take the walk. (Apart from
/// the [`Relocator`], so that [`Relocator::plain_run`] can hold it while
/// it writes the pass's outcome.)
#[derive(Clone, Copy)]
struct PlainWalk<'s, 'a> {
    obj: &'a Object,
    scopes: &'s PreparedScope<'a>,
    plain_binds: bool,
}

impl<'s, 'a> PlainWalk<'s, 'a> {
    fn new(obj: &'a Object, scopes: &'s PreparedScope<'a>, plain_binds: bool) -> Self {
        PlainWalk {
            obj,
            scopes,
            plain_binds,
        }
    }

    /// [`bind`] for a global or weak reference of default visibility
    /// (nearly all of them), through the prepared walk, with the common
    /// outcome kept in the relocation loop: a plain definition (not TLS,
    /// IFUNC, unique, nor one of glibc's functions dynload replaces). Any
    /// other outcome is handed back as the walk found it, for `bind`'s own
    /// tail; references `bind` takes whole are handed back untouched.
    #[inline(always)]
    fn bind_plain(&self, symidx: u32, plt: bool, definer: ObjId) -> PlainOr<'a> {
        if !self.plain_binds {
            return Err(Walked::NotPlain);
        }
        let obj = self.obj;
        let syms = &obj.view.symbols;
        let Some(sym) = syms.get(symidx) else {
            return Err(Walked::NotPlain);
        };
        if symidx == 0
            || !matches!(sym.bind(), elf::STB_GLOBAL | elf::STB_WEAK)
            || sym.visibility() != elf::STV_DEFAULT
        {
            return Err(Walked::NotPlain);
        }
        let version = syms.versym(symidx).and_then(|v| obj.view.versions.entry(v));
        let flags = Flags {
            return_newest: false,
            plt,
        };
        // A name this object defines: its hash comes from the object's
        // table, and it is read only where the walk needs it (see
        // `OwnName`), off this path. Any other is read and hashed here.
        // (A name outside the string table is left to the path that reads
        // it, which finds nothing under it, as before.)
        if !sym.is_undefined() && syms.strings().holds(sym.name_offset()) {
            if let Some(h) = syms.own_gnu_hash(symidx) {
                return self.bind_own(sym, h, version, flags, definer);
            }
        }
        let name = syms.name(sym);
        let found = self.scopes.lookup(
            name,
            &mut NameHash::new(name),
            version.as_ref(),
            flags,
            definer,
        );
        self.plain_outcome(found, || name)
    }

    /// [`PlainWalk::bind_plain`] for a symbol the object defines, whose
    /// GNU hash is `h`. (Not inlined: the other path keeps its registers.)
    #[inline(never)]
    fn bind_own(
        &self,
        sym: &'a Sym,
        h: u32,
        version: Option<VersionEntry>,
        flags: Flags,
        definer: ObjId,
    ) -> PlainOr<'a> {
        let own = OwnName::new(&self.obj.view.symbols, sym);
        let found = self.scopes.lookup(
            &own,
            &mut NameHash::of_gnu(h),
            version.as_ref(),
            flags,
            definer,
        );
        self.plain_outcome(found, || own.bytes())
    }

    /// What [`PlainWalk::bind_plain`] makes of its walk's result: a plain
    /// definition is bound here; anything else goes to `bind`'s tail.
    #[inline(always)]
    fn plain_outcome<'n>(
        &self,
        found: Option<(&'a Object, u32, &'a Sym)>,
        name: impl FnOnce() -> &'n [u8],
    ) -> PlainOr<'a> {
        let Some((def, index, dsym)) = found else {
            return Err(Walked::Found(None));
        };
        let unique = dsym.bind() == elf::STB_GNU_UNIQUE;
        if unique
            || matches!(dsym.kind(), elf::STT_TLS | elf::STT_GNU_IFUNC)
            || (!def.is_ours() && dlfcn::replacement(name()).is_some())
        {
            return Err(Walked::Found(Some((def, index, unique))));
        }
        Ok(PlainDef {
            def,
            index,
            sym: dsym,
        })
    }
}

/// What [`PlainWalk::bind_plain`] gives: the plain definition, or what
/// else it made of the reference. (A `Result`, so that the plain case,
/// nearly every reference, stays in registers.)
type PlainOr<'a> = Result<PlainDef<'a>, Walked<'a>>;

/// What [`PlainWalk::bind_plain`] made of a reference it did not bind to
/// a plain definition.
enum Walked<'a> {
    /// Looked up, with this result (definer, index, unique); the rest is
    /// `bind`'s.
    Found(Option<(&'a Object, u32, bool)>),
    /// A reference `bind` takes whole.
    NotPlain,
}

/// A plain definition (not TLS, IFUNC, unique, nor replaced) that a walk
/// found: what the binding is made of. (Apart from [`Binding`]: the
/// relocation loop needs only the value, and the smaller result leaves
/// out the binding's other fields there.)
#[derive(Clone, Copy)]
struct PlainDef<'a> {
    def: &'a Object,
    index: u32,
    sym: &'a Sym,
}

impl PlainDef<'_> {
    /// The address it binds to.
    #[inline(always)]
    fn value(&self) -> usize {
        plain_value(self.def, self.sym)
    }

    /// The whole binding, as [`Relocator::resolve_walked`] keeps it.
    #[inline(always)]
    fn binding(&self) -> Binding {
        Binding {
            found: Some(Found::new(self.def.id, self.index)),
            value: self.value(),
            size: self.sym.size(),
        }
    }
}

/// The writable segment the last 8-byte word of a run of relocations was
/// in, as the addresses a word may start at there: `lo .. lo + room`. The
/// words of one table mostly share a segment, so each costs one compare;
/// the image is asked only when a word leaves it. (Empty at first:
/// `room` 0 holds no address, where a one-address window would have let
/// that address through unchecked.)
#[derive(Clone, Copy)]
struct WordWindow {
    lo: usize,
    room: usize,
}

impl WordWindow {
    const EMPTY: WordWindow = WordWindow { lo: 0, room: 0 };

    /// Is the 8-byte word at `addr` in a writable segment of `image`?
    /// Moves the window to that segment when it is another.
    #[inline(always)]
    fn holds(&mut self, image: &Image, addr: usize) -> bool {
        if addr.wrapping_sub(self.lo) < self.room {
            return true;
        }
        match image.writable_segment(addr, 8) {
            Some((start, end)) => {
                *self = WordWindow {
                    lo: start,
                    room: end - start - 7,
                };
                true
            }
            None => false,
        }
    }
}

/// Check that a relocation target lies in writable memory of `obj`.
pub(crate) fn check_target(obj: &Object, offset: u64, len: usize) -> Result<usize, Error> {
    writable_target(&obj.view.image, offset, len)
        .ok_or_else(|| target_error(obj.display_name(), offset))
}

/// The address of `len` bytes at file virtual address `offset`, if they lie
/// in writable memory of the object in `image`.
fn writable_target(image: &Image, offset: u64, len: usize) -> Option<usize> {
    let addr = image.addr(offset);
    image.is_writable(addr, len).then_some(addr)
}

#[cold]
fn unaligned_slot_error(name: Shown) -> Error {
    Error::invalid(
        name,
        "PLT slot (R_X86_64_JUMP_SLOT) at an unaligned address",
    )
}

#[cold]
fn stub_error(name: Shown) -> Error {
    Error::invalid(name, "PLT slot does not point into the object's code")
}

fn target_error(name: impl Into<String>, offset: u64) -> Error {
    Error::invalid(
        name,
        format!("relocation target {offset:#x} is outside the object's writable segments"),
    )
}

/// The type of a relocation entry (the low 32 bits of `r_info`).
fn rela_type(rela: &Rela) -> u32 {
    (rela.r_info.get(LE) & 0xffff_ffff) as u32
}

/// The symbol index of a relocation entry (the high 32 bits of `r_info`).
#[inline(always)]
pub(crate) fn rela_symbol(rela: &Rela) -> u32 {
    (rela.r_info.get(LE) >> 32) as u32
}

/// The entries of a DT_RELA or DT_JMPREL table.
pub(crate) fn rela_entries(
    image: &Image,
    t: Table,
    name: impl Into<String> + Copy,
) -> Result<&[Rela], Error> {
    image
        .slice(image.addr(t.vaddr), (t.size / 24) as usize)
        .ok_or_else(|| Error::invalid(name, "relocation table lies outside the loaded segments"))
}

/// The PLT slots of an object's DT_JMPREL, as the addresses [first, end),
/// if its entries fill that stretch (link editors write them in slot
/// order); for [`crate::map::populate_slots`].
pub(crate) fn plt_slots(view: &crate::host::View) -> Option<(usize, usize)> {
    let image = &view.image;
    let relas = rela_entries(image, view.dyn_info.jmprel()?, "")
        .ok()
        .filter(|r| !r.is_empty())?;
    let ends = [relas[0], relas[relas.len() - 1]].map(|r| r.r_offset.get(LE));
    let (lo, hi) = (ends[0].min(ends[1]), ends[0].max(ends[1]).checked_add(8)?);
    let dense = hi - lo <= (relas.len() as u64).saturating_mul(8) + PAGE_SIZE as u64;
    dense.then(|| {
        (
            image.addr(lo),
            image.addr(lo).wrapping_add((hi - lo) as usize),
        )
    })
}

/// Whether `[lo, hi)` (addresses in the file, page-aligned) receives at
/// least as many RELATIVE relocations as it has pages: the leading
/// DT_RELACOUNT entries of DT_RELA, which link editors sort by address
/// (`-z combreloc`, the default), counted with two binary searches.
/// (Checking each page instead meant reading all of libLLVM-15's 8.7 MB
/// of entries early: 1.7 ms, measured when RELRO was copied at mapping
/// time.) Unsorted entries only make the answer wrong, never unsafe. Used
/// by [`crate::map::copy_big_relro`].
pub(crate) fn relative_dense(
    image: &Image,
    d: &crate::elf::dynamic::DynInfo,
    lo: u64,
    hi: u64,
) -> bool {
    let Some(t) = d.rela() else {
        return false;
    };
    let Ok(all) = rela_entries(image, t, "") else {
        return false;
    };
    let relas = &all[..(d.relacount as usize).min(all.len())];
    let below = |a: u64| relas.partition_point(|r| r.r_offset.get(LE) < a);
    // (Saturating: unsorted entries may put `lo` after `hi`.)
    below(hi).saturating_sub(below(lo)) >= (hi.saturating_sub(lo) as usize).div_ceil(PAGE_SIZE)
}

/// A DT_RELA or DT_JMPREL entry that passed [`check_entry`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Entry {
    /// R_X86_64_NONE: nothing to write.
    Nothing,
    /// RELATIVE, RELATIVE64 or IRELATIVE: the word at this address, no
    /// symbol.
    Word(usize),
    /// A symbolic relocation of the bytes at `addr` (as many as its type
    /// writes), against symbol `symidx`, which is inside the symbol table.
    Symbolic { addr: usize, symidx: u32 },
}

/// The checks an entry gets before anything is written for it: a type this
/// loader handles (and of the PLT class in DT_JMPREL: `plt`), a target in
/// the object's writable segments, a symbol index inside its symbol table.
/// (Lazily bound PLT slots are only rebased: see `Relocator::rebase_slot_run`.)
pub(crate) fn check_entry(
    image: &Image,
    syms: &SymbolTable,
    rela: &Rela,
    plt: bool,
    name: impl Into<String> + Copy,
) -> Result<Entry, Error> {
    let rtype = rela_type(rela);
    let offset = rela.r_offset.get(LE);
    if plt && !matches!(rtype, r::JUMP_SLOT | r::TLSDESC | r::IRELATIVE) {
        return Err(Error::unsupported(
            name,
            format!("unexpected PLT reloc type 0x{}", hex_type(rtype)),
        ));
    }
    let target =
        |len| writable_target(image, offset, len).ok_or_else(|| target_error(name, offset));
    let len = match rtype {
        r::NONE => return Ok(Entry::Nothing),
        r::RELATIVE | r::RELATIVE64 | r::IRELATIVE => return target(8).map(Entry::Word),
        r::COPY => {
            return Err(Error::unsupported(
                name,
                "R_X86_64_COPY relocation in a shared object",
            ))
        }
        r::R64
        | r::GLOB_DAT
        | r::JUMP_SLOT
        | r::SIZE64
        | r::DTPMOD64
        | r::DTPOFF64
        | r::TPOFF64 => 8,
        r::TLSDESC => 16,
        r::PC32 | r::R32 | r::SIZE32 => 4,
        _ => {
            return Err(Error::invalid(
                name,
                format!("unexpected reloc type 0x{}", hex_type(rtype)),
            ))
        }
    };
    let addr = target(len)?;
    let symidx = rela_symbol(rela);
    // `bind` refuses the same (lazy binding relies on that).
    if syms.get(symidx).is_none() {
        return Err(symbol_index_error(name, symidx));
    }
    Ok(Entry::Symbolic { addr, symidx })
}

fn symbol_index_error(name: impl Into<String>, symidx: u32) -> Error {
    Error::invalid(
        name,
        format!("relocation refers to symbol {symidx}, beyond the symbol table"),
    )
}

/// Walk a DT_RELR table: an even entry is an address to relocate; an odd
/// entry is a bitmap over the 63 words that follow the last address. Each
/// word is checked to be writable memory of the object before `f` is given
/// its address.
pub(crate) fn walk_relr(
    image: &Image,
    t: Table,
    name: impl Into<String> + Copy,
    mut f: impl FnMut(usize),
) -> Result<(), Error> {
    let entries: &[u64] = image
        .slice(image.addr(t.vaddr), (t.size / 8) as usize)
        .ok_or_else(|| Error::invalid(name, "DT_RELR lies outside the loaded segments"))?;
    let mut next: usize = 0;
    for &e in entries {
        if e & 1 == 0 {
            let addr = writable_target(image, e, 8).ok_or_else(|| target_error(name, e))?;
            f(addr);
            next = addr + 8;
        } else {
            if next == 0 {
                return Err(Error::invalid(name, "DT_RELR bitmap before any address"));
            }
            let mut bits = e >> 1;
            let mut where_ = next;
            while bits != 0 {
                if bits & 1 != 0 {
                    if !image.is_writable(where_, 8) {
                        return Err(Error::invalid(
                            name,
                            "DT_RELR bitmap points outside the writable segments",
                        ));
                    }
                    f(where_);
                }
                bits >>= 1;
                where_ += 8;
            }
            next += 63 * 8;
        }
    }
    Ok(())
}

/// Bind symbol `symidx` of object `id`: what a relocation against it, or a
/// lazily bound PLT slot, gets. Records relocation dependencies and unique
/// definers in `out`.
pub(crate) fn bind(
    reg: &Registry,
    id: ObjId,
    scopes: &(impl Searched + ?Sized),
    symidx: u32,
    plt: bool,
    out: &mut Outcome,
) -> Result<Binding, Error> {
    let obj = reg.obj(id);
    let syms = &obj.view.symbols;
    let sym = syms
        .get(symidx)
        .ok_or_else(|| symbol_index_error(obj.display_name(), symidx))?;
    // Symbol 0, local symbols and hidden ones bind to this object itself.
    if symidx == 0 || sym.bind() == elf::STB_LOCAL || sym.binds_locally() {
        // (Not looked up: one left undefined, symbol 0 or a hidden
        // reference, stands for the object's base plus its value, as in
        // glibc; see `plain_value`.)
        return value_at(reg, id, Found::new(id, symidx), obj, sym, None);
    }
    let name = syms.name(sym);
    let hash = NameHash::new(name);
    let version = syms.versym(symidx).and_then(|v| obj.view.versions.entry(v));
    let flags = Flags {
        return_newest: false,
        plt,
    };
    let reference = (symidx, sym.visibility());
    let found = reg.lookup_reference(scopes, name, hash, version.as_ref(), flags, id, reference);
    bound(reg, obj, scopes, sym, found, name, version.as_ref(), out)
}

/// What `obj`'s reference `sym` (named `name`, of `version`) binds to,
/// given what its lookup in `scopes` found: the definition's value,
/// recorded as [`note_binding`] says; with nothing found, 0 for a weak
/// reference, else the "undefined symbol" error.
#[allow(clippy::too_many_arguments)]
fn bound(
    reg: &Registry,
    obj: &Object,
    scopes: &(impl Searched + ?Sized),
    sym: &Sym,
    found: Option<Found>,
    name: &[u8],
    version: Option<&VersionEntry>,
    out: &mut Outcome,
) -> Result<Binding, Error> {
    match found {
        Some(found) => {
            let def = reg.obj(found.obj);
            let dsym = def.view.symbols.sym(found.sym());
            note_binding(obj, found, def, dsym, name, version.map(|v| v.name), out);
            value_at(reg, obj.id, found, def, dsym, Some(name))
        }
        None if sym.bind() == elf::STB_WEAK => Ok(Binding {
            found: None,
            value: 0,
            size: 0,
        }),
        None => Err(reg.undefined_error(scopes, obj.display_name(), name, version)),
    }
}

/// Record what a binding of `obj`'s reference to `def`'s symbol `dsym`
/// (together `found`) implies: a unique definer, a relocation dependency.
#[inline(always)]
fn note_binding(
    obj: &Object,
    found: Found,
    def: &Object,
    dsym: &Sym,
    name: &[u8],
    version: Option<&[u8]>,
    out: &mut Outcome,
) {
    if debug::enabled(debug::BINDINGS) {
        let kind = if dsym.visibility() == elf::STV_PROTECTED {
            "protected"
        } else {
            "normal"
        };
        let ver = version
            .map(|v| format!(" [{}]", String::from_utf8_lossy(v)))
            .unwrap_or_default();
        debug!(
            debug::BINDINGS,
            "binding file {} [0] to {} [0]: {kind} symbol `{}'{ver}",
            obj.display_name(),
            def.display_name(),
            String::from_utf8_lossy(name)
        );
    }
    if dsym.bind() == elf::STB_GNU_UNIQUE && !out.unique_definers.contains(&found.obj) {
        out.unique_definers.push(found.obj);
    }
    note_definer(obj, def, out);
}

/// A binding of `obj`'s reference to another dynload object that is not a
/// dependency keeps that object alive as long as `obj` (glibc's
/// add_dependency). (Consecutive bindings mostly go to one definer:
/// checked once.)
#[inline(always)]
fn note_definer(obj: &Object, def: &Object, out: &mut Outcome) {
    if out.last_definer == Some(def.id) {
        return;
    }
    out.last_definer = Some(def.id);
    if def.id != obj.id
        && def.is_ours()
        && !obj.initfini.contains(&def.id)
        && !out.reldeps.contains(&def.id)
    {
        out.reldeps.push(def.id);
    }
}

/// [`note_definer`] out of line, for [`Relocator::plain_run`], which calls it
/// only when the definer changes.
#[cold]
#[inline(never)]
fn note_new_definer(obj: &Object, def: &Object, out: &mut Outcome) {
    note_definer(obj, def, out)
}

/// The value a binding to `found` (`def`'s symbol `sym`) writes. `name`
/// is the definition's name when the caller has it already.
#[inline(always)]
fn value_at(
    reg: &Registry,
    id: ObjId,
    found: Found,
    def: &Object,
    sym: &Sym,
    name: Option<&[u8]>,
) -> Result<Binding, Error> {
    if sym.kind() == elf::STT_TLS {
        return Ok(Binding {
            found: Some(found),
            value: sym.value() as usize,
            size: sym.size(),
        });
    }
    let mut value = plain_value(def, sym);
    if let Some(ours) = (!def.is_ours())
        .then(|| dlfcn::replacement(name.unwrap_or_else(|| def.view.symbols.name(sym))))
        .flatten()
    {
        value = ours;
    } else if sym.kind() == elf::STT_GNU_IFUNC && !sym.is_undefined() {
        if def.is_ours() && found.obj != id && !def.relocated {
            let n = String::from_utf8_lossy(def.view.symbols.name(sym)).into_owned();
            let me = reg.obj(id).display_name();
            return Err(Error::invalid(me.clone(), format!("Relink `{me}' with `{}' for IFUNC symbol `{n}'", def.display_name()))
                .with_why("the IFUNC resolver belongs to an object that is not relocated yet (a dependency cycle)"));
        }
        if def.is_ours() && !is_code(def, value) {
            return Err(Error::invalid(
                def.display_name(),
                format!("IFUNC resolver at {value:#x} is outside the object's executable segments"),
            ));
        }
        // SAFETY: the resolver of a relocated object (glibc's own for host
        // objects such as libc's memcpy); it takes no arguments.
        value = unsafe { call_resolver(value) };
    }
    Ok(Binding {
        found: Some(found),
        value,
        size: sym.size(),
    })
}

/// The address `def`'s symbol `sym` stands for, before IFUNC resolution or
/// dynload's replacements: its value relocated unless it is absolute, as
/// glibc's SYMBOL_ADDRESS (so an undefined entry bound inside its own
/// object, symbol 0 or a hidden reference, stands for the object's base
/// plus its value).
#[inline(always)]
fn plain_value(def: &Object, sym: &Sym) -> usize {
    def.view.symbols.address(sym)
}

/// Is `addr` inside an executable PT_LOAD of `obj`?
pub(crate) fn is_code(obj: &Object, addr: usize) -> bool {
    code_segment(obj, addr).is_some()
}

/// The executable PT_LOAD of `obj` that holds `addr`, as [start, end).
fn code_segment(obj: &Object, addr: usize) -> Option<(usize, usize)> {
    let base = obj.view.image.base;
    // SAFETY: `phdr` points to the object's `phnum` program headers, kept
    // alive with the object.
    let phdrs = unsafe { std::slice::from_raw_parts(obj.phdr, obj.phnum) };
    phdrs.iter().find_map(|p| {
        if p.p_type.get(LE) != elf::PT_LOAD || p.p_flags.get(LE) & elf::PF_X == 0 {
            return None;
        }
        let s = base.wrapping_add(p.p_vaddr.get(LE) as usize);
        let e = s.wrapping_add(p.p_memsz.get(LE) as usize);
        (s <= addr && addr < e).then_some((s, e))
    })
}

/// Call an IFUNC resolver.
///
/// # Safety
/// `addr` must be the address of an IFUNC resolver of a loaded, relocated
/// object.
pub(crate) unsafe fn call_resolver(addr: usize) -> usize {
    // SAFETY: per the contract; x86_64 resolvers are `fn() -> addr`.
    unsafe {
        let f: extern "C" fn() -> usize = std::mem::transmute(addr);
        f()
    }
}

fn hex_type(t: u32) -> String {
    if t > 0xff {
        format!("{t:08x}")
    } else {
        format!("{t:02x}")
    }
}
