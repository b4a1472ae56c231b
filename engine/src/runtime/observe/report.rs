//! The `/status` document: a JSON snapshot of the running job for
//! `kflow top` and scripts. Besides the counters it says, per window node,
//! what holds its watermark back (see [`holder`]).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::dataflow::metrics::parts::get_time;
use crate::dataflow::metrics::{Metrics, NodeMetrics, ShardStatus, SourceMetrics};

/// The whole snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReport {
    /// Job name.
    pub job: String,
    /// When the snapshot was taken, epoch ms.
    pub now_ms: i64,
    /// Seconds since the run started.
    pub uptime_s: f64,
    /// Whether `/readyz` says ready.
    pub ready: bool,
    /// Why not.
    pub not_ready: Option<String>,
    /// Records read by every source.
    pub read: u64,
    /// Result rows emitted by every window.
    pub rows_emitted: u64,
    /// Records sent to an `.errors` output or the dead-letter file.
    pub errors: u64,
    /// Sources.
    pub sources: Vec<SourceReport>,
    /// Window nodes (partitions summed).
    pub windows: Vec<WindowReport>,
    /// Sinks.
    pub sinks: Vec<SinkReport>,
    /// Checkpoints.
    pub checkpoints: CheckpointReport,
    /// End-to-end latency `(p50, p99, max)`, ms, over the committed
    /// checkpoints.
    pub latency_ms: Option<(f64, f64, f64)>,
    /// Resident memory, bytes.
    pub rss_bytes: Option<u64>,
    /// CPU time, seconds.
    pub cpu_seconds: Option<f64>,
}

/// One source.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceReport {
    /// Name.
    pub name: String,
    /// `file` or `kinesis`.
    pub kind: String,
    /// Records read.
    pub read: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Watermark, epoch ms.
    pub watermark_ms: Option<i64>,
    /// Told its consumers it is idle.
    pub idle: bool,
    /// A consumer's channel is full.
    pub backpressured: bool,
    /// Last record read, epoch ms.
    pub last_data_ms: Option<i64>,
    /// `idle_timeout`, seconds.
    pub idle_timeout_s: Option<f64>,
    /// GetRecords or SubscribeToShard calls retried after throttling.
    pub throttles: u64,
    /// Shards (Kinesis).
    pub shards: Vec<ShardReport>,
    /// Heaviest partition keys of the last minute, estimated counts.
    pub hot_keys: Vec<(String, u64)>,
}

/// One Kinesis shard.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardReport {
    /// Shard id.
    pub id: String,
    /// `reading`, `waiting`, `finished` or `stopped`.
    pub state: String,
    /// Records read in this run.
    pub records: u64,
    /// MillisBehindLatest.
    pub behind_ms: Option<i64>,
    /// The shard's watermark, epoch ms.
    pub watermark_ms: Option<i64>,
    /// Last records returned, epoch ms.
    pub last_data_ms: Option<i64>,
    /// The parent a waiting shard waits for.
    pub parent: Option<String>,
}

/// One window node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WindowReport {
    /// Node name.
    pub name: String,
    /// Partitions.
    pub partitions: usize,
    /// Records taken in.
    pub records_in: u64,
    /// Result rows emitted.
    pub rows_emitted: u64,
    /// Late records.
    pub late: u64,
    /// The lowest partition watermark, epoch ms.
    pub watermark_ms: Option<i64>,
    /// Open windows (panes).
    pub open_windows: u64,
    /// State bytes in memory.
    pub state_bytes: u64,
    /// The memory budget.
    pub budget_bytes: u64,
    /// What holds the watermark back.
    pub holder: Option<Holder>,
    /// Heaviest window keys of the last minute, estimated counts.
    pub hot_keys: Vec<(String, u64)>,
}

/// What holds a window's watermark back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Holder {
    /// The input (a source, or an upstream window).
    pub input: String,
    /// The shard within a Kinesis source.
    pub shard: Option<String>,
    /// Its watermark, epoch ms.
    pub watermark_ms: Option<i64>,
    /// Seconds its watermark is behind the fastest input's.
    pub behind_s: Option<f64>,
    /// Why, in words.
    pub reason: String,
}

/// The reason of an input that is merely the slowest.
const SLOWEST: &str = "its records carry the lowest event times";

