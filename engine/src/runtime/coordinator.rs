//! The checkpoint coordinator: asks for checkpoints on the job's interval
//! (or when a cache passes its budget), collects one [`Part`] from every
//! task, and commits them atomically.
//!
//! When every task has answered, the coordinator runs the parts' durability
//! work (sink syncs), then writes all state changes and the metadata with
//! every task's position in one synced RocksDB write: the database always
//! equals the last completed checkpoint. Only then may window caches evict
//! what they snapshotted.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kflow_state::{Family, StateBatch, StateStore, WriteMode};

use crate::dataflow::checkpoint::{CheckpointCtx, CrashPoint, Durability, Part, PartKind};
use crate::dataflow::metrics::Metrics;
use crate::error::EngineError;
use crate::runtime::durable::upload::{UploadJob, Uploader};
use crate::runtime::meta::{CheckpointMeta, META_KEY};

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
    /// The checkpoint a graceful stop ended the run with.
    pub stopped_at: Option<u64>,
}

/// A request to stop gracefully (SIGTERM, SIGINT), raised from outside the
/// run.
pub type StopRequest = Arc<AtomicBool>;

/// Collects parts and commits checkpoints.
pub struct Coordinator {
    store: Arc<StateStore>,
    ctx: CheckpointCtx,
    receiver: Receiver<Part>,
    interval: Option<Duration>,
    tasks: Vec<String>,
    meta: CheckpointMeta,
    crash: Option<CrashPoint>,
    stop: Option<StopRequest>,
    metrics: Arc<Metrics>,
    /// Test hook `KFLOW_SLOW_CHECKPOINT_MS`: each checkpoint's write takes
    /// this much longer, so a test can signal the process mid-write.
    slow_write: Option<Duration>,
    /// Uploads committed checkpoints to the checkpoint store, and where
    /// their snapshots wait.
    uploader: Option<(Uploader, std::path::PathBuf)>,
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
        let ctx = CheckpointCtx::new(meta.id, parts);
        Coordinator {
            store,
            ctx,
            receiver,
            interval,
            tasks,
            meta,
            crash: CrashPoint::from_env(),
            stop: None,
            metrics: Arc::new(Metrics::default()),
            slow_write: std::env::var("KFLOW_SLOW_CHECKPOINT_MS")
                .ok()
                .and_then(|ms| ms.parse().ok())
                .map(Duration::from_millis),
            uploader: None,
        }
    }

    /// Copies committed checkpoints to the checkpoint store through
    /// `uploader`, snapshotting them into `snapshots` first.
    pub fn set_uploader(&mut self, uploader: Uploader, snapshots: std::path::PathBuf) {
        self.uploader = Some((uploader, snapshots));
    }

    /// Hands checkpoint `id`, just committed, to the uploader: unless one
    /// is under way, or always when `last` (the run's final or stopping
    /// checkpoint, which is then waited for).
    fn upload(&mut self, id: u64, last: bool) {
        let Some((uploader, snapshots)) = &mut self.uploader else {
            return;
        };
        if uploader.is_busy() && !last {
            return;
        }
        let dir = snapshots.join(id.to_string());
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::create_dir_all(snapshots);
        match self.store.snapshot_to(&dir) {
            Ok(()) => uploader.submit(UploadJob {
                id,
                dir,
                meta: self.meta.clone(),
            }),
            Err(e) => {
                self.metrics.checkpoints.upload_failed();
                tracing::warn!(
                    "checkpoint {id}: no snapshot to upload: {}",
                    crate::error::causes(&e)
                );
            }
        }
        if last {
            uploader.finish();
        }
    }

    /// Where to record the checkpoints' count, duration and size.
    pub fn set_metrics(&mut self, metrics: Arc<Metrics>) {
        let interval_ms = self.interval.map_or(0, |i| i.as_millis() as u64);
        metrics
            .checkpoints
            .interval_ms
            .store(interval_ms, Ordering::Relaxed);
        self.metrics = metrics;
    }

    /// Stops the run gracefully once `stop` is raised: one more checkpoint,
    /// after whose barrier the sources read nothing, then [`Coordinator::run`]
    /// returns with [`CheckpointStats::stopped_at`].
    pub fn set_stop_request(&mut self, stop: StopRequest) {
        self.stop = Some(stop);
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
    /// checkpoint; or, on a stop request, until the checkpoint that ends
    /// the stop is written (the tasks are left waiting: the process exits).
    ///
    /// # Errors
    /// State errors writing a checkpoint, or [`EngineError::Disconnected`]
    /// when a task died (its own error is the cause).
    pub fn run(mut self) -> Result<CheckpointStats, EngineError> {
        // Only tasks hold senders from here on: if they all die, recv fails.
        let (dead, _) = std::sync::mpsc::channel();
        self.ctx = self.ctx.with_parts(dead);
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
        let mut stopping = false;
        loop {
            // Wait until a checkpoint is due or every task has ended.
            loop {
                let all_final = queues.iter().all(|(task, q)| {
                    ended.contains(task) || q.iter().any(|p| p.checkpoint.is_none())
                });
                let due = self.interval.is_some_and(|i| last.elapsed() >= i);
                if !stopping
                    && self
                        .stop
                        .as_ref()
                        .is_some_and(|s| s.load(Ordering::Acquire))
                {
                    // Before the request: a source that sees it sees this.
                    self.ctx.begin_stop();
                    self.metrics.stopping.store(true, Ordering::Relaxed);
                    stopping = true;
                    tracing::info!("stopping: taking a final checkpoint");
                    break;
                }
                if all_final || due || self.ctx.early_pending() {
                    break;
                }
                self.receive(&mut queues, Duration::from_millis(10))?;
            }
            let early = self.ctx.take_early();
            let id = self.meta.id + 1;
            self.ctx.request(id);
            let requested = Instant::now();
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
            let (batch, mut durability) = self.take_parts(&mut queues, &mut ended, id);
            let finished = ended.len() == queues.len();
            let started = Instant::now();
            let bytes_before = stats.bytes;
            let written = self
                .make_durable(id, &mut durability)
                .map(|()| stats.write_time += started.elapsed())
                .and_then(|()| self.commit(id, finished, batch, &mut stats));
            let checkpoints = &self.metrics.checkpoints;
            if let Err(e) = written {
                checkpoints.failures.fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
            let now = chrono::Utc::now().timestamp_millis();
            let bytes = stats.bytes - bytes_before;
            checkpoints.committed(id, requested.elapsed(), bytes, now);
            self.upload(id, finished || stopping);
            if early {
                stats.early += 1;
            }
            last = Instant::now();
            if finished {
                return Ok(stats);
            }
            if stopping {
                stats.stopped_at = Some(id);
                return Ok(stats);
            }
        }
    }

    /// Runs checkpoint `id`'s durability work. Work that failed for a
    /// reason that may pass (S3 unreachable or throttling) fails the
    /// checkpoint: the failure is counted and logged, and the failed work
    /// runs again after a backoff until it succeeds. The pipeline goes on
    /// meanwhile, the sinks buffering their rows, until the caches' budget
    /// asks for a checkpoint and waits for it.
    ///
    /// # Errors
    /// Work that failed for good (a disk error).
    fn make_durable(&self, id: u64, work: &mut Vec<Durability>) -> Result<(), EngineError> {
        let mut wait = Duration::from_millis(500);
        loop {
            match Durability::run_all(work) {
                Ok(()) => return Ok(()),
                Err(e) if e.is_retryable() => {
                    self.metrics
                        .checkpoints
                        .failures
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        "checkpoint {id} failed, retrying in {wait:?}: {}",
                        crate::error::causes(&e)
                    );
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(10));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Takes each live task's parts up to and including the one for `id`,
    /// in the order it sent them, into the metadata; a final part marks
    /// the task ended. Returns their state changes and durability work.
    fn take_parts(
        &mut self,
        queues: &mut BTreeMap<String, VecDeque<Part>>,
        ended: &mut BTreeSet<String>,
        id: u64,
    ) -> (StateBatch, Vec<Durability>) {
        let mut batch = StateBatch::new();
        let mut durability = Vec::new();
        for (task, queue) in queues.iter_mut() {
            if ended.contains(task) {
                continue;
            }
            while let Some(part) = queue.pop_front() {
                let is_final = part.checkpoint.is_none();
                batch.append(part.batch);
                durability.extend(part.durability);
                let filed = match part.kind {
                    PartKind::Source => &mut self.meta.sources,
                    PartKind::Window => &mut self.meta.windows,
                    PartKind::Sink => &mut self.meta.sinks,
                };
                filed.insert(task.clone(), part.state);
                if is_final {
                    ended.insert(task.clone());
                    break;
                }
                if part.checkpoint == Some(id) {
                    break;
                }
            }
        }
        (batch, durability)
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
        let meta = self.meta.to_bytes()?;
        batch.put(Family::Meta, META_KEY, &meta);
        if self.crash == Some(CrashPoint::BeforeCommit(id)) {
            eprintln!("kflow: test hook: aborting before checkpoint {id} is written");
            std::process::abort();
        }
        if let Some(pause) = self.slow_write {
            eprintln!("kflow: test hook: writing checkpoint {id} slowly");
            std::thread::sleep(pause);
        }
        let started = Instant::now();
        stats.bytes += batch.bytes() as u64;
        let run = self.store.commit(batch, WriteMode::Synced)?;
        if let Some(run) = run {
            if matches!(self.crash, Some(CrashPoint::BeforeIngest(n)) if id >= n) {
                eprintln!("kflow: test hook: aborting before checkpoint {id}'s run is ingested");
                std::process::abort();
            }
            self.store.ingest(run)?;
        }
        stats.write_time += started.elapsed();
        stats.count += 1;
        self.ctx.set_committed(id);
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
