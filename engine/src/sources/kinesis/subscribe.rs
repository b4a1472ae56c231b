//! One shard's enhanced fan-out reader: SubscribeToShard as a registered
//! consumer, passing each event's records to the source task exactly as
//! the polling reader passes a GetRecords batch.
//!
//! A subscription lasts five minutes at most; when the service ends it
//! (or the network drops it, or no event came for [`SILENCE`]), the reader
//! subscribes again `AFTER_SEQUENCE_NUMBER` the last continuation sequence
//! number it passed on, so no record is skipped and none is passed on
//! twice: the source task still holds every batch sent before. At most one
//! SubscribeToShard call per second per shard (the service's limit);
//! throttling (`LimitExceededException`) and transient faults back off
//! with jitter, forever, like polling. `ResourceInUseException` means
//! another process holds this consumer's subscription to the shard: after
//! [`IN_USE_PATIENCE`] (long enough for the service to let go of a
//! subscription of this job's own killed process) the run fails with an
//! error that says so, instead of looping.
//!
//! Shard end: the service's last event of a closed shard carries its
//! ChildShards (and no continuation); the source task then lists the
//! shards and starts the children, parents first, as with polling. A
//! caught-up shard that a listing showed closed is confirmed drained with
//! one GetRecords call, for endpoints that never send that event.
//!
//! Backpressure: the event stream is pulled. While the source's budget of
//! bytes in flight ([`InFlight`](super::reader::InFlight)) or its channel is full the reader does
//! not ask for the next event, so the HTTP/2 (or chunked HTTP/1.1) stream
//! stops being read and the service stops sending: memory stays bounded.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_kinesis::operation::subscribe_to_shard::SubscribeToShardOutput;
use aws_sdk_kinesis::types::{StartingPosition, SubscribeToShardEventStream};
use tokio::time::Instant;

use super::reader::{cut_at_stop, ShardFeed, StartPosition};
use crate::aws::{classify, retry, AwsError, BoxError, Fault, RetryPolicy, SequenceNumber};
use crate::sources::ingest::now_ms;

/// SubscribeToShard calls per shard and consumer: one a second at most.
const CALL_INTERVAL: Duration = Duration::from_secs(1);
/// A subscription that sent nothing for this long is taken as dropped (the
/// service sends an event at least every few seconds, records or not).
pub const SILENCE: Duration = Duration::from_secs(30);
/// How long `ResourceInUseException` is retried before the run fails.
pub const IN_USE_PATIENCE: Duration = Duration::from_secs(40);

/// Subscriptions of one source, for its metrics.
#[derive(Debug, Default)]
pub struct SubscriptionCounts {
    /// SubscribeToShard calls that succeeded (the first per shard, then
    /// each renewal).
    pub started: AtomicU64,
    /// Subscriptions that failed or were dropped (calls refused, streams
    /// broken by the network or an error event, silent subscriptions).
    pub failed: AtomicU64,
}

/// Test hooks, never set in production: `KFLOW_EFO_RENEW_MS=N` ends each
/// subscription after N ms (so tests renew many times in seconds rather
/// than once per five minutes); `KFLOW_EFO_FAULTS=limit:P` makes each
/// SubscribeToShard call fail as `LimitExceededException` with probability
/// P before it is sent (the emulators never throttle);
/// `KFLOW_EFO_IN_USE_MS=N` gives up on `ResourceInUseException` after N ms
/// instead of [`IN_USE_PATIENCE`].
#[derive(Debug, Clone, Copy)]
pub struct SubscribeFaults {
    renew_after: Option<Duration>,
    limit: f64,
    in_use_patience: Duration,
}

