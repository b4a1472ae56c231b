//! Run metrics shared by all tasks, read by the summary, the status line
//! and the metrics endpoint.
//!
//! Tasks count locally ([`LocalCounts`], [`buckets::LocalBuckets`]) and add
//! to shared atomics at batch boundaries, so the hot path never touches a
//! shared cache line per record. Each task also owns one record in
//! [`parts`] (its source, shard, window partition or sink), registered in
//! [`Metrics`] when the task starts, which carries its labels.

pub mod buckets;
pub mod parts;
pub mod sketch;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hdrhistogram::Histogram;

pub use parts::{
    CheckpointMetrics, InputMetrics, NodeMetrics, ShardMetrics, ShardStatus, SinkMetrics,
    SourceMetrics,
};

/// Counters of one run.
#[derive(Debug, Default)]
pub struct Metrics {
    /// The job's totals over every task.
    pub totals: Counters,
    /// One record per source task.
    pub sources: Registry<SourceMetrics>,
    /// One record per window partition task.
    pub nodes: Registry<NodeMetrics>,
    /// One record per sink task.
    pub sinks: Registry<SinkMetrics>,
    /// The run's checkpoints.
    pub checkpoints: CheckpointMetrics,
    /// End-to-end latency of window result rows, microseconds: from reading
    /// the input that fired them to writing them (sinks merge theirs in).
    pub latency: Mutex<Option<Histogram<u64>>>,
    /// Kinesis read delay, milliseconds: from a record's
    /// ApproximateArrivalTimestamp to kflow receiving it (Kinesis sources
    /// merge theirs in).
    pub read_delay: Mutex<Option<Histogram<u64>>>,
    /// A graceful stop began: the job is no longer ready.
    pub stopping: AtomicBool,
}

/// Records of one kind of task, in registration order.
#[derive(Debug)]
pub struct Registry<T>(Mutex<Vec<Arc<T>>>);

impl<T> Default for Registry<T> {
    fn default() -> Registry<T> {
        Registry(Mutex::new(Vec::new()))
    }
}

impl<T> Registry<T> {
    /// Adds a task's record and returns the handle it updates.
    pub fn add(&self, record: T) -> Arc<T> {
        let record = Arc::new(record);
        if let Ok(mut all) = self.0.lock() {
            all.push(record.clone());
        }
        record
    }

