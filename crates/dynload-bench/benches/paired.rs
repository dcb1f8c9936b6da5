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
use cases::{Case, Routine, Setup};
use dl::{Dynload, Glibc};
use dynload_bench::Loader;

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
    fn run<C: Case>(&mut self) {
        if !self.only.is_empty() && !self.only.iter().any(|o| C::GROUP.contains(o.as_str())) {
            return;
        }
        let mut glibc = C::prepare::<Glibc>(&self.glibc);
        let mut dynload = C::prepare::<Dynload>(&self.dynload);
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
             \"ratio_q1\": {:.5}, \"ratio_q3\": {:.5}, \"pairs\": {pairs}, \"iters\": {iters}}}",
            C::GROUP,
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
}
