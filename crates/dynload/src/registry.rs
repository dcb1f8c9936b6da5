//! The loaded set: every object dynload mapped and every object glibc
//! loaded (mirrored from `dl_iterate_phdr`), the global scope, handles,
//! and the single lock that serialises loading and unloading.

use rustc_hash::FxHashMap;
use std::cell::{RefCell, RefMut};
use std::ffi::CString;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{ReentrantMutex, ReentrantMutexGuard};

use crate::debug;
use crate::elf::{elf, SymExt, LE};
use crate::error::{Error, ErrorKind};
use crate::find::{self, dst, Finder, ListKind, Opened, SearchInput, SearchList};
use crate::host::{self, HostEntry, View};
use crate::object::{HostState, Kind, LinkMap, NoDelete, ObjId, Object, Scope};

/// Counters for DYNLOAD_DEBUG=statistics and `dynload run --stats`.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Stats {
    pub dlopen_calls: u64,
    pub objects_loaded: u64,
    pub relocations: u64,
    pub relative_relocations: u64,
    pub lookups_cached: u64,
    /// Relocations bound in the relocation pass's fast lane.
    pub fast_lane: u64,
    /// Bytes of big PT_GNU_RELRO copied before relocation
    /// (`map::copy_big_relro`).
    pub relro_populated: u64,
    pub nanos: u64,
}

pub(crate) struct Registry {
    slots: Vec<Option<Box<Object>>>,
    /// glibc handles given up, to close when the operation ends.
    glibc_closing: Vec<usize>,
    free: Vec<ObjId>,
    /// dynload's objects in load order (glibc's namespace list order).
    pub loaded: Vec<ObjId>,
    /// glibc's objects in glibc's load order.
    pub host_list: Vec<ObjId>,
    host_counters: Option<(u64, u64)>,
    /// glibc's global scope as seen from outside: the start-up objects in
    /// search order, then objects glibc later made global. (Private: every
    /// change drops `global_filter`, see `global_scope_changed`.)
    host_global: Vec<ObjId>,
    pub main: ObjId,
    /// dynload's RTLD_GLOBAL objects, in the order they became global.
    /// (Private, as `host_global`.)
    our_global: Vec<ObjId>,
    /// The filter over the global scope's symbols, once a relocation pass
    /// built it (`link::scope_filter`).
    pub(crate) global_filter: std::cell::OnceCell<crate::link::scope_filter::ScopeFilter>,
    /// How many filters this process built: its first is a one-off (see
    /// [`Registry::drop_one_off_filter`]).
    pub(crate) filters_built: std::cell::Cell<u32>,
    /// The density the next filter is built at: coarse until the process
    /// has made many lookups through one (`link::scope_filter::worth_refining`).
    pub(crate) filter_density: crate::link::scope_filter::Density,
    /// Lookups of the relocation passes that used a coarse filter, counted
    /// against [`Registry::filter_density`]'s switch.
    filtered_lookups: u64,
    handles: FxHashMap<usize, ObjId>,
    /// dynload's objects by address: (start, end, id), sorted.
    ranges: Vec<(usize, usize, ObjId)>,
    pub finder: Finder,
    pub library_path: Option<SearchList>,
    /// `dlpi_adds` / `dlpi_subs` contributions of dynload's objects.
    pub adds: u64,
    pub subs: u64,
    pub stats: Stats,
    /// STB_GNU_UNIQUE definitions chosen so far.
    pub unique: crate::link::unique::UniqueTable,
}

/// The loader's state behind one recursive lock, like glibc's
/// `dl_load_lock`: constructors may call back into the loader on the same
/// thread; other threads wait.
pub(crate) struct Loader {
    lock: ReentrantMutex<RefCell<Option<Registry>>>,
}

pub(crate) static LOADER: Loader = Loader {
    lock: ReentrantMutex::new(RefCell::new(None)),
};

pub(crate) type Guard = ReentrantMutexGuard<'static, RefCell<Option<Registry>>>;

impl Loader {
    /// The lock, if it can be had within `timeout` (for reports at exit,
    /// which must not hang on a thread that died holding it).
    pub(crate) fn try_lock_for(&'static self, timeout: std::time::Duration) -> Option<Guard> {
        let g = self.lock.try_lock_for(timeout)?;
        // Not `borrow`: this thread may be inside the loader (a destructor
        // calling exit), with the registry borrowed.
        g.try_borrow().ok()?.as_ref()?;
        Some(g)
    }

