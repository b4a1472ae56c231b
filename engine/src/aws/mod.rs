//! What the Kinesis source, the Kinesis sink, `kflow produce`, the
//! checkpoint store and the S3 sink share: clients built from the standard
//! AWS chain (or loopback settings for emulators), one retry policy for
//! every call, the stream's identity and sequence numbers, a PutRecords
//! writer that keeps per-key order, enhanced fan-out consumers, the S3
//! calls kflow makes, and the DynamoDB calls of a cluster's lease table.

pub mod client;
pub mod consumer;
pub mod dynamo;
pub mod kinesis;
pub mod put;
pub mod retry;
pub mod s3;

pub use client::{connect, Endpoint};
pub use kinesis::{SequenceNumber, StreamId};
pub use put::{PutStats, Putter};
pub use retry::{classify, retry, retry_or, Backoff, Fault, RetryCounts, RetryPolicy};

/// An SDK error, kept whole as a `source()`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why an AWS operation failed for good. The SDK's error stays reachable
/// through `source()`; printing the chain gives its code and message.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    /// A call failed and is not retried (or its retries ran out).
    #[error("{call} failed")]
    Call {
        /// The API call (`GetRecords`, `PutRecords`, ...).
        call: &'static str,
        /// How it was classified.
        fault: Fault,
        /// The SDK's error.
        source: BoxError,
    },
    /// A call answered without what it must return.
    #[error("{call} returned no {what}")]
    Missing {
        /// The API call.
        call: &'static str,
        /// What was missing.
        what: &'static str,
    },
    /// A record Kinesis would refuse (too large, bad partition key).
    #[error("record {index}: {reason}")]
    Invalid {
        /// Position of the record in what was pushed (0-based).
        index: u64,
        /// What is wrong.
        reason: String,
    },
    /// The client's async runtime could not start.
    #[error("cannot start its runtime")]
    Runtime(#[source] std::io::Error),
    /// A shard's reader failed.
    #[error("shard {shard}")]
    Shard {
        /// Shard id.
        shard: String,
        /// The reader's failure.
        source: Box<AwsError>,
    },
}

impl AwsError {
    /// Whether the call may succeed if tried again later.
    pub fn is_retryable(&self) -> bool {
        match self {
            AwsError::Call { fault, .. } => fault.is_retryable(),
            AwsError::Shard { source, .. } => source.is_retryable(),
            _ => false,
        }
    }
}
