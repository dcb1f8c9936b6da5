//! glibc's loader and dynload side by side, one criterion group per case,
//! one function per loader, the two measured one after the other. `scripts/bench.py` runs this with the
//! `dlopen_rs` bench (a separate process: dlopen-rs adds its objects to
//! glibc's debugger list from a constructor, which would change what the
//! other two loaders see) and the `paired` bench, and reports the ratios.
//!
//! Both loaders are called through their C entry points with NUL-terminated
//! names, as a C program would (`dynload_bench::dl`). The cases are in
//! `common/cases.rs`, shared with the `paired` bench.

use criterion::{criterion_group, criterion_main, Bencher, Criterion};

mod common;
use common::config;
#[path = "common/cases.rs"]
mod cases;
#[path = "common/dl.rs"]
mod dl;
use cases::{Case, Setup};
use dl::{Dl, Dynload, Glibc};
use dynload_bench::Loader;

/// Each case for glibc and for dynload back to back, the first loader
/// alternating from case to case: this shared machine's speed drifts over
/// minutes, and a whole suite for one loader, then for the other, had put
/// minutes between the two figures of a ratio.
struct Pairs<'c> {
    c: &'c mut Criterion,
    glibc: Setup,
    dynload: Setup,
    glibc_first: bool,
}

impl Pairs<'_> {
    fn run<C: Case>(&mut self) {
        let mut group = self.c.benchmark_group(C::GROUP);
        let (glibc, dynload) = (&self.glibc, &self.dynload);
        let mut one = |loader: Loader| {
            match loader {
                Loader::Glibc => {
                    group.bench_function(loader.name(), |b| timed::<C, Glibc>(b, glibc))
                }
                _ => group.bench_function(loader.name(), |b| timed::<C, Dynload>(b, dynload)),
            };
        };
        if self.glibc_first {
            one(Loader::Glibc);
            one(Loader::Dynload);
        } else {
            one(Loader::Dynload);
            one(Loader::Glibc);
        }
        group.finish();
        self.glibc_first = !self.glibc_first;
    }
}

/// Case `C` under loader `D`, timed by criterion.
fn timed<C: Case, D: Dl>(b: &mut Bencher, setup: &Setup) {
    let mut routine = C::prepare::<D>(setup);
    b.iter_custom(|iters| routine.run(iters));
}

fn all_cases(c: &mut Criterion) {
    let mut pairs = Pairs {
        c,
        glibc: Setup::for_loader(Loader::Glibc),
        dynload: Setup::for_loader(Loader::Dynload),
        glibc_first: true,
    };
    each_case!(pairs.run);
}

criterion_group! {
    name = loader;
    config = config();
    targets = all_cases
}
criterion_main!(loader);
