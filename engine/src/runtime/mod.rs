//! The DAG executor: opens state, builds the tasks of a plan, runs each on
//! its own thread, and reports how the run went.
//!
//! Tasks are OS threads connected by bounded channels (backpressure: a slow
//! sink slows the windows, which slow the sources). Channels are
//! `async-channel`s so that async sources (Kinesis) can feed the same
//! operators later without a second channel type.

pub mod coordinator;
pub mod durable;
pub mod fingerprint;
pub mod meta;
pub mod observe;
pub mod start;
pub mod status;
pub mod summary;
pub mod topology;
pub mod worker;

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kflow_jobs::JobPlan;

use crate::dataflow::metrics::Metrics;
use crate::error::EngineError;
use coordinator::{CheckpointStats, Coordinator};
use meta::CheckpointMeta;
pub use start::{prepare, Start};
use summary::RunSummary;
use topology::Topology;

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
    /// Raised to stop gracefully: a final checkpoint, then the run returns
    /// (see [`coordinator::Coordinator::set_stop_request`]).
    pub stop: Option<coordinator::StopRequest>,
    /// Overrides the job's `metrics` address.
    pub metrics: Option<std::net::SocketAddr>,
    /// Restore this checkpoint from the checkpoint store, replacing the
    /// local state.
    pub from_checkpoint: Option<u64>,
    /// Run one part of a cluster job (the plan given is already narrowed
    /// to it by [`crate::cluster::Part::plan`]).
    pub part: Option<crate::cluster::Part>,
    /// Rewrite this file every second with a one-line progress report
    /// (a cluster part's, for its worker to put in the lease table).
    pub progress: Option<std::path::PathBuf>,
    /// Threads decoding each bounded file source, in
    /// line-aligned blocks (1: the source's own thread). Default: one per
    /// core on two cores or more.
    pub decode_threads: usize,
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
            stop: None,
            metrics: None,
            from_checkpoint: None,
            part: None,
            progress: None,
            // One per core, though the windows need CPU too: on 2 cores,
            // 2 decoders against the source's own thread took W1 1.15 ->
            // 1.06 s, W4 1.30 -> 0.79 s, W5 2.30 -> 1.44 s, W2 the same,
            // and only W4S (a second window) 1.73 -> 1.86 s
            // (docs/performance/records.md, "Decoders beyond the cores").
            decode_threads: if cores >= 2 { cores } else { 1 },
        }
    }
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
    let lineage = restore
        .map(|m| m.lineage.clone())
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| format!("{:016x}", rand::random::<u64>()));
    let base = CheckpointMeta {
        lineage,
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
        part: options.part.as_ref(),
        decode_threads: options.decode_threads,
        extended: match &start {
            Start::Restored { extended, .. } => extended,
            Start::Fresh { .. } => &[],
        },
    })?;
    coordinator.set_tasks(topology.task_names());
    coordinator.set_metrics(metrics.clone());
    if let Some(url) = durable::store_url(plan) {
        let uploads = durable::uploads_dir(plan);
        let _ = std::fs::remove_dir_all(&uploads);
        let uploader =
            durable::upload::Uploader::start(url, plan.retain_checkpoints, metrics.clone())?;
        coordinator.set_uploader(uploader, uploads);
    }
    if let Some(stop) = &options.stop {
        coordinator.set_stop_request(stop.clone());
    }
    let server = match options.metrics.or(plan.metrics) {
        Some(addr) => Some(observe::serve(addr, metrics.clone(), &plan.name, started)?),
        None => None,
    };
    let checkpoint_stats = Arc::new(Mutex::new(CheckpointStats::default()));
    let threads = spawn_all(topology, coordinator, checkpoint_stats.clone())?;

    let done = Arc::new(AtomicBool::new(false));
    let status = (options.status && std::io::stderr().is_terminal()).then(|| {
        let (done, metrics, job) = (done.clone(), metrics.clone(), plan.name.clone());
        std::thread::spawn(move || status::status_line(&done, &metrics, &job, started))
    });
    let progress = options.progress.clone().map(|path| {
        let (done, metrics, job) = (done.clone(), metrics.clone(), plan.name.clone());
        std::thread::spawn(move || {
            observe::progress::write_every(&path, &done, &metrics, &job, started)
        })
    });
    let joined = join_all(threads, &checkpoint_stats);
    done.store(true, Ordering::Relaxed);
    for handle in [status, progress].into_iter().flatten() {
        let _ = handle.join();
    }
    drop(server);
    joined?;
    let checkpoints = checkpoint_stats.lock().map(|s| *s).unwrap_or_default();
    if let Some(id) = checkpoints.stopped_at {
        tracing::info!("stopped gracefully at checkpoint {id}: a restart resumes there");
    }
    Ok(RunSummary {
        job: plan.name.clone(),
        counts: metrics.snapshot(),
        elapsed: started.elapsed(),
        dead_letter_path: plan.dead_letter_path.clone(),
        checkpoints,
        start: start.describe(plan),
        shards: metrics.shards(),
        throttles: metrics.throttles(),
        reads: metrics.kinesis_reads(),
        read_delay_ms: metrics.read_delay_summary(),
        latency_us: metrics.latency_summary(),
        uploads: durable::store_url(plan).map(|_| {
            let c = &metrics.checkpoints;
            summary::UploadSummary {
                uploads: c.uploads.load(Ordering::Relaxed),
                failures: c.upload_failures.load(Ordering::Relaxed),
                bytes: c.uploaded_bytes.load(Ordering::Relaxed),
                snapshot_bytes: c.snapshot_bytes.load(Ordering::Relaxed),
                durable_id: c.durable_id.load(Ordering::Relaxed),
                database_bytes: store.size_on_disk(),
            }
        }),
    })
}

