//! The dynamic symbol table of an object in memory, with its GNU or SysV
//! hash table.
//!
//! This is one of the loader's hot paths (every symbolic relocation and every
//! `dlsym` walks it), so it keeps raw pointers to tables that were checked
//! once at load, instead of re-checking bounds per probe.

use super::dynamic::DynInfo;
use super::hash::Buckets;
use super::image::Image;
use super::{Sym, SymExt};

/// Both hashes of a name, computed once per lookup.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NameHash {
    pub gnu: u32,
    /// The SysV hash is only needed for objects without DT_GNU_HASH;
    /// computed on demand.
    sysv: Option<u32>,
}

impl NameHash {
    #[inline(always)]
    pub(crate) fn new(name: &[u8]) -> NameHash {
        NameHash {
            gnu: super::hash::gnu_hash(name),
            sysv: None,
        }
    }
    /// The hashes of a name whose GNU hash is known already (see
    /// [`SymbolTable::own_gnu_hash`]).
    #[inline(always)]
    pub(crate) fn of_gnu(gnu: u32) -> NameHash {
        NameHash { gnu, sysv: None }
    }
    fn sysv(&mut self, name: &[u8]) -> u32 {
        *self.sysv.get_or_insert_with(|| super::hash::elf_hash(name))
    }
}

/// The name a lookup asks for, as the hash-chain walk compares it. (Passed
/// by value: a `&[u8]` stays in registers through the walk.)
pub(crate) trait Wanted<'n>: Copy {
    /// Is the string at `offset` of `strings`, the name of `sym`, this one?
    fn is_at(self, strings: &Strings, offset: usize, sym: *const Sym) -> bool;
    /// The name's bytes.
    fn bytes(self) -> &'n [u8];
}

impl<'n> Wanted<'n> for &'n [u8] {
    #[inline(always)]
    fn is_at(self, strings: &Strings, offset: usize, _: *const Sym) -> bool {
        strings.eq_at(offset, self)
    }
    #[inline(always)]
    fn bytes(self) -> &'n [u8] {
        self
    }
}

/// The name of a symbol an object refers to and defines itself, as its
/// relocations look it up: read only if a walk meets another symbol with
/// its hash. Why: nearly every symbolic relocation of a big C++ library is
/// to a symbol it defines (8,824 of libLLVM-15's 9,380 lookups), which the
/// walk finds in the object's own table, at that very entry, where no
/// compare is needed; reading the name (74 bytes on average there) was
/// the costliest load of the relocation pass, a cache miss into a string
/// table of megabytes read in no order.
pub(crate) struct OwnName<'a> {
    table: &'a SymbolTable,
    sym: &'a Sym,
    name: std::cell::Cell<Option<&'a [u8]>>,
}

impl<'a> OwnName<'a> {
    pub(crate) fn new(table: &'a SymbolTable, sym: &'a Sym) -> OwnName<'a> {
        OwnName {
            table,
            sym,
            name: std::cell::Cell::new(None),
        }
    }
}

impl<'a> Wanted<'a> for &OwnName<'a> {
    #[inline(always)]
    fn is_at(self, strings: &Strings, offset: usize, sym: *const Sym) -> bool {
        std::ptr::eq(sym, self.sym) || strings.eq_at(offset, self.bytes())
    }
    #[inline(always)]
    fn bytes(self) -> &'a [u8] {
        if let Some(name) = self.name.get() {
            return name;
        }
        let name = self.table.name(self.sym);
        self.name.set(Some(name));
        name
    }
}

/// What [`SymbolTable::find_plain`] made of a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PlainFind {
    /// Nothing here is named so.
    Absent,
    /// A plain definition, at this address.
    Found(usize),
    /// Something only the general lookup decides.
    Other,
}

/// A DT_GNU_HASH Bloom filter, copied out of its table so that a lookup
/// can reject an object by reading one word (and nothing of the object).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bloom {
    words: *const u64,
    mask: u32,
    shift: u32,
}

/// The one word of a filter that rejects nothing.
static PASS_ALL: u64 = u64::MAX;

impl Bloom {
    /// A filter that rejects nothing, for objects without a GNU hash table.
    pub(crate) fn pass_all() -> Bloom {
        Bloom {
            words: &PASS_ALL,
            mask: 0,
            shift: 0,
        }
    }

    /// False when no symbol with GNU hash `h` can be in the table.
    #[inline]
    pub(crate) fn may_contain(&self, h: u32) -> bool {
        // SAFETY: the filter has `mask + 1` words (checked in parse_gnu) and
        // stays mapped while its object is loaded.
        let word = unsafe { *self.words.add(((h / 64) & self.mask) as usize) };
        (word >> (h % 64)) & (word >> ((h >> self.shift) % 64)) & 1 != 0
    }
}

#[derive(Debug, Clone, Copy)]
enum HashTable {
    Gnu {
        nbuckets: Buckets,
        symoffset: u32,
        bloom: *const u64,
        bloom_mask: u32,
        shift: u32,
        buckets: *const u32,
        /// `chain[i]` is the hash word of symbol `symoffset + i`, for
        /// `nsyms - symoffset` words (`nsyms` is where the last chain ends).
        chain: *const u32,
    },
    Sysv {
        nbuckets: Buckets,
        buckets: *const u32,
        chains: *const u32,
    },
    /// No hash table: nothing can be looked up (glibc: `l_nbuckets == 0`).
    None,
}

/// An object's dynamic string table (DT_STRTAB) where it lies in memory.
/// Other tables refer to names in it by [`Span`] instead of copying them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Strings {
    ptr: *const u8,
    len: usize,
}

// SAFETY: the table is the object's own read-only data; as for SymbolTable.
unsafe impl Send for Strings {}
// SAFETY: as above, all access is read-only.
unsafe impl Sync for Strings {}

