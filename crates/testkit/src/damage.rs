//! Damaged copies of a good fixture, for the tests of malformed input.

use std::path::Path;

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes(b[o..o + 2].try_into().unwrap())
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

/// Write a little-endian u64 at `o`.
pub fn put_u64(b: &mut [u8], o: usize, v: u64) {
    b[o..o + 8].copy_from_slice(&v.to_le_bytes());
}

/// File offsets of the program headers of type `kind`.
pub fn phdrs_of(b: &[u8], kind: u32) -> Vec<usize> {
    let phoff = u64_at(b, 32) as usize;
    (0..u16_at(b, 56) as usize)
        .map(|i| phoff + 56 * i)
        .filter(|&o| u32_at(b, o) == kind)
        .collect()
}

/// File offset of the first program header of `kind`.
pub fn phdr_of(b: &[u8], kind: u32) -> usize {
    phdrs_of(b, kind)[0]
}

/// File offset and size of the section named `name`.
pub fn section(b: &[u8], name: &str) -> (usize, usize) {
    find_section(b, name).unwrap_or_else(|| panic!("no section {name}"))
}

/// File offset and size of the program header table.
pub fn program_header_table(b: &[u8]) -> (usize, usize) {
    (u64_at(b, 32) as usize, 56 * u16_at(b, 56) as usize)
}

/// File offset and size of the section named `name`, if there is one.
pub fn find_section(b: &[u8], name: &str) -> Option<(usize, usize)> {
    let h = section_header(b, name)?;
    Some((u64_at(b, h + 24) as usize, u64_at(b, h + 32) as usize))
}

/// Address (as linked, before any load) and size of the section named
/// `name`.
pub fn section_address(b: &[u8], name: &str) -> (usize, usize) {
    let h = section_header(b, name).unwrap_or_else(|| panic!("no section {name}"));
    (u64_at(b, h + 16) as usize, u64_at(b, h + 32) as usize)
}

/// File offset of the header of the section named `name`.
fn section_header(b: &[u8], name: &str) -> Option<usize> {
    let shoff = u64_at(b, 40) as usize;
    let shnum = u16_at(b, 60) as usize;
    let shstrndx = u16_at(b, 62) as usize;
    let sh = |i: usize| shoff + 64 * i;
    let strtab = u64_at(b, sh(shstrndx) + 24) as usize;
    (0..shnum).map(sh).find(|&h| {
        let n = strtab + u32_at(b, h) as usize;
        let end = b[n..].iter().position(|&c| c == 0).unwrap();
        &b[n..n + end] == name.as_bytes()
    })
}

/// Change the type of the first relocation of type `from` in `.rela.dyn`.
pub fn retype_relocation(b: &mut [u8], from: u32, to: u32) {
    let (off, size) = section(b, ".rela.dyn");
    for e in (off..off + size).step_by(24) {
        if u32_at(b, e + 8) == from {
            b[e + 8..e + 12].copy_from_slice(&to.to_le_bytes());
            return;
        }
    }
    panic!("no relocation of type {from}");
}

/// Make the first `.rela.dyn` entry naming dynamic symbol `name` name
/// symbol 0 instead, keeping its type and addend.
pub fn unname_relocation(b: &mut [u8], name: &str) {
    let (syms, _) = section(b, ".dynsym");
    let index = ((dynsym_entry(b, name) - syms) / 24) as u64;
    let (off, size) = section(b, ".rela.dyn");
    for e in (off..off + size).step_by(24) {
        let info = u64_at(b, e + 8);
        if info >> 32 == index {
            put_u64(b, e + 8, info & 0xffff_ffff);
            return;
        }
    }
    panic!("no relocation names {name}");
}

/// File offsets of the `.rela.plt` entries (Elf64_Rela: r_offset, r_info,
/// r_addend).
pub fn plt_relocations(b: &[u8]) -> Vec<usize> {
    let (off, size) = section(b, ".rela.plt");
    (off..off + size).step_by(24).collect()
}

