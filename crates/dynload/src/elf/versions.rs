//! Symbol versioning: the versions an object defines (DT_VERDEF) and the
//! versions it requires from its dependencies (DT_VERNEED), decoded into the
//! per-index table glibc calls `l_versions`.

use super::dynamic::DynInfo;
use super::image::Image;
use super::symbols::{Span, Strings, SymbolTable};
use super::{elf, E, LE};

/// A version an object asks for or defines, as lookups and checks see it:
/// names borrowed from the object's string table (or from the caller, for
/// `dlvsym` and `why`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct VersionEntry<'a> {
    pub name: &'a [u8],
    /// ELF hash of `name`.
    pub hash: u32,
    /// A requirement marked hidden (VER_FLG_HIDDEN in vna_other).
    pub hidden: bool,
}

/// A version one dependency must provide (one DT_VERNEED auxiliary entry).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Requirement<'a> {
    pub name: &'a [u8],
    pub hash: u32,
    pub weak: bool,
}

/// One DT_VERNEED auxiliary entry or one DT_VERDEF entry. Names stay in the
/// string table, not copied: libstdc++ defines over a hundred versions,
/// and every object keeps its tables for its lifetime. 16 bytes a record
/// (24 with the flags in a field of their own and the file's name as a
/// (offset, length) span: a third of libz3's version tables).
#[derive(Debug, Clone, Copy)]
struct Record {
    hash: u32,
    /// The name's offset in the string table.
    name_off: u32,
    /// The name's length ([`LENGTH`] bits), and the [`HIDDEN`] and [`WEAK`]
    /// flags above it.
    name_len_flags: u32,
    /// The offset of the file name a requirement names; 0 for a
    /// definition (no file).
    file_off: u32,
}

const _: () = assert!(std::mem::size_of::<Record>() == 16);

/// The bits of `name_len_flags` that hold the length: names are shorter
/// than 1 GiB (a longer one is refused).
const LENGTH: u32 = (1 << 30) - 1;
const HIDDEN: u32 = 1 << 30;
const WEAK: u32 = 1 << 31;

impl Record {
    // (Inlined: every versioned relocation reads one or two names.)
    #[inline(always)]
    fn name<'a>(&self, strings: &'a Strings) -> &'a [u8] {
        strings.get(Span::new(self.name_off, self.name_len_flags & LENGTH))
    }
}

/// No record at this version index.
const NONE: u32 = u32::MAX;

/// The decoded version information of one object. (A copy reads the same
/// string table: query's search-list copies keep copies.)
#[derive(Debug, Clone)]
pub(crate) struct Versions {
    strings: Strings,
    /// Requirements in DT_VERNEED order, then definitions (base version
    /// first) in DT_VERDEF order.
    records: Box<[Record]>,
    /// The first definition in `records`.
    defined_from: u32,
    /// Indexed by version index (the low 15 bits of a versym entry): the
    /// record that index names, or [`NONE`]. glibc's `l_versions`.
    by_index: Box<[u32]>,
    has_verdef: bool,
}

impl Default for Versions {
    fn default() -> Versions {
        Versions {
            strings: Strings::EMPTY,
            records: Box::default(),
            defined_from: 0,
            by_index: Box::default(),
            has_verdef: false,
        }
    }
}

/// Upper bound on entries walked in any version chain.
const MAX_ENTRIES: usize = 1 << 16;

