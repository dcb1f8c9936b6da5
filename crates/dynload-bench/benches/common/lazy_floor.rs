//! The least any loader could take for the `reloc` fixture's `RTLD_LAZY`
//! open+close, made by the bench with no loader around it: dynload's system
//! calls and page faults for it (replayed by [`SystemCallsAlone`]), and
//! between them only the relocation work no loader can skip, with no checks
//! at all:
//! - for each R_X86_64_64 entry, the symbol's name hashed (GNU hash), the
//!   object's own Bloom filter asked (the object comes first in its own
//!   scope), the dependency's Bloom filter, bucket and chain, the name
//!   compared, and the value stored;
//! - each JUMP_SLOT rebased, its pages populated first as dynload does
//!   (`map::populate_slots`).
//!
//! It leaves out what a loader must do besides: asking the global scope
//! first, and checking entry types, bounds, symbol kinds, bindings,
//! visibility and versions. So a loader's cycle cannot take less than
//! this one; paired with glibc's cycle, it is the floor under the
//! symbolic relocation target on this machine.

use std::ffi::{c_void, CStr};
use std::os::unix::ffi::OsStrExt;

use testkit::damage::section_address;

use crate::gnu_table::{gnu_hash, Gnu, Rela, Sym};
use crate::system_calls::SystemCallsAlone;

const R_X86_64_64: u32 = 1;
const R_X86_64_JUMP_SLOT: u32 = 7;
const PAGE: usize = 4096;

/// Where the object's tables are, as addresses in it, and its dependency's
/// tables, read from a mapping of that file kept for the floor's life.
pub struct LazyFloor {
    calls: SystemCallsAlone,
    /// (address, size) of `.rela.dyn` and `.rela.plt`.
    rela: (usize, usize),
    plt: (usize, usize),
    dynsym: usize,
    dynstr: usize,
    gnu_hash: usize,
    /// The pages the JUMP_SLOTs lie in, when dynload populates them.
    slots: Option<(usize, usize)>,
    dependency: Gnu,
    dependency_map: (*mut c_void, usize),
}

impl LazyFloor {
    /// The floor for the object at `path`, whose symbols `dependency`
    /// defines.
    pub fn new(path: &CStr, dependency: &CStr) -> LazyFloor {
        let read =
            |p: &CStr| std::fs::read(std::ffi::OsStr::from_bytes(p.to_bytes())).expect("a fixture");
        let b = read(path);
        let rela = section_address(&b, ".rela.dyn");
        let plt = section_address(&b, ".rela.plt");
        // The JUMP_SLOTs' pages, as `relocate::plt_slots` and
        // `map::populate_slots` find them (dense, two pages or more).
        let (offset, size) = testkit::damage::section(&b, ".rela.plt");
        let at = |i: usize| testkit::damage::get_u64(&b, offset + 24 * i) as usize;
        let n = size / 24;
        let (lo, hi) = (at(0).min(at(n - 1)), at(0).max(at(n - 1)) + 8);
        let (lo, hi) = (lo & !(PAGE - 1), (hi + PAGE - 1) & !(PAGE - 1));
        let slots = (hi - lo >= 2 * PAGE).then_some((lo, hi - lo));
        let d = read(dependency);
        let len = d.len();
        // SAFETY: a fresh private read-only mapping of the whole file.
        let map = unsafe {
            let fd = libc::open(dependency.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
            assert!(fd >= 0, "{}", std::io::Error::last_os_error());
            let map = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                fd,
                0,
            );
            libc::close(fd);
            assert_ne!(map, libc::MAP_FAILED);
            map
        };
        let file = |name: &str| {
            // SAFETY: a section's offset inside the file mapped above.
            unsafe { map.cast::<u8>().add(testkit::damage::section(&d, name).0) }
        };
        // SAFETY: the dependency's own tables, in the mapping kept with it.
        let dependency_table =
            unsafe { Gnu::at(file(".gnu.hash"), file(".dynsym"), file(".dynstr")) };
        let floor = LazyFloor {
            calls: SystemCallsAlone::new(path),
            rela,
            plt,
            dynsym: section_address(&b, ".dynsym").0,
            dynstr: section_address(&b, ".dynstr").0,
            gnu_hash: section_address(&b, ".gnu.hash").0,
            slots,
            dependency: dependency_table,
            dependency_map: (map, len),
        };
        // Every R_X86_64_64 entry is bound (the fixture's 2,000).
        let mut bound = (0, 0);
        floor.unmap(floor.calls.map_with(|base| {
            // SAFETY: as in `map`.
            bound = unsafe { floor.relocate(base) }
        }));
        assert!(bound.0 == bound.1 && bound.0 >= 2000, "bound {bound:?}");
        floor
    }

    /// One cycle's load: the object mapped, relocated, its code touched.
    pub fn map(&self) -> *mut u8 {
        self.calls.map_with(|base| {
            // SAFETY: the object just mapped at `base`, whose writable pages
            // the entries' targets are (the fixture is the bench's own);
            // its tables at their addresses in it.
            unsafe { self.relocate(base) };
        })
    }

    /// Unmap what [`LazyFloor::map`] mapped.
    pub fn unmap(&self, base: *mut u8) {
        self.calls.unmap(base)
    }

    /// Relocate the object mapped at `base`: how many R_X86_64_64 entries
    /// it bound, of how many.
    ///
    /// # Safety
    /// `base` is where [`SystemCallsAlone::map_with`] mapped the object.
    #[inline(never)]
    unsafe fn relocate(&self, base: *mut u8) -> (usize, usize) {
        let (mut bound, mut entries) = (0, 0);
        // SAFETY: the caller's mapping; the rest as in `Gnu::find`.
        unsafe {
            if let Some((start, len)) = self.slots {
                libc::madvise(base.add(start).cast(), len, libc::MADV_POPULATE_WRITE);
            }
            let own = Gnu::at(
                base.add(self.gnu_hash),
                base.add(self.dynsym),
                base.add(self.dynstr),
            );
            let syms = base.add(self.dynsym).cast::<Sym>();
            let strings = base.add(self.dynstr);
            let dependency_base = self.dependency_map.0 as usize;
            let relas =
                std::slice::from_raw_parts(base.add(self.rela.0).cast::<Rela>(), self.rela.1 / 24);
            for r in relas {
                if r.info as u32 != R_X86_64_64 {
                    continue;
                }
                entries += 1;
                let name = strings.add((*syms.add((r.info >> 32) as usize)).name as usize);
                let h = gnu_hash(name);
                let sym = match own.find(name, h) {
                    Some(sym) => sym,
                    None => match self.dependency.find(name, h) {
                        Some(sym) => sym,
                        None => continue,
                    },
                };
                let value = dependency_base
                    .wrapping_add(sym.value as usize)
                    .wrapping_add(r.addend as usize);
                base.add(r.offset as usize)
                    .cast::<usize>()
                    .write_unaligned(value);
                bound += 1;
            }
            let slots =
                std::slice::from_raw_parts(base.add(self.plt.0).cast::<Rela>(), self.plt.1 / 24);
            for r in slots {
                if r.info as u32 == R_X86_64_JUMP_SLOT {
                    let slot = base.add(r.offset as usize).cast::<usize>();
                    slot.write(slot.read().wrapping_add(base as usize));
                }
            }
        }
        (bound, entries)
    }
}

impl Drop for LazyFloor {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, which nothing refers to after
        // this.
        unsafe { libc::munmap(self.dependency_map.0, self.dependency_map.1) };
    }
}
