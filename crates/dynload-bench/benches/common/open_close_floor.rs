//! The least any loader could take for `tiny`'s open+close, made by the
//! bench with no loader around it: dynload's system calls and page faults
//! for it (replayed by [`SystemCallsAlone`]), and between them only the
//! work no loader can skip, with no checks beyond the ELF header's:
//! - the ELF header's identity read and its program headers walked to the
//!   dynamic section, and that section walked for the tables, relocations,
//!   initializers and finalizers;
//! - each relocation applied as `RTLD_NOW` does: a RELATIVE entry rebased;
//!   for a symbolic one, the name hashed (GNU hash) and looked up in the
//!   global scope (the objects glibc loaded at start-up, in its order),
//!   then in the object itself, each object's Bloom filter asked and, past
//!   it, its bucket and chain, the name compared; a weak reference found
//!   nowhere is left 0;
//! - the object's initializers run after RELRO is made read-only
//!   (`DT_INIT`, then `DT_INIT_ARRAY`), its finalizers before the
//!   `munmap` (`DT_FINI_ARRAY` from the last, then `DT_FINI`).
//!
//! It leaves out all a loader records (the object's handle, its names and
//! identity, what `dladdr`, `dl_iterate_phdr` and unwinding find) and
//! every check on entries and symbols. So a loader that makes dynload's
//! system calls cannot take less than this for the cycle; paired with
//! glibc's cycle, it is the floor under the open+close target on this
//! machine. [`OpenCloseFloor::new`] checks, once, that each symbolic entry
//! gets what glibc's `dlsym(RTLD_DEFAULT, name)` gives.

use std::cell::Cell;
use std::ffi::{c_char, c_int, c_void, CStr};

use crate::gnu_table::{gnu_hash, Gnu, Rela, Sym};
use crate::system_calls::SystemCallsAlone;

const R_X86_64_64: u32 = 1;
const R_X86_64_GLOB_DAT: u32 = 6;
const R_X86_64_JUMP_SLOT: u32 = 7;
const R_X86_64_RELATIVE: u32 = 8;

const PT_DYNAMIC: u32 = 2;
const DT_NULL: i64 = 0;
const DT_PLTRELSZ: i64 = 2;
const DT_STRTAB: i64 = 5;
const DT_SYMTAB: i64 = 6;
const DT_RELA: i64 = 7;
const DT_RELASZ: i64 = 8;
const DT_INIT: i64 = 12;
const DT_FINI: i64 = 13;
const DT_JMPREL: i64 = 23;
const DT_INIT_ARRAY: i64 = 25;
const DT_FINI_ARRAY: i64 = 26;
const DT_INIT_ARRAYSZ: i64 = 27;
const DT_FINI_ARRAYSZ: i64 = 28;
const DT_GNU_HASH: i64 = 0x6fff_fef5;

type Initializer = unsafe extern "C" fn(c_int, *const *const c_char, *const *const c_char);
type Finalizer = unsafe extern "C" fn();

/// What one load found in the object's dynamic section: addresses, with
/// the object's base added, and sizes in bytes.
#[derive(Clone, Copy, Default)]
struct Dynamic {
    strtab: usize,
    symtab: usize,
    gnu_hash: usize,
    rela: (usize, usize),
    jmprel: (usize, usize),
    init: usize,
    init_array: (usize, usize),
    fini: usize,
    fini_array: (usize, usize),
}

impl Dynamic {
    /// Walk the dynamic section at `dynamic`; `base` is added to each
    /// address below it (glibc has already rebased those of the objects it
    /// loaded; an object just mapped has file addresses).
    ///
    /// # Safety
    /// `dynamic` points to a DT_NULL-terminated dynamic section, mapped.
    unsafe fn read(base: usize, dynamic: *const [i64; 2]) -> Dynamic {
        let mut d = Dynamic::default();
        let at = |v: i64| {
            let v = v as usize;
            if v < base {
                base.wrapping_add(v)
            } else {
                v
            }
        };
        let mut entry = dynamic;
        // SAFETY: up to the DT_NULL the caller promises.
        unsafe {
            loop {
                let [tag, value] = *entry;
                match tag {
                    DT_NULL => break,
                    DT_STRTAB => d.strtab = at(value),
                    DT_SYMTAB => d.symtab = at(value),
                    DT_GNU_HASH => d.gnu_hash = at(value),
                    DT_RELA => d.rela.0 = at(value),
                    DT_RELASZ => d.rela.1 = value as usize,
                    DT_JMPREL => d.jmprel.0 = at(value),
                    DT_PLTRELSZ => d.jmprel.1 = value as usize,
                    DT_INIT => d.init = at(value),
                    DT_INIT_ARRAY => d.init_array.0 = at(value),
                    DT_INIT_ARRAYSZ => d.init_array.1 = value as usize,
                    DT_FINI => d.fini = at(value),
                    DT_FINI_ARRAY => d.fini_array.0 = at(value),
                    DT_FINI_ARRAYSZ => d.fini_array.1 = value as usize,
                    _ => {}
                }
                entry = entry.add(1);
            }
        }
        d
    }

