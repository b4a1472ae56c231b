//! A router's window destinations: each record encoded for one window
//! (key bytes, key hash, aggregate arguments) into per-partition batches.

use async_channel::Sender;
use kflow_jobs::{AggregateFunction, FieldId, Row, Value};
use std::time::Instant;

use super::Spares;
use crate::dataflow::arg::Arg;
use crate::dataflow::key;
use crate::dataflow::message::{InputId, WindowBatch, WindowMsg};
use crate::dataflow::position::{Position, RawRecord, Stamp};
use crate::error::EngineError;

/// Records per window batch before it is sent.
const WINDOW_BATCH: usize = 1024;

/// Emptied batches a window destination keeps to fill again (~90 KB each
/// at W1's record size): enough for the batches of a few blocks in flight.
const SPARE_BATCHES: usize = 32;

/// Combined records a [`Combine`] holds before they are sent regardless
/// (a table this size stays in the CPU cache).
const COMBINE_LIMIT: usize = 4096;

/// The partition of `partitions` that the record of key hash `hash` goes to.
pub fn partition_of(hash: u64, partitions: usize) -> usize {
    ((hash >> 32) as usize) % partitions
}

/// Combines the records an emitter sends one window: records of the same
/// key, event time and watermark become one record whose arguments are
/// their partial aggregates ([`Arg::Merge`]), which the window merges as it
/// would have absorbed each. A window's fire emits many rows of one time
/// and watermark, so a window over it (say, keyless) gets one record per
/// key and fire instead of a row per upstream key. Implemented by the
/// window operator, which owns the aggregates.
pub trait Combine: Send + std::fmt::Debug {
    /// Absorbs one record: its key's hash and bytes, its stamp, and its
    /// arguments (picked values in `values`, as in a batch).
    fn add(&mut self, hash: u64, key: &[u8], stamp: Stamp, args: &[Arg], values: &[u8]);
    /// How many combined records it holds.
    fn len(&self) -> usize;
    /// Whether it holds none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Appends every combined record, in the order their first rows came,
    /// to the batch of its partition ([`partition_of`]), with its weight,
    /// and forgets them.
    fn drain(&mut self, batches: &mut [WindowBatch]);
}

/// How one aggregate's argument is read from a record.
#[derive(Debug, Clone)]
pub struct ArgSpec {
    /// Aggregate name (for error messages).
    pub name: String,
    /// The function.
    pub function: AggregateFunction,
    /// The argument field and its dotted name.
    pub field: Option<(FieldId, String)>,
    /// `max_by`/`min_by`: the numeric field that ranks records.
    pub by: Option<(FieldId, String)>,
}

/// What an emitter encodes for one window.
#[derive(Debug, Clone)]
pub struct WindowInput {
    /// The window's name.
    pub name: String,
    /// The key fields and their dotted names.
    pub key_fields: Vec<(FieldId, String)>,
    /// How each aggregate's argument is read.
    pub args: Vec<ArgSpec>,
    /// Whether records carry their text (the window's `.late` is read).
    pub carry_raw: bool,
}

/// Key groups that a window destination reaches through a cluster's
/// shuffle stream rather than a channel (see [`crate::shuffle`]).
pub trait RemotePartitions: Send + std::fmt::Debug {
    /// How many (the job's key groups).
    fn count(&self) -> usize;
    /// Sends key group `group` a batch, its records' positions included.
    ///
    /// # Errors
    /// The shuffle stream's error.
    fn batch(&mut self, group: usize, batch: WindowBatch) -> Result<(), EngineError>;
    /// Tells every key group the emitter is idle.
    ///
    /// # Errors
    /// The shuffle stream's error.
    fn idle(&mut self, watermark: i64) -> Result<(), EngineError>;
    /// Returns once everything sent is written: the source may then
    /// checkpoint its position.
    ///
    /// # Errors
    /// The shuffle stream's error.
    fn barrier(&mut self) -> Result<(), EngineError>;
    /// Tells every key group the emitter is done, and writes everything.
    ///
    /// # Errors
    /// The shuffle stream's error.
    fn end(&mut self) -> Result<(), EngineError>;
}

/// Where a window destination's partitions are.
#[derive(Debug)]
pub enum Partitions {
    /// Channels to this process's partition tasks.
    Local(Vec<Sender<WindowMsg>>),
    /// Key groups owned by the workers of a cluster.
    Remote(Box<dyn RemotePartitions>),
    /// A collecting router's: this many partitions, and the batches
    /// "sent" to them, in order.
    Collect(usize, Vec<(usize, WindowBatch)>),
}

