//! Questions asked of loaded objects, shared by the Rust API and the C ABI:
//! symbol lookup (`dlsym`/`dlvsym` with handles, RTLD_DEFAULT, RTLD_NEXT),
//! address lookup (`dladdr`), object information (`dlinfo`) and iteration
//! (`dl_iterate_phdr`).

use std::ffi::{c_char, c_int, c_void};

use crate::dlfcn;
use crate::elf::symbols::NameHash;
use crate::elf::versions::VersionEntry;
use crate::elf::{elf, hash, SymExt};
use crate::error::{Error, ErrorKind};
use crate::host;
use crate::link::{Flags, Found};
use crate::object::{Kind, LinkMap, ObjId};
use crate::registry::{registry, registry_mut, Registry, LOADER};

mod search_list_copies;
pub(crate) use search_list_copies::Answer;
use search_list_copies::Key;

/// The C ABI's `dlsym(handle, name)` from `caller`, answered from this
/// thread's copy of the search list when it can be (see
/// `search_list_copies`); None: take the locked lookup. On a miss,
/// `undefined` is given the path of the object the message names.
#[inline(always)]
pub(crate) fn cached_lookup(
    handle: usize,
    caller: usize,
    name: &[u8],
    undefined: impl FnOnce(&[u8]),
) -> Option<Answer> {
    search_list_copies::lookup(Key::of_call(handle, caller), name, undefined)
}

/// [`cached_lookup`] for `dlvsym(handle, name, version)`.
pub(crate) fn cached_lookup_version(
    handle: usize,
    caller: usize,
    name: &[u8],
    version: &[u8],
    undefined: impl FnOnce(&[u8]),
) -> Option<Answer> {
    let want = wanted_version(version);
    search_list_copies::lookup_version(Key::of_call(handle, caller), name, Some(&want), undefined)
}

/// Where `dlsym` looks.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target {
    /// RTLD_DEFAULT: the caller's scope.
    Default,
    /// RTLD_NEXT: after the caller in its root's scope.
    Next,
    /// A handle's own search list.
    Handle(usize),
}

/// What a lookup found, before post-processing.
struct Hit {
    found: Found,
    value: usize,
    ifunc: bool,
    tls: Option<(usize, u64)>,
    /// The caller, when the lookup (RTLD_DEFAULT) makes it depend on the
    /// definer.
    dependent: Option<ObjId>,
    /// The definition is a unique symbol: its definer becomes NODELETE.
    unique: bool,
}

/// `dlsym`/`dlvsym`: the address of `name` (of `version`), from `caller`'s
/// point of view.
pub(crate) fn lookup_symbol(
    target: Target,
    name: &[u8],
    version: Option<&[u8]>,
    caller: usize,
) -> Result<usize, Error> {
    let want = version.map(wanted_version);
    let copied = Key::of(target, caller)
        .and_then(|key| search_list_copies::lookup_version(key, name, want.as_ref(), |_| {}));
    match copied {
        Some(Answer::Address(addr)) => return Ok(addr),
        // The locked lookup would miss too: straight to the error.
        Some(Answer::Undefined) => return Err(undefined_error(target, name, version, caller)),
        None => {}
    }
    match lookup_symbol_or_miss(target, name, version, caller, |_| {})? {
        Some(addr) => Ok(addr),
        None => Err(undefined_error(target, name, version, caller)),
    }
}

