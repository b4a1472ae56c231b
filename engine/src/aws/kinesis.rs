//! Kinesis identities as types: a stream by name or by ARN, and sequence
//! numbers, which are decimal strings of up to 128 bits that compare as
//! numbers; and creating a stream that must exist (`kflow produce
//! --create`, a cluster's shuffle stream).

use std::cmp::Ordering;
use std::fmt;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::retry::classify;
use super::AwsError;

/// A stream, by name or by ARN (the API takes either, in different fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamId {
    /// `StreamName`.
    Name(String),
    /// `StreamARN` (cross-account streams).
    Arn(String),
}

impl StreamId {
    /// `text` as a job file or the command line gives it: an ARN when it
    /// starts with `arn:`, a name otherwise.
    pub fn parse(text: &str) -> StreamId {
        if text.starts_with("arn:") {
            StreamId::Arn(text.to_string())
        } else {
            StreamId::Name(text.to_string())
        }
    }

    /// The `StreamName` field of a request, if this is a name.
    pub fn name(&self) -> Option<String> {
        match self {
            StreamId::Name(n) => Some(n.clone()),
            StreamId::Arn(_) => None,
        }
    }

    /// The `StreamARN` field of a request, if this is an ARN.
    pub fn arn(&self) -> Option<String> {
        match self {
            StreamId::Arn(a) => Some(a.clone()),
            StreamId::Name(_) => None,
        }
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamId::Name(s) | StreamId::Arn(s) => f.write_str(s),
        }
    }
}

/// A Kinesis sequence number. Ordered as the number it writes (by length,
/// then digits), not as text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SequenceNumber(pub String);

impl SequenceNumber {
    /// The digits, as the API takes them.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Ord for SequenceNumber {
    fn cmp(&self, other: &Self) -> Ordering {
        let (a, b) = (&self.0, &other.0);
        a.len().cmp(&b.len()).then_with(|| a.cmp(b))
    }
}

impl PartialOrd for SequenceNumber {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Creates `stream` with `shards` shards unless it exists, and waits until
/// it is ACTIVE (two minutes at most).
///
/// # Errors
/// [`AwsError::Call`] when the service refuses to create it;
/// [`AwsError::Missing`] when it is not ACTIVE in time.
pub async fn ensure_stream(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    shards: i32,
) -> Result<(), AwsError> {
    let exists = client
        .describe_stream_summary()
        .stream_name(stream)
        .send()
        .await
        .is_ok();
    if !exists {
        let created = client
            .create_stream()
            .stream_name(stream)
            .shard_count(shards)
            .send()
            .await;
        match created {
            Ok(_) => tracing::info!("created stream `{stream}` with {shards} shards"),
            // Another process created it meanwhile (workers start together).
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_in_use_exception()) => {}
            Err(e) => {
                let fault = classify(&e);
                return Err(AwsError::Call {
                    call: "CreateStream",
                    fault,
                    source: e.into(),
                });
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let status = client
            .describe_stream_summary()
            .stream_name(stream)
            .send()
            .await
            .ok()
            .and_then(|o| {
                o.stream_description_summary()
                    .map(|s| s.stream_status().clone())
            });
        if status == Some(aws_sdk_kinesis::types::StreamStatus::Active) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(AwsError::Missing {
                call: "DescribeStreamSummary",
                what: "ACTIVE status within 120 s",
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(s: &str) -> SequenceNumber {
        SequenceNumber(s.to_string())
    }

    #[test]
    fn sequence_numbers_compare_numerically() {
        use std::cmp::Ordering::*;
        assert_eq!(seq("9").cmp(&seq("10")), Less);
        assert_eq!(
            seq("49590338271490256608559692538361571095921575989136588898").cmp(&seq(
                "49590338271490256608559692540925702759324208523137515618"
            )),
            Less
        );
        assert_eq!(seq("123").cmp(&seq("123")), Equal);
    }

    #[test]
    fn arns_and_names_are_told_apart() {
        let arn = StreamId::parse("arn:aws:kinesis:us-east-1:1:stream/s");
        assert_eq!(arn.name(), None);
        assert!(arn.arn().is_some());
        assert_eq!(StreamId::parse("clicks").name().as_deref(), Some("clicks"));
    }
}