/// A name in a [`Strings`] table: its offset and length, without the NUL.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Span {
    off: u32,
    len: u32,
}

impl Span {
    /// A span rebuilt from the offset and length of one that
    /// [`Strings::span_at`] gave (kept more compactly elsewhere).
    pub(crate) fn new(off: u32, len: u32) -> Span {
        Span { off, len }
    }

    pub(crate) fn len(&self) -> u32 {
        self.len
    }
}

impl Strings {
    pub(crate) const EMPTY: Strings = Strings {
        ptr: std::ptr::null(),
        len: 0,
    };

    /// Does the table hold a byte at `offset`? (No string is read.)
    #[inline(always)]
    pub(crate) fn holds(&self, offset: usize) -> bool {
        offset < self.len
    }

    /// The string at `offset`, without its NUL.
    #[inline(always)]
    pub(crate) fn at(&self, offset: usize) -> Option<&[u8]> {
        if offset >= self.len {
            return None;
        }
        let room = self.len - offset;
        // SAFETY: `ptr` has `len` bytes inside the mapping.
        let at = unsafe { self.ptr.add(offset) };
        // A name shorter than a word ends in the first eight bytes: found
        // with one load and the borrow test (the lowest flagged byte is
        // the first zero byte), without a call.
        if room >= 8 {
            // SAFETY: `room >= 8` bytes from `at` lie inside the table.
            let word = u64::from_le(unsafe { at.cast::<u64>().read_unaligned() });
            let zeros = word.wrapping_sub(0x0101_0101_0101_0101) & !word & 0x8080_8080_8080_8080;
            if zeros != 0 {
                let len = (zeros.trailing_zeros() / 8) as usize;
                // SAFETY: `len < 8 <= room`.
                return Some(unsafe { std::slice::from_raw_parts(at, len) });
            }
        }
        // (glibc's `strnlen`: every relocation measures a name, and most
        // names are short, where a slice search's set-up costs more than
        // the search. Bounded by the table, which the object's own
        // relocations could have changed.)
        // SAFETY: `room` bytes from `at` lie inside the table.
        let len = unsafe { libc::strnlen(at.cast(), room) };
        // SAFETY: as above; `len <= room`.
        (len < room).then(|| unsafe { std::slice::from_raw_parts(at, len) })
    }

    /// The span of the string at `offset`, to read back with [`Self::get`].
    pub(crate) fn span_at(&self, offset: usize) -> Option<Span> {
        let len = self.at(offset)?.len();
        Some(Span {
            off: u32::try_from(offset).ok()?,
            len: u32::try_from(len).ok()?,
        })
    }

    /// The bytes of `span`, which [`Self::span_at`] returned for this
    /// table. (A span from elsewhere gives whatever lies there in this
    /// table, or nothing if it does not fit; never bytes outside it.)
    #[inline]
    pub(crate) fn get(&self, span: Span) -> &[u8] {
        let (off, len) = (span.off as usize, span.len as usize);
        // (An empty span is empty also in the empty table, whose pointer
        // is null.)
        if len == 0 || off + len > self.len {
            return b"";
        }
        // SAFETY: off..off + len lies inside the table's `len` bytes.
        unsafe { std::slice::from_raw_parts(self.ptr.add(off), len) }
    }

    /// Does the string at `offset` equal `name`? (Bounded compare, no scan.)
    #[inline]
    fn eq_at(&self, offset: usize, name: &[u8]) -> bool {
        let Some(end) = offset.checked_add(name.len()) else {
            return false;
        };
        if end >= self.len {
            return false;
        }
        // SAFETY: offset..=end lies inside the `len` bytes of the table.
        let s = unsafe { std::slice::from_raw_parts(self.ptr.add(offset), name.len() + 1) };
        s[name.len()] == 0 && short_eq(&s[..name.len()], name)
    }
}

/// The four GNU chain words at `words`, for a lookup of hash `h`: which
/// of them (bit i for word i) hold `h` and come no later than the
/// chain's end, and which end a chain.
///
/// # Safety
/// `words` points to four readable `u32`s.
#[inline(always)]
unsafe fn chain_quad(words: *const u32, h: u32) -> (u32, u32) {
    use std::arch::x86_64::{
        __m128i, _mm_castsi128_ps, _mm_cmpeq_epi32, _mm_loadu_si128, _mm_movemask_ps, _mm_or_si128,
        _mm_set1_epi32, _mm_slli_epi32,
    };
    // SAFETY: the caller's four words (an unaligned load); the rest is
    // arithmetic on registers (SSE2, part of x86_64).
    let (equal, ends) = unsafe {
        let v = _mm_loadu_si128(words.cast::<__m128i>());
        // Bit 0 is the end mark, not part of the stored hash.
        let one = _mm_set1_epi32(1);
        let same = _mm_cmpeq_epi32(_mm_or_si128(v, one), _mm_set1_epi32((h | 1) as i32));
        (
            _mm_movemask_ps(_mm_castsi128_ps(same)) as u32,
            _mm_movemask_ps(_mm_castsi128_ps(_mm_slli_epi32::<31>(v))) as u32,
        )
    };
    // The words up to the first end mark, or all four (the sentinel bit 4).
    let first_end = (ends | 0x10) & (ends | 0x10).wrapping_neg();
    (equal & ((first_end << 1) - 1), ends)
}

/// The dynamic symbols of one loaded object. A copy reads the same
/// tables (query's handle cache keeps copies).
#[derive(Debug, Clone)]
pub(crate) struct SymbolTable {
    base: usize,
    syms: *const Sym,
    nsyms: u32,
    strings: Strings,
    versym: *const u16,
    hash: HashTable,
}

