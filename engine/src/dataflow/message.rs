//! What flows between tasks: batches of records with their watermarks, and
//! the end-of-stream marker.
//!
//! Watermarks travel in-band. Every record in a [`WindowBatch`] carries the
//! watermark its emitter had *before* that record, so a window operator
//! decides lateness exactly as if watermarks were updated after every
//! record, no matter how records were batched: replaying a source yields
//! the same late records and the same results.

use crate::dataflow::arg::Arg;
use crate::dataflow::rows::Rows;

/// Identifies one emitter instance (a source task or a window partition)
/// among a consumer's inputs.
pub type InputId = u32;

/// A message to a window partition.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "batches are the common message; boxing would add an allocation per batch"
)]
pub enum WindowMsg {
    /// Records (possibly none) and the emitter's watermark after them.
    Batch(WindowBatch),
    /// The emitter has had no records for its idle timeout: until its next
    /// batch it does not hold the watermark back.
    Idle(InputId),
    /// Checkpoint barrier: everything before it from this emitter belongs
    /// to the checkpoint, everything after it to the next.
    Barrier(InputId, u64),
    /// The emitter will send nothing more.
    End(InputId),
}

impl Envelope for WindowMsg {
    fn input(&self) -> InputId {
        match self {
            WindowMsg::Batch(b) => b.input,
            WindowMsg::Idle(i) | WindowMsg::Barrier(i, _) | WindowMsg::End(i) => *i,
        }
    }

    fn signal(&self) -> Signal {
        match self {
            WindowMsg::Batch(_) | WindowMsg::Idle(_) => Signal::Data,
            WindowMsg::Barrier(_, id) => Signal::Barrier(*id),
            WindowMsg::End(_) => Signal::End,
        }
    }
}

/// Records bound for one window partition, stored column-wise.
#[derive(Debug, Default)]
pub struct WindowBatch {
    /// The emitter.
    pub input: InputId,
    /// Event time of each record (ms).
    pub times: Vec<i64>,
    /// Emitter watermark before each record.
    pub watermarks: Vec<i64>,
    /// Stable hash of each record's key.
    pub hashes: Vec<u64>,
    /// Encoded keys, concatenated; record `i` is `keys[key_ends[i-1]..key_ends[i]]`.
    pub keys: Vec<u8>,
    /// End offsets into `keys`.
    pub key_ends: Vec<u32>,
    /// Aggregate arguments, `n_aggregates` per record.
    pub args: Vec<Arg>,
    /// Values the [`Arg::Pick`] arguments point into, key-encoded.
    pub values: Vec<u8>,
    /// Original record text (only when the window's `.late` output is read),
    /// concatenated like `keys`.
    pub raw: Vec<u8>,
    /// End offsets into `raw` (empty when raw text is not carried).
    pub raw_ends: Vec<u32>,
    /// Each record's source sequence number, concatenated like `keys`
    /// (only for a shuffle, which drops records it has applied).
    pub sequences: Vec<u8>,
    /// End offsets into `sequences` (empty when positions are not kept).
    pub sequence_ends: Vec<u32>,
    /// Each record's subsequence number (`u64::MAX`: none), with
    /// `sequences`.
    pub subsequences: Vec<u64>,
    /// How many rows each record stands for, when the emitter combined
    /// rows (records whose arguments are [`Arg::Merge`]); empty: one each.
    pub weights: Vec<u32>,
    /// Emitter watermark after the last record.
    pub final_watermark: i64,
    /// When the emitter started this batch (or sent it empty): the origin of
    /// the end-to-end latency of rows that this batch's watermark fires.
    pub origin: Option<std::time::Instant>,
    /// Where the batch goes once taken in, to be filled again
    /// ([`WindowBatch::recycle`]).
    pub spare: Option<async_channel::Sender<WindowBatch>>,
}

impl WindowBatch {
    /// Number of records.
    pub fn len(&self) -> usize {
        self.times.len()
    }

    /// Whether the batch holds no records.
    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    /// An empty batch from `input` with room for as much as `like` holds:
    /// batches of one emitter are alike, and a batch that starts at its
    /// final size does not regrow its vectors on the hot path. Sized by what
    /// `like` holds, not its capacity, so one outsized batch does not size
    /// every later one, and a small flushed batch starts a small one.
    pub fn sized_like(input: InputId, like: &WindowBatch) -> WindowBatch {
        WindowBatch {
            input,
            times: Vec::with_capacity(like.times.len()),
            watermarks: Vec::with_capacity(like.watermarks.len()),
            hashes: Vec::with_capacity(like.hashes.len()),
            keys: Vec::with_capacity(like.keys.len()),
            key_ends: Vec::with_capacity(like.key_ends.len()),
            args: Vec::with_capacity(like.args.len()),
            values: Vec::with_capacity(like.values.len()),
            raw: Vec::with_capacity(like.raw.len()),
            raw_ends: Vec::with_capacity(like.raw_ends.len()),
            sequences: Vec::with_capacity(like.sequences.len()),
            sequence_ends: Vec::with_capacity(like.sequence_ends.len()),
            subsequences: Vec::with_capacity(like.subsequences.len()),
            weights: Vec::with_capacity(like.weights.len()),
            final_watermark: i64::MIN,
            origin: None,
            spare: None,
        }
    }

