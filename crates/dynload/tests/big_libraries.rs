//! Big real C/C++ libraries through the Rust API, in-process, used through
//! their C APIs and closed: LLVM 15 (~382k relocations, TLS, lazy PLT
//! slots) builds, verifies, prints and JIT-compiles a function, opened
//! `NOW` and `LAZY`; Z3 solves integer constraints; ICU 72 formats numbers
//! and collates with its 30 MB data library.
//!
//! Each test runs twice, each time alone in a child process of this
//! binary: once with dynload, once doing the same work through glibc's
//! `dlopen`/`dlsym`/`dlclose`. What is still mapped after the close must
//! be the same: LLVM stays (`DF_1_NODELETE` in its dynamic section), Z3
//! stays (its relocations bind to its own `STB_GNU_UNIQUE` definitions,
//! `std::piecewise_construct` and others, which makes it NODELETE:
//! `DYNLOAD_DEBUG=bindings` and `LD_DEBUG=bindings` both say "marking
//! libz3.so.4 as NODELETE due to unique symbol"), ICU is unmapped. A
//! child process of its own also keeps LLVM's NODELETE load (and libz3,
//! its dependency) out of the other tests' way.

use std::ffi::{c_char, c_void, CStr, CString};

use dynload::{Library, LoadedBy, OpenFlags};

const CHILD: &str = "DYNLOAD_BIG_LIBRARIES_CHILD";
const REPORT: &str = "after close: ";

type Ptr = *mut c_void;

