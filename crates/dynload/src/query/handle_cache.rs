//! `dlsym` through a handle without the loader lock, for handles a thread
//! looks up again and again (a plugin host resolving its entry points).
//!
//! glibc takes its loader lock for every `dlsym`, and the lock costs about
//! what the lookup does. But a handle's search list does not change while
//! the handle is open, and the objects on it stay mapped: a thread can keep
//! a copy of their symbol tables (pointers into read-only, mapped tables)
//! and look up without the lock, as long as nothing in the registry has
//! changed since the copy was made. The registry's epoch says so: it moves
//! whenever the registry is taken mutably, before anything is closed or
//! unmapped. A handle closed before the call therefore never reaches the
//! copy; a handle closed by another thread *during* the call is the
//! caller's race, as it is with glibc.
//!
//! Only what needs nothing but the tables is answered here: plain
//! definitions in dynload's own objects, for unversioned requests. IFUNC,
//! TLS and unique definitions, definitions in glibc's objects (which may
//! have a dynload replacement) and misses go through the locked lookup,
//! which also keeps what `dlerror` needs.

use std::cell::RefCell;

use crate::debug;
use crate::elf::symbols::{NameHash, SymbolTable};
use crate::elf::{elf, SymExt};
use crate::link::{self, Flags};
use crate::object::ObjId;
use crate::registry::{self, Registry};

/// Handles kept per thread.
const WAYS: usize = 4;

/// One handle's search list: each object's symbol table, in search order,
/// and whether the object is dynload's.
struct Entry {
    handle: usize,
    objects: Box<[(SymbolTable, bool)]>,
}

struct Cache {
    /// The registry epoch the entries were copied in.
    epoch: u64,
    /// The last handles a locked lookup found a definition through: a
    /// second one in the same epoch copies the list (a handle looked up
    /// once, as Python's after each import, is not worth a copy).
    seen: [usize; WAYS],
    entries: [Option<Entry>; WAYS],
    /// The next slot to reuse, in `seen` and in `entries`.
    next_seen: usize,
    next: usize,
}

impl Cache {
    const fn new(epoch: u64) -> Cache {
        Cache {
            epoch,
            seen: [0; WAYS],
            entries: [const { None }; WAYS],
            next_seen: 0,
            next: 0,
        }
    }
}

thread_local! {
    static CACHE: RefCell<Cache> = const {
        RefCell::new(Cache::new(u64::MAX))
    };
}

/// The address `dlsym(handle, name)` returns, when this thread's copy of
/// the handle's search list can answer; None: ask the locked lookup.
pub(crate) fn lookup(handle: usize, name: &[u8]) -> Option<usize> {
    CACHE
        .try_with(|c| {
            let c = c.try_borrow().ok()?;
            if c.epoch != registry::epoch() {
                return None;
            }
            let entry = c.entries.iter().flatten().find(|e| e.handle == handle)?;
            let mut hash = NameHash::new(name);
            let flags = Flags {
                return_newest: true,
                plt: false,
            };
            for (symbols, ours) in entry.objects.iter() {
                let Some(idx) = link::lookup_in_symbols(symbols, name, &mut hash, None, flags)
                else {
                    continue;
                };
                let sym = symbols.sym(idx);
                let plain = *ours
                    && sym.bind() != elf::STB_GNU_UNIQUE
                    && !matches!(sym.kind(), elf::STT_TLS | elf::STT_GNU_IFUNC);
                return plain.then(|| symbols.address(sym));
            }
            None
        })
        .ok()
        .flatten()
}

/// After a locked lookup through `handle` found a plain definition: the
/// second time in one epoch, copy the handle's search list for
/// [`lookup`]. The loader lock is held.
pub(super) fn remember(reg: &Registry, handle: usize) {
    let epoch = registry::epoch();
    let _ = CACHE.try_with(|c| {
        let Ok(mut c) = c.try_borrow_mut() else {
            return;
        };
        if c.epoch != epoch {
            *c = Cache::new(epoch);
        }
        if !c.seen.contains(&handle) {
            let slot = c.next_seen;
            c.next_seen = (slot + 1) % WAYS;
            c.seen[slot] = handle;
            return;
        }
        if c.entries.iter().flatten().any(|e| e.handle == handle) {
            // (The copy declined this name: an IFUNC, say.)
            return;
        }
        if let Some(objects) = reg
            .by_handle(handle)
            .and_then(|id| search_list_copy(reg, id))
        {
            let slot = c.next;
            c.next = (slot + 1) % WAYS;
            c.entries[slot] = Some(Entry { handle, objects });
        }
    });
}

/// The tables a lookup through `id`'s handle reads, when the locked lookup
/// would read exactly these: not the main program (its handle searches the
/// global scope, which grows), a search list of its own, nothing being
/// unloaded, and no symbol trace to print.
fn search_list_copy(reg: &Registry, id: ObjId) -> Option<Box<[(SymbolTable, bool)]>> {
    let o = reg.obj(id);
    if o.is_main() || o.removed || debug::enabled(debug::SYMBOLS) {
        return None;
    }
    o.searchlist
        .as_ref()?
        .iter()
        .map(|&m| {
            let m = reg.obj(m);
            (!m.removed).then(|| (m.view.symbols.clone(), m.is_ours()))
        })
        .collect()
}
