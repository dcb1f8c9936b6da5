//! The hardware-capability subdirectories glibc 2.36 searches inside every
//! search directory: `glibc-hwcaps/x86-64-v{4,3,2}` first, then the legacy
//! power set of {tls, platform, avx512_1, x86_64} (removed in glibc 2.37,
//! still searched by Debian 12's 2.36), computed from CPUID as glibc does.

use std::arch::x86_64::{__cpuid, __cpuid_count};

use crate::host::{self, cpuid_index};

/// The subdirectories to try, most preferred first, and `$PLATFORM`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hwcaps {
    /// e.g. "glibc-hwcaps/x86-64-v3/", then legacy ones like "tls/haswell/";
    /// the empty string (the directory itself) comes last.
    pub subdirs: Vec<String>,
    /// Names of the active glibc-hwcaps levels, best first ("x86-64-v4"...).
    pub glibc_hwcaps: Vec<&'static str>,
    /// What `$PLATFORM` expands to.
    pub platform: String,
    /// HWCAP bits glibc sets on x86_64 (bit 1 x86_64, bit 2 avx512_1),
    /// for ld.so.cache entries.
    pub hwcap: u64,
}

/// The features the decisions below look at: the CPUID registers that
/// hold them, with only the usable ones set (present, and their register
/// state enabled by the OS), as glibc's `CPU_FEATURE_USABLE_P` sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cpu {
    intel: bool,
    leaf1_ecx: u32,
    leaf7_ebx: u32,
    ext1_ecx: u32,
}

// Bits of leaf 1 ECX.
const SSE3: u32 = 1 << 0;
const SSSE3: u32 = 1 << 9;
const FMA: u32 = 1 << 12;
const CX16: u32 = 1 << 13;
const SSE4_1: u32 = 1 << 19;
const SSE4_2: u32 = 1 << 20;
const MOVBE: u32 = 1 << 22;
const POPCNT: u32 = 1 << 23;
const OSXSAVE: u32 = 1 << 27;
const AVX: u32 = 1 << 28;
const F16C: u32 = 1 << 29;
// Bits of leaf 7 EBX.
const BMI1: u32 = 1 << 3;
const AVX2: u32 = 1 << 5;
const BMI2: u32 = 1 << 8;
const AVX512F: u32 = 1 << 16;
const AVX512DQ: u32 = 1 << 17;
const AVX512PF: u32 = 1 << 26;
const AVX512ER: u32 = 1 << 27;
const AVX512CD: u32 = 1 << 28;
const AVX512BW: u32 = 1 << 30;
const AVX512VL: u32 = 1 << 31;
// Bits of leaf 0x80000001 ECX.
const LAHF: u32 = 1 << 0;
const LZCNT: u32 = 1 << 5;

impl Cpu {
    /// glibc's view where glibc has one; only the vendor, which it does
    /// not publish, costs a CPUID.
    fn read() -> Cpu {
        let intel = vendor_is_intel();
        let glibc = |index| host::glibc_cpuid(index).map(|leaf| leaf.active);
        match (
            glibc(cpuid_index::LEAF_1),
            glibc(cpuid_index::LEAF_7),
            glibc(cpuid_index::LEAF_80000001),
        ) {
            (Some(leaf1), Some(leaf7), Some(ext1)) => Cpu {
                intel,
                leaf1_ecx: leaf1[2],
                leaf7_ebx: leaf7[1],
                ext1_ecx: ext1[2],
            },
            _ => Cpu::from_cpuid(intel),
        }
    }

