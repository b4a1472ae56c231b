//! The per-record path every source shares: decode the projected fields of
//! one JSON object, stamp its event time, drop repeats of a dedup id, and
//! route it (or send it to the error output with its reason and position).

use kflow_jobs::{FieldId, Row, Value};
use kflow_state::StateBatch;

use crate::dataflow::metrics::LocalCounts;
use crate::dataflow::position::{RawRecord, Stamp};
use crate::dataflow::route::Router;
use crate::dataflow::row::{MappedRow, SlotMap};
use crate::error::EngineError;
use crate::sources::decode::Projection;
use crate::sources::dedup::Dedup;
use crate::sources::time::{Dates, TimeError};

/// Decoding, time stamping, dedup and routing of one source's records.
pub struct Ingest {
    /// Fields to decode.
    pub projection: Projection,
    /// Field id -> slot.
    pub slots: SlotMap,
    /// The event-time field and its name, or `None` for arrival time.
    pub event_time: Option<(FieldId, String)>,
    /// The id field repeats are dropped by, when the job asks.
    pub dedup_field: Option<FieldId>,
    /// The ids seen (`None` in a decoding thread's copy, whose records'
    /// ids the source thread checks).
    pub dedup: Option<Dedup>,
    /// Where records go.
    pub router: Router,
    /// The last event date parsed (a cache: times mostly share their date).
    pub dates: Dates,
}

impl Ingest {
    /// A reusable slot buffer for [`Ingest::record`].
    pub fn values<'a>(&self) -> Vec<Value<'a>> {
        vec![Value::Null; self.projection.slots()]
    }

    /// `n` copies for a pool of decoding threads ([`Ingest::decoder`]).
    pub fn decoders(&self, n: usize) -> Vec<Ingest> {
        (0..n).map(|_| self.decoder()).collect()
    }

    /// A copy for a decoding thread of a block-parallel source: the same
    /// projection, time field, dedup field and routes, its router
    /// collecting ([`crate::dataflow::route::Router::collector`]), without
    /// the seen ids: whether a record is a repeat depends on every record
    /// before it, so the source thread checks the ids in file order.
    pub fn decoder(&self) -> Ingest {
        Ingest {
            projection: self.projection.clone(),
            slots: self.slots.clone(),
            event_time: self.event_time.clone(),
            dedup_field: self.dedup_field,
            dedup: None,
            router: self.router.collector(),
            dates: Dates::default(),
        }
    }

    /// Decodes and routes one record. `clock.time` (the arrival time)
    /// stands in for event time when the job names no event-time field;
    /// `clock.watermark` is the source's watermark before the record.
    /// Returns the record's event time when it was routed (not when it went
    /// to the error output or was dropped as a duplicate).
    ///
    /// # Errors
    /// A lost downstream task.
    pub fn record<'a>(
        &mut self,
        record: RawRecord<'a>,
        values: &mut [Value<'a>],
        clock: Stamp,
        counts: &mut LocalCounts,
    ) -> Result<Option<i64>, EngineError> {
        self.record_checked(record, None, values, clock, counts)
    }

    /// [`Ingest::record`] for a record whose text its source may have
    /// checked as UTF-8 already (`utf8`: that text).
    ///
    /// # Errors
    /// A lost downstream task.
    pub fn record_checked<'a>(
        &mut self,
        record: RawRecord<'a>,
        utf8: Option<&'a str>,
        values: &mut [Value<'a>],
        clock: Stamp,
        counts: &mut LocalCounts,
    ) -> Result<Option<i64>, EngineError> {
        let Some(time) = self.decode(record, utf8, values, clock.time, counts)? else {
            return Ok(None);
        };
        if let (Some(field), Some(dedup)) = (self.dedup_field, &mut self.dedup) {
            let row = MappedRow {
                values,
                map: &self.slots,
            };
            if dedup.is_duplicate(row.field(field), time, clock.watermark) {
                counts.duplicates += 1;
                return Ok(None);
            }
        }
        let stamp = Stamp {
            time,
            watermark: clock.watermark,
        };
        self.route_decoded(record, values, stamp, counts)?;
        Ok(Some(time))
    }

    /// The first half of [`Ingest::record`]: decodes a record into
    /// `values` and returns its event time (`arrival` when the job names
    /// no event-time field), or sends it to the error output and returns
    /// `None`. `utf8` is the record's text when its source checked it as
    /// UTF-8 already.
    ///
    /// # Errors
    /// A lost downstream task.
    pub fn decode<'a>(
        &mut self,
        record: RawRecord<'a>,
        utf8: Option<&'a str>,
        values: &mut [Value<'a>],
        arrival: i64,
        counts: &mut LocalCounts,
    ) -> Result<Option<i64>, EngineError> {
        let decoded = match utf8 {
            Some(text) => self.projection.decode_str(text, values),
            None => self.projection.decode(record.text, values),
        };
        if let Err(e) = decoded {
            self.router.error(&e.0, record, counts)?;
            return Ok(None);
        }
        let time = match &self.event_time {
            None => arrival,
            Some((field, name)) => {
                let row = MappedRow {
                    values,
                    map: &self.slots,
                };
                match self.dates.event_time(row.field(*field)) {
                    Ok(t) => t,
                    Err(e) => {
                        let reason = time_reason(e, name);
                        self.router.error(&reason, record, counts)?;
                        return Ok(None);
                    }
                }
            }
        };
        counts.decoded += 1;
        Ok(Some(time))
    }

    /// The second half of [`Ingest::record`]: routes a record decoded into
    /// `values`, stamped.
    ///
    /// # Errors
    /// A lost downstream task.
    pub fn route_decoded(
        &mut self,
        record: RawRecord<'_>,
        values: &[Value<'_>],
        stamp: Stamp,
        counts: &mut LocalCounts,
    ) -> Result<(), EngineError> {
        let row = MappedRow {
            values,
            map: &self.slots,
        };
        self.router.route(&row, record, stamp, counts)
    }

    /// The hash of a decoded record's dedup id ([`crate::sources::dedup::id_hash`]);
    /// `None` when the source drops no repeats or the record has no id.
    pub fn id_hash(&self, values: &[Value<'_>], scratch: &mut Vec<u8>) -> Option<u64> {
        let field = self.dedup_field?;
        let row = MappedRow {
            values,
            map: &self.slots,
        };
        crate::sources::dedup::id_hash(row.field(field), scratch)
    }

    /// The dedup changes since the last call, for a checkpoint part.
    pub fn dedup_batch(&mut self) -> StateBatch {
        let mut batch = StateBatch::new();
        if let Some(dedup) = &mut self.dedup {
            dedup.snapshot(&mut batch);
        }
        batch
    }
}

fn time_reason(e: TimeError, field: &str) -> String {
    match e {
        TimeError::Missing => format!("missing event time field `{field}`"),
        TimeError::BadString => format!("event time field `{field}` is not an RFC 3339 time"),
        TimeError::WrongType(t) => {
            format!("event time field `{field}` is a {t}, expected an RFC 3339 string or epoch milliseconds")
        }
    }
}

/// The wall clock in epoch milliseconds (arrival time of file records).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