impl Partitions {
    pub(super) fn count(&self) -> usize {
        match self {
            Partitions::Local(senders) => senders.len(),
            Partitions::Remote(remote) => remote.count(),
            Partitions::Collect(count, _) => *count,
        }
    }
}

/// A window destination: encodes records and batches them per partition.
#[derive(Debug)]
pub struct WindowOut {
    pub(super) spec: WindowInput,
    pub(super) input: InputId,
    pub(super) partitions: Partitions,
    pub(super) batches: Vec<WindowBatch>,
    pub(super) scratch: Vec<u8>,
    pub(super) arg_scratch: Vec<Arg>,
    /// The values of this record's [`Arg::Pick`]s, offsets from 0.
    pub(super) pick_scratch: Vec<u8>,
    /// Combines records before they are batched, if set.
    combine: Option<Box<dyn Combine>>,
    /// Records absorbed by `combine` since it was last drained.
    combined_rows: usize,
    /// Batches the partitions took in and handed back, to fill again;
    /// shared with this destination's collecting copies.
    spares: Spares<WindowBatch>,
}

impl WindowOut {
    /// Whether any partition's channel is full.
    pub fn is_full(&self) -> bool {
        match &self.partitions {
            Partitions::Local(senders) => senders.iter().any(Sender::is_full),
            Partitions::Remote(_) | Partitions::Collect(..) => false,
        }
    }

    /// A destination sending `spec`'s window records to its `partitions`
    /// as emitter `input`.
    pub fn new(spec: WindowInput, input: InputId, partitions: Partitions) -> WindowOut {
        WindowOut::with_spares(spec, input, partitions, Spares::new(SPARE_BATCHES))
    }

    fn with_spares(
        spec: WindowInput,
        input: InputId,
        partitions: Partitions,
        spares: Spares<WindowBatch>,
    ) -> WindowOut {
        let batches = (0..partitions.count())
            .map(|_| WindowBatch {
                input,
                ..WindowBatch::default()
            })
            .collect();
        WindowOut {
            spec,
            input,
            partitions,
            batches,
            scratch: Vec::new(),
            arg_scratch: Vec::new(),
            pick_scratch: Vec::new(),
            combine: None,
            combined_rows: 0,
            spares,
        }
    }

    /// Combines the records sent from now on with `combine` (only for
    /// channels to local partitions: a shuffle carries each record's
    /// position, and a window keeping its late records needs each).
    pub fn combine_with(&mut self, combine: Box<dyn Combine>) {
        if matches!(self.partitions, Partitions::Local(_)) && !self.spec.carry_raw {
            self.combine = Some(combine);
        }
    }

    /// The window this destination feeds.
    pub fn spec(&self) -> &WindowInput {
        &self.spec
    }

    /// Whether records are being combined.
    pub fn combines(&self) -> bool {
        self.combine.is_some()
    }

    /// Moves the combined records into their batches and sends the full
    /// ones. When the combiner filled up with records that rarely shared a
    /// key (fewer than two rows each), combining costs more than it saves:
    /// it stops, and records are batched one by one from then on.
    fn drain_combined(&mut self, watermark: i64, full: bool) -> Result<(), EngineError> {
        let Some(combine) = &mut self.combine else {
            return Ok(());
        };
        if combine.is_empty() {
            return Ok(());
        }
        let (rows, records) = (self.combined_rows, combine.len());
        combine.drain(&mut self.batches);
        self.combined_rows = 0;
        if full && rows < 2 * records {
            self.combine = None;
        }
        for p in 0..self.batches.len() {
            if self.batches[p].len() >= WINDOW_BATCH {
                self.send(p, watermark)?;
            }
        }
        Ok(())
    }

