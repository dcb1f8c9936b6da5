//! The relocation pass's fast lane: GLOB_DAT, JUMP_SLOT and R_X86_64_64
//! entries naming an undefined, unversioned symbol that an object after
//! the global scope defines plainly, bound in a loop that knows only
//! that case and stops at the first entry outside it.
//!
//! Why: such an entry went through the general walk's every question
//! (versions, own names, unique, TLS and IFUNC definitions, glibc's
//! objects and the functions dynload replaces in them), about 400
//! instructions, where its work is about 200 (a C program doing only the
//! hash, the filters, the chain and the compare). The general walk kept
//! more values live than there are registers; this loop keeps few (about
//! 270 instructions a lookup: the benchmark's 4,000-relocation open+close
//! cycle runs 24% fewer). An entry it stops at goes to the general path,
//! which decides it as before.

use super::{note_new_definer, r, rela_symbol, rela_type, Outcome, WordWindow, PREFETCH_AHEAD};
use crate::elf::symbols::{Bloom, PlainFind};
use crate::elf::{Rela, SymExt, LE};
use crate::link::scope_filter::ScopeFilter;
use crate::link::{PreparedScope, NO_DEFINER};
use crate::object::Object;

/// What the lane reads: the referencing object, the global scope's filter
/// and its objects' Bloom filters, and the objects after it that are not
/// in it.
pub(super) struct Lane<'a> {
    obj: &'a Object,
    filter: &'a ScopeFilter,
    /// The Bloom filters of the global scope's objects, asked where its
    /// filter passes a name (from 5 to 15% of names it does not hold).
    global: Vec<Bloom>,
    objects: Vec<(&'a Object, Bloom)>,
}

impl<'a> Lane<'a> {
    /// The lane for `obj`'s pass over `scopes`, if its scope has that shape.
    ///
    /// An object after the global scope that is also in it is left out:
    /// a lookup gets past the global scope only where none of its objects
    /// defines the name, and asking one of them again gives the same
    /// answer. (So a plugin whose dependencies the program loaded, libc
    /// and libstdc++ for one, still takes the lane.)
    pub(super) fn new(obj: &'a Object, scopes: &PreparedScope<'a>) -> Option<Lane<'a>> {
        let (filter, global, after) = scopes.after_global()?;
        let in_global = |o: &Object| global.iter().any(|(g, _)| g.id == o.id);
        let objects: Vec<_> = after
            .iter()
            .filter(|(o, _)| !in_global(o))
            .copied()
            .collect();
        if objects.is_empty() {
            return None;
        }
        Some(Lane {
            obj,
            filter,
            global: global.iter().map(|&(_, bloom)| bloom).collect(),
            objects,
        })
    }

    /// Bind the entries at the head of `relas` that the lane knows (of the
    /// PLT class or not, as `plt` says), and return how many it bound.
    /// `window` and `out` are the pass's.
    pub(super) fn run(
        &self,
        relas: &[Rela],
        plt: bool,
        window: &mut WordWindow,
        out: &mut Outcome,
    ) -> usize {
        let obj = self.obj;
        let image = &obj.view.image;
        let syms = &obj.view.symbols;
        let objects = self.objects.as_slice();
        let mut definer = out.last_definer.unwrap_or(NO_DEFINER);
        let mut done = relas.len();
        for (i, rela) in relas.iter().enumerate() {
            if let Some(ahead) = relas.get(i + PREFETCH_AHEAD) {
                syms.prefetch(rela_symbol(ahead));
            }
            let rtype = rela_type(rela);
            let known = match rtype {
                r::JUMP_SLOT => plt,
                r::GLOB_DAT | r::R64 => !plt,
                _ => false,
            };
            let addr = image.addr(rela.r_offset.get(LE));
            let symidx = rela_symbol(rela);
            let sym = match syms.get(symidx) {
                Some(sym) if known && symidx != 0 && window.holds(image, addr) => sym,
                _ => {
                    done = i;
                    break;
                }
            };
            let unversioned = syms.versym(symidx).is_none_or(|vs| vs & 0x7fff < 2);
            if !sym.is_plain_reference() || !unversioned {
                done = i;
                break;
            }
            let Some(name) = syms.string(sym.name_offset()) else {
                done = i;
                break;
            };
            let h = crate::elf::hash::gnu_hash(name);
            if self.filter.may_contain(h) && self.global.iter().any(|b| b.may_contain(h)) {
                done = i;
                break;
            }
            let mut found = None;
            for &(def, bloom) in objects {
                if def.id != definer && !bloom.may_contain(h) {
                    continue;
                }
                match def.view.symbols.find_plain(name, h) {
                    PlainFind::Absent => continue,
                    PlainFind::Found(value) => found = Some((def, value)),
                    PlainFind::Other => {}
                }
                break;
            }
            // (Objects glibc loaded, libstdc++ for a C++ plugin, define
            // functions dynload binds its objects to instead.)
            let Some((def, value)) =
                found.filter(|(def, _)| def.is_ours() || crate::dlfcn::replacement(name).is_none())
            else {
                done = i;
                break;
            };
            if def.id != definer {
                note_new_definer(obj, def, out);
                definer = def.id;
            }
            let value = if rtype == r::R64 {
                value.wrapping_add(rela.r_addend.get(LE) as usize)
            } else {
                value
            };
            // SAFETY: `addr..addr + 8` is in a writable segment of this
            // object (`window` holds it).
            unsafe { (addr as *mut usize).write_unaligned(value) };
        }
        out.relocations += done as u64;
        out.in_lane += done as u64;
        done
    }
}
