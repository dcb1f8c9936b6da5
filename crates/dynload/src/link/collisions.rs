//! Interposition made visible: when an object joins the global scope (an
//! RTLD_GLOBAL load, or the promotion of a loaded object to GLOBAL), the
//! symbols it defines that an object already in the global scope defines
//! too. Later global lookups (`dlsym(RTLD_DEFAULT)`, relocations of objects
//! loaded later) get the earlier definition, silently; this reports each
//! case through `DYNLOAD_DEBUG=collisions` and [`crate::on_collision`].
//!
//! The debug output is one line per symbol, then one summary line per
//! object that had any:
//!
//! ```text
//! collision: symbol=NAME defined by NEW [0] and already by OLD [0]; global lookups get OLD's
//! collision: symbol=NAME version=V defined by NEW [0] and already by OLD [0]; global lookups get OLD's
//! collisions: N symbols of NEW [0] are already defined in the global scope
//! ```
//!
//! OLD is the first definer in scope order (glibc's part of the global
//! scope, then dynload's), which is the one lookups find: a weak definition
//! there still wins over a global one that comes later. A new definition
//! that is itself weak or unique (C++ inline functions, templates,
//! typeinfo: defined in many objects by design) is not reported. Collisions between
//! two of glibc's objects (the C runtime defining a symbol twice) are not
//! reported.
//!
//! Nothing is spent unless the category is on or a callback is set.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use crate::api::Collision;
use crate::debug::{self, debug};
use crate::elf::symbols::NameHash;
use crate::elf::{elf, SymExt};
use crate::object::ObjId;
use crate::registry::Registry;

use super::{lookup_in_object, Flags, ALLOWED_TYPES};

type Callback = Arc<dyn Fn(&Collision) + Send + Sync>;

static CALLBACK: RwLock<Option<Callback>> = RwLock::new(None);
/// Set once a callback was installed (checked before taking the lock).
static HAS_CALLBACK: AtomicBool = AtomicBool::new(false);

/// Install (replace) the process-wide callback.
pub(crate) fn set_callback(callback: Callback) {
    *CALLBACK.write().unwrap_or_else(|p| p.into_inner()) = Some(callback);
    HAS_CALLBACK.store(true, Ordering::Release);
}