/// The C ABI's `dlsym`: as [`lookup_symbol`], but a symbol with no
/// definition is `Ok(None)`, after `undefined` is shown the object named in
/// the message. The message and its explanation (the objects searched,
/// near misses) are built only if `dlerror` asks for them: a miss costs
/// about what a hit does.
pub(crate) fn lookup_symbol_or_miss(
    target: Target,
    name: &[u8],
    version: Option<&[u8]>,
    caller: usize,
    undefined: impl FnOnce(&[u8]),
) -> Result<Option<usize>, Error> {
    // (Callers ask the copies first.)
    let cacheable = Key::of(target, caller);
    let guard = LOADER.lock();
    let hit = {
        let reg = registry(&guard)?;
        let hit = match find(&reg, target, name, version, caller)? {
            Ok(hit) => hit,
            Err(object) => {
                undefined(reg.obj(object).name.to_bytes());
                return Ok(None);
            }
        };
        if let Some(key) = cacheable {
            if !hit.unique && hit.tls.is_none() && hit.dependent.is_none() {
                search_list_copies::remember(&reg, key);
            }
        }
        hit
    };
    if hit.unique || hit.dependent.is_some() {
        let mut reg = registry_mut(&guard)?;
        if hit.unique {
            reg.mark_nodelete(hit.found.obj, "unique symbol");
        }
        if let Some(from) = hit.dependent {
            reg.add_dependency(from, hit.found.obj);
        }
    }
    if let Some((modid, offset)) = hit.tls {
        // The calling thread's copy, as glibc's `_dl_tls_symaddr`.
        return Ok(Some(crate::tls::address(modid, offset as usize)));
    }
    if hit.ifunc {
        // SAFETY: the resolver of a relocated object; no arguments.
        return Ok(Some(unsafe { crate::relocate::call_resolver(hit.value) }));
    }
    Ok(Some(hit.value))
}

/// glibc's "undefined symbol" error for a lookup that found nothing, with
/// what dynload knows besides: the objects searched and near misses. The
/// lookup is walked again (only failures pay for this).
pub(crate) fn undefined_error(
    target: Target,
    name: &[u8],
    version: Option<&[u8]>,
    caller: usize,
) -> Error {
    let guard = LOADER.lock();
    let reg = match registry(&guard) {
        Ok(reg) => reg,
        Err(e) => return e,
    };
    let want = version.map(wanted_version);
    let r = with_scope(&reg, target, caller, |chunks, undef, _| {
        reg.undefined_error(chunks, reg.obj(undef).display_name(), name, want.as_ref())
    });
    r.unwrap_or_else(|e| e)
}

fn wanted_version(v: &[u8]) -> VersionEntry<'_> {
    VersionEntry {
        name: v,
        hash: hash::elf_hash(v),
        hidden: true,
    }
}

/// Call `f` with the lists `target` searches (as the caller at `caller`
/// sees them), the object named in an undefined-symbol message, and the
/// object that comes to depend on the definer (RTLD_DEFAULT's caller).
/// Search lists are borrowed, not copied, when the registry has them.
fn with_scope<R>(
    reg: &Registry,
    target: Target,
    caller: usize,
    f: impl FnOnce(&[[&[ObjId]; 2]], ObjId, Option<ObjId>) -> R,
) -> Result<R, Error> {
    match target {
        Target::Default => {
            let caller_obj = reg.caller_object(caller);
            let c = reg.obj(caller_obj);
            Ok(
                reg.with_scope_chunks(&c.scope, std::slice::from_ref(&c.id), |chunks| {
                    f(chunks, caller_obj, Some(caller_obj))
                }),
            )
        }
        Target::Next => {
            let caller_obj = reg.caller_object(caller);
            let c = reg.obj(caller_obj);
            if caller_obj == reg.main && !c.contains(caller) {
                return Err(Error::load(
                    ErrorKind::InvalidArgument,
                    "",
                    "RTLD_NEXT used in code not dynamically loaded",
                ));
            }
            let mut root = caller_obj;
            while let Some(l) = reg.obj(root).loader {
                root = l;
            }
            let list: Vec<ObjId> = if reg.obj(root).is_ours() {
                reg.obj(root)
                    .searchlist
                    .clone()
                    .unwrap_or_else(|| reg.bfs(root))
            } else if reg.obj(root).global || reg.obj(root).is_main() {
                reg.global_scope()
            } else {
                reg.bfs(root)
            };
            let after = match list.iter().position(|&o| o == caller_obj) {
                Some(p) => list[p + 1..].to_vec(),
                None => list.into_iter().filter(|&o| o != caller_obj).collect(),
            };
            Ok(f(&[[&after, &[]]], caller_obj, None))
        }
        Target::Handle(h) => {
            let id = reg.by_handle(h).ok_or_else(invalid_handle)?;
            let o = reg.obj(id);
            if o.is_main() {
                let global = [reg.global_parts()];
                return Ok(f(&global, id, None));
            }
            let computed;
            let list = match &o.searchlist {
                Some(l) => l.as_slice(),
                None => {
                    computed = reg.bfs(id);
                    computed.as_slice()
                }
            };
            Ok(f(&[[list, &[]]], id, None))
        }
    }
}

