//! One filter over the whole global scope: "could any object of it define
//! a name with this GNU hash?"
//!
//! Every symbolic relocation walks the global scope before the object's own
//! dependencies, and each object there costs a Bloom check even when none of
//! them defines the name (the usual case for a plugin binding to its own
//! libraries). The global scope changes rarely, so its hash values are
//! gathered once into this filter, and a lookup that it rejects skips the
//! whole run of objects with one probe. It only ever says "maybe" for a
//! name some object there can return, so skipping on "no" is exact; it is
//! dropped whenever the global scope changes.
//!
//! Memory: four bits per symbol the scope's hash tables reach (about 1.6 KB
//! for a program whose global scope is libc, libgcc_s and ld.so), built only
//! for relocation passes whose lookups it pays for (see [`worth_building`]).
//! A process that goes on to make many lookups through it gets it rebuilt
//! at eight bits a symbol ([`worth_refining`]): a name passes falsely about
//! a third as often (5% against 15%), and each false pass costs a Bloom
//! check per global object. A process's first filter is a one-off: in a
//! mapping of its own, dropped when the `dlopen` that built it ends, so
//! that a process that loads once keeps none (see
//! `Registry::drop_one_off_filter`).

use crate::elf::symbols::SymbolTable;

/// A blocked Bloom filter (two bits in one 64-bit word per name) over GNU
/// hash values without their lowest bit: hash chains store the rest, so
/// the filter is built from them without rehashing a name.
pub(crate) struct ScopeFilter {
    /// The `len` words, where `storage` says (read through the pointer on
    /// the lookups' path: one load each, where a match on the storage's
    /// kind added a test to every lookup).
    words: *mut u64,
    len: usize,
    storage: Storage,
    density: Density,
    /// How many symbols it was built from.
    symbols: usize,
}

// SAFETY: the filter owns its words (see `Storage`), and no one writes
// them after `build`.
unsafe impl Send for ScopeFilter {}
// SAFETY: as above: shared references only read.
unsafe impl Sync for ScopeFilter {}

/// Where a filter's words are.
enum Storage {
    /// A boxed slice, turned into `words` (`Box::into_raw`) and freed by
    /// `drop` (a `Box` kept here would be moved with the filter, which
    /// the aliasing rules say invalidates a pointer taken from it).
    Heap,
    /// A mapping of their own, for a filter the process may drop at once
    /// (see [`ScopeFilter::is_one_off`]).
    Mapped(#[allow(dead_code)] crate::map::AnonWords),
}

impl Drop for ScopeFilter {
    fn drop(&mut self) {
        if let Storage::Heap = self.storage {
            // SAFETY: `words` and `len` are the boxed slice `build` gave
            // up, freed once, here.
            drop(unsafe {
                Box::from_raw(std::ptr::slice_from_raw_parts_mut(self.words, self.len))
            });
        }
    }
}

/// How many bits a symbol the filter spends (two of them set per symbol).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Density {
    /// Four bits a symbol: about 15% of other names pass.
    #[default]
    Coarse,
    /// Eight bits a symbol: about 5% of other names pass.
    Fine,
}

impl Density {
    fn symbols_per_word(self) -> usize {
        match self {
            Density::Coarse => 16,
            Density::Fine => 8,
        }
    }
}

