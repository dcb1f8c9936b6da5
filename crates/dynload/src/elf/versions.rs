//! Symbol versioning: the versions an object defines (DT_VERDEF) and the
//! versions it requires from its dependencies (DT_VERNEED), decoded into the
//! per-index table glibc calls `l_versions`.

use super::dynamic::DynInfo;
use super::image::Image;
use super::symbols::SymbolTable;
use super::{elf, E, LE};

/// A version or file name. Shared, not copied, between the tables that
/// name it (each requirement names its file, each definition is listed
/// twice): libstdc++ names dozens of versions, and every object keeps its
/// tables for its lifetime.
pub(crate) type Name = std::sync::Arc<[u8]>;

/// One entry of the version table: the version a symbol index refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VersionEntry {
    pub name: Name,
    /// ELF hash of `name`.
    pub hash: u32,
    /// A requirement marked hidden (VER_FLG_HIDDEN in vna_other).
    pub hidden: bool,
    /// For requirements: the DT_NEEDED name that must define this version.
    pub filename: Option<Name>,
}

/// A version one dependency must provide.
#[derive(Debug, Clone)]
pub(crate) struct Requirement {
    pub name: Name,
    pub hash: u32,
    pub weak: bool,
}

/// All versions required from one DT_NEEDED file.
#[derive(Debug, Clone)]
pub(crate) struct Needed {
    pub file: Name,
    pub versions: Vec<Requirement>,
}

/// The decoded version information of one object.
#[derive(Debug, Clone, Default)]
pub(crate) struct Versions {
    /// Indexed by version index (the low 15 bits of a versym entry).
    pub by_index: Vec<Option<VersionEntry>>,
    /// Every DT_VERDEF entry, base version included: (hash, name, index).
    pub defined: Vec<(u32, Name, u16)>,
    pub has_verdef: bool,
    pub needed: Vec<Needed>,
}

/// Upper bound on entries walked in any version chain.
const MAX_ENTRIES: usize = 1 << 16;

impl Versions {
    pub(crate) fn parse(
        image: &Image,
        d: &DynInfo,
        syms: &SymbolTable,
    ) -> Result<Versions, String> {
        let mut v = Versions::default();
        let string = |off: u32, what: &str| -> Result<Name, String> {
            syms.string(off as usize)
                .map(Name::from)
                .ok_or_else(|| format!("{what}: name outside the string table"))
        };
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
                let file = string(ent.vn_file.get(LE), "DT_VERNEED")?;
                let mut versions = Vec::new();
                let mut aux_addr = addr
                    .checked_add(ent.vn_aux.get(LE) as usize)
                    .ok_or("DT_VERNEED: bad vn_aux")?;
                for _ in 0..MAX_ENTRIES {
                    let aux: &elf::Vernaux<E> = image
                        .read(aux_addr)
                        .ok_or("DT_VERNEED auxiliary outside the loaded segments")?;
                    let name = string(aux.vna_name.get(LE), "DT_VERNEED")?;
                    let other = aux.vna_other.get(LE);
                    let ndx = usize::from(other & 0x7fff);
                    let entry = VersionEntry {
                        name: name.clone(),
                        hash: aux.vna_hash.get(LE),
                        hidden: other & 0x8000 != 0,
                        filename: Some(file.clone()),
                    };
                    set(&mut v.by_index, ndx, entry);
                    versions.push(Requirement {
                        name,
                        hash: aux.vna_hash.get(LE),
                        weak: aux.vna_flags.get(LE) & elf::VER_FLG_WEAK != 0,
                    });
                    let next = aux.vna_next.get(LE);
                    if next == 0 {
                        break;
                    }
                    aux_addr = aux_addr
                        .checked_add(next as usize)
                        .ok_or("DT_VERNEED: bad vna_next")?;
                }
                v.needed.push(Needed { file, versions });
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
            v.has_verdef = true;
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
                let name = string(aux.vda_name.get(LE), "DT_VERDEF")?;
                let ndx = ent.vd_ndx.get(LE) & 0x7fff;
                v.defined.push((ent.vd_hash.get(LE), name.clone(), ndx));
                // The base version names the file itself and is never used
                // to match a versioned symbol.
                if ent.vd_flags.get(LE) & elf::VER_FLG_BASE == 0 {
                    let entry = VersionEntry {
                        name,
                        hash: ent.vd_hash.get(LE),
                        hidden: false,
                        filename: None,
                    };
                    set(&mut v.by_index, usize::from(ndx), entry);
                }
                let next = ent.vd_next.get(LE);
                if next == 0 {
                    break;
                }
                addr = addr
                    .checked_add(next as usize)
                    .ok_or("DT_VERDEF: bad vd_next")?;
            }
        }
        // (`set` sized it; an object without versions allocates nothing.)
        v.by_index.shrink_to_fit();
        Ok(v)
    }

    /// The version entry for a versym value, if it names a real version
    /// (glibc treats an entry with hash 0 as "no version").
    #[inline]
    pub(crate) fn entry(&self, versym: u16) -> Option<&VersionEntry> {
        self.by_index
            .get(usize::from(versym & 0x7fff))?
            .as_ref()
            .filter(|e| e.hash != 0)
    }

    /// The hash and name at an index, for matching a definition: `(0, "")`
    /// for indices without a named version (local, global, base).
    #[inline]
    pub(crate) fn at(&self, index: u16) -> (u32, &[u8]) {
        match self.by_index.get(usize::from(index & 0x7fff)) {
            Some(Some(e)) => (e.hash, &e.name),
            _ => (0, b""),
        }
    }

    /// Is requirement `req` left unmet by an object with these versions?
    /// (glibc's `match_symbol`: an object without DT_VERDEF meets every
    /// requirement, and a weak requirement never fails.)
    pub(crate) fn unmet(&self, req: &Requirement) -> bool {
        self.has_verdef && !req.weak && !self.defines(req.hash, &req.name)
    }

    /// The names of the versions it defines, without the base version.
    pub(crate) fn defined_names(&self) -> Vec<String> {
        self.defined
            .iter()
            .skip(1)
            .map(|(_, n, _)| String::from_utf8_lossy(n).into_owned())
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
        self.defined
            .iter()
            .any(|(h, n, _)| *h == hash && &**n == name)
    }
}

fn set(table: &mut Vec<Option<VersionEntry>>, ndx: usize, entry: VersionEntry) {
    if table.len() <= ndx {
        table.resize(ndx + 1, None);
    }
    table[ndx] = Some(entry);
}