    /// The lock, if no other thread holds it.
    pub(crate) fn try_lock(&'static self) -> Option<Guard> {
        let g = self.lock.try_lock()?;
        g.try_borrow().ok()?.as_ref()?;
        Some(g)
    }

    pub(crate) fn lock(&'static self) -> Guard {
        let g = self.lock.lock();
        // (Already borrowed: this thread is inside the loader, which is
        // initialised; `registry_mut` then reports it busy.)
        if g.try_borrow().is_ok_and(|r| r.is_none()) {
            let reg = Registry::new();
            *g.borrow_mut() = Some(reg);
        }
        g
    }
}

/// Close the glibc handles `release_glibc` queued (loader lock held,
/// registry not borrowed), then refresh the host list, so that no lookup
/// reads the tables of objects glibc unloaded.
pub(crate) fn close_queued_glibc(g: &Guard) {
    loop {
        let batch = match registry_mut(g) {
            Ok(mut reg) => std::mem::take(&mut reg.glibc_closing),
            Err(_) => return,
        };
        if batch.is_empty() {
            return;
        }
        let glibc = host::glibc();
        for h in batch {
            // SAFETY: each is a handle glibc's dlopen returned to dynload,
            // closed once (its holder gave it up).
            unsafe { (glibc.dlclose)(h as *mut std::ffi::c_void) };
        }
        if let Ok(mut reg) = registry_mut(g) {
            reg.refresh_host();
        }
    }
}

/// Counts the times the registry was taken mutably. What a thread copied
/// out of the registry for lookups without the lock (query's handle cache)
/// is trusted only while the count is the one it was copied at.
static EPOCH: AtomicU64 = AtomicU64::new(0);

/// The registry's current epoch (see [`EPOCH`]).
pub(crate) fn epoch() -> u64 {
    EPOCH.load(Ordering::Acquire)
}

/// Mutable access to the registry under the lock. Fails (instead of
/// panicking) when the loader is re-entered from code it is running with the
/// registry borrowed, such as an IFUNC resolver that calls dlopen.
pub(crate) fn registry_mut(g: &Guard) -> Result<RefMut<'_, Registry>, Error> {
    let r = g.try_borrow_mut().map_err(|_| busy())?;
    // Before any change: an object is unmapped, or a handle closed, only
    // after the epoch that vouched for it has ended. (Only lock holders
    // write it, so a load and a store do: no read-modify-write, which cost
    // a re-open a quarter of its time.)
    EPOCH.store(EPOCH.load(Ordering::Relaxed) + 1, Ordering::Release);
    Ok(RefMut::map(r, |r| {
        r.as_mut().expect("registry initialised by lock()")
    }))
}

pub(crate) fn registry(g: &Guard) -> Result<std::cell::Ref<'_, Registry>, Error> {
    let r = g.try_borrow().map_err(|_| busy())?;
    Ok(std::cell::Ref::map(r, |r| {
        r.as_ref().expect("registry initialised by lock()")
    }))
}

fn busy() -> Error {
    Error::load(
        ErrorKind::InvalidArgument,
        "",
        "dynload: the loader was re-entered while it is relocating (from an IFUNC resolver?)",
    )
}

impl Registry {
    fn new() -> Registry {
        let settings = crate::process::settings();
        debug::init(settings.debug.as_deref(), settings.debug_output.as_deref());
        crate::state::init();
        crate::tls::init(host::glibc().tls_get_addr);
        let finder = Finder::new();
        let mut reg = Registry {
            glibc_closing: Vec::new(),
            slots: Vec::new(),
            free: Vec::new(),
            loaded: Vec::new(),
            host_list: Vec::new(),
            host_counters: None,
            host_global: Vec::new(),
            main: 0,
            our_global: Vec::new(),
            global_filter: Default::default(),
            filters_built: Default::default(),
            filter_density: Default::default(),
            filtered_lookups: 0,
            handles: FxHashMap::default(),
            ranges: Vec::new(),
            finder,
            library_path: None,
            adds: 0,
            subs: 0,
            stats: Stats::default(),
            unique: Default::default(),
        };
        reg.refresh_host();
        // LD_LIBRARY_PATH tokens expand relative to the main program.
        if let Some(parts) = &settings.library_path {
            let joined = parts.join(&b':');
            let dirs = {
                let main = reg.obj(reg.main);
                let v = reg.dst_values(main);
                find::expand_list(&joined, b":;", &v)
            };
            reg.library_path = Some(SearchList {
                kind: ListKind::LdLibraryPath,
                dirs,
            });
        }
        reg
    }