// SAFETY: the pointers refer to the object's own read-only tables, which are
// never written after load; sharing them between threads is sound.
unsafe impl Send for SymbolTable {}
// SAFETY: as above, all access is read-only.
unsafe impl Sync for SymbolTable {}

impl SymbolTable {
    /// A table with no symbols, for objects without DT_SYMTAB.
    pub(crate) fn empty(base: usize) -> SymbolTable {
        SymbolTable {
            base,
            syms: std::ptr::null(),
            nsyms: 0,
            strings: Strings::EMPTY,
            versym: std::ptr::null(),
            hash: HashTable::None,
        }
    }

    /// Check and describe the symbol tables that `d` points to.
    ///
    /// The returned table borrows memory described by `image`; the caller
    /// keeps that memory mapped for as long as the table is used (both are
    /// owned by the same loaded object).
    pub(crate) fn parse(image: &Image, d: &DynInfo) -> Result<SymbolTable, String> {
        let (Some(symtab), Some(strtab)) = (d.symtab(), d.strtab()) else {
            return Ok(SymbolTable::empty(image.base));
        };
        let strtab_addr = image.addr(strtab.vaddr);
        if image.bytes(strtab_addr, strtab.size as usize).is_none() {
            return Err("DT_STRTAB lies outside the loaded segments".into());
        }
        let (hash, nsyms) = if let Some(gnu) = d.gnu_hash() {
            let (table, hashed) = parse_gnu(image, image.addr(gnu))?;
            (
                table,
                hashed.unwrap_or_else(|| count_by_layout(image, d, symtab)),
            )
        } else if let Some(sysv) = d.hash() {
            parse_sysv(image, image.addr(sysv))?
        } else {
            (HashTable::None, 0)
        };
        let syms_addr = image.addr(symtab);
        let syms: &[Sym] = image.slice(syms_addr, nsyms as usize).ok_or_else(|| {
            format!("DT_SYMTAB with {nsyms} symbols lies outside the loaded segments")
        })?;
        let versym = match d.versym() {
            Some(v) => image
                .slice::<u16>(image.addr(v), nsyms as usize)
                .ok_or_else(|| "DT_VERSYM lies outside the loaded segments".to_string())?
                .as_ptr(),
            None => std::ptr::null(),
        };
        Ok(SymbolTable {
            base: image.base,
            syms: syms.as_ptr(),
            nsyms,
            strings: Strings {
                ptr: strtab_addr as *const u8,
                len: strtab.size as usize,
            },
            versym,
            hash,
        })
    }

    /// Symbol number `i`. Panics if out of range: indices come from hash
    /// chains and relocations that were checked against `len()`.
    #[inline]
    pub(crate) fn sym(&self, i: u32) -> &Sym {
        assert!(i < self.nsyms, "symbol index {i} out of range");
        // SAFETY: `syms` points to `nsyms` symbols inside the mapping.
        unsafe { &*self.syms.add(i as usize) }
    }

    /// The number of symbols.
    #[inline]
    pub(crate) fn count(&self) -> u32 {
        self.nsyms
    }

    /// Ask the CPU to fetch symbol `i` into the cache, if it is in range:
    /// a relocation pass knows which symbols its later entries name before
    /// it needs them.
    #[inline(always)]
    pub(crate) fn prefetch(&self, i: u32) {
        if i < self.nsyms {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            // SAFETY: SSE is part of x86_64, and a prefetch reads nothing
            // (the address is only computed, and in range).
            unsafe { _mm_prefetch::<_MM_HINT_T0>(self.syms.wrapping_add(i as usize).cast()) };
        }
    }

    /// Symbol number `i`, or None when out of range.
    pub(crate) fn get(&self, i: u32) -> Option<&Sym> {
        (i < self.nsyms).then(|| self.sym(i))
    }

    /// The version index of symbol `i` (with the hidden bit), if the object
    /// has a DT_VERSYM table.
    #[inline]
    pub(crate) fn versym(&self, i: u32) -> Option<u16> {
        if self.versym.is_null() || i >= self.nsyms {
            return None;
        }
        // SAFETY: `versym` has `nsyms` entries inside the mapping.
        Some(unsafe { *self.versym.add(i as usize) })
    }

    /// The string at `offset` in the string table, without its NUL.
    #[inline(always)]
    pub(crate) fn string(&self, offset: usize) -> Option<&[u8]> {
        self.strings.at(offset)
    }

    /// Is the string at `offset` `name`? (A bounded compare: nothing is
    /// measured.)
    pub(crate) fn string_is(&self, offset: usize, name: &[u8]) -> bool {
        self.strings.eq_at(offset, name)
    }

    /// The string table, for tables that name strings in it.
    pub(crate) fn strings(&self) -> Strings {
        self.strings
    }

    /// The name of `sym`.
    #[inline(always)]
    pub(crate) fn name(&self, sym: &Sym) -> &[u8] {
        self.string(sym.name_offset()).unwrap_or(b"")
    }

    /// The address `sym` stands for in this object (SHN_ABS values are not
    /// relocated).
    #[inline]
    pub(crate) fn address(&self, sym: &Sym) -> usize {
        if sym.shndx() == super::elf::SHN_ABS {
            sym.value() as usize
        } else {
            self.base.wrapping_add(sym.value() as usize)
        }
    }

    /// The Bloom filter of a DT_GNU_HASH table (None for SysV tables).
    pub(crate) fn bloom(&self) -> Option<Bloom> {
        match self.hash {
            HashTable::Gnu {
                bloom,
                bloom_mask,
                shift,
                ..
            } => Some(Bloom {
                words: bloom,
                mask: bloom_mask,
                shift,
            }),
            _ => None,
        }
    }

