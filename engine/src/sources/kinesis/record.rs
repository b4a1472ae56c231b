//! One Kinesis record through the source: KPL de-aggregation, each user
//! record decoded and routed with its shard position, and the shard's
//! checkpointed position moved past the whole Kinesis record.
//!
//! [`route_record`] is the part a decoding thread can do on its own
//! ([`super::parallel`]); [`Reading::advance`] moves the shard's position
//! and is the source thread's, in the order the records came.

use aws_sdk_kinesis::types::Record;

use super::kpl::{self, Records};
use super::reader::arrival_ms;
use super::{KinesisSourceTask, Reading};
use crate::aws::SequenceNumber;
use crate::dataflow::metrics::LocalCounts;
use crate::dataflow::position::{Position, RawRecord, Stamp};
use crate::error::EngineError;
use crate::sources::ingest::{now_ms, Ingest};

/// What one Kinesis record gave.
#[derive(Debug, Clone, Copy)]
pub(super) struct Routed {
    /// When it reached the stream (now, when the record does not say).
    pub arrival: i64,
    /// How long after its arrival kflow received it, ms.
    pub delay: Option<u64>,
    /// The largest event time of its user records that were routed.
    pub max_time: Option<i64>,
    /// The subsequence number of its last user record (in a KPL
    /// aggregate).
    pub last_sub: Option<u64>,
}

/// Decodes and routes one Kinesis record (all its user records) of
/// `shard` through `ingest`, each stamped with `watermark`; it reached
/// kflow at `received_ms`. Counts in `counts` (not its bytes: see
/// [`crate::sources::core::SourceCore::observe_size`]).
///
/// # Errors
/// A lost downstream task.
pub(super) fn route_record(
    ingest: &mut Ingest,
    shard: &str,
    record: &Record,
    watermark: i64,
    received_ms: i64,
    counts: &mut LocalCounts,
) -> Result<Routed, EngineError> {
    let sequence = record.sequence_number();
    let arrived = arrival_ms(record);
    let delay = arrived.map(|arrived| received_ms.saturating_sub(arrived).max(0) as u64);
    let clock = Stamp {
        time: arrived.unwrap_or_else(now_ms),
        watermark,
    };
    let data = record.data().as_ref();
    let at = |subsequence| Position::Shard {
        shard,
        sequence,
        subsequence,
    };
    let mut max_time: Option<i64> = None;
    let mut last_sub = None;
    match kpl::deaggregate(data) {
        Ok(Records::Single(data)) => {
            counts.read += 1;
            let mut values = ingest.values();
            let raw = RawRecord {
                text: data,
                position: at(None),
                key: None,
            };
            max_time = ingest.record(raw, &mut values, clock, counts)?;
        }
        Ok(Records::Aggregated(users)) => {
            for user in &users {
                counts.read += 1;
                let mut values = ingest.values();
                let raw = RawRecord {
                    text: &user.data,
                    position: at(Some(user.subsequence)),
                    key: None,
                };
                let time = ingest.record(raw, &mut values, clock, counts)?;
                max_time = max_time.max(time);
                last_sub = Some(user.subsequence);
            }
        }
        Err(e) => {
            counts.read += 1;
            let raw = RawRecord {
                text: data,
                position: at(None),
                key: None,
            };
            ingest.router.error(&e.to_string(), raw, counts)?;
        }
    }
    Ok(Routed {
        arrival: clock.time,
        delay,
        max_time,
        last_sub,
    })
}

impl Reading {
    /// Moves `shard`'s position past `records` Kinesis records, the last
    /// one at `sequence` and giving `last`, their largest event time
    /// `max_time`.
    pub(super) fn advance(
        &mut self,
        shard: &str,
        sequence: &str,
        last: &Routed,
        records: u64,
        max_time: Option<i64>,
    ) {
        self.records += records;
        if let Some(t) = max_time {
            self.max_time = self.max_time.max(t);
        }
        if let Some(slot) = self.slots.get_mut(shard) {
            slot.state.sequence = Some(SequenceNumber(sequence.to_string()));
            slot.state.subsequence = last.last_sub;
            slot.state.arrival_ms = Some(last.arrival);
            slot.state.records += records;
            slot.records_this_run += records;
            if let Some(t) = max_time {
                slot.state.max_time = Some(slot.state.max_time.map_or(t, |m| m.max(t)));
            }
        }
    }

    /// Adds a record's read delay to the source's metrics.
    pub(super) fn observe_delay(&mut self, task: &KinesisSourceTask, delay: u64) {
        if let Some(delays) = self.delays.as_mut() {
            let _ = delays.record(delay);
        }
        task.core
            .own
            .read_delays
            .observe(delay.saturating_mul(1000));
    }
}

impl KinesisSourceTask {
    /// Decodes and routes one Kinesis record (all its user records), which
    /// reached kflow at `received_ms` (for the read delay).
    pub(super) fn record(
        &mut self,
        r: &mut Reading,
        shard: &str,
        record: &Record,
        watermark: i64,
        received_ms: i64,
    ) -> Result<(), EngineError> {
        let core = &mut self.core;
        core.observe_size(record.data().as_ref().len());
        if let Some(key) = record.partition_key() {
            core.offer_key(key);
        }
        let routed = route_record(
            &mut core.ingest,
            shard,
            record,
            watermark,
            received_ms,
            &mut core.counts,
        )?;
        if let Some(delay) = routed.delay {
            r.observe_delay(self, delay);
        }
        r.advance(shard, record.sequence_number(), &routed, 1, routed.max_time);
        Ok(())
    }
}
