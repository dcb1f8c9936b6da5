//! dlclose: drop a reference; when an object's direct count reaches zero,
//! find every dynload object no longer reachable from a live root (open
//! handles, NODELETE objects, and their dependencies and relocation
//! dependencies), run their destructors in glibc's order, and unmap them.

use crate::debug::{self, debug};
use crate::error::{Error, ErrorKind};
use crate::init;
use crate::object::{Kind, NoDelete, ObjId, Scope};
use crate::registry::{registry, registry_mut, Registry, LOADER};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};

/// Close one reference to `id`.
pub(crate) fn dlclose(id: ObjId) -> Result<(), Error> {
    close_with(|_| Some(id))
}

/// `dlclose` of a C handle (resolved under the same lock as the close).
pub(crate) fn dlclose_handle(handle: usize) -> Result<(), Error> {
    close_with(|reg| reg.by_handle(handle))
}

fn close_with(id: impl FnOnce(&crate::registry::Registry) -> Option<ObjId>) -> Result<(), Error> {
    let guard = LOADER.lock();
    let id = id(&*registry(&guard)?)
        .ok_or_else(|| Error::load(ErrorKind::NotOpen, "", "shared object not open"))?;
    let r = close_locked(&guard, id);
    collect_pending(&guard);
    crate::registry::close_queued_glibc(&guard);
    r
}

fn close_locked(guard: &crate::registry::Guard, id: ObjId) -> Result<(), Error> {
    let victims = {
        let mut reg = registry_mut(guard)?;
        let Some(o) = reg.get(id) else {
            return Err(Error::load(
                ErrorKind::NotOpen,
                "",
                "shared object not open",
            ));
        };
        if o.direct_opencount == 0 {
            return Err(Error::load(
                ErrorKind::NotOpen,
                o.display_name(),
                "shared object not open",
            ));
        }
        let o = reg.obj_mut(id);
        o.direct_opencount -= 1;
        let count = o.direct_opencount;
        if !o.is_ours() {
            release_host(&mut reg, id);
            debug!(
                debug::FILES,
                "\nclosing file={}; direct_opencount={count}",
                reg.obj(id).display_name()
            );
            return Ok(());
        }
        if count > 0 || CLOSING.with(|c| c.get()) {
            if count == 0 {
                RERUN.with(|r| r.set(true));
            }
            debug!(
                debug::FILES,
                "\nclosing file={}; direct_opencount={count}",
                reg.obj(id).display_name()
            );
            return Ok(());
        }
        CLOSING.with(|c| c.set(true));
        drop(reg);
        run_own_thread_dtors(guard);
        let mut reg = registry_mut(guard)?;
        collect(&mut reg)
    };
    finish(guard, victims);
    Ok(())
}