/// The definition `target` finds, or (inner `Err`) the object an
/// undefined-symbol message names.
fn find(
    reg: &Registry,
    target: Target,
    name: &[u8],
    version: Option<&[u8]>,
    caller: usize,
) -> Result<Result<Hit, ObjId>, Error> {
    let want = version.map(wanted_version);
    // glibc: plain dlsym returns the default (newest) version; dlvsym asks
    // for an exact one, hidden versions included.
    let flags = Flags {
        return_newest: want.is_none(),
        plt: false,
    };
    let (found, undef, dep_from) = with_scope(reg, target, caller, |chunks, undef, dep_from| {
        (
            reg.lookup(
                chunks,
                name,
                NameHash::new(name),
                want.as_ref(),
                flags,
                Some(undef),
            ),
            undef,
            dep_from,
        )
    })?;
    let Some(found) = found else {
        return Ok(Err(undef));
    };
    let def = reg.obj(found.obj);
    let sym = def.view.symbols.sym(found.sym());
    let value = def.view.symbols.address(sym);
    if !def.is_ours() {
        if let Some(ours) = dlfcn::replacement(name) {
            return Ok(Ok(Hit {
                found,
                value: ours,
                ifunc: false,
                tls: None,
                dependent: None,
                unique: false,
            }));
        }
    }
    let tls = if sym.kind() == elf::STT_TLS {
        let module = def.tls_module.ok_or_else(|| {
            Error::invalid(
                def.display_name(),
                format!(
                    "TLS symbol `{}' in an object without a TLS segment",
                    String::from_utf8_lossy(name)
                ),
            )
        })?;
        Some((module, sym.value()))
    } else {
        None
    };
    let ifunc = sym.kind() == elf::STT_GNU_IFUNC && !sym.is_undefined();
    // glibc makes the definer of a unique symbol NODELETE on first use.
    let unique = sym.bind() == elf::STB_GNU_UNIQUE && def.can_be_unloaded();
    let dependent = dep_from.filter(|&c| reg.needs_dependency(c, found.obj));
    Ok(Ok(Hit {
        found,
        value,
        ifunc,
        tls,
        dependent,
        unique,
    }))
}

fn invalid_handle() -> Error {
    Error::load(ErrorKind::NotOpen, "", "invalid handle")
        .with_why("the handle was not returned by dynload's dlopen, or was closed")
}

/// What `dladdr` reports for an address inside one of dynload's objects.
pub(crate) struct AddrInfo {
    pub fname: *const c_char,
    pub fbase: usize,
    pub sname: *const c_char,
    pub saddr: usize,
    pub sym: *const c_void,
    pub link_map: *mut c_void,
}

/// `dladdr` for dynload's objects (None: not one of them).
pub(crate) fn address_info(addr: usize) -> Option<AddrInfo> {
    let guard = LOADER.lock();
    let reg = registry(&guard).ok()?;
    let id = reg.object_at(addr)?;
    let o = reg.obj(id);
    if !o.is_ours() {
        return None;
    }
    let mut info = AddrInfo {
        fname: o.name.as_ptr(),
        fbase: o.map_start,
        sname: std::ptr::null(),
        saddr: 0,
        sym: std::ptr::null(),
        link_map: reg.handle_of(id) as *mut c_void,
    };
    if let Some(i) = o.nearest_symbol(addr) {
        let syms = &o.view.symbols;
        let s = syms.sym(i);
        info.sname = syms.name(s).as_ptr() as *const c_char;
        info.saddr = syms.address(s);
        info.sym = s as *const _ as *const c_void;
    }
    Some(info)
}

