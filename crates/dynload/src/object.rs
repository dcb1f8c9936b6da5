//! The record the loader keeps for every object it knows: those it mapped
//! itself and those glibc loaded (host objects), with the link state glibc
//! keeps in `struct link_map`.

use std::ffi::{c_char, c_void, CString};
use std::sync::OnceLock;

use crate::elf::{Phdr, SymExt};
use crate::find::FoundVia;
use crate::host::View;
use crate::map::Mapped;

/// Index of an object in the registry.
pub(crate) type ObjId = usize;

/// The public prefix of glibc's `struct link_map` (<link.h>): what
/// `dlinfo(RTLD_DI_LINKMAP)` and `dladdr1(RTLD_DL_LINKMAP)` hand out, and
/// what a dynload handle points to.
#[repr(C)]
#[derive(Debug)]
pub struct LinkMap {
    /// Difference between the addresses in the ELF file and in memory.
    pub l_addr: usize,
    /// Absolute file name the object was found in.
    pub l_name: *const c_char,
    /// The dynamic section of the object.
    pub l_ld: *const c_void,
    /// The next object of dynload's chain.
    pub l_next: *mut LinkMap,
    /// The previous object of dynload's chain.
    pub l_prev: *mut LinkMap,
}

/// Who mapped the object.
pub(crate) enum Kind {
    /// dynload mapped it.
    Ours(Mapped),
    /// glibc loaded it.
    Host(HostState),
}

pub(crate) struct HostState {
    /// Loaded before `main` (never unloaded).
    pub startup: bool,
    /// glibc was asked to make it NODELETE (it never unloads it now).
    pub nodelete: bool,
    pub is_main: bool,
    pub is_vdso: bool,
    /// A glibc handle held while dynload users have this object open.
    pub pin: *mut c_void,
    /// Still in glibc's list at the last refresh.
    pub present: bool,
}

/// RTLD_NODELETE / DF_1_NODELETE state (glibc's pending/active pair).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoDelete {
    No,
    /// Requested by a dlopen that has not succeeded yet.
    Pending,
    Active,
}

/// One element of an object's lookup scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// The global scope: glibc's, then dynload's RTLD_GLOBAL objects.
    Global,
    /// The search list (BFS of dependencies) of the given root object.
    Local(ObjId),
    /// DT_SYMBOLIC: the object itself first.
    Symbolic(ObjId),
}

pub(crate) struct Object {
    pub id: ObjId,
    pub kind: Kind,
    /// Stable address: it is the handle given to C callers.
    pub link_map: Box<LinkMap>,
    /// `l_name`: the path it was loaded from ("" for the main program).
    pub name: CString,
    /// Every name it was asked for (glibc's `l_libname`).
    pub names: Vec<Vec<u8>>,
    pub view: View,
    /// (st_dev, st_ino) of the file: set when dynload opened it; for an
    /// object glibc loaded, asked of the file system the first time a file
    /// being opened could be it (see [`Object::file_id`]).
    pub file_id: std::sync::OnceLock<Option<(u64, u64)>>,
    /// The directory `$ORIGIN` expands to.
    pub origin: Option<Vec<u8>>,
    pub phdr: *const Phdr,
    pub phnum: usize,
    pub map_start: usize,
    pub map_end: usize,
    pub via: Option<FoundVia>,
    /// The object whose DT_NEEDED made this one load (RPATH inheritance).
    pub loader: Option<ObjId>,
    /// Direct dependencies, in DT_NEEDED order.
    pub needed: Vec<ObjId>,
    /// glibc's `l_initfini`: [self, direct deps] or, for a dlopen root, its
    /// whole dependency list in initialisation order (reversed).
    pub initfini: Vec<ObjId>,
    /// The BFS search list, once the object was opened directly.
    pub searchlist: Option<Vec<ObjId>>,
    pub scope: Vec<Scope>,
    /// Objects a relocation bound to that are not dependencies.
    pub reldeps: Vec<ObjId>,
    pub direct_opencount: u32,
    pub global: bool,
    pub nodelete: NoDelete,
    pub versions_checked: bool,
    pub relocated: bool,
    pub init_called: bool,
    pub removed: bool,
    /// glibc handles held on glibc-loaded dependencies (released at unload).
    pub glibc_pins: Vec<*mut c_void>,
    /// dynload's TLS module id, if the object has a PT_TLS segment.
    pub tls_module: Option<usize>,
    /// Arguments of the object's TLS descriptors.
    // Boxed: GOT slots point to each one, so they must never move.
    #[allow(clippy::vec_box)]
    pub tls_descs: Vec<Box<crate::tls::TlsIndex>>,
    /// The lazy resolver's data (GOT[1] points to it).
    pub lazy: Option<Box<crate::lazy::LazyInfo>>,
    /// (address, symbol index) sorted by address, built on first dladdr.
    pub addr_index: OnceLock<Box<[AddrEntry]>>,
    /// `thread_local` destructors registered by this object and not yet
    /// run (glibc's `l_tls_dtor_count`): while any are pending the object
    /// stays loaded, as if a handle were open. Shared with the pending
    /// records, which lower it at thread exit without the loader lock.
    pub tls_dtors: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

// SAFETY: the raw pointers refer to this object's own mapped memory or to
// glibc's objects, which outlive the record; all mutation happens under the
// loader lock.
unsafe impl Send for Object {}
// SAFETY: as above.
unsafe impl Sync for Object {}

impl Object {
    pub(crate) fn is_ours(&self) -> bool {
        matches!(self.kind, Kind::Ours(_))
    }

    pub(crate) fn host(&self) -> Option<&HostState> {
        match &self.kind {
            Kind::Host(h) => Some(h),
            Kind::Ours(_) => None,
        }
    }

