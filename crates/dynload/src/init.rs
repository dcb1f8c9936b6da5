//! Constructor and destructor order: glibc 2.35+'s depth-first
//! reverse-postorder sort of dependency lists (`_dl_sort_maps_dfs`), and the
//! calls themselves (DT_INIT then DT_INIT_ARRAY; DT_FINI_ARRAY in reverse
//! then DT_FINI).

use std::ffi::{c_char, c_int};

use crate::object::{ObjId, Object};
use crate::registry::Registry;

/// Sort `maps` so that every object comes before its dependencies (reverse
/// postorder of a depth-first walk started from the last element backwards,
/// as glibc does). With `for_fini`, relocation dependencies count as edges
/// too, and a second pass restores the DT_NEEDED order where the two
/// disagree. The main program is never entered. With `force_first`, the
/// first object is moved back to the front if a cycle displaced it (glibc
/// 2.36 branch, bug 28937; Debian 12 ships it).
pub(crate) fn sort(reg: &Registry, maps: &mut [ObjId], for_fini: bool, force_first: bool) {
    let first = maps.first().copied();
    use std::collections::HashSet;
    fn dfs(
        reg: &Registry,
        id: ObjId,
        visited: &mut HashSet<ObjId>,
        rpo: &mut Vec<ObjId>,
        do_reldeps: Option<&mut bool>,
    ) {
        if !visited.insert(id) {
            return;
        }
        let obj = reg.obj(id);
        let mut flag = do_reldeps;
        for &dep in &obj.initfini {
            if !visited.contains(&dep) && !reg.obj(dep).is_main() {
                dfs(reg, dep, visited, rpo, flag.as_deref_mut());
            }
        }
        if let Some(f) = flag {
            if !obj.reldeps.is_empty() {
                *f = true;
                for &dep in obj.reldeps.iter().rev() {
                    if !visited.contains(&dep) && !reg.obj(dep).is_main() {
                        dfs(reg, dep, visited, rpo, Some(f));
                    }
                }
            }
        }
        rpo.push(id);
    }
    let mut visited = HashSet::new();
    let mut post = Vec::with_capacity(maps.len());
    let mut saw_reldeps = false;
    for &id in maps.iter().rev() {
        dfs(
            reg,
            id,
            &mut visited,
            &mut post,
            if for_fini {
                Some(&mut saw_reldeps)
            } else {
                None
            },
        );
    }
    // Objects reached through dependencies but not in `maps` stay out.
    post.retain(|id| maps.contains(id));
    post.reverse();
    if saw_reldeps {
        let first = post.clone();
        let mut visited = HashSet::new();
        let mut post2 = Vec::with_capacity(maps.len());
        for &id in first.iter().rev() {
            dfs(reg, id, &mut visited, &mut post2, None);
        }
        post2.retain(|id| maps.contains(id));
        post2.reverse();
        maps.copy_from_slice(&post2[..maps.len()]);
        return;
    }
    maps.copy_from_slice(&post[..maps.len()]);
    if let (true, Some(first)) = (force_first, first) {
        if let Some(i) = maps.iter().position(|&m| m == first) {
            maps[..=i].rotate_right(1);
        }
    }
}

/// The constructors of `obj`, in call order: DT_INIT, then DT_INIT_ARRAY.
pub(crate) fn constructors(obj: &Object) -> Vec<usize> {
    let mut out = Vec::new();
    let d = &obj.view.dyn_info;
    let image = &obj.view.image;
    if let Some(init) = d.init() {
        out.push(image.addr(init));
    }
    if let Some(t) = d.init_array() {
        if let Some(a) = image.slice::<u64>(image.addr(t.vaddr), (t.size / 8) as usize) {
            // 0 and -1 are the old .ctors sentinels; no linker puts them in
            // .init_array, but calling them would crash.
            out.extend(
                a.iter()
                    .map(|&f| f as usize)
                    .filter(|&f| f != 0 && f != usize::MAX),
            );
        }
    }
    out
}

/// The destructors of `obj`, in call order: DT_FINI_ARRAY backwards, then
/// DT_FINI.
pub(crate) fn destructors(obj: &Object) -> Vec<usize> {
    let mut out = Vec::new();
    let d = &obj.view.dyn_info;
    let image = &obj.view.image;
    if let Some(t) = d.fini_array() {
        if let Some(a) = image.slice::<u64>(image.addr(t.vaddr), (t.size / 8) as usize) {
            out.extend(
                a.iter()
                    .rev()
                    .map(|&f| f as usize)
                    .filter(|&f| f != 0 && f != usize::MAX),
            );
        }
    }
    if let Some(fini) = d.fini() {
        out.push(image.addr(fini));
    }
    out
}

/// Check that every constructor and destructor points into code, so that
/// a damaged object fails its dlopen instead of crashing: the object's own,
/// or another loaded object's (an entry may be a symbolic relocation, as
/// libgcc_s's `__cpu_indicator_init`, which binds to the first definition
/// in the global scope).
pub(crate) fn check_entry_points(reg: &Registry, obj: &Object) -> Result<(), String> {
    for f in constructors(obj).into_iter().chain(destructors(obj)) {
        let elsewhere = || {
            reg.object_at(f)
                .is_some_and(|id| crate::relocate::is_code(reg.obj(id), f))
        };
        if !crate::relocate::is_code(obj, f) && !elsewhere() {
            return Err(format!(
                "constructor or destructor at {f:#x} is outside the object's executable segments"
            ));
        }
    }
    Ok(())
}

/// Call constructors with glibc's arguments (argc, argv, envp).
///
/// # Safety
/// Each address must be a constructor of a relocated object.
pub(crate) unsafe fn call_constructors(fns: &[usize]) {
    let (argc, argv) = crate::process::args();
    let env = crate::process::environ();
    for &f in fns {
        // SAFETY: per the contract; constructors take (argc, argv, envp).
        unsafe {
            let f: extern "C" fn(c_int, *mut *mut c_char, *mut *mut c_char) =
                std::mem::transmute(f);
            f(argc, argv, env);
        }
    }
}

/// Call destructors (no arguments).
///
/// # Safety
/// Each address must be a destructor of a loaded object.
pub(crate) unsafe fn call_destructors(fns: &[usize]) {
    for &f in fns {
        // SAFETY: per the contract.
        unsafe {
            let f: extern "C" fn() = std::mem::transmute(f);
            f();
        }
    }
}
