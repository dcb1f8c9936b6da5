//! Lazy binding: a PLT slot is bound the first time it is called.
//!
//! An object relocated lazily has GOT[1] pointing to its [`LazyInfo`] and
//! GOT[2] pointing to [`runtime_resolve`]; its PLT slots point back into
//! the PLT, whose stubs push the relocation index and jump to PLT0, which
//! pushes GOT[1] and jumps to GOT[2]. The trampoline saves every register a
//! call can pass arguments in — %rax (the vector count of varargs calls),
//! %rdi, %rsi, %rdx, %rcx, %r8, %r9, %r10 (the static chain), and the whole
//! x87/SSE/AVX/AVX-512 state — on a stack it aligns itself, calls
//! [`fixup`], restores them and jumps through %r11 (a scratch register at
//! calls, as in glibc) to the bound function. The slot is written with one
//! atomic store, so threads racing through the same stub all end up at the
//! same function.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::elf::{Rela, LE};
use crate::object::ObjId;
use crate::registry::{registry, registry_mut, LOADER};
use crate::relocate::{self, r, Outcome};
use crate::state::{enter_saved, leave_saved, SAVE_KIND, SAVE_MASK, SAVE_SIZE};

/// What the resolver needs to know about a lazily relocated object; GOT[1]
/// points to it (it lives in a Box owned by the object).
#[derive(Debug)]
pub(crate) struct LazyInfo {
    pub id: ObjId,
    /// Absolute address of DT_JMPREL.
    pub jmprel: usize,
    /// Number of entries in it.
    pub count: usize,
}

/// The PLT resolver trampoline (GOT[2] of every lazily bound object).
///
/// # Safety
/// Only to be jumped to by PLT0, with GOT[1] and the relocation index
/// pushed.
#[unsafe(naked)]
pub(crate) unsafe extern "C" fn runtime_resolve() {
    core::arch::naked_asm!(
        // [rsp] = GOT[1] (LazyInfo), [rsp + 8] = relocation index,
        // [rsp + 16] = the caller's return address.
        enter_saved!(),
        "mov rdi, [rbp + 8]",
        "mov rsi, [rbp + 16]",
        "call {fixup}",
        "mov [rbx + 72], rax",
        leave_saved!(),
        "mov rax, [rsp + 56]",
        "mov r11, [rsp + 72]",
        "mov rbx, [rbp - 8]",
        "mov rsp, rbp",
        "pop rbp",
        // Drop GOT[1] and the index; jump to the function, which returns to
        // the caller.
        "add rsp, 16",
        "jmp r11",
        size = sym SAVE_SIZE,
        mask = sym SAVE_MASK,
        kind = sym SAVE_KIND,
        fixup = sym fixup,
    )
}

/// Bind PLT slot `index` of the object `info` describes; returns the
/// function's address. Never returns on failure: like glibc, it prints
/// "symbol lookup error" and ends the process with status 127.
extern "C" fn fixup(info: *const LazyInfo, index: usize) -> usize {
    match std::panic::catch_unwind(|| bind_slot(info, index)) {
        Ok(Ok(addr)) => addr,
        Ok(Err(message)) => crate::process::fatal(&message),
        Err(_) => crate::process::fatal("dynload: internal error while binding a PLT slot"),
    }
}

fn bind_slot(info: *const LazyInfo, index: usize) -> Result<usize, String> {
    let guard = LOADER.lock();
    let (slot, binding, reldeps, uniques) = {
        let reg = registry(&guard).map_err(|e| e.to_string())?;
        // SAFETY: GOT[1] of a loaded object points to its LazyInfo, which
        // lives as long as the object (whose code is calling us).
        let info = unsafe { &*info };
        let obj = reg
            .get(info.id)
            .filter(|o| o.lazy.as_deref().is_some_and(|l| std::ptr::eq(l, info)));
        let Some(obj) = obj else {
            return Err("dynload: PLT resolver called for an unknown object".into());
        };
        if index >= info.count {
            return Err(format!(
                "{}: PLT relocation index {index} out of range",
                obj.display_name()
            ));
        }
        // SAFETY: jmprel has `count` entries inside the object (checked at
        // load).
        let rela: &Rela = unsafe { &*(info.jmprel as *const Rela).add(index) };
        let rtype = (rela.r_info.get(LE) & 0xffff_ffff) as u32;
        if rtype != r::JUMP_SLOT {
            return Err(format!(
                "{}: unexpected PLT reloc type 0x{rtype:02x}",
                obj.display_name()
            ));
        }
        let slot =
            relocate::check_target(obj, rela.r_offset.get(LE), 8).map_err(|e| e.to_string())?;
        let symbolic_self: &[ObjId] = std::slice::from_ref(&obj.id);
        let mut out = Outcome::default();
        let symidx = relocate::rela_symbol(rela);
        let binding = reg
            .with_scope_chunks(&obj.scope, symbolic_self, |scopes| {
                relocate::bind(&reg, info.id, scopes, symidx, true, &mut out)
            })
            .map_err(|e| {
                let prog = crate::process::program_name();
                format!("{prog}: symbol lookup error: {e}")
            })?;
        (slot, binding, out.reldeps, out.unique_definers)
    };
    // Record what glibc's _dl_fixup records (DL_LOOKUP_ADD_DEPENDENCY),
    // when the registry is free; a call from code the loader itself is
    // running (an IFUNC resolver) skips it.
    if !reldeps.is_empty() || !uniques.is_empty() {
        if let Ok(mut reg) = registry_mut(&guard) {
            // SAFETY: as above.
            let id = unsafe { (*info).id };
            reg.record_bindings(id, &reldeps, &uniques);
        }
    }
    // SAFETY: the slot is an aligned, writable word of the object (checked);
    // other threads may read it concurrently, hence the atomic store.
    unsafe { AtomicUsize::from_ptr(slot as *mut usize).store(binding.value, Ordering::Release) };
    Ok(binding.value)
}