    #[inline]
    pub(crate) fn obj(&self, id: ObjId) -> &Object {
        self.slots[id].as_deref().expect("live object id")
    }

    #[inline]
    pub(crate) fn obj_mut(&mut self, id: ObjId) -> &mut Object {
        self.slots[id].as_deref_mut().expect("live object id")
    }

    /// Every live id is below this.
    pub(crate) fn id_bound(&self) -> usize {
        self.slots.len()
    }

    pub(crate) fn get(&self, id: ObjId) -> Option<&Object> {
        self.slots.get(id)?.as_deref()
    }

    pub(crate) fn get_mut(&mut self, id: ObjId) -> Option<&mut Object> {
        self.slots.get_mut(id)?.as_deref_mut()
    }

    /// Add a record; its id is its slot.
    pub(crate) fn insert(&mut self, mut obj: Object) -> ObjId {
        let id = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        obj.id = id;
        // Scopes that name "this object" were built before its id existed.
        for s in &mut obj.scope {
            match s {
                Scope::Local(r) | Scope::Symbolic(r) if *r == usize::MAX => *r = id,
                _ => {}
            }
        }
        let handle = &*obj.link_map as *const LinkMap as usize;
        self.handles.insert(handle, id);
        if obj.is_ours() {
            let pos = self.ranges.partition_point(|r| r.0 < obj.map_start);
            self.ranges.insert(pos, (obj.map_start, obj.map_end, id));
            self.loaded.push(id);
            self.link_last_ours(&mut obj);
        }
        self.slots[id] = Some(Box::new(obj));
        id
    }

    /// Remove a record (unmapping it, for dynload's objects).
    pub(crate) fn remove(&mut self, id: ObjId) -> Box<Object> {
        let obj = self.slots[id].take().expect("live object id");
        if let (true, Some(m)) = (obj.is_ours(), obj.tls_module) {
            crate::tls::unregister(m);
        }
        if obj.is_ours() {
            crate::unwind::forget(id);
            crate::debugger::forget(id);
        }
        self.handles
            .remove(&(&*obj.link_map as *const LinkMap as usize));
        self.ranges.retain(|r| r.2 != id);
        self.loaded.retain(|&o| o != id);
        let global = self.our_global.len() + self.host_global.len();
        self.our_global.retain(|&o| o != id);
        self.host_global.retain(|&o| o != id);
        if self.our_global.len() + self.host_global.len() != global {
            self.global_scope_changed();
        }
        self.host_list.retain(|&o| o != id);
        self.unique.forget(id);
        // Unlink from dynload's link_map chain.
        // SAFETY: neighbours in the chain are live records of this registry
        // (the chain is only changed here and in link_last_ours, under the
        // lock), and their boxes do not move.
        unsafe {
            let lm = &*obj.link_map;
            if !lm.l_prev.is_null() {
                (*lm.l_prev).l_next = lm.l_next;
            }
            if !lm.l_next.is_null() {
                (*lm.l_next).l_prev = lm.l_prev;
            }
        }
        self.free.push(id);
        obj
    }

    fn link_last_ours(&mut self, obj: &mut Object) {
        if let Some(&last) = self.loaded.iter().rev().nth(1) {
            let prev = &mut *self.obj_mut(last).link_map as *mut LinkMap;
            obj.link_map.l_prev = prev;
            // SAFETY: `prev` is the live record of the previous object.
            unsafe { (*prev).l_next = &mut *obj.link_map };
        }
    }

    /// The handle given to C callers for an object.
    pub(crate) fn handle_of(&self, id: ObjId) -> *mut LinkMap {
        &*self.obj(id).link_map as *const LinkMap as *mut LinkMap
    }

    /// The object a handle names, if it is open.
    pub(crate) fn by_handle(&self, handle: usize) -> Option<ObjId> {
        self.handles.get(&handle).copied()
    }

