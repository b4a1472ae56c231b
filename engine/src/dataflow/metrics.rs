//! Run counters shared by all tasks.
//!
//! Tasks count locally and add to these atomics at batch boundaries, so the
//! hot path never touches a shared cache line per record.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use hdrhistogram::Histogram;

/// Counters of one run.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Lines/records read from sources.
    pub read: AtomicU64,
    /// Records decoded with a valid event time.
    pub decoded: AtomicU64,
    /// Records that no consumer accepted because filters rejected them.
    pub filtered_out: AtomicU64,
    /// Records dropped as repeats of an id seen within the dedup span.
    pub duplicates: AtomicU64,
    /// Records that came after all their windows fired.
    pub late: AtomicU64,
    /// Late records no `.late` consumer took (dropped).
    pub late_dropped: AtomicU64,
    /// Records sent to an `.errors` output or the dead-letter file.
    pub errors: AtomicU64,
    /// Records sent to the dead-letter file.
    pub dead_letters: AtomicU64,
    /// Window result rows emitted.
    pub rows_emitted: AtomicU64,
    /// Kinesis shards by `source/shard`.
    pub shards: Mutex<BTreeMap<String, ShardMetrics>>,
    /// Kinesis calls retried after throttling.
    pub throttles: AtomicU64,
    /// End-to-end latency of window result rows, microseconds: from reading
    /// the input that fired them to writing them (sinks merge theirs in).
    pub latency: Mutex<Option<Histogram<u64>>>,
}

/// One Kinesis shard's progress.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardMetrics {
    /// Records read from the shard in this run.
    pub records: u64,
    /// MillisBehindLatest of the last GetRecords call.
    pub behind_ms: Option<i64>,
    /// Where the shard is.
    pub state: ShardStatus,
}

/// Where a shard's reading is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ShardStatus {
    /// Being read.
    #[default]
    Reading,
    /// Reached SHARD_END and every record was processed.
    Finished,
    /// Reached the source's stop time.
    Stopped,
}

impl ShardStatus {
    /// The word the summary and status line print.
    pub fn as_str(self) -> &'static str {
        match self {
            ShardStatus::Reading => "reading",
            ShardStatus::Finished => "finished",
            ShardStatus::Stopped => "stopped",
        }
    }
}

impl Metrics {
    /// Updates one shard's progress.
    pub fn set_shard(&self, key: String, shard: ShardMetrics) {
        if let Ok(mut shards) = self.shards.lock() {
            shards.insert(key, shard);
        }
    }

    /// Adds a sink's latency histogram.
    pub fn add_latency(&self, histogram: &Histogram<u64>) {
        if let Ok(mut latency) = self.latency.lock() {
            match latency.as_mut() {
                Some(total) => {
                    let _ = total.add(histogram);
                }
                None => *latency = Some(histogram.clone()),
            }
        }
    }

    /// `(p50, p99, max)` of the latency, in microseconds, if any row was
    /// measured.
    pub fn latency_summary(&self) -> Option<(u64, u64, u64)> {
        let latency = self.latency.lock().ok()?;
        let h = latency.as_ref().filter(|h| !h.is_empty())?;
        Some((h.value_at_quantile(0.5), h.value_at_quantile(0.99), h.max()))
    }

    /// Every shard's progress.
    pub fn shards(&self) -> BTreeMap<String, ShardMetrics> {
        self.shards.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// Per-task counts, added to [`Metrics`] in bulk.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LocalCounts {
    /// See [`Metrics::read`].
    pub read: u64,
    /// See [`Metrics::decoded`].
    pub decoded: u64,
    /// See [`Metrics::filtered_out`].
    pub filtered_out: u64,
    /// See [`Metrics::duplicates`].
    pub duplicates: u64,
    /// See [`Metrics::late`].
    pub late: u64,
    /// See [`Metrics::late_dropped`].
    pub late_dropped: u64,
    /// See [`Metrics::errors`].
    pub errors: u64,
    /// See [`Metrics::dead_letters`].
    pub dead_letters: u64,
    /// See [`Metrics::rows_emitted`].
    pub rows_emitted: u64,
}

impl LocalCounts {
    /// Adds the counts to `metrics` and resets them.
    pub fn publish(&mut self, metrics: &Metrics) {
        let pairs = [
            (&metrics.read, self.read),
            (&metrics.decoded, self.decoded),
            (&metrics.filtered_out, self.filtered_out),
            (&metrics.duplicates, self.duplicates),
            (&metrics.late, self.late),
            (&metrics.late_dropped, self.late_dropped),
            (&metrics.errors, self.errors),
            (&metrics.dead_letters, self.dead_letters),
            (&metrics.rows_emitted, self.rows_emitted),
        ];
        for (counter, n) in pairs {
            if n > 0 {
                counter.fetch_add(n, Ordering::Relaxed);
            }
        }
        *self = LocalCounts::default();
    }
}

/// A copy of the counters at one moment (the same fields as the per-task
/// counts).
pub type Snapshot = LocalCounts;

impl Metrics {
    /// Reads every counter.
    pub fn snapshot(&self) -> Snapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Snapshot {
            read: get(&self.read),
            decoded: get(&self.decoded),
            filtered_out: get(&self.filtered_out),
            duplicates: get(&self.duplicates),
            late: get(&self.late),
            late_dropped: get(&self.late_dropped),
            errors: get(&self.errors),
            dead_letters: get(&self.dead_letters),
            rows_emitted: get(&self.rows_emitted),
        }
    }
}

/// `1234567` -> `1,234,567`.
pub fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouping() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(1234567), "1,234,567");
    }
}
