//! Enhanced fan-out consumers of a stream: registering one (or finding the
//! one registered before, by name), waiting until it is ACTIVE, listing and
//! deregistering them (`kflow consumers`).
//!
//! A consumer is registered once and reused by every later run of the job:
//! nothing here is called on a crash or a stop, and kflow never deregisters
//! a consumer unless a user asks (`kflow consumers deregister`). Flink's
//! connector deregistered eagerly on shutdown, and a job restarting while
//! its consumer was still DELETING looped; kflow waits for a DELETING
//! consumer to go, then registers it again.

use std::time::{Duration, Instant};

use aws_sdk_kinesis::error::SdkError;
use aws_sdk_kinesis::operation::describe_stream_consumer::DescribeStreamConsumerError;
use aws_sdk_kinesis::operation::register_stream_consumer::RegisterStreamConsumerError;
use aws_sdk_kinesis::types::ConsumerStatus;
use aws_sdk_kinesis::Client;

use super::{retry, retry_or, AwsError, BoxError, Fault, RetryPolicy, StreamId};

/// How long registering may take before the run fails (the service makes a
/// consumer ACTIVE within seconds; DELETING can take longer).
const READY_WITHIN: Duration = Duration::from_secs(180);
/// Pause between DescribeStreamConsumer polls (the call allows 20 a second
/// per stream).
const POLL: Duration = Duration::from_millis(250);

/// One registered consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerInfo {
    /// Its name.
    pub name: String,
    /// Its ARN (what SubscribeToShard takes).
    pub arn: String,
    /// CREATING, ACTIVE or DELETING.
    pub status: String,
    /// When it was registered, epoch ms.
    pub created_ms: Option<i64>,
}

/// The stream's ARN (consumers are registered against ARNs only).
///
/// # Errors
/// The service's error (e.g. the stream does not exist).
pub async fn stream_arn(client: &Client, stream: &StreamId) -> Result<String, AwsError> {
    if let StreamId::Arn(arn) = stream {
        return Ok(arn.clone());
    }
    let request = client
        .describe_stream_summary()
        .set_stream_name(stream.name());
    let mut backoff = RetryPolicy::BOUNDED.backoff();
    let call = "DescribeStreamSummary";
    let out = retry(&mut backoff, call, None, || request.clone().send()).await?;
    out.stream_description_summary()
        .map(|s| s.stream_arn().to_string())
        .ok_or(AwsError::Missing {
            call,
            what: "stream description",
        })
}

/// The consumer named `name` of the stream `arn`, if one is registered.
async fn describe(
    client: &Client,
    arn: &str,
    name: &str,
) -> Result<Option<ConsumerInfo>, AwsError> {
    let request = client
        .describe_stream_consumer()
        .stream_arn(arn)
        .consumer_name(name);
    let mut backoff = RetryPolicy::BOUNDED.backoff();
    let call = "DescribeStreamConsumer";
    let send = || async { request.clone().send().await.map(Some) };
    let not_found = |e: &SdkError<DescribeStreamConsumerError, _>| {
        e.as_service_error()
            .is_some_and(|s| s.is_resource_not_found_exception())
            .then_some(None)
    };
    let out = retry_or(&mut backoff, call, None, send, not_found).await?;
    Ok(out
        .and_then(|o| o.consumer_description)
        .map(|c| ConsumerInfo {
            name: c.consumer_name().to_string(),
            arn: c.consumer_arn().to_string(),
            status: c.consumer_status().as_str().to_string(),
            created_ms: c.consumer_creation_timestamp().to_millis().ok(),
        }))
}

