//! Debuggers: GDB (and LLDB) learn about shared objects from glibc's
//! `_r_debug` list, which dynload must not write. They also read the JIT
//! interface (`__jit_debug_descriptor`, a breakpoint on
//! `__jit_debug_register_code`), which takes in-memory ELF files whose
//! sections and symbols carry run-time addresses. For each of its objects
//! dynload hands them such a file: the code range, a copy of `.eh_frame`
//! (so they can unwind through the object) and the function symbols of its
//! `.dynsym` and, read from the file on disk, its `.symtab`. `bt` then names
//! the frames of dynload's objects.
//!
//! Building those files costs time and memory, so it happens only while a
//! debugger watches (its breakpoint is in `__jit_debug_register_code`;
//! objects loaded before it attached are described at the next load) or
//! when `DYNLOAD_GDB=1` asks for it always; `DYNLOAD_GDB=0` turns it off.

use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;

use object::endian::{U16, U32, U64};
use object::pod::bytes_of;

use crate::elf::{elf, Ehdr, Sym, SymExt, LE};

type Shdr = elf::SectionHeader64<crate::elf::E>;
use crate::object::{ObjId, Object};

#[repr(C)]
struct JitCodeEntry {
    next: *mut JitCodeEntry,
    prev: *mut JitCodeEntry,
    symfile_addr: *const u8,
    symfile_size: u64,
}

/// GDB's `struct jit_descriptor` (gdb/jit.h): version 1.
#[repr(C)]
pub struct JitDescriptor {
    version: u32,
    action_flag: u32,
    relevant_entry: *mut JitCodeEntry,
    first_entry: *mut JitCodeEntry,
}

const JIT_REGISTER_FN: u32 = 1;
const JIT_UNREGISTER_FN: u32 = 2;

// The descriptor debuggers read and the function they break on (names and
// layout fixed by GDB). Defined in assembly to be hidden — kept out of
// libdynload.so's dynamic symbols, so that another JIT in the process (LLVM
// has its own pair) keeps binding to its own — and weak, so that a program
// linking dynload and another JIT statically still links. Debuggers find
// them in each object's symbol table.
std::arch::global_asm!(
    ".pushsection .text.__jit_debug_register_code,\"ax\",@progbits",
    ".weak __jit_debug_register_code",
    ".hidden __jit_debug_register_code",
    ".type __jit_debug_register_code,@function",
    "__jit_debug_register_code:",
    "    nop",
    "    ret",
    ".size __jit_debug_register_code, . - __jit_debug_register_code",
    ".popsection",
    ".pushsection .data.__jit_debug_descriptor,\"aw\",@progbits",
    ".weak __jit_debug_descriptor",
    ".hidden __jit_debug_descriptor",
    ".type __jit_debug_descriptor,@object",
    ".balign 8",
    "__jit_debug_descriptor:",
    "    .long 1",
    "    .long 0",
    "    .quad 0",
    "    .quad 0",
    ".size __jit_debug_descriptor, 24",
    ".popsection",
);

unsafe extern "C" {
    static mut __jit_debug_descriptor: JitDescriptor;
    fn __jit_debug_register_code();
}

/// Tell a debugger that the descriptor changed.
fn notify() {
    // SAFETY: the assembly function above: nop, ret.
    unsafe { __jit_debug_register_code() };
}

struct Described {
    entry: Box<JitCodeEntry>,
    _file: Vec<u8>,
}

// SAFETY: the raw pointers point into the record's own heap data; records
// are only used under the `DESCRIBED` lock (and the loader lock).
unsafe impl Send for Described {}

static DESCRIBED: Mutex<Option<HashMap<ObjId, Described>>> = Mutex::new(None);

/// Is a debugger watching? Its software breakpoint (int3) sits on the first
/// byte of `__jit_debug_register_code` while the program runs.
fn watched() -> bool {
    match crate::process::settings().gdb {
        Some(on) => on,
        // SAFETY: reads one byte of this function's own code.
        None => unsafe { *(__jit_debug_register_code as *const () as *const u8) == 0xcc },
    }
}