    /// The same from CPUID itself (a glibc older than 2.33): the AVX and
    /// AVX-512 features count only where the OS saves their registers
    /// (XCR0), as glibc counts them.
    fn from_cpuid(intel: bool) -> Cpu {
        // CPUID exists on every x86_64 processor; leaves above the maximum
        // return zeros, which read as "feature absent".
        let max = __cpuid(0).eax;
        let mut leaf1_ecx = __cpuid(1).ecx;
        let mut leaf7_ebx = if max >= 7 { __cpuid_count(7, 0).ebx } else { 0 };
        let ext_max = __cpuid(0x8000_0000).eax;
        let ext1_ecx = if ext_max >= 0x8000_0001 {
            __cpuid(0x8000_0001).ecx
        } else {
            0
        };
        let xcr0 = if leaf1_ecx & OSXSAVE != 0 {
            // SAFETY: OSXSAVE is set, so XGETBV is enabled.
            unsafe { std::arch::x86_64::_xgetbv(0) }
        } else {
            0
        };
        // SSE and AVX state; then opmask, upper ZMM and high ZMM state.
        if xcr0 & 0b110 != 0b110 {
            leaf1_ecx &= !(AVX | FMA | F16C);
            leaf7_ebx &= !AVX2;
        }
        if xcr0 & 0b1110_0110 != 0b1110_0110 {
            leaf7_ebx &=
                !(AVX512F | AVX512DQ | AVX512PF | AVX512ER | AVX512CD | AVX512BW | AVX512VL);
        }
        Cpu {
            intel,
            leaf1_ecx,
            leaf7_ebx,
            ext1_ecx,
        }
    }
}

fn vendor_is_intel() -> bool {
    let l0 = __cpuid(0);
    let mut vendor = [0u8; 12];
    vendor[..4].copy_from_slice(&l0.ebx.to_le_bytes());
    vendor[4..8].copy_from_slice(&l0.edx.to_le_bytes());
    vendor[8..].copy_from_slice(&l0.ecx.to_le_bytes());
    &vendor == b"GenuineIntel"
}

/// Are all of `bits` set in `reg`?
fn all(reg: u32, bits: u32) -> bool {
    reg & bits == bits
}

impl Hwcaps {
    pub(crate) fn detect() -> Hwcaps {
        Hwcaps::of(Cpu::read())
    }

    fn of(cpu: Cpu) -> Hwcaps {
        let (l1, l7, e1) = (cpu.leaf1_ecx, cpu.leaf7_ebx, cpu.ext1_ecx);
        // glibc's get_isa_level (sysdeps/x86/get-isa-level.h).
        let v2 = all(l1, CX16 | POPCNT | SSE3 | SSSE3 | SSE4_1 | SSE4_2) && all(e1, LAHF);
        let v3 = v2 && all(l1, AVX | F16C | FMA | MOVBE) && all(l7, AVX2) && all(e1, LZCNT);
        let v4 = v3 && all(l7, AVX512F | AVX512BW | AVX512CD | AVX512DQ | AVX512VL);
        let mut glibc_hwcaps = Vec::new();
        if v4 {
            glibc_hwcaps.push("x86-64-v4");
        }
        if v3 {
            glibc_hwcaps.push("x86-64-v3");
        }
        if v2 {
            glibc_hwcaps.push("x86-64-v2");
        }
        // glibc's init_cpu_features: platform and HWCAP_X86_AVX512_1 are
        // only set on Intel processors.
        let mut hwcap: u64 = 1 << 1; // HWCAP_X86_64
        let mut platform: Option<&str> = None;
        if cpu.intel {
            if all(l7, AVX512CD) {
                if all(l7, AVX512ER) {
                    if all(l7, AVX512PF) {
                        platform = Some("xeon_phi");
                    }
                } else if all(l7, AVX512BW | AVX512DQ | AVX512VL) {
                    hwcap |= 1 << 2; // HWCAP_X86_AVX512_1
                }
            }
            if platform.is_none()
                && all(l7, AVX2 | BMI1 | BMI2)
                && all(l1, FMA | MOVBE | POPCNT)
                && all(e1, LZCNT)
            {
                platform = Some("haswell");
            }
        }
        let platform = platform
            .map(str::to_string)
            .or_else(crate::process::at_platform)
            .unwrap_or_else(|| "x86_64".into());
        let mut subdirs: Vec<String> = glibc_hwcaps
            .iter()
            .map(|n| format!("glibc-hwcaps/{n}/"))
            .collect();
        for s in legacy_subdirs(&platform, hwcap) {
            // On AMD the platform and the hwcap are both "x86_64"; trying
            // the same directory twice would only repeat a failed open.
            if !subdirs.contains(&s) {
                subdirs.push(s);
            }
        }
        Hwcaps {
            subdirs,
            glibc_hwcaps,
            platform,
            hwcap,
        }
    }
}

