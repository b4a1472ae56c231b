//! The file source: JSON lines read in large blocks, decoded, time-stamped
//! and routed, with its byte offset checkpointed.
//!
//! The file is read in blocks of a few MiB; every complete line of a block is
//! decoded in place (strings borrow from the block), so the per-record path
//! allocates nothing. Between records the source checks whether the
//! coordinator asked for a checkpoint; if so it sends the barrier right
//! after the last record it routed and reports the offset of the next line,
//! its line number and its clock. A restart seeks to that offset, so every
//! line is applied once. With `follow = false` the end of the file ends the
//! source; with `follow = true` it keeps polling for appended lines.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::EngineError;
use crate::metrics::{LocalCounts, Metrics};
use crate::runtime::checkpoint::{CheckpointCtx, Part, PartState, SourceState};
use crate::runtime::route::Position;
use crate::sources::ingest::{now_ms, Ingest};

const BLOCK: usize = 4 << 20;
const PUBLISH_EVERY: u64 = 1024;
const POLL: Duration = Duration::from_millis(50);

/// One file source task.
pub struct FileSourceTask {
    /// Source name.
    pub name: String,
    /// Resolved path to read.
    pub path: PathBuf,
    /// The path as the job file names it (for error positions).
    pub display_path: String,
    /// Tail the file instead of ending at its end.
    pub follow: bool,
    /// Decoding, dedup and routing.
    pub ingest: Ingest,
    /// Watermark lag behind the maximum event time.
    pub max_out_of_orderness_ms: i64,
    /// When to declare the source idle while following.
    pub idle_timeout: Option<Duration>,
    /// Shared counters.
    pub metrics: Arc<Metrics>,
    /// Checkpoint coordination.
    pub checkpoints: CheckpointCtx,
    /// Where to resume (from the last checkpoint).
    pub restore: SourceState,
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
    /// Barriers sent up to this checkpoint.
    checkpoint: u64,
}

impl FileSourceTask {
    fn io(&self, source: std::io::Error) -> EngineError {
        EngineError::SourceIo {
            name: self.name.clone(),
            path: self.path.clone(),
            source,
        }
    }

    fn watermark(&self, p: &Progress) -> i64 {
        if p.max_time == i64::MIN {
            i64::MIN
        } else {
            p.max_time.saturating_sub(self.max_out_of_orderness_ms)
        }
    }

    fn state(&self, p: &Progress, ended: bool) -> SourceState {
        SourceState {
            offset: p.offset,
            line: p.line,
            max_time: (p.max_time != i64::MIN).then_some(p.max_time),
            ended,
            kinesis: None,
        }
    }

    /// Sends barriers for a requested checkpoint, if any.
    fn maybe_checkpoint(&mut self, p: &mut Progress) -> Result<(), EngineError> {
        let requested = self.checkpoints.requested();
        if requested <= p.checkpoint {
            return Ok(());
        }
        self.ingest.router.barrier(requested, self.watermark(p))?;
        let batch = self.ingest.dedup_batch();
        self.checkpoints.report(Part {
            task: self.name.clone(),
            checkpoint: Some(requested),
            state: PartState::Source(self.state(p, false)),
            batch,
        })?;
        p.checkpoint = requested;
        Ok(())
    }

    /// Reads the file to its end (or forever when following).
    ///
    /// # Errors
    /// I/O errors reading the file, or a lost downstream task.
    pub fn run(mut self) -> Result<(), EngineError> {
        let mut file = File::open(&self.path).map_err(|e| self.io(e))?;
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
            checkpoint: self.checkpoints.committed(),
        };
        let mut buf: Vec<u8> = Vec::with_capacity(BLOCK);
        let mut counts = LocalCounts::default();
        let mut last_data = Instant::now();
        let mut idle = false;
        loop {
            let filled = buf.len();
            buf.resize(filled.max(BLOCK / 2) + BLOCK / 2, 0);
            let n = file.read(&mut buf[filled..]).map_err(|e| self.io(e))?;
            buf.truncate(filled + n);
            if n == 0 {
                if self.follow {
                    self.ingest.router.flush(self.watermark(&p))?;
                    counts.publish(&self.metrics);
                    self.maybe_checkpoint(&mut p)?;
                    if let Some(timeout) = self.idle_timeout {
                        if !idle && last_data.elapsed() >= timeout {
                            self.ingest.router.idle(self.watermark(&p))?;
                            idle = true;
                        }
                    }
                    std::thread::sleep(POLL);
                    continue;
                }
                // The last line may lack its newline.
                if !buf.is_empty() {
                    buf.push(b'\n');
                    self.process(&buf, &mut p, &mut counts)?;
                    p.offset -= 1;
                }
                break;
            }
            last_data = Instant::now();
            idle = false;
            let Some(last_newline) = memchr::memrchr(b'\n', &buf) else {
                continue;
            };
            self.process(&buf[..=last_newline], &mut p, &mut counts)?;
            buf.drain(..=last_newline);
        }
        self.ingest.router.end(i64::MAX)?;
        counts.publish(&self.metrics);
        let batch = self.ingest.dedup_batch();
        self.checkpoints.report(Part {
            task: self.name.clone(),
            checkpoint: None,
            state: PartState::Source(self.state(&p, true)),
            batch,
        })
    }

    /// Decodes and routes every line of `block` (which ends with `\n`).
    fn process(
        &mut self,
        block: &[u8],
        p: &mut Progress,
        counts: &mut LocalCounts,
    ) -> Result<(), EngineError> {
        let mut values = self.ingest.values();
        let mut rest = block;
        while let Some(end) = memchr::memchr(b'\n', rest) {
            let line = &rest[..end];
            rest = &rest[end + 1..];
            p.line += 1;
            p.offset += end as u64 + 1;
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            counts.read += 1;
            let position = Position::File {
                file: &self.display_path,
                line: p.line,
            };
            let watermark = self.watermark(p);
            let arrival = if self.ingest.event_time.is_none() {
                now_ms()
            } else {
                0
            };
            let routed =
                self.ingest
                    .record(line, &mut values, position, arrival, watermark, counts)?;
            if let Some(time) = routed {
                p.max_time = p.max_time.max(time);
            }
            if counts.read >= PUBLISH_EVERY {
                self.ingest.router.flush(self.watermark(p))?;
                counts.publish(&self.metrics);
                self.maybe_checkpoint(p)?;
            }
        }
        Ok(())
    }
}
