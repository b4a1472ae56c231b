//! The DAG executor: opens state, builds the tasks of a plan, runs each on
//! its own thread, and reports how the run went.
//!
//! Tasks are OS threads connected by bounded channels (backpressure: a slow
//! sink slows the windows, which slow the sources). Channels are
//! `async-channel`s so that async sources (Kinesis) can feed the same
//! operators later without a second channel type.

pub mod coordinator;
pub mod fingerprint;
pub mod meta;
pub mod summary;
pub mod topology;

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kflow_jobs::{ConnectorPlan, JobPlan, NodeKind};
use kflow_state::{Family, StateStore};

use serde::Deserialize;

use crate::dataflow::metrics::{group, Metrics, ShardStatus};
use crate::error::EngineError;
use crate::sources::file::FilePosition;
use crate::sources::kinesis::position::KinesisPosition;
use coordinator::{CheckpointStats, Coordinator};
use meta::CheckpointMeta;
use summary::RunSummary;

/// How to run a job.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Partitions per window operator (a restored checkpoint keeps its own).
    pub parallelism: usize,
    /// Show a status line on stderr (only when it is a terminal).
    pub status: bool,
    /// Overrides the job's `checkpoint_interval`; `Some(None)` turns
    /// periodic checkpoints off (the memory budget still takes them).
    pub checkpoint_interval: Option<Option<Duration>>,
    /// Ignore and delete existing state: start from empty state.
    pub reset: bool,
}

impl Default for RunOptions {
    fn default() -> RunOptions {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        // Sources take a core each for decoding; windows share the rest.
        RunOptions {
            parallelism: (cores / 2).max(1),
            status: true,
            checkpoint_interval: None,
            reset: false,
        }
    }
}

/// How a run started: fresh, or from which checkpoint.
#[derive(Debug, Clone)]
pub enum Start {
    /// No usable checkpoint: empty state, sinks start empty.
    Fresh {
        /// Why (no checkpoint, `--reset`, last run finished).
        why: String,
    },
    /// Resumed from a checkpoint.
    Restored {
        /// The checkpoint.
        meta: Box<CheckpointMeta>,
        /// Allowed job changes since it was taken.
        changes: Vec<String>,
    },
}

impl Start {
    /// One line for the log.
    pub fn describe(&self, plan: &JobPlan) -> String {
        match self {
            Start::Fresh { why } => format!("starting from empty state ({why})"),
            Start::Restored { meta, changes } => {
                let age = (chrono::Utc::now().timestamp_millis() - meta.created_ms).max(0) as f64
                    / 1000.0;
                let positions: Vec<String> = meta
                    .sources
                    .iter()
                    .map(|(name, stored)| describe_position(plan, name, stored))
                    .collect();
                let mut line = format!(
                    "restored checkpoint {} taken {age:.1} s ago: {}",
                    meta.id,
                    if positions.is_empty() {
                        "no sources".to_string()
                    } else {
                        positions.join(", ")
                    }
                );
                for change in changes {
                    line.push_str(&format!("\n  job change: {change}"));
                }
                line
            }
        }
    }
}

/// One source's restored position for the log: a file's line and byte, or
/// a Kinesis source's records and shards.
fn describe_position(plan: &JobPlan, name: &str, stored: &serde_json::Value) -> String {
    let connector = plan.nodes.iter().find_map(|n| match &n.kind {
        NodeKind::Source(s) if n.name == name => Some(&s.connector),
        _ => None,
    });
    let described = match connector {
        Some(ConnectorPlan::Kinesis(_)) => KinesisPosition::deserialize(stored)
            .map(|k| {
                format!(
                    "{name} after {} records, {} shards ({} finished)",
                    group(k.records),
                    k.stream.shards.len(),
                    k.stream.shards.values().filter(|s| s.finished).count()
                )
            })
            .ok(),
        _ => FilePosition::deserialize(stored)
            .map(|f| {
                format!(
                    "{name} at line {} (byte {})",
                    group(f.line),
                    group(f.offset)
                )
            })
            .ok(),
    };
    described.unwrap_or_else(|| format!("{name} at an unreadable position"))
}

/// Opens the state, decides how to start and checks the job against the
/// checkpoint.
///
/// # Errors
/// [`EngineError::JobChanged`] when a stateful part of the job changed since
/// the checkpoint, state errors (corrupt or foreign state directory).
pub fn prepare(
    plan: &JobPlan,
    options: &RunOptions,
) -> Result<(Arc<StateStore>, Start), EngineError> {
    let store = Arc::new(StateStore::open(&database_dir(plan))?);
    let meta = CheckpointMeta::load(&store)?;
    let start = match meta {
        Some(_) if options.reset => Start::Fresh {
            why: "--reset".into(),
        },
        Some(meta) if meta.finished => Start::Fresh {
            why: format!(
                "the last run finished at checkpoint {}: running again",
                meta.id
            ),
        },
        Some(meta) => {
            let (stateful, stateless) = fingerprint::describe(plan);
            let changes =
                fingerprint::compare(&meta.stateful, &meta.stateless, &stateful, &stateless);
            if !changes.incompatible.is_empty() {
                return Err(EngineError::JobChanged(changes.incompatible));
            }
            Start::Restored {
                meta: Box::new(meta),
                changes: changes.compatible,
            }
        }
        None => Start::Fresh {
            why: "no checkpoint".into(),
        },
    };
    if let Start::Fresh { .. } = start {
        store.clear(&[Family::Windows, Family::Packs, Family::Dedup, Family::Meta])?;
    }
    Ok((store, start))
}

