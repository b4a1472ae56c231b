//! A cluster worker: what `kflow run job.toml` is for a job with
//! `[job.cluster]`. It keeps leases in the lease table
//! ([`crate::cluster::LeaseKeeper`]) and runs one child process per lease
//! it holds, `kflow run job.toml --part LEASE` ([`crate::cluster::Part`]).
//!
//! - *Leases first.* The worker creates the shuffle stream and every lease
//!   the job needs (one per key group, one per source shard with its
//!   parents; new shards as they appear), then heartbeats every third of
//!   `failover_timeout`.
//! - *A part per lease.* On taking a lease it drops any local state of
//!   that part (another worker may have moved it on since) and starts the
//!   part, which restores the part's last checkpoint from the store. A
//!   part that crashes is started again while the lease is held; one
//!   that died after its lease lapsed (its fence stopped it while the
//!   worker stalled) has its lease released, never held without a part.
//! - *Hand-over.* A lease another worker claims is handed back after its
//!   part stopped gracefully (SIGTERM: a final checkpoint in the store). A
//!   lease lost (renewals failed until it lapsed, or taken after this
//!   worker stalled) has its part SIGKILLed at once. Parts die with their
//!   worker (a part watches its parent process and exits within 100 ms of
//!   losing it), so a SIGKILLed worker leaves no part running that another
//!   worker's part could overlap.
//! - *End.* A part that exits 0 finished (a shard read to its end or stop
//!   position, a key group whose source shards all ended): its lease is
//!   released `ended`. The worker exits 0 when every lease is ended, or
//!   after a graceful stop (its parts stopped, its leases handed back).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kflow_jobs::JobPlan;

use crate::aws::kinesis::ensure_stream;
use crate::aws::{connect, AwsError};
use crate::cluster::{fence, Event, Lease, LeaseKeeper, LeaseTable, Part};
use crate::error::EngineError;
use crate::runtime::observe::progress;
use crate::runtime::topology;
use crate::sources::kinesis::discovery::list_shards;
use crate::sources::kinesis::stream_of;

/// How often the source stream's shards are listed for new leases.
const DISCOVERY_EVERY: Duration = Duration::from_secs(5);
/// A part that fails this many times in a row, each within
/// [`QUICK_FAILURE`] of its start, fails the worker.
const MAX_QUICK_FAILURES: u32 = 5;
const QUICK_FAILURE: Duration = Duration::from_secs(10);

/// How to run a worker.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// This program (parts run as `EXE run JOB --part LEASE`).
    pub exe: PathBuf,
    /// The job file, as given.
    pub job: PathBuf,
    /// The worker's id in the lease table.
    pub id: String,
    /// Raised to stop gracefully.
    pub stop: Arc<AtomicBool>,
}

/// What a worker did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerSummary {
    /// Parts started (restarts included).
    pub started: u64,
    /// Parts that finished (their leases released `ended`).
    pub finished: u64,
    /// Leases handed back to a claiming worker or at the stop.
    pub handed_back: u64,
    /// Leases lost (their parts killed).
    pub lost: u64,
}

/// A running part.
struct Running {
    child: Child,
    part: Part,
    started: Instant,
    /// Asked to stop, to hand the lease back.
    handing_back: bool,
    /// Failures in a row, each soon after its start.
    quick_failures: u32,
}

/// A default worker id: the host name and process id.
pub fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_string());
    format!("{host}-{}", std::process::id())
}

