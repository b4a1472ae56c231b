//! The file source: JSON lines read in large blocks, decoded, time-stamped
//! and routed, with its byte offset checkpointed.
//!
//! The file is read in blocks of a few MiB; every complete line of a block is
//! decoded in place (strings borrow from the block), so the per-record path
//! allocates nothing. After every record the source checks whether the
//! coordinator asked for a checkpoint; if so it sends the barrier right
//! after that record and reports its [`FilePosition`]: the offset of the
//! next line, its line number and its clock. A restart seeks to that offset, so every
//! line is applied once. With `follow = false` the end of the file ends the
//! source; with `follow = true` it keeps polling for appended lines.
//!
//! A bounded file can be decoded by a pool of threads in line-aligned
//! blocks handed on in order ([`blocks`]; `kflow run --decode-threads`);
//! its barriers then go out between blocks rather than between records. In a `kflow test` run the sources read in step
//! ([`turns`]).

mod blocks;
pub mod turns;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use kflow_jobs::Value;

use crate::dataflow::metrics::buckets::LocalBuckets;
use crate::dataflow::metrics::LocalCounts;
use crate::dataflow::position::{Position, RawRecord, Stamp};
use crate::error::EngineError;
use crate::sources::core::SourceCore;
use crate::sources::ingest::{now_ms, Ingest};

const BLOCK: usize = 4 << 20;
const POLL: Duration = Duration::from_millis(50);

/// A file source's checkpointed position and clock.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FilePosition {
    /// Byte offset of the next unread line.
    pub offset: u64,
    /// Lines consumed so far (the next line is `line + 1`).
    pub line: u64,
    /// Largest event time seen (drives the watermark).
    pub max_time: Option<i64>,
    /// The source reached the end of its file.
    pub ended: bool,
    /// `kflow test`'s turns the source had finished.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub turns: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Whether a file source ends at the end of its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    /// Read to the end, then end (a bounded run).
    No,
    /// Keep polling for appended lines (`follow = true`).
    Tail,
}

/// One file source task.
pub struct FileSourceTask {
    /// What every source does.
    pub core: SourceCore,
    /// Resolved path to read.
    pub path: PathBuf,
    /// The path as the job file names it (for error positions).
    pub display_path: String,
    /// End at the end of the file, or tail it.
    pub follow: Follow,
    /// Where to resume (from the last checkpoint).
    pub restore: FilePosition,
    /// Threads decoding the file in blocks (below 2: this thread).
    pub decode_threads: usize,
    /// A `kflow test` case's turns, when this is a test run.
    pub script: Option<turns::Script>,
}

/// Where the reader is: what has been routed so far.
#[derive(Debug, Clone, Copy)]
struct Progress {
    /// Offset of the next unread line.
    offset: u64,
    /// Lines consumed.
    line: u64,
    /// Largest event time seen.
    max_time: i64,
    /// `kflow test`'s turns finished.
    turns: u64,
}

impl Progress {
    fn position(&self, ended: bool) -> FilePosition {
        FilePosition {
            offset: self.offset,
            line: self.line,
            max_time: (self.max_time != i64::MIN).then_some(self.max_time),
            ended,
            turns: self.turns,
        }
    }
}

impl FileSourceTask {
    fn io(&self, source: std::io::Error) -> EngineError {
        EngineError::SourceIo {
            name: self.core.name.clone(),
            path: self.path.clone(),
            source,
        }
    }

    /// Reads the file to its end (or forever when following).
    ///
    /// # Errors
    /// I/O errors reading the file, or a lost downstream task.
    pub fn run(mut self) -> Result<(), EngineError> {
        let mut file = File::open(&self.path).map_err(|e| self.io(e))?;
        self.core
            .own
            .open
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let length = file.metadata().map_err(|e| self.io(e))?.len();
        if self.restore.offset > length {
            return Err(self.io(std::io::Error::other(format!(
                "the checkpoint is at byte {} but the file has only {length} bytes: it was truncated or replaced",
                self.restore.offset
            ))));
        }
        file.seek(SeekFrom::Start(self.restore.offset))
            .map_err(|e| self.io(e))?;
        let mut p = Progress {
            offset: self.restore.offset,
            line: self.restore.line,
            max_time: self.restore.max_time.unwrap_or(i64::MIN),
            turns: self.restore.turns,
        };
        if self.follow == Follow::No {
            if let Some(decoders) = self.decoders() {
                return blocks::run(&mut self, file, p, decoders);
            }
        }
        let mut buf: Vec<u8> = Vec::with_capacity(BLOCK);
        let mut last_data = Instant::now();
        let mut at_end = false;
        loop {
            let filled = buf.len();
            buf.resize(filled.max(BLOCK / 2) + BLOCK / 2, 0);
            let n = file.read(&mut buf[filled..]).map_err(|e| self.io(e))?;
            buf.truncate(filled + n);
            if n == 0 {
                if self.follow == Follow::Tail {
                    if !at_end {
                        tracing::debug!(
                            "source `{}`: at the end of {} (line {}), following it",
                            self.core.name,
                            self.display_path,
                            p.line
                        );
                        at_end = true;
                    }
                    if let Some(script) = &mut self.script {
                        // A test run: only `idle` steps make it idle.
                        script.step(&mut self.core, &mut p, true)?;
                        last_data = Instant::now();
                    }
                    let watermark = self.core.watermark_of(p.max_time);
                    self.core.chores(watermark, || p.position(false))?;
                    if self.core.parked() {
                        return self.core.park();
                    }
                    if let Some(timeout) = self.core.idle_timeout {
                        if last_data.elapsed() >= timeout {
                            self.core.set_idle(watermark)?;
                        }
                    }
                    std::thread::sleep(POLL);
                    continue;
                }
                // The last line may lack its newline.
                if !buf.is_empty() {
                    buf.push(b'\n');
                    self.process(&buf, &mut p)?;
                    p.offset -= 1;
                }
                if self.core.parked() {
                    return self.core.park();
                }
                if let Some(script) = &mut self.script {
                    script.step(&mut self.core, &mut p, true)?;
                }
                break;
            }
            last_data = Instant::now();
            at_end = false;
            self.core.set_busy();
            let Some(last_newline) = memchr::memrchr(b'\n', &buf) else {
                continue;
            };
            self.process(&buf[..=last_newline], &mut p)?;
            if self.core.parked() {
                return self.core.park();
            }
            buf.drain(..=last_newline);
        }
        self.core.finish(&p.position(true))
    }