/// The RocksDB folder inside a job's state directory.
pub fn database_dir(plan: &JobPlan) -> std::path::PathBuf {
    plan.state_dir.join("db")
}

/// Runs `plan` until its sources end, resuming from the last checkpoint.
///
/// # Errors
/// The first error of any task (I/O, state), a job changed incompatibly
/// since its checkpoint, or a job this build cannot run.
pub fn run(plan: &JobPlan, options: &RunOptions) -> Result<RunSummary, EngineError> {
    let started = Instant::now();
    let (store, start) = prepare(plan, options)?;
    tracing::info!("{}", start.describe(plan));
    let restore = match &start {
        Start::Restored { meta, .. } => Some(meta.as_ref()),
        Start::Fresh { .. } => None,
    };
    let parallelism = restore
        .map_or(options.parallelism, |m| m.parallelism)
        .max(1);
    let metrics = Arc::new(Metrics::default());
    let (stateful, stateless) = fingerprint::describe(plan);
    let base = CheckpointMeta {
        job: plan.name.clone(),
        parallelism,
        stateful,
        stateless,
        ..restore.cloned().unwrap_or_default()
    };
    let interval = options
        .checkpoint_interval
        .unwrap_or(Some(plan.checkpoint_interval))
        .filter(|d| !d.is_zero());
    // The coordinator learns the task names once the topology exists.
    let mut coordinator = Coordinator::new(store.clone(), interval, Vec::new(), base);
    let topology = topology::build(&topology::BuildCtx {
        plan,
        store: &store,
        metrics: &metrics,
        parallelism,
        checkpoints: &coordinator.ctx(),
        restore,
    })?;
    coordinator.set_tasks(topology.task_names());

    let spawn = |name: String, f: Box<dyn FnOnce() -> Result<(), EngineError> + Send>| {
        let handle = std::thread::Builder::new().name(name.clone()).spawn(f);
        (name, handle)
    };
    let mut spawned = Vec::new();
    for sink in topology.sinks {
        spawned.push(spawn(
            format!("sink {}", sink.name),
            Box::new(move || sink.run()),
        ));
    }
    for window in topology.windows {
        spawned.push(spawn(
            format!("window {}", window.task_name()),
            Box::new(move || window.run()),
        ));
    }
    for source in topology.sources {
        spawned.push(spawn(
            format!("source {}", source.name()),
            Box::new(move || source.run()),
        ));
    }
    let checkpoint_stats = Arc::new(std::sync::Mutex::new(CheckpointStats::default()));
    let stats_out = checkpoint_stats.clone();
    spawned.push(spawn(
        "checkpoints".into(),
        Box::new(move || {
            let stats = coordinator.run()?;
            if let Ok(mut s) = stats_out.lock() {
                *s = stats;
            }
            Ok(())
        }),
    ));
    let mut handles: Vec<(String, JoinHandle<Result<(), EngineError>>)> = Vec::new();
    for (name, handle) in spawned {
        match handle {
            Ok(h) => handles.push((name, h)),
            Err(e) => {
                return Err(EngineError::Panicked(
                    name,
                    format!("could not start thread: {e}"),
                ))
            }
        }
    }

    let done = Arc::new(AtomicBool::new(false));
    let status = (options.status && std::io::stderr().is_terminal()).then(|| {
        let (done, metrics) = (done.clone(), metrics.clone());
        std::thread::spawn(move || status_line(&done, &metrics, started))
    });

    let mut first_error: Option<EngineError> = None;
    for (name, handle) in handles {
        let result = match handle.join() {
            Ok(r) => r,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                Err(EngineError::Panicked(name, what))
            }
        };
        if let Err(e) = result {
            // A lost peer is a symptom; keep the task error that caused it.
            let replace = match (&first_error, &e) {
                (None, _) => true,
                (Some(EngineError::Disconnected(_)), EngineError::Disconnected(_)) => false,
                (Some(EngineError::Disconnected(_)), _) => true,
                _ => false,
            };
            if replace {
                first_error = Some(e);
            }
        }
    }
    done.store(true, Ordering::Relaxed);
    if let Some(handle) = status {
        let _ = handle.join();
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let checkpoints = checkpoint_stats.lock().map(|s| *s).unwrap_or_default();
    Ok(RunSummary {
        job: plan.name.clone(),
        counts: metrics.snapshot(),
        elapsed: started.elapsed(),
        dead_letter_path: plan.dead_letter_path.clone(),
        checkpoints,
        start: start.describe(plan),
        shards: metrics.shards(),
        throttles: metrics.throttles.load(Ordering::Relaxed),
        latency_us: metrics.latency_summary(),
    })
}

/// Redraws one status line on stderr every second until `done`.
fn status_line(done: &AtomicBool, metrics: &Metrics, started: Instant) {
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
        eprint!(
            "\r\x1b[2K[{:>5.0}s] read {}  ({}/s)  windows {}  late {}  errors {}{lag}",
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
