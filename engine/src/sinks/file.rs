//! The file sink: JSON lines appended to one file, cut back to its
//! committed length on recovery.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::write_behind::WriteBehind;
use super::{Committed, LineWriter};
use crate::dataflow::checkpoint::Durability;
use crate::dataflow::message::Lines;
use crate::error::EngineError;

/// A file sink's checkpointed position: everything after `length` bytes
/// of `path` is uncommitted and cut off on recovery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileSinkPosition {
    /// The file.
    pub path: PathBuf,
    /// Committed length in bytes.
    pub length: u64,
}

/// When a file sink creates its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Creation {
    /// At start (an empty result is an empty file).
    AtStart,
    /// With the first line (the dead-letter file: a clean run leaves none).
    OnFirstLine,
}

/// Writes lines to a file.
pub struct FileWriter {
    name: String,
    path: PathBuf,
    file: Option<BufWriter<File>>,
    /// Bytes in the file, written or buffered.
    length: u64,
    /// Pushes what the OS holds to disk ahead of the checkpoints' syncs.
    behind: Option<WriteBehind>,
}

impl FileWriter {
    /// A writer for `path`. With `committed`, the file is cut back to that
    /// many bytes (recovery); without it the file starts empty, created as
    /// `creation` says.
    ///
    /// # Errors
    /// [`EngineError::SinkIo`] when the file cannot be opened, or is shorter
    /// than its committed length (someone else cut it: exactly-once output
    /// can no longer be guaranteed).
    pub fn new(
        name: String,
        path: PathBuf,
        creation: Creation,
        committed: Option<u64>,
    ) -> Result<FileWriter, EngineError> {
        let mut writer = FileWriter {
            name,
            path,
            file: None,
            length: 0,
            behind: None,
        };
        match committed {
            Some(length) => writer.reopen(length)?,
            None if creation == Creation::OnFirstLine => {
                // A leftover from an earlier run must not survive this one.
                match std::fs::remove_file(&writer.path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(writer.io(e)),
                }
            }
            None => {
                writer.open()?;
            }
        }
        Ok(writer)
    }

    fn io(&self, source: std::io::Error) -> EngineError {
        EngineError::SinkIo {
            name: self.name.clone(),
            path: self.path.clone(),
            source,
        }
    }

    fn reopen(&mut self, length: u64) -> Result<(), EngineError> {
        if length == 0 && !self.path.exists() {
            return Ok(());
        }
        let mut file = OpenOptions::new()
            .write(true)
            .open(&self.path)
            .map_err(|e| self.io(e))?;
        let actual = file.metadata().map_err(|e| self.io(e))?.len();
        if actual < length {
            return Err(self.io(std::io::Error::other(format!(
                "the file has {actual} bytes but the last checkpoint committed {length}: \
                 it was cut by something else, so its output can no longer be made exact"
            ))));
        }
        file.set_len(length).map_err(|e| self.io(e))?;
        file.seek(SeekFrom::Start(length)).map_err(|e| self.io(e))?;
        self.file = Some(BufWriter::with_capacity(1 << 20, file));
        self.length = length;
        self.behind = WriteBehind::start(&self.name, &self.path, length);
        Ok(())
    }

    fn open(&mut self) -> Result<&mut BufWriter<File>, EngineError> {
        if self.file.is_none() {
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| self.io(e))?;
            }
            let file = File::create(&self.path).map_err(|e| self.io(e))?;
            // The file's name must be as durable as the lengths that later
            // checkpoints commit for it: sync its directory once.
            let dir = match self.path.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir,
                _ => std::path::Path::new("."),
            };
            let synced = File::open(dir).and_then(|d| d.sync_all());
            synced.map_err(|e| self.io(e))?;
            self.file = Some(BufWriter::with_capacity(1 << 20, file));
            self.behind = WriteBehind::start(&self.name, &self.path, 0);
        }
        match self.file.as_mut() {
            Some(f) => Ok(f),
            None => unreachable!("the file was opened just above"),
        }
    }
}

impl LineWriter for FileWriter {
    fn write(&mut self, lines: &Lines) -> Result<(), EngineError> {
        let lines = &lines.text[..];
        let file = self.open()?;
        let result = file.write_all(lines);
        let buffered = file.buffer().len() as u64;
        self.length += lines.len() as u64;
        if let Some(behind) = self.behind.as_mut() {
            behind.handed(self.length.saturating_sub(buffered));
        }
        result.map_err(|e| self.io(e))
    }

    fn flush(&mut self) -> Result<(), EngineError> {
        let result = match self.file.as_mut() {
            Some(file) => file.flush(),
            None => Ok(()),
        };
        result.map_err(|e| self.io(e))
    }

    fn commit(&mut self) -> Result<Committed, EngineError> {
        let position = FileSinkPosition {
            path: self.path.clone(),
            length: self.length,
        };
        let Some(file) = self.file.as_mut() else {
            return Committed::new(&self.name, &position, None);
        };
        // Flushed here, synced by the coordinator (through a second handle
        // on the same file) while this sink writes on: the sync then covers
        // the committed length and perhaps more, which recovery cuts off.
        let handle = file.flush().and_then(|()| file.get_ref().try_clone());
        let handle = handle.map_err(|e| self.io(e))?;
        let (name, path) = (self.name.clone(), self.path.clone());
        let sync = Durability::new(move || {
            handle.sync_data().map_err(|source| EngineError::SinkIo {
                name: name.clone(),
                path: path.clone(),
                source,
            })
        });
        Committed::new(&self.name, &position, Some(sync))
    }
}
