//! Saving the whole register state around calls into the loader that the
//! interrupted code does not expect: the lazy PLT resolver (which must
//! preserve every argument register, including the upper halves of ymm and
//! zmm registers and the AVX-512 mask registers) and TLS descriptors (which
//! must preserve everything but %rax, x87 included).
//!
//! The state is saved with XSAVEC where the CPU has it, else XSAVE, else
//! FXSAVE, into an area whose size comes from CPUID at start-up, as glibc's
//! `_dl_runtime_resolve_{xsavec,xsave,fxsave}` do.

use std::arch::x86_64::{__cpuid, __cpuid_count};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

use crate::host::{self, cpuid_index};

/// 2: XSAVEC, 1: XSAVE, 0: FXSAVE.
pub(crate) static SAVE_KIND: AtomicU8 = AtomicU8::new(0);
/// The XSAVE component mask: x87, SSE, AVX, and the AVX-512 opmask and
/// upper-zmm components, as far as the OS enabled them (XCR0). MPX, PKRU
/// and AMX are left alone (glibc's STATE_SAVE_MASK, plus x87).
pub(crate) static SAVE_MASK: AtomicU32 = AtomicU32::new(0);
/// Bytes of stack for the save area (at least 576: legacy area + header).
pub(crate) static SAVE_SIZE: AtomicU64 = AtomicU64::new(576);

/// Read the CPU's capabilities (once, before any object is loaded).
/// DYNLOAD_STATE_SAVE=xsave or =fxsave picks an older instruction than the
/// CPU allows, so that tests reach every path. FXSAVE saves only x87 and
/// the low 128 bits of the vector registers: on a CPU with AVX it is for
/// testing code that uses no wider registers, as on CPUs without XSAVE.
pub(crate) fn init() {
    let (kind, mask, size) = detect();
    let kind = match crate::process::settings().state_save.as_deref() {
        Some("xsave") => kind.min(1),
        Some("fxsave") => 0,
        _ => kind,
    };
    SAVE_MASK.store(mask, Ordering::Relaxed);
    SAVE_SIZE.store(size, Ordering::Relaxed);
    SAVE_KIND.store(kind, Ordering::Relaxed);
}

/// The best save instruction (2: XSAVEC, 1: XSAVE, 0: FXSAVE), the XSAVE
/// component mask and the save area's size.
fn detect() -> (u8, u32, u64) {
    // Leaves 1 and 0xd/1 as glibc read them at start-up where it has them:
    // each CPUID is a trap to the hypervisor in a virtual machine.
    let leaf1_ecx =
        host::glibc_cpuid(cpuid_index::LEAF_1).map_or_else(|| __cpuid(1).ecx, |leaf| leaf.cpuid[2]);
    let xsave = leaf1_ecx & (1 << 26) != 0 && leaf1_ecx & (1 << 27) != 0; // XSAVE, OSXSAVE
    if !xsave {
        return (0, 0, 576);
    }
    // SAFETY: OSXSAVE is set, so XGETBV is enabled.
    let xcr0 = unsafe { std::arch::x86_64::_xgetbv(0) };
    let mask = (xcr0 as u32) & 0xe7;
    // (The size of the area for the enabled components is not in glibc's
    // table.)
    let size = __cpuid_count(0xd, 0).ebx as u64;
    let leaf_d1_eax = host::glibc_cpuid(cpuid_index::LEAF_D_1)
        .map_or_else(|| __cpuid_count(0xd, 1).eax, |leaf| leaf.cpuid[0]);
    let xsavec = leaf_d1_eax & (1 << 1) != 0;
    (
        if xsavec { 2 } else { 1 },
        mask,
        size.max(576).next_multiple_of(64),
    )
}

/// Assembly: save the extended state at [rsp] (64-byte aligned, SAVE_SIZE
/// bytes). Clobbers eax and edx. Operands: `kind`, `mask`.
macro_rules! save_state {
    () => {
        concat!(
            // XRSTOR checks the header's reserved bytes; XSAVE does not write
            // them: clear the header first.
            "mov qword ptr [rsp + 512], 0\n",
            "mov qword ptr [rsp + 520], 0\n",
            "mov qword ptr [rsp + 528], 0\n",
            "mov qword ptr [rsp + 536], 0\n",
            "mov qword ptr [rsp + 544], 0\n",
            "mov qword ptr [rsp + 552], 0\n",
            "mov qword ptr [rsp + 560], 0\n",
            "mov qword ptr [rsp + 568], 0\n",
            "mov eax, dword ptr [rip + {mask}]\n",
            "xor edx, edx\n",
            "cmp byte ptr [rip + {kind}], 1\n",
            "jb 71f\n",
            "ja 72f\n",
            "xsave64 [rsp]\n",
            "jmp 73f\n",
            "71:\n",
            "fxsave64 [rsp]\n",
            "jmp 73f\n",
            "72:\n",
            "xsavec64 [rsp]\n",
            "73:\n",
        )
    };
}

