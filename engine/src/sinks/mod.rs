//! Sinks: tasks that write JSON lines from their inputs until every input
//! has ended, and commit their output with each checkpoint.
//!
//! Sources and filters hand a sink JSON lines; a window feeding only sinks
//! hands them its result rows unwritten, and the sink writes their text on
//! its own thread ([`crate::dataflow::rows`]).
//!
//! At a checkpoint barrier (aligned over its inputs) a file sink flushes, and
//! reports its length (the committed prefix of the file) with the
//! `fdatasync` that makes it durable, which the checkpoint coordinator runs
//! before it commits while the sink writes on; a background thread syncs the
//! file every 16 MB in between, so that sync finds little left. After a
//! crash the file is cut back to that length and the replay writes the rest
//! again, so the file ends up exactly as one uninterrupted run would leave
//! it. The stdout sink cannot take rows back: it is at-least-once. The file
//! sink also serves as the dead-letter writer (opened lazily, so a clean run
//! leaves no empty dead-letter file behind).

mod file;
mod kinesis;
mod s3;
mod stdout;
mod write_behind;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use async_channel::Receiver;
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::dataflow::checkpoint::{
    save_part, CheckpointCtx, CrashPoint, Durability, Part, PartKind,
};
use crate::dataflow::message::{InputId, Lines, SinkMsg};
use crate::dataflow::metrics::{Metrics, SinkMetrics};
use crate::dataflow::task::{run_aligned, AlignedTask};
use crate::error::EngineError;

pub use file::{Creation, FileSinkPosition, FileWriter};
pub use kinesis::{KinesisSinkPosition, KinesisWriter};
pub use s3::{S3SinkPosition, S3Writer};
pub use stdout::{StdoutPosition, StdoutWriter};

/// What a writer reports at a checkpoint: its position, serialised, and the
/// work that makes its output durable, which the checkpoint coordinator
/// runs before it commits.
#[derive(Debug)]
pub struct Committed {
    state: serde_json::Value,
    durability: Option<Durability>,
}

impl Committed {
    /// Sink `name`'s `position`, durable once `durability` (if any) ran.
    ///
    /// # Errors
    /// [`EngineError::State`] when the position does not serialise (a bug).
    pub fn new(
        name: &str,
        position: &impl Serialize,
        durability: Option<Durability>,
    ) -> Result<Committed, EngineError> {
        Ok(Committed {
            state: save_part(name, position)?,
            durability,
        })
    }
}

/// Where a sink's bytes go.
pub trait LineWriter: Send {
    /// Writes complete lines.
    ///
    /// # Errors
    /// The sink's I/O error.
    fn write(&mut self, lines: &Lines) -> Result<(), EngineError>;
    /// Hands buffered bytes to the OS.
    ///
    /// # Errors
    /// The sink's I/O error.
    fn flush(&mut self) -> Result<(), EngineError>;
    /// Says how much has been written and makes it durable, now or by the
    /// returned work.
    ///
    /// # Errors
    /// The sink's I/O error.
    fn commit(&mut self) -> Result<Committed, EngineError>;
    /// Called after each commit with the checkpoint it was for (`None`: the
    /// final one) and the newest checkpoint committed so far.
    ///
    /// # Errors
    /// The sink's I/O error.
    fn checkpoint(&mut self, _current: Option<u64>, _committed: u64) -> Result<(), EngineError> {
        Ok(())
    }
    /// Writes retried so far: `(after throttling, after other faults)`.
    fn retries(&self) -> (u64, u64) {
        (0, 0)
    }
}

/// A sink task.
pub struct SinkTask {
    /// The sink's name (its name in checkpoints).
    pub name: String,
    /// The emitters writing to it.
    pub inputs: Vec<InputId>,
    /// Its channel.
    pub receiver: Receiver<SinkMsg>,
    /// Its writer.
    pub writer: Box<dyn LineWriter>,
    /// Checkpoint coordination.
    pub checkpoints: CheckpointCtx,
    /// Shared counters (the latency histogram).
    pub metrics: Arc<Metrics>,
}

