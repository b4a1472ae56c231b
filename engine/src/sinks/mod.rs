//! Sinks: tasks that write JSON lines from their inputs until every input
//! has ended, and commit their output with each checkpoint.
//!
//! Emitters serialize rows themselves, so a sink only moves bytes. At a
//! checkpoint barrier (aligned over its inputs) a file sink flushes, and
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
mod stdout;
mod write_behind;

use std::sync::Arc;

use async_channel::Receiver;
use hdrhistogram::Histogram;

use crate::error::EngineError;
use crate::metrics::Metrics;
use crate::runtime::align::Aligner;
use crate::runtime::checkpoint::{
    CheckpointCtx, CrashPoint, Durability, Part, PartState, SinkState,
};
use crate::runtime::message::{InputId, SinkMsg};

pub use file::FileWriter;
pub use kinesis::KinesisWriter;
pub use stdout::StdoutWriter;

/// Where a sink's bytes go.
pub trait LineWriter: Send {
    /// Writes complete lines.
    ///
    /// # Errors
    /// The sink's I/O error.
    fn write(&mut self, lines: &[u8]) -> Result<(), EngineError>;
    /// Hands buffered bytes to the OS.
    ///
    /// # Errors
    /// The sink's I/O error.
    fn flush(&mut self) -> Result<(), EngineError>;
    /// Says how much has been written and makes it durable, now or by the
    /// returned work, which the checkpoint coordinator runs before it
    /// commits the checkpoint.
    ///
    /// # Errors
    /// The sink's I/O error.
    fn commit(&mut self) -> Result<(SinkState, Option<Durability>), EngineError>;
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

impl SinkTask {
    /// Writes until every input has ended.
    ///
    /// # Errors
    /// I/O errors, or [`EngineError::Disconnected`] when an input vanished
    /// without ending (it failed: its own error is reported).
    pub fn run(mut self) -> Result<(), EngineError> {
        let crash = CrashPoint::from_env();
        // Microseconds from 1 us to 1 hour, 3 significant digits.
        let mut latency = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).ok();
        let mut aligner: Aligner<SinkMsg> = Aligner::new(&self.inputs);
        while !aligner.all_ended() {
            let msg = aligner
                .next(&self.receiver)
                .ok_or_else(|| EngineError::Disconnected(self.name.clone()))?;
            let snapshot = match msg {
                SinkMsg::Lines(_, lines, origin) => {
                    if let Some(CrashPoint::SinkWrite(n)) = crash {
                        if self.checkpoints.committed() >= n && lines.len() > 1 {
                            // Test hook: a torn write, then a crash.
                            self.writer.write(&lines[..lines.len() / 2])?;
                            self.writer.flush()?;
                            eprintln!("kflow: test hook: aborting in the middle of a sink write");
                            std::process::abort();
                        }
                    }
                    self.writer.write(&lines)?;
                    if let (Some(origin), Some(h)) = (origin, latency.as_mut()) {
                        let rows = memchr::memchr_iter(b'\n', &lines).count() as u64;
                        let us = origin.elapsed().as_micros().clamp(1, 3_600_000_000) as u64;
                        let _ = h.record_n(us, rows);
                    }
                    None
                }
                SinkMsg::Barrier(input, id) => aligner.barrier(input, id),
                SinkMsg::End(input) => aligner.end(input),
            };
            if let Some(id) = snapshot {
                let committed = self.writer.commit()?;
                self.report(Some(id), committed)?;
                aligner.release();
            }
        }
        let committed = self.writer.commit()?;
        if let Some(h) = &latency {
            self.metrics.add_latency(h);
        }
        self.report(None, committed)
    }

    fn report(
        &self,
        checkpoint: Option<u64>,
        (state, durable): (SinkState, Option<Durability>),
    ) -> Result<(), EngineError> {
        self.checkpoints.report(Part {
            task: self.name.clone(),
            checkpoint,
            state: PartState::Sink(state, durable),
            batch: kflow_state::StateBatch::new(),
        })
    }
}
