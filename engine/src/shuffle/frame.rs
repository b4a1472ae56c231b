//! The shuffle's wire format: one Kinesis record of the shuffle stream is
//! one *frame*, from one source shard to one key group of one window.
//!
//! A batch frame holds a run of a [`WindowBatch`]'s records exactly as the
//! source side's emitter encoded them for the window (event time, the
//! watermark before the record, key hash, key, aggregate arguments, the
//! record's text when the window's `.late` output is read), each with its
//! source position (sequence and subsequence number), so the group side
//! feeds the window task what a local emitter would have and drops
//! records it has already applied. Control frames carry what else a local
//! emitter says: idle, and end. Records of one source shard keep their order within a
//! window and key group, so the group side needs no reordering.
//!
//! Layout (little-endian): `K`, version, kind, window (u16), group (u32),
//! shard (u16 length + bytes), watermark (i64), then per kind:
//! - batch: flags (bit 0: records carry text), arguments per record (u16),
//!   count (u32), then per record the sequence number (u8 length, 0 = the
//!   previous record's), subsequence (u64, `u64::MAX` for none), time,
//!   watermark, hash, key (u32 length + bytes), the arguments (tag and
//!   value; a pick carries its value inline), and the text.

use kflow_state::codec::Reader;
use kflow_state::StateError;

use crate::dataflow::arg::Arg;
use crate::dataflow::message::WindowBatch;

const MAGIC: u8 = b'K';
const VERSION: u8 = 1;
const BATCH: u8 = 0;
const IDLE: u8 = 1;
const END: u8 = 2;
/// No subsequence number: the record was not inside a KPL aggregate.
const NO_SUBSEQUENCE: u64 = u64::MAX;
/// Frames are cut at this size, under Kinesis' 1 MiB record limit with
/// room for the last record that crosses it.
pub const FRAME_BYTES: usize = 256 << 10;

/// Where a frame comes from and goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The window's node index in the job plan.
    pub window: u16,
    /// The key group.
    pub group: u32,
    /// The source shard.
    pub shard: String,
}

/// A decoded frame.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "batch frames are the common kind; boxing would add an allocation per frame"
)]
pub enum Frame {
    /// Records (possibly none) and the source's watermark after them.
    Batch {
        /// Where from and to.
        route: Route,
        /// The records, with `final_watermark` set.
        batch: WindowBatch,
    },
    /// The source shard has had no records for its idle timeout.
    Idle {
        /// Where from and to.
        route: Route,
        /// Its watermark.
        watermark: i64,
    },
    /// The source shard ended (or reached its stop position).
    End {
        /// Where from and to.
        route: Route,
    },
}

impl Frame {
    /// Where the frame comes from and goes to.
    pub fn route(&self) -> &Route {
        match self {
            Frame::Batch { route, .. } | Frame::Idle { route, .. } | Frame::End { route, .. } => {
                route
            }
        }
    }
}

fn header(kind: u8, route: &Route, watermark: i64, out: &mut Vec<u8>) {
    out.extend_from_slice(&[MAGIC, VERSION, kind]);
    out.extend_from_slice(&route.window.to_le_bytes());
    out.extend_from_slice(&route.group.to_le_bytes());
    put_short(route.shard.as_bytes(), out);
    out.extend_from_slice(&watermark.to_le_bytes());
}

fn put_short(bytes: &[u8], out: &mut Vec<u8>) {
    let len = bytes.len().min(usize::from(u16::MAX));
    out.extend_from_slice(&(len as u16).to_le_bytes());
    out.extend_from_slice(&bytes[..len]);
}

fn put_long(bytes: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// An idle frame.
pub fn encode_idle(route: &Route, watermark: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + route.shard.len());
    header(IDLE, route, watermark, &mut out);
    out
}

/// An end frame.
pub fn encode_end(route: &Route) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + route.shard.len());
    header(END, route, i64::MAX, &mut out);
    out
}

/// The frames of `batch`, cut at about [`FRAME_BYTES`]; `n_args` is the
/// window's aggregate count. A frame that is not the last says the
/// watermark before its successor's first record; an empty batch gives
/// one frame that carries only the watermark.
pub fn encode_batch(route: &Route, batch: &WindowBatch, n_args: usize) -> Vec<Vec<u8>> {
    // Rows combined by a window ([`crate::dataflow::route::Combine`]) are
    // only ever sent to local partitions, never through a shuffle.
    debug_assert!(batch.weights.is_empty(), "a combined batch in a shuffle");
    let carry_raw = !batch.raw_ends.is_empty();
    let mut frames = Vec::new();
    let mut start = 0;
    loop {
        let mut out = Vec::with_capacity(FRAME_BYTES.min(64 + batch.keys.len() * 4));
        let mut end = start;
        let mut previous: &[u8] = &[];
        let mut body = Vec::new();
        while end < batch.len() && body.len() < FRAME_BYTES {
            encode_record(batch, end, n_args, carry_raw, &mut previous, &mut body);
            end += 1;
        }
        let watermark = match batch.watermarks.get(end) {
            Some(&w) => w,
            None => batch.final_watermark,
        };
        header(BATCH, route, watermark, &mut out);
        out.push(u8::from(carry_raw));
        out.extend_from_slice(&(n_args as u16).to_le_bytes());
        out.extend_from_slice(&((end - start) as u32).to_le_bytes());
        out.extend_from_slice(&body);
        frames.push(out);
        start = end;
        if start >= batch.len() {
            return frames;
        }
    }
}

