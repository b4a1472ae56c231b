//! The engine's error type.

use std::path::PathBuf;

use kflow_state::StateError;

/// Everything that can stop a run.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A source could not read its input.
    #[error("source `{name}`: {path}: {source}")]
    SourceIo {
        /// The source's name.
        name: String,
        /// The file involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A sink could not write its output.
    #[error("sink `{name}`: {path}: {source}")]
    SinkIo {
        /// The sink's name.
        name: String,
        /// The file involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The state store failed.
    #[error("state: {0}")]
    State(#[from] StateError),
    /// The job uses something this build cannot run yet.
    #[error("{0}")]
    Unsupported(String),
    /// The job's stateful parts changed since its checkpoint.
    #[error(
        "the job changed since its last checkpoint, so its state cannot be reused:\n  {}\n\
         run with --reset to start from empty state (this discards the checkpoint)",
        .0.join("\n  ")
    )]
    JobChanged(Vec<String>),
    /// A task found its peer gone (the peer's own error is the cause).
    #[error("`{0}` lost a peer task")]
    Disconnected(String),
    /// A task panicked (a bug).
    #[error("task `{0}` panicked: {1}")]
    Panicked(String, String),
}
