//! The check the paired bench makes before it times a replay of
//! dynload's cycle (`system_calls.rs`, `lazy_floor.rs`): the replay maps
//! the object as dynload does and takes as many page faults. (The
//! bench's tests make it too.)

use crate::cases;
use crate::dl::{self, Dynload};
use crate::system_calls::SystemCallsAlone;

/// A replay of dynload's cycle of one object, with no loader code
/// around its system calls (`system_calls.rs`, `lazy_floor.rs`).
pub struct Replay<'r> {
    pub path: &'r std::ffi::CStr,
    pub map: &'r dyn Fn() -> *mut u8,
    pub unmap: &'r dyn Fn(*mut u8),
}

impl Replay<'_> {
    /// Check that the replay makes the mappings dynload makes for the
    /// same file (opened with `mode`) and as many faults a cycle,
    /// populated pages included.
    pub fn check(&self, mode: std::ffi::c_int) {
        let file = self.path.to_str().expect("a UTF-8 path");
        let base = (self.map)();
        let replayed = testkit::layout_of(file);
        (self.unmap)(base);
        let h = dl::open::<Dynload>(self.path, mode);
        let dynloads = testkit::layout_of(file);
        cases::close::<Dynload>(h);
        assert_eq!(
            replayed, dynloads,
            "the replay does not map {file} as dynload does"
        );
        let faults = |cycle: &mut dyn FnMut()| {
            cycle();
            let before = SystemCallsAlone::faults();
            for _ in 0..100 {
                cycle();
            }
            (SystemCallsAlone::faults() - before) as f64 / 100.0
        };
        let (replayed_faults, dynload_faults) = (
            faults(&mut || (self.unmap)((self.map)())),
            faults(&mut || cases::close::<Dynload>(dl::open::<Dynload>(self.path, mode))),
        );
        assert!(
            (replayed_faults - dynload_faults).abs() < 0.5,
            "the replay of {file} takes {replayed_faults} faults a cycle, dynload {dynload_faults}"
        );
    }
}
