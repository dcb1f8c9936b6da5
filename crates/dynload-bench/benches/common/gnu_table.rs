//! A GNU hash table read in place, with no checks, as the bench's floors
//! (`lazy_floor.rs`, `open_close_floor.rs`) look symbols up: the least a
//! lookup takes, for replays of a loader's cycle.

#[repr(C)]
pub struct Sym {
    pub name: u32,
    pub info: u8,
    pub other: u8,
    pub shndx: u16,
    pub value: u64,
    pub size: u64,
}

#[repr(C)]
pub struct Rela {
    pub offset: u64,
    pub info: u64,
    pub addend: i64,
}

/// A GNU hash table with the symbol and string tables it indexes.
#[derive(Clone, Copy)]
pub struct Gnu {
    nbuckets: u32,
    /// `u64::MAX / nbuckets + 1`: the remainder by two multiplications
    /// (Lemire, Kaser and Kurz), as dynload takes it.
    fraction: u64,
    symoffset: u32,
    bloom: *const u64,
    bloom_mask: u32,
    shift: u32,
    buckets: *const u32,
    chain: *const u32,
    syms: *const Sym,
    strings: *const u8,
}

impl Gnu {
    /// The table at `hash`, indexing `syms` and `strings`.
    ///
    /// # Safety
    /// The three point to a well-formed GNU hash table and its object's
    /// tables, mapped while the result is used.
    pub unsafe fn at(hash: *const u8, syms: *const u8, strings: *const u8) -> Gnu {
        // SAFETY: the caller's table: its four header words, then the
        // filter, the buckets and the chain.
        unsafe {
            let words = hash.cast::<u32>();
            let (nbuckets, symoffset, bloom_size, shift) =
                (*words, *words.add(1), *words.add(2), *words.add(3));
            let bloom = words.add(4).cast::<u64>();
            let buckets = bloom.add(bloom_size as usize).cast::<u32>();
            Gnu {
                nbuckets,
                fraction: (u64::MAX / u64::from(nbuckets)).wrapping_add(1),
                symoffset,
                bloom,
                bloom_mask: bloom_size - 1,
                shift,
                buckets,
                chain: buckets.add(nbuckets as usize),
                syms: syms.cast(),
                strings,
            }
        }
    }

    /// The symbol named `name` (hash `h`), if the table defines it.
    ///
    /// # Safety
    /// As for [`Gnu::at`]; `name` is NUL-terminated.
    #[inline(always)]
    pub unsafe fn find(&self, name: *const u8, h: u32) -> Option<&Sym> {
        // SAFETY: indices from the table itself, as the caller promises it
        // is well formed.
        unsafe {
            let word = *self.bloom.add(((h / 64) & self.bloom_mask) as usize);
            if (word >> (h % 64)) & (word >> ((h >> self.shift) % 64)) & 1 == 0 {
                return None;
            }
            let bucket = ((u128::from(self.fraction.wrapping_mul(u64::from(h)))
                * u128::from(self.nbuckets))
                >> 64) as usize;
            let mut i = *self.buckets.add(bucket);
            if i == 0 {
                return None;
            }
            loop {
                let c = *self.chain.add((i - self.symoffset) as usize);
                if (c ^ h) >> 1 == 0 {
                    let sym = &*self.syms.add(i as usize);
                    if libc::strcmp(self.strings.add(sym.name as usize).cast(), name.cast()) == 0 {
                        return Some(sym);
                    }
                }
                if c & 1 != 0 {
                    return None;
                }
                i += 1;
            }
        }
    }
}

/// The GNU hash of the NUL-terminated name at `name`.
///
/// # Safety
/// `name` is NUL-terminated.
#[inline(always)]
pub unsafe fn gnu_hash(mut name: *const u8) -> u32 {
    let mut h: u32 = 5381;
    // SAFETY: up to the caller's NUL.
    unsafe {
        while *name != 0 {
            h = h.wrapping_mul(33).wrapping_add(u32::from(*name));
            name = name.add(1);
        }
    }
    h
}