    /// The relocation tables the section names (`DT_RELA`, `DT_JMPREL`),
    /// as (address, bytes); an absent one is left out.
    fn relocation_tables(&self) -> impl Iterator<Item = (usize, usize)> {
        [self.rela, self.jmprel]
            .into_iter()
            .filter(|&(table, size)| table != 0 && size != 0)
    }

    /// The object's hash table.
    ///
    /// # Safety
    /// As for [`Gnu::at`]: the tables this section names, mapped.
    unsafe fn table(&self) -> Gnu {
        // SAFETY: the caller's.
        unsafe {
            Gnu::at(
                self.gnu_hash as *const u8,
                self.symtab as *const u8,
                self.strtab as *const u8,
            )
        }
    }
}

/// The global scope's tables, found once, and the cycle's own state.
pub struct OpenCloseFloor {
    calls: SystemCallsAlone,
    /// (base, table) of each object in the global scope, in glibc's order.
    scope: Vec<(usize, Gnu)>,
    /// The loaded object's dynamic section, for its finalizers.
    loaded: Cell<Dynamic>,
}

impl OpenCloseFloor {
    /// The floor for the object at `path` (GNU ld's layout of a small
    /// object, as [`SystemCallsAlone::new`] requires), looked up against
    /// the objects glibc loaded when this process started.
    pub fn new(path: &CStr) -> OpenCloseFloor {
        let floor = OpenCloseFloor {
            calls: SystemCallsAlone::new(path),
            scope: global_scope(),
            loaded: Cell::new(Dynamic::default()),
        };
        // One cycle, its symbolic entries checked against glibc's lookup.
        let mut checked = 0;
        let base = floor.calls.map_with(|base| {
            // SAFETY: as in `map`.
            unsafe {
                floor.relocate(base);
                checked = floor.check_bindings(base as usize);
            }
        });
        // SAFETY: as in `map`.
        unsafe { floor.initialize() };
        floor.unmap(base);
        assert!(checked > 0, "no symbolic relocation to check in {path:?}");
        floor
    }

    /// One cycle's load: the object mapped, relocated, protected and
    /// initialized.
    pub fn map(&self) -> *mut u8 {
        let base = self.calls.map_with(|base| {
            // SAFETY: the object just mapped at `base`, not yet protected;
            // its entries' targets are its own writable pages (the fixture
            // is the bench's own, and `new` ran a cycle of it).
            unsafe { self.relocate(base) };
        });
        // SAFETY: the object relocated just above, as a loader runs it.
        unsafe { self.initialize() };
        base
    }

    /// Finalize and unmap what [`OpenCloseFloor::map`] mapped.
    pub fn unmap(&self, base: *mut u8) {
        let d = self.loaded.get();
        // SAFETY: the finalizers of the object `map` loaded and
        // initialized, from the last, as a loader runs them before unmapping.
        unsafe {
            let (array, size) = d.fini_array;
            for i in (0..size / 8).rev() {
                let f: Finalizer = std::mem::transmute(*(array as *const usize).add(i));
                f();
            }
            if d.fini != 0 {
                let f: Finalizer = std::mem::transmute(d.fini);
                f();
            }
        }
        self.calls.unmap(base)
    }

    /// Read the object's headers and dynamic section at `base`, and apply
    /// its relocations.
    ///
    /// # Safety
    /// `base` is where [`SystemCallsAlone::map_with`] mapped the object,
    /// before RELRO is protected.
    #[inline(never)]
    unsafe fn relocate(&self, base: *mut u8) {
        let base_addr = base as usize;
        // SAFETY: the object's first page holds its ELF and program
        // headers (GNU ld's layout, which `SystemCallsAlone::new` checked);
        // the rest as in `Dynamic::read` and `Gnu::find`.
        unsafe {
            let ident = base.cast::<[u8; 8]>().read();
            let phoff = base.add(32).cast::<u64>().read_unaligned() as usize;
            let (phentsize, phnum) = (
                base.add(54).cast::<u16>().read_unaligned(),
                base.add(56).cast::<u16>().read_unaligned(),
            );
            if ident[..4] != *b"\x7fELF"
                || ident[4] != 2
                || ident[5] != 1
                || base.add(16).cast::<u16>().read_unaligned() != 3
                || base.add(18).cast::<u16>().read_unaligned() != 62
                || phentsize != 56
            {
                panic!("not an x86_64 shared object");
            }
            let mut dynamic = None;
            for i in 0..phnum as usize {
                let phdr = base.add(phoff + i * 56);
                if phdr.cast::<u32>().read_unaligned() == PT_DYNAMIC {
                    dynamic = Some(phdr.add(16).cast::<u64>().read_unaligned() as usize);
                }
            }
            let dynamic = dynamic.expect("a dynamic section");
            let d = Dynamic::read(base_addr, base.add(dynamic).cast());
            self.loaded.set(d);
            let own = d.table();
            let syms = d.symtab as *const Sym;
            for (table, size) in d.relocation_tables() {
                let entries = std::slice::from_raw_parts(table as *const Rela, size / 24);
                for r in entries {
                    let target = base.add(r.offset as usize).cast::<usize>();
                    let kind = r.info as u32;
                    if kind == R_X86_64_RELATIVE {
                        target.write(base_addr.wrapping_add(r.addend as usize));
                        continue;
                    }
                    let name = (d.strtab as *const u8)
                        .add((*syms.add((r.info >> 32) as usize)).name as usize);
                    let value = self.lookup(name, base_addr, &own);
                    target.write(if kind == R_X86_64_64 {
                        value.wrapping_add(r.addend as usize)
                    } else {
                        value
                    });
                }
            }
        }
    }

