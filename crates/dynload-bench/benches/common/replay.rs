//! The check the paired bench makes before it times a replay of
//! dynload's cycle (`system_calls.rs`, `lazy_floor.rs`,
//! `open_close_floor.rs`): the replay maps
//! the object as dynload does and takes as many page faults. (The
//! bench's tests make it too.)

use crate::cases;
use crate::dl::{self, Dynload};
use crate::lazy_floor::LazyFloor;
use crate::open_close_floor::OpenCloseFloor;
use crate::system_calls::SystemCallsAlone;

/// A replay of dynload's cycle of one object, with no loader code
/// around its system calls (`system_calls.rs`, `lazy_floor.rs`,
/// `open_close_floor.rs`): map the object as dynload does, and unmap it.
pub trait Cycle {
    fn map(&self) -> *mut u8;
    fn unmap(&self, base: *mut u8);
}

impl Cycle for SystemCallsAlone {
    fn map(&self) -> *mut u8 {
        SystemCallsAlone::map(self)
    }
    fn unmap(&self, base: *mut u8) {
        SystemCallsAlone::unmap(self, base)
    }
}

impl Cycle for OpenCloseFloor {
    fn map(&self) -> *mut u8 {
        OpenCloseFloor::map(self)
    }
    fn unmap(&self, base: *mut u8) {
        OpenCloseFloor::unmap(self, base)
    }
}

impl Cycle for LazyFloor {
    fn map(&self) -> *mut u8 {
        LazyFloor::map(self)
    }
    fn unmap(&self, base: *mut u8) {
        LazyFloor::unmap(self, base)
    }
}

/// Check that `cycle` makes the mappings dynload makes for the file at
/// `path` (opened with `mode`) and as many faults a cycle, populated pages
/// included.
pub fn check(path: &std::ffi::CStr, cycle: &dyn Cycle, mode: std::ffi::c_int) {
    let file = path.to_str().expect("a UTF-8 path");
    let base = cycle.map();
    let replayed = testkit::layout_of(file);
    cycle.unmap(base);
    let h = dl::open::<Dynload>(path, mode);
    let dynloads = testkit::layout_of(file);
    cases::close::<Dynload>(h);
    assert_eq!(
        replayed, dynloads,
        "the replay does not map {file} as dynload does"
    );
    let faults = |run: &mut dyn FnMut()| {
        run();
        let before = SystemCallsAlone::faults();
        for _ in 0..100 {
            run();
        }
        (SystemCallsAlone::faults() - before) as f64 / 100.0
    };
    let (replayed_faults, dynload_faults) = (
        faults(&mut || cycle.unmap(cycle.map())),
        faults(&mut || cases::close::<Dynload>(dl::open::<Dynload>(path, mode))),
    );
    assert!(
        (replayed_faults - dynload_faults).abs() < 0.5,
        "the replay of {file} takes {replayed_faults} faults a cycle, dynload {dynload_faults}"
    );
}
