//! dlopen: find the object and its dependencies, map them, check their
//! versions, relocate them dependencies-first, run constructors, and only
//! then make them global. Any failure before the constructors rolls back
//! everything this call did: nothing stays mapped, no count changes.

use std::ffi::{c_int, c_void, CString};

use crate::debug::{self, debug};
use crate::elf::{dynamic, elf, Phdr, LE};
use crate::error::{Error, ErrorKind, Shown};
use crate::find::{self, dst};
use crate::host::{self, View};
use crate::init;
use crate::map;
use crate::object::{Kind, LinkMap, NoDelete, ObjId, Object, Scope};
use crate::registry::{self, registry, registry_mut, Registry, LOADER};
use crate::relocate;

pub(crate) const RTLD_LAZY: c_int = 0x1;
pub(crate) const RTLD_NOW: c_int = 0x2;
pub(crate) const RTLD_BINDING_MASK: c_int = 0x3;
pub(crate) const RTLD_NOLOAD: c_int = 0x4;
pub(crate) const RTLD_DEEPBIND: c_int = 0x8;
pub(crate) const RTLD_GLOBAL: c_int = 0x100;
pub(crate) const RTLD_NODELETE: c_int = 0x1000;

/// Everything one dlopen call created or changed, for rollback.
#[derive(Default)]
struct Tx {
    new_objects: Vec<ObjId>,
    root: Option<ObjId>,
    /// The root existed before: its state to restore.
    root_before: Option<RootState>,
    /// Handles from glibc's dlopen of C-runtime libraries during this call.
    /// The objects that need them take references of their own; these are
    /// released when the call ends, whatever its outcome.
    glibc_handles: Vec<*mut c_void>,
    /// A library glibc must load (name, mode, why) before the call can go
    /// on: stage 1 stops, is rolled back, glibc loads it with the registry
    /// not borrowed (its constructors may call dynload), and stage 1 runs
    /// again, finding it loaded.
    glibc_wanted: Option<(Vec<u8>, c_int, &'static str)>,
    /// Past the point from which nothing fails (constructors may have run):
    /// no rollback any more.
    committed: bool,
}

/// What a dlopen may change on an object that was already loaded.
struct RootState {
    /// The search and initialisation lists, saved when this load may
    /// change them (not when it only re-opens an open object).
    lists: Option<(Option<Vec<ObjId>>, Vec<ObjId>)>,
    direct_opencount: u32,
    nodelete: NoDelete,
}

/// Validate a dlopen mode as glibc does.
pub(crate) fn check_mode(name: Option<&[u8]>, mode: c_int) -> Result<(), Error> {
    let valid = RTLD_BINDING_MASK | RTLD_NOLOAD | RTLD_DEEPBIND | RTLD_GLOBAL | RTLD_NODELETE;
    if mode & !valid != 0 {
        return Err(Error::load(
            ErrorKind::InvalidArgument,
            "",
            "invalid mode parameter",
        ));
    }
    if mode & RTLD_BINDING_MASK == 0 {
        return Err(Error::system(
            String::from_utf8_lossy(name.unwrap_or_default()),
            "invalid mode for dlopen()",
            libc::EINVAL,
        ));
    }
    Ok(())
}

/// An object a dlopen returned: its id and its handle.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Opened {
    pub id: ObjId,
    pub handle: usize,
}

/// Open `name` (None: the main program) on behalf of code at `caller`.
/// Returns None for RTLD_NOLOAD when the object is not loaded.
pub(crate) fn dlopen(
    name: Option<&[u8]>,
    mode: c_int,
    caller: usize,
) -> Result<Option<Opened>, Error> {
    check_mode(name, mode)?;
    let guard = LOADER.lock();
    let mut tx = Tx::default();
    // A panic in the loader (a bug) must not leave a half-loaded object
    // registered: it is rolled back like any failure and becomes an error.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        open_locked(&guard, name, mode, caller, &mut tx)
    }))
    .unwrap_or_else(|payload| {
        if !tx.committed {
            if let Ok(mut reg) = registry_mut(&guard) {
                rollback(&mut reg, &mut tx);
            }
        }
        Err(Error::internal(payload.as_ref()))
    });
    registry_mut(&guard)?.release_glibc(tx.glibc_handles.drain(..));
    crate::unload::collect_pending(&guard);
    registry::close_queued_glibc(&guard);
    result
}

