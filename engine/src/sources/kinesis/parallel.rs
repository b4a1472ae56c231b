//! Kinesis batches decoded on a pool of threads (`kflow run
//! --decode-threads N`), as a file's blocks are ([`crate::sources::file`]):
//! each batch a reader fetched (one GetRecords answer or subscription
//! event) is de-aggregated, decoded, filtered, encoded and partitioned by
//! a decoding thread with a collecting copy of the source's router, and
//! the source thread hands the batches on in the order they came.
//!
//! What one thread doing all of it would do is kept exactly:
//!
//! - *Order.* Batches go on in arrival order, so each shard's records (and
//!   each partition key's) keep theirs.
//! - *Watermarks.* One thread stamps every record of a batch with the
//!   source's watermark before the batch (the minimum over the shards'
//!   largest event times, less the out-of-orderness) and sends the
//!   watermark after it at the batch's end; the hand-off does both, so
//!   the windows see the same stamps and the same late records.
//! - *Positions.* A shard's checkpointed position moves when its batch is
//!   handed on, so a checkpoint barrier (between batches) holds exactly
//!   the records sent before it; batches decoded past a graceful stop's
//!   barrier are dropped, and read again on restart.
//! - *Shard ends.* A shard's end is taken only after every batch before
//!   it was handed on.
//! - *Idleness.* A batch's shard counts as having data again when the
//!   batch is handed on (however long it waited), and the source is not
//!   idle while batches decode.
//!
//! A source that drops repeats (`dedup`: whether a record repeats depends
//! on every record before it) or feeds a cluster's shuffle (each shard is
//! a process of its own there) decodes on its own thread.

use std::sync::Arc;

use aws_sdk_kinesis::types::Record;
use tokio::sync::OwnedSemaphorePermit;

use super::record::{route_record, Routed};
use super::{KinesisSourceTask, Reading};
use crate::dataflow::metrics::buckets::{LocalBuckets, SIZE_BOUNDS};
use crate::dataflow::metrics::LocalCounts;
use crate::dataflow::route::Collected;
use crate::error::EngineError;
use crate::sources::ingest::Ingest;
use crate::sources::pool::{InOrder, Pool, ToSource};

/// One reader's batch, for a decoder.
pub(super) struct Batch {
    index: u64,
    shard: Arc<str>,
    records: Vec<Record>,
    received_ms: i64,
    /// Its share of the source's in-flight budget, given back once the
    /// batch was handed on.
    held: Option<OwnedSemaphorePermit>,
}

/// A batch decoded.
pub(super) struct Decoded {
    index: u64,
    shard: Arc<str>,
    /// The batch's records (their partition keys feed the hot-keys sketch
    /// on hand-off).
    records: Vec<Record>,
    /// What its last record gave.
    last: Option<Routed>,
    /// The largest event time routed.
    max_time: Option<i64>,
    counts: LocalCounts,
    sizes: LocalBuckets,
    delays: Vec<u64>,
    collected: Collected,
    _held: Option<OwnedSemaphorePermit>,
}

/// Decodes one batch into `ingest`'s collecting router.
fn decode(ingest: &mut Ingest, batch: Batch) -> Result<Decoded, EngineError> {
    let mut counts = LocalCounts::default();
    let mut sizes = LocalBuckets::new(SIZE_BOUNDS);
    let mut delays = Vec::with_capacity(batch.records.len());
    // Stamped on hand-off.
    let unstamped = i64::MIN;
    let mut max_time: Option<i64> = None;
    let mut last = None;
    for record in &batch.records {
        let bytes = record.data().as_ref().len() as u64;
        counts.bytes += bytes;
        sizes.observe(bytes);
        let routed = route_record(
            ingest,
            &batch.shard,
            record,
            unstamped,
            batch.received_ms,
            &mut counts,
        )?;
        delays.extend(routed.delay);
        max_time = max_time.max(routed.max_time);
        last = Some(routed);
    }
    let collected = ingest.router.take_collected(unstamped)?;
    Ok(Decoded {
        index: batch.index,
        shard: batch.shard,
        records: batch.records,
        last,
        max_time,
        counts,
        sizes,
        delays,
        collected,
        _held: batch.held,
    })
}