    /// Every object, glibc's first, in load order.
    pub(crate) fn all_in_load_order(&self) -> impl Iterator<Item = ObjId> + '_ {
        self.host_list
            .iter()
            .chain(self.loaded.iter())
            .copied()
            .filter(|&id| !self.obj(id).removed)
    }

    /// The object containing `addr`; unknown addresses count as the main
    /// program, as in glibc.
    pub(crate) fn object_at(&self, addr: usize) -> Option<ObjId> {
        let pos = self.ranges.partition_point(|r| r.0 <= addr);
        if pos > 0 {
            let (s, e, id) = self.ranges[pos - 1];
            if s <= addr && addr < e {
                return Some(id);
            }
        }
        self.host_list.iter().copied().find(|&id| {
            let o = self.obj(id);
            o.contains(addr) && !o.host().is_some_and(|h| h.is_vdso)
        })
    }

    pub(crate) fn caller_object(&self, addr: usize) -> ObjId {
        self.object_at(addr).unwrap_or(self.main)
    }

    /// One of dynload's own live objects whose path is `name`, byte for
    /// byte: the first object in load order that answers to that name,
    /// whatever glibc loaded or unloaded since the host list was last
    /// refreshed. An object glibc had loaded from that path before would
    /// have been reused, not mapped again, so any that answers to it now
    /// came later (only a soname with a `/` in it could answer otherwise);
    /// [`Registry::find_loaded`], which asks glibc's objects first, would
    /// give that later copy. Found without reading glibc's objects.
    pub(crate) fn own_object_at_path(&self, name: &[u8]) -> Option<ObjId> {
        if !name.contains(&b'/') {
            return None;
        }
        self.loaded.iter().copied().find(|&id| {
            let o = self.obj(id);
            o.is_ours() && !o.removed && o.name.to_bytes() == name
        })
    }

    /// A loaded object answering to `name`.
    pub(crate) fn find_loaded(&self, name: &[u8]) -> Option<ObjId> {
        self.all_in_load_order().find(|&id| {
            let o = self.obj(id);
            // (An object glibc unloaded answers to nothing already.)
            !o.host().is_some_and(|h| h.is_vdso) && o.answers_to(name)
        })
    }

    pub(crate) fn find_by_file(&self, opened: &Opened) -> Option<ObjId> {
        let wanted = Some((opened.dev, opened.ino));
        self.all_in_load_order().find(|&id| {
            let o = self.obj(id);
            if o.host().is_some_and(|h| !h.present) {
                return false;
            }
            match o.file_id.get() {
                Some(&known) => known == wanted,
                // An object glibc loaded from this file has the file's
                // program headers: only then is its identity asked for.
                None => {
                    // SAFETY: glibc's program headers of a loaded object
                    // (`dl_iterate_phdr`), mapped while it is present.
                    let phdrs = unsafe { std::slice::from_raw_parts(o.phdr, o.phnum) };
                    let bytes = object::pod::bytes_of_slice;
                    bytes(phdrs) == bytes(&opened.phdrs) && o.file_id() == wanted
                }
            }
        })
    }

    /// What tokens expand to for `obj`.
    pub(crate) fn dst_values<'a>(&'a self, obj: &'a Object) -> dst::DstValues<'a> {
        dst::DstValues {
            origin: obj.origin.as_deref(),
            platform: self.finder.hwcaps().platform.as_bytes(),
            lib: dst::LIB,
            secure: crate::process::settings().secure,
            is_main: obj.is_main(),
        }
    }

    /// A dynamic-section string of `obj`.
    pub(crate) fn dyn_string<'a>(&self, obj: &'a Object, off: u64) -> Option<&'a [u8]> {
        obj.view.symbols.string(off as usize)
    }

    fn path_owner<'r>(&'r self, o: &'r Object) -> find::PathOwner<'r> {
        find::PathOwner {
            name: o.display_name(),
            rpath: o
                .view
                .dyn_info
                .rpath()
                .and_then(|off| self.dyn_string(o, off)),
            runpath: o
                .view
                .dyn_info
                .runpath()
                .and_then(|off| self.dyn_string(o, off)),
            nodeflib: o.view.dyn_info.flag_1(elf::DF_1_NODEFLIB),
            dst: self.dst_values(o),
        }
    }

    /// The search input for `name` asked for by `loader` (glibc's
    /// `_dl_map_object` search order).
    pub(crate) fn search_input<'a>(&self, name: &'a [u8], loader: ObjId) -> SearchInput<'a> {
        let mut chain = Vec::new();
        let mut main_in_chain = false;
        let mut cur = Some(loader);
        while let Some(id) = cur {
            let o = self.obj(id);
            chain.push(self.path_owner(o));
            main_in_chain |= id == self.main;
            cur = o.loader;
        }
        let main = (!main_in_chain).then(|| self.path_owner(self.obj(self.main)));
        find::search_input(name, &chain, main.as_ref())
    }

    /// Mirror glibc's list of loaded objects, if it changed.
    /// Drop references dynload holds on glibc's objects (handles from
    /// glibc's dlopen). They are queued and closed by `close_queued_glibc`
    /// when the loader's operation ends, without the registry borrowed:
    /// glibc may run destructors, which may call back into dynload.
    pub(crate) fn release_glibc(
        &mut self,
        handles: impl IntoIterator<Item = *mut std::ffi::c_void>,
    ) {
        self.glibc_closing.extend(
            handles
                .into_iter()
                .filter(|h| !h.is_null())
                .map(|h| h as usize),
        );
    }

    pub(crate) fn refresh_host(&mut self) {
        if self.host_counters == Some(host::host_counters()) {
            return;
        }
        let (entries, adds, subs) = host::host_objects();
        let first = self.host_counters.is_none();
        self.host_counters = Some((adds, subs));
        // glibc's list changed: its global scope may have, and an object
        // it had unloaded (left out of the filter) may be back. The filter
        // stays if what it covers is the same (glibc loaded or unloaded
        // objects outside its global scope, as a program using both
        // loaders does all the time).
        let covered_before = self.global_filter.get().map(|_| self.filter_covers());
        for &id in &self.host_list {
            if let Kind::Host(h) = &mut self.slots[id].as_deref_mut().expect("live").kind {
                h.present = false;
            }
        }
        let mut new_ids = Vec::new();
        let mut order = Vec::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            let existing = self.host_list.iter().copied().find(|&id| {
                let o = self.obj(id);
                o.view.image.base == e.addr
                    && o.name.to_bytes() == e.name.as_slice()
                    && o.phdr == e.phdr
            });
            let id = match existing {
                Some(id) => id,
                None => {
                    let id = self.insert(make_host(e, i == 0));
                    new_ids.push(id);
                    id
                }
            };
            if let Kind::Host(h) = &mut self.obj_mut(id).kind {
                h.present = true;
            }
            order.push(id);
        }
        // Forget objects glibc unloaded that no dynload object refers to.
        let gone: Vec<ObjId> = self
            .host_list
            .iter()
            .copied()
            .filter(|id| !order.contains(id))
            .collect();
        for id in gone {
            let referenced = self.obj(id).direct_opencount > 0
                || self.loaded.iter().any(|&o| {
                    let ob = self.obj(o);
                    ob.needed.contains(&id)
                        || ob.searchlist.as_ref().is_some_and(|s| s.contains(&id))
                });
            if !referenced {
                self.remove(id);
            } else {
                order.push(id);
            }
        }
        self.host_list = order;
        self.main = self.host_list[0];
        for &id in &new_ids {
            let needed = self.resolve_host_needed(id);
            self.obj_mut(id).needed = needed.clone();
            let mut initfini = vec![id];
            initfini.extend(needed);
            self.obj_mut(id).initfini = initfini;
        }
        if first {
            self.host_global = self.startup_scope();
            for id in self.host_global.clone() {
                if let Kind::Host(h) = &mut self.obj_mut(id).kind {
                    h.startup = true;
                }
                self.obj_mut(id).global = true;
            }
        }
        // Objects glibc loaded after start-up are in its global scope only if
        // they were opened RTLD_GLOBAL; ask glibc.
        for id in new_ids {
            let o = self.obj(id);
            let h = o.host().expect("host");
            if h.startup || h.is_vdso || self.host_global.contains(&id) {
                continue;
            }
            if probe_global(o) {
                self.host_global.push(id);
                self.obj_mut(id).global = true;
            }
        }
        if covered_before.is_some_and(|before| before != self.filter_covers()) {
            self.global_scope_changed();
        }
    }

    /// The objects the global scope's filter is built over: those of the
    /// global scope whose tables are there (glibc has not unloaded them).
    pub(crate) fn filter_covers(&self) -> Vec<ObjId> {
        self.filter_covered().collect()
    }

    /// [`Registry::filter_covers`] without collecting them.
    pub(crate) fn filter_covered(&self) -> impl Iterator<Item = ObjId> + '_ {
        self.global_parts()
            .into_iter()
            .flatten()
            .copied()
            .filter(|&id| !self.obj(id).is_gone())
    }

    fn resolve_host_needed(&self, id: ObjId) -> Vec<ObjId> {
        let o = self.obj(id);
        let mut out = Vec::new();
        for &off in &o.view.dyn_info.needed {
            let Some(name) = self.dyn_string(o, off) else {
                continue;
            };
            let found = self.host_list.iter().copied().find(|&h| {
                let ho = self.obj(h);
                ho.answers_to(name)
                    || ho.name.to_bytes().rsplit(|&c| c == b'/').next() == Some(name)
            });
            if let Some(f) = found {
                if !out.contains(&f) {
                    out.push(f);
                }
            }
        }
        out
    }

    /// glibc's initial global scope: the main program, the preloaded
    /// objects, then the breadth-first closure of their DT_NEEDED entries.
    fn startup_scope(&self) -> Vec<ObjId> {
        let mut list = vec![self.main];
        for p in &crate::process::settings().preload {
            let base = p.rsplit(|&c| c == b'/').next().unwrap_or(p);
            if let Some(id) = self.host_list.iter().copied().find(|&h| {
                let o = self.obj(h);
                o.name.to_bytes() == p.as_slice()
                    || o.answers_to(base)
                    || o.name.to_bytes().ends_with(&[b"/", base].concat())
            }) {
                if !list.contains(&id) {
                    list.push(id);
                }
            }
        }
        self.bfs_from(list)
    }

    /// The breadth-first dependency list of an object (its local scope).
    pub(crate) fn bfs(&self, root: ObjId) -> Vec<ObjId> {
        self.bfs_from(vec![root])
    }

    /// Extend `list` breadth-first with the dependencies of its members.
    fn bfs_from(&self, mut list: Vec<ObjId>) -> Vec<ObjId> {
        let mut i = 0;
        while i < list.len() {
            for &d in &self.obj(list[i]).needed {
                if !list.contains(&d) {
                    list.push(d);
                }
            }
            i += 1;
        }
        list
    }

    /// The global scope as one list (for RTLD_NEXT and diagnostics).
    pub(crate) fn global_scope(&self) -> Vec<ObjId> {
        self.global_parts().concat()
    }

    /// The global scope as its two lists, glibc's part then dynload's.
    pub(crate) fn global_parts(&self) -> [&[ObjId]; 2] {
        [&self.host_global, &self.our_global]
    }

    /// Append `root`'s search list to the global scope (after constructors,
    /// as glibc does), each object once.
    pub(crate) fn add_to_global(&mut self, root: ObjId) {
        let list = self
            .obj(root)
            .searchlist
            .clone()
            .unwrap_or_else(|| vec![root]);
        for id in list {
            if !self.obj(id).global {
                self.obj_mut(id).global = true;
                self.global_scope_changed();
                self.our_global.push(id);
                crate::debug::debug!(
                    crate::debug::SCOPES,
                    "\nadd {} [0] to global scope",
                    self.obj(id).display_name()
                );
                crate::link::collisions::check(self, id);
            }
        }
    }

    /// Every change to `host_global` or `our_global`, and every change of
    /// glibc's list, comes with this: the filter over the old scope would
    /// wrongly reject names a new member defines.
    fn global_scope_changed(&mut self) {
        self.global_filter.take();
    }

    /// At the end of the `dlopen` that built it, drop the process's first
    /// global scope filter, whose words have a mapping of their own: a
    /// process that loads once (one plugin, one big library) keeps no
    /// filter, and its memory goes back to the kernel (on the heap, its
    /// pages stayed resident: 0.5 KiB an object of the memory benchmark's
    /// libz3 load, whose three objects made 1.7 KB of filter). A process
    /// that loads again builds the next on the heap and keeps it.
    pub(crate) fn drop_one_off_filter(&mut self) {
        if self.global_filter.get().is_some_and(|f| f.is_one_off()) {
            self.global_filter.take();
        }
    }

    /// A relocation pass made about `lookups` lookups through the global
    /// scope's filter: once a coarse one has seen enough of them, it is
    /// dropped, and the next pass that wants one builds it fine (and so do
    /// those after a change of the global scope: the process has shown
    /// that it makes that many lookups).
    pub(crate) fn count_filtered_lookups(&mut self, lookups: usize) {
        use crate::link::scope_filter::{worth_refining, Density};
        let Some(filter) = self.global_filter.get() else {
            return;
        };
        if lookups == 0 || filter.density() == Density::Fine {
            return;
        }
        self.filtered_lookups = self.filtered_lookups.saturating_add(lookups as u64);
        if worth_refining(self.filtered_lookups, filter.symbols()) {
            self.filter_density = Density::Fine;
            self.global_filter.take();
        }
    }

    /// The `dl_iterate_phdr` counters, glibc's plus dynload's.
    pub(crate) fn counters(&self) -> (u64, u64) {
        (self.adds, self.subs)
    }

    /// Mark `id` NODELETE, as glibc does when something that cannot be
    /// unloaded binds to it.
    /// Make `id` NODELETE (`why` is for the debug output). One of glibc's
    /// objects that glibc could unload is made NODELETE by glibc itself,
    /// through its public interface (a RTLD_NOLOAD|RTLD_NODELETE dlopen).
    pub(crate) fn mark_nodelete(&mut self, id: ObjId, why: &str) {
        let o = self.obj(id);
        if !o.can_be_unloaded() {
            return;
        }
        if !o.is_ours() {
            let g = host::glibc();
            // SAFETY: glibc's dlopen and dlclose, with the object's own name;
            // RTLD_NOLOAD only finds what is loaded.
            unsafe {
                let h = (g.dlopen)(
                    o.name.as_ptr(),
                    libc::RTLD_NOLOAD | libc::RTLD_NODELETE | libc::RTLD_LAZY,
                );
                if h.is_null() {
                    let _ = host::glibc_error();
                    return;
                }
                (g.dlclose)(h);
            }
        }
        let o = self.obj_mut(id);
        match &mut o.kind {
            Kind::Host(h) => h.nodelete = true,
            Kind::Ours(_) => o.nodelete = NoDelete::Active,
        }
        let n = o.display_name();
        crate::debug::debug!(
            crate::debug::BINDINGS,
            "marking {n} [0] as NODELETE due to {why}"
        );
    }

    /// glibc's `add_dependency`: `from` now uses `to` (a relocation or an
    /// RTLD_DEFAULT lookup found a definition outside its dependencies).
    /// One of dynload's objects keeps another alive as long as it lives;
    /// an object that can never be unloaded (the program, glibc's objects)
    /// makes `to` NODELETE instead.
    pub(crate) fn add_dependency(&mut self, from: ObjId, to: ObjId) {
        if !self.needs_dependency(from, to) {
            return;
        }
        let (f, t) = (self.obj(from), self.obj(to));
        if f.is_ours() {
            // A reference from dynload's object to one glibc could unload
            // is not recorded (glibc would): it is held by whoever opened it.
            if t.is_ours() {
                self.obj_mut(from).reldeps.push(to);
            }
        } else {
            let why = if f.is_main() {
                "reference from main program".to_string()
            } else {
                format!("reference from {} [0]", f.display_name())
            };
            self.mark_nodelete(to, &why);
        }
    }

    /// Would `add_dependency(from, to)` record anything?
    pub(crate) fn needs_dependency(&self, from: ObjId, to: ObjId) -> bool {
        let (f, t) = (self.obj(from), self.obj(to));
        from != to && t.can_be_unloaded() && !f.initfini.contains(&to) && !f.reldeps.contains(&to)
    }

    /// Record what relocating (or lazily binding a slot of) `from` found:
    /// the objects it now uses, and the definers of unique symbols.
    pub(crate) fn record_bindings(
        &mut self,
        from: ObjId,
        used: &[ObjId],
        unique_definers: &[ObjId],
    ) {
        for &d in unique_definers {
            self.mark_nodelete(d, "unique symbol");
        }
        for &d in used {
            self.add_dependency(from, d);
        }
    }
}