/// `dlopen` with the loader lock held; `tx` records what it did.
fn open_locked(
    guard: &crate::registry::Guard,
    name: Option<&[u8]>,
    mode: c_int,
    caller: usize,
    tx: &mut Tx,
) -> Result<Option<Opened>, Error> {
    // The clock is read only for the statistics (a system call's worth of
    // time on the re-open path otherwise).
    let timed = crate::process::settings().stats != crate::process::SummaryScope::Off
        || debug::enabled(debug::STATISTICS);
    let start = timed.then(std::time::Instant::now);
    let stats_before = registry(guard)?.stats;
    registry_mut(guard)?.stats.dlopen_calls += 1;
    let mut glibc_loads = 0;
    let stage1 = loop {
        let r = {
            let mut reg = registry_mut(guard)?;
            // (A re-open by the path of one of dynload's objects reads
            // nothing of glibc's: its list, whose refresh takes and releases
            // glibc's lock, is left as it is.)
            let own = name.and_then(|n| reg.own_object_at_path(n));
            if own.is_none() {
                reg.refresh_host();
            }
            let r = open_stage1(&mut reg, name, own, mode, caller, tx);
            if r.is_err() {
                rollback(&mut reg, tx);
            }
            r
        };
        match (r, tx.glibc_wanted.take()) {
            // (Each round loads one more library; a name glibc's copy does
            // not answer to would come back: stop there.)
            (Err(e), Some(wanted)) => {
                glibc_loads += 1;
                if glibc_loads > 64 {
                    return Err(e);
                }
                open_through_glibc(guard, wanted, tx)?
            }
            (r, _) => break r?,
        }
    };
    let root = match stage1 {
        Stage1::NotLoaded => return Ok(None),
        Stage1::Done(id) => {
            let reg = registry(guard)?;
            return Ok(Some(Opened {
                id,
                handle: reg.handle_of(id) as usize,
            }));
        }
        Stage1::Continue(id) => id,
    };
    let relocated = relocate_all(guard, root, mode);
    // (Not `?`: an early return here would skip the rollback below.)
    if let Ok(mut reg) = registry_mut(guard) {
        reg.drop_one_off_filter();
    }
    if let Err(e) = relocated {
        let mut reg = registry_mut(guard)?;
        rollback(&mut reg, tx);
        return Err(e);
    }
    // Demarcation point: from here on nothing fails.
    tx.committed = true;
    let order = {
        let mut reg = registry_mut(guard)?;
        for &id in &tx.new_objects {
            let o = reg.obj_mut(id);
            if o.nodelete == NoDelete::Pending {
                o.nodelete = NoDelete::Active;
            }
            reg.adds += 1;
            reg.stats.objects_loaded += 1;
        }
        crate::unwind::publish(
            tx.new_objects
                .iter()
                .map(|&id| reg.obj(id))
                .filter(|o| o.is_ours()),
        );
        if reg.obj(root).nodelete == NoDelete::Pending {
            reg.obj_mut(root).nodelete = NoDelete::Active;
        }
        crate::debugger::describe(
            reg.all_in_load_order()
                .map(|id| reg.obj(id))
                .filter(|o| o.is_ours()),
        );
        let mut order = reg.obj(root).initfini.clone();
        order.reverse();
        order
    };
    run_constructors(guard, &order);
    let mut reg = registry_mut(guard)?;
    if mode & RTLD_GLOBAL != 0 {
        reg.add_to_global(root);
    }
    let nanos = start.map_or(0, |t| t.elapsed().as_nanos() as u64);
    reg.stats.nanos += nanos;
    if debug::enabled(debug::STATISTICS) {
        let (now, name) = (reg.stats, reg.obj(root).display_name());
        debug!(
            debug::STATISTICS,
            "\n             time needed to load {name}: {nanos} ns\n                 number of relocations: {}\n      number of relocations from cache: {}\n        number of relative relocations: {}\n           objects loaded by dynload: {}\n",
            now.relocations - stats_before.relocations,
            now.lookups_cached - stats_before.lookups_cached,
            now.relative_relocations - stats_before.relative_relocations,
            now.objects_loaded,
        );
    }
    note_opened(&reg, root);
    Ok(Some(Opened {
        id: root,
        handle: reg.handle_of(root) as usize,
    }))
}

/// glibc's FILES line for a successful dlopen.
fn note_opened(reg: &Registry, id: ObjId) {
    let o = reg.obj(id);
    debug!(
        debug::FILES,
        "opening file={} [0]; direct_opencount={}\n",
        o.display_name(),
        o.direct_opencount
    );
}

/// Run the constructors of `order` that have not run, without holding the
/// registry borrowed (they may call dlopen, dlsym or dlclose).
pub(crate) fn run_constructors(guard: &registry::Guard, order: &[ObjId]) {
    for &id in order {
        let (fns, name) = {
            let Ok(mut reg) = registry_mut(guard) else {
                return;
            };
            let Some(o) = reg.get(id) else { continue };
            if o.init_called || !o.is_ours() {
                continue;
            }
            let fns = init::constructors(o);
            let name = debug::enabled(debug::LIBS).then(|| o.display_name());
            reg.obj_mut(id).init_called = true;
            (fns, name)
        };
        if let Some(name) = name {
            debug!(debug::LIBS, "\ncalling init: {name}\n");
        }
        // SAFETY: constructors of a relocated object, checked to lie in its
        // executable segments before the demarcation point.
        unsafe { init::call_constructors(fns) };
    }
}

enum Stage1 {
    NotLoaded,
    Done(ObjId),
    Continue(ObjId),
}