    /// Call `f` with the index of every symbol named `name`, in hash-chain
    /// order, until it returns `true`; returns that index.
    #[inline(always)]
    pub(crate) fn find(
        &self,
        name: &[u8],
        hash: &mut NameHash,
        f: impl FnMut(u32, &Sym) -> bool,
    ) -> Option<u32> {
        self.find_in(name, hash, true, f)
    }

    /// [`SymbolTable::find`], without the Bloom check when `check_bloom`
    /// is false (the caller made it already).
    #[inline(always)]
    pub(crate) fn find_in(
        &self,
        name: &[u8],
        hash: &mut NameHash,
        check_bloom: bool,
        f: impl FnMut(u32, &Sym) -> bool,
    ) -> Option<u32> {
        self.find_sym_in(name, hash, check_bloom, f).map(|(i, _)| i)
    }

    /// A GNU table's bucket count, first hashed symbol, buckets and chain
    /// words (see `HashTable::Gnu`).
    #[inline(always)]
    fn gnu_chains(&self) -> Option<(Buckets, u32, *const u32, *const u32)> {
        match self.hash {
            HashTable::Gnu {
                nbuckets,
                symoffset,
                buckets,
                chain,
                ..
            } => Some((nbuckets, symoffset, buckets, chain)),
            _ => None,
        }
    }

    /// The GNU hash of symbol `i`'s name, read from this table instead of
    /// computed from the name: the chain word holds it but for its lowest
    /// bit, which is the one of the two bucket choices that holds `i`
    /// (symbols are sorted by bucket, so `i` is in the second if that
    /// one's chain starts at or before it). None where the table cannot
    /// tell (`i` not hashed, one bucket, the last bucket wrapping to the
    /// first) or the walk from that bucket would not reach `i`. Only as
    /// true as the table: a symbol filed under another name's hash would
    /// be found under that hash.
    #[inline(always)]
    pub(crate) fn own_gnu_hash(&self, i: u32) -> Option<u32> {
        let (nbuckets, symoffset, buckets, chain) = self.gnu_chains()?;
        if i < symoffset || i >= self.nsyms {
            return None;
        }
        // SAFETY: `i - symoffset` is below the chain's `nsyms - symoffset`
        // words, and bucket indices come from `nbuckets.of` (parse_gnu
        // checked both arrays).
        unsafe {
            let even = *chain.add((i - symoffset) as usize) & !1;
            let (first, second) = (nbuckets.of(even), nbuckets.of(even | 1));
            if second != first + 1 {
                return None;
            }
            let start = *buckets.add(second as usize);
            let (h, bucket) = if start != 0 && start <= i {
                (even | 1, second)
            } else {
                (even, first)
            };
            // The chain from that bucket reaches `i` before it ends.
            let mut at = *buckets.add(bucket as usize);
            if at == 0 || at < symoffset || at > i {
                return None;
            }
            while at < i {
                if *chain.add((at - symoffset) as usize) & 1 != 0 {
                    return None;
                }
                at += 1;
            }
            Some(h)
        }
    }

    /// The definition of `name` (GNU hash `h`, its Bloom check made) for
    /// a lookup that asks for no version, when it is a plain one: a
    /// defined, global or weak function, object or untyped symbol of
    /// default or protected visibility, not of a non-default version.
    /// Where the general lookup would have more to decide (another kind
    /// of definition under the name, or a table that is not GNU), says so
    /// instead of deciding. (The relocation pass's fast lane; see
    /// `relocate::lane`.)
    #[inline(always)]
    pub(crate) fn find_plain(&self, name: &[u8], h: u32) -> PlainFind {
        // (Its own chain walk, a word at a time, rather than `find_wanted`
        // with a closure that takes the first name's verdict: that one's
        // walk, four words at a time, made the benchmark's relocation
        // cycle run 10.6% more instructions in the lane.)
        let Some((nbuckets, symoffset, buckets, chain)) = self.gnu_chains() else {
            return PlainFind::Other;
        };
        // SAFETY: as in `find_wanted`: the bucket index comes from
        // `nbuckets.of`, and every chain walked from a bucket ends before
        // index `nsyms - symoffset` (both checked in parse_gnu).
        unsafe {
            let mut idx = *buckets.add(nbuckets.of(h) as usize);
            if idx == 0 {
                return PlainFind::Absent;
            }
            loop {
                let ch = *chain.add((idx - symoffset) as usize);
                if (ch ^ h) >> 1 == 0 {
                    let sym = &*self.syms.add(idx as usize);
                    if self.strings.eq_at(sym.name_offset(), name) {
                        return self.plain_definition(idx, sym);
                    }
                }
                if ch & 1 != 0 {
                    return PlainFind::Absent;
                }
                idx += 1;
            }
        }
    }

    /// [`SymbolTable::find_plain`]'s verdict on symbol `idx`, named as
    /// asked.
    #[inline(always)]
    fn plain_definition(&self, idx: u32, sym: &Sym) -> PlainFind {
        if !sym.is_plain_definition() || sym.value() == 0 {
            return PlainFind::Other;
        }
        // (An unversioned request takes the base and global versions and
        // the first one defined, as `link::lookup_after_bloom` does.)
        if let Some(vs) = self.versym(idx) {
            if vs & 0x7fff >= 3 {
                return PlainFind::Other;
            }
        }
        PlainFind::Found(self.base.wrapping_add(sym.value() as usize))
    }

    /// [`SymbolTable::find_in`], giving the symbol found with its index.
    #[inline(always)]
    pub(crate) fn find_sym_in(
        &self,
        name: &[u8],
        hash: &mut NameHash,
        check_bloom: bool,
        f: impl FnMut(u32, &Sym) -> bool,
    ) -> Option<(u32, &Sym)> {
        self.find_wanted(name, hash, check_bloom, f)
    }

