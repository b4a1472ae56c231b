//! The Kinesis source: shard discovery and lineage, one reader per open
//! shard, and per-shard positions in the job's checkpoints.
//!
//! Readers are async tasks on a one-thread tokio runtime that only fetch:
//! [`reader`] polls GetRecords, [`subscribe`] holds an enhanced fan-out
//! subscription (`reader = "efo"`, as the consumer registered once by
//! [`crate::aws::consumer`]); both send the same batches in shard order.
//! This task owns everything that is checkpointed. It receives
//! every reader's batches on one channel, de-aggregates KPL records
//! ([`kpl`]), decodes and routes each user record, and remembers per shard
//! the sequence number of the last Kinesis record it processed. Barriers go
//! out between Kinesis records (never inside an aggregate), so a restart
//! reads each shard `AFTER_SEQUENCE_NUMBER` its checkpointed position and
//! applies every record once.
//!
//! Lineage: a shard starts only when each of its parents reached SHARD_END
//! and every parent record was processed (or the parent is no longer
//! listed), so a partition key's records keep their order across splits and
//! merges. Discovery lists the shards every few seconds and right after a
//! shard ends. The source's watermark is the minimum over the shards being
//! read (less idle ones, with `idle_timeout`); finished shards leave it.
//!
//! Positions: `start_at = "latest"` is pinned to the first start's time and
//! read `AT_TIMESTAMP`, so a restart before the first record still misses
//! nothing; `stop_at` is pinned the same way. On restart the stream's
//! creation time and each shard's oldest retained record are checked
//! against the checkpoint; a position that fell out of retention fails the
//! run unless the job says `on_expired = "trim_horizon"`.

pub mod discovery;
pub mod kpl;
mod parallel;
pub mod position;
pub mod reader;
mod record;
mod restore;
pub mod subscribe;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::Client;
use hdrhistogram::Histogram;
use kflow_jobs::{KinesisReader, KinesisSourcePlan, OnExpired, StartAt, StopAt};
use tokio::runtime::Runtime;
use tokio::sync::mpsc::{channel, Receiver, Sender};

use crate::aws::consumer::ensure_consumer;
use crate::aws::{connect, AwsError, Endpoint, RetryCounts, StreamId};
use crate::dataflow::metrics::{ShardMetrics, ShardStatus};
use crate::error::EngineError;
use crate::sources::core::SourceCore;
use crate::sources::ingest::{now_ms, Ingest};
use discovery::{list_shards, ShardInfo};
use parallel::Decoding;
use position::{KinesisPosition, ShardPosition, StreamPosition};
use reader::{FaultInjection, InFlight, ReaderEvent, ShardFeed, ShardReader, StartPosition};
use subscribe::{ShardSubscriber, SubscribeFaults, SubscriptionCounts};

/// The stream and endpoint a job's Kinesis source reads.
pub fn stream_of(k: &KinesisSourcePlan) -> (StreamId, Endpoint) {
    let stream = if k.is_arn {
        StreamId::Arn(k.stream.clone())
    } else {
        StreamId::Name(k.stream.clone())
    };
    let endpoint = Endpoint {
        region: k.region.clone(),
        url: k.endpoint.clone(),
    };
    (stream, endpoint)
}

/// How often shards are listed (besides right after a shard ends).
const DISCOVERY_EVERY: Duration = Duration::from_secs(5);
/// How long the task waits for a batch before doing its chores.
const TICK: Duration = Duration::from_millis(100);

/// Where and how to read.
#[derive(Debug, Clone)]
pub struct KinesisSettings {
    /// The stream.
    pub stream: StreamId,
    /// Region and endpoint.
    pub endpoint: Endpoint,
    /// Where to start without a checkpoint.
    pub start_at: StartAt,
    /// Where a bounded read stops.
    pub stop_at: Option<StopAt>,
    /// What to do about an expired checkpointed position.
    pub on_expired: OnExpired,
    /// Read only this shard, and end when it ends (a cluster worker's part;
    /// the shards that continue it are other parts).
    pub only_shard: Option<String>,
    /// Polling or enhanced fan-out.
    pub reader: ReaderKind,
}

