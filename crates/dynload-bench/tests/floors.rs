//! The paired bench's floors replay dynload's cycles: `system_calls.rs`
//! and `open_close_floor.rs` for `tiny`, `lazy_floor.rs` for `reloc` opened `RTLD_LAZY` (which also
//! binds every one of its R_X86_64_64 entries, checked when it is made).
//! Each must map its object as dynload does and take as many page faults,
//! or what the bench reports beside glibc's cycle is not dynload's floor.
//!
//! One test: page faults are counted for the whole process, so nothing
//! may run beside it.

// (The cases module is shared with the benches; this test uses `close`.)
#[allow(dead_code)]
#[path = "../benches/common/cases.rs"]
mod cases;
#[allow(dead_code)]
#[path = "../benches/common/dl.rs"]
mod dl;
#[path = "../benches/common/gnu_table.rs"]
mod gnu_table;
#[path = "../benches/common/lazy_floor.rs"]
mod lazy_floor;
#[path = "../benches/common/open_close_floor.rs"]
mod open_close_floor;
#[path = "../benches/common/replay.rs"]
mod replay;
#[path = "../benches/common/system_calls.rs"]
mod system_calls;

use dynload_bench::{Fixtures, Loader};
use lazy_floor::LazyFloor;
use open_close_floor::OpenCloseFloor;
use system_calls::SystemCallsAlone;

#[test]
fn the_floors_map_as_dynload_does_and_take_as_many_faults() {
    let fx = Fixtures::for_loader(Loader::Dynload);
    let tiny = fx.c_path("tiny");
    replay::check(&tiny, &SystemCallsAlone::new(&tiny), libc::RTLD_NOW);
    replay::check(&tiny, &OpenCloseFloor::new(&tiny), libc::RTLD_NOW);

    let (reloc, relocdep) = (fx.c_path("reloc"), fx.c_path("relocdep"));
    let floor = LazyFloor::new(&reloc, &relocdep);
    let dep = dl::open::<dl::Dynload>(&relocdep, libc::RTLD_NOW);
    replay::check(&reloc, &floor, libc::RTLD_LAZY);
    cases::close::<dl::Dynload>(dep);
}
