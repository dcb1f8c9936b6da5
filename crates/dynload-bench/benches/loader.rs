//! glibc's loader and dynload side by side, one criterion group per case,
//! one function per loader, the two measured one after the other. `scripts/bench.py` runs this with the
//! `dlopen_rs` bench (a separate process: dlopen-rs adds its objects to
//! glibc's debugger list from a constructor, which would change what the
//! other two loaders see) and reports the ratios.
//!
//! Both loaders are called through their C entry points with NUL-terminated
//! names, as a C program would (`dynload_bench::dl`).

use std::ffi::{c_int, c_void, CStr};
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Bencher, Criterion};

mod common;
use common::config;
#[path = "common/dl.rs"]
mod dl;
use dl::{open, Dl, Dynload, Glibc};
use dynload_bench::{many_symbol, Fixtures, Loader};

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

/// One loader's copies of the fixtures, and the name the hits look up.
struct Setup {
    fx: Fixtures,
    hit: std::ffi::CString,
}

const NOW: c_int = libc::RTLD_NOW | libc::RTLD_LOCAL;
const LAZY: c_int = libc::RTLD_LAZY | libc::RTLD_LOCAL;
const MISS: &CStr = c"many_absent";

/// One case, written once for both loaders: what it opens around the timed
/// part and what it times.
trait Case {
    const GROUP: &'static str;
    fn bench<D: Dl>(b: &mut Bencher, s: &Setup);
}

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
                    group.bench_function(loader.name(), |b| C::bench::<Glibc>(b, glibc))
                }
                _ => group.bench_function(loader.name(), |b| C::bench::<Dynload>(b, dynload)),
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

/// Declares a case: `case!(Type, "group", |b, s, D| body)`.
macro_rules! case {
    ($name:ident, $group:literal, |$b:ident, $s:ident, $d:ident| $body:block) => {
        struct $name;
        impl Case for $name {
            const GROUP: &'static str = $group;
            fn bench<$d: Dl>($b: &mut Bencher, $s: &Setup) $body
        }
    };
}

case!(OpenCloseTiny, "open_close_tiny", |b, s, D| {
    let tiny = s.fx.c_path("tiny");
    b.iter(|| close::<D>(open::<D>(&tiny, NOW)));
});

case!(ReopenRefcount, "reopen_refcount", |b, s, D| {
    let tiny = s.fx.c_path("tiny");
    let kept = open::<D>(&tiny, NOW);
    b.iter(|| close::<D>(open::<D>(&tiny, NOW)));
    close::<D>(kept);
});

case!(ReopenNoload, "reopen_noload", |b, s, D| {
    let tiny = s.fx.c_path("tiny");
    let kept = open::<D>(&tiny, NOW);
    b.iter(|| close::<D>(open::<D>(&tiny, NOW | libc::RTLD_NOLOAD)));
    close::<D>(kept);
});

/// `many` open around `f`.
fn with_many<D: Dl>(s: &Setup, f: impl FnOnce(*mut c_void)) {
    let many = open::<D>(&s.fx.c_path("many"), NOW);
    f(many);
    close::<D>(many);
}

case!(DlsymHit, "dlsym_hit", |b, s, D| {
    with_many::<D>(s, |many| {
        // SAFETY: a handle and C strings.
        b.iter(|| unsafe { D::sym(black_box(many), black_box(s.hit.as_ptr())) })
    });
});

case!(DlsymMiss, "dlsym_miss", |b, s, D| {
    with_many::<D>(s, |many| {
        // SAFETY: as above.
        b.iter(|| unsafe { D::sym(black_box(many), black_box(MISS.as_ptr())) })
    });
});

case!(DlsymDefaultHit, "dlsym_default_hit", |b, _s, D| {
    // SAFETY: as above.
    b.iter(|| unsafe { D::sym(libc::RTLD_DEFAULT, black_box(c"printf".as_ptr())) });
});

case!(DlsymDefaultMiss, "dlsym_default_miss", |b, _s, D| {
    // SAFETY: as above.
    b.iter(|| unsafe { D::sym(libc::RTLD_DEFAULT, black_box(MISS.as_ptr())) });
});

