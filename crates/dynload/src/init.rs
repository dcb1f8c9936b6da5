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
    /// Which objects the walk has entered, by id (ids are small: slots of
    /// the registry), without hashing.
    struct Visited(Vec<bool>);
    impl Visited {
        fn new(reg: &Registry) -> Visited {
            Visited(vec![false; reg.id_bound()])
        }
        fn contains(&self, id: &ObjId) -> bool {
            self.0[*id]
        }
        fn insert(&mut self, id: ObjId) -> bool {
            !std::mem::replace(&mut self.0[id], true)
        }
    }
    fn dfs(
        reg: &Registry,
        id: ObjId,
        visited: &mut Visited,
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
    let mut visited = Visited::new(reg);
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
        let mut visited = Visited::new(reg);
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

/// The entries of the function-pointer array `t` of `obj` (empty if it is
/// not mapped), without 0 and -1: the old .ctors sentinels, which no
/// linker puts in .init_array, but calling them would crash.
fn entries(
    obj: &Object,
    t: Option<crate::elf::dynamic::Table>,
) -> impl DoubleEndedIterator<Item = usize> + '_ {
    let image = &obj.view.image;
    t.and_then(|t| image.slice::<u64>(image.addr(t.vaddr), (t.size / 8) as usize))
        .unwrap_or(&[])
        .iter()
        .map(|&f| f as usize)
        .filter(|&f| f != 0 && f != usize::MAX)
}

/// The constructors of `obj`, in call order: DT_INIT, then DT_INIT_ARRAY.
fn constructors_of(obj: &Object) -> impl Iterator<Item = usize> + '_ {
    let d = &obj.view.dyn_info;
    let init = d.init().map(|init| obj.view.image.addr(init));
    init.into_iter().chain(entries(obj, d.init_array()))
}

/// The destructors of `obj`, in call order: DT_FINI_ARRAY backwards, then
/// DT_FINI.
fn destructors_of(obj: &Object) -> impl Iterator<Item = usize> + '_ {
    let d = &obj.view.dyn_info;
    let fini = d.fini().map(|fini| obj.view.image.addr(fini));
    entries(obj, d.fini_array()).rev().chain(fini)
}

/// [`constructors_of`], collected (to be called without the registry).
pub(crate) fn constructors(obj: &Object) -> Vec<usize> {
    constructors_of(obj).collect()
}

/// [`destructors_of`], collected (to be called without the registry).
pub(crate) fn destructors(obj: &Object) -> Vec<usize> {
    destructors_of(obj).collect()
}

/// Check that every constructor and destructor points into code, so that
/// a damaged object fails its dlopen instead of crashing: the object's own,
/// or another loaded object's (an entry may be a symbolic relocation, as
/// libgcc_s's `__cpu_indicator_init`, which binds to the first definition
/// in the global scope).
pub(crate) fn check_entry_points(reg: &Registry, obj: &Object) -> Result<(), String> {
    for f in constructors_of(obj).chain(destructors_of(obj)) {
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
