//! Typed, bounds-checked views of ELF data.
//!
//! Two sources feed these views: the file header and program headers read
//! from a file before anything is mapped ([`header`]), and the dynamic
//! section, symbol, hash and version tables of an object once it is in
//! memory ([`image`], [`dynamic`], [`symbols`], [`versions`]). Every offset
//! and count that comes from the object is checked before it is used.

pub(crate) mod dynamic;
pub(crate) mod hash;
pub(crate) mod header;
pub(crate) mod image;
pub(crate) mod symbols;
pub(crate) mod versions;

pub(crate) use object::elf;

/// x86_64 is little-endian; `object`'s field accessors take the byte order.
pub(crate) type E = object::LittleEndian;
pub(crate) const LE: E = object::LittleEndian;

pub(crate) type Ehdr = elf::FileHeader64<E>;
pub(crate) type Phdr = elf::ProgramHeader64<E>;
pub(crate) type Dyn = elf::Dyn64<E>;
pub(crate) type Sym = elf::Sym64<E>;
pub(crate) type Rela = elf::Rela64<E>;

/// The page size this loader maps with (x86_64 base pages).
pub(crate) const PAGE_SIZE: usize = 4096;

pub(crate) fn page_down(v: usize) -> usize {
    v & !(PAGE_SIZE - 1)
}

pub(crate) fn page_up(v: usize) -> Option<usize> {
    v.checked_add(PAGE_SIZE - 1).map(page_down)
}

/// The parts of a symbol table entry the loader looks at, decoded once.
pub(crate) trait SymExt {
    fn name_offset(&self) -> usize;
    fn value(&self) -> u64;
    fn size(&self) -> u64;
    fn shndx(&self) -> u16;
    fn bind(&self) -> u8;
    fn kind(&self) -> u8;
    fn visibility(&self) -> u8;
    fn is_undefined(&self) -> bool {
        self.shndx() == elf::SHN_UNDEF
    }
    /// Hidden and internal symbols bind inside their object and are never
    /// found by a lookup from elsewhere.
    fn binds_locally(&self) -> bool {
        matches!(self.visibility(), elf::STV_HIDDEN | elf::STV_INTERNAL)
    }
    /// `st_info`, `st_other` and `st_shndx` in one word, in that order from
    /// the lowest byte, for tests of several of them at once.
    fn class_word(&self) -> u32;
    /// An undefined reference, global or weak, of default visibility (the
    /// fast lane's; any type): `shndx`, `bind` and `visibility` tested at
    /// once.
    #[inline(always)]
    fn is_plain_reference(&self) -> bool {
        // The shndx (0), the visibility bits (0) and the binding (1 or 2).
        let w = self.class_word() & 0xffff_03f0;
        w == u32::from(elf::STB_GLOBAL) << 4 || w == u32::from(elf::STB_WEAK) << 4
    }
    /// A definition a plain lookup takes without more questions: a
    /// function, object or untyped symbol, global or weak, not hidden or
    /// internal, in a section and not absolute (the value is tested
    /// apart).
    #[inline(always)]
    fn is_plain_definition(&self) -> bool {
        let w = self.class_word();
        // Types 0 to 2 (NOTYPE, OBJECT, FUNC) of binding 1 or 2: the
        // `st_info` values 0x10 to 0x12 and 0x20 to 0x22, bits of a mask.
        let info = (w & 0xff).wrapping_sub(0x10);
        let plain_info = info < 32 && (0x0007_0007u32 >> info) & 1 != 0;
        // Visibility 0 (default) or 3 (protected): (v + 1) & 2 is 0.
        let visible = ((w >> 8) + 1) & 2 == 0;
        let shndx = w >> 16;
        plain_info
            && visible
            && shndx != u32::from(elf::SHN_UNDEF)
            && shndx != u32::from(elf::SHN_ABS)
    }
}

impl SymExt for Sym {
    fn name_offset(&self) -> usize {
        self.st_name.get(LE) as usize
    }
    fn value(&self) -> u64 {
        self.st_value.get(LE)
    }
    fn size(&self) -> u64 {
        self.st_size.get(LE)
    }
    fn shndx(&self) -> u16 {
        self.st_shndx.get(LE)
    }
    fn bind(&self) -> u8 {
        self.st_info >> 4
    }
    fn kind(&self) -> u8 {
        self.st_info & 0xf
    }
    fn visibility(&self) -> u8 {
        self.st_other & 0x3
    }
    #[inline(always)]
    fn class_word(&self) -> u32 {
        u32::from(self.st_info)
            | u32::from(self.st_other) << 8
            | u32::from(self.st_shndx.get(LE)) << 16
    }
}
