//! The `dlopen-rs` crate on the cases of the `loader` bench, under the same
//! group names (function `dlopen-rs`), in a process of its own: dlopen-rs
//! registers itself with glibc from a constructor, and that must not change
//! what glibc and dynload see in theirs.
//!
//! It goes through the crate's Rust API (it has no C entry points in the
//! library), so names are `&str`. Cases it cannot do are left out, and
//! `scripts/bench.py` reports them as such: `dlvsym_default` (versioned
//! lookups need the crate's `version` feature, off by default, and it has
//! no versioned RTLD_DEFAULT lookup).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};

mod common;
use common::config;
use dlopen_rs::{ElfLibrary, OpenFlags};
use dynload_bench::{many_symbol, Fixtures, Loader};

const WHO: &str = "dlopen-rs";

fn open(path: &std::path::Path, flags: OpenFlags) -> ElfLibrary {
    ElfLibrary::dlopen(path.to_str().expect("UTF-8 path"), flags)
        .unwrap_or_else(|e| panic!("dlopen-rs: cannot open {}: {e}", path.display()))
}

fn cases(c: &mut Criterion) {
    let fx = Fixtures::for_loader(Loader::DlopenRs);
    let now = OpenFlags::RTLD_NOW | OpenFlags::RTLD_LOCAL;
    let lazy = OpenFlags::RTLD_LAZY | OpenFlags::RTLD_LOCAL;

    let tiny = fx.path("tiny");
    c.benchmark_group("open_close_tiny")
        .bench_function(WHO, |b| b.iter(|| drop(open(&tiny, now))));
    let kept = open(&tiny, now);
    c.benchmark_group("reopen_refcount")
        .bench_function(WHO, |b| b.iter(|| drop(open(&tiny, now))));
    c.benchmark_group("reopen_noload").bench_function(WHO, |b| {
        b.iter(|| drop(open(&tiny, now | OpenFlags::RTLD_NOLOAD)))
    });
    drop(kept);

    let many = open(&fx.path("many"), now);
    let hit = many_symbol(5_000);
    c.benchmark_group("dlsym_hit").bench_function(WHO, |b| {
        // SAFETY: only the address is used.
        b.iter(|| unsafe { many.get::<*const ()>(black_box(&hit)) }.is_ok())
    });
    c.benchmark_group("dlsym_miss").bench_function(WHO, |b| {
        // SAFETY: as above.
        b.iter(|| unsafe { many.get::<*const ()>(black_box("many_absent")) }.is_err())
    });
    c.benchmark_group("dlsym_default_hit")
        .bench_function(WHO, |b| {
            b.iter(|| dlopen_rs::dlsym_default::<*const ()>(black_box("printf")).is_ok())
        });
    c.benchmark_group("dlsym_default_miss")
        .bench_function(WHO, |b| {
            b.iter(|| dlopen_rs::dlsym_default::<*const ()>(black_box("many_absent")).is_err())
        });
    // SAFETY: as above.
    let inside = unsafe { many.get::<()>(&hit) }.expect("hit").into_raw() as usize;
    c.benchmark_group("dladdr").bench_function(WHO, |b| {
        b.iter(|| {
            let info = ElfLibrary::dladdr(black_box(inside)).expect("dladdr");
            assert_eq!(info.symbol_addr(), Some(inside));
        })
    });
    drop(many);

    let dep = open(&fx.path("relocdep"), now);
    let reloc = fx.path("reloc");
    c.benchmark_group("relocations_now")
        .bench_function(WHO, |b| b.iter(|| drop(open(&reloc, now))));
    c.benchmark_group("relocations_lazy")
        .bench_function(WHO, |b| b.iter(|| drop(open(&reloc, lazy))));
    drop(dep);

    let pltdep = open(&fx.path("pltdep"), now);
    let plt = fx.path("plt");
    c.benchmark_group("plt_first_call")
        .bench_function(WHO, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for i in 0..iters {
                    let lib = open(&plt, lazy);
                    // SAFETY: plt_call is `int (int)`.
                    let f = unsafe { lib.get::<extern "C" fn(i32) -> i32>("plt_call") }
                        .expect("plt_call");
                    let start = Instant::now();
                    let r = f(black_box(i as i32));
                    total += start.elapsed();
                    assert_eq!(r, i as i32 + 1);
                }
                total
            })
        });
    let lib = open(&plt, lazy);
    // SAFETY: as above.
    let f = unsafe { lib.get::<extern "C" fn(i32) -> i32>("plt_call") }.expect("plt_call");
    f(0);
    c.benchmark_group("plt_steady_call")
        .bench_function(WHO, |b| b.iter(|| f(black_box(7))));
    drop(pltdep);

    let tls = open(&fx.path("tls"), now);
    // SAFETY: tls_bump is `long (void)`.
    let bump = unsafe { tls.get::<extern "C" fn() -> i64>("tls_bump") }.expect("tls_bump");
    c.benchmark_group("tls_get_addr")
        .bench_function(WHO, |b| b.iter(|| bump()));
}

criterion_group! {
    name = dlopen_rs;
    config = config();
    targets = cases
}
criterion_main!(dlopen_rs);
