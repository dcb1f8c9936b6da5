//! The hardware-capability subdirectories glibc 2.36 searches inside every
//! search directory: `glibc-hwcaps/x86-64-v{4,3,2}` first, then the legacy
//! power set of {tls, platform, avx512_1, x86_64} (removed in glibc 2.37,
//! still searched by Debian 12's 2.36), computed from CPUID as glibc does.

use std::arch::x86_64::{__cpuid, __cpuid_count};

/// The subdirectories to try, most preferred first, and `$PLATFORM`.
#[derive(Debug, Clone)]
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

struct Cpu {
    intel: bool,
    leaf1_ecx: u32,
    leaf7_ebx: u32,
    ext1_ecx: u32,
}

impl Cpu {
    fn read() -> Cpu {
        // CPUID exists on every x86_64 processor; leaves above the maximum
        // return zeros, which read as "feature absent".
        {
            let l0 = __cpuid(0);
            let mut vendor = [0u8; 12];
            vendor[..4].copy_from_slice(&l0.ebx.to_le_bytes());
            vendor[4..8].copy_from_slice(&l0.edx.to_le_bytes());
            vendor[8..].copy_from_slice(&l0.ecx.to_le_bytes());
            let leaf1_ecx = __cpuid(1).ecx;
            let leaf7_ebx = if l0.eax >= 7 {
                __cpuid_count(7, 0).ebx
            } else {
                0
            };
            let ext_max = __cpuid(0x8000_0000).eax;
            let ext1_ecx = if ext_max >= 0x8000_0001 {
                __cpuid(0x8000_0001).ecx
            } else {
                0
            };
            Cpu {
                intel: &vendor == b"GenuineIntel",
                leaf1_ecx,
                leaf7_ebx,
                ext1_ecx,
            }
        }
    }
}

macro_rules! has {
    ($($f:tt),+) => { true $(&& std::arch::is_x86_feature_detected!($f))+ };
}

impl Hwcaps {
    pub(crate) fn detect() -> Hwcaps {
        let cpu = Cpu::read();
        let lahf = cpu.ext1_ecx & 1 != 0;
        let cx16 = cpu.leaf1_ecx & (1 << 13) != 0;
        // glibc's get_isa_level (sysdeps/x86/get-isa-level.h).
        let v2 = cx16 && lahf && has!("popcnt", "sse3", "ssse3", "sse4.1", "sse4.2");
        let v3 = v2 && has!("avx", "avx2", "f16c", "fma", "lzcnt", "movbe");
        let v4 = v3 && has!("avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl");
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
        let avx512er = cpu.leaf7_ebx & (1 << 27) != 0;
        let avx512pf = cpu.leaf7_ebx & (1 << 26) != 0;
        let mut hwcap: u64 = 1 << 1; // HWCAP_X86_64
        let mut platform: Option<&str> = None;
        if cpu.intel {
            if has!("avx512cd") {
                if avx512er {
                    if avx512pf {
                        platform = Some("xeon_phi");
                    }
                } else if has!("avx512bw", "avx512dq", "avx512vl") {
                    hwcap |= 1 << 2; // HWCAP_X86_AVX512_1
                }
            }
            if platform.is_none() && has!("avx2", "fma", "bmi1", "bmi2", "lzcnt", "movbe", "popcnt")
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
