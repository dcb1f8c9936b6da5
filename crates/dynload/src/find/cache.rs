//! /etc/ld.so.cache, parsed by dynload: the new format ("glibc-ld.so.cache"
//! version 1.1, with its glibc-hwcaps extension) and the old one
//! ("ld.so-1.7.0", possibly with a new-format table inside).

/// Entry flags for an x86_64 libc6 library (FLAG_ELF_LIBC6 | FLAG_X8664_LIB64).
pub(crate) const FLAGS_X86_64: i32 = 0x303;
const OLD_MAGIC: &[u8] = b"ld.so-1.7.0";
const NEW_MAGIC: &[u8] = b"glibc-ld.so.cache1.1";
const HWCAP_EXTENSION: u64 = 1 << 62;
const ISA_LEVEL_MASK: u64 = (1 << 10) - 1;
const EXTENSION_MAGIC: u32 = (-358_342_284i32) as u32;
const EXT_TAG_GLIBC_HWCAPS: u32 = 1;

/// A string of the file, as (offset, length), without its NUL.
type Span = (u32, u32);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    flags: i32,
    /// Offsets of the name and the path, from the string base.
    key: usize,
    value: usize,
    hwcap: u64,
}

/// A parsed ld.so.cache: the file, and where its entry table is. Entries
/// are read where they lie when a lookup comes to them, as glibc's
/// `search_cache` does: a search reads a dozen of them, and decoding all
/// of them first (the names measured, kept in a table) was 5% of libz3's
/// first load, which is the first to search.
#[derive(Debug)]
pub(crate) struct LdCache {
    file: CacheBytes,
    /// The entry table: its offset, its number of entries, the size of
    /// one (12 bytes in the old format, 24 with hwcaps in the new).
    table: usize,
    count: usize,
    entry_size: usize,
    /// String offsets are from here (the header of the format in use).
    strings: usize,
    /// glibc-hwcaps subdirectory names, indexed by the low 32 bits of an
    /// entry's hwcap field when it has the extension bit.
    hwcap_names: Vec<Span>,
    /// Which format the file was in.
    #[cfg_attr(not(test), allow(dead_code))]
    pub format: &'static str,
}

/// The file's bytes: mapped, as glibc maps it, or a copy (tests, fuzzing).
#[derive(Debug)]
pub(crate) enum CacheBytes {
    Mapped(crate::map::FileMap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for CacheBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            CacheBytes::Mapped(m) => m.bytes(),
            CacheBytes::Owned(v) => v,
        }
    }
}

impl From<Vec<u8>> for CacheBytes {
    fn from(v: Vec<u8>) -> CacheBytes {
        CacheBytes::Owned(v)
    }
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(off..off.checked_add(4)?)?.try_into().ok()?,
    ))
}
fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(off..off.checked_add(8)?)?.try_into().ok()?,
    ))
}
/// The NUL-terminated string at `base + off` of `file`.
fn span_at(file: &[u8], base: usize, off: usize) -> Option<Span> {
    let start = base.checked_add(off)?;
    let text = std::ffi::CStr::from_bytes_until_nul(file.get(start..)?).ok()?;
    Some((
        u32::try_from(start).ok()?,
        u32::try_from(text.count_bytes()).ok()?,
    ))
}

impl LdCache {
    /// Parse a cache file: its header and hwcaps extension. An entry whose
    /// strings lie outside the file is found to be so when a lookup reads
    /// it, and treated as glibc treats it (see [`LdCache::lookup`]).
    pub(crate) fn parse(file: impl Into<CacheBytes>) -> Result<LdCache, String> {
        let file = file.into();
        if file.starts_with(NEW_MAGIC) {
            return Self::parse_new(file, 0);
        }
        if file.starts_with(OLD_MAGIC) {
            let nlibs = u32_at(&file, 12).ok_or("truncated old-format header")? as usize;
            let entries_end = 16usize
                .checked_add(nlibs.checked_mul(12).ok_or("bad count")?)
                .ok_or("bad count")?;
            if entries_end > file.len() {
                return Err("old-format cache shorter than its entry count".into());
            }
            // A new-format table may follow, 8-aligned; glibc prefers it.
            let new_off = (entries_end + 7) & !7;
            if file
                .get(new_off..)
                .is_some_and(|t| t.starts_with(NEW_MAGIC))
            {
                return Self::parse_new(file, new_off);
            }
            return Ok(LdCache {
                file,
                table: 16,
                count: nlibs,
                entry_size: 12,
                strings: entries_end,
                hwcap_names: Vec::new(),
                format: "old (ld.so-1.7.0)",
            });
        }
        Err("not an ld.so.cache file".into())
    }

