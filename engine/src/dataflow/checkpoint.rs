//! The task side of aligned checkpoints: how a task learns that a
//! checkpoint is wanted, and the [`Part`] it reports when it has taken its
//! snapshot.
//!
//! The coordinator (in the runtime) asks sources to inject barrier N
//! through an atomic counter they poll on their own clock. A source sends
//! barrier N downstream right after the record it last processed and
//! reports its position; a window partition or sink waits until barrier N
//! has arrived on every live input ([`crate::dataflow::align`]), snapshots
//! and forwards the barrier. A task that ends reports a *final* part
//! instead, which stands in for every later checkpoint.
//!
//! A part's position is opaque here: each connector and operator defines
//! its own position type beside its code and serialises it into
//! [`Part::state`]; the coordinator stores it as it is and hands it back
//! to the same task kind on restore.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;

use kflow_state::{StateBatch, StateError};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::EngineError;

/// What kind of task a part comes from (where the coordinator files it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartKind {
    /// A source: its position and clock.
    Source,
    /// A window partition: its clock and where its state lives.
    Window,
    /// A sink: its committed output.
    Sink,
}

/// One task's contribution to a checkpoint.
#[derive(Debug)]
pub struct Part {
    /// The task (`source`, `window/0`, `sink`).
    pub task: String,
    /// The checkpoint, or `None` for a task's final part.
    pub checkpoint: Option<u64>,
    /// Where the coordinator files `state`.
    pub kind: PartKind,
    /// The task's own position type, serialised by the task.
    pub state: serde_json::Value,
    /// Its state changes since its previous part.
    pub batch: StateBatch,
    /// Work that makes the task's output durable, run by the coordinator
    /// before it commits (a file sink's `fdatasync`).
    pub durability: Option<Durability>,
}

impl Part {
    /// A part carrying `state` serialised.
    ///
    /// # Errors
    /// [`EngineError::State`] when `state` does not serialise (a bug).
    pub fn new(
        task: &str,
        checkpoint: Option<u64>,
        kind: PartKind,
        state: &impl Serialize,
        batch: StateBatch,
    ) -> Result<Part, EngineError> {
        Ok(Part {
            task: task.to_string(),
            checkpoint,
            kind,
            state: save_part(task, state)?,
            batch,
            durability: None,
        })
    }

    /// The same part, with work to run before the commit.
    pub fn with_durability(mut self, durability: Option<Durability>) -> Part {
        self.durability = durability;
        self
    }
}

/// Serialises task `task`'s position for a [`Part`].
///
/// # Errors
/// [`EngineError::State`] when `state` does not serialise (a bug).
pub fn save_part(task: &str, state: &impl Serialize) -> Result<serde_json::Value, EngineError> {
    serde_json::to_value(state).map_err(|e| {
        EngineError::State(StateError::Corrupt(format!(
            "checkpoint part of `{task}`: {e}"
        )))
    })
}

/// Reads a task's position back from a checkpoint (`None`: the task has
/// none there, it starts fresh).
///
/// # Errors
/// [`EngineError::State`] when the stored position is not of type `T`
/// (corrupt or foreign state).
pub fn restore_part<T: DeserializeOwned>(
    task: &str,
    stored: Option<&serde_json::Value>,
) -> Result<Option<T>, EngineError> {
    stored
        .map(|v| {
            T::deserialize(v).map_err(|e| {
                EngineError::State(StateError::Corrupt(format!(
                    "checkpoint position of `{task}` does not parse: {e}"
                )))
            })
        })
        .transpose()
}

/// Work that makes a part's output durable (a file sink's `fdatasync`, an
/// S3 sink's part upload), run by the coordinator before it commits the
/// checkpoint. The sink goes on writing meanwhile instead of waiting for
/// the disk or the network, which with a large output stalled the whole
/// pipeline for the length of the sync. Work that failed can run again:
/// the coordinator retries a checkpoint whose upload failed.
pub struct Durability(Box<dyn FnMut() -> Result<(), EngineError> + Send>);

impl Durability {
    /// Work to run before the checkpoint commits; it may run again after
    /// it failed.
    pub fn new(work: impl FnMut() -> Result<(), EngineError> + Send + 'static) -> Durability {
        Durability(Box::new(work))
    }

    /// Runs every piece of work, at the same time when there are several
    /// (one per sink), keeps in `work` the pieces that failed, and returns
    /// the first error.
    ///
    /// # Errors
    /// The first piece's error, in `work`'s order.
    pub fn run_all(work: &mut Vec<Durability>) -> Result<(), EngineError> {
        let results: Vec<Result<(), EngineError>> = if work.len() <= 1 {
            work.iter_mut().map(|w| (w.0)()).collect()
        } else {
            std::thread::scope(|scope| {
                let running: Vec<_> = work
                    .iter_mut()
                    .map(|w| scope.spawn(move || (w.0)()))
                    .collect();
                running
                    .into_iter()
                    .map(|handle| {
                        handle.join().unwrap_or_else(|_| {
                            Err(EngineError::Panicked(
                                "checkpoints".into(),
                                "a sink's sync panicked".into(),
                            ))
                        })
                    })
                    .collect()
            })
        };
        let mut first = Ok(());
        let mut failed = results.iter().map(Result::is_err);
        work.retain(|_| failed.next().unwrap_or(false));
        for result in results {
            first = first.and(result);
        }
        first
    }
}

