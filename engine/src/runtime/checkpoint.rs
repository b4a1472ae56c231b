//! Aligned checkpoints: what every task contributes, and the coordinator
//! that commits them atomically.
//!
//! The coordinator asks sources to inject barrier N (an atomic counter they
//! poll between records). A source sends barrier N downstream right after
//! the record it last processed and reports its position; a window
//! partition or sink waits until barrier N has arrived on every live input
//! (buffering what comes after it on the inputs that are ahead), snapshots
//! its state and forwards the barrier. A task that ends reports a *final*
//! part instead, and that part stands in for every later checkpoint.
//!
//! When every task has answered, the coordinator writes all state changes,
//! every position, watermark and sink length, and the checkpoint metadata in
//! one synced RocksDB write: the database always equals the last completed
//! checkpoint. Only then may window caches evict what they snapshotted.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kflow_state::{Family, StateBatch, StateStore};
use serde::{Deserialize, Serialize};

use crate::error::EngineError;

/// The metadata key of the last completed checkpoint.
pub const META_KEY: &[u8] = b"checkpoint";

/// A source's position and clock.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceState {
    /// Byte offset of the next unread line.
    pub offset: u64,
    /// Lines consumed so far (the next line is `line + 1`).
    pub line: u64,
    /// Largest event time seen (drives the watermark).
    pub max_time: Option<i64>,
    /// The source reached its end.
    pub ended: bool,
    /// Kinesis sources: shard positions and lineage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kinesis: Option<KinesisState>,
}

/// A Kinesis source's checkpointed positions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KinesisState {
    /// The stream's creation time (epoch ms): a different value on restart
    /// means the stream was deleted and recreated, so every position is void.
    pub stream_created_ms: Option<i64>,
    /// Where shards without a position start: epoch ms for `AT_TIMESTAMP`
    /// (`start_at = "latest"` is resolved to the first start's time), or
    /// `None` for `TRIM_HORIZON`.
    pub start_ms: Option<i64>,
    /// Records arriving at or after this time are not read (`stop_at`,
    /// resolved at the first start).
    pub stop_ms: Option<i64>,
    /// Every shard this source started or finished, by shard id.
    pub shards: BTreeMap<String, ShardState>,
}

/// One shard's checkpointed position.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShardState {
    /// Sequence number of the last Kinesis record processed completely
    /// (restart reads `AFTER_SEQUENCE_NUMBER` it).
    pub sequence: Option<String>,
    /// Subsequence number of the last user record of that record when it
    /// was a KPL aggregate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subsequence: Option<u64>,
    /// Arrival time of that record (epoch ms).
    pub arrival_ms: Option<i64>,
    /// Largest event time seen on this shard.
    pub max_time: Option<i64>,
    /// Records read from this shard.
    pub records: u64,
    /// The shard reached SHARD_END and every record was processed (or it was
    /// closed before the source's start position).
    pub finished: bool,
}

/// A window partition's clock and where its state lives.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowState {
    /// Every window ending at or before this has fired.
    pub fired_through: i64,
    /// The operator watermark.
    pub watermark: i64,
    /// Each input's watermark, by emitter name.
    pub inputs: BTreeMap<String, i64>,
    /// Pane/window end times whose partials are in RocksDB key by key
    /// (loaded lazily after a restart).
    pub stored_times: Vec<i64>,
    /// Pane/window end times stored as packs (loaded whole at start).
    #[serde(default)]
    pub packed_times: Vec<i64>,
    /// Number of (time, key) partials stored.
    pub entries: u64,
    /// The partition finished (all inputs ended, everything fired).
    pub ended: bool,
}

/// A sink's committed output.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SinkState {
    /// The file, for file sinks.
    pub path: Option<PathBuf>,
    /// Committed length in bytes: everything after it is uncommitted.
    pub length: u64,
}

