//! `dlsym` without the loader lock, for what a thread looks up again and
//! again: a handle (a plugin host resolving its entry points), or
//! RTLD_DEFAULT from one call site (a program finding functions by name in
//! its own scope).
//!
//! glibc takes its loader lock for every `dlsym`, and the lock costs about
//! what the lookup does. But a handle's search list, and the scope a caller
//! sees, do not change while nothing is loaded or unloaded, and the objects
//! on them stay mapped: a thread can keep a copy of their symbol tables
//! (pointers into read-only, mapped tables) and look up without the lock,
//! as long as nothing in the registry has changed since the copy was made.
//! The registry's epoch says so: it moves whenever the registry is taken
//! mutably, before anything is closed or unmapped. A handle closed before
//! the call therefore never reaches the copy; a handle closed by another
//! thread *during* the call is the caller's race, as it is with glibc.
//!
//! A copy holds only objects no other thread can unmap while this one
//! reads them without the lock: a handle's list is held by the handle
//! (closing it during the call is the caller's race, as above), but the
//! global scope that RTLD_DEFAULT searches may hold objects that another
//! thread's `dlclose` unloads at any time, after this thread found its
//! copy current and before it read it. RTLD_DEFAULT's copy therefore ends
//! before the first object that the caller's object does not hold and
//! that can be unloaded (the objects it would come to depend on, which is
//! also what only the locked lookup records); a name not found before it
//! is left to the locked lookup.
//!
//! Only what needs nothing but the tables is answered here: plain and
//! IFUNC definitions (`dlsym` and `dlvsym`), the functions dynload puts in
//! place of glibc's, and names no object on a whole list defines (for the
//! C ABI, which records the miss for `dlerror` as the locked lookup does).
//! TLS and unique definitions go through the locked lookup.

use std::cell::RefCell;

use super::Target;
use crate::debug;
use crate::dlfcn;
use crate::elf::symbols::{NameHash, SymbolTable};
use crate::elf::versions::{VersionEntry, Versions};
use crate::elf::{elf, SymExt};
use crate::link::{self, Flags};
use crate::object::ObjId;
use crate::registry::{self, Registry};

/// Copies kept per thread.
const WAYS: usize = 4;

/// What a copy answers for: `dlsym(handle, …)` (`caller` 0), or
/// `dlsym(RTLD_DEFAULT, …)` called from `caller` (`handle` 0; the scope
/// seen depends on the caller's object, and one call site is in one
/// object). Two words compared: as an enum, its match cost a handle's
/// lookup eight more instructions (callgrind: 331 against 323).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Key {
    handle: usize,
    caller: usize,
}

impl Key {
    /// The copy for `dlsym` through `target` from `caller`, if one may
    /// answer it (RTLD_NEXT's are not kept).
    pub(crate) fn of(target: Target, caller: usize) -> Option<Key> {
        match target {
            Target::Handle(handle) => Some(Key::of_call(handle, caller)),
            Target::Default => Some(Key::of_call(0, caller)),
            Target::Next => None,
        }
    }

    /// [`Key::of`] for the C ABI's `handle` as given, without a branch:
    /// RTLD_NEXT's key is one no copy is kept under.
    #[inline(always)]
    pub(crate) fn of_call(handle: usize, caller: usize) -> Key {
        let caller = if handle == 0 { caller } else { 0 };
        Key { handle, caller }
    }
}

/// One object of a copied search list.
struct Copied {
    symbols: SymbolTable,
    /// Its version definitions, for `dlvsym`.
    versions: Versions,
    /// dynload's object (else glibc's, whose dl* functions dynload's
    /// replace).
    ours: bool,
}

/// A copied search list, in search order: the whole list, or its start.
struct List {
    objects: Box<[Copied]>,
    /// The whole list: a name none of `objects` defines is a miss.
    whole: bool,
}

/// One search list and what it answers for.
struct Entry {
    key: Key,
    list: List,
    /// The path of the object an undefined-symbol message names (the
    /// handle's, or RTLD_DEFAULT's caller's).
    named: Box<[u8]>,
}

/// What a copy says of a name.
pub(crate) enum Answer {
    /// `dlsym` returns this address (an IFUNC's: what its resolver gave).
    Address(usize),
    /// No object on the list defines the name (`undefined` was told which
    /// object the message names).
    Undefined,
}

struct Cache {
    /// The registry epoch the entries were copied in.
    epoch: u64,
    /// The last keys a locked lookup found a definition through: a second
    /// one in the same epoch copies the list (a handle looked up once, as
    /// Python's after each import, is not worth a copy).
    seen: [Option<Key>; WAYS],
    entries: [Option<Entry>; WAYS],
    /// The next slot to reuse, in `seen` and in `entries`.
    next_seen: usize,
    next: usize,
}