    /// The address of the symbol `name`: the global scope asked first,
    /// then the object itself (`own`, at `base`); 0 if none defines it.
    ///
    /// # Safety
    /// `name` is NUL-terminated; the tables are mapped.
    #[inline(always)]
    unsafe fn lookup(&self, name: *const u8, base: usize, own: &Gnu) -> usize {
        // SAFETY: the caller's.
        unsafe {
            let h = gnu_hash(name);
            for (object, table) in &self.scope {
                if let Some(sym) = table.find(name, h) {
                    return object.wrapping_add(sym.value as usize);
                }
            }
            own.find(name, h)
                .map_or(0, |sym| base.wrapping_add(sym.value as usize))
        }
    }

    /// Run the initializers of the object the last `relocate` read.
    ///
    /// # Safety
    /// That object is still mapped, relocated and protected.
    unsafe fn initialize(&self) {
        let d = self.loaded.get();
        // SAFETY: the object's own initializers, as a loader runs them.
        unsafe {
            if d.init != 0 {
                let f: Initializer = std::mem::transmute(d.init);
                f(0, std::ptr::null(), std::ptr::null());
            }
            let (array, size) = d.init_array;
            for i in 0..size / 8 {
                let f: Initializer = std::mem::transmute(*(array as *const usize).add(i));
                f(0, std::ptr::null(), std::ptr::null());
            }
        }
    }

    /// Check each symbolic entry's value against `dlsym(RTLD_DEFAULT)`;
    /// how many were found.
    ///
    /// # Safety
    /// Right after `relocate` of the object at `base`.
    unsafe fn check_bindings(&self, base: usize) -> usize {
        let d = self.loaded.get();
        let mut found = 0;
        // SAFETY: the tables `relocate` just read.
        unsafe {
            let syms = d.symtab as *const Sym;
            for (table, size) in d.relocation_tables() {
                for r in std::slice::from_raw_parts(table as *const Rela, size / 24) {
                    let kind = r.info as u32;
                    if kind == R_X86_64_RELATIVE {
                        continue;
                    }
                    assert!(
                        matches!(kind, R_X86_64_64 | R_X86_64_GLOB_DAT | R_X86_64_JUMP_SLOT),
                        "relocation type {kind}"
                    );
                    let name = (d.strtab as *const c_char)
                        .add((*syms.add((r.info >> 32) as usize)).name as usize);
                    let mut want = libc::dlsym(libc::RTLD_DEFAULT, name) as usize;
                    if kind == R_X86_64_64 && want != 0 {
                        want = want.wrapping_add(r.addend as usize);
                    }
                    let got = *((base + r.offset as usize) as *const usize);
                    assert_eq!(got, want, "{:?}", CStr::from_ptr(name));
                    found += usize::from(want != 0);
                }
            }
        }
        found
    }
}

/// The objects glibc loaded when the process started, in its order (the
/// program first), with their hash tables; the vDSO is not in the scope.
fn global_scope() -> Vec<(usize, Gnu)> {
    unsafe extern "C" fn each(info: *mut libc::dl_phdr_info, _: usize, data: *mut c_void) -> c_int {
        // SAFETY: glibc's entry for one object, for this call; `data` is
        // the vector below.
        unsafe {
            let info = &*info;
            let scope = &mut *data.cast::<Vec<(usize, Gnu)>>();
            let name = if info.dlpi_name.is_null() {
                c""
            } else {
                CStr::from_ptr(info.dlpi_name)
            };
            if !scope.is_empty() && (name.is_empty() || name.to_bytes().starts_with(b"linux-vdso"))
            {
                return 0;
            }
            let base = info.dlpi_addr as usize;
            let phdrs = std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize);
            if let Some(p) = phdrs.iter().find(|p| p.p_type == PT_DYNAMIC) {
                let d = Dynamic::read(base, (base + p.p_vaddr as usize) as *const [i64; 2]);
                if d.gnu_hash != 0 {
                    scope.push((base, d.table()));
                }
            }
        }
        0
    }
    let mut scope: Vec<(usize, Gnu)> = Vec::new();
    // SAFETY: the callback above, given the vector for the call's length.
    unsafe { libc::dl_iterate_phdr(Some(each), (&raw mut scope).cast()) };
    assert!(scope.len() >= 2, "the program and libc at least");
    scope
}
