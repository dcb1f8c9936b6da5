//! The in-process cases of the `loader` bench, timed as pairs of short
//! batches: a batch of glibc's iterations, then one of dynload's (or the
//! other way round, alternately), many times, each pair's ratio taken
//! from two figures measured within milliseconds of each other. This
//! shared machine's speed moves by half from minute to minute, and the
//! ratios of criterion's rounds, each loader measured for seconds on its
//! own, moved by up to 0.4 from round to round; a case's median paired
//! ratio moves by a few hundredths from process to process, except where
//! the process's layout or the machine's state changes the loaders
//! unequally (`reopen_refcount`: 0.83 in some processes, 1.0 to 1.1 in
//! others). `scripts/bench.py` runs this in three processes and takes the
//! median of their ratios.
//!
//! Prints one JSON object per case: the median time of an iteration for
//! each loader (ns), the median ratio dynload/glibc and its quartiles, and
//! how many pairs of how many iterations. `--quick`: a short run; other
//! arguments choose the cases whose names contain them.

use std::time::{Duration, Instant};

#[path = "common/cases.rs"]
mod cases;
#[path = "common/dl.rs"]
mod dl;
#[path = "common/gnu_table.rs"]
mod gnu_table;
#[path = "common/lazy_floor.rs"]
mod lazy_floor;
#[path = "common/open_close_floor.rs"]
mod open_close_floor;
#[path = "common/replay.rs"]
mod replay;
#[path = "common/system_calls.rs"]
mod system_calls;
use cases::{Case, Routine, Setup};
use dl::{Dynload, Glibc};
use dynload_bench::Loader;
use lazy_floor::LazyFloor;
use open_close_floor::OpenCloseFloor;
use replay::Cycle;
use system_calls::SystemCallsAlone;

/// How long each batch runs, at least.
const BATCH: Duration = Duration::from_millis(2);

struct Paired {
    glibc: Setup,
    dynload: Setup,
    /// How long each case's pairs run, at least.
    budget: Duration,
    min_pairs: usize,
    /// Run only the cases whose name contains one of these (all if none).
    only: Vec<String>,
}