fn encode_record<'b>(
    batch: &'b WindowBatch,
    i: usize,
    n_args: usize,
    carry_raw: bool,
    previous: &mut &'b [u8],
    out: &mut Vec<u8>,
) {
    let seq = batch.sequence(i);
    if seq == *previous && i > 0 {
        out.push(0);
    } else {
        let len = seq.len().min(255);
        out.push(len as u8);
        out.extend_from_slice(&seq[..len]);
        *previous = seq;
    }
    let subsequence = batch.subsequences.get(i).copied().unwrap_or(NO_SUBSEQUENCE);
    out.extend_from_slice(&subsequence.to_le_bytes());
    out.extend_from_slice(&batch.times[i].to_le_bytes());
    out.extend_from_slice(&batch.watermarks[i].to_le_bytes());
    out.extend_from_slice(&batch.hashes[i].to_le_bytes());
    put_long(batch.key(i), out);
    for arg in &batch.args[i * n_args..(i + 1) * n_args] {
        match *arg {
            Arg::None => out.push(0),
            Arg::Num(n) => {
                out.push(1);
                out.extend_from_slice(&n.to_le_bytes());
            }
            Arg::Hash(h) => {
                out.push(2);
                out.extend_from_slice(&h.to_le_bytes());
            }
            Arg::Pick { order, start, len } => {
                out.push(3);
                out.extend_from_slice(&order.to_le_bytes());
                let value = &batch.values[start as usize..(start + len) as usize];
                put_long(value, out);
            }
            Arg::Merge { start, len } => {
                out.push(4);
                let value = &batch.values[start as usize..(start + len) as usize];
                put_long(value, out);
            }
        }
    }
    if carry_raw {
        put_long(batch.raw(i).unwrap_or_default(), out);
    }
}

fn corrupt(what: &str) -> StateError {
    StateError::Corrupt(format!("shuffle frame: {what}"))
}

/// The window and key group of a frame, read from its header alone: a
/// reader skips other groups' frames without decoding them.
pub fn addressee(bytes: &[u8]) -> Option<(u16, u32)> {
    let header = bytes.get(..9)?;
    if header[0] != MAGIC || header[1] != VERSION {
        return None;
    }
    let window = u16::from_le_bytes([header[3], header[4]]);
    let group = u32::from_le_bytes([header[5], header[6], header[7], header[8]]);
    Some((window, group))
}

/// Decodes one frame.
///
/// # Errors
/// [`StateError::Corrupt`] for bytes that are not a frame of this version.
pub fn decode(bytes: &[u8]) -> Result<Frame, StateError> {
    let mut r = Reader::new(bytes, "shuffle frame");
    if r.u8()? != MAGIC {
        return Err(corrupt("not a kflow shuffle record"));
    }
    let version = r.u8()?;
    if version != VERSION {
        return Err(corrupt(&format!(
            "version {version}, this build reads {VERSION}"
        )));
    }
    let kind = r.u8()?;
    let window = r.u16()?;
    let group = r.u32()?;
    let shard_len = usize::from(r.u16()?);
    let shard = String::from_utf8_lossy(r.bytes(shard_len)?).into_owned();
    let watermark = r.i64()?;
    let route = Route {
        window,
        group,
        shard,
    };
    let frame = match kind {
        IDLE => Frame::Idle { route, watermark },
        END => Frame::End { route },
        BATCH => {
            let batch = decode_batch(&mut r, watermark)?;
            Frame::Batch { route, batch }
        }
        other => return Err(corrupt(&format!("unknown kind {other}"))),
    };
    if !r.is_done() {
        return Err(corrupt("trailing bytes"));
    }
    Ok(frame)
}

fn decode_batch(r: &mut Reader<'_>, watermark: i64) -> Result<WindowBatch, StateError> {
    let carry_raw = r.u8()? & 1 == 1;
    let n_args = usize::from(r.u16()?);
    // A record takes at least 45 bytes.
    let n = r.len(45)?;
    let mut batch = WindowBatch {
        final_watermark: watermark,
        ..WindowBatch::default()
    };
    batch.times.reserve(n);
    batch.watermarks.reserve(n);
    batch.hashes.reserve(n);
    batch.key_ends.reserve(n);
    batch.args.reserve(n * n_args);
    let mut previous: &[u8] = &[];
    for _ in 0..n {
        let len = usize::from(r.u8()?);
        if len > 0 {
            previous = r.bytes(len)?;
        }
        batch.sequences.extend_from_slice(previous);
        batch.sequence_ends.push(batch.sequences.len() as u32);
        batch.subsequences.push(r.u64()?);
        batch.times.push(r.i64()?);
        batch.watermarks.push(r.i64()?);
        batch.hashes.push(r.u64()?);
        batch.keys.extend_from_slice(r.prefixed()?);
        batch.key_ends.push(batch.keys.len() as u32);
        for _ in 0..n_args {
            let arg = match r.u8()? {
                0 => Arg::None,
                1 => Arg::Num(r.f64()?),
                2 => Arg::Hash(r.u64()?),
                3 => {
                    let order = r.f64()?;
                    let value = r.prefixed()?;
                    let start = batch.values.len() as u32;
                    batch.values.extend_from_slice(value);
                    Arg::Pick {
                        order,
                        start,
                        len: value.len() as u32,
                    }
                }
                4 => {
                    let value = r.prefixed()?;
                    let start = batch.values.len() as u32;
                    batch.values.extend_from_slice(value);
                    Arg::Merge {
                        start,
                        len: value.len() as u32,
                    }
                }
                other => return Err(corrupt(&format!("unknown argument tag {other}"))),
            };
            batch.args.push(arg);
        }
        if carry_raw {
            batch.raw.extend_from_slice(r.prefixed()?);
            batch.raw_ends.push(batch.raw.len() as u32);
        }
    }
    Ok(batch)
}

#[cfg(test)]
mod tests;