/// `own` is the object of dynload's at path `name`, if the caller found one
/// (`Registry::own_object_at_path`).
fn open_stage1(
    reg: &mut Registry,
    name: Option<&[u8]>,
    own: Option<ObjId>,
    mode: c_int,
    caller: usize,
    tx: &mut Tx,
) -> Result<Stage1, Error> {
    let Some(name) = name.filter(|n| !n.is_empty()) else {
        let main = reg.main;
        reg.obj_mut(main).direct_opencount += 1;
        if reg.obj(main).searchlist.is_none() {
            reg.obj_mut(main).searchlist = Some(Vec::new());
        }
        return Ok(Stage1::Done(main));
    };
    let loaded = own.or_else(|| reg.find_loaded(name));
    let root = match loaded {
        Some(id) => id,
        None => match map_new_object(reg, name, reg.caller_object(caller), true, mode, tx)? {
            Some(id) => id,
            None => return Ok(Stage1::NotLoaded),
        },
    };
    tx.root = Some(root);
    let new_root = tx.new_objects.contains(&root);
    let already_open = reg.obj(root).searchlist.is_some();
    let is_host = !reg.obj(root).is_ours();
    if !new_root {
        let o = reg.obj(root);
        // (Re-opening an open object of dynload's changes neither list:
        // no copies on that path.)
        let lists = (!already_open || is_host).then(|| (o.searchlist.clone(), o.initfini.clone()));
        tx.root_before = Some(RootState {
            lists,
            direct_opencount: o.direct_opencount,
            nodelete: o.nodelete,
        });
    }
    reg.obj_mut(root).direct_opencount += 1;
    if already_open || is_host {
        if is_host {
            open_host(reg, root, mode)?;
        }
        if mode & RTLD_NODELETE != 0 && reg.obj(root).is_ours() {
            if reg.obj(root).nodelete != NoDelete::Active {
                debug!(
                    debug::FILES,
                    "marking {} [0] as NODELETE",
                    reg.obj(root).display_name()
                );
            }
            reg.obj_mut(root).nodelete = NoDelete::Active;
        }
        if mode & RTLD_GLOBAL != 0 && !reg.obj(root).global {
            reg.add_to_global(root);
        }
        note_opened(reg, root);
        tx.new_objects.clear();
        return Ok(Stage1::Done(root));
    }
    if mode & RTLD_NODELETE != 0 {
        reg.obj_mut(root).nodelete = NoDelete::Pending;
    }
    let list = map_deps(reg, root, mode, tx)?;
    reg.obj_mut(root).searchlist = Some(list.clone());
    // The initialisation list: the search list sorted so that dependencies
    // come after their dependents (constructors run from the end).
    let mut initfini = list.clone();
    if new_root {
        reg.obj_mut(root).initfini.clear();
    }
    init::sort(reg, &mut initfini, false, true);
    reg.obj_mut(root).initfini = initfini;
    for &id in &list {
        if !reg.obj(id).versions_checked {
            reg.check_versions(id)?;
            reg.obj_mut(id).versions_checked = true;
        }
    }
    Ok(Stage1::Continue(root))
}

/// A glibc-loaded object opened through dynload: give it a search list and
/// hold a glibc reference while dynload users have it open.
fn open_host(reg: &mut Registry, id: ObjId, mode: c_int) -> Result<(), Error> {
    if reg.obj(id).searchlist.is_none() {
        let list = if reg.obj(id).is_main() {
            Vec::new()
        } else {
            reg.bfs(id)
        };
        reg.obj_mut(id).searchlist = Some(list);
    }
    let startup = reg.obj(id).host().is_some_and(|h| h.startup);
    if !startup {
        if let Kind::Host(h) = &reg.obj(id).kind {
            if h.pin.is_null() {
                let name = reg.obj(id).name.clone();
                let g = host::glibc();
                // SAFETY: glibc's dlopen with RTLD_NOLOAD only takes a
                // reference on an object it already has.
                let pin = unsafe {
                    (g.dlopen)(
                        name.as_ptr(),
                        libc::RTLD_LAZY | libc::RTLD_NOLOAD | (mode & RTLD_NODELETE),
                    )
                };
                if let Kind::Host(h) = &mut reg.obj_mut(id).kind {
                    h.pin = pin;
                }
            }
        }
    }
    Ok(())
}

/// Undo a failed dlopen.
fn rollback(reg: &mut Registry, tx: &mut Tx) {
    if let (Some(root), Some(before)) = (tx.root, tx.root_before.take()) {
        if let Some(o) = reg.get_mut(root) {
            if let Some((searchlist, initfini)) = before.lists {
                o.searchlist = searchlist;
                o.initfini = initfini;
            }
            o.direct_opencount = before.direct_opencount;
            o.nodelete = before.nodelete;
        }
    }
    for &id in tx.new_objects.iter().rev() {
        let obj = reg.remove(id);
        reg.release_glibc(obj.glibc_pins.iter().copied());
        debug!(
            debug::FILES,
            "file={} [0];  destroying link map (failed load)",
            obj.display_name()
        );
        drop(obj);
    }
    tx.new_objects.clear();
}