    fn parse_new(file: CacheBytes, at: usize) -> Result<LdCache, String> {
        let nlibs = u32_at(&file, at + 20).ok_or("truncated header")? as usize;
        let flags = *file.get(at + 28).ok_or("truncated header")?;
        let ext_off = u32_at(&file, at + 32).ok_or("truncated header")? as usize;
        // Endianness: 0 unknown, 2 little, 3 big; 1 means invalid.
        if flags != 0 && flags & 3 != 2 {
            return Err("ld.so.cache is not little-endian".into());
        }
        let table = at + 48;
        if (file.len().saturating_sub(table)) / 24 < nlibs {
            return Err("ld.so.cache shorter than its entry count".into());
        }
        let mut hwcap_names = Vec::new();
        if ext_off != 0 && ext_off % 4 == 0 && u32_at(&file, ext_off) == Some(EXTENSION_MAGIC) {
            let count = u32_at(&file, ext_off + 4).unwrap_or(0) as usize;
            for s in 0..count.min(64) {
                let sec = ext_off + 8 + 16 * s;
                let (Some(tag), Some(off), Some(size)) = (
                    u32_at(&file, sec),
                    u32_at(&file, sec + 8),
                    u32_at(&file, sec + 12),
                ) else {
                    break;
                };
                // A section must lie inside the file: its size is not
                // otherwise bounded, and one name is kept per offset.
                let inside = (off as usize)
                    .checked_add(size as usize)
                    .is_some_and(|end| end <= file.len());
                if tag == EXT_TAG_GLIBC_HWCAPS && size % 4 == 0 && off % 4 == 0 && inside {
                    for k in 0..(size / 4) as usize {
                        let name = u32_at(&file, off as usize + 4 * k)
                            .and_then(|n| span_at(&file, at, n as usize));
                        hwcap_names.push(name.unwrap_or((0, 0)));
                    }
                }
            }
        }
        Ok(LdCache {
            file,
            table,
            count: nlibs,
            entry_size: 24,
            strings: at,
            hwcap_names,
            format: if at == 0 {
                "new (glibc-ld.so.cache1.1)"
            } else {
                "old with new"
            },
        })
    }

