//! Block-parallel decoding of one file: the source thread cuts the file
//! into line-aligned blocks, a pool of decoding threads decodes, filters,
//! encodes and partitions each block's records with a collecting copy of
//! the source's router, and the source thread hands each block's output on
//! in file order.
//!
//! What one thread reading every line in order would do is kept exactly:
//!
//! - *Order.* Per destination (a window partition, a sink) the batches go
//!   out in file order, block after block.
//! - *Watermarks.* A decoder stamps each record with the watermark of its
//!   block alone; on hand-off the source raises every stamp to its own
//!   watermark before the block (`Router::send_collected`), which is the
//!   stamp one thread would have given.
//! - *Positions.* The reader counts each block's lines before handing it
//!   out, so bad records carry their true line numbers, and a checkpoint
//!   barrier goes out between blocks with the position of the last block
//!   handed on.
//! - *Graceful stop.* Blocks decoded past the stop's barrier are dropped,
//!   never sent.
//! - *Repeats.* A source that drops repeats (`dedup`) has its decoders
//!   send each block's ids to the source thread, in parts as they decode,
//!   which checks them in file order and answers which records repeat
//!   ([`repeats`]) before they are routed.
//!
//! A source that follows its file decodes on one thread.

mod repeats;

use std::fs::File;
use std::io::Read;
use std::sync::{mpsc, Arc};

use kflow_jobs::Value;

use crate::dataflow::metrics::buckets::{LocalBuckets, SIZE_BOUNDS};
use crate::dataflow::metrics::{LocalCounts, SourceMetrics};
use crate::dataflow::position::{Position, RawRecord, Stamp};
use crate::dataflow::reuse::reuse;
use crate::dataflow::route::Collected;
use crate::error::EngineError;
use crate::sources::core::watermark_of;
use crate::sources::ingest::Ingest;
use crate::sources::pool::{self, InOrder, Pool};

use self::repeats::{Answer, Checks, Ids, Probe, Start, PART};
use super::{arrival, checked_text, file_record, lines, route_line, FileSourceTask, Progress};

/// Bytes per block: big enough that per-block messages are rare, small
/// enough that a checkpoint barrier waits little for the block ahead.
const BLOCK: usize = 256 << 10;

/// Line-aligned text handed to a decoder.
struct Block {
    index: u64,
    /// A buffer whose first `len` bytes are whole lines, each ending
    /// with `\n` (the rest is stale: buffers are reused unzeroed).
    text: Vec<u8>,
    len: usize,
    /// Lines before the block.
    first_line: u64,
    /// File offset after the block.
    end_offset: u64,
}

/// A block decoded.
struct Decoded {
    index: u64,
    /// Lines up to the end of the block.
    end_line: u64,
    end_offset: u64,
    /// The block's largest event time (`i64::MIN`: none).
    max_time: i64,
    counts: LocalCounts,
    collected: Collected,
    /// The block's buffer, for the reader to fill again.
    text: Vec<u8>,
}

/// What a decoding thread sends the source thread.
enum Message {
    /// One part of a block's ids ([`PART`] at most) to check for repeats.
    Probe(Probe),
    /// A block decoded.
    Decoded(Decoded),
}

/// The channel from the decoding threads to the source thread.
type ToSource = pool::ToSource<Message>;

/// One decoding thread's state: its copy of the source's ingest and the
/// lists a dedup source's blocks are decoded into.
struct Decoder {
    ingest: Ingest,
    scratch: Scratch,
}

/// The lists [`DecoderCtx::decode_checked`] fills, kept empty between
/// blocks (a list freed after each block went back to the OS and was
/// faulted in and zeroed again: `clear_page_erms` was 16% of W5's
/// decoding threads).
#[derive(Default)]
struct Scratch {
    values: Vec<Value<'static>>,
    records: Vec<(RawRecord<'static>, i64)>,
    /// Id lists for the probe's parts, and the list they come back in.
    spare_ids: Vec<Ids>,
    parts: Vec<Ids>,
    verdicts: Vec<bool>,
    /// Working space of the id hash.
    id: Vec<u8>,
}

/// A placeholder record, never read: the filler of [`reuse`].
const NO_RECORD: RawRecord<'static> = RawRecord {
    text: &[],
    position: Position::File { file: "", line: 0 },
    key: None,
};

