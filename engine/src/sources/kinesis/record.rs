//! One Kinesis record through the source: KPL de-aggregation, each user
//! record decoded and routed with its shard position, and the shard's
//! checkpointed position moved past the whole Kinesis record.

use aws_sdk_kinesis::types::Record;

use super::kpl::{self, Records};
use super::reader::arrival_ms;
use super::{KinesisSourceTask, Reading};
use crate::aws::SequenceNumber;
use crate::dataflow::position::{Position, RawRecord, Stamp};
use crate::error::EngineError;
use crate::sources::ingest::now_ms;

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
        let sequence = record.sequence_number();
        let arrived = arrival_ms(record);
        if let Some(arrived) = arrived {
            let delay = received_ms.saturating_sub(arrived).max(0) as u64;
            if let Some(delays) = r.delays.as_mut() {
                let _ = delays.record(delay);
            }
            core.own.read_delays.observe(delay.saturating_mul(1000));
        }
        let clock = Stamp {
            time: arrived.unwrap_or_else(now_ms),
            watermark,
        };
        let arrival = clock.time;
        let data = record.data().as_ref();
        core.observe_size(data.len());
        if let Some(key) = record.partition_key() {
            core.offer_key(key);
        }
        let counts = &mut core.counts;
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
                let mut values = core.ingest.values();
                let raw = RawRecord {
                    text: data,
                    position: at(None),
                    key: None,
                };
                max_time = core.ingest.record(raw, &mut values, clock, counts)?;
            }
            Ok(Records::Aggregated(users)) => {
                for user in &users {
                    counts.read += 1;
                    let mut values = core.ingest.values();
                    let raw = RawRecord {
                        text: &user.data,
                        position: at(Some(user.subsequence)),
                        key: None,
                    };
                    let time = core.ingest.record(raw, &mut values, clock, counts)?;
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
                core.ingest.router.error(&e.to_string(), raw, counts)?;
            }
        }
        r.records += 1;
        if let Some(t) = max_time {
            r.max_time = r.max_time.max(t);
        }
        if let Some(slot) = r.slots.get_mut(shard) {
            slot.state.sequence = Some(SequenceNumber(sequence.to_string()));
            slot.state.subsequence = last_sub;
            slot.state.arrival_ms = Some(arrival);
            slot.state.records += 1;
            slot.records_this_run += 1;
            if let Some(t) = max_time {
                slot.state.max_time = Some(slot.state.max_time.map_or(t, |m| m.max(t)));
            }
        }
        Ok(())
    }
}