/// A snapshot of `dl_phdr_info` records for dynload's objects.
pub(crate) fn phdr_infos() -> (Vec<libc::dl_phdr_info>, u64, u64) {
    let guard = LOADER.lock();
    let Ok(reg) = registry(&guard) else {
        return (Vec::new(), 0, 0);
    };
    let (adds, subs) = reg.counters();
    let infos = reg
        .loaded
        .iter()
        .map(|&id| reg.obj(id))
        .filter(|o| !o.removed && o.relocated)
        .map(|o| libc::dl_phdr_info {
            dlpi_addr: o.view.image.base as u64,
            dlpi_name: o.name.as_ptr(),
            dlpi_phdr: o.phdr as *const libc::Elf64_Phdr,
            dlpi_phnum: o.phnum as u16,
            dlpi_adds: adds,
            dlpi_subs: subs,
            dlpi_tls_modid: o.tls_module.unwrap_or(0),
            dlpi_tls_data: o
                .tls_module
                .map_or(std::ptr::null_mut(), crate::tls::current_block),
        })
        .collect();
    (infos, adds, subs)
}

/// `dlinfo` request numbers (<dlfcn.h>).
pub(crate) mod di {
    pub const LMID: i32 = 1;
    pub const LINKMAP: i32 = 2;
    pub const SERINFO: i32 = 4;
    pub const SERINFOSIZE: i32 = 5;
    pub const ORIGIN: i32 = 6;
    pub const TLS_MODID: i32 = 9;
    pub const TLS_DATA: i32 = 10;
    pub const PHDR: i32 = 11;
}

#[repr(C)]
struct DlSerpath {
    dls_name: *mut c_char,
    dls_flags: u32,
}

#[repr(C)]
struct DlSerinfo {
    dls_size: usize,
    dls_cnt: u32,
    dls_serpath: [DlSerpath; 0],
}