    /// Can this object ever be unloaded? dynload's can unless NODELETE; of
    /// glibc's, those glibc loaded after start-up (by dlopen) that were not
    /// made NODELETE.
    pub(crate) fn can_be_unloaded(&self) -> bool {
        match &self.kind {
            Kind::Ours(_) => self.nodelete != NoDelete::Active,
            Kind::Host(h) => !h.startup && !h.is_vdso && !h.nodelete,
        }
    }

    /// (st_dev, st_ino) of the file. For an object glibc loaded, its path
    /// (the main program's through /proc/self/exe) is looked at the first
    /// time this is asked: a `stat` for each of glibc's objects was a
    /// sixth of a process's first `dlopen`, and most never need it.
    pub(crate) fn file_id(&self) -> Option<(u64, u64)> {
        *self.file_id.get_or_init(|| {
            use std::os::unix::fs::MetadataExt;
            let path: &[u8] = if self.is_main() {
                b"/proc/self/exe"
            } else {
                self.name.to_bytes()
            };
            let path = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(path);
            let m = std::fs::metadata(path).ok()?;
            Some((m.dev(), m.ino()))
        })
    }

    pub(crate) fn is_main(&self) -> bool {
        self.host().is_some_and(|h| h.is_main)
    }

    /// The name glibc prints for the object (`DSO_FILENAME`): its path, or
    /// the program name for the main program.
    pub(crate) fn display_name(&self) -> String {
        let n = self.name.to_bytes();
        if n.is_empty() {
            crate::process::program_name()
        } else {
            String::from_utf8_lossy(n).into_owned()
        }
    }

    pub(crate) fn contains(&self, addr: usize) -> bool {
        self.map_start <= addr && addr < self.map_end
    }

    /// A host object glibc unloaded (as of the last refresh, which every
    /// holder of the loader lock has made): it is no longer in glibc's
    /// list, and its tables are unmapped. Kept only while dynload objects
    /// still name it.
    pub(crate) fn is_gone(&self) -> bool {
        self.host().is_some_and(|h| !h.present)
    }

    /// DT_SONAME, read where glibc reads it: in the object's string table.
    pub(crate) fn soname(&self) -> Option<&[u8]> {
        if self.is_gone() {
            return None;
        }
        let offset = self.view.dyn_info.soname()?;
        self.view.symbols.string(offset as usize)
    }

    /// glibc's `_dl_name_match_p` plus the soname check of `_dl_map_object`.
    /// An object glibc unloaded answers to nothing, as in glibc.
    pub(crate) fn answers_to(&self, name: &[u8]) -> bool {
        if self.is_gone() {
            return false;
        }
        // (The soname compared where it lies, not measured first: every
        // dlopen by name asks every loaded object.)
        name_matches(self.name.to_bytes(), &self.names, name, |n| {
            self.view
                .dyn_info
                .soname()
                .is_some_and(|off| self.view.symbols.string_is(off as usize, n))
        })
    }

    /// The symbol `dladdr` reports for `addr`: among the symbols glibc's
    /// scan considers (those reachable from the hash table, defined, not
    /// ABS, not TLS), the one with the highest address that contains `addr`
    /// (or equals it, for a zero-size symbol); ties go to the first in hash
    /// order. An address-sorted index makes this O(log n) instead of glibc's
    /// linear scan.
    pub(crate) fn nearest_symbol(&self, addr: usize) -> Option<u32> {
        let syms = &self.view.symbols;
        let index = self.addr_index.get_or_init(|| {
            let mut v: Vec<(usize, u32, u32, usize)> = syms
                .hash_order()
                .into_iter()
                .enumerate()
                .filter_map(|(rank, i)| {
                    let s = syms.get(i)?;
                    let usable = !s.is_undefined()
                        && s.shndx() != crate::elf::elf::SHN_ABS
                        && s.kind() != crate::elf::elf::STT_TLS
                        && s.bind() != crate::elf::elf::STB_LOCAL;
                    let a = syms.address(s);
                    usable.then(|| (a, rank as u32, i, a.saturating_add(s.size() as usize)))
                })
                .collect();
            // By address, then hash order.
            v.sort_unstable();
            let mut max_end = 0;
            v.into_iter()
                .map(|(addr, _, sym, end)| {
                    max_end = max_end.max(end);
                    AddrEntry { addr, max_end, sym }
                })
                .collect()
        });
        let end = index.partition_point(|e| e.addr <= addr);
        let mut best: Option<&AddrEntry> = None;
        for e in index[..end].iter().rev() {
            match best {
                // Only an equal address can still win (earlier hash order).
                Some(b) if e.addr < b.addr => break,
                // No earlier symbol reaches this far.
                None if e.max_end <= addr && e.addr < addr => break,
                _ => {}
            }
            let size = syms.sym(e.sym).size() as usize;
            let contains = if size == 0 {
                e.addr == addr
            } else {
                addr < e.addr.saturating_add(size)
            };
            if contains {
                best = Some(e);
            }
        }
        best.map(|e| e.sym)
    }
}

/// Does an object with this path and these requested names, whose soname
/// is `name` when `soname_is` says so, answer to `name`? (glibc's
/// `_dl_name_match_p` plus the soname check.)
pub(crate) fn name_matches(
    path: &[u8],
    names: &[Vec<u8>],
    name: &[u8],
    soname_is: impl FnOnce(&[u8]) -> bool,
) -> bool {
    path == name || names.iter().any(|n| n == name) || soname_is(name)
}

/// One entry of the address index used by `dladdr`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AddrEntry {
    pub addr: usize,
    /// The largest end address of this and all lower entries.
    pub max_end: usize,
    pub sym: u32,
}
