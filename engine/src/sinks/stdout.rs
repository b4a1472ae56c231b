//! The stdout sink: JSON lines on standard output (at-least-once: rows
//! written after the last checkpoint are written again after a crash).

use std::io::Write;

use serde::{Deserialize, Serialize};

use super::{Committed, LineWriter};
use crate::dataflow::message::Lines;
use crate::error::EngineError;

/// What a stdout sink has written (informational: stdout cannot take
/// anything back).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StdoutPosition {
    /// Bytes written.
    #[serde(alias = "length")]
    pub bytes: u64,
}

/// Writes lines to standard output.
pub struct StdoutWriter {
    name: String,
    written: u64,
}

impl StdoutWriter {
    /// A writer for sink `name`.
    pub fn new(name: String) -> StdoutWriter {
        StdoutWriter { name, written: 0 }
    }

    fn io(&self, source: std::io::Error) -> EngineError {
        EngineError::SinkIo {
            name: self.name.clone(),
            path: "<stdout>".into(),
            source,
        }
    }
}

impl LineWriter for StdoutWriter {
    fn write(&mut self, lines: &Lines) -> Result<(), EngineError> {
        let lines = &lines.text[..];
        self.written += lines.len() as u64;
        std::io::stdout()
            .lock()
            .write_all(lines)
            .map_err(|e| self.io(e))
    }

    fn flush(&mut self) -> Result<(), EngineError> {
        std::io::stdout().lock().flush().map_err(|e| self.io(e))
    }

    fn commit(&mut self) -> Result<Committed, EngineError> {
        self.flush()?;
        let position = StdoutPosition {
            bytes: self.written,
        };
        Committed::new(&self.name, &position, None)
    }
}
