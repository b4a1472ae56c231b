//! The status line `kflow run` redraws on a terminal: records read and
//! their rate, windows emitted, late records, errors, for Kinesis sources
//! how many shards are read and how far behind they are, and what holds
//! the first window's watermark back when one is.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::dataflow::metrics::{group, Metrics, ShardStatus};

/// Redraws one status line on stderr every second until `done`.
pub fn status_line(done: &AtomicBool, metrics: &Metrics, job: &str, started: Instant) {
    let mut last = (Instant::now(), 0u64);
    while !done.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(200));
        if last.0.elapsed() < Duration::from_secs(1) {
            continue;
        }
        let c = metrics.snapshot();
        let rate = (c.read - last.1) as f64 / last.0.elapsed().as_secs_f64();
        last = (Instant::now(), c.read);
        let shards = metrics.shards();
        let lag = if shards.is_empty() {
            String::new()
        } else {
            let reading = shards
                .values()
                .filter(|s| s.state == ShardStatus::Reading)
                .count();
            let behind = shards
                .values()
                .filter_map(|s| s.behind_ms)
                .max()
                .unwrap_or(0);
            format!(
                "  shards {reading}/{}  lag {:.1}s",
                shards.len(),
                behind as f64 / 1000.0
            )
        };
        let now_ms = chrono::Utc::now().timestamp_millis();
        let report = super::observe::report::build(metrics, job, started.elapsed(), now_ms);
        let held = report
            .windows
            .iter()
            .find_map(|w| w.holder.as_ref().filter(|h| h.matters()))
            .map(|h| format!("  held by {}", h.describe()))
            .unwrap_or_default();
        eprint!(
            "\r\x1b[2K[{:>5.0}s] read {}  ({}/s)  windows {}  late {}  errors {}{lag}{held}",
            started.elapsed().as_secs_f64(),
            group(c.read),
            group(rate as u64),
            group(c.rows_emitted),
            group(c.late),
            group(c.errors),
        );
    }
    eprint!("\r\x1b[2K");
}