fn callback() -> Option<Callback> {
    if !HAS_CALLBACK.load(Ordering::Acquire) {
        return None;
    }
    CALLBACK.read().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Can this definition be a collision worth reporting? A strong (global)
/// definition, not an absolute value. Weak and unique definitions are
/// meant to be defined many times (C++ inline functions, template
/// instances, typeinfo: one definition rule), so a second one is not news.
/// The same rule serves `dynload check`.
pub(crate) fn may_collide(s: &crate::elf::Sym) -> bool {
    s.bind() == elf::STB_GLOBAL && s.shndx() != elf::SHN_ABS
}

/// Names the linker defines in every object: never a real interposition.
pub(crate) const LINKER_MADE: &[&[u8]] = &[
    b"_init",
    b"_fini",
    b"_edata",
    b"edata",
    b"_end",
    b"end",
    b"__end__",
    b"_etext",
    b"etext",
    b"__etext",
    b"__bss_start",
    b"__bss_start__",
    b"__bss_end__",
    b"_bss_end__",
    b"_DYNAMIC",
    b"_GLOBAL_OFFSET_TABLE_",
    b"_PROCEDURE_LINKAGE_TABLE_",
    b"__ehdr_start",
    b"__executable_start",
    b"__data_start",
    b"data_start",
    b"__dso_handle",
    b"__TMC_END__",
    b"_IO_stdin_used",
    b"_fp_hw",
    b"__preinit_array_start",
    b"__preinit_array_end",
    b"__init_array_start",
    b"__init_array_end",
    b"__fini_array_start",
    b"__fini_array_end",
    b"__GNU_EH_FRAME_HDR",
    b"__libc_csu_init",
    b"__libc_csu_fini",
    b"_start",
];

/// `id` has just joined the global scope: report the symbols it defines
/// that an object before it in the scope defines too. Cheap when neither
/// the debug category nor a callback is on.
#[inline]
pub(crate) fn check(reg: &Registry, id: ObjId) {
    let debug_on = debug::enabled(debug::COLLISIONS);
    let callback = callback();
    if debug_on || callback.is_some() {
        report(reg, id, debug_on, callback.as_deref());
    }
}

fn report(
    reg: &Registry,
    id: ObjId,
    debug_on: bool,
    callback: Option<&(dyn Fn(&Collision) + Send + Sync)>,
) {
    let new = reg.obj(id);
    if new.removed {
        return;
    }
    // The objects before `id` in the global scope, in lookup order.
    let earlier: Vec<ObjId> = reg
        .global_parts()
        .concat()
        .into_iter()
        .take_while(|&o| o != id)
        .filter(|&o| {
            let ob = reg.obj(o);
            !ob.removed && ob.host().is_none_or(|h| h.present && !h.is_vdso)
        })
        .collect();
    // Only collisions involving one of dynload's objects are reported.
    if !new.is_ours() && !earlier.iter().any(|&o| reg.obj(o).is_ours()) {
        return;
    }
    let syms = &new.view.symbols;
    let mut count = 0usize;
    for (i, s) in syms.iter() {
        let kind = s.kind();
        if s.is_undefined()
            || !may_collide(s)
            || !matches!(s.visibility(), elf::STV_DEFAULT | elf::STV_PROTECTED)
            || ALLOWED_TYPES & (1 << kind) == 0
            // Lookups never find a value-0 definition (glibc's check_match).
            || (s.value() == 0 && kind != elf::STT_TLS)
        {
            continue;
        }
        let versym = syms.versym(i);
        if versym.is_some_and(|v| v & 0x8000 != 0) {
            continue;
        }
        let name = syms.name(s);
        if name.is_empty() || LINKER_MADE.contains(&name) {
            continue;
        }
        // The symbol's own version, if it has a named one (2 and above).
        let version = versym
            .filter(|v| v & 0x7fff >= 2)
            .and_then(|v| new.view.versions.entry(v));
        let mut hash = NameHash::new(name);
        let definer = earlier.iter().copied().find(|&o| {
            let view = &reg.obj(o).view;
            // Relocations (oldest version for an unversioned reference),
            // then dlsym (the default version).
            lookup_in_object(view, name, &mut hash, version.as_ref(), Flags::default()).is_some()
                || (version.is_none()
                    && lookup_in_object(
                        view,
                        name,
                        &mut hash,
                        None,
                        Flags {
                            return_newest: true,
                            plt: false,
                        },
                    )
                    .is_some())
        });
        let Some(old) = definer.map(|o| reg.obj(o)) else {
            continue;
        };
        if !new.is_ours() && !old.is_ours() {
            continue;
        }
        count += 1;
        let collision = Collision {
            symbol: String::from_utf8_lossy(name).into_owned(),
            version: version.map(|v| String::from_utf8_lossy(v.name).into_owned()),
            new_object: new.display_name(),
            existing_object: old.display_name(),
        };
        if debug_on {
            let version = collision
                .version
                .as_ref()
                .map(|v| format!(" version={v}"))
                .unwrap_or_default();
            debug!(
                debug::COLLISIONS,
                "collision: symbol={}{version} defined by {} [0] and already by {} [0]; global lookups get {}'s",
                collision.symbol,
                collision.new_object,
                collision.existing_object,
                collision.existing_object
            );
        }
        if let Some(cb) = callback {
            // A panic must not unwind through the loader (or into C).
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cb(&collision)));
        }
    }
    if count > 0 {
        let (what, verb) = if count == 1 {
            ("symbol", "is")
        } else {
            ("symbols", "are")
        };
        debug!(
            debug::COLLISIONS,
            "collisions: {count} {what} of {} [0] {verb} already defined in the global scope",
            new.display_name()
        );
    }
}
