//! The benchmark fixtures are what the benchmarks say they are, and glibc
//! and dynload load them to the same effect.

use std::ffi::{c_int, c_void, CStr};

use dynload_bench::{
    many_symbol, Fixtures, Loader, MANY_SYMBOLS, RELOCATED_DATA, RELOCATED_FUNCTIONS,
};

#[test]
fn fixtures_have_the_relocations_and_symbols_the_benchmarks_count() {
    let fx = Fixtures::for_loader(Loader::Glibc);
    let relocs = testkit::relocations(fx.path("reloc"));
    let count = |kind: &str| relocs.lines().filter(|l| l.contains(kind)).count();
    assert_eq!(count("R_X86_64_JUMP_SLOT"), RELOCATED_FUNCTIONS);
    assert_eq!(count("R_X86_64_64 "), RELOCATED_DATA);
    let symbols = testkit::dynamic_symbols(fx.path("many"));
    let defined = symbols
        .lines()
        .filter(|l| l.contains(" FUNC ") && l.contains("many_") && !l.contains(" UND "))
        .count();
    assert_eq!(defined, MANY_SYMBOLS);
    assert!(testkit::relocations(fx.path("tls")).contains("__tls_get_addr"));
    assert!(testkit::relocations(fx.path("plt")).contains("R_X86_64_JUMP_SLOT"));
}

type Open = unsafe fn(&CStr, c_int) -> *mut c_void;
type Sym = unsafe fn(*mut c_void, &CStr) -> *mut c_void;

unsafe fn glibc_open(p: &CStr, m: c_int) -> *mut c_void {
    // SAFETY: a C string.
    unsafe { libc::dlopen(p.as_ptr(), m) }
}
unsafe fn glibc_sym(h: *mut c_void, n: &CStr) -> *mut c_void {
    // SAFETY: a handle and a C string.
    unsafe { libc::dlsym(h, n.as_ptr()) }
}
unsafe fn dynload_open(p: &CStr, m: c_int) -> *mut c_void {
    // SAFETY: a C string.
    unsafe { dynload::dlfcn::dlopen_from(p.as_ptr(), m, dynload_open as *const c_void) }
}
unsafe fn dynload_sym(h: *mut c_void, n: &CStr) -> *mut c_void {
    // SAFETY: a handle and a C string.
    unsafe { dynload::dlfcn::dlsym_from(h, n.as_ptr(), dynload_open as *const c_void) }
}

/// What the benchmarks call, under one loader: (tiny_value, plt_call(41),
/// reloc_call_all, the last data address's value, tls_bump twice, dlsym of
/// a missing name is NULL).
fn results(loader: Loader, open: Open, sym: Sym) -> (i32, i32, i64, i32, (i64, i64), bool) {
    let fx = Fixtures::for_loader(loader);
    let now = libc::RTLD_NOW;
    // SAFETY: the fixtures' functions have these C types; handles stay open.
    unsafe {
        let h = |name: &str| {
            let p = open(&fx.c_path(name), now);
            assert!(!p.is_null(), "{loader:?}: cannot open {name}");
            p
        };
        let tiny: extern "C" fn() -> i32 = std::mem::transmute(sym(h("tiny"), c"tiny_value"));
        h("pltdep");
        let plt: extern "C" fn(i32) -> i32 = std::mem::transmute(sym(h("plt"), c"plt_call"));
        h("relocdep");
        let reloc = h("reloc");
        let call_all: extern "C" fn() -> i64 = std::mem::transmute(sym(reloc, c"reloc_call_all"));
        let table = sym(reloc, c"reloc_data") as *const *const i32;
        let last = **table.add(RELOCATED_DATA - 1);
        let bump: extern "C" fn() -> i64 = std::mem::transmute(sym(h("tls"), c"tls_bump"));
        let many = h("many");
        let name = std::ffi::CString::new(many_symbol(5_000)).unwrap();
        let hit: extern "C" fn() -> i32 = std::mem::transmute(sym(many, &name));
        assert_eq!(hit(), 5_000);
        let missing = sym(many, c"many_absent").is_null();
        (tiny(), plt(41), call_all(), last, (bump(), bump()), missing)
    }
}

#[test]
fn glibc_and_dynload_load_the_fixtures_to_the_same_effect() {
    let glibc = results(Loader::Glibc, glibc_open, glibc_sym);
    let ours = results(Loader::Dynload, dynload_open, dynload_sym);
    let n = RELOCATED_FUNCTIONS as i64;
    assert_eq!(
        glibc,
        (
            42,
            42,
            n * (n - 1) / 2,
            RELOCATED_DATA as i32 - 1,
            (1, 2),
            true
        )
    );
    assert_eq!(ours, glibc);
}