    /// [`SymbolTable::find_sym_in`] for any [`Wanted`] name.
    #[inline(always)]
    pub(crate) fn find_wanted<'n>(
        &self,
        name: impl Wanted<'n>,
        hash: &mut NameHash,
        check_bloom: bool,
        mut f: impl FnMut(u32, &Sym) -> bool,
    ) -> Option<(u32, &Sym)> {
        match self.hash {
            HashTable::Gnu {
                nbuckets,
                symoffset,
                bloom,
                bloom_mask,
                shift,
                buckets,
                chain,
            } => {
                let h = hash.gnu;
                let chain_len = self.nsyms - symoffset;
                let filter = Bloom {
                    words: bloom,
                    mask: bloom_mask,
                    shift,
                };
                if check_bloom && !filter.may_contain(h) {
                    return None;
                }
                // SAFETY: both arrays were bounds-checked in parse_gnu:
                // buckets has nbuckets entries, and every chain walked from
                // a bucket ends (end bit) before index nsyms - symoffset
                // (`chain_len`: a GNU table's symbol count is where its
                // last chain ends), so every symbol index reached is below
                // nsyms.
                unsafe {
                    let mut idx = *buckets.add(nbuckets.of(h) as usize);
                    if idx == 0 {
                        return None;
                    }
                    loop {
                        let pos = idx - symoffset;
                        // Four chain words at a time while four remain:
                        // where in the chain the name's hash sits is a
                        // branch no predictor can learn, taken once per
                        // word; here it is a mask, and the branches left
                        // (a candidate at all? the chain's end within
                        // these four?) mostly go one way.
                        if pos + 4 <= chain_len {
                            let (mut candidates, ends) = chain_quad(chain.add(pos as usize), h);
                            while candidates != 0 {
                                let at = idx + candidates.trailing_zeros();
                                // (In range, as the chain is: no check on
                                // the lookups' hottest path.)
                                let sym = &*self.syms.add(at as usize);
                                if name.is_at(&self.strings, sym.name_offset(), sym) && f(at, sym) {
                                    return Some((at, sym));
                                }
                                candidates &= candidates - 1;
                            }
                            if ends != 0 {
                                return None;
                            }
                            idx += 4;
                            continue;
                        }
                        let ch = *chain.add(pos as usize);
                        if (ch ^ h) >> 1 == 0 {
                            let sym = &*self.syms.add(idx as usize);
                            if name.is_at(&self.strings, sym.name_offset(), sym) && f(idx, sym) {
                                return Some((idx, sym));
                            }
                        }
                        if ch & 1 != 0 {
                            return None;
                        }
                        idx += 1;
                    }
                }
            }
            HashTable::Sysv {
                nbuckets,
                buckets,
                chains,
            } => {
                let h = hash.sysv(name.bytes());
                // SAFETY: buckets has nbuckets entries and chains has nsyms
                // entries (checked in parse_sysv); indices are checked below.
                unsafe {
                    let mut idx = *buckets.add(nbuckets.of(h) as usize);
                    let mut steps = 0;
                    while idx != 0 && idx < self.nsyms && steps <= self.nsyms {
                        let sym = self.sym(idx);
                        if name.is_at(&self.strings, sym.name_offset(), sym) && f(idx, sym) {
                            return Some((idx, sym));
                        }
                        idx = *chains.add(idx as usize);
                        steps += 1;
                    }
                    None
                }
            }
            HashTable::None => None,
        }
    }

    /// How many symbols the hash table can lead a lookup to.
    pub(crate) fn hashed_count(&self) -> u32 {
        match self.hash {
            HashTable::Gnu { symoffset, .. } => self.nsyms.saturating_sub(symoffset),
            HashTable::Sysv { .. } => self.nsyms,
            HashTable::None => 0,
        }
    }

    /// Call `f` with the GNU hash of every symbol a lookup can find here
    /// (for a GNU table, as its chains store it: bit 0 is the chain's end
    /// mark, not the hash's).
    pub(crate) fn for_each_gnu_hash(&self, mut f: impl FnMut(u32)) {
        match self.hash {
            HashTable::Gnu { chain, .. } => {
                // SAFETY: parse_gnu checked the chain array's
                // `nsyms - symoffset` entries.
                let chain =
                    unsafe { std::slice::from_raw_parts(chain, self.hashed_count() as usize) };
                chain.iter().for_each(|&h| f(h));
            }
            HashTable::Sysv { .. } => {
                for (_, sym) in self.iter().skip(1) {
                    f(super::hash::gnu_hash(self.name(sym)));
                }
            }
            HashTable::None => {}
        }
    }

    /// Every symbol, for address lookups and diagnostics.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &Sym)> + '_ {
        (0..self.nsyms).map(move |i| (i, self.sym(i)))
    }
}

/// The number of symbols of a table whose GNU hash table hashes none (an
/// object that exports nothing), which the hash table then cannot tell:
/// linkers put the next dynamic table right after the symbols, so they
/// run up to the nearest table above them, or to the end of their segment.
fn count_by_layout(image: &Image, d: &DynInfo, symtab: u64) -> u32 {
    let tables = [
        d.strtab().map(|t| t.vaddr),
        d.hash(),
        d.gnu_hash(),
        d.versym(),
        d.verdef(),
        d.verneed(),
        d.rela().map(|t| t.vaddr),
        d.rel().map(|t| t.vaddr),
        d.jmprel().map(|t| t.vaddr),
        d.relr().map(|t| t.vaddr),
    ];
    let start = image.addr(symtab);
    let Some(segment_end) = image.segment_end(start) else {
        return 0;
    };
    // Compared as addresses: a file address above the symbols can wrap
    // around below them once the load bias is added.
    let end = tables
        .into_iter()
        .flatten()
        .map(|v| image.addr(v))
        .filter(|&a| a > start)
        .fold(segment_end, usize::min);
    u32::try_from((end - start) / std::mem::size_of::<Sym>()).unwrap_or(u32::MAX)
}

