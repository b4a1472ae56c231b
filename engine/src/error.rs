//! The engine's error type.

use std::path::PathBuf;

use kflow_state::StateError;

/// Everything that can stop a run.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The metrics endpoint could not listen on its address.
    #[error("metrics endpoint {addr}: cannot listen")]
    Serve {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A source could not read its input.
    #[error("source `{name}`: {path}")]
    SourceIo {
        /// The source's name.
        name: String,
        /// The file involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A sink could not write its output.
    #[error("sink `{name}`: {path}")]
    SinkIo {
        /// The sink's name.
        name: String,
        /// The file involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A Kinesis call failed for good (not throttling or a transient
    /// fault, which are retried).
    #[error("{what} `{name}`: Kinesis")]
    Kinesis {
        /// `source` or `sink`.
        what: &'static str,
        /// The node's name.
        name: String,
        /// What failed, with the service's error as its source.
        source: crate::aws::AwsError,
    },
    /// The checkpoint store (S3) failed an operation for good.
    #[error("checkpoint store {url}: {what}")]
    Store {
        /// `s3://bucket/prefix`.
        url: String,
        /// What was being done.
        what: String,
        /// What failed.
        source: crate::aws::AwsError,
    },
    /// The cluster's lease table (DynamoDB) failed an operation for good.
    #[error("lease table {table}: {what}")]
    Leases {
        /// The table's name.
        table: String,
        /// What was being done.
        what: String,
        /// What failed.
        source: crate::aws::AwsError,
    },
    /// The shuffle of a cluster job cannot go on (its stream has no open
    /// shard, or a record in it is not a shuffle frame).
    #[error("shuffle: {0}")]
    Shuffle(String),
    /// A cluster command on a job without `[job.cluster]`.
    #[error("{0}: the job has no [job.cluster] table")]
    NotClustered(String),
    /// The checkpoint store holds no usable checkpoint of this job.
    #[error("checkpoint store {url}: {what}")]
    StoreContents {
        /// `s3://bucket/prefix`.
        url: String,
        /// What is wrong.
        what: String,
    },
    /// Local files around a checkpoint upload or download.
    #[error("checkpoint store: {path}")]
    StoreIo {
        /// The file or folder.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Checkpointed shard positions are past the stream's retention.
    #[error(
        "source `{name}`: the checkpointed position is no longer in the stream:\n  {}\n\
         the records after it may be gone; set on_expired = \"trim_horizon\" on the source to \
         read each such shard from its oldest record, or run with --reset",
        .details.join("\n  ")
    )]
    KinesisExpired {
        /// The source's name.
        name: String,
        /// One line per expired shard (or the stream).
        details: Vec<String>,
    },
    /// The state store failed.
    #[error("state")]
    State(#[from] StateError),
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

impl EngineError {
    /// The error of task `name` that panicked with `panic` (the payload
    /// of a join or `catch_unwind`).
    pub fn from_panic(name: String, panic: &(dyn std::any::Any + Send)) -> EngineError {
        let what = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        EngineError::Panicked(name, what)
    }

    /// Whether the same work may succeed later: an S3 call that failed
    /// for throttling or the network (a checkpoint that failed so is
    /// retried, not the end of the job).
    pub fn is_retryable(&self) -> bool {
        match self {
            EngineError::Store { source, .. } | EngineError::Leases { source, .. } => {
                source.is_retryable()
            }
            _ => false,
        }
    }
}

/// An error and its causes on one line (`error: cause: cause`): each
/// error prints only its own message and keeps its cause as `source()`.
pub fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        next = cause.source();
    }
    text
}