/// Run test `name` in a child with dynload and in a child with glibc; both
/// must report `after_close` (what each says is mapped after the close).
/// Returns the loader in a child, where the caller runs the body.
fn loader_in_child(name: &str, after_close: &str) -> Option<LoadedBy> {
    match std::env::var(CHILD).as_deref() {
        Ok("dynload") => return Some(LoadedBy::Dynload),
        Ok("glibc") => return Some(LoadedBy::Glibc),
        _ => {}
    }
    let report = |loader: &str| {
        let out = testkit::rerun_in_child(name, None, &[(CHILD, loader)]);
        out.lines()
            // (The first report shares its line with the harness's
            // "test ... ".)
            .filter_map(|l| l.split_once(REPORT).map(|(_, r)| r))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let (dynload, glibc) = (report("dynload"), report("glibc"));
    assert_eq!(dynload, glibc, "dynload and glibc keep different objects");
    assert_eq!(dynload, after_close);
    None
}

/// A library opened by dynload or by glibc.
enum Lib {
    Dynload(Library),
    Glibc(Ptr),
}

impl Lib {
    /// # Safety
    /// Runs the library's initialisers.
    unsafe fn open(by: LoadedBy, name: &str, flags: OpenFlags) -> Lib {
        let path = format!("/usr/lib/x86_64-linux-gnu/{name}");
        assert!(
            std::path::Path::new(&path).exists(),
            "{path} is missing: install libllvm15, libz3-4 and libicu72"
        );
        let lib = match by {
            LoadedBy::Dynload => Lib::Dynload(
                unsafe { Library::open(name, flags) }.unwrap_or_else(|e| panic!("{}", e.explain())),
            ),
            LoadedBy::Glibc => {
                let c = CString::new(name).unwrap();
                let h = unsafe { libc::dlopen(c.as_ptr(), flags.bits()) };
                assert!(!h.is_null(), "{}", unsafe {
                    CStr::from_ptr(libc::dlerror()).to_string_lossy()
                });
                Lib::Glibc(h)
            }
        };
        // The loader asked is the one that mapped it.
        let loaded_by = dynload::loaded_objects()
            .into_iter()
            .find(|o| o.soname.as_deref() == Some(name))
            .map(|o| o.loaded_by);
        assert_eq!(loaded_by, Some(by), "{name}");
        lib
    }

    /// The function `name`, of type `F`.
    ///
    /// # Safety
    /// `F` must be its type, and it must not be called after the close.
    unsafe fn get<F: Copy>(&self, name: &str) -> F {
        match self {
            Lib::Dynload(lib) => {
                *unsafe { lib.get::<F>(name) }.unwrap_or_else(|e| panic!("{}", e.explain()))
            }
            Lib::Glibc(h) => {
                let c = CString::new(name).unwrap();
                let p = unsafe { libc::dlsym(*h, c.as_ptr()) };
                assert!(!p.is_null(), "{name}");
                assert_eq!(std::mem::size_of::<F>(), std::mem::size_of::<Ptr>());
                unsafe { std::mem::transmute_copy(&p) }
            }
        }
    }

    fn close(self) {
        match self {
            Lib::Dynload(lib) => lib.close().unwrap(),
            Lib::Glibc(h) => assert_eq!(unsafe { libc::dlclose(h) }, 0),
        }
    }
}

/// Report whether `file` is still mapped executable in this process (its
/// code is still there).
fn report(file: &str) {
    let code = testkit::self_maps()
        .lines()
        .any(|l| l.contains(file) && l.split_whitespace().nth(1).is_some_and(|p| p.contains('x')));
    let mapped = if code { "yes" } else { "no" };
    println!("{REPORT}{file} mapped: {mapped}");
}

fn take_llvm_string(lib: &Lib, s: *mut c_char) -> String {
    // SAFETY: LLVM's string, freed with LLVM's function.
    unsafe {
        let text = CStr::from_ptr(s).to_string_lossy().into_owned();
        lib.get::<extern "C" fn(*mut c_char)>("LLVMDisposeMessage")(s);
        text
    }
}

/// Build `int add(int a, int b)`, verify it, print it, have the verifier
/// reject a broken function, and compile and call it with MCJIT.
fn llvm(name: &str, flags: OpenFlags) {
    let Some(by) = loader_in_child(name, "libLLVM-15.so.1 mapped: yes") else {
        return;
    };
    // SAFETY: LLVM's C API, with the prototypes of llvm-c/*.h (LLVMBool is
    // an int, the enums are ints, every reference type a pointer).
    unsafe {
        let lib = Lib::open(by, "libLLVM-15.so.1", flags);
        let ctx = lib.get::<extern "C" fn() -> Ptr>("LLVMContextCreate")();
        let module_in = lib
            .get::<extern "C" fn(*const c_char, Ptr) -> Ptr>("LLVMModuleCreateWithNameInContext");
        let int32 = lib.get::<extern "C" fn(Ptr) -> Ptr>("LLVMInt32TypeInContext");
        let function_type =
            lib.get::<extern "C" fn(Ptr, *mut Ptr, u32, i32) -> Ptr>("LLVMFunctionType");
        let add_function =
            lib.get::<extern "C" fn(Ptr, *const c_char, Ptr) -> Ptr>("LLVMAddFunction");
        let param = lib.get::<extern "C" fn(Ptr, u32) -> Ptr>("LLVMGetParam");
        let set_name = lib.get::<extern "C" fn(Ptr, *const c_char, usize)>("LLVMSetValueName2");
        let append_block = lib
            .get::<extern "C" fn(Ptr, Ptr, *const c_char) -> Ptr>("LLVMAppendBasicBlockInContext");
        let verify =
            lib.get::<extern "C" fn(Ptr, i32, *mut *mut c_char) -> i32>("LLVMVerifyModule");
        const RETURN_STATUS: i32 = 2; // LLVMReturnStatusAction

        let module = module_in(c"big".as_ptr(), ctx);
        let i32_ty = int32(ctx);
        let mut params = [i32_ty, i32_ty];
        let add = add_function(
            module,
            c"add".as_ptr(),
            function_type(i32_ty, params.as_mut_ptr(), 2, 0),
        );
        let (a, b) = (param(add, 0), param(add, 1));
        set_name(a, c"a".as_ptr(), 1);
        set_name(b, c"b".as_ptr(), 1);
        let builder = lib.get::<extern "C" fn(Ptr) -> Ptr>("LLVMCreateBuilderInContext")(ctx);
        lib.get::<extern "C" fn(Ptr, Ptr)>("LLVMPositionBuilderAtEnd")(
            builder,
            append_block(ctx, add, c"entry".as_ptr()),
        );
        let sum = lib.get::<extern "C" fn(Ptr, Ptr, Ptr, *const c_char) -> Ptr>("LLVMBuildAdd")(
            builder,
            a,
            b,
            c"sum".as_ptr(),
        );
        lib.get::<extern "C" fn(Ptr, Ptr) -> Ptr>("LLVMBuildRet")(builder, sum);

        let mut msg = std::ptr::null_mut();
        assert_eq!(verify(module, RETURN_STATUS, &mut msg), 0);
        assert_eq!(take_llvm_string(&lib, msg), "");
        let ir = lib.get::<extern "C" fn(Ptr) -> *mut c_char>("LLVMPrintModuleToString")(module);
        let ir = take_llvm_string(&lib, ir);
        assert!(
            ir.contains("define i32 @add(i32 %a, i32 %b) {\nentry:\n  %sum = add i32 %a, %b\n  ret i32 %sum\n}"),
            "{ir}"
        );

        // A block without a terminator: the verifier says so.
        let bad = module_in(c"bad".as_ptr(), ctx);
        let f = add_function(
            bad,
            c"f".as_ptr(),
            function_type(i32_ty, params.as_mut_ptr(), 2, 0),
        );
        append_block(ctx, f, c"entry".as_ptr());
        assert_eq!(verify(bad, RETURN_STATUS, &mut msg), 1);
        assert_eq!(
            take_llvm_string(&lib, msg),
            "Basic Block in function 'f' does not have terminator!\nlabel %entry\n"
        );
        lib.get::<extern "C" fn(Ptr)>("LLVMDisposeModule")(bad);

        // Machine code from LLVM's X86 back end, called from here.
        for init in [
            "LLVMLinkInMCJIT",
            "LLVMInitializeX86TargetInfo",
            "LLVMInitializeX86Target",
            "LLVMInitializeX86TargetMC",
            "LLVMInitializeX86AsmPrinter",
        ] {
            lib.get::<extern "C" fn()>(init)();
        }
        let mut engine = std::ptr::null_mut();
        let created = lib.get::<extern "C" fn(*mut Ptr, Ptr, *mut *mut c_char) -> i32>(
            "LLVMCreateExecutionEngineForModule",
        )(&mut engine, module, &mut msg);
        assert_eq!(created, 0, "{}", take_llvm_string(&lib, msg));
        let address = lib.get::<extern "C" fn(Ptr, *const c_char) -> u64>("LLVMGetFunctionAddress")(
            engine,
            c"add".as_ptr(),
        );
        assert_ne!(address, 0);
        let compiled: extern "C" fn(i32, i32) -> i32 = std::mem::transmute(address as usize);
        assert_eq!(compiled(40, 2), 42);
        assert_eq!(compiled(-7, 7), 0);
        // The engine owns the module.
        lib.get::<extern "C" fn(Ptr)>("LLVMDisposeExecutionEngine")(engine);
        lib.get::<extern "C" fn(Ptr)>("LLVMDisposeBuilder")(builder);
        lib.get::<extern "C" fn(Ptr)>("LLVMContextDispose")(ctx);
        lib.close();
        report("libLLVM-15.so.1");
    }
}

#[test]
fn llvm_builds_verifies_and_jit_compiles_a_function_bound_now() {
    llvm(
        "llvm_builds_verifies_and_jit_compiles_a_function_bound_now",
        OpenFlags::NOW,
    );
}

#[test]
fn llvm_builds_verifies_and_jit_compiles_a_function_bound_lazily() {
    // libLLVM has no DF_BIND_NOW: its PLT slots (and libstdc++'s, libxml2's
    // ...) are bound on first call.
    llvm(
        "llvm_builds_verifies_and_jit_compiles_a_function_bound_lazily",
        OpenFlags::LAZY,
    );
}

#[test]
fn z3_solves_and_proves_unsat() {
    let Some(by) = loader_in_child("z3_solves_and_proves_unsat", "libz3.so.4 mapped: yes") else {
        return;
    };
    // SAFETY: Z3's C API with the prototypes of z3_api.h (Z3_lbool is an
    // int, Z3_bool a C bool, every other type a pointer).
    unsafe {
        let lib = Lib::open(by, "libz3.so.4", OpenFlags::NOW);
        let cfg = lib.get::<extern "C" fn() -> Ptr>("Z3_mk_config")();
        let c = lib.get::<extern "C" fn(Ptr) -> Ptr>("Z3_mk_context")(cfg);
        lib.get::<extern "C" fn(Ptr)>("Z3_del_config")(cfg);
        let int_sort = lib.get::<extern "C" fn(Ptr) -> Ptr>("Z3_mk_int_sort")(c);
        let symbol = lib.get::<extern "C" fn(Ptr, *const c_char) -> Ptr>("Z3_mk_string_symbol");
        let constant = lib.get::<extern "C" fn(Ptr, Ptr, Ptr) -> Ptr>("Z3_mk_const");
        let int =
            |v: i32| lib.get::<extern "C" fn(Ptr, i32, Ptr) -> Ptr>("Z3_mk_int")(c, v, int_sort);
        let add = lib.get::<extern "C" fn(Ptr, u32, *const Ptr) -> Ptr>("Z3_mk_add");
        let eq = lib.get::<extern "C" fn(Ptr, Ptr, Ptr) -> Ptr>("Z3_mk_eq");
        let gt = lib.get::<extern "C" fn(Ptr, Ptr, Ptr) -> Ptr>("Z3_mk_gt");
        let lt = lib.get::<extern "C" fn(Ptr, Ptr, Ptr) -> Ptr>("Z3_mk_lt");
        let constrain = lib.get::<extern "C" fn(Ptr, Ptr, Ptr)>("Z3_solver_assert");
        let check = lib.get::<extern "C" fn(Ptr, Ptr) -> i32>("Z3_solver_check");
        let push = lib.get::<extern "C" fn(Ptr, Ptr)>("Z3_solver_push");
        let pop = lib.get::<extern "C" fn(Ptr, Ptr, u32)>("Z3_solver_pop");
        let get_model = lib.get::<extern "C" fn(Ptr, Ptr) -> Ptr>("Z3_solver_get_model");
        let model_inc = lib.get::<extern "C" fn(Ptr, Ptr)>("Z3_model_inc_ref");
        let model_dec = lib.get::<extern "C" fn(Ptr, Ptr)>("Z3_model_dec_ref");
        let eval = lib.get::<extern "C" fn(Ptr, Ptr, Ptr, bool, *mut Ptr) -> bool>("Z3_model_eval");
        let numeral = lib.get::<extern "C" fn(Ptr, Ptr, *mut i32) -> bool>("Z3_get_numeral_int");
        const SAT: i32 = 1; // Z3_L_TRUE
        const UNSAT: i32 = -1; // Z3_L_FALSE

        let x = constant(c, symbol(c, c"x".as_ptr()), int_sort);
        let y = constant(c, symbol(c, c"y".as_ptr()), int_sort);
        let s = lib.get::<extern "C" fn(Ptr) -> Ptr>("Z3_mk_solver")(c);
        lib.get::<extern "C" fn(Ptr, Ptr)>("Z3_solver_inc_ref")(c, s);
        // x + y = 10, x > y, y > 2: (7, 3) or (6, 4).
        constrain(c, s, eq(c, add(c, 2, [x, y].as_ptr()), int(10)));
        constrain(c, s, gt(c, x, y));
        constrain(c, s, gt(c, y, int(2)));
        let values = || {
            assert_eq!(check(c, s), SAT);
            let m = get_model(c, s);
            model_inc(c, m);
            let value = |v: Ptr| {
                let (mut e, mut n) = (std::ptr::null_mut(), 0);
                assert!(eval(c, m, v, true, &mut e) && numeral(c, e, &mut n));
                n
            };
            let xy = (value(x), value(y));
            model_dec(c, m);
            xy
        };
        let (vx, vy) = values();
        assert!(
            vx + vy == 10 && vx > vy && vy > 2,
            "model x = {vx}, y = {vy}"
        );
        // One more constraint leaves one solution.
        push(c, s);
        constrain(c, s, gt(c, y, int(3)));
        assert_eq!(values(), (6, 4));
        pop(c, s, 1);
        // x > y and x < y: no model.
        push(c, s);
        constrain(c, s, lt(c, x, y));
        assert_eq!(check(c, s), UNSAT);
        pop(c, s, 1);
        assert_eq!(check(c, s), SAT);

        lib.get::<extern "C" fn(Ptr, Ptr)>("Z3_solver_dec_ref")(c, s);
        lib.get::<extern "C" fn(Ptr)>("Z3_del_context")(c);
        lib.close();
        report("libz3.so.4");
    }
}

#[test]
fn icu_formats_numbers_collates_and_is_unloaded() {
    let Some(by) = loader_in_child(
        "icu_formats_numbers_collates_and_is_unloaded",
        "libicui18n.so.72 mapped: no\nlibicuuc.so.72 mapped: no\nlibicudata.so.72 mapped: no",
    ) else {
        return;
    };
    // SAFETY: ICU's C API with the prototypes of unicode/*.h (UChar is
    // 16-bit, UErrorCode an int: a failure when positive; ICU 72's
    // functions carry the suffix _72).
    unsafe {
        let i18n = Lib::open(by, "libicui18n.so.72", OpenFlags::LAZY);
        let uc = Lib::open(by, "libicuuc.so.72", OpenFlags::LAZY);
        let open = i18n
            .get::<extern "C" fn(i32, *const u16, i32, *const c_char, Ptr, *mut i32) -> Ptr>(
                "unum_open_72",
            );
        let format = i18n.get::<extern "C" fn(Ptr, f64, *mut u16, i32, Ptr, *mut i32) -> i32>(
            "unum_formatDouble_72",
        );
        let close = i18n.get::<extern "C" fn(Ptr)>("unum_close_72");
        let to_utf8 = uc
            .get::<extern "C" fn(*mut u8, i32, *mut i32, *const u16, i32, *mut i32) -> *mut u8>(
                "u_strToUTF8_72",
            );
        const DECIMAL: i32 = 1; // UNUM_DECIMAL
        for (locale, want) in [
            (c"de_DE", "1.234.567,891"),
            (c"en_US", "1,234,567.891"),
            (c"fr_FR", "1\u{202f}234\u{202f}567,891"),
        ] {
            let mut status = 0;
            let fmt = open(
                DECIMAL,
                std::ptr::null(),
                0,
                locale.as_ptr(),
                std::ptr::null_mut(),
                &mut status,
            );
            assert!(status <= 0, "unum_open {locale:?}: {status}");
            let mut buf = [0u16; 64];
            let n = format(
                fmt,
                1234567.891,
                buf.as_mut_ptr(),
                64,
                std::ptr::null_mut(),
                &mut status,
            );
            assert!(status <= 0, "unum_formatDouble {locale:?}: {status}");
            let mut utf8 = [0u8; 256];
            let mut len = 0;
            to_utf8(
                utf8.as_mut_ptr(),
                256,
                &mut len,
                buf.as_ptr(),
                n,
                &mut status,
            );
            assert!(status <= 0, "u_strToUTF8 {locale:?}: {status}");
            assert_eq!(
                std::str::from_utf8(&utf8[..len as usize]),
                Ok(want),
                "{locale:?}"
            );
            close(fmt);
        }
        // German collation: an umlaut sorts with its base letter.
        let mut status = 0;
        let coll = i18n.get::<extern "C" fn(*const c_char, *mut i32) -> Ptr>("ucol_open_72")(
            c"de".as_ptr(),
            &mut status,
        );
        assert!(status <= 0, "ucol_open: {status}");
        let strcoll = i18n.get::<extern "C" fn(
            Ptr,
            *const c_char,
            i32,
            *const c_char,
            i32,
            *mut i32,
        ) -> i32>("ucol_strcollUTF8_72");
        assert_eq!(
            strcoll(
                coll,
                c"Äpfel".as_ptr(),
                -1,
                c"Birne".as_ptr(),
                -1,
                &mut status
            ),
            -1
        );
        assert_eq!(
            strcoll(
                coll,
                c"Zebra".as_ptr(),
                -1,
                c"Äpfel".as_ptr(),
                -1,
                &mut status
            ),
            1
        );
        assert!(status <= 0, "ucol_strcollUTF8: {status}");
        i18n.get::<extern "C" fn(Ptr)>("ucol_close_72")(coll);

        // No unique symbols, no NODELETE: both go, and libicudata with
        // them (libstdc++, NODELETE, stays).
        uc.close();
        i18n.close();
        for file in ["libicui18n.so.72", "libicuuc.so.72", "libicudata.so.72"] {
            report(file);
        }
    }
}