/// The metadata of one completed checkpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// Checkpoint id (1, 2, ...).
    pub id: u64,
    /// Wall time of the commit, epoch ms.
    pub created_ms: i64,
    /// The job's name.
    pub job: String,
    /// Partitions per window (restored as is).
    pub parallelism: usize,
    /// Descriptions of the stateful parts of the job (sources, windows).
    pub stateful: BTreeMap<String, String>,
    /// Descriptions of the stateless parts (filters, sinks).
    pub stateless: BTreeMap<String, String>,
    /// Source positions by source name.
    pub sources: BTreeMap<String, SourceState>,
    /// Window partition states by `window/partition`.
    pub windows: BTreeMap<String, WindowState>,
    /// Sink states by sink name (`(dead-letter)` for the dead-letter file).
    pub sinks: BTreeMap<String, SinkState>,
    /// Every task had ended: a bounded run completed.
    pub finished: bool,
}

impl CheckpointMeta {
    /// Reads the last completed checkpoint, if any.
    ///
    /// # Errors
    /// State errors, or metadata that does not parse (corruption).
    pub fn load(store: &StateStore) -> Result<Option<CheckpointMeta>, EngineError> {
        let Some(bytes) = store.get(Family::Meta, META_KEY)? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            EngineError::State(kflow_state::StateError::Corrupt(format!(
                "checkpoint metadata does not parse: {e}"
            )))
        })
    }
}

/// What a task reports.
#[derive(Debug)]
pub enum PartState {
    /// From a source.
    Source(SourceState),
    /// From a window partition.
    Window(WindowState),
    /// From a sink, with what makes its output durable when that is left
    /// to the coordinator.
    Sink(SinkState, Option<Durability>),
}

/// Work that makes a part's output durable (a file sink's `fdatasync`),
/// run by the coordinator before it commits the checkpoint. The sink goes on
/// writing meanwhile instead of waiting for the disk, which with a large
/// output stalled the whole pipeline for the length of the sync.
pub struct Durability(Box<dyn FnOnce() -> Result<(), EngineError> + Send>);

impl Durability {
    /// Work to run before the checkpoint commits.
    pub fn new(work: impl FnOnce() -> Result<(), EngineError> + Send + 'static) -> Durability {
        Durability(Box::new(work))
    }

    /// Runs every piece of work, at the same time when there are several
    /// (one per file sink), and returns the first error.
    fn run_all(work: Vec<Durability>) -> Result<(), EngineError> {
        if work.len() <= 1 {
            return work.into_iter().try_for_each(|w| (w.0)());
        }
        std::thread::scope(|scope| {
            let running: Vec<_> = work
                .into_iter()
                .map(|w| scope.spawn(move || (w.0)()))
                .collect();
            let mut first = Ok(());
            for handle in running {
                let result = handle.join().unwrap_or_else(|_| {
                    Err(EngineError::Panicked(
                        "checkpoints".into(),
                        "a sink's sync panicked".into(),
                    ))
                });
                first = first.and(result);
            }
            first
        })
    }
}

impl std::fmt::Debug for Durability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Durability")
    }
}

/// One task's contribution to a checkpoint.
#[derive(Debug)]
pub struct Part {
    /// The task (`source`, `window/0`, `sink`).
    pub task: String,
    /// The checkpoint, or `None` for a task's final part.
    pub checkpoint: Option<u64>,
    /// Its position or clock.
    pub state: PartState,
    /// Its state changes since its previous part.
    pub batch: StateBatch,
}

/// What tasks share with the coordinator.
#[derive(Debug, Clone)]
pub struct CheckpointCtx {
    requested: Arc<AtomicU64>,
    committed: Arc<AtomicU64>,
    early: Arc<AtomicBool>,
    parts: Sender<Part>,
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
    /// Right after checkpoint N was written.
    AfterCommit(u64),
    /// In the middle of a sink's write after checkpoint N committed.
    SinkWrite(u64),
}