/// glibc 2.36's power-set construction (`_dl_important_hwcaps`): components
/// ordered [tls, platform, hwcap names from the highest bit down], and every
/// subset in descending binary order, the empty one (the directory itself)
/// last.
fn legacy_subdirs(platform: &str, hwcap: u64) -> Vec<String> {
    let mut parts: Vec<&str> = vec!["tls", platform];
    if hwcap & (1 << 2) != 0 {
        parts.push("avx512_1");
    }
    if hwcap & (1 << 1) != 0 {
        parts.push("x86_64");
    }
    let n = parts.len();
    (0..(1u32 << n))
        .rev()
        .map(|mask| {
            let mut s = String::new();
            for (i, p) in parts.iter().enumerate() {
                if mask & (1 << (n - 1 - i)) != 0 {
                    s.push_str(p);
                    s.push('/');
                }
            }
            s
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_order_matches_glibc_236() {
        // The order LD_DEBUG=libs prints on an AVX-512 Intel machine.
        let got = legacy_subdirs("haswell", 0b110);
        let want = [
            "tls/haswell/avx512_1/x86_64/",
            "tls/haswell/avx512_1/",
            "tls/haswell/x86_64/",
            "tls/haswell/",
            "tls/avx512_1/x86_64/",
            "tls/avx512_1/",
            "tls/x86_64/",
            "tls/",
            "haswell/avx512_1/x86_64/",
            "haswell/avx512_1/",
            "haswell/x86_64/",
            "haswell/",
            "avx512_1/x86_64/",
            "avx512_1/",
            "x86_64/",
            "",
        ];
        assert_eq!(got, want);
        // And on an AMD machine (platform from AT_PLATFORM).
        let got = legacy_subdirs("x86_64", 0b10);
        assert_eq!(
            &got[..4],
            ["tls/x86_64/x86_64/", "tls/x86_64/", "tls/x86_64/", "tls/"]
        );
    }

    /// glibc's copy of the CPUID leaves and CPUID itself (with XCR0) give
    /// the same answer on this machine.
    #[test]
    fn glibcs_view_and_cpuid_agree() {
        let intel = vendor_is_intel();
        assert!(
            host::glibc_cpuid(cpuid_index::LEAF_1).is_some(),
            "glibc 2.33 or later"
        );
        // (glibc's usable bits leave out features it has no use for, such
        // as the hypervisor bit: only those decided on are compared.)
        let used = |c: Cpu| {
            let l1 = SSE3 | SSSE3 | FMA | CX16 | SSE4_1 | SSE4_2 | MOVBE | POPCNT | AVX | F16C;
            let l7 = BMI1 | AVX2 | BMI2 | AVX512F | AVX512DQ | AVX512PF | AVX512ER;
            let l7 = l7 | AVX512CD | AVX512BW | AVX512VL;
            (
                c.intel,
                c.leaf1_ecx & l1,
                c.leaf7_ebx & l7,
                c.ext1_ecx & (LAHF | LZCNT),
            )
        };
        assert_eq!(used(Cpu::read()), used(Cpu::from_cpuid(intel)));
        assert_eq!(Hwcaps::of(Cpu::read()), Hwcaps::of(Cpu::from_cpuid(intel)));
    }

    /// The subdirectories are the ones glibc's own search tries, in its
    /// order, each once: on AMD processors glibc tries `tls/x86_64/` and
    /// `x86_64/` twice (see `testkit::glibc_hwcaps_subdirs`).
    #[test]
    fn subdirectories_are_glibcs() {
        assert_eq!(Hwcaps::detect().subdirs, testkit::glibc_hwcaps_subdirs());
    }

    #[test]
    fn detection_is_consistent() {
        let h = Hwcaps::detect();
        assert_eq!(h.subdirs.last().map(String::as_str), Some(""));
        assert!(h
            .subdirs
            .iter()
            .take(h.glibc_hwcaps.len())
            .all(|s| s.starts_with("glibc-hwcaps/")));
    }
}
