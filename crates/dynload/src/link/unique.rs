//! STB_GNU_UNIQUE symbols: one definition per process, whichever object a
//! lookup finds it in. glibc keeps its table private, so dynload asks glibc
//! (a `dlsym` on the main program's handle returns glibc's registered
//! definition for names in its global scope) and looks at the objects glibc
//! loaded, before registering a definition in its own table. Objects that
//! define a unique symbol become NODELETE, as in glibc.

use rustc_hash::FxHashMap;
use std::ffi::CString;

use parking_lot::Mutex;

use crate::elf::symbols::NameHash;
use crate::elf::{elf, SymExt};
use crate::host;
use crate::link::Found;
use crate::registry::Registry;

/// dynload's table of unique definitions, by name.
#[derive(Default)]
pub(crate) struct UniqueTable {
    by_name: Mutex<FxHashMap<Box<[u8]>, Found>>,
}

impl UniqueTable {
    /// Forget the definitions of an object that leaves the registry (a
    /// definer is NODELETE, so only a failed load removes one): its id may
    /// be given to another object.
    pub(crate) fn forget(&self, id: crate::object::ObjId) {
        self.by_name.lock().retain(|_, f| f.obj != id);
    }
}

impl Registry {
    /// The process-wide definition of unique symbol `name`, which a lookup
    /// just found as `found`.
    pub(crate) fn unique_definition(&self, name: &[u8], found: Found) -> Found {
        let mut table = self.unique.by_name.lock();
        if let Some(&f) = table.get(name) {
            return f;
        }
        let chosen = self.glibc_unique(name).unwrap_or(found);
        table.insert(name.into(), chosen);
        chosen
    }

    /// A unique definition glibc already has: the one its global scope
    /// resolves to, else the first one in an object glibc loaded.
    fn glibc_unique(&self, name: &[u8]) -> Option<Found> {
        let g = host::glibc();
        let cname = CString::new(name).ok()?;
        // SAFETY: glibc's dlsym with its own main handle and a C string.
        let addr = unsafe { (g.dlsym)(g.main_handle, cname.as_ptr()) } as usize;
        if addr == 0 {
            let _ = host::glibc_error();
        }
        let mut hash = NameHash::new(name);
        let mut first = None;
        for &id in &self.host_list {
            let o = self.obj(id);
            let syms = &o.view.symbols;
            let hit = syms.find(name, &mut hash, |_, s| {
                s.bind() == elf::STB_GNU_UNIQUE && !s.is_undefined()
            });
            if let Some(sym) = hit {
                let f = Found { obj: id, sym };
                if addr != 0 && syms.address(syms.sym(sym)) == addr {
                    return Some(f);
                }
                first.get_or_insert(f);
            }
        }
        first
    }
}