/// glibc's `_dl_map_object_deps`: breadth-first over DT_NEEDED, mapping
/// what is not loaded yet; returns the search list (root first).
fn map_deps(
    reg: &mut Registry,
    root: ObjId,
    mode: c_int,
    tx: &mut Tx,
) -> Result<Vec<ObjId>, Error> {
    let mut list = vec![root];
    let mut i = 0;
    while i < list.len() {
        let l = list[i];
        i += 1;
        let deps: Vec<ObjId> = if reg.obj(l).is_ours() && tx.new_objects.contains(&l) {
            let names: Vec<Vec<u8>> = {
                let o = reg.obj(l);
                o.view
                    .dyn_info
                    .needed
                    .iter()
                    .filter_map(|&off| reg.dyn_string(o, off).map(<[u8]>::to_vec))
                    .collect()
            };
            // A C-runtime library glibc has not loaded stops this round of
            // the load (see `Tx::glibc_wanted`), whichever of the names it
            // is: found first, the names before it are not mapped only to
            // be unmapped (libz3 needs libstdc++, then libm). (A name with
            // a token is left to its turn below, which expands it.)
            if let Some(n) = names
                .iter()
                .find(|n| host::is_c_runtime(n) && !dst::has_dst(n) && reg.find_loaded(n).is_none())
            {
                map_object(reg, n, l, false, mode & !RTLD_NOLOAD, tx)?;
            }
            let mut deps = Vec::new();
            for n in names {
                let expanded = if dst::has_dst(&n) {
                    let o = reg.obj(l);
                    dst::expand(&n, &reg.dst_values(o)).ok_or_else(|| {
                        Error::invalid(
                            String::from_utf8_lossy(&n),
                            "empty dynamic string token substitution",
                        )
                    })?
                } else {
                    n
                };
                let dep = map_object(reg, &expanded, l, false, mode & !RTLD_NOLOAD, tx)?
                    .expect("not NOLOAD");
                // A C-runtime dependency loaded on this object's behalf is
                // held with a glibc reference until this object unloads.
                pin_host_dependency(reg, l, dep);
                deps.push(dep);
            }
            deps
        } else {
            reg.obj(l).needed.clone()
        };
        for &d in &deps {
            if !list.contains(&d) {
                list.push(d);
            }
        }
        if tx.new_objects.contains(&l) {
            let mut unique = Vec::new();
            for d in deps {
                if !unique.contains(&d) {
                    unique.push(d);
                }
            }
            let o = reg.obj_mut(l);
            o.needed = unique.clone();
            if l != root {
                let mut initfini = vec![l];
                initfini.extend(unique);
                o.initfini = initfini;
            }
        }
    }
    Ok(list)
}

/// Take a glibc reference on a glibc-loaded dependency that glibc might
/// otherwise unload (anything not loaded at start-up).
fn pin_host_dependency(reg: &mut Registry, of: ObjId, dep: ObjId) {
    let Some(h) = reg.obj(dep).host() else { return };
    if h.startup {
        return;
    }
    let name = reg.obj(dep).name.clone();
    let g = host::glibc();
    // SAFETY: RTLD_NOLOAD only references an object glibc already has.
    let pin = unsafe { (g.dlopen)(name.as_ptr(), libc::RTLD_LAZY | libc::RTLD_NOLOAD) };
    if !pin.is_null() {
        reg.obj_mut(of).glibc_pins.push(pin);
    }
}

/// glibc's `_dl_map_object`: an already-loaded object answering to `name`,
/// or the file found for it, mapped. `loader` supplies RPATH/RUNPATH.
/// With `callmap` (a dlopen), the caller is not recorded as the loader.
fn map_object(
    reg: &mut Registry,
    name: &[u8],
    loader: ObjId,
    callmap: bool,
    mode: c_int,
    tx: &mut Tx,
) -> Result<Option<ObjId>, Error> {
    if let Some(id) = reg
        .own_object_at_path(name)
        .or_else(|| reg.find_loaded(name))
    {
        return Ok(Some(id));
    }
    map_new_object(reg, name, loader, callmap, mode, tx)
}