impl Paired {
    fn chosen(&self, group: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| group.contains(o.as_str()))
    }

    fn run<C: Case>(&mut self) {
        if self.chosen(C::GROUP) {
            let glibc = C::prepare::<Glibc>(&self.glibc);
            let dynload = C::prepare::<Dynload>(&self.dynload);
            self.pair(C::GROUP, glibc, dynload, "");
        }
    }

    /// glibc's open+close of `tiny` against its system calls alone, as
    /// dynload makes them (see `system_calls.rs`): the part of glibc's
    /// time dynload's cycle cannot go under while it makes those calls.
    /// Reported as `dynload_ns`, with `"dynload": "system calls alone"`.
    fn open_close_system_calls(&mut self) {
        const GROUP: &str = "open_close_tiny_system_calls_alone";
        if self.chosen(GROUP) {
            let path = self.dynload.fx.c_path("tiny");
            let alone = SystemCallsAlone::new(&path);
            self.pair_tiny_replay(GROUP, &path, &alone, "system calls alone");
        }
    }

    /// glibc's open+close of `tiny` against the least any loader could
    /// take for it (see `open_close_floor.rs`): dynload's system calls and
    /// faults, and between them the headers read, the relocations applied
    /// and the initializers and finalizers run, with no records and no
    /// checks. Reported as `dynload_ns`, with `"dynload": "floor"`.
    fn open_close_floor(&mut self) {
        const GROUP: &str = "open_close_tiny_floor";
        if self.chosen(GROUP) {
            let path = self.dynload.fx.c_path("tiny");
            let floor = OpenCloseFloor::new(&path);
            self.pair_tiny_replay(GROUP, &path, &floor, "floor");
        }
    }

    /// Pair glibc's open+close of `tiny` (at `path`) with a replay of
    /// dynload's cycle of it, once the replay is checked against dynload's
    /// (see `replay.rs`); `label` names the replay in the case's line.
    fn pair_tiny_replay(&self, group: &str, path: &std::ffi::CStr, cycle: &dyn Cycle, label: &str) {
        let glibc = cases::OpenCloseTiny::prepare::<Glibc>(&self.glibc);
        replay::check(path, cycle, libc::RTLD_NOW);
        let cycles = Routine::timed(move || cycle.unmap(cycle.map()));
        self.pair(group, glibc, cycles, &format!(", \"dynload\": \"{label}\""));
    }

    /// glibc's `RTLD_LAZY` open+close of `reloc` against the least any
    /// loader could take for it (see `lazy_floor.rs`): dynload's system
    /// calls and faults, and the relocation work with no checks.
    /// Reported as `dynload_ns`, with `"dynload": "floor"`.
    fn relocations_lazy_floor(&mut self) {
        const GROUP: &str = "relocations_lazy_floor";
        if !self.chosen(GROUP) {
            return;
        }
        let (path, dependency) = (
            self.dynload.fx.c_path("reloc"),
            self.dynload.fx.c_path("relocdep"),
        );
        let floor = LazyFloor::new(&path, &dependency);
        let glibc = cases::RelocationsLazy::prepare::<Glibc>(&self.glibc);
        // dynload's cycle binds to its own copy of the dependency.
        let dep = dl::open::<Dynload>(&dependency, libc::RTLD_NOW);
        replay::check(&path, &floor, libc::RTLD_LAZY);
        cases::close::<Dynload>(dep);
        let cycles = Routine::timed(move || floor.unmap(floor.map()));
        self.pair(GROUP, glibc, cycles, ", \"dynload\": \"floor\"");
    }

    /// Time `glibc` and `dynload` in pairs of batches and print the case's
    /// line, with `extra` (JSON members) at its end.
    fn pair(&self, group: &str, mut glibc: Routine, mut dynload: Routine, extra: &str) {
        // Warm both, then find how many iterations make a batch of BATCH
        // for glibc (by the clock: some routines time only part of their
        // iterations).
        let wall = |r: &mut Routine, iters| {
            let start = Instant::now();
            let timed = r.run(iters);
            (start.elapsed(), timed)
        };
        wall(&mut glibc, 3);
        wall(&mut dynload, 3);
        let mut iters = 1;
        while iters < 1 << 24 && wall(&mut glibc, iters).0 < BATCH {
            iters *= 2;
        }
        let per_iter = |d: Duration| d.as_nanos() as f64 / iters as f64;
        let (mut g, mut d, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        let start = Instant::now();
        while start.elapsed() < self.budget || ratios.len() < self.min_pairs {
            let (tg, td) = if ratios.len() % 2 == 0 {
                let tg = glibc.run(iters);
                (tg, dynload.run(iters))
            } else {
                let td = dynload.run(iters);
                (glibc.run(iters), td)
            };
            g.push(per_iter(tg));
            d.push(per_iter(td));
            ratios.push(td.as_secs_f64() / tg.as_secs_f64());
        }
        drop(dynload);
        drop(glibc);
        let pairs = ratios.len();
        let (g, d) = (median(&mut g), median(&mut d));
        ratios.sort_by(f64::total_cmp);
        let quartile = |q: usize| ratios[(pairs - 1) * q / 4];
        println!(
            "{{\"case\": \"{}\", \"glibc_ns\": {g:.3}, \"dynload_ns\": {d:.3}, \"ratio\": {:.5}, \
             \"ratio_q1\": {:.5}, \"ratio_q3\": {:.5}, \"pairs\": {pairs}, \"iters\": {iters}{extra}}}",
            group,
            quartile(2),
            quartile(1),
            quartile(3),
        );
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let mut paired = Paired {
        glibc: Setup::for_loader(Loader::Glibc),
        dynload: Setup::for_loader(Loader::Dynload),
        budget: Duration::from_millis(if quick { 200 } else { 3000 }),
        min_pairs: if quick { 10 } else { 200 },
        only: args.into_iter().filter(|a| !a.starts_with("--")).collect(),
    };
    each_case!(paired.run);
    paired.open_close_system_calls();
    paired.open_close_floor();
    paired.relocations_lazy_floor();
}
