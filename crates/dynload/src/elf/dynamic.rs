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

/// Declares optional values a `DynInfo` keeps in `$field`, slot by slot,
/// each read through a method of its name; their presence bits start at
/// `$first_bit` of `present`.
macro_rules! optional {
    ($field:ident[$slots:ident] at bit $first_bit:literal: $ty:ty { $($name:ident,)* }) => {
        /// The slots of the values of this kind.
        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy)]
        pub(crate) enum $slots {
            $($name,)*
        }
        impl $slots {
            const COUNT: usize = [$($slots::$name,)*].len();
            const FIRST_BIT: u32 = $first_bit;
        }
        impl DynInfo {
            $(
                pub(crate) fn $name(&self) -> Option<$ty> {
                    let slot = $slots::$name as usize;
                    let bit = $slots::FIRST_BIT + slot as u32;
                    (self.present & (1 << bit) != 0).then(|| self.$field[slot])
                }
            )*
        }
    };
}

/// The decoded dynamic section of one object. Addresses are file virtual
/// addresses (add the load bias for absolute ones); strings are offsets into
/// the string table.
///
/// Every loaded object keeps one for its lifetime, so the optional values
/// are stored as presence bits and plain slots, not as `Option`s (which
/// take 16 bytes for a u64): 304 bytes instead of 536.
#[derive(Debug, Clone, Default)]
pub(crate) struct DynInfo {
    pub needed: Vec<u64>,
    values: [u64; DynValue::COUNT],
    tables: [Table; DynTable::COUNT],
    /// Which slots of `values` and `tables` are present (see `optional!`).
    present: u64,
    pub relacount: u64,
    pub flags: u64,
    pub flags_1: u64,
    pub symbolic: bool,
    pub textrel: bool,
    pub bind_now: bool,
    /// DT_FILTER / DT_AUXILIARY (filters), which dynload does not support.
    pub filter: bool,
}

optional!(values[DynValue] at bit 0: u64 {
    soname,
    rpath,
    runpath,
    symtab,
    syment,
    hash,
    gnu_hash,
    versym,
    verdef,
    verneed,
    relaent,
    pltrel,
    pltgot,
    relrent,
    init,
    fini,
});

optional!(tables[DynTable] at bit 32: Table {
    strtab,
    rela,
    rel,
    jmprel,
    relr,
    init_array,
    fini_array,
});

impl DynInfo {
    pub(crate) fn set_value(&mut self, slot: DynValue, v: u64) {
        self.values[slot as usize] = v;
        self.present |= 1 << (DynValue::FIRST_BIT + slot as u32);
    }