    /// Encodes one record into its partition's batch. Returns the reason
    /// when the record cannot be used by this window (wrong types).
    pub(super) fn push<R: Row + ?Sized>(
        &mut self,
        row: &R,
        stamp: Stamp,
        record: &RawRecord<'_>,
    ) -> Result<Result<(), String>, EngineError> {
        let Stamp { time, watermark } = stamp;
        self.scratch.clear();
        for (field, dotted) in &self.spec.key_fields {
            if key::encode_value(row.field(*field), &mut self.scratch).is_none() {
                return Ok(Err(format!(
                    "key field `{dotted}` of window `{}` is an object or array",
                    self.spec.name
                )));
            }
        }
        self.arg_scratch.clear();
        self.pick_scratch.clear();
        let mut distinct = Vec::new();
        for spec in &self.spec.args {
            if spec.function.carries_a_value() {
                match pick(&mut self.pick_scratch, &self.spec.name, spec, row, time) {
                    Ok(arg) => self.arg_scratch.push(arg),
                    Err(reason) => return Ok(Err(reason)),
                }
                continue;
            }
            let arg = match (&spec.field, spec.function) {
                (None, _) => Arg::None,
                (
                    Some((field, _)),
                    AggregateFunction::CountDistinct | AggregateFunction::CountDistinctApprox,
                ) => {
                    let value = row.field(*field);
                    if value.is_null() {
                        Arg::None
                    } else {
                        distinct.clear();
                        if key::encode_value(value, &mut distinct).is_none() {
                            distinct.extend_from_slice(b"\xffobject");
                        }
                        Arg::Hash(key::hash(&distinct))
                    }
                }
                (Some((field, dotted)), _) => match row.field(*field) {
                    Value::Null => Arg::None,
                    Value::Num(n) => Arg::Num(*n),
                    other => {
                        return Ok(Err(format!(
                            "aggregate `{}` of window `{}` needs a number in `{dotted}`, got {}",
                            spec.name,
                            self.spec.name,
                            other.type_name()
                        )))
                    }
                },
            };
            self.arg_scratch.push(arg);
        }
        let hash = key::hash(&self.scratch);
        if let Some(combine) = &mut self.combine {
            combine.add(
                hash,
                &self.scratch,
                stamp,
                &self.arg_scratch,
                &self.pick_scratch,
            );
            self.combined_rows += 1;
            if combine.len() >= COMBINE_LIMIT {
                self.drain_combined(watermark, true)?;
            }
            return Ok(Ok(()));
        }
        let partition = partition_of(hash, self.batches.len());
        let batch = &mut self.batches[partition];
        if batch.times.is_empty() {
            batch.origin = Some(Instant::now());
        }
        batch.times.push(time);
        batch.watermarks.push(watermark);
        batch.hashes.push(hash);
        batch.keys.extend_from_slice(&self.scratch);
        batch.key_ends.push(batch.keys.len() as u32);
        if self.pick_scratch.is_empty() {
            batch.args.extend_from_slice(&self.arg_scratch);
        } else {
            let base = batch.values.len() as u32;
            batch
                .args
                .extend(self.arg_scratch.iter().map(|arg| match *arg {
                    Arg::Pick { order, start, len } => Arg::Pick {
                        order,
                        start: start + base,
                        len,
                    },
                    other => other,
                }));
            batch.values.extend_from_slice(&self.pick_scratch);
        }
        if self.spec.carry_raw {
            batch.raw.extend_from_slice(record.text);
            batch.raw_ends.push(batch.raw.len() as u32);
        }
        if let Partitions::Remote(_) = self.partitions {
            let (sequence, subsequence) = match record.position {
                Position::Shard {
                    sequence,
                    subsequence,
                    ..
                } => (sequence, subsequence),
                _ => ("", None),
            };
            batch.sequences.extend_from_slice(sequence.as_bytes());
            batch.sequence_ends.push(batch.sequences.len() as u32);
            batch.subsequences.push(subsequence.unwrap_or(u64::MAX));
        }
        if batch.len() >= WINDOW_BATCH {
            self.send(partition, watermark)?;
        }
        Ok(Ok(()))
    }

    pub(super) fn send(&mut self, partition: usize, watermark: i64) -> Result<(), EngineError> {
        let fresh = match self.spares.take() {
            Some(mut spare) => {
                spare.input = self.input;
                spare
            }
            None => WindowBatch {
                spare: Some(self.spares.back.clone()),
                ..WindowBatch::sized_like(self.input, &self.batches[partition])
            },
        };
        let mut batch = std::mem::replace(&mut self.batches[partition], fresh);
        batch.final_watermark = watermark;
        batch.origin.get_or_insert_with(Instant::now);
        self.send_batch(partition, batch)
    }

    pub(super) fn send_batch(
        &mut self,
        partition: usize,
        batch: WindowBatch,
    ) -> Result<(), EngineError> {
        match &mut self.partitions {
            Partitions::Local(senders) => senders[partition]
                .send_blocking(WindowMsg::Batch(batch))
                .map_err(|_| EngineError::Disconnected(self.spec.name.clone())),
            Partitions::Remote(remote) => remote.batch(partition, batch),
            Partitions::Collect(_, kept) => {
                kept.push((partition, batch));
                Ok(())
            }
        }
    }

    /// A collecting copy.
    pub(super) fn collector(&self) -> WindowOut {
        let count = self.partitions.count();
        WindowOut::with_spares(
            self.spec.clone(),
            self.input,
            Partitions::Collect(count, Vec::new()),
            self.spares.clone(),
        )
    }