/// The pool and the batches in flight.
pub(super) struct Decoding {
    pool: Pool<Batch, Decoded>,
    /// The index the next batch gets.
    next: u64,
    /// Batches decoded, handed on in order.
    decoded: InOrder<Decoded>,
    /// Batches in flight at most.
    limit: u64,
}

impl Decoding {
    /// A pool of `decoders` (copies of the source's ingest).
    ///
    /// # Errors
    /// A thread that cannot start.
    pub(super) fn start(
        task: &KinesisSourceTask,
        decoders: Vec<Ingest>,
    ) -> Result<Decoding, EngineError> {
        let limit = 2 * decoders.len() as u64 + 1;
        let pool = Pool::start(
            &task.core.name,
            decoders,
            limit as usize,
            |ingest: &mut Ingest, batch: Batch, _: &ToSource<Decoded>| decode(ingest, batch),
        )?;
        Ok(Decoding {
            pool,
            next: 0,
            decoded: InOrder::default(),
            limit,
        })
    }

    /// Batches given out and not handed on yet.
    pub(super) fn pending(&self) -> u64 {
        self.next - self.decoded.next()
    }

    /// How many batches may stay in flight while more arrive: one fewer
    /// than the most, so the next one has room.
    pub(super) fn busy_keep(&self) -> u64 {
        self.limit - 1
    }

    /// Gives a batch of `shard` out.
    ///
    /// # Errors
    /// The threads are gone.
    pub(super) fn submit(
        &mut self,
        shard: Arc<str>,
        records: Vec<Record>,
        received_ms: i64,
        held: Option<OwnedSemaphorePermit>,
    ) -> Result<(), EngineError> {
        let batch = Batch {
            index: self.next,
            shard,
            records,
            received_ms,
            held,
        };
        self.next += 1;
        self.pool.submit(batch)
    }

    /// Stops the threads.
    pub(super) fn stop(self) {
        self.pool.stop();
    }
}

impl KinesisSourceTask {
    /// Hands batches on in order until at most `keep` are in flight (or
    /// the source parked at a graceful stop's barrier).
    ///
    /// # Errors
    /// A decoder's error, or a lost downstream task or coordinator.
    pub(super) fn hand_on_until(
        &mut self,
        r: &mut Reading,
        d: &mut Decoding,
        keep: u64,
    ) -> Result<(), EngineError> {
        while d.pending() > keep && !self.core.parked() {
            let decoded = d.pool.next()?;
            d.decoded.put(decoded.index, decoded);
            while let Some(decoded) = d.decoded.pop() {
                self.hand_on(r, decoded)?;
                if self.core.parked() {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Sends one decoded batch on stamped as one thread would have, then
    /// moves its shard's position past it.
    fn hand_on(&mut self, r: &mut Reading, decoded: Decoded) -> Result<(), EngineError> {
        // Its shard has data now, as it had when one thread would have
        // routed the batch on arrival: the watermark before it counts it
        // however long the batch waited here.
        self.has_data(r, &decoded.shard);
        let before = self.watermark(r);
        self.core
            .ingest
            .router
            .send_collected_with(decoded.collected, |_| before)?;
        for record in &decoded.records {
            if let Some(key) = record.partition_key() {
                self.core.offer_key(key);
            }
        }
        self.core.counts.add(&decoded.counts);
        let mut sizes = decoded.sizes;
        sizes.publish(&self.core.own.sizes);
        for delay in decoded.delays {
            r.observe_delay(self, delay);
        }
        if let (Some(record), Some(last)) = (decoded.records.last(), &decoded.last) {
            r.advance(
                &decoded.shard,
                record.sequence_number(),
                last,
                decoded.records.len() as u64,
                decoded.max_time,
            );
        }
        let watermark = self.watermark(r);
        self.core.ingest.router.flush(watermark)?;
        self.core.after_block(watermark, || r.position(false))
    }
}
