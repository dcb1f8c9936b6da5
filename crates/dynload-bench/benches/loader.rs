//! glibc's loader and dynload side by side, one criterion group per case,
//! one function per loader. `scripts/bench.py` runs this with the
//! `dlopen_rs` bench (a separate process: dlopen-rs adds its objects to
//! glibc's debugger list from a constructor, which would change what the
//! other two loaders see) and reports the ratios.
//!
//! Both loaders are called through their C entry points with NUL-terminated
//! names, as a C program would (`dynload_bench::dl`).

use std::ffi::{c_int, c_void, CStr};
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};

mod common;
use common::config;
#[path = "common/dl.rs"]
mod dl;
use dl::{open, Dl, Dynload, Glibc};
use dynload_bench::{many_symbol, Fixtures};

fn sym<D: Dl>(h: *mut c_void, name: &CStr) -> *mut c_void {
    // SAFETY: a handle and a C string.
    let p = unsafe { D::sym(h, name.as_ptr()) };
    assert!(!p.is_null(), "{}: no {name:?}", D::LOADER.name());
    p
}

fn close<D: Dl>(h: *mut c_void) {
    // SAFETY: a handle from `open`.
    assert_eq!(unsafe { D::close(h) }, 0);
}

fn cases<D: Dl>(c: &mut Criterion) {
    let who = D::LOADER.name();
    let fx = Fixtures::for_loader(D::LOADER);
    let now = libc::RTLD_NOW | libc::RTLD_LOCAL;
    let lazy = libc::RTLD_LAZY | libc::RTLD_LOCAL;

    let tiny = fx.c_path("tiny");
    c.benchmark_group("open_close_tiny")
        .bench_function(who, |b| b.iter(|| close::<D>(open::<D>(&tiny, now))));

    let kept = open::<D>(&tiny, now);
    c.benchmark_group("reopen_refcount")
        .bench_function(who, |b| b.iter(|| close::<D>(open::<D>(&tiny, now))));
    c.benchmark_group("reopen_noload").bench_function(who, |b| {
        b.iter(|| close::<D>(open::<D>(&tiny, now | libc::RTLD_NOLOAD)))
    });
    close::<D>(kept);

    let many = open::<D>(&fx.c_path("many"), now);
    let hit = std::ffi::CString::new(many_symbol(5_000)).unwrap();
    let miss = c"many_absent";
    c.benchmark_group("dlsym_hit").bench_function(who, |b| {
        // SAFETY: a handle and C strings.
        b.iter(|| unsafe { D::sym(black_box(many), black_box(hit.as_ptr())) })
    });
    c.benchmark_group("dlsym_miss").bench_function(who, |b| {
        // SAFETY: as above.
        b.iter(|| unsafe { D::sym(black_box(many), black_box(miss.as_ptr())) })
    });
    c.benchmark_group("dlsym_default_hit")
        .bench_function(who, |b| {
            // SAFETY: as above.
            b.iter(|| unsafe { D::sym(libc::RTLD_DEFAULT, black_box(c"printf".as_ptr())) })
        });
    c.benchmark_group("dlsym_default_miss")
        .bench_function(who, |b| {
            // SAFETY: as above.
            b.iter(|| unsafe { D::sym(libc::RTLD_DEFAULT, black_box(miss.as_ptr())) })
        });
    c.benchmark_group("dlvsym_default")
        .bench_function(who, |b| {
            // SAFETY: as above.
            b.iter(|| unsafe {
                D::vsym(
                    libc::RTLD_DEFAULT,
                    black_box(c"memcpy".as_ptr()),
                    black_box(c"GLIBC_2.14".as_ptr()),
                )
            })
        });
    let inside = sym::<D>(many, &hit);
    c.benchmark_group("dladdr").bench_function(who, |b| {
        b.iter(|| {
            // SAFETY: Dl_info is plain data, written by `addr`.
            let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
            // SAFETY: an address and a writable Dl_info.
            let found = unsafe { D::addr(black_box(inside), &mut info) };
            assert!(found != 0 && info.dli_saddr == inside);
        })
    });
    close::<D>(many);

    // The dependency stays open, so each iteration maps and relocates one
    // object: 2,000 JUMP_SLOTs and 2,000 R_X86_64_64s against the dependency.
    let dep = open::<D>(&fx.c_path("relocdep"), now);
    let reloc = fx.c_path("reloc");
    c.benchmark_group("relocations_now")
        .bench_function(who, |b| b.iter(|| close::<D>(open::<D>(&reloc, now))));
    c.benchmark_group("relocations_lazy")
        .bench_function(who, |b| b.iter(|| close::<D>(open::<D>(&reloc, lazy))));
    close::<D>(dep);

    // Only the first call through the PLT slot is timed: the trampoline,
    // the lookup, the slot update. The caller is reloaded for each sample.
    let pltdep = open::<D>(&fx.c_path("pltdep"), now);
    let plt = fx.c_path("plt");
    c.benchmark_group("plt_first_call")
        .bench_function(who, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for i in 0..iters {
                    let h = open::<D>(&plt, lazy);
                    // SAFETY: plt_call is `int (int)`.
                    let f: extern "C" fn(c_int) -> c_int =
                        unsafe { std::mem::transmute(sym::<D>(h, c"plt_call")) };
                    let start = Instant::now();
                    let r = f(black_box(i as c_int));
                    total += start.elapsed();
                    assert_eq!(r, i as c_int + 1);
                    close::<D>(h);
                }
                total
            })
        });
    let h = open::<D>(&plt, lazy);
    // SAFETY: as above.
    let f: extern "C" fn(c_int) -> c_int = unsafe { std::mem::transmute(sym::<D>(h, c"plt_call")) };
    f(0);
    c.benchmark_group("plt_steady_call")
        .bench_function(who, |b| b.iter(|| f(black_box(7))));
    close::<D>(h);
    close::<D>(pltdep);

    let tls = open::<D>(&fx.c_path("tls"), now);
    // SAFETY: tls_bump is `long (void)`.
    let bump: extern "C" fn() -> i64 = unsafe { std::mem::transmute(sym::<D>(tls, c"tls_bump")) };
    c.benchmark_group("tls_get_addr")
        .bench_function(who, |b| b.iter(|| bump()));
    close::<D>(tls);
}

criterion_group! {
    name = glibc;
    config = config();
    targets = cases::<Glibc>
}
criterion_group! {
    name = dynload;
    config = config();
    targets = cases::<Dynload>
}
criterion_main!(glibc, dynload);