/// Describe `objects` (newly loaded ones, or all on the first call while
/// watched) to debuggers. Called under the loader lock.
pub(crate) fn describe<'a>(objects: impl Iterator<Item = &'a Object>) {
    if !watched() {
        return;
    }
    let mut guard = DESCRIBED.lock().unwrap_or_else(|p| p.into_inner());
    let described = guard.get_or_insert_with(HashMap::new);
    for obj in objects {
        if described.contains_key(&obj.id) {
            continue;
        }
        let file = symbol_file(obj);
        let mut entry = Box::new(JitCodeEntry {
            next: std::ptr::null_mut(),
            prev: std::ptr::null_mut(),
            symfile_addr: file.as_ptr(),
            symfile_size: file.len() as u64,
        });
        // SAFETY: the descriptor is only changed here and in `forget`, both
        // under DESCRIBED's lock; entries live until unlinked.
        unsafe {
            let d = &raw mut __jit_debug_descriptor;
            entry.next = (*d).first_entry;
            if !entry.next.is_null() {
                (*entry.next).prev = &mut *entry;
            }
            (*d).first_entry = &mut *entry;
            (*d).relevant_entry = &mut *entry;
            (*d).action_flag = JIT_REGISTER_FN;
        }
        notify();
        described.insert(obj.id, Described { entry, _file: file });
    }
}

/// Withdraw an object's description before it is unmapped.
pub(crate) fn forget(id: ObjId) {
    let mut guard = DESCRIBED.lock().unwrap_or_else(|p| p.into_inner());
    let Some(mut gone) = guard.as_mut().and_then(|m| m.remove(&id)) else {
        return;
    };
    // SAFETY: as in `describe`; the entry is unlinked before it is freed.
    unsafe {
        let d = &raw mut __jit_debug_descriptor;
        let e: *mut JitCodeEntry = &mut *gone.entry;
        if (*e).prev.is_null() {
            (*d).first_entry = (*e).next;
        } else {
            (*(*e).prev).next = (*e).next;
        }
        if !(*e).next.is_null() {
            (*(*e).next).prev = (*e).prev;
        }
        (*d).relevant_entry = e;
        (*d).action_flag = JIT_UNREGISTER_FN;
    }
    notify();
    drop(gone);
}

/// A function symbol at its run-time address.
struct Func {
    addr: usize,
    size: u64,
    name: Vec<u8>,
}

