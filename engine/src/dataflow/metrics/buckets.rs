//! Histograms as bucket counts: tasks count into a plain [`LocalBuckets`]
//! on the hot path and add it to the shared, atomic [`Buckets`] when they
//! publish their counters; the metrics endpoint reads the atomics.

use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds of record sizes, bytes (a Kinesis record is at most 1 MiB).
pub const SIZE_BOUNDS: &[u64] = &[
    64,
    256,
    1 << 10,
    4 << 10,
    16 << 10,
    64 << 10,
    256 << 10,
    1 << 20,
];

/// Upper bounds of call and commit durations, microseconds (1 ms to 30 s).
pub const DURATION_BOUNDS: &[u64] = &[
    1_000, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000, 30_000_000,
];

/// Upper bounds of end-to-end latencies, microseconds (1 ms to 10 min).
pub const LATENCY_BOUNDS: &[u64] = &[
    1_000,
    5_000,
    10_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    30_000_000,
    60_000_000,
    300_000_000,
    600_000_000,
];

/// Counts per bucket, not yet shared.
#[derive(Debug, Clone)]
pub struct LocalBuckets {
    bounds: &'static [u64],
    /// One per bound, plus the overflow bucket.
    counts: Vec<u64>,
    sum: u64,
}

impl LocalBuckets {
    /// Empty buckets with these upper bounds (ascending).
    pub fn new(bounds: &'static [u64]) -> LocalBuckets {
        LocalBuckets {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0,
        }
    }

    /// Counts one observation.
    #[inline]
    pub fn observe(&mut self, value: u64) {
        let i = self.bounds.partition_point(|b| *b < value);
        self.counts[i] += 1;
        self.sum = self.sum.saturating_add(value);
    }

    /// Adds the counts to `shared` and empties these.
    pub fn publish(&mut self, shared: &Buckets) {
        if self.sum == 0 && self.counts.iter().all(|c| *c == 0) {
            return;
        }
        for (total, n) in shared.counts.iter().zip(&mut self.counts) {
            if *n > 0 {
                total.fetch_add(*n, Ordering::Relaxed);
                *n = 0;
            }
        }
        shared.sum.fetch_add(self.sum, Ordering::Relaxed);
        self.sum = 0;
    }
}

/// Shared counts per bucket.
#[derive(Debug)]
pub struct Buckets {
    bounds: &'static [u64],
    counts: Vec<AtomicU64>,
    sum: AtomicU64,
}

/// A histogram read at one moment: `(upper bound, cumulative count)` per
/// bucket, the last bound `u64::MAX` (+Inf).
#[derive(Debug, Clone, PartialEq)]
pub struct BucketsSnapshot {
    /// Cumulative counts by upper bound.
    pub cumulative: Vec<(u64, u64)>,
    /// Sum of the observed values.
    pub sum: u64,
    /// Number of observations.
    pub count: u64,
}

impl Buckets {
    /// Empty buckets with these upper bounds (ascending).
    pub fn new(bounds: &'static [u64]) -> Buckets {
        Buckets {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
        }
    }

    /// Counts one observation directly (for rare events such as calls and
    /// commits).
    pub fn observe(&self, value: u64) {
        self.observe_n(value, 1);
    }

    /// Counts `n` observations of one value.
    pub fn observe_n(&self, value: u64, n: u64) {
        let i = self.bounds.partition_point(|b| *b < value);
        self.counts[i].fetch_add(n, Ordering::Relaxed);
        self.sum
            .fetch_add(value.saturating_mul(n), Ordering::Relaxed);
    }

    /// The cumulative counts.
    pub fn snapshot(&self) -> BucketsSnapshot {
        let mut total = 0;
        let mut cumulative = Vec::with_capacity(self.counts.len());
        for (i, count) in self.counts.iter().enumerate() {
            total += count.load(Ordering::Relaxed);
            cumulative.push((self.bounds.get(i).copied().unwrap_or(u64::MAX), total));
        }
        BucketsSnapshot {
            cumulative,
            sum: self.sum.load(Ordering::Relaxed),
            count: total,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let mut local = LocalBuckets::new(&[10, 100]);
        for v in [1, 10, 11, 100, 101, 5000] {
            local.observe(v);
        }
        let shared = Buckets::new(&[10, 100]);
        local.publish(&shared);
        local.publish(&shared);
        let s = shared.snapshot();
        assert_eq!(s.cumulative, vec![(10, 2), (100, 4), (u64::MAX, 6)]);
        assert_eq!(s.count, 6);
        assert_eq!(s.sum, 1 + 10 + 11 + 100 + 101 + 5000);
    }
}
