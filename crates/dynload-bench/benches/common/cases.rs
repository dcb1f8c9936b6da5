//! The in-process cases, written once for both loaders and for both ways
//! of timing them: criterion (`loader` bench) and paired batches (`paired`
//! bench). Each case prepares a [`Routine`] per loader: what it opens
//! stays open while the routine lives, and the routine times a number of
//! iterations of the operation measured.

use std::ffi::{c_int, c_void, CStr, CString};
use std::hint::black_box;
use std::time::{Duration, Instant};

use crate::dl::{open, Dl};
use dynload_bench::{many_symbol, Fixtures, Loader};

fn sym<D: Dl>(h: *mut c_void, name: &CStr) -> *mut c_void {
    // SAFETY: a handle and a C string.
    let p = unsafe { D::sym(h, name.as_ptr()) };
    assert!(!p.is_null(), "{}: no {name:?}", D::LOADER.name());
    p
}

pub fn close<D: Dl>(h: *mut c_void) {
    // SAFETY: a handle from `open`.
    assert_eq!(unsafe { D::close(h) }, 0);
}

/// One loader's copies of the fixtures, and the name the hits look up.
pub struct Setup {
    pub fx: Fixtures,
    pub hit: CString,
}

impl Setup {
    pub fn for_loader(loader: Loader) -> Setup {
        Setup {
            fx: Fixtures::for_loader(loader),
            hit: CString::new(many_symbol(5_000)).unwrap(),
        }
    }
}

const NOW: c_int = libc::RTLD_NOW | libc::RTLD_LOCAL;
const LAZY: c_int = libc::RTLD_LAZY | libc::RTLD_LOCAL;
const MISS: &CStr = c"many_absent";

/// A case's timed work for one loader: `run(iters)` does `iters`
/// iterations and returns the time they took; the handles the case opened
/// around it are closed when the routine is dropped.
pub struct Routine<'s> {
    run: Box<dyn FnMut(u64) -> Duration + 's>,
    handles: Vec<*mut c_void>,
    close: fn(*mut c_void),
}

impl<'s> Routine<'s> {
    /// `iters` iterations, timed.
    pub fn run(&mut self, iters: u64) -> Duration {
        (self.run)(iters)
    }

    /// A routine that times `iters` calls of `f`, with `handles` (opened by
    /// `D`) kept open while it lives.
    fn timing<D: Dl, O>(handles: Vec<*mut c_void>, mut f: impl FnMut() -> O + 's) -> Routine<'s> {
        Routine::custom::<D>(handles, calls_timed(move || drop(black_box(f()))))
    }

    /// A routine that times `iters` calls of `f`, which no loader makes
    /// (it keeps no handles).
    #[allow(dead_code)] // (The `loader` bench has no such case.)
    pub fn timed(f: impl FnMut() + 's) -> Routine<'s> {
        Routine {
            run: Box::new(calls_timed(f)),
            handles: vec![],
            close: |_| unreachable!("no handles"),
        }
    }

    /// A routine that times itself (`run` returns the time of what it
    /// measures).
    fn custom<D: Dl>(
        handles: Vec<*mut c_void>,
        run: impl FnMut(u64) -> Duration + 's,
    ) -> Routine<'s> {
        Routine {
            run: Box::new(run),
            handles,
            close: close::<D>,
        }
    }
}

/// A `run` that times `iters` calls of `f`.
fn calls_timed(mut f: impl FnMut()) -> impl FnMut(u64) -> Duration {
    move |iters| {
        let start = Instant::now();
        for _ in 0..iters {
            f();
        }
        start.elapsed()
    }
}

impl Drop for Routine<'_> {
    fn drop(&mut self) {
        // (The last opened first.)
        for &h in self.handles.iter().rev() {
            (self.close)(h);
        }
    }
}

/// One case: its group name, and its routine for loader `D`.
pub trait Case {
    const GROUP: &'static str;
    fn prepare<'s, D: Dl>(s: &'s Setup) -> Routine<'s>;
}

/// Declares a case: `case!(Type, "group", |s, D| routine)`.
macro_rules! case {
    ($name:ident, $group:literal, |$s:ident, $d:ident| $body:block) => {
        pub struct $name;
        impl Case for $name {
            const GROUP: &'static str = $group;
            fn prepare<'s, $d: Dl>($s: &'s Setup) -> Routine<'s> $body
        }
    };
}

case!(OpenCloseTiny, "open_close_tiny", |s, D| {
    let tiny = s.fx.c_path("tiny");
    Routine::timing::<D, _>(vec![], move || close::<D>(open::<D>(&tiny, NOW)))
});

case!(ReopenRefcount, "reopen_refcount", |s, D| {
    let tiny = s.fx.c_path("tiny");
    let kept = open::<D>(&tiny, NOW);
    Routine::timing::<D, _>(vec![kept], move || close::<D>(open::<D>(&tiny, NOW)))
});

case!(ReopenNoload, "reopen_noload", |s, D| {
    let tiny = s.fx.c_path("tiny");
    let kept = open::<D>(&tiny, NOW);
    Routine::timing::<D, _>(vec![kept], move || {
        close::<D>(open::<D>(&tiny, NOW | libc::RTLD_NOLOAD))
    })
});