    pub(crate) fn set_table(&mut self, slot: DynTable, t: Option<Table>) {
        if let Some(t) = t {
            self.tables[slot as usize] = t;
            self.present |= 1 << (DynTable::FIRST_BIT + slot as u32);
        }
    }
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
            elf::DT_SONAME => d.set_value(DynValue::soname, val),
            elf::DT_RPATH => d.set_value(DynValue::rpath, val),
            elf::DT_RUNPATH => d.set_value(DynValue::runpath, val),
            elf::DT_STRTAB => strtab = Some(ptr(val)),
            elf::DT_STRSZ => strsz = Some(val),
            elf::DT_SYMTAB => d.set_value(DynValue::symtab, ptr(val)),
            elf::DT_SYMENT => d.set_value(DynValue::syment, val),
            elf::DT_HASH => d.set_value(DynValue::hash, ptr(val)),
            elf::DT_GNU_HASH => d.set_value(DynValue::gnu_hash, ptr(val)),
            elf::DT_VERSYM => d.set_value(DynValue::versym, ptr(val)),
            elf::DT_VERDEF => d.set_value(DynValue::verdef, ptr(val)),
            elf::DT_VERNEED => d.set_value(DynValue::verneed, ptr(val)),
            elf::DT_RELA => rela = Some(ptr(val)),
            elf::DT_RELASZ => relasz = Some(val),
            elf::DT_RELAENT => d.set_value(DynValue::relaent, val),
            elf::DT_RELACOUNT => d.relacount = val,
            elf::DT_REL => rel = Some(ptr(val)),
            elf::DT_RELSZ => relsz = Some(val),
            elf::DT_JMPREL => jmprel = Some(ptr(val)),
            elf::DT_PLTRELSZ => pltrelsz = Some(val),
            elf::DT_PLTREL => d.set_value(DynValue::pltrel, val),
            elf::DT_PLTGOT => d.set_value(DynValue::pltgot, ptr(val)),
            elf::DT_INIT => d.set_value(DynValue::init, ptr(val)),
            elf::DT_FINI => d.set_value(DynValue::fini, ptr(val)),
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
            _ if tag == DT_RELRENT => d.set_value(DynValue::relrent, val),
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
    d.set_table(DynTable::strtab, pair("DT_STRTAB", strtab, strsz)?);
    d.set_table(DynTable::rela, pair("DT_RELA", rela, relasz)?);
    d.set_table(DynTable::rel, pair("DT_REL", rel, relsz)?);
    d.set_table(DynTable::jmprel, pair("DT_JMPREL", jmprel, pltrelsz)?);
    d.set_table(DynTable::relr, pair("DT_RELR", relr, relrsz)?);
    d.set_table(
        DynTable::init_array,
        pair("DT_INIT_ARRAY", init_array, init_arraysz)?,
    );
    d.set_table(
        DynTable::fini_array,
        pair("DT_FINI_ARRAY", fini_array, fini_arraysz)?,
    );
    // (Checked, not kept: only executables have one, and run it.)
    pair("DT_PREINIT_ARRAY", preinit_array, preinit_arraysz)?;
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
    check("DT_STRTAB", d.strtab())?;
    check("DT_RELA", d.rela())?;
    check("DT_JMPREL", d.jmprel())?;
    check("DT_RELR", d.relr())?;
    check("DT_INIT_ARRAY", d.init_array())?;
    check("DT_FINI_ARRAY", d.fini_array())?;
    for (name, v) in [("DT_INIT", d.init()), ("DT_FINI", d.fini())] {
        if let Some(v) = v {
            if !image.contains(image.addr(v), 1) {
                return Err(format!("{name} at {v:#x} lies outside the loaded segments"));
            }
        }
    }
    for (name, t, align) in [
        ("DT_RELA", d.rela(), 8u64),
        ("DT_JMPREL", d.jmprel(), 8),
        ("DT_RELR", d.relr(), 8),
        ("DT_INIT_ARRAY", d.init_array(), 8),
        ("DT_FINI_ARRAY", d.fini_array(), 8),
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
    if let Some(ent) = d.relaent() {
        if ent != std::mem::size_of::<super::Rela>() as u64 {
            return Err(format!("DT_RELAENT is {ent}, expected 24"));
        }
    }
    if let Some(ent) = d.syment() {
        if ent != std::mem::size_of::<super::Sym>() as u64 {
            return Err(format!("DT_SYMENT is {ent}, expected 24"));
        }
    }
    if let Some(ent) = d.relrent() {
        if ent != 8 {
            return Err(format!("DT_RELRENT is {ent}, expected 8"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::Phdr;
    use object::{U32, U64};

    /// Parse a dynamic section of `entries` (DT_NULL added) lying in one
    /// readable segment.
    fn parse_entries(entries: &[(u32, u64)]) -> Result<DynInfo, String> {
        let mut mem = vec![0u64; 512];
        for (i, &(tag, val)) in entries.iter().enumerate() {
            mem[2 * i] = u64::from(tag);
            mem[2 * i + 1] = val;
        }
        let base = mem.as_ptr() as usize;
        let phdr = Phdr {
            p_type: U32::new(LE, elf::PT_LOAD),
            p_flags: U32::new(LE, elf::PF_R),
            p_offset: U64::new(LE, 0),
            p_vaddr: U64::new(LE, 0),
            p_paddr: U64::new(LE, 0),
            p_filesz: U64::new(LE, 4096),
            p_memsz: U64::new(LE, 4096),
            p_align: U64::new(LE, 4096),
        };
        // SAFETY: the segment is `mem`, alive until the parse returns.
        let image = unsafe { Image::new(base, &[phdr]) };
        parse(&image, base, (entries.len() + 1) * 16, false)
    }

    #[test]
    fn values_are_present_exactly_when_their_tag_is() {
        let d = parse_entries(&[
            (elf::DT_SONAME, 0),
            (elf::DT_INIT, 0x100),
            (elf::DT_STRTAB, 0x200),
            (elf::DT_STRSZ, 0x10),
            (elf::DT_FINI_ARRAY, 0x300),
            (elf::DT_FINI_ARRAYSZ, 0x18),
            (elf::DT_INIT_ARRAYSZ, 0x8),
            (DT_RELRENT as u32, 8),
        ])
        .unwrap();
        // Present, whatever the value (0 included).
        assert_eq!(d.soname(), Some(0));
        assert_eq!(d.init(), Some(0x100));
        assert_eq!(d.relrent(), Some(8));
        let table = |vaddr, size| Some(Table { vaddr, size });
        assert_eq!(d.strtab(), table(0x200, 0x10));
        assert_eq!(d.fini_array(), table(0x300, 0x18));
        // Absent: a size alone makes no table.
        assert_eq!(d.init_array(), None);
        for absent in [d.rpath(), d.runpath(), d.symtab(), d.fini(), d.pltgot()] {
            assert_eq!(absent, None);
        }
        assert_eq!(d.rela(), None);

        let e = parse_entries(&[(elf::DT_RELA, 0x400)]).unwrap_err();
        assert_eq!(e, "DT_RELA without its size");
    }
}