case!(DlvsymDefault, "dlvsym_default", |b, _s, D| {
    b.iter(|| {
        // SAFETY: as above.
        unsafe {
            D::vsym(
                libc::RTLD_DEFAULT,
                black_box(c"memcpy".as_ptr()),
                black_box(c"GLIBC_2.14".as_ptr()),
            )
        }
    });
});

case!(Dladdr, "dladdr", |b, s, D| {
    with_many::<D>(s, |many| {
        let inside = sym::<D>(many, &s.hit);
        b.iter(|| {
            // SAFETY: Dl_info is plain data, written by `addr`.
            let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
            // SAFETY: an address and a writable Dl_info.
            let found = unsafe { D::addr(black_box(inside), &mut info) };
            assert!(found != 0 && info.dli_saddr == inside);
        })
    });
});

/// The dependency stays open, so each iteration maps and relocates one
/// object: 2,000 JUMP_SLOTs and 2,000 R_X86_64_64s against the dependency.
fn relocations<D: Dl>(b: &mut Bencher, s: &Setup, mode: c_int) {
    let dep = open::<D>(&s.fx.c_path("relocdep"), NOW);
    let reloc = s.fx.c_path("reloc");
    b.iter(|| close::<D>(open::<D>(&reloc, mode)));
    close::<D>(dep);
}

case!(RelocationsNow, "relocations_now", |b, s, D| {
    relocations::<D>(b, s, NOW);
});

case!(RelocationsLazy, "relocations_lazy", |b, s, D| {
    relocations::<D>(b, s, LAZY);
});

case!(PltFirstCall, "plt_first_call", |b, s, D| {
    // Only the first call through the PLT slot is timed: the trampoline,
    // the lookup, the slot update. The caller is reloaded for each sample.
    let pltdep = open::<D>(&s.fx.c_path("pltdep"), NOW);
    let plt = s.fx.c_path("plt");
    b.iter_custom(|iters| {
        let mut total = Duration::ZERO;
        for i in 0..iters {
            let h = open::<D>(&plt, LAZY);
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
    });
    close::<D>(pltdep);
});

case!(PltSteadyCall, "plt_steady_call", |b, s, D| {
    let pltdep = open::<D>(&s.fx.c_path("pltdep"), NOW);
    let h = open::<D>(&s.fx.c_path("plt"), LAZY);
    // SAFETY: as above.
    let f: extern "C" fn(c_int) -> c_int = unsafe { std::mem::transmute(sym::<D>(h, c"plt_call")) };
    f(0);
    b.iter(|| f(black_box(7)));
    close::<D>(h);
    close::<D>(pltdep);
});

case!(TlsGetAddr, "tls_get_addr", |b, s, D| {
    let tls = open::<D>(&s.fx.c_path("tls"), NOW);
    // SAFETY: tls_bump is `long (void)`.
    let bump: extern "C" fn() -> i64 = unsafe { std::mem::transmute(sym::<D>(tls, c"tls_bump")) };
    b.iter(|| bump());
    close::<D>(tls);
});

fn cases(c: &mut Criterion) {
    let setup = |loader| Setup {
        fx: Fixtures::for_loader(loader),
        hit: std::ffi::CString::new(many_symbol(5_000)).unwrap(),
    };
    let mut pairs = Pairs {
        c,
        glibc: setup(Loader::Glibc),
        dynload: setup(Loader::Dynload),
        glibc_first: true,
    };
    pairs.run::<OpenCloseTiny>();
    pairs.run::<ReopenRefcount>();
    pairs.run::<ReopenNoload>();
    pairs.run::<DlsymHit>();
    pairs.run::<DlsymMiss>();
    pairs.run::<DlsymDefaultHit>();
    pairs.run::<DlsymDefaultMiss>();
    pairs.run::<DlvsymDefault>();
    pairs.run::<Dladdr>();
    pairs.run::<RelocationsNow>();
    pairs.run::<RelocationsLazy>();
    pairs.run::<PltFirstCall>();
    pairs.run::<PltSteadyCall>();
    pairs.run::<TlsGetAddr>();
}

criterion_group! {
    name = loader;
    config = config();
    targets = cases
}
criterion_main!(loader);
