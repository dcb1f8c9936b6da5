//! Every in-process case of the benches (`benches/common/cases.rs`, which
//! the criterion and paired benches share) runs under both loaders: its
//! routine does what it times (each asserts what it gets) and closes what
//! it opened, and a timed routine reports time.

#[path = "../benches/common/cases.rs"]
mod cases;
#[path = "../benches/common/dl.rs"]
mod dl;
use cases::{Case, Setup};
use dl::{Dl, Dynload, Glibc};
use dynload_bench::Loader;

struct Runs {
    glibc: Setup,
    dynload: Setup,
    ran: Vec<&'static str>,
}

impl Runs {
    fn run<C: Case>(&mut self) {
        fn one<C: Case, D: Dl>(setup: &Setup) {
            let mut routine = C::prepare::<D>(setup);
            let took = routine.run(3);
            assert!(
                took.as_nanos() > 0,
                "{}: {} took no time",
                C::GROUP,
                D::LOADER.name()
            );
        }
        one::<C, Glibc>(&self.glibc);
        one::<C, Dynload>(&self.dynload);
        self.ran.push(C::GROUP);
    }
}

#[test]
fn every_case_runs_under_both_loaders_and_closes_what_it_opened() {
    let mut runs = Runs {
        glibc: Setup::for_loader(Loader::Glibc),
        dynload: Setup::for_loader(Loader::Dynload),
        ran: Vec::new(),
    };
    each_case!(runs.run);
    assert_eq!(runs.ran.len(), 14, "{:?}", runs.ran);
    // Nothing the cases opened is still loaded: each fixture can be opened
    // with RTLD_NOLOAD by neither loader.
    for (setup, glibc) in [(&runs.glibc, true), (&runs.dynload, false)] {
        for name in ["tiny", "many", "reloc", "relocdep", "plt", "pltdep", "tls"] {
            let path = setup.fx.c_path(name);
            let mode = libc::RTLD_NOW | libc::RTLD_NOLOAD;
            // SAFETY: a C string; RTLD_NOLOAD loads nothing.
            let h = unsafe {
                if glibc {
                    Glibc::open(path.as_ptr(), mode)
                } else {
                    Dynload::open(path.as_ptr(), mode)
                }
            };
            assert!(h.is_null(), "{name} is still loaded (glibc: {glibc})");
        }
    }
}