/// Assembly: restore what `save_state!` saved at [rsp]. Clobbers eax, edx.
macro_rules! restore_state {
    () => {
        concat!(
            "mov eax, dword ptr [rip + {mask}]\n",
            "xor edx, edx\n",
            "cmp byte ptr [rip + {kind}], 1\n",
            "jb 74f\n",
            "xrstor64 [rsp]\n",
            "jmp 75f\n",
            "74:\n",
            "fxrstor64 [rsp]\n",
            "75:\n",
        )
    };
}

/// Assembly: open a frame in which Rust code can be called from code that
/// expects its registers kept (the lazy resolver, TLS descriptors). Saves
/// %rdi, %rsi, %rdx, %rcx, %r8, %r9, %r10 at [rbx] to [rbx + 48], %rax at
/// [rbx + 56], %r11 at [rbx + 64], leaves [rbx + 72] for a result, then
/// the extended state below, on a stack aligned whatever the caller left.
/// %rbx is the frame; %rbp the caller's stack. Operands: `size`, `mask`,
/// `kind`.
macro_rules! enter_saved {
    () => {
        concat!(
            "push rbp\n",
            "mov rbp, rsp\n",
            "push rbx\n",
            "and rsp, -64\n",
            "sub rsp, 128\n",
            "mov [rsp], rdi\n",
            "mov [rsp + 8], rsi\n",
            "mov [rsp + 16], rdx\n",
            "mov [rsp + 24], rcx\n",
            "mov [rsp + 32], r8\n",
            "mov [rsp + 40], r9\n",
            "mov [rsp + 48], r10\n",
            "mov [rsp + 56], rax\n",
            "mov [rsp + 64], r11\n",
            "mov rbx, rsp\n",
            "sub rsp, qword ptr [rip + {size}]\n",
            "and rsp, -64\n",
            $crate::state::save_state!(),
        )
    };
}

/// Assembly: restore the extended state and %rdi to %r10 saved by
/// `enter_saved!`, leaving %rsp at the frame ([rsp + 56] is %rax, [rsp + 64]
/// %r11, [rsp + 72] the result); the caller restores %rax, %r11, %rbx and
/// %rbp as it needs, and returns.
macro_rules! leave_saved {
    () => {
        concat!(
            $crate::state::restore_state!(),
            "mov rsp, rbx\n",
            "mov rdi, [rsp]\n",
            "mov rsi, [rsp + 8]\n",
            "mov rdx, [rsp + 16]\n",
            "mov rcx, [rsp + 24]\n",
            "mov r8, [rsp + 32]\n",
            "mov r9, [rsp + 40]\n",
            "mov r10, [rsp + 48]\n",
        )
    };
}

pub(crate) use enter_saved;
pub(crate) use leave_saved;
pub(crate) use restore_state;
pub(crate) use save_state;

#[cfg(test)]
mod tests {
    use super::*;

    /// glibc's copies of leaves 1 and 0xd/1 are what CPUID gives.
    #[test]
    fn glibcs_leaves_are_cpuids() {
        let leaf1 = host::glibc_cpuid(cpuid_index::LEAF_1).expect("glibc 2.33 or later");
        let xsave_bits = (1 << 26) | (1 << 27);
        assert_eq!(leaf1.cpuid[2] & xsave_bits, __cpuid(1).ecx & xsave_bits);
        let d1 = host::glibc_cpuid(cpuid_index::LEAF_D_1).unwrap();
        assert_eq!(d1.cpuid[0] & 0b10, __cpuid_count(0xd, 1).eax & 0b10);
    }

    #[test]
    fn the_save_area_is_big_enough() {
        init();
        let size = SAVE_SIZE.load(Ordering::Relaxed);
        assert!(size >= 576 && size % 64 == 0);
        if SAVE_KIND.load(Ordering::Relaxed) > 0 {
            // SSE and AVX state at least, where the OS enabled AVX.
            assert!(SAVE_MASK.load(Ordering::Relaxed) & 0b11 == 0b11);
        }
        let _ = __cpuid(0);
    }
}
