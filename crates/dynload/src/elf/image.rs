//! An object as it lies in memory: the address ranges of its readable
//! PT_LOAD segments, and reads that are checked against them.

use super::{elf, Phdr, LE};

/// The readable memory of one loaded object.
///
/// Every read goes through [`Image::bytes`], which refuses ranges that do
/// not lie entirely inside one readable segment. This is what keeps a
/// hostile dynamic section from making the loader read unmapped memory.
#[derive(Debug, Clone)]
pub(crate) struct Image {
    /// The load bias (`l_addr`): file virtual address + base = address.
    pub base: usize,
    /// Absolute [start, end) of each readable segment, sorted by start,
    /// then of each writable one. (One allocation for both: every object
    /// keeps its image for its lifetime.)
    ranges: Box<[(usize, usize)]>,
    /// How many of `ranges` are the readable segments.
    readable: u32,
}

impl Image {
    /// Describe an object loaded at `base` with these program headers.
    ///
    /// # Safety
    /// Every PT_LOAD segment with PF_R must be mapped readable at
    /// `base + p_vaddr` for `p_memsz` bytes for as long as the returned
    /// `Image` (or anything borrowed from it) is used.
    pub(crate) unsafe fn new(base: usize, phdrs: &[Phdr]) -> Image {
        let range = |ph: &Phdr| {
            let start = base.wrapping_add(ph.p_vaddr.get(LE) as usize);
            let end = start.checked_add(ph.p_memsz.get(LE) as usize)?;
            Some(((start, end), ph.p_flags.get(LE)))
        };
        let segments = || {
            phdrs
                .iter()
                .filter(|p| p.p_type.get(LE) == elf::PT_LOAD)
                .filter_map(range)
        };
        // Counted first, so that the ranges take one allocation of the
        // size they keep (this runs for every object loaded).
        let (mut count, mut total) = (0, 0);
        for (_, flags) in segments() {
            count += usize::from(flags & elf::PF_R != 0);
            total += usize::from(flags & elf::PF_R != 0) + usize::from(flags & elf::PF_W != 0);
        }
        let mut ranges = Vec::with_capacity(total);
        ranges.extend(
            segments()
                .filter(|(_, f)| f & elf::PF_R != 0)
                .map(|(r, _)| r),
        );
        ranges.sort_unstable();
        ranges.extend(
            segments()
                .filter(|(_, f)| f & elf::PF_W != 0)
                .map(|(r, _)| r),
        );
        Image {
            base,
            ranges: ranges.into_boxed_slice(),
            // (At most one per program header, and there are fewer than
            // 65,536 of those.)
            readable: count as u32,
        }
    }

    fn with(base: usize, mut readable: Vec<(usize, usize)>, writable: &[(usize, usize)]) -> Image {
        let count = readable.len();
        readable.extend_from_slice(writable);
        Image {
            base,
            ranges: readable.into_boxed_slice(),
            readable: count as u32,
        }
    }

    fn readable(&self) -> &[(usize, usize)] {
        &self.ranges[..self.readable as usize]
    }

    fn writable(&self) -> &[(usize, usize)] {
        &self.ranges[self.readable as usize..]
    }

    /// Does `[addr, addr+len)` lie inside one readable segment?
    pub(crate) fn contains(&self, addr: usize, len: usize) -> bool {
        let Some(end) = addr.checked_add(len) else {
            return false;
        };
        self.readable().iter().any(|&(s, e)| s <= addr && end <= e)
    }

    /// The end of the readable segment that holds `addr`.
    pub(crate) fn segment_end(&self, addr: usize) -> Option<usize> {
        self.readable()
            .iter()
            .find(|&&(s, e)| s <= addr && addr < e)
            .map(|&(_, e)| e)
    }

    /// Is `[addr, addr+len)` writable memory of this object (a data or
    /// RELRO segment), as a relocation target must be?
    pub(crate) fn is_writable(&self, addr: usize, len: usize) -> bool {
        self.writable_segment(addr, len).is_some()
    }

    /// The writable segment (start, end) holding `addr..addr + len`.
    pub(crate) fn writable_segment(&self, addr: usize, len: usize) -> Option<(usize, usize)> {
        let end = addr.checked_add(len)?;
        self.writable()
            .iter()
            .copied()
            .find(|&(s, e)| s <= addr && end <= e)
    }

    /// The readable segments that are not writable, as [start, end).
    pub(crate) fn read_only_segments(&self) -> Vec<(usize, usize)> {
        self.readable()
            .iter()
            .copied()
            .filter(|&(s, e)| !self.writable().iter().any(|&(ws, we)| ws <= s && e <= we))
            .collect()
    }