    fn text(&self, (start, len): Span) -> &[u8] {
        &self.file[start as usize..start as usize + len as usize]
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// Entry `i` (below `count`, which `parse` checked the file holds).
    fn entry(&self, i: usize) -> Entry {
        let at = self.table + i * self.entry_size;
        let word = |k: usize| u32_at(&self.file, at + k).unwrap_or(0);
        Entry {
            flags: word(0) as i32,
            key: word(4) as usize,
            value: word(8) as usize,
            hwcap: if self.entry_size == 24 {
                u64_at(&self.file, at + 16).unwrap_or(0)
            } else {
                0
            },
        }
    }

    /// The string at offset `off` from the string base, if a whole one
    /// lies there (glibc's `_dl_cache_verify_ptr`).
    fn string(&self, off: usize) -> Option<&[u8]> {
        span_at(&self.file, self.strings, off).map(|span| self.text(span))
    }

    /// Does entry `i` name `name`? (None: its name is not in the file.)
    fn names(&self, i: usize, name: &[u8]) -> Option<std::cmp::Ordering> {
        Some(libcmp(name, self.string(self.entry(i).key)?))
    }

    /// glibc's `search_cache`: binary search by `_dl_cache_libcmp`, then the
    /// best usable entry among those with this name. `active` lists the
    /// glibc-hwcaps subdirectories this CPU supports, best first; `hwcap`
    /// holds the legacy capability bits. As in glibc, an entry whose name
    /// is outside the file ends the search where the binary search probes
    /// it, and ends the run of equal names where that is walked; one whose
    /// path is outside the file is skipped.
    pub(crate) fn lookup(&self, name: &[u8], active: &[&str], hwcap: u64) -> Option<&[u8]> {
        use std::cmp::Ordering::{Equal, Less};
        let (mut left, mut right) = (0isize, self.count as isize - 1);
        let hwcap_exclude = !(hwcap | (1u64 << 63));
        while left <= right {
            let middle = (left + right) / 2;
            let cmp = self.names(middle as usize, name)?;
            if cmp == Equal {
                let mut first = middle as usize;
                while first > 0 && self.names(first - 1, name) == Some(Equal) {
                    first -= 1;
                }
                let mut best: Option<(&[u8], usize)> = None;
                for i in first..self.count {
                    if i > middle as usize && self.names(i, name) != Some(Equal) {
                        break;
                    }
                    let e = self.entry(i);
                    if e.flags != FLAGS_X86_64 {
                        continue;
                    }
                    let Some(value) = self.string(e.value) else {
                        continue;
                    };
                    let named = (e.hwcap >> 32) & !ISA_LEVEL_MASK == HWCAP_EXTENSION >> 32;
                    if named {
                        let idx = (e.hwcap & 0xffff_ffff) as usize;
                        let Some(&hname) = self.hwcap_names.get(idx) else {
                            continue;
                        };
                        let hname = self.text(hname);
                        let Some(prio) = active.iter().position(|a| a.as_bytes() == hname) else {
                            continue;
                        };
                        if best.is_none_or(|(_, p)| prio < p) {
                            best = Some((value, prio));
                        }
                        continue;
                    }
                    // Named entries sort first; once past them, a match
                    // found among them wins.
                    if best.is_some() {
                        break;
                    }
                    if e.hwcap & hwcap_exclude != 0 {
                        continue;
                    }
                    return Some(value);
                }
                return best.map(|(v, _)| v);
            }
            // The table is sorted in descending order.
            if cmp == Less {
                left = middle + 1;
            } else {
                right = middle - 1;
            }
        }
        None
    }
}

/// `_dl_cache_libcmp`: compare names, runs of digits numerically. Its sign
/// convention is `name` versus the entry; the cache is sorted descending.
pub(crate) fn libcmp(p1: &[u8], p2: &[u8]) -> std::cmp::Ordering {
    use std::cmp::Ordering::*;
    let (mut i, mut j) = (0, 0);
    let at = |s: &[u8], k: usize| s.get(k).copied().unwrap_or(0);
    while at(p1, i) != 0 {
        let (c1, c2) = (at(p1, i), at(p2, j));
        if c1.is_ascii_digit() {
            if c2.is_ascii_digit() {
                let mut v1: u64 = 0;
                while at(p1, i).is_ascii_digit() {
                    v1 = v1
                        .saturating_mul(10)
                        .saturating_add(u64::from(at(p1, i) - b'0'));
                    i += 1;
                }
                let mut v2: u64 = 0;
                while at(p2, j).is_ascii_digit() {
                    v2 = v2
                        .saturating_mul(10)
                        .saturating_add(u64::from(at(p2, j) - b'0'));
                    j += 1;
                }
                if v1 != v2 {
                    return v1.cmp(&v2);
                }
            } else {
                return Greater;
            }
        } else if c2.is_ascii_digit() {
            return Less;
        } else if c1 != c2 {
            return c1.cmp(&c2);
        } else {
            i += 1;
            j += 1;
        }
    }
    0u8.cmp(&at(p2, j))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Build a new-format cache from (name, path, hwcap) entries, sorted the
    /// way ldconfig sorts them.
    fn build_new(entries: &[(&str, &str, u64)], hwcaps: &[&str]) -> Vec<u8> {
        let mut sorted: Vec<_> = entries.to_vec();
        sorted.sort_by(|a, b| libcmp(b.0.as_bytes(), a.0.as_bytes()).then(b.2.cmp(&a.2)));
        let mut strings = Vec::new();
        let mut offs = Vec::new();
        let table_end = 48 + 24 * sorted.len();
        for (k, v, _) in &sorted {
            let ko = table_end + strings.len();
            strings.extend_from_slice(k.as_bytes());
            strings.push(0);
            let vo = table_end + strings.len();
            strings.extend_from_slice(v.as_bytes());
            strings.push(0);
            offs.push((ko as u32, vo as u32));
        }
        let mut hw_offs = Vec::new();
        for h in hwcaps {
            hw_offs.push((table_end + strings.len()) as u32);
            strings.extend_from_slice(h.as_bytes());
            strings.push(0);
        }
        let mut f = Vec::new();
        f.extend_from_slice(NEW_MAGIC);
        f.extend_from_slice(&(sorted.len() as u32).to_le_bytes());
        f.extend_from_slice(&(strings.len() as u32).to_le_bytes());
        f.push(2);
        f.extend_from_slice(&[0; 3]);
        let ext_pos_field = f.len();
        f.extend_from_slice(&[0; 4]);
        f.extend_from_slice(&[0; 12]);
        for ((_, _, hw), (ko, vo)) in sorted.iter().zip(&offs) {
            f.extend_from_slice(&FLAGS_X86_64.to_le_bytes());
            f.extend_from_slice(&ko.to_le_bytes());
            f.extend_from_slice(&vo.to_le_bytes());
            f.extend_from_slice(&0u32.to_le_bytes());
            f.extend_from_slice(&hw.to_le_bytes());
        }
        f.extend_from_slice(&strings);
        if !hwcaps.is_empty() {
            while f.len() % 4 != 0 {
                f.push(0);
            }
            let ext = f.len() as u32;
            f[ext_pos_field..ext_pos_field + 4].copy_from_slice(&ext.to_le_bytes());
            f.extend_from_slice(&EXTENSION_MAGIC.to_le_bytes());
            f.extend_from_slice(&1u32.to_le_bytes());
            let data = ext + 8 + 16;
            f.extend_from_slice(&EXT_TAG_GLIBC_HWCAPS.to_le_bytes());
            f.extend_from_slice(&0u32.to_le_bytes());
            f.extend_from_slice(&data.to_le_bytes());
            f.extend_from_slice(&((hw_offs.len() * 4) as u32).to_le_bytes());
            for o in hw_offs {
                f.extend_from_slice(&o.to_le_bytes());
            }
        }
        f
    }

    #[test]
    fn libcmp_compares_digit_runs_numerically() {
        use std::cmp::Ordering::*;
        assert_eq!(libcmp(b"libz.so.1", b"libz.so.1"), Equal);
        assert_eq!(libcmp(b"libfoo.so.10", b"libfoo.so.9"), Greater);
        assert_eq!(libcmp(b"liba.so", b"libb.so"), Less);
        assert_eq!(libcmp(b"lib1", b"liba"), Greater);
    }

    #[test]
    fn new_format_lookup() {
        let f = build_new(
            &[
                ("libz.so.1", "/lib/x86_64-linux-gnu/libz.so.1", 0),
                ("libm.so.6", "/lib/x86_64-linux-gnu/libm.so.6", 0),
            ],
            &[],
        );
        let c = LdCache::parse(f.clone()).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(
            c.lookup(b"libz.so.1", &[], 2),
            Some(&b"/lib/x86_64-linux-gnu/libz.so.1"[..])
        );
        assert_eq!(
            c.lookup(b"libm.so.6", &[], 2),
            Some(&b"/lib/x86_64-linux-gnu/libm.so.6"[..])
        );
        assert_eq!(c.lookup(b"libnope.so", &[], 2), None);
    }

    #[test]
    fn hwcaps_entries_are_preferred_when_supported() {
        let named = |i: u64| HWCAP_EXTENSION | i;
        let f = build_new(
            &[
                ("libq.so.1", "/usr/lib/libq.so.1", 0),
                (
                    "libq.so.1",
                    "/usr/lib/glibc-hwcaps/x86-64-v3/libq.so.1",
                    named(1),
                ),
                (
                    "libq.so.1",
                    "/usr/lib/glibc-hwcaps/x86-64-v2/libq.so.1",
                    named(0),
                ),
            ],
            &["x86-64-v2", "x86-64-v3"],
        );
        let c = LdCache::parse(f.clone()).unwrap();
        let v3 = ["x86-64-v3", "x86-64-v2"];
        assert_eq!(
            c.lookup(b"libq.so.1", &v3, 2),
            Some(&b"/usr/lib/glibc-hwcaps/x86-64-v3/libq.so.1"[..])
        );
        assert_eq!(
            c.lookup(b"libq.so.1", &["x86-64-v2"], 2),
            Some(&b"/usr/lib/glibc-hwcaps/x86-64-v2/libq.so.1"[..])
        );
        assert_eq!(
            c.lookup(b"libq.so.1", &[], 2),
            Some(&b"/usr/lib/libq.so.1"[..])
        );
    }

    #[test]
    fn old_format_alone_and_with_new_inside() {
        // Old format only.
        let mut f = Vec::new();
        f.extend_from_slice(OLD_MAGIC);
        f.push(0);
        f.extend_from_slice(&1u32.to_le_bytes());
        f.extend_from_slice(&FLAGS_X86_64.to_le_bytes());
        f.extend_from_slice(&0u32.to_le_bytes());
        f.extend_from_slice(&10u32.to_le_bytes());
        f.extend_from_slice(b"libold.so\0/x/libold.so\0");
        let c = LdCache::parse(f.clone()).unwrap();
        assert_eq!(c.lookup(b"libold.so", &[], 2), Some(&b"/x/libold.so"[..]));
        // Old header followed by a new-format table: the new one is used.
        let mut f = Vec::new();
        f.extend_from_slice(OLD_MAGIC);
        f.push(0);
        f.extend_from_slice(&0u32.to_le_bytes());
        while f.len() % 8 != 0 {
            f.push(0);
        }
        let new = build_new(&[("libnew.so", "/y/libnew.so", 0)], &[]);
        f.extend_from_slice(&new);
        let c = LdCache::parse(f.clone()).unwrap();
        assert_eq!(c.format, "old with new");
        assert_eq!(c.lookup(b"libnew.so", &[], 2), Some(&b"/y/libnew.so"[..]));
    }

    #[test]
    fn this_machines_cache_parses() {
        if let Ok(bytes) = std::fs::read("/etc/ld.so.cache") {
            let c = LdCache::parse(bytes).unwrap();
            assert!(c.len() > 10);
            assert!(c.lookup(b"libc.so.6", &[], 2).is_some());
        }
    }

    /// Every name this machine's cache lists once, for x86_64 and without
    /// a hwcaps subdirectory, is found at the path `ldconfig -p` prints.
    #[test]
    fn lookups_agree_with_ldconfig() {
        // Mapped, as the search reads it.
        let Ok(file) = std::fs::File::open("/etc/ld.so.cache") else {
            return;
        };
        let mapped = crate::map::FileMap::of(&file).unwrap();
        assert_eq!(mapped.bytes(), std::fs::read("/etc/ld.so.cache").unwrap());
        let c = LdCache::parse(CacheBytes::Mapped(mapped)).unwrap();
        let out = std::process::Command::new("/sbin/ldconfig")
            .arg("-p")
            .output()
            .expect("ldconfig -p");
        let text = String::from_utf8(out.stdout).unwrap();
        let mut listed: std::collections::HashMap<&str, Vec<(&str, &str)>> = Default::default();
        for line in text.lines().skip(1) {
            let Some((left, path)) = line.trim().split_once(" => ") else {
                continue;
            };
            let Some((name, kind)) = left.split_once(' ') else {
                continue;
            };
            listed.entry(name).or_default().push((kind, path));
        }
        let mut checked = 0;
        for (name, entries) in &listed {
            if let [("(libc6,x86-64)", path)] = entries[..] {
                let found = c.lookup(name.as_bytes(), &[], 2);
                assert_eq!(found, Some(path.as_bytes()), "{name}");
                checked += 1;
            }
        }
        assert!(checked > 100, "{checked}");
    }

    /// glibc's handling of strings outside the file: a name the binary
    /// search probes ends the search; a path is skipped, and the next
    /// entry of the same name taken.
    #[test]
    fn entries_with_strings_outside_the_file() {
        let mut f = build_new(&[("a", "/a", 0), ("b", "/b", 0), ("c", "/c", 0)], &[]);
        // Sorted descending: c, b, a. The first probe is b, in the middle.
        let key = |i: usize| 48 + 24 * i + 4;
        f[key(1)..key(1) + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let c = LdCache::parse(f).unwrap();
        for name in [&b"a"[..], b"b", b"c"] {
            assert_eq!(c.lookup(name, &[], 2), None);
        }
        let mut f = build_new(&[("d", "/d1", 0), ("d", "/d2", 0)], &[]);
        let value = 48 + 8;
        f[value..value + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let c = LdCache::parse(f).unwrap();
        // (The sort is stable: /d1 is the first entry, the one broken.)
        assert_eq!(c.lookup(b"d", &[], 2), Some(&b"/d2"[..]));
        assert_eq!(c.lookup(b"e", &[], 2), None);
    }

    #[test]
    fn an_empty_file_is_not_mapped() {
        let path = std::env::temp_dir().join(format!("dynload-empty-{}", std::process::id()));
        let file = std::fs::File::create(&path).unwrap();
        assert!(crate::map::FileMap::of(&file).is_none());
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn hostile_input_is_rejected_or_truncated() {
        assert!(LdCache::parse(Vec::new()).is_err());
        assert!(LdCache::parse(b"glibc-ld.so.cache1.1\xff\xff\xff\xff".to_vec()).is_err());
        let mut f = build_new(&[("a", "b", 0)], &[]);
        // Point the key outside the file: the search ends there.
        f[48 + 4..48 + 8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            LdCache::parse(f.clone()).unwrap().lookup(b"a", &[], 2),
            None
        );
    }
}
