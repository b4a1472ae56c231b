//! Sinks: tasks that write JSON lines from their inputs until every input
//! has ended.
//!
//! Emitters serialize rows themselves, so a sink only moves bytes. The file
//! sink also serves as the dead-letter writer (opened lazily, so a clean run
//! leaves no empty dead-letter file behind).

mod file;
mod stdout;

use async_channel::Receiver;

use crate::error::EngineError;
use crate::runtime::message::SinkMsg;

pub use file::FileWriter;
pub use stdout::StdoutWriter;

/// Where a sink's bytes go.
pub trait LineWriter: Send {
    /// Writes complete lines.
    ///
    /// # Errors
    /// The sink's I/O error.
    fn write(&mut self, lines: &[u8]) -> Result<(), EngineError>;
    /// Flushes to the OS and, for files, to disk.
    ///
    /// # Errors
    /// The sink's I/O error.
    fn finish(&mut self) -> Result<(), EngineError>;
}

/// A sink task.
pub struct SinkTask {
    /// The sink's name.
    pub name: String,
    /// How many emitters write to it.
    pub inputs: usize,
    /// Its channel.
    pub receiver: Receiver<SinkMsg>,
    /// Its writer.
    pub writer: Box<dyn LineWriter>,
}

impl SinkTask {
    /// Writes until every input has ended.
    ///
    /// # Errors
    /// I/O errors, or [`EngineError::Disconnected`] when an input vanished
    /// without ending (it failed: its own error is reported).
    pub fn run(mut self) -> Result<(), EngineError> {
        let mut open = self.inputs;
        while open > 0 {
            match self.receiver.recv_blocking() {
                Ok(SinkMsg::Lines(_, lines)) => self.writer.write(&lines)?,
                Ok(SinkMsg::End(_)) => open -= 1,
                Err(_) => return Err(EngineError::Disconnected(self.name)),
            }
        }
        self.writer.finish()
    }
}
