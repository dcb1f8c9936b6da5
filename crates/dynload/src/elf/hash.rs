//! The two ELF symbol hash functions.

/// The GNU hash (`dl_new_hash`): djb2 over the name bytes, `h = h * 33 + c`.
///
/// Four bytes per step: the bytes' terms do not depend on `h`, so the
/// chain each step waits on is one multiply and one add instead of four
/// (glibc 2.36 takes two bytes per step). Every lookup starts here.
#[inline(always)]
pub(crate) fn gnu_hash(name: &[u8]) -> u32 {
    const P1: u32 = 33;
    const P2: u32 = P1 * 33;
    const P3: u32 = P2 * 33;
    const P4: u32 = P3 * 33;
    let mut h: u32 = 5381;
    let mut quads = name.chunks_exact(4);
    for q in &mut quads {
        let terms = (q[0] as u32)
            .wrapping_mul(P3)
            .wrapping_add((q[1] as u32).wrapping_mul(P2))
            .wrapping_add((q[2] as u32).wrapping_mul(P1))
            .wrapping_add(q[3] as u32);
        h = h.wrapping_mul(P4).wrapping_add(terms);
    }
    for &c in quads.remainder() {
        h = h.wrapping_mul(P1).wrapping_add(c as u32);
    }
    h
}

/// A hash table's bucket count, with what `h % count` takes without a
/// division (Lemire, Kaser and Kurz, "Faster remainder by direct
/// computation", 2019): two multiplications instead of a 32-bit `div`,
/// which was the largest single cost of a `dlsym` hit on this machine.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Buckets {
    count: u32,
    /// ceil(2^64 / count); 0 for a count of 1 (every remainder is 0).
    magic: u64,
}

impl Buckets {
    /// `count` must not be 0.
    pub(crate) fn new(count: u32) -> Buckets {
        assert!(count > 0, "a hash table without buckets");
        Buckets {
            count,
            magic: (u64::MAX / count as u64).wrapping_add(1),
        }
    }

    pub(crate) fn count(self) -> u32 {
        self.count
    }

    /// `h % count`.
    #[inline]
    pub(crate) fn of(self, h: u32) -> u32 {
        let fraction = self.magic.wrapping_mul(h as u64);
        ((fraction as u128 * self.count as u128) >> 64) as u32
    }
}

/// The System V ELF hash (`_dl_elf_hash`), also used for version names.
#[inline]
pub(crate) fn elf_hash(name: &[u8]) -> u32 {
    let mut h: u32 = 0;
    for &c in name {
        h = (h << 4).wrapping_add(c as u32);
        let g = h & 0xf000_0000;
        if g != 0 {
            h ^= g >> 24;
        }
        h &= !g;
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // Values from the ELF gABI and the GNU hash description.
        assert_eq!(gnu_hash(b""), 0x0000_1505);
        assert_eq!(gnu_hash(b"printf"), 0x156b_2bb8);
        assert_eq!(gnu_hash(b"exit"), 0x7c96_7e3f);
        assert_eq!(elf_hash(b""), 0);
        assert_eq!(elf_hash(b"printf"), 0x0779_05a6);
        assert_eq!(elf_hash(b"exit"), 0x0006_cf04);
        // glibc's own check in dl-version.c.
        assert_eq!(elf_hash(b"GLIBC_ABI_DT_RELR"), 0x00fd_0e42);
    }

    #[test]
    fn bucket_of_is_the_remainder() {
        let mut counts = vec![
            1u32,
            2,
            3,
            7,
            64,
            1021,
            4099,
            65_537,
            u32::MAX - 1,
            u32::MAX,
        ];
        counts.extend((1..2_000).map(|i| i * 7919));
        let mut x = 0x9e37_79b9u32;
        for count in counts {
            let b = Buckets::new(count);
            for h in [
                0,
                1,
                count - 1,
                count,
                count.wrapping_add(1),
                u32::MAX,
                u32::MAX - 1,
            ] {
                assert_eq!(b.of(h), h % count, "{h} % {count}");
            }
            for _ in 0..200 {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                assert_eq!(b.of(x), x % count, "{x} % {count}");
            }
        }
    }

    #[test]
    fn four_bytes_per_step_is_the_byte_by_byte_hash() {
        let bytewise = |name: &[u8]| {
            name.iter()
                .fold(5381u32, |h, &c| h.wrapping_mul(33).wrapping_add(c as u32))
        };
        let text: Vec<u8> = (0..64u32).map(|i| (i * 37 + 200) as u8).collect();
        for len in 0..text.len() {
            assert_eq!(gnu_hash(&text[..len]), bytewise(&text[..len]), "{len}");
        }
    }
}