/// `many`, opened by `D`.
fn many<D: Dl>(s: &Setup) -> *mut c_void {
    open::<D>(&s.fx.c_path("many"), NOW)
}

case!(DlsymHit, "dlsym_hit", |s, D| {
    let many = many::<D>(s);
    // SAFETY: a handle and C strings.
    Routine::timing::<D, _>(vec![many], move || unsafe {
        D::sym(black_box(many), black_box(s.hit.as_ptr()))
    })
});

case!(DlsymMiss, "dlsym_miss", |s, D| {
    let many = many::<D>(s);
    // SAFETY: as above.
    Routine::timing::<D, _>(vec![many], move || unsafe {
        D::sym(black_box(many), black_box(MISS.as_ptr()))
    })
});

case!(DlsymDefaultHit, "dlsym_default_hit", |_s, D| {
    // SAFETY: as above.
    Routine::timing::<D, _>(vec![], || unsafe {
        D::sym(libc::RTLD_DEFAULT, black_box(c"printf".as_ptr()))
    })
});

case!(DlsymDefaultMiss, "dlsym_default_miss", |_s, D| {
    // SAFETY: as above.
    Routine::timing::<D, _>(vec![], || unsafe {
        D::sym(libc::RTLD_DEFAULT, black_box(MISS.as_ptr()))
    })
});

case!(DlvsymDefault, "dlvsym_default", |_s, D| {
    Routine::timing::<D, _>(vec![], || {
        // SAFETY: as above.
        unsafe {
            D::vsym(
                libc::RTLD_DEFAULT,
                black_box(c"memcpy".as_ptr()),
                black_box(c"GLIBC_2.14".as_ptr()),
            )
        }
    })
});

case!(Dladdr, "dladdr", |s, D| {
    let many = many::<D>(s);
    let inside = sym::<D>(many, &s.hit);
    Routine::timing::<D, _>(vec![many], move || {
        // SAFETY: Dl_info is plain data, written by `addr`.
        let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
        // SAFETY: an address and a writable Dl_info.
        let found = unsafe { D::addr(black_box(inside), &mut info) };
        assert!(found != 0 && info.dli_saddr == inside);
    })
});

/// The dependency stays open, so each iteration maps and relocates one
/// object: 2,000 JUMP_SLOTs and 2,000 R_X86_64_64s against the dependency.
fn relocations<D: Dl>(s: &Setup, mode: c_int) -> Routine<'_> {
    let dep = open::<D>(&s.fx.c_path("relocdep"), NOW);
    let reloc = s.fx.c_path("reloc");
    Routine::timing::<D, _>(vec![dep], move || close::<D>(open::<D>(&reloc, mode)))
}

case!(RelocationsNow, "relocations_now", |s, D| {
    relocations::<D>(s, NOW)
});

case!(RelocationsLazy, "relocations_lazy", |s, D| {
    relocations::<D>(s, LAZY)
});

case!(PltFirstCall, "plt_first_call", |s, D| {
    // Only the first call through the PLT slot is timed: the trampoline,
    // the lookup, the slot update. The caller is reloaded for each sample.
    let pltdep = open::<D>(&s.fx.c_path("pltdep"), NOW);
    let plt = s.fx.c_path("plt");
    Routine::custom::<D>(vec![pltdep], move |iters| {
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
    })
});

case!(PltSteadyCall, "plt_steady_call", |s, D| {
    let pltdep = open::<D>(&s.fx.c_path("pltdep"), NOW);
    let h = open::<D>(&s.fx.c_path("plt"), LAZY);
    // SAFETY: as above.
    let f: extern "C" fn(c_int) -> c_int = unsafe { std::mem::transmute(sym::<D>(h, c"plt_call")) };
    f(0);
    Routine::timing::<D, _>(vec![pltdep, h], move || f(black_box(7)))
});

case!(TlsGetAddr, "tls_get_addr", |s, D| {
    let tls = open::<D>(&s.fx.c_path("tls"), NOW);
    // SAFETY: tls_bump is `long (void)`.
    let bump: extern "C" fn() -> i64 = unsafe { std::mem::transmute(sym::<D>(tls, c"tls_bump")) };
    Routine::timing::<D, _>(vec![tls], move || bump())
});

/// Every case, in the order the benches run them: `each_case!(x.f)` calls
/// `x.f::<Case>()` for each.
#[macro_export]
macro_rules! each_case {
    ($($f:tt)+) => {
        $($f)+::<cases::OpenCloseTiny>();
        $($f)+::<cases::ReopenRefcount>();
        $($f)+::<cases::ReopenNoload>();
        $($f)+::<cases::DlsymHit>();
        $($f)+::<cases::DlsymMiss>();
        $($f)+::<cases::DlsymDefaultHit>();
        $($f)+::<cases::DlsymDefaultMiss>();
        $($f)+::<cases::DlvsymDefault>();
        $($f)+::<cases::Dladdr>();
        $($f)+::<cases::RelocationsNow>();
        $($f)+::<cases::RelocationsLazy>();
        $($f)+::<cases::PltFirstCall>();
        $($f)+::<cases::PltSteadyCall>();
        $($f)+::<cases::TlsGetAddr>();
    };
}