impl Cache {
    const fn new(epoch: u64) -> Cache {
        Cache {
            epoch,
            seen: [None; WAYS],
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

/// What `dlsym` gives for `key` and `name`, when this thread's copy of the
/// search list can answer; None: ask the locked lookup. On a miss,
/// `undefined` is given the path of the object the message names.
#[inline(always)]
pub(crate) fn lookup(key: Key, name: &[u8], undefined: impl FnOnce(&[u8])) -> Option<Answer> {
    lookup_version(key, name, None, undefined)
}

/// [`lookup`] for `dlvsym` (`version` given) or `dlsym` (None).
#[inline(always)]
pub(crate) fn lookup_version(
    key: Key,
    name: &[u8],
    version: Option<&VersionEntry>,
    undefined: impl FnOnce(&[u8]),
) -> Option<Answer> {
    let read = CACHE
        .try_with(|c| {
            let c = c.try_borrow().ok()?;
            if c.epoch != registry::epoch() {
                return None;
            }
            let entry = c.entries.iter().flatten().find(|e| e.key == key)?;
            crate::fault::copy_read();
            let mut hash = NameHash::new(name);
            // (As the locked lookup: plain dlsym takes the default version.)
            let flags = Flags {
                return_newest: version.is_none(),
                plt: false,
            };
            for o in entry.list.objects.iter() {
                let symbols = &o.symbols;
                let wanted = version.map(|v| (v, &o.versions));
                let Some(idx) = link::lookup_in_symbols(symbols, name, &mut hash, wanted, flags)
                else {
                    continue;
                };
                // As the locked lookup: one of glibc's functions dynload
                // replaces is dynload's, whoever asks.
                if !o.ours {
                    if let Some(ours) = dlfcn::replacement(name) {
                        return Some(Read::Answer(Answer::Address(ours)));
                    }
                }
                let sym = symbols.sym(idx);
                if sym.bind() == elf::STB_GNU_UNIQUE || sym.kind() == elf::STT_TLS {
                    return None;
                }
                let address = symbols.address(sym);
                if sym.kind() == elf::STT_GNU_IFUNC && !sym.is_undefined() {
                    return Some(Read::Resolver(address));
                }
                return Some(Read::Answer(Answer::Address(address)));
            }
            if !entry.list.whole {
                return None;
            }
            undefined(&entry.named);
            Some(Read::Answer(Answer::Undefined))
        })
        .ok()
        .flatten()?;
    match read {
        Read::Answer(answer) => Some(answer),
        // (Called once this thread's copies are no longer borrowed: the
        // resolver may call `dlsym`.)
        Read::Resolver(at) => {
            // SAFETY: the resolver of a relocated object, which the list
            // holds; no arguments.
            let value = unsafe { crate::relocate::call_resolver(at) };
            Some(Answer::Address(value))
        }
    }
}

/// What [`lookup_version`] read in a copy.
enum Read {
    Answer(Answer),
    /// An IFUNC definition, whose resolver is at this address.
    Resolver(usize),
}

/// After a locked lookup for `key` found a plain or IFUNC definition: the
/// second time in one epoch, copy the search list for [`lookup`]. The
/// loader lock is held.
pub(super) fn remember(reg: &Registry, key: Key) {
    let epoch = registry::epoch();
    let _ = CACHE.try_with(|c| {
        let Ok(mut c) = c.try_borrow_mut() else {
            return;
        };
        if c.epoch != epoch {
            *c = Cache::new(epoch);
        }
        if !c.seen.contains(&Some(key)) {
            let slot = c.next_seen;
            c.next_seen = (slot + 1) % WAYS;
            c.seen[slot] = Some(key);
            return;
        }
        if c.entries.iter().flatten().any(|e| e.key == key) {
            // (The copy declined this name: a TLS definition, say.)
            return;
        }
        if debug::enabled(debug::SYMBOLS) {
            // (The locked lookup prints each object it visits.)
            return;
        }
        let copied = match key {
            Key { handle: 0, caller } => default_scope_copy(reg, caller),
            Key { handle, .. } => reg
                .by_handle(handle)
                .and_then(|id| Some((search_list_copy(reg, id)?, id))),
        };
        if let Some((list, named)) = copied {
            let slot = c.next;
            c.next = (slot + 1) % WAYS;
            let named = reg.obj(named).name.to_bytes().into();
            c.entries[slot] = Some(Entry { key, list, named });
        }
    });
}

/// The tables a lookup through `id`'s handle reads, when the locked lookup
/// would read exactly these: not the main program (its handle searches the
/// global scope, which grows), a search list of its own, and nothing being
/// unloaded.
fn search_list_copy(reg: &Registry, id: ObjId) -> Option<List> {
    let o = reg.obj(id);
    if o.is_main() || o.removed {
        return None;
    }
    copy(reg, o.searchlist.as_ref()?.iter().copied(), |_| true)
}

/// The tables RTLD_DEFAULT from `caller` reads (the scope of the caller's
/// object, as the locked lookup walks it, and that object), up to the
/// first object another thread could unload under the lookup (see the
/// module's notes): one the caller would come to depend on by a
/// definition found there, which the locked lookup records.
fn default_scope_copy(reg: &Registry, caller: usize) -> Option<(List, ObjId)> {
    let from = reg.caller_object(caller);
    let objects = super::with_scope(reg, Target::Default, caller, |chunks, _, _| {
        chunks
            .iter()
            .flat_map(|parts| parts.iter().flat_map(|list| list.iter().copied()))
            .collect::<Vec<ObjId>>()
    })
    .ok()?;
    let copied = copy(reg, objects.into_iter(), |m| !reg.needs_dependency(from, m))?;
    Some((copied, from))
}

/// The objects `ids` name, in order, up to the first that `held` says
/// another thread may unmap: None if one is being unloaded (the locked
/// lookup then decides which it reads); left out, those glibc has
/// unloaded (the locked lookup skips them).
fn copy(
    reg: &Registry,
    ids: impl Iterator<Item = ObjId>,
    held: impl Fn(ObjId) -> bool,
) -> Option<List> {
    let mut objects = Vec::new();
    for m in ids.filter(|&m| !reg.obj(m).is_gone()) {
        let o = reg.obj(m);
        if o.removed {
            return None;
        }
        if !held(m) {
            return Some(List {
                objects: objects.into(),
                whole: false,
            });
        }
        objects.push(Copied {
            symbols: o.view.symbols.clone(),
            versions: o.view.versions.clone(),
            ours: o.is_ours(),
        });
    }
    Some(List {
        objects: objects.into(),
        whole: true,
    })
}
