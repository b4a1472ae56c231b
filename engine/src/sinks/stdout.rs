//! The stdout sink: JSON lines on standard output.

use std::io::Write;

use super::LineWriter;
use crate::error::EngineError;

/// Writes lines to standard output.
pub struct StdoutWriter {
    name: String,
}

impl StdoutWriter {
    /// A writer for sink `name`.
    pub fn new(name: String) -> StdoutWriter {
        StdoutWriter { name }
    }

    fn io(&self, source: std::io::Error) -> EngineError {
        EngineError::SinkIo { name: self.name.clone(), path: "<stdout>".into(), source }
    }
}

impl LineWriter for StdoutWriter {
    fn write(&mut self, lines: &[u8]) -> Result<(), EngineError> {
        std::io::stdout().lock().write_all(lines).map_err(|e| self.io(e))
    }

    fn finish(&mut self) -> Result<(), EngineError> {
        std::io::stdout().lock().flush().map_err(|e| self.io(e))
    }
}