/// How shards are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReaderKind {
    /// GetRecords.
    Polling,
    /// SubscribeToShard as the consumer of this name.
    Efo {
        /// The consumer's name (the job's name unless the job says).
        consumer_name: String,
    },
}

impl ReaderKind {
    /// The source plan's `reader`, a default consumer named after the job.
    pub fn of(reader: &KinesisReader, job: &str) -> ReaderKind {
        match reader {
            KinesisReader::Polling => ReaderKind::Polling,
            KinesisReader::Efo { consumer_name } => ReaderKind::Efo {
                consumer_name: consumer_name.clone().unwrap_or_else(|| job.to_string()),
            },
        }
    }
}

/// One Kinesis source task.
pub struct KinesisSourceTask {
    /// What every source does.
    pub core: SourceCore,
    /// Stream, endpoint, start and stop.
    pub settings: KinesisSettings,
    /// Where to resume (`None`: no checkpoint yet).
    pub restore: Option<KinesisPosition>,
    /// Threads that decode the fetched batches (fewer than 2: the task's
    /// own, see [`parallel`]).
    pub decode_threads: usize,
}

/// A shard this task knows.
#[derive(Debug, Default)]
struct Slot {
    state: ShardPosition,
    running: bool,
    stopped: bool,
    /// Start here instead of the default (an expired position reset).
    from_trim_horizon: bool,
    last_data: Option<Instant>,
    /// When the shard last returned records, epoch ms (for metrics).
    last_data_ms: Option<i64>,
    behind_ms: Option<i64>,
    records_this_run: u64,
    /// The unfinished parent a child shard waits for.
    waiting_for: Option<String>,
    /// Whether the last listing showed it closed (told to its subscriber).
    closed: Arc<AtomicBool>,
}

impl Slot {
    fn status(&self) -> ShardStatus {
        if self.state.finished {
            ShardStatus::Finished
        } else if self.stopped {
            ShardStatus::Stopped
        } else if !self.running && self.waiting_for.is_some() {
            ShardStatus::Waiting
        } else {
            ShardStatus::Reading
        }
    }
}

/// The running state of the task.
struct Reading {
    runtime: Runtime,
    client: Client,
    events_tx: Sender<ReaderEvent>,
    events: Receiver<ReaderEvent>,
    stream: StreamPosition,
    slots: BTreeMap<String, Slot>,
    watermark: i64,
    max_time: i64,
    records: u64,
    retries: Arc<RetryCounts>,
    faults: FaultInjection,
    next_discovery: Instant,
    /// The enhanced fan-out consumer's ARN (`reader = "efo"`).
    consumer: Option<Arc<str>>,
    subscriptions: Arc<SubscriptionCounts>,
    subscribe_faults: SubscribeFaults,
    in_flight: InFlight,
    /// Read delays (ms) not yet added to the job's metrics.
    delays: Option<Histogram<u64>>,
}

impl Reading {
    /// The source's position after the records processed so far.
    fn position(&self, ended: bool) -> KinesisPosition {
        KinesisPosition {
            records: self.records,
            max_time: (self.max_time != i64::MIN).then_some(self.max_time),
            ended,
            stream: StreamPosition {
                shards: self
                    .slots
                    .iter()
                    .filter(|(_, s)| s.state != ShardPosition::default() || s.running)
                    .map(|(id, s)| (id.clone(), s.state.clone()))
                    .collect(),
                ..self.stream.clone()
            },
        }
    }
}

fn kinesis_error(name: &str, source: AwsError) -> EngineError {
    EngineError::Kinesis {
        what: "source",
        name: name.to_string(),
        source,
    }
}