impl std::fmt::Debug for Durability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Durability")
    }
}

/// What tasks share with the coordinator.
#[derive(Debug, Clone)]
pub struct CheckpointCtx {
    requested: Arc<AtomicU64>,
    committed: Arc<AtomicU64>,
    early: Arc<AtomicBool>,
    stopping: Arc<AtomicBool>,
    parts: Sender<Part>,
}

impl CheckpointCtx {
    /// A handle whose counters start at `committed`, sending parts to
    /// `parts` (the coordinator's side).
    pub fn new(committed: u64, parts: Sender<Part>) -> CheckpointCtx {
        CheckpointCtx {
            requested: Arc::new(AtomicU64::new(committed)),
            committed: Arc::new(AtomicU64::new(committed)),
            early: Arc::new(AtomicBool::new(false)),
            stopping: Arc::new(AtomicBool::new(false)),
            parts,
        }
    }

    /// Asks tasks for checkpoint `id` (the coordinator).
    pub fn request(&self, id: u64) {
        self.requested.store(id, Ordering::Release);
    }

    /// Marks the next requested checkpoint as the last one of a graceful
    /// stop (the coordinator, before [`CheckpointCtx::request`]): a source
    /// that sends its barrier reads nothing more.
    pub fn begin_stop(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// Whether the job is stopping: a source that sees a checkpoint
    /// request sees this too, since it is set before the request.
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Records that checkpoint `id` is written (the coordinator).
    pub fn set_committed(&self, id: u64) {
        self.committed.store(id, Ordering::Release);
    }

    /// Takes a pending early request, if any (the coordinator).
    pub fn take_early(&self) -> bool {
        self.early.swap(false, Ordering::AcqRel)
    }

    /// Whether a task asked for an early checkpoint (the coordinator).
    pub fn early_pending(&self) -> bool {
        self.early.load(Ordering::Acquire)
    }

    /// The same counters, with parts going to `parts` instead.
    pub fn with_parts(&self, parts: Sender<Part>) -> CheckpointCtx {
        CheckpointCtx {
            parts,
            ..self.clone()
        }
    }
}

impl CheckpointCtx {
    /// The newest checkpoint the coordinator asked for.
    pub fn requested(&self) -> u64 {
        self.requested.load(Ordering::Acquire)
    }

    /// The newest checkpoint written to RocksDB.
    pub fn committed(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    /// Asks for a checkpoint now (a cache passed its memory budget).
    pub fn request_early(&self) {
        self.early.store(true, Ordering::Release);
    }

    /// Sends a part to the coordinator.
    ///
    /// # Errors
    /// [`EngineError::Disconnected`] when the coordinator is gone.
    pub fn report(&self, part: Part) -> Result<(), EngineError> {
        let task = part.task.clone();
        self.parts
            .send(part)
            .map_err(|_| EngineError::Disconnected(task))
    }
}

/// Where the test suite may abort the process to prove recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// After collecting every part of checkpoint N, before writing it.
    BeforeCommit(u64),
    /// After the batch of checkpoint N, or of the first checkpoint after
    /// it that leaves a run of window partials as a table file, committed,
    /// before that run is ingested.
    BeforeIngest(u64),
    /// Right after checkpoint N was written.
    AfterCommit(u64),
    /// In the middle of a sink's write after checkpoint N committed.
    SinkWrite(u64),
}

impl CrashPoint {
    /// Reads `KFLOW_CRASH_AT` (`before-commit:N`, `before-ingest:N`,
    /// `after-commit:N`, `sink-write:N`): a test hook, never set in production.
    pub fn from_env() -> Option<CrashPoint> {
        let value = std::env::var("KFLOW_CRASH_AT").ok()?;
        let (what, n) = value.split_once(':')?;
        let n = n.parse().ok()?;
        match what {
            "before-commit" => Some(CrashPoint::BeforeCommit(n)),
            "before-ingest" => Some(CrashPoint::BeforeIngest(n)),
            "after-commit" => Some(CrashPoint::AfterCommit(n)),
            "sink-write" => Some(CrashPoint::SinkWrite(n)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failing(times: u32) -> (Durability, Arc<AtomicU64>) {
        let runs = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&runs);
        let work = Durability::new(move || {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            if n < u64::from(times) {
                Err(EngineError::Disconnected(format!("attempt {n}")))
            } else {
                Ok(())
            }
        });
        (work, runs)
    }

    #[test]
    fn failed_work_is_kept_and_runs_again_alone() {
        let (ok, ok_runs) = failing(0);
        let (flaky, flaky_runs) = failing(2);
        let mut work = vec![ok, flaky];
        assert!(Durability::run_all(&mut work).is_err());
        assert_eq!(work.len(), 1, "only the failed piece is left");
        assert!(Durability::run_all(&mut work).is_err());
        assert!(Durability::run_all(&mut work).is_ok());
        assert!(work.is_empty());
        assert_eq!(ok_runs.load(Ordering::SeqCst), 1);
        assert_eq!(flaky_runs.load(Ordering::SeqCst), 3);
    }
}