/// The file offset file virtual address `vaddr` is loaded from.
pub fn file_offset(b: &[u8], vaddr: u64) -> usize {
    phdrs_of(b, 1)
        .into_iter()
        .find_map(|o| {
            let (offset, at, filesz) = (u64_at(b, o + 8), u64_at(b, o + 16), u64_at(b, o + 32));
            (at <= vaddr && vaddr < at + filesz).then(|| (vaddr - at + offset) as usize)
        })
        .unwrap_or_else(|| panic!("{vaddr:#x} is not loaded from the file"))
}

/// Read a little-endian u64 at `o`.
pub fn get_u64(b: &[u8], o: usize) -> u64 {
    u64_at(b, o)
}

/// Write a copy of `good` changed by `f` to `dir/name.so`; returns its path.
pub fn variant(good: &str, dir: &Path, name: &str, f: impl FnOnce(&mut Vec<u8>)) -> String {
    let mut bytes = std::fs::read(good).unwrap();
    f(&mut bytes);
    let p = dir.join(format!("{name}.so"));
    std::fs::write(&p, bytes).unwrap();
    p.to_string_lossy().into_owned()
}

/// File offset of the `.dynsym` entry (an Elf64_Sym) named `name`.
pub fn dynsym_entry(b: &[u8], name: &str) -> usize {
    let (syms, size) = section(b, ".dynsym");
    let (strs, _) = section(b, ".dynstr");
    for e in (syms..syms + size).step_by(24) {
        let n = strs + u32_at(b, e) as usize;
        let end = b[n..].iter().position(|&c| c == 0).unwrap();
        if &b[n..n + end] == name.as_bytes() {
            return e;
        }
    }
    panic!("no dynamic symbol {name}");
}

/// Give dynamic symbol `name` type `stt`, keeping its binding.
pub fn retype_symbol(b: &mut [u8], name: &str, stt: u8) {
    let e = dynsym_entry(b, name);
    b[e + 4] = (b[e + 4] & 0xf0) | stt;
}

/// Make dynamic symbol `name` absolute (SHN_ABS) with value `value`.
pub fn make_absolute(b: &mut [u8], name: &str, value: u64) {
    let e = dynsym_entry(b, name);
    b[e + 6..e + 8].copy_from_slice(&0xfff1u16.to_le_bytes());
    put_u64(b, e + 8, value);
}

/// Set the value of dynamic symbol `name`.
pub fn set_symbol_value(b: &mut [u8], name: &str, value: u64) {
    let e = dynsym_entry(b, name);
    put_u64(b, e + 8, value);
}

/// File offset of the first `.dynamic` entry with tag `tag` (an Elf64_Dyn:
/// the tag, then the value at +8).
pub fn dynamic_entry(b: &[u8], tag: u64) -> usize {
    let (off, size) = section(b, ".dynamic");
    (off..off + size)
        .step_by(16)
        .find(|&e| u64_at(b, e) == tag)
        .unwrap_or_else(|| panic!("no dynamic entry with tag {tag}"))
}

/// The value of the first `.dynamic` entry with tag `tag`.
pub fn dynamic_value(b: &[u8], tag: u64) -> u64 {
    u64_at(b, dynamic_entry(b, tag) + 8)
}

/// Give dynamic symbol `name` visibility `stv` (STV_HIDDEN is 2).
pub fn set_symbol_visibility(b: &mut [u8], name: &str, stv: u8) {
    let e = dynsym_entry(b, name);
    b[e + 5] = (b[e + 5] & !3) | stv;
}

/// Give dynamic symbol `name` binding `stb` (STB_LOCAL is 0,
/// STB_GNU_UNIQUE 10), keeping its type.
pub fn set_symbol_binding(b: &mut [u8], name: &str, stb: u8) {
    let e = dynsym_entry(b, name);
    b[e + 4] = (stb << 4) | (b[e + 4] & 0xf);
}