impl CrashPoint {
    /// Reads `KFLOW_CRASH_AT` (`before-commit:N`, `after-commit:N`,
    /// `sink-write:N`): a test hook, never set in production.
    pub fn from_env() -> Option<CrashPoint> {
        let value = std::env::var("KFLOW_CRASH_AT").ok()?;
        let (what, n) = value.split_once(':')?;
        let n = n.parse().ok()?;
        match what {
            "before-commit" => Some(CrashPoint::BeforeCommit(n)),
            "after-commit" => Some(CrashPoint::AfterCommit(n)),
            "sink-write" => Some(CrashPoint::SinkWrite(n)),
            _ => None,
        }
    }
}

/// Totals of a run's checkpoints.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckpointStats {
    /// Checkpoints committed in this run.
    pub count: u64,
    /// Of which early (memory budget).
    pub early: u64,
    /// Time spent writing them.
    pub write_time: Duration,
    /// Bytes of state written.
    pub bytes: u64,
}

/// Collects parts and commits checkpoints.
pub struct Coordinator {
    store: Arc<StateStore>,
    ctx: CheckpointCtx,
    receiver: Receiver<Part>,
    interval: Option<Duration>,
    tasks: Vec<String>,
    meta: CheckpointMeta,
    crash: Option<CrashPoint>,
}

impl Coordinator {
    /// A coordinator for `tasks`, continuing from `meta` (restored, or a
    /// fresh one with id 0), checkpointing every `interval` (`None`: only
    /// when a cache asks).
    pub fn new(
        store: Arc<StateStore>,
        interval: Option<Duration>,
        tasks: Vec<String>,
        meta: CheckpointMeta,
    ) -> Coordinator {
        let (parts, receiver) = std::sync::mpsc::channel();
        let committed = meta.id;
        let ctx = CheckpointCtx {
            requested: Arc::new(AtomicU64::new(committed)),
            committed: Arc::new(AtomicU64::new(committed)),
            early: Arc::new(AtomicBool::new(false)),
            parts,
        };
        Coordinator {
            store,
            ctx,
            receiver,
            interval,
            tasks,
            meta,
            crash: CrashPoint::from_env(),
        }
    }

    /// Sets the tasks whose parts make a checkpoint complete.
    pub fn set_tasks(&mut self, tasks: Vec<String>) {
        self.tasks = tasks;
    }

    /// The handle tasks use.
    pub fn ctx(&self) -> CheckpointCtx {
        self.ctx.clone()
    }

