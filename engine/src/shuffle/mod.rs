//! The shuffle of a cluster job: records travel from the workers reading
//! source shards to the workers owning key groups through a Kinesis stream,
//! as Kafka Streams repartitions through internal topics.
//!
//! - [`frame`]: the wire format of one shuffle record.
//! - [`out`]: the source side, a window destination whose partitions are
//!   key groups.
//! - [`source`]: the group side, the task that reads a key group's
//!   frames and feeds its windows.
//!
//! See docs/architecture.md, "Scale-out".

pub mod frame;
pub mod out;
pub mod source;

use crate::aws::{AwsError, StreamId};
use crate::error::EngineError;

/// A Kinesis call on `stream` failed: `what` is `shuffle stream`, or
/// `source` for the job's source stream.
pub(crate) fn stream_error(what: &'static str, stream: &StreamId, source: AwsError) -> EngineError {
    EngineError::Kinesis {
        what,
        name: stream.name().or_else(|| stream.arn()).unwrap_or_default(),
        source,
    }
}
