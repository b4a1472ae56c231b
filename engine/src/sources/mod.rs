//! Sources: tasks that read records, decode the projected fields, stamp
//! event time and watermarks, drop duplicates, and route records to their
//! consumers.

pub mod core;
pub mod decode;
pub mod dedup;
pub mod file;
pub mod ingest;
pub mod kinesis;
pub mod pool;
pub mod time;

use crate::error::EngineError;

/// A source task of either kind.
pub enum SourceTask {
    /// A JSON-lines file.
    File(Box<file::FileSourceTask>),
    /// A Kinesis data stream.
    Kinesis(Box<kinesis::KinesisSourceTask>),
}

impl SourceTask {
    /// The source's name (its task name in checkpoints).
    pub fn name(&self) -> &str {
        match self {
            SourceTask::File(t) => &t.core.name,
            SourceTask::Kinesis(t) => &t.core.name,
        }
    }

    /// Reads until the source ends (or forever).
    ///
    /// # Errors
    /// The source's I/O or Kinesis errors, or a lost downstream task.
    pub fn run(self) -> Result<(), EngineError> {
        match self {
            SourceTask::File(t) => t.run(),
            SourceTask::Kinesis(t) => t.run(),
        }
    }
}