    /// Runs until every task has sent its final part, then writes the final
    /// checkpoint.
    ///
    /// # Errors
    /// State errors writing a checkpoint, or [`EngineError::Disconnected`]
    /// when a task died (its own error is the cause).
    pub fn run(mut self) -> Result<CheckpointStats, EngineError> {
        // Only tasks hold senders from here on: if they all die, recv fails.
        let (dead, _) = std::sync::mpsc::channel();
        self.ctx.parts = dead;
        let mut queues: BTreeMap<String, VecDeque<Part>> = self
            .tasks
            .iter()
            .map(|t| (t.clone(), VecDeque::new()))
            .collect();
        // Tasks whose final part is committed: it stands for every later
        // checkpoint.
        let mut ended: BTreeSet<String> = BTreeSet::new();
        let mut stats = CheckpointStats::default();
        let mut last = Instant::now();
        loop {
            // Wait until a checkpoint is due or every task has ended.
            loop {
                let all_final = queues.iter().all(|(task, q)| {
                    ended.contains(task) || q.iter().any(|p| p.checkpoint.is_none())
                });
                let due = self.interval.is_some_and(|i| last.elapsed() >= i);
                if all_final || due || self.ctx.early.load(Ordering::Acquire) {
                    break;
                }
                self.receive(&mut queues, Duration::from_millis(10))?;
            }
            let early = self.ctx.early.swap(false, Ordering::AcqRel);
            let id = self.meta.id + 1;
            self.ctx.requested.store(id, Ordering::Release);
            // Collect part `id` (or a final part) from every task.
            loop {
                let complete = queues.iter().all(|(task, q)| {
                    ended.contains(task) || q.iter().any(|p| p.checkpoint.is_none_or(|c| c == id))
                });
                if complete {
                    break;
                }
                self.receive(&mut queues, Duration::from_millis(50))?;
            }
            let mut batch = StateBatch::new();
            let mut durability = Vec::new();
            for (task, queue) in &mut queues {
                if ended.contains(task) {
                    continue;
                }
                // The task's parts up to and including the one for `id`, in
                // the order it sent them.
                while let Some(part) = queue.pop_front() {
                    let is_final = part.checkpoint.is_none();
                    batch.append(part.batch);
                    match part.state {
                        PartState::Source(s) => {
                            self.meta.sources.insert(task.clone(), s);
                        }
                        PartState::Window(w) => {
                            self.meta.windows.insert(task.clone(), w);
                        }
                        PartState::Sink(s, durable) => {
                            self.meta.sinks.insert(task.clone(), s);
                            durability.extend(durable);
                        }
                    }
                    if is_final {
                        ended.insert(task.clone());
                        break;
                    }
                    if part.checkpoint == Some(id) {
                        break;
                    }
                }
            }
            let finished = ended.len() == queues.len();
            let started = Instant::now();
            Durability::run_all(durability)?;
            stats.write_time += started.elapsed();
            self.commit(id, finished, batch, &mut stats)?;
            if early {
                stats.early += 1;
            }
            last = Instant::now();
            if finished {
                return Ok(stats);
            }
        }
    }

    fn receive(
        &self,
        queues: &mut BTreeMap<String, VecDeque<Part>>,
        timeout: Duration,
    ) -> Result<(), EngineError> {
        match self.receiver.recv_timeout(timeout) {
            Ok(part) => {
                if let Some(queue) = queues.get_mut(&part.task) {
                    queue.push_back(part);
                }
                Ok(())
            }
            Err(RecvTimeoutError::Timeout) => Ok(()),
            Err(RecvTimeoutError::Disconnected) => {
                Err(EngineError::Disconnected("checkpoint coordinator".into()))
            }
        }
    }

    fn commit(
        &mut self,
        id: u64,
        finished: bool,
        mut batch: StateBatch,
        stats: &mut CheckpointStats,
    ) -> Result<(), EngineError> {
        self.meta.id = id;
        self.meta.finished = finished;
        self.meta.created_ms = chrono::Utc::now().timestamp_millis();
        let meta = serde_json::to_vec(&self.meta).map_err(|e| {
            EngineError::State(kflow_state::StateError::Corrupt(format!(
                "checkpoint metadata: {e}"
            )))
        })?;
        batch.put(Family::Meta, META_KEY, &meta);
        if self.crash == Some(CrashPoint::BeforeCommit(id)) {
            eprintln!("kflow: test hook: aborting before checkpoint {id} is written");
            std::process::abort();
        }
        let started = Instant::now();
        stats.bytes += batch.bytes() as u64;
        self.store.write(batch, true)?;
        stats.write_time += started.elapsed();
        stats.count += 1;
        self.ctx.committed.store(id, Ordering::Release);
        if self.crash == Some(CrashPoint::AfterCommit(id)) {
            eprintln!("kflow: test hook: aborting after checkpoint {id} was written");
            std::process::abort();
        }
        tracing::debug!(
            checkpoint = id,
            finished,
            rocksdb_memory = self.store.memory(),
            "checkpoint committed"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_window_state_from_before_packs_still_reads() {
        let old = r#"{"fired_through":60000,"watermark":61000,"inputs":{"clicks":61000},
                      "stored_times":[120000],"entries":5,"ended":false}"#;
        let state: WindowState = serde_json::from_str(old).unwrap();
        assert_eq!(state.stored_times, [120_000]);
        assert!(state.packed_times.is_empty());
    }
}
