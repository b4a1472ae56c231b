//! Routing an emitter's records through fused filters to its consumers.
//!
//! Sources and window partitions are *emitters*. Filters never run as tasks
//! of their own: each emitter evaluates the filter chains between itself and
//! every window or sink it feeds, memoising each filter once per record, and
//! appends the record to per-destination batches. For windows the record is
//! encoded right here (key bytes, key hash, aggregate arguments), so what
//! crosses the channel is compact and already partitioned by key hash.
//!
//! A router can also be *collecting* ([`Router::collector`]): a copy that
//! keeps what it would send, so that several threads can route blocks of
//! one source's records at once and the source hands each block's output
//! on in order ([`Router::send_collected`]).

use async_channel::Sender;
use kflow_jobs::expr::CompiledExpr;
use kflow_jobs::{AggregateFunction, FieldId, Row, Value};
use std::time::Instant;

use crate::dataflow::arg::Arg;
use crate::dataflow::json;
use crate::dataflow::key;
use crate::dataflow::message::{InputId, Lines, SinkMsg, WindowBatch, WindowMsg};
use crate::dataflow::metrics::LocalCounts;
use crate::dataflow::position::{Position, RawRecord, Stamp};
use crate::error::EngineError;

/// Records per window batch before it is sent.
const WINDOW_BATCH: usize = 1024;
/// Bytes buffered per sink before they are sent.
const SINK_BATCH: usize = 64 * 1024;

/// Whether a sink partitions its rows by a key the emitter gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keys {
    /// Text only (files, stdout).
    None,
    /// Each line with its partition key (Kinesis).
    PerLine,
}

/// Where a sink destination's lines go.
#[derive(Debug)]
enum SinkTo {
    /// The sink task's channel.
    Channel(Sender<SinkMsg>),
    /// Kept, in order, for [`Router::send_collected`].
    Collect(Vec<Lines>),
}

/// A sink destination: buffered JSON lines (and their partition keys).
#[derive(Debug)]
pub struct SinkOut {
    input: InputId,
    to: SinkTo,
    buf: Lines,
    keys: Keys,
    name: String,
    /// Length of the last batch sent (what the next one reserves).
    last_len: usize,
}

impl SinkOut {
    /// A destination sending to `sender` as input `input`.
    pub fn new(name: String, input: InputId, sender: Sender<SinkMsg>, keys: Keys) -> SinkOut {
        SinkOut {
            input,
            to: SinkTo::Channel(sender),
            buf: Lines::default(),
            keys,
            name,
            last_len: 0,
        }
    }

    /// A collecting copy.
    fn collector(&self) -> SinkOut {
        SinkOut {
            input: self.input,
            to: SinkTo::Collect(Vec::new()),
            buf: Lines::default(),
            keys: self.keys,
            name: self.name.clone(),
            last_len: 0,
        }
    }

    /// Sends `msg` (a collecting copy keeps line batches only).
    fn send(&mut self, msg: SinkMsg) -> Result<(), EngineError> {
        match &mut self.to {
            SinkTo::Channel(sender) => sender
                .send_blocking(msg)
                .map_err(|_| EngineError::Disconnected(self.name.clone())),
            SinkTo::Collect(kept) => {
                if let SinkMsg::Lines(_, lines) = msg {
                    kept.push(lines);
                }
                Ok(())
            }
        }
    }

    /// Whether this destination wants each line's partition key.
    pub fn wants_keys(&self) -> bool {
        self.keys == Keys::PerLine
    }

    /// Whether the sink's channel is full.
    pub fn is_full(&self) -> bool {
        match &self.to {
            SinkTo::Channel(sender) => sender.is_full(),
            SinkTo::Collect(_) => false,
        }
    }

    /// Appends one line (without its newline).
    pub fn push_line(&mut self, line: &[u8]) -> Result<(), EngineError> {
        self.push(line, None, None)
    }

    /// Appends one line, with its partition key (`None`: the sink picks
    /// one), that measures latency from `origin`.
    pub fn push(
        &mut self,
        line: &[u8],
        key: Option<&[u8]>,
        origin: Option<Instant>,
    ) -> Result<(), EngineError> {
        let buf = &mut self.buf;
        if buf.text.is_empty() {
            buf.origin = origin;
            // Sized like the previous batch: growing each batch by doubling
            // copied it four more times on the way to SINK_BATCH, while a
            // trickle of small flushes keeps small buffers.
            buf.text.reserve(self.last_len.max(line.len() + 1));
        }
        buf.text.extend_from_slice(line);
        buf.text.push(b'\n');
        if self.keys == Keys::PerLine {
            buf.keys.extend_from_slice(key.unwrap_or_default());
            buf.key_ends.push(buf.keys.len() as u32);
        }
        if buf.text.len() >= SINK_BATCH {
            self.flush()?;
        }
        Ok(())
    }