/// The record for one of glibc's objects.
fn make_host(e: &HostEntry, is_main: bool) -> Object {
    // SAFETY: dl_iterate_phdr reported these program headers for an object
    // glibc has loaded; the records of objects glibc unloads are dropped at
    // the next refresh unless dynload holds a glibc reference to them.
    let view = unsafe { View::of_mapped(e.addr, e.phdr, e.phnum, true) }.unwrap_or_else(|_| {
        // SAFETY: as above.
        let image = unsafe {
            crate::elf::image::Image::new(e.addr, std::slice::from_raw_parts(e.phdr, e.phnum))
        };
        View {
            symbols: crate::elf::symbols::SymbolTable::empty(e.addr),
            image,
            dyn_info: Default::default(),
            versions: Default::default(),
            dynamic_addr: 0,
        }
    });
    // SAFETY: as above.
    let phdrs = unsafe { std::slice::from_raw_parts(e.phdr, e.phnum) };
    let (mut lo, mut hi) = (usize::MAX, 0usize);
    for p in phdrs.iter().filter(|p| p.p_type.get(LE) == elf::PT_LOAD) {
        let s = crate::elf::page_down(e.addr.wrapping_add(p.p_vaddr.get(LE) as usize));
        let end = e
            .addr
            .wrapping_add((p.p_vaddr.get(LE) + p.p_memsz.get(LE)) as usize);
        lo = lo.min(s);
        hi = hi.max(end);
    }
    let is_vdso = e.name.starts_with(b"linux-vdso") || e.name.starts_with(b"linux-gate");
    // (Looked up when first needed: `Object::file_id`.)
    let file_id = std::sync::OnceLock::new();
    if is_vdso {
        let _ = file_id.set(None);
    }
    let origin = if is_main {
        std::fs::read_link("/proc/self/exe").ok().and_then(|p| {
            p.parent()
                .map(|d| d.as_os_str().as_encoded_bytes().to_vec())
        })
    } else {
        origin_of(&e.name)
    };
    let name = CString::new(e.name.clone()).unwrap_or_default();
    let link_map = Box::new(LinkMap {
        l_addr: e.addr,
        l_name: std::ptr::null(),
        l_ld: view.dynamic_addr as *const _,
        l_next: std::ptr::null_mut(),
        l_prev: std::ptr::null_mut(),
    });
    let mut obj = Object {
        id: 0,
        kind: Kind::Host(HostState {
            startup: false,
            nodelete: false,
            is_main,
            is_vdso,
            pin: std::ptr::null_mut(),
            present: true,
        }),
        link_map,
        name,
        names: Vec::new(),
        view,
        file_id,
        origin,
        phdr: e.phdr,
        phnum: e.phnum,
        map_start: if lo == usize::MAX { e.addr } else { lo },
        map_end: hi,
        via: None,
        loader: None,
        needed: Vec::new(),
        initfini: Vec::new(),
        searchlist: None,
        scope: vec![Scope::Global],
        reldeps: Vec::new(),
        direct_opencount: 0,
        global: false,
        nodelete: NoDelete::Active,
        versions_checked: true,
        relocated: true,
        init_called: true,
        removed: false,
        glibc_pins: Vec::new(),
        tls_module: (e.tls_modid != 0).then_some(e.tls_modid),
        tls_descs: Vec::new(),
        lazy: None,
        addr_index: Default::default(),
        tls_dtors: Default::default(),
    };
    obj.link_map.l_name = obj.name.as_ptr();
    obj
}