/// `dlinfo`. Returns the C return value (0, or phnum for RTLD_DI_PHDR).
///
/// # Safety
/// `arg` must point to what the request expects, as for glibc's dlinfo.
pub(crate) unsafe fn info(handle: usize, request: c_int, arg: *mut c_void) -> Result<c_int, Error> {
    let guard = LOADER.lock();
    let reg = registry(&guard)?;
    let id = reg.by_handle(handle).ok_or_else(invalid_handle)?;
    let o = reg.obj(id);
    if let Kind::Host(h) = &o.kind {
        // glibc knows its own objects best: ask it, with a glibc handle.
        let g = host::glibc();
        let (gh, temporary) = if h.is_main {
            (g.main_handle, false)
        } else if !h.pin.is_null() {
            (h.pin, false)
        } else {
            // SAFETY: RTLD_NOLOAD only references an object glibc has.
            (
                unsafe { (g.dlopen)(o.name.as_ptr(), libc::RTLD_LAZY | libc::RTLD_NOLOAD) },
                true,
            )
        };
        if gh.is_null() {
            return Err(invalid_handle());
        }
        let handle_ptr = reg.handle_of(id);
        drop(reg);
        if request == di::LINKMAP {
            // Keep glibc's invariant that a handle is its link_map: return
            // dynload's record for the object, whose l_next and l_prev are
            // refreshed from glibc's own link_map so that a walk from it
            // goes on through glibc's list.
            let mut real: *mut host::LinkMapPrefix = std::ptr::null_mut();
            // SAFETY: RTLD_DI_LINKMAP on glibc's handle writes a pointer.
            let r = unsafe { (g.dlinfo)(gh, request, &mut real as *mut _ as *mut c_void) };
            if temporary {
                // SAFETY: closing the temporary reference taken above.
                unsafe { (g.dlclose)(gh) };
            }
            if r != 0 || real.is_null() {
                return Err(invalid_handle());
            }
            let mut reg = registry_mut(&guard)?;
            let record = &mut reg.obj_mut(id).link_map;
            // SAFETY: `real` is glibc's link_map for this object (public
            // prefix, ABI); `arg` points to a `struct link_map *`.
            unsafe {
                record.l_next = (*real).l_next as *mut LinkMap;
                record.l_prev = (*real).l_prev as *mut LinkMap;
                *(arg as *mut *mut c_void) = handle_ptr as *mut c_void;
            }
            return Ok(0);
        }
        // SAFETY: glibc's dlinfo with glibc's handle and the caller's arg.
        let r = unsafe { (g.dlinfo)(gh, request, arg) };
        let err = (r == -1).then(host::glibc_error).flatten();
        if temporary {
            // SAFETY: closing the temporary reference taken above.
            unsafe { (g.dlclose)(gh) };
        }
        return match err {
            Some(text) => Err(Error::load(ErrorKind::InvalidArgument, "", text)),
            None => Ok(r),
        };
    }
    // SAFETY (all writes): the caller promises `arg` fits the request.
    unsafe {
        match request {
            di::LMID => *(arg as *mut libc::c_long) = 0,
            di::LINKMAP => *(arg as *mut *mut c_void) = reg.handle_of(id) as *mut c_void,
            di::ORIGIN => {
                let origin = o.origin.clone().unwrap_or_default();
                std::ptr::copy_nonoverlapping(origin.as_ptr(), arg as *mut u8, origin.len());
                *(arg as *mut u8).add(origin.len()) = 0;
            }
            di::TLS_MODID => *(arg as *mut usize) = o.tls_module.unwrap_or(0),
            di::TLS_DATA => {
                *(arg as *mut *mut c_void) = o
                    .tls_module
                    .map_or(std::ptr::null_mut(), crate::tls::current_block)
            }
            di::PHDR => {
                *(arg as *mut *const c_void) = o.phdr as *const c_void;
                return Ok(o.phnum as c_int);
            }
            di::SERINFO | di::SERINFOSIZE => {
                let dirs = search_dirs(&reg, id);
                let si = arg as *mut DlSerinfo;
                if request == di::SERINFOSIZE {
                    (*si).dls_cnt = dirs.len() as u32;
                    let strings: usize = dirs.iter().map(|d| d.len().max(1) + 1).sum();
                    (*si).dls_size = std::mem::size_of::<DlSerinfo>()
                        + dirs.len() * std::mem::size_of::<DlSerpath>()
                        + strings;
                } else {
                    let cnt = (*si).dls_cnt as usize;
                    let paths = std::ptr::addr_of_mut!((*si).dls_serpath) as *mut DlSerpath;
                    let mut alloc = paths.add(cnt) as *mut u8;
                    for (i, d) in dirs.iter().take(cnt).enumerate() {
                        let p = paths.add(i);
                        (*p).dls_name = alloc as *mut c_char;
                        (*p).dls_flags = 0;
                        let text: &[u8] = if d.is_empty() { b"." } else { d };
                        std::ptr::copy_nonoverlapping(text.as_ptr(), alloc, text.len());
                        alloc = alloc.add(text.len());
                        *alloc = 0;
                        alloc = alloc.add(1);
                    }
                }
            }
            _ => {
                return Err(Error::load(
                    ErrorKind::InvalidArgument,
                    "",
                    "unsupported dlinfo request",
                ))
            }
        }
    }
    Ok(0)
}

/// The directories a bare-name dlopen from `id` would search, in order
/// (glibc's `_dl_rtld_di_serinfo`: the cache is not listed).
pub(crate) fn search_dirs(reg: &Registry, id: ObjId) -> Vec<Vec<u8>> {
    let input = reg.search_input(b"", id);
    let mut out = Vec::new();
    for l in &input.rpaths {
        out.extend(l.dirs.iter().cloned());
    }
    if let Some(l) = &reg.library_path {
        out.extend(l.dirs.iter().cloned());
    }
    if let Some(l) = &input.runpath {
        out.extend(l.dirs.iter().cloned());
    }
    if !input.nodeflib {
        out.extend(crate::find::Finder::system_list().dirs);
    }
    out
}