/// [`map_object`] for a name no loaded object answers to: the file found
/// for it, unless it is one already loaded under another name.
fn map_new_object(
    reg: &mut Registry,
    name: &[u8],
    loader: ObjId,
    callmap: bool,
    mode: c_int,
    tx: &mut Tx,
) -> Result<Option<ObjId>, Error> {
    let shown = Shown(name);
    debug!(
        debug::FILES,
        "\nfile={shown} [0];  {} {} [0]",
        if callmap {
            "dynamically loaded by"
        } else {
            "needed by"
        },
        reg.obj(loader).display_name()
    );
    let c_runtime = host::is_c_runtime(name);
    let mut opened = if name.contains(&b'/') {
        let path: std::borrow::Cow<[u8]> = if dst::has_dst(name) {
            let lo = reg.obj(loader);
            dst::expand(name, &reg.dst_values(lo))
                .ok_or_else(|| Error::NotFound {
                    name: shown.into(),
                    reason: crate::error::strerror(libc::ENOENT),
                    tried: vec![],
                })?
                .into()
        } else {
            name.into()
        };
        find::open_path(&path)?
    } else {
        let input = reg.search_input(name, loader);
        let lp = reg.library_path.clone();
        reg.finder.search(&input, lp.as_ref())?
    };
    if let Some(id) = reg.find_by_file(&opened) {
        let o = reg.obj_mut(id);
        if !o.names.iter().any(|n| n == name) {
            o.names.push(name.to_vec());
        }
        return Ok(Some(id));
    }
    if mode & RTLD_NOLOAD != 0 {
        return Ok(None);
    }
    if c_runtime {
        // glibc's own library: glibc loads it, the copy this search found
        // (through the requester's RPATH/RUNPATH, as glibc would), not
        // whatever its own search from libdynload would find.
        return load_via_glibc(reg, &opened.path, mode, tx, "C runtime").map(Some);
    }
    // On the descriptor that is about to be mapped (see `policy`).
    crate::policy::check(&opened.file, &opened.path)?;
    // Errors of the mapping name the object as it was asked for, as
    // glibc's `_dl_map_object_from_fd` does.
    let mapped = map::map(&mut opened, shown)?;
    let obj = build_object(
        reg,
        mapped,
        &opened,
        name,
        if callmap { None } else { Some(loader) },
        mode,
    )?;
    if obj.soname().is_some_and(host::is_c_runtime) {
        // A copy of a glibc library under another name: glibc's own copy
        // must be used instead. Unmap ours and hand the path to glibc.
        drop(obj);
        return load_via_glibc(reg, &opened.path, mode, tx, "C runtime").map(Some);
    }
    let own_tls = matches!(&obj.kind, Kind::Ours(m) if m.tls.is_some());
    if own_tls && obj.view.dyn_info.flags & u64::from(elf::DF_STATIC_TLS) != 0 {
        // Its own initial-exec TLS needs a fixed offset from the thread
        // pointer in every thread: only glibc's static TLS surplus has
        // that, and it is glibc's. glibc loads such objects (libGLdispatch)
        // itself, so they work as under glibc. (Initial-exec references to
        // other objects' static TLS, as libGL's, dynload serves.)
        // glibc loads its dependencies itself: one that dynload loaded
        // would be mapped a second time, so that is refused.
        // (By name, soname, or file name: glibc would find the same file.)
        let ours = obj.view.dyn_info.needed.iter().find_map(|&off| {
            let dep = reg.dyn_string(&obj, off)?;
            let base = |n: &[u8]| n.rsplit(|&c| c == b'/').next().map(<[u8]>::to_vec);
            reg.loaded
                .iter()
                .map(|&id| reg.obj(id))
                .find(|o| {
                    o.is_ours()
                        && !o.removed
                        && (o.answers_to(dep) || base(o.name.to_bytes()).as_deref() == Some(dep))
                })
                .map(|o| o.display_name())
        });
        if let Some(dep) = ours {
            return Err(static_tls_dependency_error(
                &String::from_utf8_lossy(&opened.path),
                &dep,
            ));
        }
        drop(obj);
        return load_via_glibc(
            reg,
            &opened.path,
            mode,
            tx,
            "initial-exec TLS (DF_STATIC_TLS)",
        )
        .map(Some);
    }
    let mut obj = obj;
    // (`map` checked that the image lies inside the object.)
    if let Some(t) = match &obj.kind {
        Kind::Ours(m) => m.tls.as_deref().copied(),
        Kind::Host(_) => None,
    } {
        obj.tls_module = Some(crate::tls::register(
            obj.view.image.addr(t.vaddr),
            t.filesz as usize,
            t.memsz as usize,
            t.align as usize,
        ));
    }
    let id = reg.insert(obj);
    tx.new_objects.push(id);
    if debug::enabled(debug::FILES) {
        let o = reg.obj(id);
        debug!(
            debug::FILES,
            "file={shown} [0];  generating link map\n  dynamic: {:#018x}  base: {:#018x}   size: {:#018x}\n    entry: {:#018x}  phdr: {:#018x}  phnum:   {:>16}\n",
            o.view.dynamic_addr,
            o.view.image.base,
            o.map_end - o.map_start,
            o.view.image.base.wrapping_add(opened.header.entry as usize),
            o.phdr as usize,
            o.phnum
        );
    }
    Ok(Some(id))
}

/// The refusal of an object with initial-exec TLS of its own (which glibc
/// must load) that needs `dep`, an object dynload loads.
pub(crate) fn static_tls_dependency_error(path: &str, dep: &str) -> Error {
    Error::load(
        ErrorKind::Unsupported,
        path,
        "cannot allocate memory in static TLS block",
    )
    .with_why(format!(
        "the object has initial-exec TLS of its own (DF_STATIC_TLS), which only glibc's static TLS can hold, so glibc must load it; but it needs {dep}, which dynload loaded, and glibc would map a second copy. Rebuild it with -ftls-model=global-dynamic (or -mtls-dialect=gnu2), or load {dep} with glibc"
    ))
}

/// A library glibc must load (`why`: a C-runtime library, or one dynload
/// cannot serve): its host record if glibc has it already; otherwise stage
/// 1 stops here, and `open_through_glibc` has glibc load it.
fn load_via_glibc(
    reg: &mut Registry,
    name: &[u8],
    mode: c_int,
    tx: &mut Tx,
    why: &'static str,
) -> Result<ObjId, Error> {
    if let Some(id) = reg.find_loaded(name) {
        return Ok(id);
    }
    tx.glibc_wanted = Some((name.to_vec(), mode, why));
    Err(Error::load(
        ErrorKind::System,
        String::from_utf8_lossy(name),
        "left to glibc",
    ))
}