/// A GNU hash table, and the number of symbols when it hashes any.
fn parse_gnu(image: &Image, addr: usize) -> Result<(HashTable, Option<u32>), String> {
    let bad = |what: &str| format!("DT_GNU_HASH: {what}");
    let header: &[u32] = image
        .slice(addr, 4)
        .ok_or_else(|| bad("header outside the loaded segments"))?;
    let (nbuckets, symoffset, bloom_size, shift) = (header[0], header[1], header[2], header[3]);
    if bloom_size == 0 {
        return Err(bad("empty Bloom filter"));
    }
    if shift >= 32 {
        return Err(bad("Bloom shift of 32 or more"));
    }
    let bloom_addr = addr + 16;
    let bloom: &[u64] = image
        .slice(bloom_addr, bloom_size as usize)
        .ok_or_else(|| bad("Bloom filter outside the loaded segments"))?;
    let buckets_addr = bloom_addr + 8 * bloom_size as usize;
    let buckets: &[u32] = image
        .slice(buckets_addr, nbuckets as usize)
        .ok_or_else(|| bad("buckets outside the loaded segments"))?;
    let chain_addr = buckets_addr + 4 * nbuckets as usize;
    if nbuckets == 0 {
        return Ok((HashTable::None, None));
    }
    // The symbol count is not stored: it is one past the end of the chain
    // that starts at the highest bucket. (One pass without early exit for
    // both the maximum and the check, which the compiler vectorizes:
    // libLLVM-15 has 32,771 buckets, and a short-circuiting check cost
    // ten instructions each.)
    let (max_bucket, below) = buckets.iter().fold((0u32, false), |(max, below), &b| {
        (max.max(b), below | (b != 0 && b < symoffset))
    });
    if below {
        return Err(bad("bucket below the first hashed symbol"));
    }
    if max_bucket == 0 {
        return Ok((HashTable::None, None));
    }
    let mut last = max_bucket;
    loop {
        let off = (last - symoffset) as usize;
        let word: &u32 = image
            .read(chain_addr + 4 * off)
            .ok_or_else(|| bad("hash chain runs outside the loaded segments"))?;
        if word & 1 != 0 {
            break;
        }
        last = last
            .checked_add(1)
            .ok_or_else(|| bad("hash chain does not end"))?;
    }
    // A chain ending at index 2^32 - 1 would make 2^32 symbols.
    let nsyms = last
        .checked_add(1)
        .ok_or_else(|| bad("hash chain ends past the last symbol index"))?;
    let chain_len = (nsyms - symoffset) as usize;
    let chain: &[u32] = image
        .slice(chain_addr, chain_len)
        .ok_or_else(|| bad("hash chains outside the loaded segments"))?;
    Ok((
        HashTable::Gnu {
            nbuckets: Buckets::new(nbuckets),
            symoffset,
            bloom: bloom.as_ptr(),
            // As glibc: `nwords - 1` masks the index into range whatever
            // the size, so a non-power-of-two filter stays in bounds.
            bloom_mask: bloom_size - 1,
            shift,
            buckets: buckets.as_ptr(),
            chain: chain.as_ptr(),
        },
        Some(nsyms),
    ))
}

fn parse_sysv(image: &Image, addr: usize) -> Result<(HashTable, u32), String> {
    let bad = |what: &str| format!("DT_HASH: {what}");
    let header: &[u32] = image
        .slice(addr, 2)
        .ok_or_else(|| bad("header outside the loaded segments"))?;
    let (nbuckets, nchain) = (header[0], header[1]);
    let buckets: &[u32] = image
        .slice(addr + 8, nbuckets as usize)
        .ok_or_else(|| bad("buckets outside the loaded segments"))?;
    let chains: &[u32] = image
        .slice(addr + 8 + 4 * nbuckets as usize, nchain as usize)
        .ok_or_else(|| bad("chains outside the loaded segments"))?;
    if nbuckets == 0 {
        return Ok((HashTable::None, nchain));
    }
    Ok((
        HashTable::Sysv {
            nbuckets: Buckets::new(nbuckets),
            buckets: buckets.as_ptr(),
            chains: chains.as_ptr(),
        },
        nchain,
    ))
}

impl SymbolTable {
    /// Symbol indices in the order glibc's `dladdr` scan visits them: the
    /// GNU hash buckets and their chains, or every symbol for SysV.
    pub(crate) fn hash_order(&self) -> Vec<u32> {
        match self.gnu_chains() {
            Some((nbuckets, symoffset, buckets, chain)) => {
                let mut out = Vec::with_capacity(self.nsyms.saturating_sub(symoffset) as usize);
                for b in 0..nbuckets.count() {
                    // SAFETY: checked in parse_gnu (see `find`).
                    let mut idx = unsafe { *buckets.add(b as usize) };
                    if idx == 0 {
                        continue;
                    }
                    while idx < self.nsyms {
                        out.push(idx);
                        // SAFETY: idx - symoffset < nsyms - symoffset.
                        let ch = unsafe { *chain.add((idx - symoffset) as usize) };
                        if ch & 1 != 0 {
                            break;
                        }
                        idx += 1;
                    }
                }
                out
            }
            None => (0..self.nsyms).collect(),
        }
    }
}

