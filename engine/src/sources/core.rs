//! What every source task does besides reading: watermarks from its largest
//! event time, barriers when the coordinator asks, the final part at its
//! end, idleness, and publishing its counters.
//!
//! A source checks for a checkpoint request after every record it routes
//! (one atomic load), so the barrier goes out right behind the last record
//! it covers, whatever the batch or publishing cadence. The position it
//! reports is the connector's own type ([`crate::sources::file::FilePosition`],
//! [`crate::sources::kinesis::position::KinesisPosition`]), serialised into
//! the checkpoint part.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::dataflow::checkpoint::{CheckpointCtx, Part, PartKind};
use crate::dataflow::metrics::buckets::{LocalBuckets, SIZE_BOUNDS};
use crate::dataflow::metrics::parts::HOT_KEYS;
use crate::dataflow::metrics::sketch::HeavyHitters;
use crate::dataflow::metrics::{LocalCounts, Metrics, SourceMetrics};
use crate::error::EngineError;
use crate::sources::ingest::Ingest;

/// Records between two publications of a source's counters.
pub const PUBLISH_EVERY: u64 = 1024;

/// How often a source publishes its heavy hitters.
const HOT_KEYS_EVERY: Duration = Duration::from_secs(1);

/// The watermark that a largest event time of `max_time` gives with a
/// lag of `max_out_of_orderness_ms` (`i64::MIN` before any record).
pub fn watermark_of(max_time: i64, max_out_of_orderness_ms: i64) -> i64 {
    if max_time == i64::MIN {
        i64::MIN
    } else {
        max_time.saturating_sub(max_out_of_orderness_ms)
    }
}

/// The parts of a source task that do not depend on its connector.
pub struct SourceCore {
    /// Source name (its task name in checkpoints).
    pub name: String,
    /// Decoding, dedup and routing.
    pub ingest: Ingest,
    /// Watermark lag behind the maximum event time.
    pub max_out_of_orderness_ms: i64,
    /// When a quiet source (or shard) stops holding the watermark back.
    pub idle_timeout: Option<Duration>,
    /// Shared counters.
    pub metrics: Arc<Metrics>,
    /// Checkpoint coordination.
    pub checkpoints: CheckpointCtx,
    /// Counters not yet published.
    pub counts: LocalCounts,
    /// Record sizes not yet published.
    pub sizes: LocalBuckets,
    /// The heaviest partition keys (Kinesis sources offer them).
    pub hot_keys: HeavyHitters,
    /// This source's own metrics.
    pub own: Arc<SourceMetrics>,
    /// When the hot keys were last published.
    hot_published: Instant,
    /// The newest checkpoint whose barrier this source sent.
    sent: u64,
    /// Whether the window consumers were told this source is idle.
    idle: bool,
    /// The barrier of a graceful stop went out: read nothing more.
    parked: bool,
}

impl SourceCore {
    /// A core that has sent barriers up to the last committed checkpoint;
    /// `kind` names the connector in metrics.
    pub fn new(
        name: String,
        kind: &'static str,
        ingest: Ingest,
        max_out_of_orderness_ms: i64,
        idle_timeout: Option<Duration>,
        metrics: Arc<Metrics>,
        checkpoints: CheckpointCtx,
    ) -> SourceCore {
        let sent = checkpoints.committed();
        let own = metrics
            .sources
            .add(SourceMetrics::new(&name, kind, idle_timeout));
        SourceCore {
            name,
            ingest,
            max_out_of_orderness_ms,
            idle_timeout,
            metrics,
            checkpoints,
            counts: LocalCounts::default(),
            sizes: LocalBuckets::new(SIZE_BOUNDS),
            hot_keys: HeavyHitters::default(),
            own,
            hot_published: Instant::now(),
            sent,
            idle: false,
            parked: false,
        }
    }

    /// The watermark that a largest event time of `max_time` gives
    /// (`i64::MIN` before any record).
    pub fn watermark_of(&self, max_time: i64) -> i64 {
        watermark_of(max_time, self.max_out_of_orderness_ms)
    }

    /// Sends the barrier of the requested checkpoint, if one is due, with
    /// `position()` (where the source is right after the records routed so
    /// far) and its dedup changes. When that checkpoint ends a graceful
    /// stop, the source is [`SourceCore::parked`] from then on.
    ///
    /// # Errors
    /// A lost downstream task or coordinator.
    pub fn maybe_checkpoint<P: Serialize>(
        &mut self,
        watermark: i64,
        position: impl FnOnce() -> P,
    ) -> Result<(), EngineError> {
        let requested = self.checkpoints.requested();
        if requested <= self.sent {
            return Ok(());
        }
        // Read after the request: a stop's flag is set before its request.
        let stopping = self.checkpoints.stopping();
        self.ingest.router.barrier(requested, watermark)?;
        self.report(Some(requested), &position())?;
        self.sent = requested;
        self.parked = stopping;
        Ok(())
    }