/// The in-memory ELF file for `obj`: `.text` (no bits) over its code,
/// `.eh_frame` copied at its run-time address, and `.symtab`.
fn symbol_file(obj: &Object) -> Vec<u8> {
    let base = obj.view.image.base;
    // SAFETY: `phdr` points to the object's `phnum` program headers, kept
    // alive with the object.
    let phdrs = unsafe { std::slice::from_raw_parts(obj.phdr, obj.phnum) };
    let code: Vec<(usize, usize)> = phdrs
        .iter()
        .filter(|p| p.p_type.get(LE) == elf::PT_LOAD && p.p_flags.get(LE) & elf::PF_X != 0)
        .map(|p| {
            let s = base.wrapping_add(p.p_vaddr.get(LE) as usize);
            (s, s.wrapping_add(p.p_memsz.get(LE) as usize))
        })
        .collect();
    let text = match (
        code.iter().map(|c| c.0).min(),
        code.iter().map(|c| c.1).max(),
    ) {
        (Some(s), Some(e)) if s < e => (s, e),
        _ => (obj.map_start, obj.map_start),
    };
    let eh_frame = crate::unwind::eh_frame_hdr(obj)
        .and_then(|h| crate::unwind::eh_frame_of(&obj.view.image, h).ok())
        .and_then(|(s, len)| Some((s, obj.view.image.bytes(s, len)?)));

    let mut funcs: Vec<Func> = Vec::new();
    for (_, sym) in obj.view.symbols.iter() {
        if sym.kind() == elf::STT_FUNC && !sym.is_undefined() {
            funcs.push(Func {
                addr: obj.view.symbols.address(sym),
                size: sym.size(),
                name: obj.view.symbols.name(sym).to_vec(),
            });
        }
    }
    funcs.extend(file_symtab(obj.name.to_bytes(), base));
    funcs.retain(|f| !f.name.is_empty() && text.0 <= f.addr && f.addr < text.1);
    funcs.sort_by(|a, b| (a.addr, &a.name).cmp(&(b.addr, &b.name)));
    funcs.dedup_by(|a, b| a.addr == b.addr && a.name == b.name);

    // Layout: header, .eh_frame bytes, .symtab, .strtab, .shstrtab,
    // section headers; built from `object`'s ELF structures.
    const SHSTRTAB: &[u8] = b"\0.text\0.eh_frame\0.symtab\0.strtab\0.shstrtab\0";
    let name_at = |n: &[u8]| -> u32 {
        SHSTRTAB
            .windows(n.len())
            .position(|w| w == n)
            .expect("section name") as u32
    };
    let align8 = |v: &mut Vec<u8>| v.resize(v.len().div_ceil(8) * 8, 0);
    let mut out = vec![0u8; std::mem::size_of::<Ehdr>()];
    let eh_off = out.len();
    if let Some((_, bytes)) = eh_frame {
        out.extend_from_slice(bytes);
    }
    let eh_len = out.len() - eh_off;
    align8(&mut out);
    let mut strtab = vec![0u8];
    let sym_off = out.len();
    out.extend_from_slice(bytes_of(&Sym::default()));
    for f in &funcs {
        let sym = Sym {
            st_name: U32::new(LE, strtab.len() as u32),
            st_info: (elf::STB_GLOBAL << 4) | elf::STT_FUNC,
            st_other: 0,
            st_shndx: U16::new(LE, 1),
            st_value: U64::new(LE, f.addr as u64),
            st_size: U64::new(LE, f.size),
        };
        strtab.extend_from_slice(&f.name);
        strtab.push(0);
        out.extend_from_slice(bytes_of(&sym));
    }
    let sym_len = out.len() - sym_off;
    let str_off = out.len();
    out.extend_from_slice(&strtab);
    let shstr_off = out.len();
    out.extend_from_slice(SHSTRTAB);
    align8(&mut out);
    let shoff = out.len();
    #[allow(clippy::too_many_arguments)]
    fn section(
        name: u32,
        kind: u32,
        flags: u32,
        addr: usize,
        offset: usize,
        size: usize,
        link: u32,
        info: u32,
        entsize: u64,
    ) -> Shdr {
        Shdr {
            sh_name: U32::new(LE, name),
            sh_type: U32::new(LE, kind),
            sh_flags: U64::new(LE, u64::from(flags)),
            sh_addr: U64::new(LE, addr as u64),
            sh_offset: U64::new(LE, offset as u64),
            sh_size: U64::new(LE, size as u64),
            sh_link: U32::new(LE, link),
            sh_info: U32::new(LE, info),
            sh_addralign: U64::new(LE, 8),
            sh_entsize: U64::new(LE, entsize),
        }
    }
    let eh_addr = eh_frame.map_or(0, |(a, _)| a);
    let mut null = section(0, 0, 0, 0, 0, 0, 0, 0, 0);
    null.sh_addralign = U64::new(LE, 0);
    let sections = [
        null,
        section(
            name_at(b".text\0"),
            elf::SHT_NOBITS,
            elf::SHF_ALLOC | elf::SHF_EXECINSTR,
            text.0,
            0,
            text.1 - text.0,
            0,
            0,
            0,
        ),
        section(
            name_at(b".eh_frame\0"),
            elf::SHT_PROGBITS,
            elf::SHF_ALLOC,
            eh_addr,
            eh_off,
            eh_len,
            0,
            0,
            0,
        ),
        section(
            name_at(b".symtab\0"),
            elf::SHT_SYMTAB,
            0,
            0,
            sym_off,
            sym_len,
            4,
            1,
            std::mem::size_of::<Sym>() as u64,
        ),
        section(
            name_at(b".strtab\0"),
            elf::SHT_STRTAB,
            0,
            0,
            str_off,
            strtab.len(),
            0,
            0,
            0,
        ),
        section(
            name_at(b".shstrtab\0"),
            elf::SHT_STRTAB,
            0,
            0,
            shstr_off,
            SHSTRTAB.len(),
            0,
            0,
            0,
        ),
    ];
    for sh in &sections {
        out.extend_from_slice(bytes_of(sh));
    }
    // ELF64, little-endian, ET_EXEC (symbol values and section addresses
    // are absolute), x86-64.
    let header = Ehdr {
        e_ident: elf::Ident {
            magic: elf::ELFMAG,
            class: elf::ELFCLASS64,
            data: elf::ELFDATA2LSB,
            version: elf::EV_CURRENT,
            os_abi: 0,
            abi_version: 0,
            padding: [0; 7],
        },
        e_type: U16::new(LE, elf::ET_EXEC),
        e_machine: U16::new(LE, elf::EM_X86_64),
        e_version: U32::new(LE, u32::from(elf::EV_CURRENT)),
        e_entry: U64::new(LE, 0),
        e_phoff: U64::new(LE, 0),
        e_shoff: U64::new(LE, shoff as u64),
        e_flags: U32::new(LE, 0),
        e_ehsize: U16::new(LE, std::mem::size_of::<Ehdr>() as u16),
        e_phentsize: U16::new(LE, 0),
        e_phnum: U16::new(LE, 0),
        e_shentsize: U16::new(LE, std::mem::size_of::<Shdr>() as u16),
        e_shnum: U16::new(LE, sections.len() as u16),
        e_shstrndx: U16::new(LE, 5),
    };
    out[..std::mem::size_of::<Ehdr>()].copy_from_slice(bytes_of(&header));
    out
}