/// Runs the worker until every lease ended or a graceful stop.
///
/// # Errors
/// [`EngineError::NotClustered`] for a job without `[job.cluster]`; the
/// lease table's, the shuffle stream's or a part's start failures; a part
/// that keeps failing right after its start.
pub fn run_worker(plan: &JobPlan, options: &WorkerOptions) -> Result<WorkerSummary, EngineError> {
    let Some(cluster) = &plan.cluster else {
        return Err(EngineError::NotClustered(
            plan.job_path.display().to_string(),
        ));
    };
    let Some((stream, endpoint)) = topology::kinesis_source(plan).map(stream_of) else {
        return Err(EngineError::Shuffle(
            "a cluster job needs a Kinesis source".into(),
        ));
    };
    let kinesis_error = |what: &'static str, name: &str, source: AwsError| EngineError::Kinesis {
        what,
        name: name.to_string(),
        source,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| kinesis_error("source", &plan.name, AwsError::Runtime(e)))?;
    let client = runtime.block_on(connect(&endpoint));
    if let Some(shuffle) = &cluster.shuffle_stream {
        let shards = i32::try_from(cluster.shuffle_shards).unwrap_or(i32::MAX);
        runtime
            .block_on(ensure_stream(&client, shuffle, shards))
            .map_err(|e| kinesis_error("shuffle stream", shuffle, e))?;
    }
    let table = LeaseTable::open(&cluster.leases_table, cluster.endpoint.as_deref())?;
    let mut keeper = LeaseKeeper::new(table, &options.id, cluster.failover_timeout);
    if cluster.shuffle_stream.is_some() {
        let groups: Vec<(String, Vec<String>)> = (0..cluster.key_groups)
            .map(|g| (Lease::group_key(g), Vec::new()))
            .collect();
        keeper.create(&groups)?;
    }
    let heartbeat = cluster.failover_timeout / 3;
    let mut worker = Worker {
        plan,
        options,
        running: BTreeMap::new(),
        summary: WorkerSummary::default(),
    };
    let mut next_discovery = Instant::now();
    tracing::info!("worker {} joins job `{}`", options.id, plan.name);
    loop {
        if Instant::now() >= next_discovery {
            let shards = runtime
                .block_on(list_shards(&client, &stream))
                .map_err(|e| kinesis_error("source", &plan.name, e))?;
            let leases: Vec<(String, Vec<String>)> = shards
                .into_iter()
                .map(|s| (Lease::shard_key(&s.id), s.parents))
                .collect();
            keeper.create(&leases)?;
            next_discovery = Instant::now() + DISCOVERY_EVERY;
        }
        if options.stop.load(Ordering::Acquire) {
            worker.stop_all(&mut keeper)?;
            return Ok(worker.summary);
        }
        let beat = Instant::now();
        let status = worker.status();
        // Fences right after the renewals, before the slower table scan.
        let renewed = keeper.renew(&status)?;
        worker.fence(&keeper)?;
        for event in renewed.into_iter().chain(keeper.balance()?) {
            worker.on_event(&mut keeper, event)?;
        }
        worker.reap(&mut keeper)?;
        if worker.running.is_empty() && keeper.held().next().is_none() {
            let leases = keeper.table().leases()?;
            if !leases.is_empty() && leases.iter().all(|l| l.ended) {
                tracing::info!("worker {}: every lease ended", options.id);
                return Ok(worker.summary);
            }
        }
        // One heartbeat per period, however long this one's calls took.
        std::thread::sleep(heartbeat.saturating_sub(beat.elapsed()));
    }
}

struct Worker<'a> {
    plan: &'a JobPlan,
    options: &'a WorkerOptions,
    running: BTreeMap<String, Running>,
    summary: WorkerSummary,
}