    /// Whether this source sent the last barrier of a graceful stop: it
    /// must read nothing more, so that no record after the final
    /// checkpoint reaches a sink that cannot take it back.
    pub fn parked(&self) -> bool {
        self.parked
    }

    /// Waits, reading nothing, until the process exits after the final
    /// checkpoint (the coordinator ends the run). Keeps the outputs open:
    /// the consumers are still taking their snapshots.
    pub fn park(&mut self) -> Result<(), EngineError> {
        self.publish(i64::MIN);
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// Flushes, publishes counters and answers a due checkpoint: the chores
    /// of a source between blocks of records.
    ///
    /// # Errors
    /// A lost downstream task or coordinator.
    pub fn chores<P: Serialize>(
        &mut self,
        watermark: i64,
        position: impl FnOnce() -> P,
    ) -> Result<(), EngineError> {
        self.ingest.router.flush(watermark)?;
        self.publish(watermark);
        self.maybe_checkpoint(watermark, position)
    }

    /// Publishes counters and answers a due checkpoint, without a flush:
    /// a block-parallel source's chores after handing a block on (its
    /// batches carried the watermark already).
    ///
    /// # Errors
    /// A lost downstream task or coordinator.
    pub fn after_block<P: Serialize>(
        &mut self,
        watermark: i64,
        position: impl FnOnce() -> P,
    ) -> Result<(), EngineError> {
        self.publish(watermark);
        self.maybe_checkpoint(watermark, position)
    }

    /// Publishes the counters once enough records were read.
    ///
    /// # Errors
    /// A lost downstream task.
    pub fn publish_every(&mut self, watermark: i64) -> Result<(), EngineError> {
        if self.counts.read >= PUBLISH_EVERY {
            self.ingest.router.flush(watermark)?;
            self.publish(watermark);
        }
        Ok(())
    }

    /// Marks the source idle: its consumers stop waiting for its
    /// watermark until its next record. Said once per quiet spell.
    ///
    /// # Errors
    /// A lost downstream task.
    pub fn set_idle(&mut self, watermark: i64) -> Result<(), EngineError> {
        if !self.idle {
            self.ingest.router.idle(watermark)?;
            self.idle = true;
            self.own.idle.store(true, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Records arrived: the next quiet spell is announced again.
    pub fn set_busy(&mut self) {
        if self.idle {
            self.own.idle.store(false, Ordering::Relaxed);
        }
        self.idle = false;
    }

    /// Counts the bytes of one record as read (before de-aggregation).
    #[inline]
    pub fn observe_size(&mut self, bytes: usize) {
        self.counts.bytes += bytes as u64;
        self.sizes.observe(bytes as u64);
    }

    /// Offers a record's partition key to the hot-keys sketch (one record
    /// in [`crate::dataflow::metrics::sketch::SAMPLE`] is taken).
    #[inline]
    pub fn offer_key(&mut self, key: &str) {
        if self.hot_keys.sampled() {
            self.hot_keys.offer(key.as_bytes());
        }
    }

    /// Publishes counters, sizes, the watermark (`i64::MIN`: unchanged),
    /// backpressure and, once a second, the hot keys.
    fn publish(&mut self, watermark: i64) {
        let own = &self.own;
        if self.counts.read > 0 {
            own.last_data_ms
                .store(crate::sources::ingest::now_ms(), Ordering::Relaxed);
        }
        self.counts.publish(&self.metrics, &own.counts);
        self.sizes.publish(&own.sizes);
        if watermark != i64::MIN {
            own.watermark.fetch_max(watermark, Ordering::Relaxed);
        }
        own.backpressured
            .store(self.ingest.router.backpressured(), Ordering::Relaxed);
        if self.hot_published.elapsed() >= HOT_KEYS_EVERY {
            self.hot_published = Instant::now();
            own.set_hot_keys(self.hot_keys.publish(HOT_KEYS));
        }
    }

    /// Ends every output and reports the source's final part at
    /// `position`.
    ///
    /// # Errors
    /// A lost downstream task or coordinator.
    pub fn finish(&mut self, position: &impl Serialize) -> Result<(), EngineError> {
        self.ingest.router.end(i64::MAX)?;
        self.publish(i64::MIN);
        self.own.idle.store(false, Ordering::Relaxed);
        self.report(None, position)
    }

    fn report(
        &mut self,
        checkpoint: Option<u64>,
        position: &impl Serialize,
    ) -> Result<(), EngineError> {
        let batch = self.ingest.dedup_batch();
        let part = Part::new(&self.name, checkpoint, PartKind::Source, position, batch)?;
        self.checkpoints.report(part)
    }
}