impl Versions {
    /// Decode the version tables `d` points to. The result names strings
    /// in `syms`'s string table, so it is used only while that is mapped
    /// (both belong to the same object). The tables are walked twice: to
    /// count, then to fill tables of that size (grown by pushing, they were
    /// four times their size in freed buffers: 22 KB for libz3's load).
    pub(crate) fn parse(
        image: &Image,
        d: &DynInfo,
        syms: &SymbolTable,
    ) -> Result<Versions, String> {
        let strings = syms.strings();
        let (mut count, mut indices) = (0usize, 0usize);
        walk(image, d, |entry| {
            count += 1;
            if let Some(ndx) = entry.index() {
                indices = indices.max(ndx + 1);
            }
            Ok(())
        })?;
        let mut records = Vec::with_capacity(count);
        let mut by_index = vec![NONE; indices];
        let mut defined_from = None;
        walk(image, d, |entry| {
            // The length of the name at `off`, checked to lie in the table.
            let name_len = |off: u32, what: &str| -> Result<u32, String> {
                let len = strings
                    .span_at(off as usize)
                    .ok_or_else(|| format!("{what}: name outside the string table"))?
                    .len();
                if len > LENGTH {
                    return Err(format!("{what}: unsupported version name of 1 GiB or more"));
                }
                Ok(len)
            };
            if let Some(ndx) = entry.index() {
                by_index[ndx] = u32::try_from(records.len()).unwrap_or(NONE);
            }
            let record = match entry {
                Entry::Need { file, aux } => {
                    let name_off = aux.vna_name.get(LE);
                    let mut name_len_flags = name_len(name_off, "DT_VERNEED")?;
                    if aux.vna_other.get(LE) & 0x8000 != 0 {
                        name_len_flags |= HIDDEN;
                    }
                    if aux.vna_flags.get(LE) & elf::VER_FLG_WEAK != 0 {
                        name_len_flags |= WEAK;
                    }
                    strings
                        .at(file as usize)
                        .ok_or("DT_VERNEED: name outside the string table")?;
                    Record {
                        hash: aux.vna_hash.get(LE),
                        name_off,
                        name_len_flags,
                        file_off: file,
                    }
                }
                Entry::Def { ent, aux } => {
                    defined_from.get_or_insert(records.len());
                    let name_off = aux.vda_name.get(LE);
                    Record {
                        hash: ent.vd_hash.get(LE),
                        name_off,
                        name_len_flags: name_len(name_off, "DT_VERDEF")?,
                        file_off: 0,
                    }
                }
            };
            records.push(record);
            Ok(())
        })?;
        let defined_from = defined_from.unwrap_or(records.len());
        Ok(Versions {
            strings,
            defined_from: u32::try_from(defined_from).map_err(|_| "too many versions")?,
            records: records.into_boxed_slice(),
            by_index: by_index.into_boxed_slice(),
            has_verdef: d.verdef().is_some(),
        })
    }

    /// Does the object have a DT_VERDEF table?
    pub(crate) fn has_verdef(&self) -> bool {
        self.has_verdef
    }

    #[inline(always)]
    fn record_at(&self, index: u16) -> Option<&Record> {
        let r = *self.by_index.get(usize::from(index & 0x7fff))?;
        self.records.get(r as usize)
    }

    /// The version entry for a versym value, if it names a real version
    /// (glibc treats an entry with hash 0 as "no version").
    #[inline]
    pub(crate) fn entry(&self, versym: u16) -> Option<VersionEntry<'_>> {
        let r = self.record_at(versym).filter(|r| r.hash != 0)?;
        Some(VersionEntry {
            name: r.name(&self.strings),
            hash: r.hash,
            hidden: r.name_len_flags & HIDDEN != 0,
        })
    }

    /// The hash and name at an index, for matching a definition: `(0, "")`
    /// for indices without a named version (local, global, base).
    #[inline(always)]
    pub(crate) fn at(&self, index: u16) -> (u32, &[u8]) {
        match self.record_at(index) {
            Some(r) => (r.hash, r.name(&self.strings)),
            None => (0, b""),
        }
    }

    /// The versions required of dependencies, in DT_VERNEED order.
    pub(crate) fn requirements(&self) -> impl Iterator<Item = Requirement<'_>> {
        self.requirements_by_file().flat_map(|(_, reqs)| reqs)
    }

    /// The versions required of each dependency, in DT_VERNEED order: its
    /// DT_NEEDED name, then its requirements.
    pub(crate) fn requirements_by_file(
        &self,
    ) -> impl Iterator<Item = (&[u8], impl Iterator<Item = Requirement<'_>>)> {
        self.records[..self.defined_from as usize]
            .chunk_by(|a, b| a.file_off == b.file_off)
            .map(|group| {
                let reqs = group.iter().map(|r| Requirement {
                    name: r.name(&self.strings),
                    hash: r.hash,
                    weak: r.name_len_flags & WEAK != 0,
                });
                (
                    self.strings.at(group[0].file_off as usize).unwrap_or(b""),
                    reqs,
                )
            })
    }

    /// Every DT_VERDEF entry, base version first: (hash, name).
    fn definitions(&self) -> impl Iterator<Item = (u32, &[u8])> {
        self.records[self.defined_from as usize..]
            .iter()
            .map(|r| (r.hash, r.name(&self.strings)))
    }

    /// Is requirement `req` left unmet by an object with these versions?
    /// (glibc's `match_symbol`: an object without DT_VERDEF meets every
    /// requirement, and a weak requirement never fails.)
    pub(crate) fn unmet(&self, req: &Requirement<'_>) -> bool {
        self.has_verdef && !req.weak && !self.defines(req.hash, req.name)
    }

    /// The names of the versions it defines, without the base version.
    pub(crate) fn defined_names(&self) -> Vec<String> {
        self.definitions()
            .skip(1)
            .map(|(_, n)| String::from_utf8_lossy(n).into_owned())
            .collect()
    }

    /// How a symbol's version is written: "@@V" (default), "@V" (hidden),
    /// or "" (none), for the versym value `versym`.
    pub(crate) fn suffix(&self, versym: Option<u16>) -> String {
        let Some(v) = versym else {
            return String::new();
        };
        let (_, n) = self.at(v);
        if n.is_empty() {
            return String::new();
        }
        let sep = if v & 0x8000 != 0 { "@" } else { "@@" };
        format!("{sep}{}", String::from_utf8_lossy(n))
    }

    /// Does this object define version `name` (glibc's `match_symbol`)?
    pub(crate) fn defines(&self, hash: u32, name: &[u8]) -> bool {
        self.definitions().any(|(h, n)| h == hash && n == name)
    }
}