/// The defined function symbols of the file's `.symtab` (absent from
/// stripped files), at run-time addresses. Every size and offset is checked
/// against the file; any problem just means no symbols.
fn file_symtab(path: &[u8], base: usize) -> Vec<Func> {
    use std::os::unix::ffi::OsStrExt;
    let Ok(file) = std::fs::File::open(std::ffi::OsStr::from_bytes(path)) else {
        return Vec::new();
    };
    let Ok(len) = file.metadata().map(|m| m.len()) else {
        return Vec::new();
    };
    let read = |off: u64, n: u64| -> Option<Vec<u8>> {
        if n > 256 << 20 || off.checked_add(n)? > len {
            return None;
        }
        let mut v = vec![0u8; n as usize];
        file.read_exact_at(&mut v, off).ok()?;
        Some(v)
    };
    let go = || -> Option<Vec<Func>> {
        let head = read(0, std::mem::size_of::<Ehdr>() as u64)?;
        let ehdr: &Ehdr = object::pod::from_bytes(&head).ok()?.0;
        let shnum = usize::from(ehdr.e_shnum.get(LE));
        let shdr_bytes = read(
            ehdr.e_shoff.get(LE),
            (shnum * std::mem::size_of::<Shdr>()) as u64,
        )?;
        let shdrs: &[Shdr] = object::pod::slice_from_bytes(&shdr_bytes, shnum).ok()?.0;
        let symtab = shdrs
            .iter()
            .find(|s| s.sh_type.get(LE) == elf::SHT_SYMTAB)?;
        let strtab = shdrs.get(symtab.sh_link.get(LE) as usize)?;
        let sym_bytes = read(symtab.sh_offset.get(LE), symtab.sh_size.get(LE))?;
        let strs = read(strtab.sh_offset.get(LE), strtab.sh_size.get(LE))?;
        let count = sym_bytes.len() / std::mem::size_of::<Sym>();
        let syms: &[Sym] = object::pod::slice_from_bytes(&sym_bytes, count).ok()?.0;
        Some(
            syms.iter()
                .filter(|s| s.kind() == elf::STT_FUNC && !s.is_undefined())
                .filter_map(|s| {
                    let rest = strs.get(s.st_name.get(LE) as usize..)?;
                    let end = rest.iter().position(|&c| c == 0)?;
                    Some(Func {
                        addr: base.wrapping_add(s.st_value.get(LE) as usize),
                        size: s.st_size.get(LE),
                        name: rest[..end].to_vec(),
                    })
                })
                .collect(),
        )
    };
    go().unwrap_or_default()
}