/// What a decoding thread needs besides its ingest.
#[derive(Clone)]
struct DecoderCtx {
    /// The source's name.
    name: Arc<str>,
    display_path: Arc<str>,
    max_out_of_orderness_ms: i64,
    own: Arc<SourceMetrics>,
}

impl DecoderCtx {
    /// Decodes one block into `decoder`'s collecting router.
    fn decode(
        &self,
        decoder: &mut Decoder,
        block: Block,
        source: &ToSource,
    ) -> Result<Decoded, EngineError> {
        let Decoder { ingest, scratch } = decoder;
        if ingest.dedup_field.is_some() {
            return self.decode_checked(ingest, scratch, block, source);
        }
        let mut counts = LocalCounts::default();
        let mut sizes = LocalBuckets::new(SIZE_BOUNDS);
        let mut line_no = block.first_line;
        let mut max_time = i64::MIN;
        let mut values = ingest.values();
        for line in lines(&block.text[..block.len]) {
            line_no += 1;
            let watermark = watermark_of(max_time, self.max_out_of_orderness_ms);
            let place = (&*self.display_path, line_no);
            let routed = route_line(
                ingest,
                &mut values,
                line,
                place,
                watermark,
                &mut counts,
                &mut sizes,
            )?;
            if let Some(time) = routed {
                max_time = max_time.max(time);
            }
        }
        drop(values);
        self.finish(ingest, block, line_no, max_time, counts, sizes)
    }