/// Point version index `ndx` at record `record` (the last entry for an
/// index wins, as in glibc's `l_versions`).
/// One entry of the version tables, as [`walk`] finds it.
enum Entry<'a> {
    /// A DT_VERNEED auxiliary entry, with its file's name offset.
    Need { file: u32, aux: &'a elf::Vernaux<E> },
    /// A DT_VERDEF entry and its first auxiliary entry (its name).
    Def {
        ent: &'a elf::Verdef<E>,
        aux: &'a elf::Verdaux<E>,
    },
}

impl Entry<'_> {
    /// The version index the entry gives a record (none for the base
    /// version, which names the file itself and never matches a symbol).
    fn index(&self) -> Option<usize> {
        match self {
            Entry::Need { aux, .. } => Some(usize::from(aux.vna_other.get(LE) & 0x7fff)),
            Entry::Def { ent, .. } if ent.vd_flags.get(LE) & elf::VER_FLG_BASE == 0 => {
                Some(usize::from(ent.vd_ndx.get(LE) & 0x7fff))
            }
            Entry::Def { .. } => None,
        }
    }
}

/// Call `f` with each DT_VERNEED auxiliary entry, in order, then each
/// DT_VERDEF entry, checking the chains as it goes.
fn walk<'a>(
    image: &'a Image,
    d: &DynInfo,
    mut f: impl FnMut(Entry<'a>) -> Result<(), String>,
) -> Result<(), String> {
    if let Some(vaddr) = d.verneed() {
        let mut addr = image.addr(vaddr);
        for _ in 0..MAX_ENTRIES {
            let ent: &elf::Verneed<E> = image
                .read(addr)
                .ok_or("DT_VERNEED outside the loaded segments")?;
            if ent.vn_version.get(LE) != 1 {
                return Err(format!(
                    "unsupported version {} of Verneed record",
                    ent.vn_version.get(LE)
                ));
            }
            let mut aux_addr = addr
                .checked_add(ent.vn_aux.get(LE) as usize)
                .ok_or("DT_VERNEED: bad vn_aux")?;
            for _ in 0..MAX_ENTRIES {
                let aux: &elf::Vernaux<E> = image
                    .read(aux_addr)
                    .ok_or("DT_VERNEED auxiliary outside the loaded segments")?;
                f(Entry::Need {
                    file: ent.vn_file.get(LE),
                    aux,
                })?;
                let next = aux.vna_next.get(LE);
                if next == 0 {
                    break;
                }
                aux_addr = aux_addr
                    .checked_add(next as usize)
                    .ok_or("DT_VERNEED: bad vna_next")?;
            }
            let next = ent.vn_next.get(LE);
            if next == 0 {
                break;
            }
            addr = addr
                .checked_add(next as usize)
                .ok_or("DT_VERNEED: bad vn_next")?;
        }
    }
    if let Some(vaddr) = d.verdef() {
        let mut addr = image.addr(vaddr);
        for _ in 0..MAX_ENTRIES {
            let ent: &elf::Verdef<E> = image
                .read(addr)
                .ok_or("DT_VERDEF outside the loaded segments")?;
            if ent.vd_version.get(LE) != 1 {
                return Err(format!(
                    "unsupported version {} of Verdef record",
                    ent.vd_version.get(LE)
                ));
            }
            let aux_addr = addr
                .checked_add(ent.vd_aux.get(LE) as usize)
                .ok_or("DT_VERDEF: bad vd_aux")?;
            let aux: &elf::Verdaux<E> = image
                .read(aux_addr)
                .ok_or("DT_VERDEF auxiliary outside the loaded segments")?;
            f(Entry::Def { ent, aux })?;
            let next = ent.vd_next.get(LE);
            if next == 0 {
                break;
            }
            addr = addr
                .checked_add(next as usize)
                .ok_or("DT_VERDEF: bad vd_next")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use object::read::elf::ElfFile64;
    use object::read::SymbolIndex;

    /// What the `object` crate reads from the section headers, against
    /// what the decoded dynamic tables answer: every symbol's version, every
    /// version index, every requirement in order, every definition.
    fn agrees_with_object(path: &str) {
        let data = std::fs::read(path).unwrap();
        let (loaded, d) = crate::fuzzing::tables(&data).unwrap();
        let syms = SymbolTable::parse(&loaded.image, &d).unwrap();
        let ours = Versions::parse(&loaded.image, &d, &syms).unwrap();

        let file = ElfFile64::<object::LittleEndian>::parse(&*data).unwrap();
        let (e, sections) = (file.endian(), file.elf_section_table());
        let table = sections.versions(e, &*data).unwrap().unwrap();
        // (The hidden bit of a requirement is in vna_other, beside its index.)
        let mut required = Vec::new();
        let mut hidden = std::collections::HashMap::new();
        if let Some((mut needs, link)) = sections.gnu_verneed(e, &*data).unwrap() {
            let strings = sections.strings(e, &*data, link).unwrap();
            while let Some((need, mut auxs)) = needs.next().unwrap() {
                while let Some(aux) = auxs.next().unwrap() {
                    let other = aux.vna_other.get(e);
                    hidden.insert(other & 0x7fff, other & 0x8000 != 0);
                    required.push((
                        need.file(e, strings).unwrap().to_vec(),
                        aux.name(e, strings).unwrap().to_vec(),
                        aux.vna_hash.get(e),
                        aux.vna_flags.get(e) & elf::VER_FLG_WEAK != 0,
                    ));
                }
            }
        }
        let mut checked = 0;
        for (i, _) in syms.iter() {
            let index = table.version_index(e, SymbolIndex(i as usize));
            let want = table.version(index).unwrap();
            let (hash, name) = ours.at(index.0);
            assert_eq!(
                name,
                want.map_or(&b""[..], |v| v.name()),
                "{path}: symbol {i}"
            );
            assert_eq!(hash, want.map_or(0, |v| v.hash()), "{path}: symbol {i}");
            if let (Some(_), Some(entry)) = (want, ours.entry(index.0)) {
                let want_hidden = hidden.get(&(index.0 & 0x7fff)).copied();
                assert_eq!(
                    entry.hidden,
                    want_hidden.unwrap_or(false),
                    "{path}: symbol {i}"
                );
                checked += 1;
            }
        }
        assert!(checked > 0, "{path}: no versioned symbol");

        let decoded: Vec<_> = ours
            .requirements_by_file()
            .flat_map(|(file, reqs)| reqs.map(|r| (file.to_vec(), r.name.to_vec(), r.hash, r.weak)))
            .collect();
        assert_eq!(decoded, required, "{path}");

        let mut defined = Vec::new();
        if let Some((mut defs, link)) = sections.gnu_verdef(e, &*data).unwrap() {
            let strings = sections.strings(e, &*data, link).unwrap();
            while let Some((def, mut auxs)) = defs.next().unwrap() {
                let name = auxs.next().unwrap().unwrap().name(e, strings).unwrap();
                assert!(ours.defines(def.vd_hash.get(e), name), "{path}");
                defined.push(String::from_utf8_lossy(name).into_owned());
            }
        }
        assert_eq!(ours.has_verdef(), !defined.is_empty(), "{path}");
        assert_eq!(
            ours.defined_names(),
            defined.iter().skip(1).cloned().collect::<Vec<_>>()
        );
    }

    #[test]
    fn decoded_versions_agree_with_the_section_headers() {
        let lib = "/usr/lib/x86_64-linux-gnu";
        // Definitions and requirements (libstdc++, libcrypto), definitions
        // with hidden old versions (libc), requirements only (libz3).
        for name in [
            "libstdc++.so.6",
            "libc.so.6",
            "libz3.so.4",
            "libcrypto.so.3",
        ] {
            agrees_with_object(&format!("{lib}/{name}"));
        }
    }

    /// A record keeps a name's length beside its flags. A version name of
    /// 70,000 bytes (more than 16 bits of length), defined by one object
    /// and required by another: decoded whole, and a lookup through dynload
    /// binds to it (`get_versioned` with the whole name, not a prefix), as
    /// glibc's `dlopen` and `dlvsym` do on the same files.
    #[test]
    fn a_long_version_name_is_kept_whole() {
        use std::process::Command;
        let dir = testkit::out_root().join("versions-long-name");
        std::fs::create_dir_all(&dir).unwrap();
        let version = format!("V_{}", "x".repeat(70_000));
        let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
        write(
            "def.map",
            &format!("{version} {{ global: long_f; local: *; }};\n"),
        );
        write("def.c", "int long_f(void) { return 7; }\n");
        write(
            "use.c",
            "extern int long_f(void);\nint use_f(void) { return long_f() + 1; }\n",
        );
        let gcc = |args: &[&str]| {
            testkit::run(
                Command::new("gcc")
                    .current_dir(&dir)
                    .args(["-shared", "-fPIC"])
                    .args(args),
            );
        };
        gcc(&[
            "-o",
            "libvlong_def.so",
            "def.c",
            "-Wl,--version-script=def.map",
        ]);
        gcc(&[
            "-o",
            "libvlong_use.so",
            "use.c",
            "-L.",
            "-lvlong_def",
            "-Wl,-rpath,$ORIGIN",
        ]);
        for name in ["libvlong_def.so", "libvlong_use.so"] {
            agrees_with_object(dir.join(name).to_str().unwrap());
        }
        // SAFETY: the fixtures' constructors are the compiler's.
        let lib =
            unsafe { crate::Library::open(dir.join("libvlong_use.so"), crate::OpenFlags::NOW) }
                .unwrap();
        // SAFETY: `use_f` is `int (void)`.
        let use_f = unsafe { lib.get::<extern "C" fn() -> i32>("use_f") }.unwrap();
        assert_eq!(use_f(), 8);
        // SAFETY: as for the first library.
        let def =
            unsafe { crate::Library::open(dir.join("libvlong_def.so"), crate::OpenFlags::NOW) }
                .unwrap();
        // SAFETY: `long_f` is `int (void)`.
        let long_f =
            unsafe { def.get_versioned::<extern "C" fn() -> i32>("long_f", &version) }.unwrap();
        assert_eq!(long_f(), 7);
        // SAFETY: as above.
        let other = unsafe {
            def.get_versioned::<extern "C" fn() -> i32>("long_f", &version[..version.len() - 1])
        };
        assert!(other.is_err());
        // glibc, on the same files: the same calls, the same version found
        // by its whole name and not by a prefix.
        let path = |name: &str| std::ffi::CString::new(dir.join(name).to_str().unwrap()).unwrap();
        let c = |s: &str| std::ffi::CString::new(s).unwrap();
        // SAFETY: glibc's dlopen/dlsym/dlvsym with C strings; the symbols
        // are `int (void)`, and the handles stay open.
        unsafe {
            let use_h = libc::dlopen(path("libvlong_use.so").as_ptr(), libc::RTLD_NOW);
            assert!(!use_h.is_null());
            let use_f = libc::dlsym(use_h, c("use_f").as_ptr());
            assert!(!use_f.is_null());
            let use_f: extern "C" fn() -> i32 = std::mem::transmute(use_f);
            assert_eq!(use_f(), 8);
            let def_h = libc::dlopen(path("libvlong_def.so").as_ptr(), libc::RTLD_NOW);
            assert!(!def_h.is_null());
            let long_f = libc::dlvsym(def_h, c("long_f").as_ptr(), c(&version).as_ptr());
            assert!(!long_f.is_null());
            let long_f: extern "C" fn() -> i32 = std::mem::transmute(long_f);
            assert_eq!(long_f(), 7);
            let prefix = c(&version[..version.len() - 1]);
            assert!(libc::dlvsym(def_h, c("long_f").as_ptr(), prefix.as_ptr()).is_null());
        }
    }
}