/// A task's thread: its name and what it returns.
type TaskThread = (String, JoinHandle<Result<(), EngineError>>);

/// Starts one thread per task, and the coordinator's, which leaves its
/// totals in `stats` when it is done.
fn spawn_all(
    topology: Topology,
    coordinator: Coordinator,
    stats: Arc<Mutex<CheckpointStats>>,
) -> Result<Vec<TaskThread>, EngineError> {
    type Work = Box<dyn FnOnce() -> Result<(), EngineError> + Send>;
    let mut work: Vec<(String, Work)> = Vec::new();
    for sink in topology.sinks {
        work.push((format!("sink {}", sink.name), Box::new(move || sink.run())));
    }
    for window in topology.windows {
        let name = format!("window {}", window.task_name());
        work.push((name, Box::new(move || window.run())));
    }
    for source in topology.sources {
        let name = format!("source {}", source.name());
        work.push((name, Box::new(move || source.run())));
    }
    if let Some(shuffle) = topology.shuffle {
        work.push(("shuffle".into(), Box::new(move || shuffle.run())));
    }
    // The coordinator's thread first: after a graceful stop it is the only
    // one that ends.
    work.insert(
        0,
        (
            "checkpoints".into(),
            Box::new(move || {
                let totals = coordinator.run()?;
                if let Ok(mut s) = stats.lock() {
                    *s = totals;
                }
                Ok(())
            }),
        ),
    );
    work.into_iter()
        .map(
            |(name, f)| match std::thread::Builder::new().name(name.clone()).spawn(f) {
                Ok(handle) => Ok((name, handle)),
                Err(e) => Err(EngineError::Panicked(
                    name,
                    format!("could not start thread: {e}"),
                )),
            },
        )
        .collect()
}

/// Waits for every task, the coordinator (first in `threads`) first; the
/// first error that is a cause, not a symptom (a lost peer is a symptom:
/// the peer's own error explains it). After a graceful stop the other
/// tasks wait for the process to exit: they are not joined.
fn join_all(threads: Vec<TaskThread>, stats: &Mutex<CheckpointStats>) -> Result<(), EngineError> {
    let mut first_error: Option<EngineError> = None;
    for (i, (name, handle)) in threads.into_iter().enumerate() {
        let stopped = stats.lock().is_ok_and(|s| s.stopped_at.is_some());
        if i > 0 && stopped && first_error.is_none() {
            break;
        }
        let result = match handle.join() {
            Ok(r) => r,
            Err(panic) => Err(EngineError::from_panic(name, panic.as_ref())),
        };
        if let Err(e) = result {
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
    first_error.map_or(Ok(()), Err)
}