    /// Sends every partition its batch (possibly empty) with the emitter's
    /// current watermark.
    pub fn flush(&mut self, watermark: i64) -> Result<(), EngineError> {
        self.drain_combined(watermark, false)?;
        for p in 0..self.batches.len() {
            self.send(p, watermark)?;
        }
        Ok(())
    }

    /// Sends `msg(input)` to every local partition.
    pub(super) fn broadcast(&self, msg: impl Fn(InputId) -> WindowMsg) -> Result<(), EngineError> {
        let Partitions::Local(senders) = &self.partitions else {
            return Ok(());
        };
        for sender in senders {
            sender
                .send_blocking(msg(self.input))
                .map_err(|_| EngineError::Disconnected(self.spec.name.clone()))?;
        }
        Ok(())
    }

    /// Tells every partition this emitter is idle.
    pub fn idle(&mut self, watermark: i64) -> Result<(), EngineError> {
        self.flush(watermark)?;
        if let Partitions::Remote(remote) = &mut self.partitions {
            remote.idle(watermark)?;
        }
        self.broadcast(WindowMsg::Idle)
    }

    /// Flushes and sends checkpoint barrier `id` to every partition (to a
    /// remote one: waits until everything is written).
    pub fn barrier(&mut self, id: u64, watermark: i64) -> Result<(), EngineError> {
        self.flush(watermark)?;
        if let Partitions::Remote(remote) = &mut self.partitions {
            remote.barrier()?;
        }
        self.broadcast(|input| WindowMsg::Barrier(input, id))
    }

    /// Flushes and tells every partition this emitter is done.
    pub fn end(&mut self, watermark: i64) -> Result<(), EngineError> {
        self.flush(watermark)?;
        if let Partitions::Remote(remote) = &mut self.partitions {
            remote.end()?;
        }
        self.broadcast(WindowMsg::End)
    }
}

/// The argument of a `max_by`, `min_by`, `first` or `last` for one
/// record of window `window`: ranked by its `by` number or its event
/// `time`, its value key-encoded into `scratch`. Records without a number
/// to rank by (and, for `first`/`last`, without a value) take no part.
fn pick<R: Row + ?Sized>(
    scratch: &mut Vec<u8>,
    window: &str,
    spec: &ArgSpec,
    row: &R,
    time: i64,
) -> Result<Arg, String> {
    let order = match &spec.by {
        Some((by, dotted)) => match row.field(*by) {
            Value::Null => return Ok(Arg::None),
            Value::Num(n) => *n,
            other => {
                return Err(format!(
                    "aggregate `{}` of window `{window}` ranks by a number in `{dotted}`, got {}",
                    spec.name,
                    other.type_name()
                ))
            }
        },
        None => time as f64,
    };
    let Some((field, dotted)) = &spec.field else {
        return Ok(Arg::None);
    };
    let value = row.field(*field);
    if spec.by.is_none() && value.is_null() {
        return Ok(Arg::None);
    }
    let start = scratch.len();
    if key::encode_value(value, scratch).is_none() {
        scratch.truncate(start);
        return Err(format!(
            "aggregate `{}` of window `{window}` returns `{dotted}`, which is an object or array",
            spec.name
        ));
    }
    Ok(Arg::Pick {
        order,
        start: start as u32,
        len: (scratch.len() - start) as u32,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn batch(rx: &async_channel::Receiver<WindowMsg>) -> WindowBatch {
        match rx.try_recv().unwrap() {
            WindowMsg::Batch(batch) => batch,
            other => panic!("expected a batch, got {other:?}"),
        }
    }

    #[test]
    fn batches_taken_in_come_back_to_be_filled_again() {
        let (tx, rx) = async_channel::unbounded();
        let spec = WindowInput {
            name: "w".into(),
            key_fields: Vec::new(),
            args: Vec::new(),
            carry_raw: false,
        };
        let mut out = WindowOut::new(spec, 7, Partitions::Local(vec![tx]));
        out.flush(1).unwrap();
        out.flush(2).unwrap();
        // The first batch was made before the destination had spares.
        batch(&rx).recycle();
        let mut taken = batch(&rx);
        assert!(taken.spare.is_some());
        taken.times.extend(0..1000);
        taken.watermarks.extend(0..1000);
        taken.recycle();
        // The next batch made is the one handed back, empty, its room kept.
        out.flush(3).unwrap();
        out.flush(4).unwrap();
        let _ = batch(&rx);
        let again = batch(&rx);
        assert!(again.is_empty() && again.watermarks.is_empty());
        assert!(again.times.capacity() >= 1000);
        assert_eq!((again.input, again.final_watermark), (7, 4));
    }
}