thread_local! {
    /// A dlclose from a destructor is recorded and the collection re-run
    /// afterwards, as glibc's `dl_close_state`.
    static CLOSING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static RERUN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Set when the last pending `thread_local` destructor of an object ran
/// while another thread held the loader lock: that holder collects.
static COLLECT_PENDING: AtomicBool = AtomicBool::new(false);

/// The last pending `thread_local` destructor of an object has run: an
/// object whose handles were all closed is unloaded now, from the thread
/// that ran it (glibc waits for the next dlclose), or, if another thread
/// holds the loader lock (perhaps waiting for this one to exit), by that
/// thread when it is done.
pub(crate) fn collect_when_idle() {
    COLLECT_PENDING.store(true, SeqCst);
    if let Some(guard) = LOADER.try_lock() {
        collect_pending(&guard);
        crate::registry::close_queued_glibc(&guard);
    }
}

/// Collect if a thread exit asked for it (loader lock held).
pub(crate) fn collect_pending(guard: &crate::registry::Guard) {
    if !COLLECT_PENDING.load(SeqCst) || CLOSING.with(|c| c.get()) {
        return;
    }
    let victims = {
        let Ok(mut reg) = registry_mut(guard) else {
            return;
        };
        COLLECT_PENDING.store(false, SeqCst);
        CLOSING.with(|c| c.set(true));
        collect(&mut reg)
    };
    if !victims.is_empty() {
        debug!(
            debug::FILES,
            "\nunloading after the last thread_local destructors ran"
        );
    }
    finish(guard, victims);
}

/// A host object's count reached zero: drop the glibc reference dynload held.
fn release_host(reg: &mut Registry, id: ObjId) {
    let o = reg.obj_mut(id);
    if o.direct_opencount > 0 {
        return;
    }
    o.searchlist = None;
    if let Kind::Host(h) = &mut o.kind {
        let pin = std::mem::replace(&mut h.pin, std::ptr::null_mut());
        reg.release_glibc([pin]);
    }
}

/// The objects still in use: reachable from open handles, NODELETE objects
/// and objects with pending `thread_local` destructors (not counting those
/// in `discount`: this thread's, per object), through dependencies and
/// relocation dependencies.
fn in_use(reg: &Registry, discount: &HashMap<ObjId, usize>) -> HashSet<ObjId> {
    let mut used = HashSet::new();
    let mut stack: Vec<ObjId> = reg
        .loaded
        .iter()
        .copied()
        .filter(|&id| {
            let o = reg.obj(id);
            o.direct_opencount > 0
                || o.nodelete == NoDelete::Active
                || o.tls_dtors.load(SeqCst) > discount.get(&id).copied().unwrap_or(0)
        })
        .collect();
    while let Some(id) = stack.pop() {
        if !used.insert(id) {
            continue;
        }
        let o = reg.obj(id);
        for &d in o.initfini.iter().chain(o.reldeps.iter()) {
            if reg.obj(d).is_ours() && !used.contains(&d) {
                stack.push(d);
            }
        }
    }
    used
}

/// Before collecting: run the `thread_local` destructors this thread has
/// pending for objects that only they keep (see `thread_exit`). Objects
/// that another thread's destructors keep stay, with this thread's values.
fn run_own_thread_dtors(guard: &crate::registry::Guard) {
    let mine = crate::thread_exit::this_threads_counts();
    if mine.is_empty() {
        return;
    }
    let doomed: HashSet<ObjId> = match registry_mut(guard) {
        Ok(reg) => {
            let used = in_use(&reg, &mine);
            mine.keys()
                .copied()
                .filter(|id| reg.get(*id).is_some() && !used.contains(id))
                .collect()
        }
        Err(_) => return,
    };
    for p in crate::thread_exit::take_this_threads(|id| doomed.contains(&id)) {
        // SAFETY: taken on this thread for an object that is still mapped
        // (it is only unmapped by the collection that follows).
        unsafe { crate::thread_exit::run_early(p) };
    }
}

/// Mark and sweep: the objects to unload, in destructor order. They are
/// marked `removed` (lookups skip them) but stay mapped until `finish`.
fn collect(reg: &mut Registry) -> Vec<ObjId> {
    let loaded = reg.loaded.clone();
    let used = in_use(reg, &HashMap::new());
    let mut order: Vec<ObjId> = loaded.clone();
    init::sort(reg, &mut order, true, false);
    let victims: Vec<ObjId> = order.into_iter().filter(|id| !used.contains(id)).collect();
    for &id in &victims {
        reg.obj_mut(id).removed = true;
    }
    // Survivors whose local scope was the search list of an object being
    // removed get a search list of their own ([self, direct deps]).
    for &id in &loaded {
        if victims.contains(&id) {
            continue;
        }
        let needs_own = reg
            .obj(id)
            .scope
            .iter()
            .any(|s| matches!(s, Scope::Local(r) if victims.contains(r)));
        if needs_own {
            let o = reg.obj_mut(id);
            if o.searchlist.is_none() {
                let mut own = vec![id];
                own.extend(o.needed.iter().copied());
                o.searchlist = Some(own);
            }
            for s in &mut o.scope {
                if let Scope::Local(r) = s {
                    if victims.contains(r) {
                        *r = id;
                    }
                }
            }
        }
    }
    victims
}

/// Run destructors of `victims` (registry not borrowed), then unmap them.
fn finish(guard: &crate::registry::Guard, victims: Vec<ObjId>) {
    for &id in &victims {
        let (fns, name) = {
            let Ok(reg) = registry_mut(guard) else {
                continue;
            };
            let o = reg.obj(id);
            if !o.init_called {
                continue;
            }
            let name = debug::enabled(debug::LIBS).then(|| o.display_name());
            (init::destructors(o), name)
        };
        if let Some(name) = name {
            debug!(debug::LIBS, "\ncalling fini: {name} [0]\n");
        }
        // SAFETY: destructors of an initialised object that is still mapped.
        unsafe { init::call_destructors(fns) };
    }
    if let Ok(mut reg) = registry_mut(guard) {
        for id in victims {
            let obj = reg.remove(id);
            reg.release_glibc(obj.glibc_pins.iter().copied());
            reg.subs += 1;
            debug!(
                debug::FILES,
                "\nfile={} [0];  destroying link map",
                obj.display_name()
            );
            drop(obj);
        }
    }
    CLOSING.with(|c| c.set(false));
    if RERUN.with(|r| r.replace(false)) {
        let victims = match registry_mut(guard) {
            Ok(mut reg) => {
                CLOSING.with(|c| c.set(true));
                collect(&mut reg)
            }
            Err(_) => return,
        };
        finish(guard, victims);
    }
}

/// At exit, as glibc's `_dl_fini` does for its objects: the destructors of
/// every dynload object still loaded, in destructor order, once. It runs
/// from the `.fini_array` of the object that contains dynload (the program
/// for the Rust API, libdynload.so for the C ABI), that is after the
/// program's `atexit` handlers, within glibc's `_dl_fini`.
extern "C" fn destructors_at_exit() {
    // A thread that died holding the lock must not hang the exit.
    let Some(guard) = LOADER.try_lock_for(std::time::Duration::from_millis(500)) else {
        return;
    };
    let order = {
        let Ok(reg) = registry_mut(&guard) else {
            return;
        };
        let mut order: Vec<ObjId> = reg
            .loaded
            .iter()
            .copied()
            .filter(|&id| {
                let o = reg.obj(id);
                o.is_ours() && o.init_called && !o.removed
            })
            .collect();
        init::sort(&reg, &mut order, true, false);
        order
    };
    for id in order {
        let (fns, name) = {
            let Ok(mut reg) = registry_mut(&guard) else {
                return;
            };
            let Some(o) = reg.get_mut(id) else { continue };
            if !o.init_called {
                continue;
            }
            // Finalised: a later dlclose (from another destructor) must not
            // run these again.
            o.init_called = false;
            let name = debug::enabled(debug::LIBS).then(|| o.display_name());
            (init::destructors(o), name)
        };
        if let Some(name) = name {
            debug!(debug::LIBS, "\ncalling fini: {name} [0]\n");
        }
        // SAFETY: destructors of an initialised object that is still mapped.
        unsafe { init::call_destructors(fns) };
    }
}

#[used]
#[link_section = ".fini_array"]
static DESTRUCTORS_AT_EXIT: extern "C" fn() = destructors_at_exit;