impl SubscribeFaults {
    /// Reads the hooks from the environment.
    pub fn from_env() -> SubscribeFaults {
        let renew_after = std::env::var("KFLOW_EFO_RENEW_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis);
        let limit = std::env::var("KFLOW_EFO_FAULTS")
            .ok()
            .and_then(|v| v.strip_prefix("limit:").and_then(|p| p.parse().ok()))
            .unwrap_or(0.0);
        let in_use_patience = std::env::var("KFLOW_EFO_IN_USE_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(IN_USE_PATIENCE, Duration::from_millis);
        SubscribeFaults {
            renew_after,
            limit,
            in_use_patience,
        }
    }

    fn limited(&self) -> bool {
        self.limit > 0.0 && rand::random::<f64>() < self.limit
    }
}

/// How one subscription ended.
enum Ended {
    /// The service ended it (the five-minute lifetime), or the renewal
    /// hook did: subscribe again at once.
    Renew,
    /// The network or an error event broke it: back off, subscribe again.
    Broken(Fault),
    /// Another subscription of this consumer holds the shard (the call was
    /// refused, or the stream's first event said so).
    InUse(BoxError),
    /// The shard ended, the stop time was reached, or the source task went
    /// away: the reader is done.
    Done,
}

/// The error after `patience` of `ResourceInUseException`.
fn in_use(source: BoxError, patience: Duration) -> AwsError {
    AwsError::Call {
        call: "SubscribeToShard",
        fault: Fault::Fatal,
        source: BoxError::from(format!(
            "another process holds this consumer's subscription to the shard \
             (ResourceInUseException for {} s): is a second job running with the same \
             `consumer_name`? Give each job its own consumer. The service said: {source}",
            patience.as_secs()
        )),
    }
}

/// One shard's subscriber.
pub struct ShardSubscriber {
    /// The shard and where its batches go (`feed.start` moves with each
    /// event, for the next subscription).
    pub feed: ShardFeed,
    /// Set once a listing showed the shard closed (split or merged away).
    pub closed: Arc<AtomicBool>,
    /// The consumer's ARN.
    pub consumer: Arc<str>,
    /// Subscriptions started and failed, shared with the source.
    pub subscriptions: Arc<SubscriptionCounts>,
    /// Test hooks.
    pub faults: SubscribeFaults,
}

impl ShardSubscriber {
    /// Reads until SHARD_END, the stop time, a fatal error, or the source
    /// task going away.
    pub async fn run(mut self) {
        let read = self.read().await;
        self.feed.report(read).await;
    }

    async fn read(&mut self) -> Result<(), AwsError> {
        let mut backoff = RetryPolicy::PATIENT.backoff();
        let mut last_call: Option<Instant> = None;
        let mut in_use_since: Option<Instant> = None;
        loop {
            if let Some(at) = last_call {
                tokio::time::sleep_until(at + CALL_INTERVAL).await;
            }
            last_call = Some(Instant::now());
            let called_ms = now_ms();
            let ended = match self.subscribe().await {
                Ok(output) => {
                    self.subscriptions.started.fetch_add(1, Ordering::Relaxed);
                    self.pull(output, called_ms, &mut backoff).await?
                }
                Err(Refused::InUse(source)) => Ended::InUse(source),
                Err(Refused::Fault(fault, _)) if fault.is_retryable() => Ended::Broken(fault),
                Err(Refused::Fault(fault, source)) => {
                    return Err(AwsError::Call {
                        call: "SubscribeToShard",
                        fault,
                        source,
                    })
                }
            };
            match ended {
                Ended::Done => return Ok(()),
                Ended::Renew => {
                    in_use_since = None;
                    tracing::debug!("shard {}: renewing its subscription", self.feed.shard);
                }
                Ended::Broken(fault) => {
                    in_use_since = None;
                    self.subscriptions.failed.fetch_add(1, Ordering::Relaxed);
                    backoff
                        .wait(fault, "SubscribeToShard", Some(&self.feed.retries))
                        .await;
                }
                Ended::InUse(source) => {
                    self.subscriptions.failed.fetch_add(1, Ordering::Relaxed);
                    let since = *in_use_since.get_or_insert_with(Instant::now);
                    let patience = self.faults.in_use_patience;
                    if since.elapsed() >= patience {
                        return Err(in_use(source, patience));
                    }
                    tracing::debug!(
                        "shard {}: the subscription is still held (ResourceInUseException), \
                         retrying",
                        self.feed.shard
                    );
                    backoff
                        .wait(
                            Fault::Transient,
                            "SubscribeToShard",
                            Some(&self.feed.retries),
                        )
                        .await;
                }
            }
        }
    }

    /// One SubscribeToShard call from the current position.
    async fn subscribe(&self) -> Result<SubscribeToShardOutput, Refused> {
        if self.faults.limited() {
            return Err(Refused::Fault(
                Fault::Throttled,
                BoxError::from("LimitExceededException (injected)"),
            ));
        }
        let (kind, sequence, timestamp) = self.feed.start.parts();
        let position = StartingPosition::builder()
            .r#type(kind)
            .set_sequence_number(sequence)
            .set_timestamp(timestamp)
            .build()
            .map_err(|e| Refused::Fault(Fault::Fatal, BoxError::from(e)))?;
        let sent = self
            .feed
            .client
            .subscribe_to_shard()
            .consumer_arn(&*self.consumer)
            .shard_id(&*self.feed.shard)
            .starting_position(position)
            .send()
            .await;
        sent.map_err(|e| {
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_in_use_exception())
            {
                Refused::InUse(BoxError::from(e))
            } else {
                Refused::Fault(classify(&e), BoxError::from(e))
            }
        })
    }

    /// Pulls one subscription's events until it ends; `called_ms` is when
    /// SubscribeToShard was sent.
    async fn pull(
        &mut self,
        mut output: SubscribeToShardOutput,
        called_ms: i64,
        backoff: &mut crate::aws::Backoff,
    ) -> Result<Ended, AwsError> {
        let mut checked_from = called_ms;
        let renew_at = self.faults.renew_after.map(|d| Instant::now() + d);
        loop {
            if renew_at.is_some_and(|at| Instant::now() >= at) {
                return Ok(Ended::Renew);
            }
            let next = tokio::time::timeout(SILENCE, output.event_stream.recv()).await;
            let event = match next {
                Err(_) => {
                    tracing::warn!(
                        "shard {}: no event for {} s, subscribing again",
                        self.feed.shard,
                        SILENCE.as_secs()
                    );
                    return Ok(Ended::Broken(Fault::Transient));
                }
                Ok(Ok(Some(SubscribeToShardEventStream::SubscribeToShardEvent(event)))) => event,
                Ok(Ok(Some(_))) => continue,
                Ok(Ok(None)) => return Ok(Ended::Renew),
                Ok(Err(e))
                    if e.as_service_error()
                        .is_some_and(|s| s.is_resource_in_use_exception()) =>
                {
                    return Ok(Ended::InUse(BoxError::from(e)));
                }
                Ok(Err(e)) => {
                    let fault = classify(&e);
                    if !fault.is_retryable() {
                        return Err(AwsError::Call {
                            call: "SubscribeToShard",
                            fault,
                            source: BoxError::from(e),
                        });
                    }
                    tracing::debug!("shard {}: subscription broken: {e}", self.feed.shard);
                    return Ok(Ended::Broken(fault));
                }
            };
            backoff.reset();
            let behind_ms = Some(event.millis_behind_latest);
            let continuation = event.continuation_sequence_number;
            let children = event.child_shards.unwrap_or_default();
            let mut records = event.records;
            let stopped = cut_at_stop(&mut records, self.feed.stop_ms);
            let empty = records.is_empty();
            if !stopped && !continuation.is_empty() {
                self.feed.start = StartPosition::After(SequenceNumber(continuation.clone()));
            } else if let Some(last) = records.last() {
                self.feed.start =
                    StartPosition::After(SequenceNumber(last.sequence_number().to_string()));
            }
            if !self.feed.send_records(records, behind_ms, None).await {
                return Ok(Ended::Done);
            }
            let caught_up = empty && event.millis_behind_latest == 0;
            // An event that follows one received at or after the stop time
            // (or the call, for the first) was made after it: caught up
            // there, every record that arrived before it has been passed on.
            let past_stop = self.feed.stop_ms.is_some_and(|s| checked_from >= s);
            checked_from = now_ms();
            if stopped || (caught_up && past_stop) {
                self.feed.stopped().await;
                return Ok(Ended::Done);
            }
            let drained = caught_up && self.closed.load(Ordering::Relaxed) && self.at_end().await?;
            if continuation.is_empty() || !children.is_empty() || drained {
                let children: Vec<&str> = children.iter().map(|c| c.shard_id()).collect();
                tracing::debug!("shard {} ended; children {children:?}", self.feed.shard);
                self.feed.ended().await;
                return Ok(Ended::Done);
            }
        }
    }

    /// Whether a closed shard has nothing after the position: the service
    /// ends a closed shard's subscription with its ChildShards, but an
    /// emulator may just keep sending empty events, so a caught-up closed
    /// shard is asked once by GetRecords (no records and no next iterator:
    /// SHARD_END), exact either way.
    async fn at_end(&self) -> Result<bool, AwsError> {
        if !matches!(self.feed.start, StartPosition::After(_)) {
            return Ok(false);
        }
        let Some(iterator) = self.feed.iterator(&self.feed.start).await? else {
            return Ok(true);
        };
        let request = self
            .feed
            .client
            .get_records()
            .shard_iterator(iterator)
            .limit(1);
        let mut backoff = RetryPolicy::PATIENT.backoff();
        let counts = Some(&*self.feed.retries);
        let out = retry(&mut backoff, "GetRecords", counts, || {
            request.clone().send()
        })
        .await?;
        Ok(out.records().is_empty() && out.next_shard_iterator().is_none())
    }
}

/// Why SubscribeToShard was refused.
enum Refused {
    /// Another subscription of this consumer holds the shard.
    InUse(BoxError),
    /// Any other failure, classified.
    Fault(Fault, BoxError),
}