    /// Empties the batch and hands it back to its emitter's spares (if it
    /// has room): batches are filled on the emitter's threads and taken in
    /// on the window's, and a batch freed there gave its pages back to the
    /// OS, to be faulted in and zeroed again for the next.
    pub fn recycle(mut self) {
        let Some(spare) = self.spare.clone() else {
            return;
        };
        self.times.clear();
        self.watermarks.clear();
        self.hashes.clear();
        self.keys.clear();
        self.key_ends.clear();
        self.args.clear();
        self.values.clear();
        self.raw.clear();
        self.raw_ends.clear();
        self.sequences.clear();
        self.sequence_ends.clear();
        self.subsequences.clear();
        self.weights.clear();
        self.final_watermark = i64::MIN;
        self.origin = None;
        let _ = spare.try_send(self);
    }

    /// How many rows record `i` stands for.
    pub fn rows(&self, i: usize) -> u64 {
        self.weights.get(i).map_or(1, |&w| u64::from(w))
    }

    /// How many rows the batch stands for.
    pub fn total_rows(&self) -> u64 {
        if self.weights.is_empty() {
            self.len() as u64
        } else {
            self.weights.iter().map(|&w| u64::from(w)).sum()
        }
    }

    /// The encoded key of record `i`.
    pub fn key(&self, i: usize) -> &[u8] {
        let start = if i == 0 {
            0
        } else {
            self.key_ends[i - 1] as usize
        };
        &self.keys[start..self.key_ends[i] as usize]
    }

    /// The source sequence number of record `i` (empty when positions are
    /// not kept).
    pub fn sequence(&self, i: usize) -> &[u8] {
        let Some(&end) = self.sequence_ends.get(i) else {
            return &[];
        };
        let start = if i == 0 {
            0
        } else {
            self.sequence_ends[i - 1] as usize
        };
        &self.sequences[start..end as usize]
    }

    /// The original text of record `i`, when carried.
    pub fn raw(&self, i: usize) -> Option<&[u8]> {
        let end = *self.raw_ends.get(i)? as usize;
        let start = if i == 0 {
            0
        } else {
            self.raw_ends[i - 1] as usize
        };
        Some(&self.raw[start..end])
    }
}

/// A message to a sink.
#[derive(Debug)]
pub enum SinkMsg {
    /// Complete JSON lines.
    Lines(InputId, Lines),
    /// A window's result rows, for the sink to write as JSON lines.
    Rows(InputId, Rows),
    /// Checkpoint barrier (see [`WindowMsg::Barrier`]).
    Barrier(InputId, u64),
    /// The emitter will send nothing more.
    End(InputId),
}

impl Envelope for SinkMsg {
    fn input(&self) -> InputId {
        match self {
            SinkMsg::Lines(i, _)
            | SinkMsg::Rows(i, _)
            | SinkMsg::Barrier(i, _)
            | SinkMsg::End(i) => *i,
        }
    }

    fn signal(&self) -> Signal {
        match self {
            SinkMsg::Lines(..) | SinkMsg::Rows(..) => Signal::Data,
            SinkMsg::Barrier(_, id) => Signal::Barrier(*id),
            SinkMsg::End(_) => Signal::End,
        }
    }
}

/// Rows for a sink: JSON lines, and for a sink that partitions its
/// output (Kinesis) each line's partition key as the emitter gave it.
#[derive(Debug, Default)]
pub struct Lines {
    /// Complete JSON lines, each ending in `\n`.
    pub text: Vec<u8>,
    /// Partition keys, concatenated (empty: the sink picks one).
    pub keys: Vec<u8>,
    /// End offsets into `keys`, one per line (keyed sinks only).
    pub key_ends: Vec<u32>,
    /// When the input that produced the oldest line was read.
    pub origin: Option<std::time::Instant>,
}

impl Lines {
    /// Lines without partition keys.
    pub fn plain(text: Vec<u8>) -> Lines {
        Lines {
            text,
            ..Lines::default()
        }
    }

    /// Empties the batch, keeping its allocations.
    pub fn clear(&mut self) {
        self.text.clear();
        self.keys.clear();
        self.key_ends.clear();
        self.origin = None;
    }

    /// Each line (without its newline, the empty rest after the last
    /// newline included) with its partition key, when the emitter gave
    /// keys.
    pub fn rows(&self) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
        let mut ends = self.key_ends.iter();
        let mut start = 0usize;
        self.text.split(|&b| b == b'\n').map(move |line| {
            let key = ends.next().map(|&end| {
                let key = self.keys.get(start..end as usize).unwrap_or_default();
                start = end as usize;
                key
            });
            (line, key)
        })
    }
}

/// What a message means to the task loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Records, rows or a watermark change: the task's own business.
    Data,
    /// Checkpoint barrier `N` from the sending emitter.
    Barrier(u64),
    /// The sending emitter is done.
    End,
}

/// A message that says which emitter sent it and what it means.
pub trait Envelope {
    /// The sending emitter.
    fn input(&self) -> InputId;
    /// Data, a barrier or the end of the input.
    fn signal(&self) -> Signal;
}
