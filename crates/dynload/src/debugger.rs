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

use crate::elf::{elf, SymExt, LE};
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
        .and_then(|h| crate::unwind::eh_frame_of(obj, h).ok())
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
    // section headers.
    const SHSTRTAB: &[u8] = b"\0.text\0.eh_frame\0.symtab\0.strtab\0.shstrtab\0";
    let mut out = vec![0u8; 64];
    let align = |v: &mut Vec<u8>, a: usize| v.resize(v.len().div_ceil(a) * a, 0);
    let eh_off = out.len();
    if let Some((_, bytes)) = eh_frame {
        out.extend_from_slice(bytes);
    }
    let eh_len = out.len() - eh_off;
    align(&mut out, 8);
    let mut strtab = vec![0u8];
    let sym_off = out.len();
    out.extend_from_slice(&[0u8; 24]);
    for f in &funcs {
        let name = strtab.len() as u32;
        strtab.extend_from_slice(&f.name);
        strtab.push(0);
        out.extend_from_slice(&name.to_le_bytes());
        out.push((elf::STB_GLOBAL << 4) | elf::STT_FUNC);
        out.push(0);
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&(f.addr as u64).to_le_bytes());
        out.extend_from_slice(&f.size.to_le_bytes());
    }
    let sym_len = out.len() - sym_off;
    let str_off = out.len();
    out.extend_from_slice(&strtab);
    let shstr_off = out.len();
    out.extend_from_slice(SHSTRTAB);
    align(&mut out, 8);
    let shoff = out.len();
    let name_at = |n: &[u8]| {
        SHSTRTAB
            .windows(n.len())
            .position(|w| w == n)
            .expect("section name") as u32
    };
    let mut section = |name: u32,
                       kind: u32,
                       flags: u64,
                       addr: usize,
                       off: usize,
                       size: usize,
                       link: u32,
                       info: u32,
                       align: u64,
                       entsize: u64| {
        out.extend_from_slice(&name.to_le_bytes());
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&(addr as u64).to_le_bytes());
        out.extend_from_slice(&(off as u64).to_le_bytes());
        out.extend_from_slice(&(size as u64).to_le_bytes());
        out.extend_from_slice(&link.to_le_bytes());
        out.extend_from_slice(&info.to_le_bytes());
        out.extend_from_slice(&align.to_le_bytes());
        out.extend_from_slice(&entsize.to_le_bytes());
    };
    section(0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    let alloc = u64::from(elf::SHF_ALLOC);
    section(
        name_at(b".text\0"),
        elf::SHT_NOBITS,
        alloc | u64::from(elf::SHF_EXECINSTR),
        text.0,
        0,
        text.1 - text.0,
        0,
        0,
        16,
        0,
    );
    let eh_addr = eh_frame.map_or(0, |(a, _)| a);
    section(
        name_at(b".eh_frame\0"),
        elf::SHT_PROGBITS,
        alloc,
        eh_addr,
        eh_off,
        eh_len,
        0,
        0,
        8,
        0,
    );
    section(
        name_at(b".symtab\0"),
        elf::SHT_SYMTAB,
        0,
        0,
        sym_off,
        sym_len,
        4,
        1,
        8,
        24,
    );
    section(
        name_at(b".strtab\0"),
        elf::SHT_STRTAB,
        0,
        0,
        str_off,
        strtab.len(),
        0,
        0,
        1,
        0,
    );
    section(
        name_at(b".shstrtab\0"),
        elf::SHT_STRTAB,
        0,
        0,
        shstr_off,
        SHSTRTAB.len(),
        0,
        0,
        1,
        0,
    );

    // The ELF header: ELF64, little-endian, ET_EXEC (symbol values and
    // section addresses are absolute), x86-64.
    let h = &mut out[..64];
    h[..4].copy_from_slice(b"\x7fELF");
    h[4] = elf::ELFCLASS64;
    h[5] = elf::ELFDATA2LSB;
    h[6] = elf::EV_CURRENT;
    h[16..18].copy_from_slice(&elf::ET_EXEC.to_le_bytes());
    h[18..20].copy_from_slice(&elf::EM_X86_64.to_le_bytes());
    h[20..24].copy_from_slice(&1u32.to_le_bytes());
    h[40..48].copy_from_slice(&(shoff as u64).to_le_bytes());
    h[52..54].copy_from_slice(&64u16.to_le_bytes());
    h[58..60].copy_from_slice(&64u16.to_le_bytes());
    h[60..62].copy_from_slice(&6u16.to_le_bytes());
    h[62..64].copy_from_slice(&5u16.to_le_bytes());
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
    let u16_at = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    let u32_at = |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().expect("4"));
    let u64_at = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8"));
    let go = || -> Option<Vec<Func>> {
        let eh = read(0, 64)?;
        let (shoff, shentsize, shnum) = (u64_at(&eh, 40), u16_at(&eh, 58), u16_at(&eh, 60));
        if shentsize != 64 {
            return None;
        }
        let shdrs = read(shoff, u64::from(shnum) * 64)?;
        let sh = |i: usize| &shdrs[i * 64..i * 64 + 64];
        let symtab = (0..usize::from(shnum)).find(|&i| u32_at(sh(i), 4) == elf::SHT_SYMTAB)?;
        let s = sh(symtab);
        let link = u32_at(s, 40) as usize;
        if link >= usize::from(shnum) {
            return None;
        }
        let syms = read(u64_at(s, 24), u64_at(s, 32))?;
        let strs = read(u64_at(sh(link), 24), u64_at(sh(link), 32))?;
        let mut out = Vec::new();
        for e in syms.chunks_exact(24) {
            let (name, info, shndx) = (u32_at(e, 0) as usize, e[4], u16_at(e, 6));
            if info & 0xf != elf::STT_FUNC || shndx == elf::SHN_UNDEF {
                continue;
            }
            let Some(rest) = strs.get(name..) else {
                continue;
            };
            let Some(end) = rest.iter().position(|&c| c == 0) else {
                continue;
            };
            out.push(Func {
                addr: base.wrapping_add(u64_at(e, 8) as usize),
                size: u64_at(e, 16),
                name: rest[..end].to_vec(),
            });
        }
        Some(out)
    };
    go().unwrap_or_default()
}