/// `a == b` for symbol names, without calling `memcmp`: names are short,
/// and the call cost more than the comparison (12% of a `dlsym` hit).
/// Eight bytes at a time, the last eight overlapping.
#[inline]
fn short_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], i: usize| u64::from_ne_bytes(s[i..i + 8].try_into().unwrap());
    if n < 8 {
        let half = |s: &[u8], i: usize| u32::from_ne_bytes(s[i..i + 4].try_into().unwrap());
        return if n >= 4 {
            half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4)
        } else {
            a.iter().zip(b).all(|(x, y)| x == y)
        };
    }
    let mut i = 0;
    while i + 8 < n {
        if word(a, i) != word(b, i) {
            return false;
        }
        i += 8;
    }
    word(a, n - 8) == word(b, n - 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_eq_is_slice_equality_at_every_length_and_position() {
        let a: Vec<u8> = (0..40u8).map(|i| b'a' + i % 26).collect();
        for n in 0..a.len() {
            let x = &a[..n];
            let copy = x.to_vec();
            assert!(short_eq(x, &copy), "{n}");
            assert!(!short_eq(x, &a[..n + 1]), "{n}: lengths differ");
            for at in 0..n {
                let mut y = x.to_vec();
                y[at] ^= 0x20;
                assert!(!short_eq(x, &y), "{n}: byte {at} differs");
            }
        }
    }

    /// Names of every length, measured by the one-word test or by
    /// `strnlen`, at every distance from the table's end (where fewer than
    /// eight bytes remain, the word is never read).
    #[test]
    fn names_are_measured_at_every_length_and_near_the_end() {
        for table_len in 1..40usize {
            for name_len in 0..table_len {
                for start in 0..table_len - name_len {
                    // Bytes the borrow test must not take for a NUL.
                    let fill = [b'q', 0x01, 0x80, 0xff, 0x7f];
                    let mut table: Vec<u8> = (0..table_len).map(|i| fill[i % 5]).collect();
                    table[start + name_len] = 0;
                    let strings = Strings {
                        ptr: table.as_ptr(),
                        len: table.len(),
                    };
                    let want = &table[start..start + name_len];
                    assert_eq!(
                        strings.at(start),
                        Some(want),
                        "{table_len} {name_len} {start}"
                    );
                }
                // No NUL from here to the end: no name.
                let table = vec![0x80u8; table_len];
                let strings = Strings {
                    ptr: table.as_ptr(),
                    len: table.len(),
                };
                assert_eq!(strings.at(name_len), None);
            }
        }
    }

    /// `chain_quad` against the rule a chain walk applies word by word:
    /// every combination of matching hashes and end marks in four words.
    #[test]
    fn chain_quads_find_the_matches_up_to_the_chains_end() {
        let h = 0x1234_5678u32;
        for pattern in 0..256u32 {
            let words: [u32; 4] = std::array::from_fn(|i| {
                let same = pattern >> (2 * i) & 1 != 0;
                let end = pattern >> (2 * i + 1) & 1 != 0;
                // A different hash differs in some bit above bit 0.
                let stored = if same { h } else { h ^ (2 << i) };
                (stored & !1) | end as u32
            });
            let (mut want, mut want_ends) = (0, 0);
            let mut ended = false;
            for (i, &w) in words.iter().enumerate() {
                if !ended && (w ^ h) >> 1 == 0 {
                    want |= 1 << i;
                }
                if w & 1 != 0 {
                    want_ends |= 1 << i;
                    ended = true;
                }
            }
            // SAFETY: four words.
            let got = unsafe { chain_quad(words.as_ptr(), h) };
            assert_eq!(got, (want, want_ends), "{words:x?}");
        }
    }

    /// Call `f` with the dynamic symbol table of each of three system
    /// libraries, laid out as loaded.
    fn with_real_tables(f: impl Fn(&str, &SymbolTable)) {
        for path in [
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
            "/usr/lib/x86_64-linux-gnu/libstdc++.so.6",
            "/usr/lib/x86_64-linux-gnu/libcrypto.so.3",
        ] {
            let data = std::fs::read(path).unwrap();
            let (loaded, d) = crate::fuzzing::tables(&data).expect(path);
            f(path, &SymbolTable::parse(&loaded.image, &d).unwrap());
        }
    }

    /// Every symbol a lookup can reach in real libraries (libc's chains
    /// hold several versions of one name) is found
    /// where a word-by-word walk of its chain finds it, also when the
    /// definitions before it in the chain are refused; and a name that is
    /// not there is not found.
    #[test]
    fn lookups_find_what_a_word_by_word_walk_finds() {
        with_real_tables(|path, syms| {
            let HashTable::Gnu {
                nbuckets,
                symoffset,
                buckets,
                chain,
                ..
            } = syms.hash
            else {
                panic!("{path}: no GNU hash table");
            };
            // The reference: each index with `name`'s hash, in chain order.
            let walk = |name: &[u8]| -> Vec<u32> {
                let h = super::super::hash::gnu_hash(name);
                let mut out = Vec::new();
                // SAFETY: bounded as in `find_sym_in`.
                unsafe {
                    let mut idx = *buckets.add(nbuckets.of(h) as usize);
                    while idx != 0 {
                        let ch = *chain.add((idx - symoffset) as usize);
                        if (ch ^ h) >> 1 == 0 && syms.name(syms.sym(idx)) == name {
                            out.push(idx);
                        }
                        if ch & 1 != 0 {
                            break;
                        }
                        idx += 1;
                    }
                }
                out
            };
            let mut checked = 0;
            for idx in symoffset..syms.count() {
                let name = syms.name(syms.sym(idx));
                let found = walk(name);
                assert!(found.contains(&idx), "{path}: {idx}");
                // Refuse each definition of the name in turn: the next.
                for (n, &want) in found.iter().enumerate() {
                    let got = syms.find_sym_in(name, &mut NameHash::new(name), false, |i, _| {
                        !found[..n].contains(&i)
                    });
                    assert_eq!(got.map(|(i, _)| i), Some(want), "{path}: {idx}");
                }
                let refused = syms.find_sym_in(name, &mut NameHash::new(name), false, |_, _| false);
                assert!(refused.is_none());
                let mut absent = name.to_vec();
                absent.push(b'~');
                assert!(syms
                    .find_sym_in(&absent, &mut NameHash::new(&absent), false, |_, _| true)
                    .is_none());
                checked += 1;
            }
            assert!(checked > 2000, "{path}: {checked}");
        });
    }

    /// The hash a table gives for its own symbols is the hash of their
    /// names, for nearly all of them (not where the last bucket's hash
    /// would wrap to the first); and a lookup of a symbol by its own
    /// entry finds what a lookup by its name finds, also when earlier
    /// definitions of the name are refused, without reading the name when
    /// the walk meets that entry first.
    #[test]
    fn own_hashes_and_names_find_what_names_find() {
        with_real_tables(|path, syms| {
            let HashTable::Gnu {
                symoffset,
                nbuckets,
                ..
            } = syms.hash
            else {
                panic!("{path}: no GNU hash table");
            };
            let (mut known, mut wrapped) = (0, 0);
            for idx in 0..syms.count() {
                let sym = syms.sym(idx);
                let name = syms.name(sym);
                let real = super::super::hash::gnu_hash(name);
                let Some(h) = syms.own_gnu_hash(idx) else {
                    let even = real & !1;
                    assert!(
                        idx < symoffset || nbuckets.of(even | 1) != nbuckets.of(even) + 1,
                        "{path}: {idx}"
                    );
                    wrapped += u32::from(idx >= symoffset);
                    continue;
                };
                assert!(idx >= symoffset);
                assert_eq!(h, real, "{path}: {idx}");
                known += 1;
                let by_name = |refuse: &[u32]| {
                    syms.find_sym_in(name, &mut NameHash::new(name), false, |i, _| {
                        !refuse.contains(&i)
                    })
                    .map(|(i, _)| i)
                };
                let by_entry = |refuse: &[u32]| {
                    let own = OwnName::new(syms, sym);
                    syms.find_wanted(&own, &mut NameHash::of_gnu(h), false, |i, _| {
                        !refuse.contains(&i)
                    })
                    .map(|(i, _)| i)
                };
                // Refuse each definition of the name in turn: the next.
                let mut refused = Vec::new();
                while let Some(want) = by_name(&refused) {
                    assert_eq!(by_entry(&refused), Some(want), "{path}: {idx}");
                    refused.push(want);
                }
                assert!(refused.contains(&idx), "{path}: {idx}");
                assert_eq!(by_entry(&refused), None, "{path}: {idx}");
            }
            assert!(
                known > 2000 && wrapped * 50 < known,
                "{path}: {known} {wrapped}"
            );
        });
    }

    /// The name of a symbol looked up by its own entry is not read when
    /// the walk meets that entry first: a table whose name bytes were
    /// overwritten still finds it by entry, and not by the old name.
    #[test]
    fn an_own_name_is_not_read_where_the_walk_meets_its_entry_first() {
        let data = std::fs::read("/usr/lib/x86_64-linux-gnu/libz.so.1").unwrap();
        let (loaded, d) = crate::fuzzing::tables(&data).unwrap();
        let syms = SymbolTable::parse(&loaded.image, &d).unwrap();
        // A symbol the table gives a hash for, first of its hash in its
        // chain (so the walk meets its entry before any other).
        let (idx, h) = (0..syms.count())
            .filter_map(|i| Some((i, syms.own_gnu_hash(i)?)))
            .find(|&(i, h)| {
                let mut first = None;
                let _ = syms.find_wanted(
                    &OwnName::new(&syms, syms.sym(i)),
                    &mut NameHash::of_gnu(h),
                    false,
                    |at, _| {
                        first.get_or_insert(at);
                        false
                    },
                );
                first == Some(i)
            })
            .unwrap();
        let sym = syms.sym(idx);
        let name = syms.name(sym).to_vec();
        let own = OwnName::new(&syms, sym);
        let found = syms.find_wanted(&own, &mut NameHash::of_gnu(h), false, |_, _| true);
        assert_eq!(found.map(|(i, _)| i), Some(idx));
        // SAFETY: the name's first byte lies in the laid-out copy, which
        // this test owns and may write.
        unsafe { *(syms.strings.ptr.add(sym.name_offset()) as *mut u8) ^= 0x20 };
        assert!(syms
            .find_sym_in(&name, &mut NameHash::new(&name), false, |_, _| true)
            .is_none());
        let own = OwnName::new(&syms, sym);
        let found = syms.find_wanted(&own, &mut NameHash::of_gnu(h), false, |_, _| true);
        assert_eq!(found.map(|(i, _)| i), Some(idx));
        assert!(own.name.get().is_none(), "the name was read");
    }

    /// A string table can change after it was checked (a relocation of the
    /// object's own may write into it): a name is still measured within it.
    #[test]
    fn a_string_table_that_lost_its_last_nul_yields_no_name_past_its_end() {
        let data = std::fs::read("/usr/lib/x86_64-linux-gnu/libz.so.1").unwrap();
        let (loaded, d) = crate::fuzzing::tables(&data).unwrap();
        let syms = SymbolTable::parse(&loaded.image, &d).unwrap();
        // SAFETY: the table's `strsz` bytes lie in the laid-out copy, which
        // this test owns and may write.
        let byte = |i: usize| unsafe { *syms.strings.ptr.add(i) };
        let last = syms.strings.len - 1;
        assert_eq!(byte(last), 0);
        let start = (0..last).rev().find(|&i| byte(i) == 0).unwrap() + 1;
        assert!(!syms.string(start).unwrap().is_empty());
        // SAFETY: as above.
        unsafe { *(syms.strings.ptr.add(last) as *mut u8) = b'x' };
        assert_eq!(syms.string(start), None);
    }
}
