//! The dynamic section: what an object needs, where its tables are, and the
//! flags that change how it is loaded.

use super::image::Image;
use super::{elf, Dyn, LE};

/// DT_RELR and friends (glibc 2.36+, ELF gABI 2022).
pub(crate) const DT_RELRSZ: i64 = 35;
pub(crate) const DT_RELR: i64 = 36;
pub(crate) const DT_RELRENT: i64 = 37;

/// A table in memory: file virtual address and size in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Table {
    pub vaddr: u64,
    pub size: u64,
}

/// The decoded dynamic section of one object. Addresses are file virtual
/// addresses (add the load bias for absolute ones); strings are offsets into
/// the string table.
#[derive(Debug, Clone, Default)]
pub(crate) struct DynInfo {
    pub needed: Vec<u64>,
    pub soname: Option<u64>,
    pub rpath: Option<u64>,
    pub runpath: Option<u64>,
    pub strtab: Option<Table>,
    pub symtab: Option<u64>,
    pub syment: Option<u64>,
    pub hash: Option<u64>,
    pub gnu_hash: Option<u64>,
    pub versym: Option<u64>,
    pub verdef: Option<u64>,
    pub verdefnum: Option<u64>,
    pub verneed: Option<u64>,
    pub verneednum: Option<u64>,
    pub rela: Option<Table>,
    pub relaent: Option<u64>,
    pub relacount: u64,
    pub rel: Option<Table>,
    pub jmprel: Option<Table>,
    pub pltrel: Option<u64>,
    pub pltgot: Option<u64>,
    pub relr: Option<Table>,
    pub relrent: Option<u64>,
    pub init: Option<u64>,
    pub fini: Option<u64>,
    pub init_array: Option<Table>,
    pub fini_array: Option<Table>,
    pub preinit_array: Option<Table>,
    pub flags: u64,
    pub flags_1: u64,
    pub symbolic: bool,
    pub textrel: bool,
    pub bind_now: bool,
    /// DT_FILTER / DT_AUXILIARY (filters), which dynload does not support.
    pub filter: bool,
}

impl DynInfo {
    pub(crate) fn has_textrel(&self) -> bool {
        self.textrel || self.flags & u64::from(elf::DF_TEXTREL) != 0
    }
    pub(crate) fn is_symbolic(&self) -> bool {
        self.symbolic || self.flags & u64::from(elf::DF_SYMBOLIC) != 0
    }
    /// DT_BIND_NOW, DF_BIND_NOW or DF_1_NOW: bind every PLT slot at load.
    pub(crate) fn wants_bind_now(&self) -> bool {
        self.bind_now
            || self.flags & u64::from(elf::DF_BIND_NOW) != 0
            || self.flags_1 & u64::from(elf::DF_1_NOW) != 0
    }

    pub(crate) fn flag_1(&self, f: u32) -> bool {
        self.flags_1 & u64::from(f) != 0
    }
}