impl KinesisSourceTask {
    /// Reads until the stop position (bounded) or forever.
    ///
    /// # Errors
    /// Kinesis calls that fail for good, an expired checkpointed position,
    /// or a lost downstream task.
    pub fn run(mut self) -> Result<(), EngineError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(format!("kinesis {}", self.core.name))
            .enable_all()
            .build()
            .map_err(|e| kinesis_error(&self.core.name, AwsError::Runtime(e)))?;
        let client = runtime.block_on(connect(&self.settings.endpoint));
        let (events_tx, events) = channel(64);
        let mut r = Reading {
            runtime,
            client,
            events_tx,
            events,
            stream: StreamPosition::default(),
            slots: BTreeMap::new(),
            watermark: i64::MIN,
            max_time: self
                .restore
                .as_ref()
                .and_then(|p| p.max_time)
                .unwrap_or(i64::MIN),
            records: self.restore.as_ref().map_or(0, |p| p.records),
            retries: Arc::new(RetryCounts::default()),
            faults: FaultInjection::from_env(),
            next_discovery: Instant::now(),
            consumer: None,
            subscriptions: Arc::new(SubscriptionCounts::default()),
            subscribe_faults: SubscribeFaults::from_env(),
            in_flight: InFlight::new(),
            delays: Histogram::new(3).ok(),
        };
        if let ReaderKind::Efo { consumer_name } = &self.settings.reader {
            let registered = r.runtime.block_on(ensure_consumer(
                &r.client,
                &self.settings.stream,
                consumer_name,
            ));
            let arn = registered.map_err(|e| kinesis_error(&self.core.name, e))?;
            r.consumer = Some(Arc::from(arn.as_str()));
        }
        self.open(&mut r)?;
        let result = self.read(&mut r);
        r.runtime.shutdown_background();
        result
    }

    /// Lists the shards and starts readers for those whose parents are done.
    /// Returns how many started.
    fn discover(&mut self, r: &mut Reading) -> Result<usize, EngineError> {
        let listing: Vec<ShardInfo> = r
            .runtime
            .block_on(list_shards(&r.client, &self.settings.stream))
            .map_err(|e| kinesis_error(&self.core.name, e))?;
        r.next_discovery = Instant::now() + DISCOVERY_EVERY;
        let listed: BTreeSet<&str> = listing.iter().map(|s| s.id.as_str()).collect();
        let mut started = 0;
        for info in &listing {
            if self
                .settings
                .only_shard
                .as_ref()
                .is_some_and(|only| *only != info.id)
            {
                continue;
            }
            // A cluster part reads one shard, leased only after its
            // parents were read to their ends by their own parts.
            let parent_done = |p: &String| {
                self.settings.only_shard.is_some()
                    || !listed.contains(p.as_str())
                    || r.slots.get(p).is_some_and(|s| s.state.finished)
            };
            let ready = info.parents.iter().all(parent_done);
            let waiting_for = info.parents.iter().find(|p| !parent_done(p)).cloned();
            let slot = r.slots.entry(info.id.clone()).or_default();
            slot.waiting_for = waiting_for;
            slot.closed.store(info.closed, Ordering::Relaxed);
            if slot.state.finished || slot.running || slot.stopped || !ready {
                continue;
            }
            let start = match (
                &slot.state.sequence,
                slot.from_trim_horizon,
                r.stream.start_ms,
            ) {
                (Some(sequence), _, _) => StartPosition::After(sequence.clone()),
                (None, true, _) | (None, false, None) => StartPosition::TrimHorizon,
                (None, false, Some(t)) => StartPosition::AtTimestamp(t),
            };
            tracing::debug!(
                "source `{}`: reading shard {} from {start:?}",
                self.core.name,
                info.id
            );
            slot.running = true;
            slot.last_data = Some(Instant::now());
            let feed = ShardFeed {
                client: r.client.clone(),
                stream: self.settings.stream.clone(),
                shard: Arc::from(info.id.as_str()),
                start,
                stop_ms: r.stream.stop_ms,
                events: r.events_tx.clone(),
                retries: r.retries.clone(),
                in_flight: r.in_flight.clone(),
            };
            match &r.consumer {
                Some(consumer) => {
                    let subscriber = ShardSubscriber {
                        feed,
                        closed: slot.closed.clone(),
                        consumer: consumer.clone(),
                        subscriptions: r.subscriptions.clone(),
                        faults: r.subscribe_faults,
                    };
                    r.runtime.spawn(subscriber.run());
                }
                None => {
                    let reader = ShardReader {
                        feed,
                        faults: r.faults,
                    };
                    r.runtime.spawn(reader.run());
                }
            }
            started += 1;
        }
        Ok(started)
    }

    fn read(&mut self, r: &mut Reading) -> Result<(), EngineError> {
        let mut decoding = match self.decoders() {
            Some(decoders) => Some(Decoding::start(self, decoders)?),
            None => None,
        };
        let result = self.read_with(r, &mut decoding);
        if let Some(decoding) = decoding {
            decoding.stop();
        }
        result
    }

    /// Copies of the ingest for a pool of decoding threads, when this
    /// source decodes in parallel ([`parallel`]).
    fn decoders(&self) -> Option<Vec<Ingest>> {
        let ingest = &self.core.ingest;
        if self.decode_threads < 2 || ingest.dedup.is_some() || ingest.router.sends_remote() {
            return None;
        }
        Some(ingest.decoders(self.decode_threads))
    }

    fn read_with(
        &mut self,
        r: &mut Reading,
        decoding: &mut Option<Decoding>,
    ) -> Result<(), EngineError> {
        self.discover(r)?;
        self.core.own.open.store(true, Ordering::Relaxed);
        let bounded = r.stream.stop_ms.is_some();
        loop {
            if Instant::now() >= r.next_discovery {
                self.discover(r)?;
            }
            if bounded && !r.slots.values().any(|s| s.running) && self.discover(r)? == 0 {
                break;
            }
            let only_done = self.settings.only_shard.as_ref().is_some_and(|id| {
                r.slots
                    .get(id)
                    .is_some_and(|s| s.state.finished || s.stopped)
            });
            if only_done {
                break;
            }
            let event = if decoding.as_ref().is_some_and(|d| d.pending() > 0) {
                // Batches are decoding: take what came, then hand on.
                r.events.try_recv().ok()
            } else {
                r.runtime
                    .block_on(async { tokio::time::timeout(TICK, r.events.recv()).await })
                    .ok()
                    .flatten()
            };
            let quiet = event.is_none();
            match (event, decoding.as_mut()) {
                (
                    Some(ReaderEvent::Records {
                        shard,
                        records,
                        behind_ms,
                        call_us,
                        held,
                    }),
                    Some(d),
                ) => {
                    self.received(r, &shard, !records.is_empty(), behind_ms, call_us);
                    if !records.is_empty() {
                        d.submit(shard, records, now_ms(), held)?;
                    }
                }
                (Some(event), Some(d)) => {
                    // Ends and failures come after every batch before them.
                    self.hand_on_until(r, d, 0)?;
                    if !self.core.parked() {
                        self.handle(r, event)?;
                    }
                }
                (Some(event), None) => self.handle(r, event)?,
                (None, _) => {}
            }
            if let Some(d) = decoding.as_mut() {
                // Everything while the readers are quiet, else room for
                // the next batch.
                let keep = if quiet { 0 } else { d.busy_keep() };
                self.hand_on_until(r, d, keep)?;
            }
            if !self.core.parked() {
                let in_flight = decoding.as_ref().is_some_and(|d| d.pending() > 0);
                self.chores(r, in_flight)?;
            }
            if self.core.parked() {
                return self.core.park();
            }
        }
        if let Some(d) = decoding.as_mut() {
            self.hand_on_until(r, d, 0)?;
            if self.core.parked() {
                return self.core.park();
            }
        }
        self.chores(r, false)?;
        self.core.finish(&r.position(true))
    }

    /// Notes a reader's batch as it arrives: the call's time, the shard's
    /// lag and, when it holds records, that the shard is busy.
    fn received(
        &mut self,
        r: &mut Reading,
        shard: &str,
        has_records: bool,
        behind_ms: Option<i64>,
        call_us: Option<u64>,
    ) {
        if let Some(call_us) = call_us {
            self.core.own.calls.observe(call_us);
        }
        if let Some(slot) = r.slots.get_mut(shard) {
            slot.behind_ms = behind_ms;
        }
        if has_records {
            self.has_data(r, shard);
        }
    }

    /// Notes that `shard` has data now: not idle, nor is the source.
    fn has_data(&mut self, r: &mut Reading, shard: &str) {
        if let Some(slot) = r.slots.get_mut(shard) {
            slot.last_data = Some(Instant::now());
            slot.last_data_ms = Some(now_ms());
            self.core.set_busy();
        }
    }

    fn handle(&mut self, r: &mut Reading, event: ReaderEvent) -> Result<(), EngineError> {
        match event {
            ReaderEvent::Records {
                shard,
                records,
                behind_ms,
                call_us,
                held: _held,
            } => {
                self.received(r, &shard, !records.is_empty(), behind_ms, call_us);
                let received_ms = now_ms();
                let watermark = self.watermark(r);
                // No checkpoint inside a batch: the chores after it answer
                // one, as on the decoding pool. A barrier sends the
                // watermark as it stands, which inside a batch is above the
                // stamps of the batch's later records (every record of a
                // batch bears the watermark before it), so they were judged
                // late against it: which records were late hung on when a
                // checkpoint fell.
                for record in &records {
                    self.record(r, &shard, record, watermark, received_ms)?;
                }
                if !records.is_empty() {
                    let watermark = self.watermark(r);
                    self.core.ingest.router.flush(watermark)?;
                }
            }
            ReaderEvent::End { shard } => {
                if let Some(slot) = r.slots.get_mut(&*shard) {
                    slot.running = false;
                    slot.state.finished = true;
                }
                tracing::info!("source `{}`: shard {shard} ended", self.core.name);
                r.next_discovery = Instant::now();
            }
            ReaderEvent::Stopped { shard } => {
                if let Some(slot) = r.slots.get_mut(&*shard) {
                    slot.running = false;
                    slot.stopped = true;
                }
            }
            ReaderEvent::Failed { shard, error } => {
                let error = AwsError::Shard {
                    shard: shard.to_string(),
                    source: Box::new(error),
                };
                return Err(kinesis_error(&self.core.name, error));
            }
        }
        Ok(())
    }

    /// The minimum over the shards being read (not idle ones), less the
    /// allowed out-of-orderness; never moves back.
    fn watermark(&self, r: &mut Reading) -> i64 {
        let idle_after = self.core.idle_timeout;
        let min = r
            .slots
            .values()
            .filter(|s| s.running)
            .filter(|s| match (idle_after, s.last_data) {
                (Some(timeout), Some(at)) => at.elapsed() < timeout,
                _ => true,
            })
            .map(|s| s.state.max_time.unwrap_or(i64::MIN))
            .min();
        if let Some(min) = min.filter(|m| *m != i64::MIN) {
            r.watermark = r
                .watermark
                .max(min.saturating_sub(self.core.max_out_of_orderness_ms));
        }
        r.watermark
    }

    /// Periodic work: flush, metrics, idleness, checkpoints. With records
    /// `in_flight` (batches still decoding) the source is not idle, as one
    /// thread still routing them would not be.
    fn chores(&mut self, r: &mut Reading, in_flight: bool) -> Result<(), EngineError> {
        let watermark = self.watermark(r);
        let own = &self.core.own;
        let ooo = self.core.max_out_of_orderness_ms;
        for (id, slot) in &r.slots {
            let known = slot.running || slot.records_this_run > 0 || slot.stopped;
            if known || slot.waiting_for.is_some() {
                own.set_shard(
                    id,
                    ShardMetrics {
                        records: slot.records_this_run,
                        behind_ms: slot.behind_ms,
                        state: slot.status(),
                        watermark: slot.state.max_time.map(|t| t.saturating_sub(ooo)),
                        arrival_ms: slot.state.arrival_ms,
                        last_data_ms: slot.last_data_ms,
                        parent: slot.waiting_for.clone(),
                    },
                );
            }
        }
        own.throttles.store(
            r.retries.throttled.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
        own.retries.store(
            r.retries.transient.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
        if let Some(delays) = r.delays.as_mut().filter(|d| !d.is_empty()) {
            self.core.metrics.add_read_delay(delays);
            delays.reset();
        }
        own.subscriptions.store(
            r.subscriptions.started.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
        own.subscription_failures.store(
            r.subscriptions.failed.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
        if let Some(timeout) = self.core.idle_timeout.filter(|_| !in_flight) {
            let running: Vec<&Slot> = r.slots.values().filter(|s| s.running).collect();
            let all_idle = !running.is_empty()
                && running
                    .iter()
                    .all(|s| s.last_data.is_some_and(|at| at.elapsed() >= timeout));
            if all_idle {
                self.core.set_idle(watermark)?;
            }
        }
        self.core.chores(watermark, || r.position(false))
    }
}