    /// Sends what is buffered.
    pub fn flush(&mut self) -> Result<(), EngineError> {
        if self.buf.text.is_empty() {
            return Ok(());
        }
        let lines = std::mem::take(&mut self.buf);
        // Room for a full batch and its last line, no more.
        self.last_len = lines.text.len().min(SINK_BATCH + SINK_BATCH / 4);
        self.send(SinkMsg::Lines(self.input, lines))
    }

    /// Flushes and sends checkpoint barrier `id`.
    pub fn barrier(&mut self, id: u64) -> Result<(), EngineError> {
        self.flush()?;
        self.send(SinkMsg::Barrier(self.input, id))
    }

    /// Flushes and says this input is done.
    pub fn end(&mut self) -> Result<(), EngineError> {
        self.flush()?;
        self.send(SinkMsg::End(self.input))
    }
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
    fn count(&self) -> usize {
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
    spec: WindowInput,
    input: InputId,
    partitions: Partitions,
    batches: Vec<WindowBatch>,
    scratch: Vec<u8>,
    arg_scratch: Vec<Arg>,
    /// The values of this record's [`Arg::Pick`]s, offsets from 0.
    pick_scratch: Vec<u8>,
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
        }
    }

    /// Encodes one record into its partition's batch. Returns the reason
    /// when the record cannot be used by this window (wrong types).
    fn push<R: Row + ?Sized>(
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
        let partition = ((hash >> 32) as usize) % self.batches.len();
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

    fn send(&mut self, partition: usize, watermark: i64) -> Result<(), EngineError> {
        let fresh = WindowBatch::sized_like(self.input, &self.batches[partition]);
        let mut batch = std::mem::replace(&mut self.batches[partition], fresh);
        batch.final_watermark = watermark;
        batch.origin.get_or_insert_with(Instant::now);
        self.send_batch(partition, batch)
    }

    fn send_batch(&mut self, partition: usize, batch: WindowBatch) -> Result<(), EngineError> {
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
    fn collector(&self) -> WindowOut {
        let count = self.partitions.count();
        WindowOut::new(
            self.spec.clone(),
            self.input,
            Partitions::Collect(count, Vec::new()),
        )
    }

    /// Sends every partition its batch (possibly empty) with the emitter's
    /// current watermark.
    pub fn flush(&mut self, watermark: i64) -> Result<(), EngineError> {
        for p in 0..self.batches.len() {
            self.send(p, watermark)?;
        }
        Ok(())
    }

    /// Sends `msg(input)` to every local partition.
    fn broadcast(&self, msg: impl Fn(InputId) -> WindowMsg) -> Result<(), EngineError> {
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

/// One path from the emitter through filters to a destination.
#[derive(Debug, Clone)]
pub struct Route {
    /// Indices into [`Router::filters`], all of which must pass.
    pub chain: Vec<usize>,
    /// The destination.
    pub target: Target,
}

/// A route's destination.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// Index into [`Router::windows`].
    Window(usize),
    /// Index into [`Router::sinks`].
    Sink(usize),
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

/// Everything one emitter sends, with its fused filters.
#[derive(Debug, Default)]
pub struct Router {
    /// The emitter's node name (for error rows).
    pub name: String,
    /// Filters on the emitter's routes.
    pub filters: Vec<CompiledExpr>,
    /// Routes, in plan order.
    pub routes: Vec<Route>,
    /// Window destinations.
    pub windows: Vec<WindowOut>,
    /// Sink destinations.
    pub sinks: Vec<SinkOut>,
    /// Where this emitter's bad records go (`.errors` sinks, or the
    /// dead-letter file).
    pub errors: Vec<SinkOut>,
    /// Whether `errors` is the dead-letter file.
    pub errors_to_dead_letter: bool,
    /// For a window's results: when the input that fires them was read
    /// (rows routed to sinks carry it to measure end-to-end latency).
    pub origin: Option<Instant>,
    memo: Vec<Option<bool>>,
    error_line: Vec<u8>,
}

impl Router {
    /// An emitter with no destinations yet.
    pub fn new(name: String) -> Router {
        Router {
            name,
            ..Router::default()
        }
    }

    /// Whether a sink on a route wants each row's partition key.
    pub fn wants_keys(&self) -> bool {
        self.sinks.iter().any(SinkOut::wants_keys)
    }

    /// Whether a consumer's channel is full: the emitter is (about to be)
    /// held back by a slower consumer.
    pub fn backpressured(&self) -> bool {
        self.windows.iter().any(WindowOut::is_full) || self.sinks.iter().any(SinkOut::is_full)
    }

    /// Whether anything consumes this emitter's main output.
    pub fn has_routes(&self) -> bool {
        !self.routes.is_empty()
    }

    /// Whether any route reads the record's values (through a filter or a
    /// window's key and arguments) rather than only its text.
    pub fn reads_rows(&self) -> bool {
        self.routes
            .iter()
            .any(|r| !r.chain.is_empty() || matches!(r.target, Target::Window(_)))
    }

    /// Whether a route stores records' text: a sink, or a window whose
    /// late records are kept for its `.late` output. When none does, an
    /// emitter may route a record without writing its text (see
    /// [`Router::route_untexted`]).
    pub fn reads_text(&self) -> bool {
        self.routes.iter().any(|r| match r.target {
            Target::Sink(_) => true,
            Target::Window(w) => self.windows[w].spec.carry_raw,
        })
    }

    /// Sends one record down every route whose filters pass.
    pub fn route<R: Row + ?Sized>(
        &mut self,
        row: &R,
        record: RawRecord<'_>,
        stamp: Stamp,
        counts: &mut LocalCounts,
    ) -> Result<(), EngineError> {
        self.route_untexted(row, record, stamp, counts, &mut |_| {})
    }

    /// [`Router::route`] for a record whose text was left unwritten
    /// (empty) because no route [`Router::reads_text`]: `render` writes it
    /// should a window reject the record, for its error row.
    pub fn route_untexted<R: Row + ?Sized>(
        &mut self,
        row: &R,
        record: RawRecord<'_>,
        stamp: Stamp,
        counts: &mut LocalCounts,
        render: &mut dyn FnMut(&mut Vec<u8>),
    ) -> Result<(), EngineError> {
        self.memo.clear();
        self.memo.resize(self.filters.len(), None);
        let mut delivered = false;
        for r in 0..self.routes.len() {
            let passes = self.routes[r]
                .chain
                .iter()
                .all(|&f| *self.memo[f].get_or_insert_with(|| self.filters[f].matches(row)));
            if !passes {
                continue;
            }
            delivered = true;
            match self.routes[r].target {
                Target::Sink(s) => self.sinks[s].push(record.text, record.key, self.origin)?,
                Target::Window(w) => {
                    if let Err(reason) = self.windows[w].push(row, stamp, &record)? {
                        if record.text.is_empty() {
                            let mut text = Vec::new();
                            render(&mut text);
                            self.error(
                                &reason,
                                RawRecord {
                                    text: &text,
                                    ..record
                                },
                                counts,
                            )?;
                        } else {
                            self.error(&reason, record, counts)?;
                        }
                    }
                }
            }
        }
        if !delivered && !self.routes.is_empty() {
            counts.filtered_out += 1;
        }
        Ok(())
    }

    /// Reports a record this emitter could not use.
    pub fn error(
        &mut self,
        reason: &str,
        record: RawRecord<'_>,
        counts: &mut LocalCounts,
    ) -> Result<(), EngineError> {
        counts.errors += 1;
        if self.errors_to_dead_letter {
            counts.dead_letters += 1;
        }
        let line = &mut self.error_line;
        line.clear();
        line.extend_from_slice(b"{\"source\":");
        json::write_str(line, &self.name);
        line.extend_from_slice(b",\"reason\":");
        json::write_str(line, reason);
        line.extend_from_slice(b",\"position\":");
        record.position.write_json(line);
        line.extend_from_slice(b",\"record\":");
        json::write_str(line, &String::from_utf8_lossy(record.text));
        line.push(b'}');
        for sink in &mut self.errors {
            sink.push_line(&self.error_line)?;
        }
        Ok(())
    }

    /// Calls `window` on every window destination, then `sink` on every
    /// sink and error destination: the order every control message keeps.
    fn each(
        &mut self,
        mut window: impl FnMut(&mut WindowOut) -> Result<(), EngineError>,
        mut sink: impl FnMut(&mut SinkOut) -> Result<(), EngineError>,
    ) -> Result<(), EngineError> {
        self.windows.iter_mut().try_for_each(&mut window)?;
        self.sinks
            .iter_mut()
            .chain(self.errors.iter_mut())
            .try_for_each(&mut sink)
    }

    /// Sends all buffered records, with the emitter's watermark.
    pub fn flush(&mut self, watermark: i64) -> Result<(), EngineError> {
        self.each(|w| w.flush(watermark), SinkOut::flush)
    }

    /// Marks the emitter idle for its window consumers.
    pub fn idle(&mut self, watermark: i64) -> Result<(), EngineError> {
        self.windows.iter_mut().try_for_each(|w| w.idle(watermark))
    }

    /// Flushes and sends checkpoint barrier `id` to every destination.
    pub fn barrier(&mut self, id: u64, watermark: i64) -> Result<(), EngineError> {
        self.each(|w| w.barrier(id, watermark), |s| s.barrier(id))
    }

    /// Flushes and ends every destination.
    pub fn end(&mut self, watermark: i64) -> Result<(), EngineError> {
        self.each(|w| w.end(watermark), SinkOut::end)
    }

    /// A collecting copy: the same filters, routes and encodings, keeping
    /// what it would send for [`Router::take_collected`].
    pub fn collector(&self) -> Router {
        Router {
            name: self.name.clone(),
            filters: self.filters.clone(),
            routes: self.routes.clone(),
            windows: self.windows.iter().map(WindowOut::collector).collect(),
            sinks: self.sinks.iter().map(SinkOut::collector).collect(),
            errors: self.errors.iter().map(SinkOut::collector).collect(),
            errors_to_dead_letter: self.errors_to_dead_letter,
            origin: None,
            memo: Vec::new(),
            error_line: Vec::new(),
        }
    }

    /// A collecting router's output since the last call, after a flush at
    /// `watermark` (every partition gets a batch, possibly empty, that
    /// carries it).
    ///
    /// # Errors
    /// None in practice: a collecting router sends nowhere.
    pub fn take_collected(&mut self, watermark: i64) -> Result<Collected, EngineError> {
        self.flush(watermark)?;
        let windows = self
            .windows
            .iter_mut()
            .map(|w| match &mut w.partitions {
                Partitions::Collect(_, kept) => std::mem::take(kept),
                _ => Vec::new(),
            })
            .collect();
        let take = |sinks: &mut Vec<SinkOut>| -> Vec<Vec<Lines>> {
            sinks
                .iter_mut()
                .map(|s| match &mut s.to {
                    SinkTo::Collect(kept) => std::mem::take(kept),
                    SinkTo::Channel(_) => Vec::new(),
                })
                .collect()
        };
        Ok(Collected {
            windows,
            sinks: take(&mut self.sinks),
            errors: take(&mut self.errors),
        })
    }

    /// Sends what a [`Router::collector`] of this router collected, in its
    /// order per destination. Its records were stamped with watermarks of
    /// their block alone; `entering` is this emitter's watermark before the
    /// block, so each becomes what one thread routing every record in
    /// order would have stamped: the larger of the two.
    ///
    /// # Errors
    /// A lost consumer.
    pub fn send_collected(
        &mut self,
        collected: Collected,
        entering: i64,
    ) -> Result<(), EngineError> {
        for (window, batches) in self.windows.iter_mut().zip(collected.windows) {
            for (partition, mut batch) in batches {
                for w in &mut batch.watermarks {
                    *w = (*w).max(entering);
                }
                batch.final_watermark = batch.final_watermark.max(entering);
                window.send_batch(partition, batch)?;
            }
        }
        for (sink, batches) in self
            .sinks
            .iter_mut()
            .chain(self.errors.iter_mut())
            .zip(collected.sinks.into_iter().chain(collected.errors))
        {
            for lines in batches {
                sink.send(SinkMsg::Lines(sink.input, lines))?;
            }
        }
        Ok(())
    }
}

/// What a collecting router kept, per destination in the router's order.
#[derive(Debug, Default)]
pub struct Collected {
    /// Per window destination: (partition, batch), in order.
    pub windows: Vec<Vec<(usize, WindowBatch)>>,
    /// Per sink destination: line batches, in order.
    pub sinks: Vec<Vec<Lines>>,
    /// Per error destination: line batches, in order.
    pub errors: Vec<Vec<Lines>>,
}
