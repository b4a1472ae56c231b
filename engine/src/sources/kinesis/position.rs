//! A Kinesis source's checkpointed position: per shard, the sequence number
//! of the last record it processed completely (and the subsequence inside a
//! KPL aggregate), with the stream's creation time and the pinned start and
//! stop. The source serialises it into its checkpoint part; the field names
//! read checkpoints written before positions moved here (`line` was the
//! record count, `kinesis` the stream position).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::aws::SequenceNumber;

/// A Kinesis source's checkpointed position and clock.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KinesisPosition {
    /// Kinesis records processed so far.
    #[serde(alias = "line")]
    pub records: u64,
    /// Largest event time seen (drives the watermark).
    pub max_time: Option<i64>,
    /// The source reached its stop position.
    pub ended: bool,
    /// Start, stop and shard positions.
    #[serde(alias = "kinesis")]
    pub stream: StreamPosition,
}

/// Where a Kinesis source reads its stream: pinned start and stop, and
/// every shard's position.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamPosition {
    /// The stream's creation time (epoch ms): a different value on restart
    /// means the stream was deleted and recreated, so every position is void.
    pub stream_created_ms: Option<i64>,
    /// Where shards without a position start: epoch ms for `AT_TIMESTAMP`
    /// (`start_at = "latest"` is resolved to the first start's time), or
    /// `None` for `TRIM_HORIZON`.
    pub start_ms: Option<i64>,
    /// Records arriving at or after this time are not read (`stop_at`,
    /// resolved at the first start).
    pub stop_ms: Option<i64>,
    /// Every shard this source started or finished, by shard id.
    pub shards: BTreeMap<String, ShardPosition>,
}

/// One shard's checkpointed position.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShardPosition {
    /// Sequence number of the last Kinesis record processed completely
    /// (restart reads `AFTER_SEQUENCE_NUMBER` it).
    pub sequence: Option<SequenceNumber>,
    /// Subsequence number of the last user record of that record when it
    /// was a KPL aggregate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subsequence: Option<u64>,
    /// Arrival time of that record (epoch ms).
    pub arrival_ms: Option<i64>,
    /// Largest event time seen on this shard.
    pub max_time: Option<i64>,
    /// Records read from this shard.
    pub records: u64,
    /// The shard reached SHARD_END and every record was processed (or it was
    /// closed before the source's start position).
    pub finished: bool,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_position_written_before_connectors_owned_it_still_reads() {
        let old = r#"{"offset":0,"line":7,"max_time":5000,"ended":false,
            "kinesis":{"stream_created_ms":1,"start_ms":null,"stop_ms":null,
            "shards":{"shardId-000000000000":{"sequence":"49","arrival_ms":2,
            "max_time":5000,"records":7,"finished":false}}}}"#;
        let p: KinesisPosition = serde_json::from_str(old).unwrap();
        assert_eq!(p.records, 7);
        assert_eq!(p.stream.stream_created_ms, Some(1));
        let shard = &p.stream.shards["shardId-000000000000"];
        assert_eq!(shard.sequence.as_ref().map(|s| s.as_str()), Some("49"));
        assert_eq!(shard.records, 7);
    }
}
