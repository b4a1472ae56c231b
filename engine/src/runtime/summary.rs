//! What a finished run reports: the counters, checkpoints, shards and
//! latency, rendered as the block `kflow run` prints at the end.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::dataflow::metrics::{group, KinesisReads, ShardMetrics, Snapshot};
use crate::runtime::coordinator::CheckpointStats;

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// The job's name.
    pub job: String,
    /// Final counters.
    pub counts: Snapshot,
    /// Wall time from start to end.
    pub elapsed: Duration,
    /// Where dead letters went.
    pub dead_letter_path: std::path::PathBuf,
    /// Checkpoints taken.
    pub checkpoints: CheckpointStats,
    /// How the run started.
    pub start: String,
    /// Kinesis shards read, by `source/shard`.
    pub shards: BTreeMap<String, ShardMetrics>,
    /// Kinesis calls retried after throttling.
    pub throttles: u64,
    /// GetRecords calls and enhanced fan-out subscriptions.
    pub reads: KinesisReads,
    /// Kinesis read delay `(p50, p99, max)` in milliseconds.
    pub read_delay_ms: Option<(u64, u64, u64)>,
    /// Window result latency `(p50, p99, max)` in microseconds.
    pub latency_us: Option<(u64, u64, u64)>,
    /// With a checkpoint store: what was uploaded.
    pub uploads: Option<UploadSummary>,
}

/// What a run sent to the checkpoint store.
#[derive(Debug, Clone, Copy, Default)]
pub struct UploadSummary {
    /// Checkpoints uploaded.
    pub uploads: u64,
    /// Uploads that failed.
    pub failures: u64,
    /// Bytes sent.
    pub bytes: u64,
    /// Bytes of the snapshots uploaded (what full copies would send).
    pub snapshot_bytes: u64,
    /// The newest durable checkpoint.
    pub durable_id: u64,
    /// The local database's size at the end, bytes.
    pub database_bytes: u64,
}

impl RunSummary {
    /// Records read per second of wall time.
    pub fn records_per_second(&self) -> f64 {
        self.counts.read as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The block printed at the end of a bounded run.
    pub fn render(&self) -> String {
        let c = &self.counts;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "kflow: job `{}` finished in {:.2} s",
            self.job,
            self.elapsed.as_secs_f64()
        );
        let mut line = |label: &str, n: u64, extra: String| {
            let _ = writeln!(out, "  {label:<16}{:>14}{extra}", group(n));
        };
        line(
            "records read",
            c.read,
            format!("  ({} records/s)", group(self.records_per_second() as u64)),
        );
        line("decoded", c.decoded, String::new());
        line("filtered out", c.filtered_out, String::new());
        if c.duplicates > 0 {
            line("duplicates", c.duplicates, String::new());
        }
        line(
            "late",
            c.late,
            format!("  ({} dropped)", group(c.late_dropped)),
        );
        let dead = if c.dead_letters > 0 {
            format!(
                "  ({} in {})",
                group(c.dead_letters),
                self.dead_letter_path.display()
            )
        } else {
            String::new()
        };
        line("errors", c.errors, dead);
        line("windows emitted", c.rows_emitted, String::new());
        if let Some((p50, p99, max)) = self.latency_us {
            let ms = |us: u64| us as f64 / 1000.0;
            let _ = writeln!(
                out,
                "  {:<16}  p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (input read -> window result written)",
                "latency",
                ms(p50),
                ms(p99),
                ms(max)
            );
        }
        self.render_shards(&mut out);
        self.render_checkpoints(&mut out);
        out
    }

    fn render_shards(&self, out: &mut String) {
        if !self.shards.is_empty() {
            let r = &self.reads;
            let how = if r.subscriptions > 0 || r.subscription_failures > 0 {
                format!(
                    "{} subscriptions, {} failed",
                    group(r.subscriptions),
                    group(r.subscription_failures)
                )
            } else {
                format!("{} GetRecords calls", group(r.get_records))
            };
            let _ = writeln!(
                out,
                "  kinesis shards  {:>14}  ({how}; {} throttled calls retried)",
                self.shards.len(),
                group(self.throttles)
            );
            if let Some((p50, p99, max)) = self.read_delay_ms {
                let _ = writeln!(
                    out,
                    "  {:<16}  p50 {p50} ms, p99 {p99} ms, max {max} ms (arrival in the stream -> read)",
                    "kinesis delay"
                );
            }
            let secs = self.elapsed.as_secs_f64().max(1e-9);
            for (shard, m) in &self.shards {
                let lag = m.behind_ms.map_or_else(
                    || "-".to_string(),
                    |ms| format!("{:.1} s", ms as f64 / 1000.0),
                );
                let _ = writeln!(
                    out,
                    "    {shard:<36}{:>12} records  {:>9}/s  lag {lag:<8} {}",
                    group(m.records),
                    group((m.records as f64 / secs) as u64),
                    m.state.as_str()
                );
            }
        }
    }

    fn render_checkpoints(&self, out: &mut String) {
        let cp = &self.checkpoints;
        let early = if cp.early > 0 {
            format!(", {} early (memory budget, Kinesis start)", group(cp.early))
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "  {:<16}{:>14}  ({:.2} s writing {} MB{early})",
            "checkpoints",
            group(cp.count),
            cp.write_time.as_secs_f64(),
            cp.bytes / 1_000_000
        );
        if let Some(u) = &self.uploads {
            let per = u.bytes / u.uploads.max(1);
            let _ = writeln!(
                out,
                "  {:<16}{:>14}  (durable through checkpoint {}, {} bytes sent, {} per upload, \
                 snapshots {} bytes, database {} bytes, {} failed)",
                "uploads",
                group(u.uploads),
                u.durable_id,
                group(u.bytes),
                group(per),
                group(u.snapshot_bytes),
                group(u.database_bytes),
                group(u.failures)
            );
        }
        if let Some(id) = cp.stopped_at {
            let _ = writeln!(
                out,
                "  stopped gracefully at checkpoint {id}: a restart resumes there"
            );
        }
    }
}