/// The ARN of the ACTIVE consumer `name` of `stream`, registering it first
/// if it does not exist and waiting while it is CREATING (or DELETING,
/// after which it is registered again).
///
/// # Errors
/// The service's errors (no such stream, the stream's 20-consumer limit
/// reached, permissions), or [`AwsError::Missing`] when the consumer is not
/// ACTIVE within three minutes.
pub async fn ensure_consumer(
    client: &Client,
    stream: &StreamId,
    name: &str,
) -> Result<String, AwsError> {
    let arn = stream_arn(client, stream).await?;
    let deadline = Instant::now() + READY_WITHIN;
    let mut registered = false;
    loop {
        match describe(client, &arn, name).await? {
            Some(c) if c.status == ConsumerStatus::Active.as_str() => {
                if registered {
                    tracing::info!("registered enhanced fan-out consumer `{name}` ({})", c.arn);
                } else {
                    tracing::info!("reusing enhanced fan-out consumer `{name}` ({})", c.arn);
                }
                return Ok(c.arn);
            }
            Some(c) => tracing::debug!("consumer `{name}` is {}, waiting", c.status),
            None => {
                register(client, &arn, name).await?;
                registered = true;
            }
        }
        if Instant::now() > deadline {
            return Err(AwsError::Missing {
                call: "DescribeStreamConsumer",
                what: "ACTIVE consumer within 180 s",
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// RegisterStreamConsumer; a consumer registered meanwhile by another
/// process (ResourceInUse) is fine.
async fn register(client: &Client, arn: &str, name: &str) -> Result<(), AwsError> {
    let request = client
        .register_stream_consumer()
        .stream_arn(arn)
        .consumer_name(name);
    let mut backoff = RetryPolicy::BOUNDED.backoff();
    let call = "RegisterStreamConsumer";
    let send = || async { request.clone().send().await.map(|_| ()) };
    let taken = |e: &SdkError<RegisterStreamConsumerError, _>| {
        e.as_service_error()
            .is_some_and(|s| s.is_resource_in_use_exception())
            .then_some(())
    };
    retry_or(&mut backoff, call, None, send, taken).await
}

/// Every consumer registered on `stream`.
///
/// # Errors
/// The service's error.
pub async fn list_consumers(
    client: &Client,
    stream: &StreamId,
) -> Result<Vec<ConsumerInfo>, AwsError> {
    let arn = stream_arn(client, stream).await?;
    let mut consumers = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let request = match &token {
            Some(t) => client
                .list_stream_consumers()
                .stream_arn(&arn)
                .next_token(t),
            None => client.list_stream_consumers().stream_arn(&arn),
        };
        let mut backoff = RetryPolicy::BOUNDED.backoff();
        let call = "ListStreamConsumers";
        let out = retry(&mut backoff, call, None, || request.clone().send()).await?;
        consumers.extend(out.consumers().iter().map(|c| ConsumerInfo {
            name: c.consumer_name().to_string(),
            arn: c.consumer_arn().to_string(),
            status: c.consumer_status().as_str().to_string(),
            created_ms: c.consumer_creation_timestamp().to_millis().ok(),
        }));
        match out.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => break,
        }
    }
    consumers.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(consumers)
}

/// Deregisters the consumer `name` of `stream` (the service deletes it
/// within seconds; its subscriptions end).
///
/// # Errors
/// [`AwsError::Call`] with [`Fault::Fatal`] when there is no such consumer,
/// or the service's error.
pub async fn deregister(client: &Client, stream: &StreamId, name: &str) -> Result<(), AwsError> {
    let arn = stream_arn(client, stream).await?;
    if describe(client, &arn, name).await?.is_none() {
        return Err(AwsError::Call {
            call: "DescribeStreamConsumer",
            fault: Fault::Fatal,
            source: BoxError::from(format!("no consumer named `{name}` on stream {stream}")),
        });
    }
    let request = client
        .deregister_stream_consumer()
        .stream_arn(&arn)
        .consumer_name(name);
    let mut backoff = RetryPolicy::BOUNDED.backoff();
    retry(&mut backoff, "DeregisterStreamConsumer", None, || {
        request.clone().send()
    })
    .await?;
    Ok(())
}