    /// Every record.
    pub fn all(&self) -> Vec<Arc<T>> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

/// Shared record counters, one set per task and one for the job.
#[derive(Debug, Default)]
pub struct Counters {
    /// Records read from sources.
    pub read: AtomicU64,
    /// Bytes read from sources.
    pub bytes: AtomicU64,
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
}

impl Counters {
    fn pairs(&self) -> [&AtomicU64; 10] {
        [
            &self.read,
            &self.bytes,
            &self.decoded,
            &self.filtered_out,
            &self.duplicates,
            &self.late,
            &self.late_dropped,
            &self.errors,
            &self.dead_letters,
            &self.rows_emitted,
        ]
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> Snapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Snapshot {
            read: get(&self.read),
            bytes: get(&self.bytes),
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

impl Metrics {
    /// Adds a sink's latency histogram.
    pub fn add_latency(&self, histogram: &Histogram<u64>) {
        merge(&self.latency, histogram);
    }

    /// `(p50, p99, max)` of the latency, in microseconds, if any row was
    /// measured.
    pub fn latency_summary(&self) -> Option<(u64, u64, u64)> {
        summarize(&self.latency)
    }

    /// Adds a Kinesis source's read delays (milliseconds).
    pub fn add_read_delay(&self, histogram: &Histogram<u64>) {
        merge(&self.read_delay, histogram);
    }

    /// `(p50, p99, max)` of the Kinesis read delay, in milliseconds, if any
    /// record was read.
    pub fn read_delay_summary(&self) -> Option<(u64, u64, u64)> {
        summarize(&self.read_delay)
    }

    /// Every Kinesis shard's progress, by `source/shard`.
    pub fn shards(&self) -> BTreeMap<String, ShardMetrics> {
        let mut all = BTreeMap::new();
        for source in self.sources.all() {
            for (id, shard) in source.shards() {
                all.insert(format!("{}/{id}", source.name), shard);
            }
        }
        all
    }

    /// Kinesis calls retried after throttling, over every source and sink.
    pub fn throttles(&self) -> u64 {
        let sources: u64 = self
            .sources
            .all()
            .iter()
            .map(|s| s.throttles.load(Ordering::Relaxed))
            .sum();
        let sinks: u64 = self
            .sinks
            .all()
            .iter()
            .map(|s| s.throttles.load(Ordering::Relaxed))
            .sum();
        sources + sinks
    }

    /// How the Kinesis sources read, summed over them.
    pub fn kinesis_reads(&self) -> KinesisReads {
        let mut reads = KinesisReads::default();
        for s in self.sources.all().iter().filter(|s| s.kind == "kinesis") {
            reads.get_records += s.calls.snapshot().count;
            reads.subscriptions += s.subscriptions.load(Ordering::Relaxed);
            reads.subscription_failures += s.subscription_failures.load(Ordering::Relaxed);
        }
        reads
    }

    /// Reads the job's totals.
    pub fn snapshot(&self) -> Snapshot {
        self.totals.snapshot()
    }
}

/// Per-task counts, added to [`Counters`] in bulk.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LocalCounts {
    /// See [`Counters::read`].
    pub read: u64,
    /// See [`Counters::bytes`].
    pub bytes: u64,
    /// See [`Counters::decoded`].
    pub decoded: u64,
    /// See [`Counters::filtered_out`].
    pub filtered_out: u64,
    /// See [`Counters::duplicates`].
    pub duplicates: u64,
    /// See [`Counters::late`].
    pub late: u64,
    /// See [`Counters::late_dropped`].
    pub late_dropped: u64,
    /// See [`Counters::errors`].
    pub errors: u64,
    /// See [`Counters::dead_letters`].
    pub dead_letters: u64,
    /// See [`Counters::rows_emitted`].
    pub rows_emitted: u64,
}

impl LocalCounts {
    fn values(&self) -> [u64; 10] {
        [
            self.read,
            self.bytes,
            self.decoded,
            self.filtered_out,
            self.duplicates,
            self.late,
            self.late_dropped,
            self.errors,
            self.dead_letters,
            self.rows_emitted,
        ]
    }

    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &LocalCounts) {
        self.read += other.read;
        self.bytes += other.bytes;
        self.decoded += other.decoded;
        self.filtered_out += other.filtered_out;
        self.duplicates += other.duplicates;
        self.late += other.late;
        self.late_dropped += other.late_dropped;
        self.errors += other.errors;
        self.dead_letters += other.dead_letters;
        self.rows_emitted += other.rows_emitted;
    }

    /// Adds the counts to the job's totals and to the task's own counters,
    /// and resets them.
    pub fn publish(&mut self, metrics: &Metrics, own: &Counters) {
        let values = self.values();
        if values.iter().all(|v| *v == 0) {
            return;
        }
        for counters in [&metrics.totals, own] {
            for (counter, n) in counters.pairs().into_iter().zip(values) {
                if n > 0 {
                    counter.fetch_add(n, Ordering::Relaxed);
                }
            }
        }
        *self = LocalCounts::default();
    }
}

/// A copy of the counters at one moment (the same fields as the per-task
/// counts).
pub type Snapshot = LocalCounts;

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

fn merge(total: &Mutex<Option<Histogram<u64>>>, histogram: &Histogram<u64>) {
    if let Ok(mut total) = total.lock() {
        match total.as_mut() {
            Some(total) => {
                let _ = total.add(histogram);
            }
            None => *total = Some(histogram.clone()),
        }
    }
}

fn summarize(total: &Mutex<Option<Histogram<u64>>>) -> Option<(u64, u64, u64)> {
    let total = total.lock().ok()?;
    let h = total.as_ref().filter(|h| !h.is_empty())?;
    Some((h.value_at_quantile(0.5), h.value_at_quantile(0.99), h.max()))
}

/// How a job's Kinesis sources read: calls and subscriptions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KinesisReads {
    /// GetRecords calls (polling).
    pub get_records: u64,
    /// Enhanced fan-out subscriptions started (first ones and renewals).
    pub subscriptions: u64,
    /// Enhanced fan-out subscriptions refused, broken or gone silent.
    pub subscription_failures: u64,
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

    #[test]
    fn publishing_adds_to_the_totals_and_the_task() {
        let metrics = Metrics::default();
        let own = Counters::default();
        let mut counts = LocalCounts {
            read: 3,
            bytes: 30,
            late: 1,
            ..LocalCounts::default()
        };
        counts.publish(&metrics, &own);
        counts.publish(&metrics, &own);
        assert_eq!(counts, LocalCounts::default());
        for snapshot in [metrics.snapshot(), own.snapshot()] {
            assert_eq!((snapshot.read, snapshot.bytes, snapshot.late), (3, 30, 1));
        }
    }
}