    /// Count `range` as writable (text relocations, while the range is
    /// made writable) or, with `writable` false, no longer.
    pub(crate) fn set_writable(&mut self, range: (usize, usize), writable: bool) {
        let mut now: Vec<_> = self.writable().to_vec();
        if writable {
            now.push(range);
        } else {
            now.retain(|&r| r != range);
        }
        *self = Image::with(self.base, self.readable().to_vec(), &now);
    }

    /// The absolute address of file virtual address `vaddr`.
    pub(crate) fn addr(&self, vaddr: u64) -> usize {
        self.base.wrapping_add(vaddr as usize)
    }

    /// `len` bytes at absolute address `addr`, if they are all mapped.
    pub(crate) fn bytes(&self, addr: usize, len: usize) -> Option<&[u8]> {
        if len == 0 {
            return Some(&[]);
        }
        if !self.contains(addr, len) {
            return None;
        }
        // SAFETY: the range lies inside a readable segment, which the
        // contract of `Image::new` keeps mapped while `self` is borrowed.
        Some(unsafe { std::slice::from_raw_parts(addr as *const u8, len) })
    }

    /// `count` values of `T` at absolute address `addr`.
    pub(crate) fn slice<T: object::Pod>(&self, addr: usize, count: usize) -> Option<&[T]> {
        // An empty table (a GNU hash table without chains) is valid
        // wherever it is; the empty byte slice `bytes` gives for it would
        // fail `T`'s alignment check.
        if count == 0 {
            return Some(&[]);
        }
        let len = count.checked_mul(std::mem::size_of::<T>())?;
        let bytes = self.bytes(addr, len)?;
        object::pod::slice_from_bytes(bytes, count)
            .ok()
            .map(|(s, _)| s)
    }

    /// One `T` at absolute address `addr`.
    pub(crate) fn read<T: object::Pod>(&self, addr: usize) -> Option<&T> {
        self.slice::<T>(addr, 1).map(|s| &s[0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object::{U32, U64};

    fn phdr(p_type: u32, flags: u32, vaddr: u64, memsz: u64) -> Phdr {
        Phdr {
            p_type: U32::new(LE, p_type),
            p_flags: U32::new(LE, flags),
            p_offset: U64::new(LE, vaddr),
            p_vaddr: U64::new(LE, vaddr),
            p_paddr: U64::new(LE, vaddr),
            p_filesz: U64::new(LE, memsz),
            p_memsz: U64::new(LE, memsz),
            p_align: U64::new(LE, 0x1000),
        }
    }

    #[test]
    fn segments_are_sorted_and_told_apart_by_their_flags() {
        // Out of order, with a header that is not PT_LOAD, a segment that
        // is writable but not readable, and one whose end overflows.
        let phdrs = [
            phdr(elf::PT_LOAD, elf::PF_R | elf::PF_W, 0x3000, 0x800),
            phdr(elf::PT_DYNAMIC, elf::PF_R | elf::PF_W, 0x3100, 0x100),
            phdr(elf::PT_LOAD, elf::PF_R | elf::PF_X, 0x1000, 0x1000),
            phdr(elf::PT_LOAD, elf::PF_R, 0, 0x800),
            phdr(elf::PT_LOAD, elf::PF_W, 0x5000, 0x100),
            phdr(elf::PT_LOAD, elf::PF_R, 0x6000, u64::MAX - 0x1000),
        ];
        let base = 0x10_0000;
        // SAFETY: nothing is read through the image.
        let image = unsafe { Image::new(base, &phdrs) };
        assert_eq!(
            image.readable(),
            [
                (base, base + 0x800),
                (base + 0x1000, base + 0x2000),
                (base + 0x3000, base + 0x3800)
            ]
        );
        assert_eq!(
            image.writable(),
            [
                (base + 0x3000, base + 0x3800),
                (base + 0x5000, base + 0x5100)
            ]
        );
        assert_eq!(image.ranges.len(), 5);
        assert!(image.contains(base + 0x1800, 0x800));
        assert!(!image.contains(base + 0x1800, 0x801));
        assert!(!image.contains(base + 0x5000, 8), "not readable");
        assert_eq!(image.segment_end(base + 0x3400), Some(base + 0x3800));
        assert!(image.is_writable(base + 0x5000, 0x100));
        assert!(!image.is_writable(base + 0x1000, 8));
        assert_eq!(
            image.read_only_segments(),
            [(base, base + 0x800), (base + 0x1000, base + 0x2000)]
        );
    }
}
