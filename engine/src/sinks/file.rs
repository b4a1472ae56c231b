//! The file sink: JSON lines appended to one file.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use super::LineWriter;
use crate::error::EngineError;

/// Writes lines to a file, created (truncated) on first use.
pub struct FileWriter {
    name: String,
    path: PathBuf,
    file: Option<BufWriter<File>>,
}

impl FileWriter {
    /// A writer for `path`; with `lazy` the file is only created when the
    /// first line arrives.
    ///
    /// # Errors
    /// [`EngineError::SinkIo`] when the file cannot be created.
    pub fn new(name: String, path: PathBuf, lazy: bool) -> Result<FileWriter, EngineError> {
        let mut writer = FileWriter { name, path, file: None };
        if !lazy {
            writer.open()?;
        }
        Ok(writer)
    }

    fn io(&self, source: std::io::Error) -> EngineError {
        EngineError::SinkIo { name: self.name.clone(), path: self.path.clone(), source }
    }

    fn open(&mut self) -> Result<&mut BufWriter<File>, EngineError> {
        if self.file.is_none() {
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| self.io(e))?;
            }
            let file = File::create(&self.path).map_err(|e| self.io(e))?;
            self.file = Some(BufWriter::with_capacity(1 << 20, file));
        }
        match self.file.as_mut() {
            Some(f) => Ok(f),
            None => unreachable!("the file was opened just above"),
        }
    }
}

impl LineWriter for FileWriter {
    fn write(&mut self, lines: &[u8]) -> Result<(), EngineError> {
        let result = self.open()?.write_all(lines);
        result.map_err(|e| self.io(e))
    }

    fn finish(&mut self) -> Result<(), EngineError> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        let result = file.flush().and_then(|()| file.get_ref().sync_all());
        result.map_err(|e| self.io(e))
    }
}
