//! The state crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong with kflow's state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// RocksDB refused an operation.
    #[error("rocksdb at {path}")]
    Rocks {
        /// The state directory.
        path: PathBuf,
        /// RocksDB's error.
        source: rocksdb::Error,
    },
    /// A stored value or key could not be decoded.
    #[error("corrupt state: {0}")]
    Corrupt(String),
    /// The directory holds something that is not kflow state.
    #[error("{path} is not a kflow state directory: {reason}")]
    Foreign {
        /// The state directory.
        path: PathBuf,
        /// What was found instead.
        reason: String,
    },
    /// Another process (another `kflow run` of the same job) has the
    /// database open: RocksDB's lock file is held.
    #[error(
        "{path} is in use by another process (is another `kflow run` of this job still running?)"
    )]
    InUse {
        /// The state directory.
        path: PathBuf,
        /// RocksDB's error.
        source: rocksdb::Error,
    },
    /// Filesystem trouble around the database.
    #[error("{path}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}