impl Holder {
    /// Whether the holder is worth pointing at: it is stuck (idle,
    /// waiting, throttled, backpressured) or a second or more behind.
    pub fn matters(&self) -> bool {
        self.reason != SLOWEST || self.behind_s.is_some_and(|s| s >= 1.0)
    }

    /// `source/shard: reason`, for one line.
    pub fn describe(&self) -> String {
        let what = match &self.shard {
            Some(shard) => format!("{}/{shard}", self.input),
            None => self.input.clone(),
        };
        match self.behind_s {
            Some(s) if s >= 1.0 => format!("{what}, {s:.0}s behind: {}", self.reason),
            _ => format!("{what}: {}", self.reason),
        }
    }
}

/// One sink.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SinkReport {
    /// Name.
    pub name: String,
    /// Rows written.
    pub rows: u64,
    /// Bytes written.
    pub bytes: u64,
}

/// The checkpoints.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointReport {
    /// Committed in this run.
    pub completed: u64,
    /// The last one's id.
    pub last_id: u64,
    /// Seconds since the last one (or since the start, before the first).
    pub age_s: f64,
    /// The last one's duration, seconds.
    pub last_duration_s: f64,
    /// The interval, seconds (0: off).
    pub interval_s: f64,
}

/// A source or shard quiet for longer than this counts as quiet.
const QUIET: Duration = Duration::from_secs(2);

/// Takes the snapshot.
pub fn build(metrics: &Metrics, job: &str, uptime: Duration, now_ms: i64) -> StatusReport {
    let totals = metrics.snapshot();
    let sources: Vec<SourceReport> = metrics
        .sources
        .all()
        .iter()
        .map(|s| source_report(s))
        .collect();
    let mut by_node: BTreeMap<String, Vec<std::sync::Arc<NodeMetrics>>> = BTreeMap::new();
    for node in metrics.nodes.all() {
        by_node.entry(node.node.clone()).or_default().push(node);
    }
    let mut windows: Vec<WindowReport> = by_node
        .into_iter()
        .map(|(name, parts)| window_report(name, &parts))
        .collect();
    for i in 0..windows.len() {
        let holder = holder(&windows[i].name, metrics, &sources, &windows, now_ms);
        windows[i].holder = holder;
    }
    let sinks = metrics
        .sinks
        .all()
        .iter()
        .map(|s| SinkReport {
            name: s.name.clone(),
            rows: s.rows.load(Ordering::Relaxed),
            bytes: s.bytes.load(Ordering::Relaxed),
        })
        .collect();
    let process = super::process::usage();
    let ready = readiness(metrics, uptime, now_ms);
    StatusReport {
        job: job.to_string(),
        now_ms,
        uptime_s: uptime.as_secs_f64(),
        ready: ready.is_ok(),
        not_ready: ready.err(),
        read: totals.read,
        rows_emitted: totals.rows_emitted,
        errors: totals.errors,
        sources,
        windows,
        sinks,
        checkpoints: checkpoint_report(metrics, uptime, now_ms),
        latency_ms: metrics
            .latency_summary()
            .map(|(a, b, c)| (a as f64 / 1e3, b as f64 / 1e3, c as f64 / 1e3)),
        rss_bytes: process.rss_bytes,
        cpu_seconds: process.cpu_seconds,
    }
}

fn source_report(s: &SourceMetrics) -> SourceReport {
    let counts = s.counts.snapshot();
    SourceReport {
        name: s.name.clone(),
        kind: s.kind.to_string(),
        read: counts.read,
        bytes: counts.bytes,
        watermark_ms: get_time(&s.watermark),
        idle: s.idle.load(Ordering::Relaxed),
        backpressured: s.backpressured.load(Ordering::Relaxed),
        last_data_ms: get_time(&s.last_data_ms),
        idle_timeout_s: s.idle_timeout.map(|d| d.as_secs_f64()),
        throttles: s.throttles.load(Ordering::Relaxed),
        shards: s
            .shards()
            .into_iter()
            .map(|(id, m)| ShardReport {
                id,
                state: m.state.as_str().to_string(),
                records: m.records,
                behind_ms: m.behind_ms,
                watermark_ms: m.watermark,
                last_data_ms: m.last_data_ms,
                parent: m.parent,
            })
            .collect(),
        hot_keys: s.hot_keys.lock().map(|h| h.clone()).unwrap_or_default(),
    }
}

