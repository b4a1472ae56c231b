//! Asking the stream what it holds: its shards and their lineage (ListShards,
//! paginated), its creation time (to notice a deleted and recreated
//! stream), and a shard's oldest retained record (to notice a checkpointed
//! position that fell out of retention).

use aws_sdk_kinesis::types::ShardIteratorType;
use aws_sdk_kinesis::Client;

use crate::aws::{retry, AwsError, RetryPolicy, SequenceNumber, StreamId};

/// One shard as ListShards describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    /// Shard id.
    pub id: String,
    /// Parent and adjacent parent (after a merge), if any.
    pub parents: Vec<String>,
    /// Closed: it has an ending sequence number (split or merged away).
    pub closed: bool,
    /// The lowest hash key of its range (decimal).
    pub hash_start: String,
}

/// Every shard of the stream, in shard id order.
///
/// # Errors
/// The service's error, after retrying throttling and transient faults.
pub async fn list_shards(client: &Client, stream: &StreamId) -> Result<Vec<ShardInfo>, AwsError> {
    let mut shards = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut request = client.list_shards();
        request = match &token {
            Some(t) => request.next_token(t),
            None => request
                .set_stream_name(stream.name())
                .set_stream_arn(stream.arn()),
        };
        let mut backoff = RetryPolicy::BOUNDED.backoff();
        let out = retry(&mut backoff, "ListShards", None, || request.clone().send()).await?;
        for shard in out.shards() {
            let parents = [shard.parent_shard_id(), shard.adjacent_parent_shard_id()]
                .into_iter()
                .flatten()
                .map(str::to_string)
                .collect();
            let closed = shard
                .sequence_number_range()
                .and_then(|r| r.ending_sequence_number())
                .is_some();
            shards.push(ShardInfo {
                id: shard.shard_id().to_string(),
                parents,
                closed,
                hash_start: shard
                    .hash_key_range()
                    .map(|r| r.starting_hash_key().to_string())
                    .unwrap_or_default(),
            });
        }
        match out.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => break,
        }
    }
    shards.sort_by(|a, b| a.id.cmp(&b.id));
    shards.dedup_by(|a, b| a.id == b.id);
    Ok(shards)
}

/// The stream's creation time, epoch ms.
///
/// # Errors
/// The service's error (e.g. the stream does not exist).
pub async fn stream_created_ms(
    client: &Client,
    stream: &StreamId,
) -> Result<Option<i64>, AwsError> {
    let request = client
        .describe_stream_summary()
        .set_stream_name(stream.name())
        .set_stream_arn(stream.arn());
    let mut backoff = RetryPolicy::BOUNDED.backoff();
    let call = "DescribeStreamSummary";
    let out = retry(&mut backoff, call, None, || request.clone().send()).await?;
    Ok(out
        .stream_description_summary()
        .and_then(|s| s.stream_creation_timestamp().to_millis().ok()))
}

/// The sequence number of the shard's oldest retained record, if the first
/// read from its trim horizon returns one.
///
/// # Errors
/// The service's error.
pub async fn oldest_sequence(
    client: &Client,
    stream: &StreamId,
    shard: &str,
) -> Result<Option<SequenceNumber>, AwsError> {
    let request = client
        .get_shard_iterator()
        .shard_id(shard)
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .set_stream_name(stream.name())
        .set_stream_arn(stream.arn());
    let mut backoff = RetryPolicy::BOUNDED.backoff();
    let out = retry(&mut backoff, "GetShardIterator", None, || {
        request.clone().send()
    })
    .await?;
    let Some(iterator) = out.shard_iterator() else {
        return Ok(None);
    };
    let request = client.get_records().shard_iterator(iterator).limit(1);
    let out = retry(&mut backoff, "GetRecords", None, || request.clone().send()).await?;
    Ok(out
        .records()
        .first()
        .map(|r| SequenceNumber(r.sequence_number().to_string())))
}
