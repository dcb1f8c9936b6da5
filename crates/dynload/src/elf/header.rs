//! The ELF file header and program headers, read from a file before any of
//! it is mapped, and the checks glibc's `open_verify` makes on them.

use super::{elf, Ehdr, Phdr, LE};

/// How many bytes of a file are read up front: enough for the ELF header
/// and, in practice, the program headers (glibc reads 832 bytes).
pub(crate) const HEADER_READ: usize = 832;

/// Why a file is not a loadable x86_64 ELF object, in glibc's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeaderProblem {
    TooShort,
    BadMagic,
    /// An ELFCLASS32 file: the search goes on, and only if nothing else is
    /// found does glibc report `wrong ELF class: ELFCLASS32`.
    WrongClass,
    WrongEncoding,
    IdentVersion,
    OsAbi,
    AbiVersion,
    Padding,
    Version,
    /// Another machine's object: skipped during a search like glibc does.
    WrongMachine,
    NotDynOrExec,
    PhentSize,
}

impl HeaderProblem {
    /// glibc's error string for this problem.
    pub(crate) fn message(self) -> &'static str {
        match self {
            HeaderProblem::TooShort => "file too short",
            HeaderProblem::BadMagic => "invalid ELF header",
            HeaderProblem::WrongClass => "wrong ELF class: ELFCLASS32",
            HeaderProblem::WrongEncoding => "ELF file data encoding not little-endian",
            HeaderProblem::IdentVersion => "ELF file version ident does not match current one",
            HeaderProblem::OsAbi => "ELF file OS ABI invalid",
            HeaderProblem::AbiVersion => "ELF file ABI version invalid",
            HeaderProblem::Padding => "nonzero padding in e_ident",
            HeaderProblem::Version => "ELF file version does not match current one",
            HeaderProblem::WrongMachine => "cannot open shared object file",
            HeaderProblem::NotDynOrExec => "only ET_DYN and ET_EXEC can be loaded",
            HeaderProblem::PhentSize => "ELF file's phentsize not the expected size",
        }
    }

    /// Problems that make a search skip the file and continue, as glibc.
    pub(crate) fn skips_in_search(self) -> bool {
        matches!(
            self,
            HeaderProblem::WrongClass | HeaderProblem::WrongMachine
        )
    }
}

/// The checked ELF header of a file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FileHeader {
    pub e_type: u16,
    pub entry: u64,
    pub phoff: u64,
    pub phnum: u16,
}

/// Check the identification bytes and header fields, in glibc's order.
pub(crate) fn check(buf: &[u8]) -> Result<FileHeader, HeaderProblem> {
    if buf.len() < std::mem::size_of::<Ehdr>() {
        return Err(HeaderProblem::TooShort);
    }
    let (ehdr, _) = object::pod::from_bytes::<Ehdr>(buf).map_err(|()| HeaderProblem::TooShort)?;
    let id = &ehdr.e_ident;
    let osabi_ok = id.os_abi == elf::ELFOSABI_SYSV || id.os_abi == elf::ELFOSABI_GNU;
    // glibc accepts ABI version 0, and for ELFOSABI_GNU the versions it
    // knows (1 = unique symbols and IFUNC, 2 = ABSOLUTE symbols).
    let abiversion_ok =
        id.abi_version == 0 || (id.os_abi == elf::ELFOSABI_GNU && id.abi_version < 3);
    if id.magic != elf::ELFMAG {
        return Err(HeaderProblem::BadMagic);
    }
    if id.class != elf::ELFCLASS64 {
        return Err(HeaderProblem::WrongClass);
    }
    if id.data != elf::ELFDATA2LSB {
        return Err(HeaderProblem::WrongEncoding);
    }
    if id.version != elf::EV_CURRENT {
        return Err(HeaderProblem::IdentVersion);
    }
    if !osabi_ok {
        return Err(HeaderProblem::OsAbi);
    }
    if !abiversion_ok {
        return Err(HeaderProblem::AbiVersion);
    }
    if id.padding.iter().any(|&b| b != 0) {
        return Err(HeaderProblem::Padding);
    }
    if ehdr.e_version.get(LE) != u32::from(elf::EV_CURRENT) {
        return Err(HeaderProblem::Version);
    }
    if ehdr.e_machine.get(LE) != elf::EM_X86_64 {
        return Err(HeaderProblem::WrongMachine);
    }
    let e_type = ehdr.e_type.get(LE);
    if e_type != elf::ET_DYN && e_type != elf::ET_EXEC {
        return Err(HeaderProblem::NotDynOrExec);
    }
    if usize::from(ehdr.e_phentsize.get(LE)) != std::mem::size_of::<Phdr>() {
        return Err(HeaderProblem::PhentSize);
    }
    Ok(FileHeader {
        e_type,
        entry: ehdr.e_entry.get(LE),
        phoff: ehdr.e_phoff.get(LE),
        phnum: ehdr.e_phnum.get(LE),
    })
}

/// Decode `count` program headers from `bytes`.
pub(crate) fn program_headers(bytes: &[u8], count: usize) -> Option<Vec<Phdr>> {
    let (slice, _) = object::pod::slice_from_bytes::<Phdr>(bytes, count).ok()?;
    Some(slice.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> Vec<u8> {
        let mut b = vec![0u8; 64];
        b[..4].copy_from_slice(&elf::ELFMAG);
        b[4] = elf::ELFCLASS64;
        b[5] = elf::ELFDATA2LSB;
        b[6] = elf::EV_CURRENT;
        b[16..18].copy_from_slice(&elf::ET_DYN.to_le_bytes());
        b[18..20].copy_from_slice(&elf::EM_X86_64.to_le_bytes());
        b[20..24].copy_from_slice(&1u32.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b
    }

    #[test]
    fn accepts_minimal_header() {
        assert!(check(&minimal()).is_ok());
    }

    #[test]
    fn each_problem_in_glibc_order() {
        assert_eq!(
            check(&minimal()[..40]).unwrap_err(),
            HeaderProblem::TooShort
        );
        let mut b = minimal();
        b[0] = 0;
        b[4] = 1; // also wrong class, but the magic is checked first
        assert_eq!(check(&b).unwrap_err(), HeaderProblem::BadMagic);
        let mut b = minimal();
        b[4] = elf::ELFCLASS32;
        assert_eq!(check(&b).unwrap_err(), HeaderProblem::WrongClass);
        let mut b = minimal();
        b[5] = elf::ELFDATA2MSB;
        assert_eq!(check(&b).unwrap_err(), HeaderProblem::WrongEncoding);
        let mut b = minimal();
        b[7] = 9;
        assert_eq!(check(&b).unwrap_err(), HeaderProblem::OsAbi);
        let mut b = minimal();
        b[8] = 1;
        assert_eq!(check(&b).unwrap_err(), HeaderProblem::AbiVersion);
        let mut b = minimal();
        b[12] = 1;
        assert_eq!(check(&b).unwrap_err(), HeaderProblem::Padding);
        let mut b = minimal();
        b[18] = 3; // EM_386
        b[19] = 0;
        assert_eq!(check(&b).unwrap_err(), HeaderProblem::WrongMachine);
        let mut b = minimal();
        b[16] = elf::ET_REL as u8;
        assert_eq!(check(&b).unwrap_err(), HeaderProblem::NotDynOrExec);
        let mut b = minimal();
        b[54] = 32;
        assert_eq!(check(&b).unwrap_err(), HeaderProblem::PhentSize);
    }
}