impl ScopeFilter {
    /// The filter over every symbol a lookup can find in `tables`, which
    /// together hash `symbols` symbols.
    ///
    /// A `one_off` filter has its words in a mapping of their own, which
    /// goes back to the kernel when the filter is dropped (the registry
    /// drops it when the `dlopen` that built it ends; see
    /// `Registry::drop_one_off_filter`); others are on the heap.
    pub(crate) fn build<'a>(
        tables: impl Iterator<Item = &'a SymbolTable>,
        symbols: usize,
        density: Density,
        one_off: bool,
    ) -> ScopeFilter {
        let len = symbols.div_ceil(density.symbols_per_word()).max(1);
        let (words, storage) = match one_off.then(|| crate::map::AnonWords::new(len)).flatten() {
            Some(mut mapped) => (mapped.as_mut_slice().as_mut_ptr(), Storage::Mapped(mapped)),
            None => (
                Box::into_raw(vec![0u64; len].into_boxed_slice()).cast::<u64>(),
                Storage::Heap,
            ),
        };
        let filter = ScopeFilter {
            words,
            len,
            storage,
            density,
            symbols,
        };
        // SAFETY: `len` zeroed words, which only this filter refers to.
        let words = unsafe { std::slice::from_raw_parts_mut(filter.words, len) };
        for t in tables {
            t.for_each_gnu_hash(|h| {
                let (word, bits) = probe(len, h);
                words[word] |= bits;
            });
        }
        filter
    }

    /// False when no object of the scope can define a name with GNU hash
    /// `h`.
    #[inline(always)]
    pub(crate) fn may_contain(&self, h: u32) -> bool {
        let (word, bits) = probe(self.len, h);
        // SAFETY: `probe` gives a word below `len`, and `words` points to
        // `len` words owned by `storage`.
        let w = unsafe { *self.words.add(word) };
        w & bits == bits
    }

    /// Is it in a mapping of its own, to be dropped when the `dlopen` that
    /// built it ends?
    pub(crate) fn is_one_off(&self) -> bool {
        matches!(self.storage, Storage::Mapped(_))
    }

    /// The filter's size in bytes.
    pub(crate) fn bytes(&self) -> usize {
        self.len * 8
    }

    pub(crate) fn density(&self) -> Density {
        self.density
    }

    /// How many symbols it was built from.
    pub(crate) fn symbols(&self) -> usize {
        self.symbols
    }
}

/// The word (of `len`, which is not 0) and the two bits that stand for GNU
/// hash `h`.
#[inline(always)]
fn probe(len: usize, h: u32) -> (usize, u64) {
    // Bit 0 is not part of a chain's stored hash.
    let g = h >> 1;
    // The word from a multiplicative mix of all bits, reduced to the word
    // count without a division (below `len`: the product of a 32-bit
    // fraction and `len`, shifted down 32); the bits from the low twelve.
    let mixed = g.wrapping_mul(0x9e37_79b1);
    let word = ((mixed as u64 * len as u64) >> 32) as usize;
    (word, (1u64 << (g & 63)) | (1u64 << ((g >> 6) & 63)))
}

/// Does a relocation pass of about `lookups` lookups through a global scope
/// of `objects` objects with `symbols` hashed symbols pay for building the
/// filter? Inserting a symbol costs about as much as a quarter of one
/// object's Bloom check in a lookup (callgrind: ~7 against ~30
/// instructions), so: when the checks it can save outnumber a quarter of
/// the symbols.
pub(crate) fn worth_building(lookups: usize, objects: usize, symbols: usize) -> bool {
    objects > 1 && lookups.saturating_mul(objects).saturating_mul(4) >= symbols
}