/// glibc's `l_origin`: the directory of the path an object was loaded
/// from, made absolute against the current directory (symlinks are not
/// resolved).
pub(crate) fn origin_of(path: &[u8]) -> Option<Vec<u8>> {
    let slash = path.iter().rposition(|&c| c == b'/')?;
    let dir = if slash == 0 {
        b"/".to_vec()
    } else {
        path[..slash].to_vec()
    };
    if dir.starts_with(b"/") {
        return Some(dir);
    }
    let cwd = std::env::current_dir().ok()?;
    let mut abs = cwd.as_os_str().as_encoded_bytes().to_vec();
    abs.push(b'/');
    abs.extend_from_slice(&dir);
    Some(abs)
}

/// Is a glibc-loaded object in glibc's global scope? glibc's `dlsym` on the
/// main program's handle searches exactly that scope, adds no dependency,
/// and answers with an address; a definition of the object coming back
/// means it is in the scope.
fn probe_global(o: &Object) -> bool {
    let g = host::glibc();
    let syms = &o.view.symbols;
    let mut tried = 0;
    for (i, s) in syms.iter() {
        if tried >= 8 {
            break;
        }
        let usable = !s.is_undefined()
            && matches!(s.bind(), elf::STB_GLOBAL | elf::STB_WEAK)
            && s.visibility() == elf::STV_DEFAULT
            && matches!(s.kind(), elf::STT_FUNC | elf::STT_OBJECT)
            && syms.versym(i).is_none_or(|v| v & 0x8000 == 0);
        if !usable {
            continue;
        }
        let Ok(name) = CString::new(syms.name(s)) else {
            continue;
        };
        tried += 1;
        // SAFETY: glibc's dlsym with its own main handle and a C string.
        let addr = unsafe { (g.dlsym)(g.main_handle, name.as_ptr()) } as usize;
        if addr == 0 {
            let _ = host::glibc_error();
            return false;
        }
        if o.contains(addr) {
            return true;
        }
    }
    false
}
