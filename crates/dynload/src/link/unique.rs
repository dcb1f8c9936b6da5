//! STB_GNU_UNIQUE symbols: one definition per process, whichever object a
//! lookup finds it in. glibc keeps its table private, so dynload asks glibc
//! (a `dlsym` on the main program's handle returns glibc's registered
//! definition for names in its global scope) and looks at the objects glibc
//! loaded, before registering a definition in its own table. Objects that
//! define a unique symbol become NODELETE, as in glibc.

use std::ffi::CString;

use hashbrown::HashTable;
use parking_lot::Mutex;

use crate::elf::symbols::NameHash;
use crate::elf::{elf, SymExt};
use crate::host;
use crate::link::Found;
use crate::object::ObjId;
use crate::registry::Registry;

/// dynload's table of unique definitions, by name. An entry keeps the
/// name's hash and where the definition is, not a copy of the name: the
/// definer's string table has it (libstdc++ alone defines hundreds).
#[derive(Default)]
pub(crate) struct UniqueTable {
    entries: Mutex<HashTable<Entry>>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    obj: ObjId,
    sym: u32,
    /// GNU hash of the name.
    hash: u32,
}

impl Entry {
    fn found(&self) -> Found {
        Found::new(self.obj, self.sym)
    }
}

/// The table's hash of an entry with GNU hash `gnu`. The table takes a
/// bucket from the low bits and a tag from the top seven: the
/// multiplication spreads the 32-bit hash over both.
fn spread(gnu: u32) -> u64 {
    u64::from(gnu).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

impl UniqueTable {
    /// Forget the definitions of an object that leaves the registry (a
    /// failed load, whose definers are not NODELETE yet, or a host object
    /// glibc unloaded): its id may be given to another object.
    pub(crate) fn forget(&self, id: ObjId) {
        self.entries.lock().retain(|e| e.obj != id);
    }
}

impl Registry {
    /// The process-wide definition of unique symbol `name` (GNU hash
    /// `gnu`), which a lookup just found as `found`.
    pub(crate) fn unique_definition(&self, name: &[u8], gnu: u32, found: Found) -> Found {
        let mut table = self.unique.entries.lock();
        // (A host definer glibc unloaded, kept while dynload objects name
        // it, has no tables left to compare with.)
        let is_name = |e: &Entry| {
            e.hash == gnu && {
                let o = self.obj(e.obj);
                let syms = &o.view.symbols;
                !o.is_gone() && syms.string_is(syms.sym(e.sym).name_offset(), name)
            }
        };
        if let Some(e) = table.find(spread(gnu), is_name) {
            return e.found();
        }
        let chosen = self.glibc_unique(name).unwrap_or(found);
        let entry = Entry {
            obj: chosen.obj,
            sym: chosen.sym(),
            hash: gnu,
        };
        table.insert_unique(spread(gnu), entry, |e| spread(e.hash));
        chosen
    }

    /// A unique definition glibc already has: the one its global scope
    /// resolves to, else the first one in an object glibc loaded.
    fn glibc_unique(&self, name: &[u8]) -> Option<Found> {
        let mut hash = NameHash::new(name);
        let definitions: Vec<Found> = self
            .host_list
            .iter()
            .filter_map(|&id| {
                let syms = &self.obj(id).view.symbols;
                let sym = syms.find(name, &mut hash, |_, s| {
                    s.bind() == elf::STB_GNU_UNIQUE && !s.is_undefined()
                })?;
                Some(Found::new(id, sym))
            })
            .collect();
        // Only a choice between definitions asks glibc which one its scope
        // resolves to. (Mostly there is none: libstdc++ loaded by dynload
        // defines hundreds of names glibc's objects do not, and each
        // `dlsym` miss had glibc format an error message: 12% of libz3's
        // first load.)
        let first = *definitions.first()?;
        if definitions.len() == 1 {
            return Some(first);
        }
        let g = host::glibc();
        let cname = CString::new(name).ok()?;
        // SAFETY: glibc's dlsym with its own main handle and a C string.
        let addr = unsafe { (g.dlsym)(g.main_handle, cname.as_ptr()) } as usize;
        if addr == 0 {
            let _ = host::glibc_error();
        }
        let resolved = definitions.into_iter().find(|f| {
            let syms = &self.obj(f.obj).view.symbols;
            addr != 0 && syms.address(syms.sym(f.sym())) == addr
        });
        Some(resolved.unwrap_or(first))
    }
}
