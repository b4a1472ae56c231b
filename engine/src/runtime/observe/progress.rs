//! A cluster part's progress in one line, rewritten every second to a file
//! its worker reads and puts in the lease table with each renewal: what
//! `kflow cluster status` shows as the lag of each source shard and key
//! group.
//!
//! A line reads `read 12,345, 1.2 s behind the stream, watermark 4.0 s
//! behind now, 345 rows, checkpoint 7 0.4 s ago`. "Behind the stream" is
//! the largest MillisBehindLatest of the part's shards: the source shard
//! for a shard part, the shuffle shard for a key group. The watermark is
//! the windows' (a key group) or the source's (a shard part).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::report::{build, StatusReport};
use crate::dataflow::metrics::{group, Metrics};

/// How often the file is rewritten.
const EVERY: Duration = Duration::from_secs(1);

/// The report in one line.
pub fn line(report: &StatusReport) -> String {
    let mut out = format!("read {}", group(report.read));
    let shards = report.sources.iter().flat_map(|s| &s.shards);
    if let Some(behind) = shards.clone().filter_map(|s| s.behind_ms).max() {
        let _ = write!(out, ", {:.1} s behind the stream", behind as f64 / 1e3);
    }
    let mut states = shards.map(|s| s.state.as_str()).peekable();
    if states.peek().is_some() && states.all(|s| matches!(s, "finished" | "stopped")) {
        out.push_str(", read to its end");
    }
    let watermark = if report.windows.is_empty() {
        report.sources.iter().filter_map(|s| s.watermark_ms).min()
    } else {
        report.windows.iter().filter_map(|w| w.watermark_ms).min()
    };
    match watermark {
        // Bounded input read to its end: every window fired.
        Some(i64::MAX) => out.push_str(", watermark at the end"),
        Some(wm) => {
            let lag = (report.now_ms - wm) as f64 / 1e3;
            let _ = write!(out, ", watermark {lag:.1} s behind now");
        }
        None => {}
    }
    if !report.windows.is_empty() {
        let _ = write!(out, ", {} rows", group(report.rows_emitted));
    }
    let c = &report.checkpoints;
    if c.completed > 0 {
        let _ = write!(out, ", checkpoint {} {:.1} s ago", c.last_id, c.age_s);
    }
    out
}

/// Rewrites `path` with the run's [`line`] every second until `done`.
pub fn write_every(path: &Path, done: &AtomicBool, metrics: &Metrics, job: &str, started: Instant) {
    let tmp = path.with_extension("progress.tmp");
    let mut last = None::<Instant>;
    while !done.load(Ordering::Relaxed) {
        if last.is_none_or(|at| at.elapsed() >= EVERY) {
            last = Some(Instant::now());
            let now_ms = chrono::Utc::now().timestamp_millis();
            let text = line(&build(metrics, job, started.elapsed(), now_ms));
            // Progress is for people: a file that cannot be written only
            // leaves the lease's status as it was.
            if std::fs::write(&tmp, text).is_ok() {
                let _ = std::fs::rename(&tmp, path);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Reads a part's progress line (`None`: none written yet).
pub fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::observe::report::{CheckpointReport, ShardReport, SourceReport};

    fn report() -> StatusReport {
        StatusReport {
            job: "j".into(),
            now_ms: 10_000,
            uptime_s: 5.0,
            ready: true,
            not_ready: None,
            read: 12_345,
            rows_emitted: 0,
            errors: 0,
            sources: vec![SourceReport {
                name: "clicks".into(),
                kind: "kinesis".into(),
                read: 12_345,
                bytes: 0,
                watermark_ms: Some(6_000),
                idle: false,
                backpressured: false,
                last_data_ms: None,
                idle_timeout_s: None,
                throttles: 0,
                shards: vec![ShardReport {
                    id: "shardId-0".into(),
                    state: "reading".into(),
                    records: 12_345,
                    behind_ms: Some(1_200),
                    watermark_ms: Some(6_000),
                    last_data_ms: None,
                    parent: None,
                }],
                hot_keys: Vec::new(),
            }],
            windows: Vec::new(),
            sinks: Vec::new(),
            checkpoints: CheckpointReport {
                completed: 3,
                last_id: 7,
                age_s: 0.4,
                last_duration_s: 0.1,
                interval_s: 1.0,
            },
            latency_ms: None,
            rss_bytes: None,
            cpu_seconds: None,
        }
    }

    #[test]
    fn a_shard_parts_line_says_its_lag() {
        assert_eq!(
            line(&report()),
            "read 12,345, 1.2 s behind the stream, watermark 4.0 s behind now, \
             checkpoint 7 0.4 s ago"
        );
        let mut ended = report();
        ended.sources[0].shards[0].state = "finished".into();
        assert!(line(&ended).contains("read to its end"));
    }
}