/// Decode the dynamic section of the object in `image`.
///
/// `dyn_addr`/`dyn_size` are the absolute address and size of PT_DYNAMIC.
/// glibc rewrites some pointer entries of the objects it loads to absolute
/// addresses; with `maybe_relocated` set (objects glibc loaded), such values
/// are turned back into virtual addresses.
pub(crate) fn parse(
    image: &Image,
    dyn_addr: usize,
    dyn_size: usize,
    maybe_relocated: bool,
) -> Result<DynInfo, String> {
    let count = dyn_size / std::mem::size_of::<Dyn>();
    let entries: &[Dyn] = image.slice(dyn_addr, count).ok_or_else(|| {
        format!("dynamic section at {dyn_addr:#x} (+{dyn_size:#x}) is not inside a loaded segment")
    })?;
    let ptr = |v: u64| -> u64 {
        if maybe_relocated
            && image.base != 0
            && (v as usize) >= image.base
            && image.contains(v as usize, 1)
        {
            v - image.base as u64
        } else {
            v
        }
    };
    let mut d = DynInfo::default();
    let mut strsz = None;
    let (mut relasz, mut relsz, mut pltrelsz, mut relrsz) = (None, None, None, None);
    let (mut rela, mut rel, mut jmprel, mut relr) = (None, None, None, None);
    let (mut init_array, mut init_arraysz) = (None, None);
    let (mut fini_array, mut fini_arraysz) = (None, None);
    let (mut preinit_array, mut preinit_arraysz) = (None, None);
    let mut strtab = None;
    let mut terminated = false;
    for e in entries {
        let tag = e.d_tag.get(LE) as i64;
        let val = e.d_val.get(LE);
        match tag as u32 {
            _ if tag == i64::from(elf::DT_NULL) => {
                terminated = true;
                break;
            }
            elf::DT_NEEDED => d.needed.push(val),
            elf::DT_SONAME => d.soname = Some(val),
            elf::DT_RPATH => d.rpath = Some(val),
            elf::DT_RUNPATH => d.runpath = Some(val),
            elf::DT_STRTAB => strtab = Some(ptr(val)),
            elf::DT_STRSZ => strsz = Some(val),
            elf::DT_SYMTAB => d.symtab = Some(ptr(val)),
            elf::DT_SYMENT => d.syment = Some(val),
            elf::DT_HASH => d.hash = Some(ptr(val)),
            elf::DT_GNU_HASH => d.gnu_hash = Some(ptr(val)),
            elf::DT_VERSYM => d.versym = Some(ptr(val)),
            elf::DT_VERDEF => d.verdef = Some(ptr(val)),
            elf::DT_VERDEFNUM => d.verdefnum = Some(val),
            elf::DT_VERNEED => d.verneed = Some(ptr(val)),
            elf::DT_VERNEEDNUM => d.verneednum = Some(val),
            elf::DT_RELA => rela = Some(ptr(val)),
            elf::DT_RELASZ => relasz = Some(val),
            elf::DT_RELAENT => d.relaent = Some(val),
            elf::DT_RELACOUNT => d.relacount = val,
            elf::DT_REL => rel = Some(ptr(val)),
            elf::DT_RELSZ => relsz = Some(val),
            elf::DT_JMPREL => jmprel = Some(ptr(val)),
            elf::DT_PLTRELSZ => pltrelsz = Some(val),
            elf::DT_PLTREL => d.pltrel = Some(val),
            elf::DT_PLTGOT => d.pltgot = Some(ptr(val)),
            elf::DT_INIT => d.init = Some(ptr(val)),
            elf::DT_FINI => d.fini = Some(ptr(val)),
            elf::DT_INIT_ARRAY => init_array = Some(ptr(val)),
            elf::DT_INIT_ARRAYSZ => init_arraysz = Some(val),
            elf::DT_FINI_ARRAY => fini_array = Some(ptr(val)),
            elf::DT_FINI_ARRAYSZ => fini_arraysz = Some(val),
            elf::DT_PREINIT_ARRAY => preinit_array = Some(ptr(val)),
            elf::DT_PREINIT_ARRAYSZ => preinit_arraysz = Some(val),
            elf::DT_FLAGS => d.flags = val,
            elf::DT_FLAGS_1 => d.flags_1 = val,
            elf::DT_SYMBOLIC => d.symbolic = true,
            elf::DT_TEXTREL => d.textrel = true,
            elf::DT_BIND_NOW => d.bind_now = true,
            elf::DT_FILTER | elf::DT_AUXILIARY => d.filter = true,
            _ if tag == DT_RELR => relr = Some(ptr(val)),
            _ if tag == DT_RELRSZ => relrsz = Some(val),
            _ if tag == DT_RELRENT => d.relrent = Some(val),
            _ => {}
        }
    }
    if !terminated {
        return Err("dynamic section is not terminated by DT_NULL".into());
    }
    let pair = |name: &str, a: Option<u64>, s: Option<u64>| -> Result<Option<Table>, String> {
        match (a, s) {
            (Some(vaddr), Some(size)) => Ok(Some(Table { vaddr, size })),
            (None, None) => Ok(None),
            (Some(_), None) => Err(format!("{name} without its size")),
            // A size without a table is harmless (and seen in the wild for
            // empty tables); ignore it.
            (None, Some(_)) => Ok(None),
        }
    };
    d.strtab = pair("DT_STRTAB", strtab, strsz)?;
    d.rela = pair("DT_RELA", rela, relasz)?;
    d.rel = pair("DT_REL", rel, relsz)?;
    d.jmprel = pair("DT_JMPREL", jmprel, pltrelsz)?;
    d.relr = pair("DT_RELR", relr, relrsz)?;
    d.init_array = pair("DT_INIT_ARRAY", init_array, init_arraysz)?;
    d.fini_array = pair("DT_FINI_ARRAY", fini_array, fini_arraysz)?;
    d.preinit_array = pair("DT_PREINIT_ARRAY", preinit_array, preinit_arraysz)?;
    Ok(d)
}

/// Check that every table the dynamic section names lies inside a loaded
/// segment. Tables whose size is not in the dynamic section (symbols, hash
/// tables, versions) are checked when they are parsed.
pub(crate) fn check_tables(image: &Image, d: &DynInfo) -> Result<(), String> {
    let check = |name: &str, t: Option<Table>| -> Result<(), String> {
        if let Some(t) = t {
            if t.size > 0 && !image.contains(image.addr(t.vaddr), t.size as usize) {
                return Err(format!(
                    "{name} at {:#x} (+{:#x}) lies outside the loaded segments",
                    t.vaddr, t.size
                ));
            }
        }
        Ok(())
    };
    check("DT_STRTAB", d.strtab)?;
    check("DT_RELA", d.rela)?;
    check("DT_JMPREL", d.jmprel)?;
    check("DT_RELR", d.relr)?;
    check("DT_INIT_ARRAY", d.init_array)?;
    check("DT_FINI_ARRAY", d.fini_array)?;
    for (name, v) in [("DT_INIT", d.init), ("DT_FINI", d.fini)] {
        if let Some(v) = v {
            if !image.contains(image.addr(v), 1) {
                return Err(format!("{name} at {v:#x} lies outside the loaded segments"));
            }
        }
    }
    for (name, t, align) in [
        ("DT_RELA", d.rela, 8u64),
        ("DT_JMPREL", d.jmprel, 8),
        ("DT_RELR", d.relr, 8),
        ("DT_INIT_ARRAY", d.init_array, 8),
        ("DT_FINI_ARRAY", d.fini_array, 8),
    ] {
        if let Some(t) = t {
            if t.size % align != 0 {
                return Err(format!(
                    "{name} size {:#x} is not a multiple of its entry size",
                    t.size
                ));
            }
        }
    }
    if let Some(ent) = d.relaent {
        if ent != std::mem::size_of::<super::Rela>() as u64 {
            return Err(format!("DT_RELAENT is {ent}, expected 24"));
        }
    }
    if let Some(ent) = d.syment {
        if ent != std::mem::size_of::<super::Sym>() as u64 {
            return Err(format!("DT_SYMENT is {ent}, expected 24"));
        }
    }
    if let Some(ent) = d.relrent {
        if ent != 8 {
            return Err(format!("DT_RELRENT is {ent}, expected 8"));
        }
    }
    Ok(())
}
