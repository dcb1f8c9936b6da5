//! Settings shared by the bench programs, so that their figures compare.

use std::time::Duration;

use criterion::Criterion;

/// Short runs (the suite has about 40 cases), many samples.
pub fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
}