fn window_report(name: String, parts: &[std::sync::Arc<NodeMetrics>]) -> WindowReport {
    let sum = |f: &dyn Fn(&NodeMetrics) -> u64| parts.iter().map(|p| f(p)).sum::<u64>();
    let mut hot: BTreeMap<String, u64> = BTreeMap::new();
    for part in parts {
        for (key, n) in part.hot_keys.lock().map(|h| h.clone()).unwrap_or_default() {
            *hot.entry(key).or_default() += n;
        }
    }
    let mut hot_keys: Vec<(String, u64)> = hot.into_iter().collect();
    hot_keys.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    hot_keys.truncate(crate::dataflow::metrics::parts::HOT_KEYS);
    WindowReport {
        name,
        partitions: parts.len(),
        records_in: sum(&|p| p.records_in.load(Ordering::Relaxed)),
        rows_emitted: sum(&|p| p.counts.rows_emitted.load(Ordering::Relaxed)),
        late: sum(&|p| p.counts.late.load(Ordering::Relaxed)),
        watermark_ms: parts.iter().map(|p| get_time(&p.watermark)).min().flatten(),
        open_windows: sum(&|p| p.open_windows.load(Ordering::Relaxed)),
        state_bytes: sum(&|p| p.state_bytes.load(Ordering::Relaxed)),
        budget_bytes: sum(&|p| p.budget_bytes.load(Ordering::Relaxed)),
        holder: None,
        hot_keys,
    }
}

fn checkpoint_report(metrics: &Metrics, uptime: Duration, now_ms: i64) -> CheckpointReport {
    let c = &metrics.checkpoints;
    CheckpointReport {
        completed: c.completed.load(Ordering::Relaxed),
        last_id: c.last_id.load(Ordering::Relaxed),
        age_s: checkpoint_age(metrics, uptime, now_ms).as_secs_f64(),
        last_duration_s: c.last_duration_us.load(Ordering::Relaxed) as f64 / 1e6,
        interval_s: c.interval_ms.load(Ordering::Relaxed) as f64 / 1e3,
    }
}

/// Time since the last committed checkpoint, or since the start before the
/// first one.
pub fn checkpoint_age(metrics: &Metrics, uptime: Duration, now_ms: i64) -> Duration {
    match get_time(&metrics.checkpoints.last_completed_ms) {
        Some(at) => Duration::from_millis(now_ms.saturating_sub(at).max(0) as u64),
        None => uptime,
    }
}

/// Ready: not stopping, every source opened its input, and the last
/// checkpoint is younger than three intervals.
pub fn readiness(metrics: &Metrics, uptime: Duration, now_ms: i64) -> Result<(), String> {
    if metrics.stopping.load(Ordering::Relaxed) {
        return Err("stopping".into());
    }
    if let Some(s) = metrics
        .sources
        .all()
        .iter()
        .find(|s| !s.open.load(Ordering::Relaxed))
    {
        return Err(format!("source `{}` has not opened its input yet", s.name));
    }
    let interval = metrics.checkpoints.interval_ms.load(Ordering::Relaxed);
    let age = checkpoint_age(metrics, uptime, now_ms);
    if interval > 0 && age > Duration::from_millis(3 * interval) {
        return Err(format!(
            "the last checkpoint is {:.0}s old (more than 3 intervals of {:.0}s)",
            age.as_secs_f64(),
            interval as f64 / 1e3
        ));
    }
    Ok(())
}

/// An input of a window as all its partitions see it.
struct Input {
    name: String,
    watermark: i64,
    active: bool,
}