/// Has a process made enough lookups through a coarse filter over
/// `symbols` symbols, `lookups` in all, to have it rebuilt fine? When they
/// number eight times the symbols. In time the fine filter pays back far
/// sooner: it saves about 23 instructions a lookup (the global objects'
/// Bloom checks for the names the coarse one lets through falsely, 15 in
/// 100 against 5), and rebuilding costs about 7 a symbol. The line is set
/// well past that for the memory, half a byte more a symbol (1.6 KB for a
/// scope of libc, libgcc_s and ld.so), once per process: it goes only to
/// processes that keep loading. One load stays coarse even when big:
/// libz3 with libstdc++, about 7,300 lookups, or libLLVM-15, 19,800,
/// against 25,900 for that scope; the relocation benchmark's cycles,
/// 2,000 lookups each, cross it on their thirteenth.
pub(crate) fn worth_refining(lookups: u64, symbols: usize) -> bool {
    lookups >= 8 * symbols as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::hash::gnu_hash;
    use crate::elf::SymExt;

    /// Over the tables of real libraries (GNU and, rebuilt by `ld`, SysV
    /// hash tables): every name a lookup can find passes, and most other
    /// names do not.
    #[test]
    fn passes_every_defined_name_and_rejects_most_others() {
        let paths = [
            "/lib/x86_64-linux-gnu/libc.so.6",
            "/lib/x86_64-linux-gnu/libstdc++.so.6",
            "/lib/x86_64-linux-gnu/libz.so.1",
        ];
        let files: Vec<Vec<u8>> = paths.iter().map(|p| std::fs::read(p).unwrap()).collect();
        let loaded: Vec<_> = files
            .iter()
            .map(|data| crate::fuzzing::tables(data).unwrap())
            .collect();
        let tables: Vec<SymbolTable> = loaded
            .iter()
            .map(|(l, d)| SymbolTable::parse(&l.image, d).unwrap())
            .collect();
        let symbols = tables.iter().map(|t| t.hashed_count() as usize).sum();
        let others = 20_000;
        let mut passed = [0; 2];
        for (density, passed) in [Density::Coarse, Density::Fine]
            .into_iter()
            .zip(&mut passed)
        {
            // The same filter on the heap and in a mapping of its own.
            let mut counts = Vec::new();
            for one_off in [false, true] {
                let filter = ScopeFilter::build(tables.iter(), symbols, density, one_off);
                assert_eq!((filter.density(), filter.symbols()), (density, symbols));
                assert_eq!(filter.is_one_off(), one_off);
                let mut names = 0;
                for t in &tables {
                    for (_, sym) in t.iter().filter(|(_, s)| !s.is_undefined()) {
                        let name = t.name(sym);
                        assert!(filter.may_contain(gnu_hash(name)), "{name:?} rejected");
                        names += 1;
                    }
                }
                assert!(names > 6_000, "only {names} names");
                counts.push(
                    (0..others)
                        .filter(|i| {
                            filter.may_contain(gnu_hash(format!("no_such_name_{i}").as_bytes()))
                        })
                        .count(),
                );
            }
            assert_eq!(counts[0], counts[1], "{density:?}");
            *passed = counts[0];
        }
        // Four bits a symbol, two set: about 15% of other names pass; eight
        // bits, about 5%, in twice the bytes.
        let [coarse, fine] = passed;
        assert!(
            coarse < others / 4 && fine < others / 14,
            "{coarse} and {fine} of {others} unknown names pass"
        );
    }

    #[test]
    fn sysv_tables_are_hashed_by_name() {
        let dir = std::env::temp_dir().join(format!("scope-filter-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (src, lib) = (dir.join("s.c"), dir.join("libs.so"));
        std::fs::write(&src, "int sysv_one(void) { return 1; }\nint sysv_two;\n").unwrap();
        let ok = std::process::Command::new("gcc")
            .args(["-shared", "-fPIC", "-Wl,--hash-style=sysv", "-o"])
            .arg(&lib)
            .arg(&src)
            .status()
            .unwrap()
            .success();
        assert!(ok, "gcc failed");
        let data = std::fs::read(&lib).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let (l, d) = crate::fuzzing::tables(&data).unwrap();
        assert!(d.gnu_hash().is_none() && d.hash().is_some());
        let t = SymbolTable::parse(&l.image, &d).unwrap();
        let filter = ScopeFilter::build(
            std::iter::once(&t),
            t.hashed_count() as usize,
            Density::Coarse,
            false,
        );
        assert!(filter.may_contain(gnu_hash(b"sysv_one")));
        assert!(filter.may_contain(gnu_hash(b"sysv_two")));
    }

    #[test]
    fn worth_building_only_when_lookups_pay_for_it() {
        // The fixture of the relocation benchmark: 4,000 lookups, four
        // objects, 3,235 symbols.
        assert!(worth_building(4_000, 4, 3_235));
        // A tiny plugin with three imports.
        assert!(!worth_building(3, 4, 3_235));
        // One object: nothing to skip.
        assert!(!worth_building(100_000, 1, 10));
    }

    #[test]
    fn refined_after_eight_lookups_a_symbol() {
        // libz3 with libstdc++; libLLVM-15; the line for the relocation
        // benchmark's scope.
        assert!(!worth_refining(7_317, 3_235));
        assert!(!worth_refining(19_766, 3_235));
        assert!(!worth_refining(25_879, 3_235));
        assert!(worth_refining(25_880, 3_235));
    }
}
