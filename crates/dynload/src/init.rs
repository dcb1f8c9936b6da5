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
    // One object is in order: no walk, nor its table of visited ids (most
    // loads and unloads are of one object with its dependencies loaded).
    if maps.len() < 2 {
        return;
    }
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

/// The function-pointer array `t` of `obj` (empty if it is not mapped).
fn array(obj: &Object, t: Option<crate::elf::dynamic::Table>) -> &[u64] {
    let image = &obj.view.image;
    t.and_then(|t| image.slice::<u64>(image.addr(t.vaddr), (t.size / 8) as usize))
        .unwrap_or(&[])
}

/// An array entry to call: not 0 or -1, the old .ctors sentinels, which
/// no linker puts in .init_array, but calling them would crash.
fn callable(f: u64) -> Option<usize> {
    (f != 0 && f != u64::MAX).then_some(f as usize)
}

/// What to call for one object, found while the registry is borrowed and
/// called after it is released: a function of its own dynamic tag (DT_INIT,
/// called before the array; DT_FINI, after it), and a function-pointer
/// array that is read where it is mapped, entry by entry as the calls go,
/// as glibc reads it. (Copied out first, libz3's 2,000 constructors were a
/// 16 KB buffer, whose pages stayed in the process's private memory.)
#[derive(Debug, Clone, Copy)]
pub(crate) struct EntryPoints {
    single: Option<usize>,
    array: *const u64,
    len: usize,
}

impl EntryPoints {
    fn of(obj: &Object, single: Option<u64>, t: Option<crate::elf::dynamic::Table>) -> Self {
        let array = array(obj, t);
        EntryPoints {
            single: single.map(|a| obj.view.image.addr(a)),
            array: array.as_ptr(),
            len: array.len(),
        }
    }

    /// Entry `i` of the array, if it is [`callable`].
    ///
    /// # Safety
    /// The object is still mapped, and `i < len`.
    unsafe fn entry(&self, i: usize) -> Option<usize> {
        // SAFETY: per the contract, `array` has `len` readable words.
        callable(unsafe { self.array.add(i).read_unaligned() })
    }
}

/// The constructors of `obj` (DT_INIT, then DT_INIT_ARRAY), to be called
/// without the registry.
pub(crate) fn constructors(obj: &Object) -> EntryPoints {
    let d = &obj.view.dyn_info;
    EntryPoints::of(obj, d.init(), d.init_array())
}

/// The destructors of `obj` (DT_FINI_ARRAY backwards, then DT_FINI), to
/// be called without the registry.
pub(crate) fn destructors(obj: &Object) -> EntryPoints {
    let d = &obj.view.dyn_info;
    EntryPoints::of(obj, d.fini(), d.fini_array())
}

/// Check that every constructor and destructor points into code, so that
/// a damaged object fails its dlopen instead of crashing: the object's own,
/// or another loaded object's (an entry may be a symbolic relocation, as
/// libgcc_s's `__cpu_indicator_init`, which binds to the first definition
/// in the global scope).
pub(crate) fn check_entry_points(reg: &Registry, obj: &Object) -> Result<(), String> {
    let d = &obj.view.dyn_info;
    let singles = [d.init(), d.fini()]
        .into_iter()
        .flatten()
        .map(|a| obj.view.image.addr(a));
    let arrays = [d.init_array(), d.fini_array()]
        .into_iter()
        .flat_map(|t| array(obj, t))
        .filter_map(|&f| callable(f));
    for f in singles.chain(arrays) {
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

/// Call constructors with glibc's arguments (argc, argv, envp): DT_INIT,
/// then DT_INIT_ARRAY in order.
///
/// # Safety
/// `e` is [`constructors`] of a relocated object that stays mapped while
/// they run, and whose entries [`check_entry_points`] accepted.
pub(crate) unsafe fn call_constructors(e: EntryPoints) {
    let (argc, argv) = crate::process::args();
    let env = crate::process::environ();
    let call = |f: usize| {
        // SAFETY: per the contract; constructors take (argc, argv, envp).
        unsafe {
            let f: extern "C" fn(c_int, *mut *mut c_char, *mut *mut c_char) =
                std::mem::transmute(f);
            f(argc, argv, env);
        }
    };
    e.single.into_iter().for_each(call);
    for i in 0..e.len {
        // SAFETY: the object is mapped (contract), and `i < len`.
        if let Some(f) = unsafe { e.entry(i) } {
            call(f);
        }
    }
}

/// Call destructors (no arguments): DT_FINI_ARRAY backwards, then DT_FINI.
///
/// # Safety
/// `e` is [`destructors`] of a loaded object that stays mapped while they
/// run.
pub(crate) unsafe fn call_destructors(e: EntryPoints) {
    let call = |f: usize| {
        // SAFETY: per the contract.
        unsafe {
            let f: extern "C" fn() = std::mem::transmute(f);
            f();
        }
    };
    for i in (0..e.len).rev() {
        // SAFETY: the object is mapped (contract), and `i < len`.
        if let Some(f) = unsafe { e.entry(i) } {
            call(f);
        }
    }
    e.single.into_iter().for_each(call);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    static CALLS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

    extern "C" fn ctor<const N: u32>(_: c_int, _: *mut *mut c_char, _: *mut *mut c_char) {
        CALLS.lock().unwrap().push(N);
    }
    extern "C" fn dtor<const N: u32>() {
        CALLS.lock().unwrap().push(N);
    }

    /// The single function first for constructors and last for
    /// destructors, the array in order and backwards, its 0 and -1
    /// entries skipped; the array is read as the calls go.
    #[test]
    fn entry_points_are_called_in_glibcs_order() {
        let word = |f: *const ()| f as usize as u64;
        let ctors = [
            0,
            word(ctor::<2> as *const ()),
            u64::MAX,
            word(ctor::<3> as *const ()),
        ];
        let e = EntryPoints {
            single: Some(ctor::<1> as *const () as usize),
            array: ctors.as_ptr(),
            len: ctors.len(),
        };
        // SAFETY: the array and the functions are this test's.
        unsafe { call_constructors(e) };
        assert_eq!(std::mem::take(&mut *CALLS.lock().unwrap()), [1, 2, 3]);
        let dtors = [
            word(dtor::<12> as *const ()),
            0,
            word(dtor::<13> as *const ()),
            u64::MAX,
        ];
        let e = EntryPoints {
            single: Some(dtor::<11> as *const () as usize),
            array: dtors.as_ptr(),
            len: dtors.len(),
        };
        // SAFETY: as above.
        unsafe { call_destructors(e) };
        assert_eq!(std::mem::take(&mut *CALLS.lock().unwrap()), [13, 12, 11]);
    }
}