/// What holds window `node`'s watermark back: its active input (not idle,
/// not ended) with the lowest watermark and, for a Kinesis source, that
/// source's slowest shard, with the likeliest reason.
fn holder(
    node: &str,
    metrics: &Metrics,
    sources: &[SourceReport],
    windows: &[WindowReport],
    now_ms: i64,
) -> Option<Holder> {
    let mut inputs: Vec<Input> = Vec::new();
    for part in metrics.nodes.all().iter().filter(|p| p.node == node) {
        for i in part.inputs.lock().map(|v| v.clone()).unwrap_or_default() {
            let active = !i.idle && !i.ended;
            match inputs.iter_mut().find(|x| x.name == i.name) {
                Some(x) => {
                    x.watermark = x.watermark.min(i.watermark);
                    x.active |= active;
                }
                None => inputs.push(Input {
                    name: i.name,
                    watermark: i.watermark,
                    active,
                }),
            }
        }
    }
    let fastest = inputs.iter().map(|i| i.watermark).max()?;
    let slowest = inputs
        .iter()
        .filter(|i| i.active)
        .min_by_key(|i| i.watermark)?;
    let behind = |w: Option<i64>| {
        w.filter(|w| *w != i64::MIN && fastest != i64::MIN)
            .map(|w| (fastest - w).max(0) as f64 / 1e3)
    };
    if let Some(source) = sources.iter().find(|s| s.name == slowest.name) {
        let (shard, watermark, reason) = source_reason(source, now_ms);
        let watermark = watermark.or(Some(slowest.watermark).filter(|w| *w != i64::MIN));
        return Some(Holder {
            input: source.name.clone(),
            shard,
            watermark_ms: watermark,
            behind_s: behind(watermark),
            reason,
        });
    }
    let upstream = windows.iter().find(|w| w.name == slowest.name);
    Some(Holder {
        input: slowest.name.clone(),
        shard: None,
        watermark_ms: Some(slowest.watermark).filter(|w| *w != i64::MIN),
        behind_s: behind(Some(slowest.watermark)),
        reason: match upstream.and_then(|w| w.holder.as_ref()) {
            Some(h) => format!("upstream window, held by {}", h.describe()),
            None => "upstream window with the lowest watermark".into(),
        },
    })
}

/// The slowest shard of a source (if it has shards), its watermark and
/// why it is slow.
fn source_reason(source: &SourceReport, now_ms: i64) -> (Option<String>, Option<i64>, String) {
    let live = source
        .shards
        .iter()
        .filter(|s| s.state == ShardStatus::Reading.as_str() || s.state == "waiting");
    let slowest = live.min_by_key(|s| (s.state != "waiting", s.watermark_ms.unwrap_or(i64::MIN)));
    let Some(shard) = slowest else {
        let reason = quiet_reason(source, source.last_data_ms, now_ms)
            .unwrap_or_else(|| busy_reason(source, None));
        return (None, source.watermark_ms, reason);
    };
    let reason = if let Some(parent) = &shard.parent.as_ref().filter(|_| shard.state == "waiting") {
        format!("child shard waiting for its parent {parent} to be read to its end")
    } else if let Some(quiet) = quiet_reason(source, shard.last_data_ms, now_ms) {
        quiet
    } else {
        busy_reason(source, shard.behind_ms)
    };
    (Some(shard.id.clone()), shard.watermark_ms, reason)
}

/// Why a quiet input holds the watermark, if it is quiet.
fn quiet_reason(source: &SourceReport, last_data_ms: Option<i64>, now_ms: i64) -> Option<String> {
    let quiet = match last_data_ms {
        None => "idle: no records read yet".to_string(),
        Some(at) => {
            let quiet_for = Duration::from_millis(now_ms.saturating_sub(at).max(0) as u64);
            if quiet_for < QUIET {
                return None;
            }
            format!("idle for {:.0}s", quiet_for.as_secs_f64())
        }
    };
    Some(match source.idle_timeout_s {
        Some(t) => format!("{quiet}, below its idle_timeout {t:.0}s"),
        None => {
            format!("{quiet}, and no idle_timeout is set: it holds the watermark until it reads")
        }
    })
}

/// Why an input that is reading holds the watermark.
fn busy_reason(source: &SourceReport, behind_ms: Option<i64>) -> String {
    if source.backpressured {
        return "backpressured: a consumer (a full window or a slow sink) is not keeping up".into();
    }
    if source.throttles > 0 && behind_ms.is_some_and(|b| b > 0) {
        return format!(
            "throttled: {} Kinesis calls (GetRecords or SubscribeToShard) throttled so far, {:.1}s behind the stream's tip",
            source.throttles,
            behind_ms.unwrap_or(0) as f64 / 1e3
        );
    }
    if let Some(b) = behind_ms.filter(|b| *b >= 1000) {
        return format!(
            "catching up: {:.1}s behind the stream's tip",
            b as f64 / 1e3
        );
    }
    SLOWEST.into()
}