/// Have glibc load a library (no registry borrow held: glibc runs its
/// constructors, which may call dynload's dl* functions).
fn open_through_glibc(
    guard: &registry::Guard,
    (name, mode, why): (Vec<u8>, c_int, &'static str),
    tx: &mut Tx,
) -> Result<(), Error> {
    let c = CString::new(name.clone())
        .map_err(|_| Error::invalid(String::from_utf8_lossy(&name), "name contains a NUL byte"))?;
    let g = host::glibc();
    // The caller's mode, binding included (RTLD_NOW must bind everything
    // now); RTLD_LAZY only when it gives none (a dependency's load).
    let binding = match mode & RTLD_BINDING_MASK {
        0 => libc::RTLD_LAZY,
        b => b,
    };
    let flags =
        (mode & (RTLD_GLOBAL | RTLD_NODELETE | RTLD_NOLOAD | libc::RTLD_DEEPBIND)) | binding;
    // SAFETY: glibc's dlopen with a C string.
    let h = unsafe { (g.dlopen)(c.as_ptr(), flags) };
    if h.is_null() {
        let text = host::glibc_error()
            .unwrap_or_else(|| format!("{}: cannot open shared object file", c.to_string_lossy()));
        return Err(Error::load(ErrorKind::System, "", text));
    }
    // This handle keeps it loaded until the dlopen ends; by then the
    // objects that use it hold references of their own.
    tx.glibc_handles.push(h);
    let mut reg = registry_mut(guard)?;
    reg.refresh_host();
    let id = reg.find_loaded(&name).or_else(|| {
        let mut lm: *mut LinkMap = std::ptr::null_mut();
        // SAFETY: RTLD_DI_LINKMAP on glibc's own handle.
        unsafe { (g.dlinfo)(h, libc::RTLD_DI_LINKMAP, &mut lm as *mut _ as *mut c_void) };
        // SAFETY: glibc's link_map public prefix.
        let path = unsafe { std::ffi::CStr::from_ptr((*lm).l_name) }
            .to_bytes()
            .to_vec();
        reg.find_loaded(&path)
    });
    let Some(id) = id else {
        return Err(Error::invalid(
            String::from_utf8_lossy(&name),
            "glibc loaded it but dl_iterate_phdr does not list it",
        ));
    };
    debug!(
        debug::FILES,
        "file={} [0];  {why}, loaded by glibc",
        reg.obj(id).display_name()
    );
    if reg.obj(id).answers_to(&name) {
        return Ok(());
    }
    // Found under its path only: remember the name it was asked by, so
    // that the next stage 1 finds it.
    reg.obj_mut(id).names.push(name);
    Ok(())
}

/// Build the record for a freshly mapped object, checking its dynamic
/// section and tables. Dropping the result unmaps it.
fn build_object(
    reg: &Registry,
    mapped: map::Mapped,
    opened: &find::Opened,
    asked: &[u8],
    loader: Option<ObjId>,
    mode: c_int,
) -> Result<Object, Error> {
    // (Only for errors: made a string when one is.)
    let path = Shown(&opened.path);
    let base = mapped.base;
    // SAFETY: the segments were just mapped by `map::map` and stay mapped
    // while `mapped` (moved into the record below) lives.
    let image = unsafe { crate::elf::image::Image::new(base, &mapped.phdrs) };
    let (dyn_addr, dyn_size) = mapped.dynamic;
    let dyn_info =
        dynamic::parse(&image, dyn_addr, dyn_size, false).map_err(|e| Error::invalid(path, e))?;
    dynamic::check_tables(&image, &dyn_info).map_err(|e| Error::invalid(path, e))?;
    let view = View::of_parsed(image, dyn_info, dyn_addr).map_err(|e| Error::invalid(path, e))?;
    if view.dyn_info.flag_1(elf::DF_1_PIE) {
        return Err(Error::invalid(
            path,
            "cannot dynamically load position-independent executable",
        ));
    }
    if view.dyn_info.flag_1(elf::DF_1_NOOPEN) {
        return Err(Error::invalid(path, "shared object cannot be dlopen()ed"));
    }
    if view.dyn_info.filter {
        return Err(Error::unsupported(
            path,
            "filter objects (DT_FILTER/DT_AUXILIARY) are not supported by dynload",
        ));
    }
    // The names the object answers to besides its path (`name`).
    let names = if opened.path == asked {
        Vec::new()
    } else {
        vec![asked.to_vec()]
    };
    let name = CString::new(opened.path.clone())
        .map_err(|_| Error::invalid(path, "path contains a NUL byte"))?;
    // Scopes (glibc's `_dl_new_object`): the global scope, then the search
    // list of the root this object was loaded for; RTLD_DEEPBIND swaps
    // them; DT_SYMBOLIC puts the object itself first.
    let root = {
        let mut cur = loader;
        let mut root = None;
        while let Some(c) = cur {
            root = Some(c);
            cur = reg.obj(c).loader;
        }
        root
    };
    let deepbind = mode & RTLD_DEEPBIND != 0;
    let phnum = mapped.phdrs.len();
    // As glibc: the program headers in the mapped image (code finds the
    // ELF header from `dlpi_phdr`) — where PT_PHDR says, or inside the
    // PT_LOAD whose file range holds them — if they are mapped there and
    // are the ones read from the file; else the copy.
    let len = phnum * std::mem::size_of::<Phdr>();
    let phoff = opened.header.phoff;
    let in_load = |p: &&Phdr| {
        let (off, filesz) = (p.p_offset.get(LE), p.p_filesz.get(LE));
        p.p_type.get(LE) == elf::PT_LOAD
            && off <= phoff
            && phoff.saturating_add(len as u64) <= off.saturating_add(filesz)
    };
    let phdrs_ptr = mapped
        .phdrs
        .iter()
        .find(|p| p.p_type.get(LE) == elf::PT_PHDR)
        .map(|p| view.image.addr(p.p_vaddr.get(LE)))
        .or_else(|| {
            let p = mapped.phdrs.iter().find(in_load)?;
            let vaddr = p.p_vaddr.get(LE).wrapping_add(phoff - p.p_offset.get(LE));
            Some(view.image.addr(vaddr))
        })
        .filter(|&a| {
            view.image
                .bytes(a, len)
                .is_some_and(|b| b == object::pod::bytes_of_slice(&mapped.phdrs[..]))
                && a % std::mem::align_of::<Phdr>() == 0
        })
        .map_or(mapped.phdrs.as_ptr(), |a| a as *const Phdr);
    let mut mapped = mapped;
    if phdrs_ptr != mapped.phdrs.as_ptr() {
        // The mapped ones are used: the copy is not needed any more.
        mapped.phdrs = Box::default();
    }
    let (map_start, map_end) = (mapped.mapping.start(), mapped.mapping.end());
    let nodelete = if view.dyn_info.flag_1(elf::DF_1_NODELETE) {
        NoDelete::Pending
    } else {
        NoDelete::No
    };
    let mut obj = Object {
        id: 0,
        kind: Kind::Ours(mapped),
        link_map: Box::new(LinkMap {
            l_addr: base,
            l_name: std::ptr::null(),
            l_ld: dyn_addr as *const c_void,
            l_next: std::ptr::null_mut(),
            l_prev: std::ptr::null_mut(),
        }),
        name,
        names,
        view,
        file_id: Some((opened.dev, opened.ino)).into(),
        origin: registry::origin_of(&opened.path),
        phdr: phdrs_ptr,
        phnum,
        map_start,
        map_end,
        via: Some(opened.via.clone()),
        loader,
        needed: Vec::new(),
        initfini: Vec::new(),
        searchlist: None,
        scope: Vec::new(),
        reldeps: Vec::new(),
        direct_opencount: 0,
        global: false,
        nodelete,
        versions_checked: false,
        relocated: false,
        init_called: false,
        removed: false,
        glibc_pins: Vec::new(),
        tls_module: None,
        tls_descs: Vec::new(),
        lazy: None,
        addr_index: Default::default(),
        tls_dtors: Default::default(),
    };
    obj.link_map.l_name = obj.name.as_ptr();
    // The root of a dependency chain is the object whose dlopen loaded it;
    // for the dlopened object itself, that is the object: Local(self) is
    // patched by the caller once the id is known (see `insert`).
    let local = root.map(Scope::Local);
    let symbolic = obj.view.dyn_info.is_symbolic() && !deepbind;
    // (Allocated at the size it keeps.)
    let mut scope = Vec::with_capacity(2 + usize::from(symbolic));
    if symbolic {
        scope.push(Scope::Symbolic(usize::MAX));
    }
    if deepbind {
        scope.push(local.unwrap_or(Scope::Local(usize::MAX)));
        scope.push(Scope::Global);
    } else {
        scope.push(Scope::Global);
        scope.push(local.unwrap_or(Scope::Local(usize::MAX)));
    }
    obj.scope = scope;
    Ok(obj)
}

/// Text relocations, when allowed: the read-only segments of `id` made
/// writable (not executable) for its relocation.
fn open_text(guard: &registry::Guard, id: ObjId) -> Result<Vec<(usize, usize)>, Error> {
    let mut reg = registry_mut(guard)?;
    let o = reg.obj(id);
    if !o.is_ours() || !o.view.dyn_info.has_textrel() || !crate::policy::text_relocations_allowed()
    {
        return Ok(Vec::new());
    }
    let ranges = o.view.image.read_only_segments();
    map::text_writable(&ranges, true, |_| 0, &o.display_name())?;
    let o = reg.obj_mut(id);
    for &r in &ranges {
        o.view.image.set_writable(r, true);
    }
    Ok(ranges)
}

/// Give the segments `open_text` opened their own protections back.
fn close_text(guard: &registry::Guard, id: ObjId, ranges: &[(usize, usize)]) -> Result<(), Error> {
    if ranges.is_empty() {
        return Ok(());
    }
    let mut reg = registry_mut(guard)?;
    let o = reg.obj_mut(id);
    for &r in ranges {
        o.view.image.set_writable(r, false);
    }
    let base = o.view.image.base;
    let phdrs: Vec<crate::elf::Phdr> = match &o.kind {
        // SAFETY: `phdr` points to the object's `phnum` program headers,
        // kept alive with the object.
        Kind::Ours(_) => unsafe { std::slice::from_raw_parts(o.phdr, o.phnum) }.to_vec(),
        Kind::Host(_) => Vec::new(),
    };
    let flags_of = |start: usize| {
        phdrs
            .iter()
            .filter(|p| p.p_type.get(crate::elf::LE) == elf::PT_LOAD)
            .find(|p| base.wrapping_add(p.p_vaddr.get(crate::elf::LE) as usize) == start)
            .map_or(elf::PF_R, |p| p.p_flags.get(crate::elf::LE))
    };
    map::text_writable(ranges, false, flags_of, &o.display_name())
}

/// Start the copies of the big RELRO of the first object in `order` that
/// has one (see `map::copy_big_relro`), so that a helper thread makes them
/// while this one relocates the objects before it.
fn start_big_relro_copies(
    guard: &registry::Guard,
    order: &[ObjId],
) -> Result<Option<(ObjId, map::BigRelroCopies)>, Error> {
    let reg = registry(guard)?;
    let big = order.iter().find_map(|&id| match &reg.obj(id).kind {
        Kind::Ours(m) if map::relro_is_big(m.relro) => Some((id, m)),
        _ => None,
    });
    Ok(big.map(|(id, m)| {
        // SAFETY: `relocate_all` keeps the object mapped while the value
        // lives (it drops it before returning, and rollback comes after),
        // and relocates it only once the copies are finished; relocating
        // other objects writes none of its pages.
        (id, unsafe { copy_big_relro(reg.obj(id), m) })
    }))
}

/// `map::copy_big_relro` for object `o`, mapped as `m`.
///
/// # Safety
/// As for `map::copy_big_relro`.
unsafe fn copy_big_relro(o: &Object, m: &map::Mapped) -> map::BigRelroCopies {
    // SAFETY: `phdr` and `phnum` describe the object's program headers,
    // which stay mapped (or allocated) while its record lives.
    let phdrs = unsafe { std::slice::from_raw_parts(o.phdr, o.phnum) };
    let view = &o.view;
    // SAFETY: the caller's.
    unsafe {
        map::copy_big_relro(m, phdrs, &|lo, hi| {
            relocate::relative_dense(&view.image, &view.dyn_info, lo, hi)
        })
    }
}

/// Relocate every object of the new search list that needs it, from the
/// end of the initialisation list (dependencies first).
fn relocate_all(guard: &registry::Guard, root: ObjId, mode: c_int) -> Result<(), Error> {
    let order: Vec<ObjId> = {
        let reg = registry(guard)?;
        reg.obj(root)
            .initfini
            .iter()
            .rev()
            .copied()
            .filter(|&id| !reg.obj(id).relocated)
            .collect()
    };
    // RTLD_LAZY is honoured unless LD_BIND_NOW/DYNLOAD_BIND_NOW is set or
    // the object asks to be bound at load (DT_BIND_NOW, DF_BIND_NOW,
    // DF_1_NOW), as in glibc.
    let lazy_mode = mode & RTLD_LAZY != 0 && !crate::process::settings().bind_now;
    // (Dropped, if a relocation fails, before the caller unmaps anything.)
    let mut ahead = start_big_relro_copies(guard, &order)?;
    for id in order {
        let text = open_text(guard, id)?;
        let mut populated = 0;
        let outcome = {
            let reg = registry(guard)?;
            let o = reg.obj(id);
            // (A writable segment populated when mapped has nothing left.)
            if let Kind::Ours(m) = &o.kind {
                if !m.populated {
                    map::populate_slots(&o.view.image, relocate::plt_slots(&o.view));
                }
                if map::relro_is_big(m.relro) {
                    populated = match ahead.take_if(|(first, _)| *first == id) {
                        Some((_, copies)) => copies.finish(),
                        // SAFETY: the object stays mapped, and nothing
                        // writes it, until its copies are finished here.
                        None => unsafe { copy_big_relro(o, m) }.finish(),
                    };
                }
            }
            let lazy = lazy_mode && !o.view.dyn_info.wants_bind_now();
            relocate::relocate(&reg, id, lazy)
        };
        close_text(guard, id, &text)?;
        let outcome = outcome?;
        let mut reg = registry_mut(guard)?;
        let o = reg.obj(id);
        init::check_entry_points(&reg, o).map_err(|e| Error::invalid(o.display_name(), e))?;
        if let Kind::Ours(m) = &o.kind {
            map::protect_relro(m, Shown(o.name.to_bytes()))?;
        }
        reg.stats.relocations += outcome.relocations;
        reg.stats.relative_relocations += outcome.relative;
        reg.stats.relro_populated += populated as u64;
        reg.stats.lookups_cached += outcome.cached;
        reg.stats.fast_lane += outcome.in_lane;
        reg.count_filtered_lookups(outcome.filtered_lookups);
        reg.record_bindings(id, &outcome.reldeps, &outcome.unique_definers);
        // Each object is relocated once: these start empty.
        let o = reg.obj_mut(id);
        o.relocated = true;
        o.tls_descs = outcome.tls_descs;
        o.lazy = outcome.lazy;
    }
    Ok(())
}
