//! The DAG executor: opens state, builds the tasks of a plan, runs each on
//! its own thread, and reports how the run went.
//!
//! Tasks are OS threads connected by bounded channels (backpressure: a slow
//! sink slows the windows, which slow the sources). Channels are
//! `async-channel`s so that async sources (Kinesis) can feed the same
//! operators later without a second channel type.

pub mod message;
pub mod route;
pub mod row;
pub mod topology;

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kflow_jobs::JobPlan;
use kflow_state::{Family, StateStore};

use crate::error::EngineError;
use crate::metrics::{group, Metrics, RunSummary};

/// How to run a job.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Partitions per window operator.
    pub parallelism: usize,
    /// Show a status line on stderr (only when it is a terminal).
    pub status: bool,
}

impl Default for RunOptions {
    fn default() -> RunOptions {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        // Sources take a core each for decoding; windows share the rest.
        RunOptions { parallelism: (cores / 2).max(1), status: true }
    }
}

/// The RocksDB folder inside a job's state directory.
pub fn database_dir(plan: &JobPlan) -> std::path::PathBuf {
    plan.state_dir.join("db")
}

/// Runs `plan` until its sources end.
///
/// # Errors
/// The first error of any task (I/O, state), or the job uses something this
/// build cannot run.
pub fn run(plan: &JobPlan, options: &RunOptions) -> Result<RunSummary, EngineError> {
    let started = Instant::now();
    let store = Arc::new(StateStore::open(&database_dir(plan))?);
    // No checkpoints yet: every run starts from empty window state.
    store.clear(Family::Windows)?;
    store.clear(Family::Dedup)?;
    let metrics = Arc::new(Metrics::default());
    let topology = topology::build(plan, &store, &metrics, options.parallelism)?;

    let mut handles: Vec<(String, JoinHandle<Result<(), EngineError>>)> = Vec::new();
    let spawn = |name: String, f: Box<dyn FnOnce() -> Result<(), EngineError> + Send>| {
        let handle = std::thread::Builder::new().name(name.clone()).spawn(f);
        (name, handle)
    };
    let mut spawned = Vec::new();
    for sink in topology.sinks {
        spawned.push(spawn(format!("sink {}", sink.name), Box::new(move || sink.run())));
    }
    for (i, window) in topology.windows.into_iter().enumerate() {
        spawned.push(spawn(format!("window {i}"), Box::new(move || window.run())));
    }
    for source in topology.sources {
        spawned.push(spawn(format!("source {}", source.name), Box::new(move || source.run())));
    }
    for (name, handle) in spawned {
        match handle {
            Ok(h) => handles.push((name, h)),
            Err(e) => return Err(EngineError::Panicked(name, format!("could not start thread: {e}"))),
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
    Ok(RunSummary {
        job: plan.name.clone(),
        counts: metrics.snapshot(),
        elapsed: started.elapsed(),
        dead_letter_path: plan.dead_letter_path.clone(),
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
        eprint!(
            "\r\x1b[2K[{:>5.0}s] read {}  ({}/s)  windows {}  late {}  errors {}",
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