impl Worker<'_> {
    /// Each held lease's progress, for the lease table: the part's own
    /// report (its lag) after how long it has run.
    fn status(&self) -> HashMap<String, String> {
        self.running
            .iter()
            .map(|(key, r)| {
                let state = if r.handing_back {
                    "handing back"
                } else {
                    "running"
                };
                let mut text = format!(
                    "{state}, pid {}, for {} s",
                    r.child.id(),
                    r.started.elapsed().as_secs()
                );
                if let Some(progress) = progress::read(&r.part.progress_path(&self.plan.state_dir))
                {
                    text.push_str(": ");
                    text.push_str(&progress);
                }
                (key.clone(), text)
            })
            .collect()
    }

    /// Tells every running part until when its lease is valid.
    fn fence(&self, keeper: &LeaseKeeper) -> Result<(), EngineError> {
        for (key, running) in &self.running {
            if let Some(until) = keeper.valid_until(key) {
                let _ = self.write_fence(&running.part, until)?;
            }
        }
        Ok(())
    }

    /// Writes `part`'s fence for a lease valid until `until`; returns the
    /// fence's deadline.
    fn write_fence(&self, part: &Part, until: Instant) -> Result<Instant, EngineError> {
        let path = part.fence_path(&self.plan.state_dir);
        let failover = self
            .plan
            .cluster
            .as_ref()
            .map_or(Duration::ZERO, |c| c.failover_timeout);
        let deadline = fence::deadline(until, failover);
        fence::write(&path, deadline).map_err(|e| {
            EngineError::Shuffle(format!(
                "cannot write part {part}'s fence {}: {e}",
                path.display()
            ))
        })?;
        Ok(deadline)
    }

    fn on_event(&mut self, keeper: &mut LeaseKeeper, event: Event) -> Result<(), EngineError> {
        match event {
            Event::Gained { key, .. } => {
                let Some(part) = Part::from_lease(&key) else {
                    return Ok(());
                };
                // Another worker may have moved the part on since this one
                // last ran it: start from the store's checkpoint.
                let _ = std::fs::remove_dir_all(part.state_dir(&self.plan.state_dir));
                tracing::info!("worker {}: took {key}", self.options.id);
                self.start(keeper, key, part, 0)?;
            }
            Event::Lost { key, .. } => {
                if let Some(mut running) = self.running.remove(&key) {
                    let _ = running.child.kill();
                    let _ = running.child.wait();
                }
                self.summary.lost += 1;
                tracing::warn!("worker {}: lost {key}", self.options.id);
            }
            Event::Wanted { key } => match self.running.get_mut(&key) {
                Some(running) if !running.handing_back => {
                    terminate(&running.child);
                    running.handing_back = true;
                }
                Some(_) => {}
                None => {
                    keeper.release(&key, false)?;
                    self.summary.handed_back += 1;
                }
            },
        }
        Ok(())
    }

    /// Starts lease `key`'s part, or gives the lease up when it is no
    /// longer valid enough to run a part on.
    fn start(
        &mut self,
        keeper: &mut LeaseKeeper,
        key: String,
        part: Part,
        quick_failures: u32,
    ) -> Result<(), EngineError> {
        // Taken too slowly to use, or this worker stalled since it decided
        // to start the part (a stop signal, swap, starvation): another
        // worker may hold the lease by now.
        let Some(valid_until) = keeper.valid_until(&key) else {
            return Self::give_up(keeper, &key);
        };
        // The fence first: a part never runs on a lapsed or missing one.
        // Checked again after the write, which a stall may also delay;
        // a stall between this check and the spawn leaves the part a
        // lapsed fence, which it reads before it does anything.
        if self.write_fence(&part, valid_until)? <= Instant::now() {
            return Self::give_up(keeper, &key);
        }
        let mut command = Command::new(&self.options.exe);
        command
            .arg("run")
            .arg(&self.options.job)
            .args(["--part", &key, "-q"]);
        if self.plan.metrics.is_some() {
            // Parts share the machine: each serves on a port of its own.
            command.args(["--metrics", "127.0.0.1:0"]);
        }
        let child = command.spawn().map_err(|e| {
            EngineError::Shuffle(format!(
                "cannot start part {part} ({}): {e}",
                self.options.exe.display()
            ))
        })?;
        self.summary.started += 1;
        self.running.insert(
            key,
            Running {
                child,
                part,
                started: Instant::now(),
                handing_back: false,
                quick_failures,
            },
        );
        Ok(())
    }

    /// Handles parts that exited.
    fn reap(&mut self, keeper: &mut LeaseKeeper) -> Result<(), EngineError> {
        let exited: Vec<(String, bool)> = self
            .running
            .iter_mut()
            .filter_map(|(key, r)| match r.child.try_wait() {
                Ok(Some(status)) => Some((key.clone(), status.success())),
                _ => None,
            })
            .collect();
        for (key, success) in exited {
            let Some(running) = self.running.remove(&key) else {
                continue;
            };
            if running.handing_back {
                keeper.release(&key, false)?;
                self.summary.handed_back += 1;
                tracing::info!("worker {}: handed {key} back", self.options.id);
            } else if success {
                keeper.release(&key, true)?;
                self.summary.finished += 1;
                tracing::info!("worker {}: {key} finished", self.options.id);
            } else if keeper.valid_until(&key).is_some() {
                let quick = running.started.elapsed() < QUICK_FAILURE;
                let failures = if quick { running.quick_failures + 1 } else { 0 };
                if failures >= MAX_QUICK_FAILURES {
                    keeper.release(&key, false)?;
                    return Err(EngineError::Shuffle(format!(
                        "part {} failed {failures} times in a row right after starting",
                        running.part
                    )));
                }
                tracing::warn!(
                    "worker {}: {key} failed; starting it again",
                    self.options.id
                );
                // Restarts are a heartbeat apart: reaping is once per beat.
                self.start(keeper, key, running.part, failures)?;
            } else {
                // The part died with its lease lapsed (its fence stopped
                // it while this worker stalled).
                tracing::warn!(
                    "worker {}: {key} stopped after its lease lapsed; releasing it",
                    self.options.id
                );
                Self::give_up(keeper, &key)?;
                self.summary.lost += 1;
            }
        }
        Ok(())
    }

    /// Releases lease `key`, lapsed or about to: it may be another
    /// worker's by now, and if not, holding it without a part would keep
    /// it from everyone. Whoever takes it next resumes from the part's
    /// last checkpoint.
    fn give_up(keeper: &mut LeaseKeeper, key: &str) -> Result<(), EngineError> {
        // A failed write is no worse: the lease lapses in the table by
        // itself (this worker renews it no more).
        if let Err(e) = keeper.release(key, false) {
            if !e.is_retryable() {
                return Err(e);
            }
            tracing::warn!("leases: {}", crate::error::causes(&e));
        }
        Ok(())
    }

    /// A graceful stop: every part stops with a final checkpoint, then its
    /// lease goes back.
    fn stop_all(&mut self, keeper: &mut LeaseKeeper) -> Result<(), EngineError> {
        for running in self.running.values_mut() {
            if !running.handing_back {
                terminate(&running.child);
                running.handing_back = true;
            }
        }
        for (key, mut running) in std::mem::take(&mut self.running) {
            // A part that failed to stop cleanly still left its last
            // checkpoint: the next holder resumes there.
            let _ = running.child.wait();
            keeper.release(&key, false)?;
            self.summary.handed_back += 1;
        }
        let held: Vec<String> = keeper.held().map(|h| h.lease.key.clone()).collect();
        for key in held {
            keeper.release(&key, false)?;
        }
        Ok(())
    }
}

/// Asks a part to stop gracefully.
fn terminate(child: &Child) {
    let Ok(pid) = i32::try_from(child.id()) else {
        return;
    };
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    );
}
