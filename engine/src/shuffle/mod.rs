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