    /// [`DecoderCtx::decode`] for a source that drops repeats: decodes
    /// every record of the block, sends their ids to the source thread to
    /// be checked in file order, [`PART`] at a time as it goes, and routes
    /// the records it did not find repeated. The lists it fills are
    /// `scratch`'s, kept from block to block.
    fn decode_checked(
        &self,
        ingest: &mut Ingest,
        scratch: &mut Scratch,
        block: Block,
        source: &ToSource,
    ) -> Result<Decoded, EngineError> {
        let mut counts = LocalCounts::default();
        let mut sizes = LocalBuckets::new(SIZE_BOUNDS);
        let mut line_no = block.first_line;
        let slots = ingest.projection.slots();
        // Every decoded record's values, `slots` each, borrowing the text.
        let mut values: Vec<Value<'_>> =
            reuse(std::mem::take(&mut scratch.values), |_| Value::Null);
        let mut records: Vec<(RawRecord<'_>, i64)> =
            reuse(std::mem::take(&mut scratch.records), |_| (NO_RECORD, 0));
        let lost = || EngineError::Disconnected(self.name.to_string());
        let (reply, answer) = mpsc::sync_channel(1);
        let mut start = Some(Start {
            verdicts: std::mem::take(&mut scratch.verdicts),
            parts: std::mem::take(&mut scratch.parts),
            reply,
        });
        // Sends one part of the block's ids; the first carries `start`.
        let index = block.index;
        let mut send = |ids: Ids, last: bool| {
            let start = start.take();
            let part = Probe {
                index,
                ids,
                last,
                start,
            };
            source.send(Ok(Message::Probe(part))).map_err(|_| lost())
        };
        let spare = &mut scratch.spare_ids;
        let mut ids = spare.pop().unwrap_or_default();
        for (line, line_utf8) in lines(&block.text[..block.len]) {
            line_no += 1;
            let place = (&*self.display_path, line_no);
            let Some(record) = file_record(line, place, &mut counts, &mut sizes) else {
                continue;
            };
            let at = values.len();
            values.resize(at + slots, Value::Null);
            let arrival = arrival(ingest);
            let checked = checked_text(line_utf8, &record);
            match ingest.decode(record, checked, &mut values[at..], arrival, &mut counts)? {
                Some(time) => {
                    ids.push((ingest.id_hash(&values[at..], &mut scratch.id), time));
                    records.push((record, time));
                }
                None => values.truncate(at),
            }
            if ids.len() == PART {
                let next = spare.pop().unwrap_or_default();
                send(std::mem::replace(&mut ids, next), false)?;
            }
        }
        send(ids, true)?;
        let Answer { repeats, mut parts } = pool::recv_yielding(&answer).map_err(|_| lost())?;
        debug_assert_eq!(repeats.len(), records.len(), "a verdict per record");
        let mut max_time = i64::MIN;
        let decoded = values.chunks_exact(slots.max(1)).zip(&records);
        for ((values, &(record, time)), &repeat) in decoded.zip(&repeats) {
            if repeat {
                counts.duplicates += 1;
                continue;
            }
            let watermark = watermark_of(max_time, self.max_out_of_orderness_ms);
            ingest.route_decoded(record, values, Stamp { time, watermark }, &mut counts)?;
            max_time = max_time.max(time);
        }
        scratch.values = reuse(values, |_| Value::Null);
        scratch.records = reuse(records, |_| (NO_RECORD, 0));
        for mut ids in parts.drain(..) {
            ids.clear();
            scratch.spare_ids.push(ids);
        }
        scratch.parts = parts;
        scratch.verdicts = repeats;
        self.finish(ingest, block, line_no, max_time, counts, sizes)
    }

    /// The block decoded through line `end_line`, its records' largest
    /// event time `max_time`.
    fn finish(
        &self,
        ingest: &mut Ingest,
        block: Block,
        end_line: u64,
        max_time: i64,
        counts: LocalCounts,
        mut sizes: LocalBuckets,
    ) -> Result<Decoded, EngineError> {
        sizes.publish(&self.own.sizes);
        let collected = ingest
            .router
            .take_collected(watermark_of(max_time, self.max_out_of_orderness_ms))?;
        Ok(Decoded {
            index: block.index,
            end_line,
            end_offset: block.end_offset,
            max_time,
            counts,
            collected,
            text: block.text,
        })
    }
}

/// Reads line-aligned blocks from `file`.
struct Blocks {
    file: File,
    /// A partial last line, carried into the next block.
    carry: Vec<u8>,
    /// File offset after the text handed out so far.
    offset: u64,
    /// Lines handed out so far.
    line: u64,
    next_index: u64,
    at_end: bool,
    /// Buffers of blocks handed on, to fill again (fresh megabytes cost
    /// page faults on every block).
    spare: Vec<Vec<u8>>,
}

impl Blocks {
    /// The next block, `None` at the end of the file.
    fn next(&mut self) -> std::io::Result<Option<Block>> {
        loop {
            if self.at_end {
                return Ok(None);
            }
            let mut text = self.spare.pop().unwrap_or_default();
            let filled = self.carry.len();
            if text.len() < filled + BLOCK {
                text.resize(filled + BLOCK, 0);
            }
            text[..filled].copy_from_slice(&self.carry);
            self.carry.clear();
            let n = self.file.read(&mut text[filled..filled + BLOCK])?;
            let mut len = filled + n;
            let length = if n == 0 {
                self.at_end = true;
                if len == 0 {
                    return Ok(None);
                }
                // The last line may lack its newline.
                let length = len;
                if text[len - 1] != b'\n' {
                    if text.len() == len {
                        text.push(b'\n');
                    } else {
                        text[len] = b'\n';
                    }
                    len += 1;
                }
                length
            } else {
                let Some(last) = memchr::memrchr(b'\n', &text[..len]) else {
                    // No whole line yet: read on.
                    self.carry.extend_from_slice(&text[..len]);
                    self.spare.push(text);
                    continue;
                };
                self.carry.extend_from_slice(&text[last + 1..len]);
                len = last + 1;
                len
            };
            let lines = memchr::memchr_iter(b'\n', &text[..len]).count() as u64;
            let block = Block {
                index: self.next_index,
                text,
                len,
                first_line: self.line,
                end_offset: self.offset + length as u64,
            };
            self.next_index += 1;
            self.line += lines;
            self.offset += length as u64;
            return Ok(Some(block));
        }
    }
}

/// Reads `file` (positioned at `p`) to its end with `decoders`, each a
/// copy of the task's ingest, and hands the output on in order.
pub(super) fn run(
    task: &mut FileSourceTask,
    file: File,
    mut p: Progress,
    decoders: Vec<Ingest>,
) -> Result<(), EngineError> {
    let in_flight = 2 * decoders.len() as u64 + 1;
    let ctx = DecoderCtx {
        name: Arc::from(task.core.name.as_str()),
        display_path: Arc::from(task.display_path.as_str()),
        max_out_of_orderness_ms: task.core.max_out_of_orderness_ms,
        own: task.core.own.clone(),
    };
    // As many blocks fit in the queue as the source keeps in flight, so
    // handing one out never waits (it must not: decoders of a dedup
    // source wait for the source thread's verdicts).
    let decoders = decoders
        .into_iter()
        .map(|ingest| Decoder {
            ingest,
            scratch: Scratch::default(),
        })
        .collect();
    let pool = Pool::start(
        &task.core.name,
        decoders,
        in_flight as usize,
        move |decoder: &mut Decoder, block: Block, source: &ToSource| {
            ctx.decode(decoder, block, source).map(Message::Decoded)
        },
    )?;
    let mut blocks = Blocks {
        file,
        carry: Vec::new(),
        offset: p.offset,
        line: p.line,
        next_index: 0,
        at_end: false,
        spare: Vec::new(),
    };
    let mut decoded: InOrder<Decoded> = InOrder::default();
    let mut checks = Checks::new(p.max_time, task.core.max_out_of_orderness_ms);
    if let Some(dedup) = &mut task.core.ingest.dedup {
        // Checks run ahead from the first block on: until a block is
        // handed on, a snapshot stops where the run stands now.
        dedup.save_through(dedup.mark());
    }
    let result = (|| loop {
        while blocks.next_index - decoded.next() < in_flight {
            match blocks.next().map_err(|e| task.io(e))? {
                Some(block) => pool.submit(block)?,
                None => break,
            }
        }
        if decoded.next() == blocks.next_index {
            return Ok(true);
        }
        match pool.next()? {
            Message::Probe(probe) => {
                if let Some(dedup) = &mut task.core.ingest.dedup {
                    checks.offer(probe, dedup);
                }
                continue;
            }
            Message::Decoded(block) => decoded.put(block.index, block),
        };
        while let Some(mut block) = decoded.pop() {
            if let Some(dedup) = &mut task.core.ingest.dedup {
                checks.handed_on(block.index, dedup);
            }
            blocks.spare.push(std::mem::take(&mut block.text));
            let core = &mut task.core;
            let entering = core.watermark_of(p.max_time);
            core.set_busy();
            core.ingest
                .router
                .send_collected(block.collected, entering)?;
            core.counts.add(&block.counts);
            p.max_time = p.max_time.max(block.max_time);
            p.offset = block.end_offset;
            p.line = block.end_line;
            let watermark = core.watermark_of(p.max_time);
            core.after_block(watermark, || p.position(false))?;
            if core.parked() {
                return Ok(false);
            }
        }
    })();
    // Decoders waiting for their verdicts give up.
    drop(checks);
    pool.stop();
    match result {
        Ok(true) => task.core.finish(&p.position(true)),
        Ok(false) => task.core.park(),
        Err(e) => Err(e),
    }
}