/// A running sink: the task and what it measures.
struct Running {
    task: SinkTask,
    crash: Option<CrashPoint>,
    /// End-to-end latency of the rows written, microseconds.
    latency: Option<Histogram<u64>>,
    /// This sink's own metrics.
    own: Arc<SinkMetrics>,
    /// Result rows written as text, reused from batch to batch.
    rendered: Lines,
}

impl SinkTask {
    /// Writes until every input has ended.
    ///
    /// # Errors
    /// I/O errors, or [`EngineError::Disconnected`] when an input vanished
    /// without ending (it failed: its own error is reported).
    pub fn run(self) -> Result<(), EngineError> {
        let inputs = self.inputs.clone();
        let receiver = self.receiver.clone();
        let own = self.metrics.sinks.add(SinkMetrics::new(&self.name));
        let mut running = Running {
            own,
            task: self,
            crash: CrashPoint::from_env(),
            // Microseconds from 1 us to 1 hour, 3 significant digits.
            latency: Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).ok(),
            rendered: Lines::default(),
        };
        run_aligned(&mut running, &inputs, &receiver)
    }
}

impl Running {
    /// Writes a batch of lines and counts them.
    fn write(&mut self, lines: &Lines) -> Result<(), EngineError> {
        let writer = &mut self.task.writer;
        if let Some(CrashPoint::SinkWrite(n)) = self.crash {
            if self.task.checkpoints.committed() >= n && lines.text.len() > 1 {
                // Test hook: a torn write, then a crash.
                let half = lines.text[..lines.text.len() / 2].to_vec();
                writer.write(&Lines::plain(half))?;
                writer.flush()?;
                eprintln!("kflow: test hook: aborting in the middle of a sink write");
                std::process::abort();
            }
        }
        writer.write(lines)?;
        let rows = memchr::memchr_iter(b'\n', &lines.text).count() as u64;
        self.own.rows.fetch_add(rows, Ordering::Relaxed);
        self.own
            .bytes
            .fetch_add(lines.text.len() as u64, Ordering::Relaxed);
        if let Some(origin) = lines.origin {
            let us = origin.elapsed().as_micros().clamp(1, 3_600_000_000) as u64;
            self.own.latency.observe_n(us, rows);
            self.own.latency_max_us.fetch_max(us, Ordering::Relaxed);
            if let Some(h) = self.latency.as_mut() {
                let _ = h.record_n(us, rows);
            }
        }
        Ok(())
    }

    fn report(&mut self, checkpoint: Option<u64>) -> Result<(), EngineError> {
        let task = &mut self.task;
        let started = std::time::Instant::now();
        let committed = task.writer.commit()?;
        self.own
            .commits
            .observe(started.elapsed().as_micros() as u64);
        let committed_id = task.checkpoints.committed();
        task.writer.checkpoint(checkpoint, committed_id)?;
        let (throttles, retries) = task.writer.retries();
        self.own.throttles.store(throttles, Ordering::Relaxed);
        self.own.retries.store(retries, Ordering::Relaxed);
        if let Some(h) = self.latency.as_mut() {
            // The run's histogram follows the sinks checkpoint by checkpoint.
            task.metrics.add_latency(h);
            h.reset();
        }
        task.checkpoints.report(Part {
            task: task.name.clone(),
            checkpoint,
            kind: PartKind::Sink,
            state: committed.state,
            batch: kflow_state::StateBatch::new(),
            durability: committed.durability,
        })
    }
}

impl AlignedTask for Running {
    type Msg = SinkMsg;

    fn name(&self) -> &str {
        &self.task.name
    }

    fn on_data(&mut self, msg: SinkMsg) -> Result<(), EngineError> {
        match msg {
            SinkMsg::Lines(_, lines) => self.write(&lines),
            SinkMsg::Rows(_, rows) => {
                let mut rendered = std::mem::take(&mut self.rendered);
                rendered.clear();
                rows.render(&mut rendered);
                rows.recycle();
                let written = self.write(&rendered);
                self.rendered = rendered;
                written
            }
            SinkMsg::Barrier(..) | SinkMsg::End(_) => Ok(()),
        }
    }

    fn on_barrier(&mut self, checkpoint: u64) -> Result<(), EngineError> {
        self.report(Some(checkpoint))
    }

    fn on_end(&mut self) -> Result<(), EngineError> {
        self.report(None)
    }
}