    /// Copies of the ingest for a pool of decoding threads, when this
    /// source decodes in parallel.
    fn decoders(&self) -> Option<Vec<Ingest>> {
        if self.decode_threads < 2 || self.script.is_some() {
            return None;
        }
        Some(self.core.ingest.decoders(self.decode_threads))
    }

    /// Decodes and routes every line of `block` (which ends with `\n`).
    fn process(&mut self, block: &[u8], p: &mut Progress) -> Result<(), EngineError> {
        let core = &mut self.core;
        let mut values = core.ingest.values();
        for line in lines(block) {
            if let Some(script) = &mut self.script {
                script.step(core, p, false)?;
            }
            p.line += 1;
            p.offset += line.0.len() as u64 + 1;
            let watermark = core.watermark_of(p.max_time);
            let place = (self.display_path.as_str(), p.line);
            let routed = route_line(
                &mut core.ingest,
                &mut values,
                line,
                place,
                watermark,
                &mut core.counts,
                &mut core.sizes,
            )?;
            if let Some(time) = routed {
                p.max_time = p.max_time.max(time);
            }
            let watermark = core.watermark_of(p.max_time);
            core.publish_every(watermark)?;
            core.maybe_checkpoint(watermark, || p.position(false))?;
            if core.parked() {
                break;
            }
        }
        Ok(())
    }
}

/// Decodes and routes one line of a file (its `\n` cut off) with `ingest`:
/// counts it and stamps it with `watermark`, and with the arrival time when
/// the source has no event time. `place` is the file as the job names it
/// and the line's 1-based number. A blank line is skipped. Returns the
/// record's event time when it was routed.
#[allow(clippy::too_many_arguments)]
fn route_line<'a>(
    ingest: &mut Ingest,
    values: &mut [Value<'a>],
    line: (&'a [u8], Option<&'a str>),
    place: (&'a str, u64),
    watermark: i64,
    counts: &mut LocalCounts,
    sizes: &mut LocalBuckets,
) -> Result<Option<i64>, EngineError> {
    let Some(record) = file_record(line.0, place, counts, sizes) else {
        return Ok(None);
    };
    let clock = Stamp {
        time: arrival(ingest),
        watermark,
    };
    let utf8 = checked_text(line.1, &record);
    ingest.record_checked(record, utf8, values, clock, counts)
}

/// The lines of `block` (each without its `\n`; text after the last
/// `\n` is left out), each with its text when the block is valid UTF-8:
/// one check for the block, not one per line (an invalid block leaves each
/// line to its own check, to say which is bad).
fn lines(block: &[u8]) -> impl Iterator<Item = (&[u8], Option<&str>)> {
    let utf8 = simdutf8::basic::from_utf8(block).ok();
    let mut start = 0;
    memchr::memchr_iter(b'\n', block).map(move |end| {
        let line = (&block[start..end], utf8.map(|t| &t[start..end]));
        start = end + 1;
        line
    })
}

/// The text of `record` as UTF-8, cut from its line's (`line`: the line
/// when its block was checked as UTF-8): `file_record` only cuts a
/// trailing `\r`.
fn checked_text<'a>(line: Option<&'a str>, record: &RawRecord<'a>) -> Option<&'a str> {
    line.and_then(|t| t.get(..record.text.len()))
}

/// One line of a file (its `\n` cut off) as a record at `place`, counted
/// as read; `None` for a blank line.
fn file_record<'a>(
    line: &'a [u8],
    place: (&'a str, u64),
    counts: &mut LocalCounts,
    sizes: &mut LocalBuckets,
) -> Option<RawRecord<'a>> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    counts.read += 1;
    counts.bytes += line.len() as u64 + 1;
    sizes.observe(line.len() as u64 + 1);
    Some(RawRecord {
        text: line,
        position: Position::File {
            file: place.0,
            line: place.1,
        },
        key: None,
    })
}

/// The arrival time a record of `ingest`'s source gets: the wall clock when
/// the source has no event-time field (0 otherwise: unused).
fn arrival(ingest: &Ingest) -> i64 {
    if ingest.event_time.is_none() {
        now_ms()
    } else {
        0
    }
}
