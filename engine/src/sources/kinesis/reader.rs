//! One shard's reader: GetShardIterator, then GetRecords at most five times
//! a second, handing each batch to the source task.
//!
//! A reader is an async task that only fetches: decoding, routing and the
//! checkpointed position belong to the source task, which receives the
//! batches in order on one channel. Throttling and transient faults (the
//! endpoint gone, timeouts, 5xx) are retried with exponential backoff and
//! jitter, forever: a restarted endpoint costs a pause, not data. An
//! expired iterator is renewed after the last sequence number fetched. The
//! reader ends at SHARD_END (with the child shards), or at the source's stop
//! time (records that arrived at or after it are not passed on).

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_kinesis::operation::get_records::GetRecordsOutput;
use aws_sdk_kinesis::types::{Record, ShardIteratorType};
use aws_sdk_kinesis::Client;
use aws_smithy_types::DateTime;
use tokio::sync::mpsc::Sender;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::aws::{
    retry, AwsError, Backoff, Fault, RetryCounts, RetryPolicy, SequenceNumber, StreamId,
};

/// GetRecords calls per second per shard, at most (the service limit).
const CALL_INTERVAL: Duration = Duration::from_millis(200);
/// Pause after an empty batch at the shard's tip.
const TIP_PAUSE: Duration = Duration::from_millis(500);
/// Records per GetRecords call (the service maximum).
const LIMIT: i32 = 10_000;

/// Where a reader starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartPosition {
    /// After this sequence number (a checkpointed position).
    After(SequenceNumber),
    /// The oldest retained record.
    TrimHorizon,
    /// Records that arrived at or after this time (epoch ms).
    AtTimestamp(i64),
}

impl StartPosition {
    /// The iterator type, sequence number and timestamp a request gives
    /// for it (GetShardIterator and SubscribeToShard take the same three).
    pub(super) fn parts(&self) -> (ShardIteratorType, Option<String>, Option<DateTime>) {
        match self {
            StartPosition::After(sequence) => (
                ShardIteratorType::AfterSequenceNumber,
                Some(sequence.as_str().to_string()),
                None,
            ),
            StartPosition::TrimHorizon => (ShardIteratorType::TrimHorizon, None, None),
            StartPosition::AtTimestamp(ms) => (
                ShardIteratorType::AtTimestamp,
                None,
                Some(DateTime::from_millis(*ms)),
            ),
        }
    }
}

/// What readers tell the source task, in each shard's order.
#[derive(Debug)]
pub enum ReaderEvent {
    /// Records fetched (possibly none: then only the lag is news).
    Records {
        /// Shard id.
        shard: Arc<str>,
        /// The records, in sequence order.
        records: Vec<Record>,
        /// MillisBehindLatest of the call.
        behind_ms: Option<i64>,
        /// How long the GetRecords call took, retries included,
        /// microseconds (`None`: pushed by a subscription).
        call_us: Option<u64>,
        /// The batch's share of the source's [`InFlight`] budget, given
        /// back when the event is dropped (after it was processed).
        held: Option<OwnedSemaphorePermit>,
    },
    /// The shard reached SHARD_END; every record was sent before this.
    End {
        /// Shard id.
        shard: Arc<str>,
    },
    /// The shard reached the stop time.
    Stopped {
        /// Shard id.
        shard: Arc<str>,
    },
    /// A call failed for good.
    Failed {
        /// Shard id.
        shard: Arc<str>,
        /// What failed.
        error: AwsError,
    },
}

/// Bytes of fetched records a source holds in its channel at most (with
/// 64 batches at most): GetRecords returns up to 10 MB, and a
/// subscription's events are of the same order, so a count of batches
/// alone would let a slow window hold hundreds of megabytes.
pub const IN_FLIGHT_BYTES: usize = 32 << 20;

/// A source's budget of fetched bytes not yet processed, shared by its
/// readers: a reader waits for its batch's bytes before sending it, so
/// while the windows are behind, polling pauses and subscriptions stop
/// being pulled.
#[derive(Debug, Clone)]
pub struct InFlight(Arc<Semaphore>);

impl InFlight {
    /// A budget of [`IN_FLIGHT_BYTES`].
    pub fn new() -> InFlight {
        InFlight(Arc::new(Semaphore::new(IN_FLIGHT_BYTES >> 10)))
    }

    /// Waits until `records` fit (a batch larger than the whole budget
    /// waits for all of it); `None` if the budget was closed.
    pub async fn take(&self, records: &[Record]) -> Option<OwnedSemaphorePermit> {
        let bytes: usize = records.iter().map(|r| r.data().as_ref().len()).sum();
        let kib = (bytes >> 10).clamp(1, IN_FLIGHT_BYTES >> 10) as u32;
        self.0.clone().acquire_many_owned(kib).await.ok()
    }
}

impl Default for InFlight {
    fn default() -> InFlight {
        InFlight::new()
    }
}

/// Test hooks, never set in production: `KFLOW_KINESIS_FAULTS=throttle:P`
/// makes each GetRecords call fail as throttled with probability P before it
/// is sent (the emulators never throttle); `KFLOW_KINESIS_LIMIT=N` asks for
/// at most N records per call (so a test's few thousand records take long
/// enough to kill a run in the middle).
#[derive(Debug, Clone, Copy)]
pub struct FaultInjection {
    throttle: f64,
    limit: i32,
}

impl FaultInjection {
    /// Reads the hooks from the environment.
    pub fn from_env() -> FaultInjection {
        let throttle = std::env::var("KFLOW_KINESIS_FAULTS")
            .ok()
            .and_then(|v| v.strip_prefix("throttle:").and_then(|p| p.parse().ok()))
            .unwrap_or(0.0);
        let limit = std::env::var("KFLOW_KINESIS_LIMIT")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|n| (1..=LIMIT).contains(n))
            .unwrap_or(LIMIT);
        FaultInjection { throttle, limit }
    }

    fn throttled(&self) -> bool {
        self.throttle > 0.0 && rand::random::<f64>() < self.throttle
    }
}

/// What every shard reader has, polling or subscribed: the shard, where
/// it starts and stops, and where its batches go.
pub struct ShardFeed {
    /// The client.
    pub client: Client,
    /// The stream.
    pub stream: StreamId,
    /// Shard id.
    pub shard: Arc<str>,
    /// Where to start.
    pub start: StartPosition,
    /// Records arriving at or after this time are not read.
    pub stop_ms: Option<i64>,
    /// Where batches go.
    pub events: Sender<ReaderEvent>,
    /// Retried calls, shared with the source (for the summary).
    pub retries: Arc<RetryCounts>,
    /// The source's budget of bytes in flight.
    pub in_flight: InFlight,
}

impl ShardFeed {
    /// GetShardIterator for `position`, retried under the patient policy;
    /// `None` when the service gives no iterator.
    pub(super) async fn iterator(
        &self,
        position: &StartPosition,
    ) -> Result<Option<String>, AwsError> {
        let (kind, sequence, timestamp) = position.parts();
        let request = self
            .client
            .get_shard_iterator()
            .shard_id(&*self.shard)
            .set_stream_name(self.stream.name())
            .set_stream_arn(self.stream.arn())
            .shard_iterator_type(kind)
            .set_starting_sequence_number(sequence)
            .set_timestamp(timestamp);
        let mut backoff = RetryPolicy::PATIENT.backoff();
        let out = retry(&mut backoff, "GetShardIterator", None, || {
            request.clone().send()
        })
        .await?;
        Ok(out.shard_iterator().map(str::to_string))
    }

    /// Sends a batch once its bytes fit the source's budget; `false` when
    /// the source task went away.
    pub(super) async fn send_records(
        &self,
        records: Vec<Record>,
        behind_ms: Option<i64>,
        call_us: Option<u64>,
    ) -> bool {
        let held = self.in_flight.take(&records).await;
        let event = ReaderEvent::Records {
            shard: self.shard.clone(),
            records,
            behind_ms,
            call_us,
            held,
        };
        self.events.send(event).await.is_ok()
    }

    /// Tells the source task the shard reached SHARD_END.
    pub(super) async fn ended(&self) {
        let shard = self.shard.clone();
        let _ = self.events.send(ReaderEvent::End { shard }).await;
    }

    /// Tells the source task the shard reached the stop time.
    pub(super) async fn stopped(&self) {
        let shard = self.shard.clone();
        let _ = self.events.send(ReaderEvent::Stopped { shard }).await;
    }

    /// Tells the source task how the read ended, if it failed.
    pub(super) async fn report(&self, read: Result<(), AwsError>) {
        if let Err(error) = read {
            let shard = self.shard.clone();
            let _ = self.events.send(ReaderEvent::Failed { shard, error }).await;
        }
    }
}

/// One shard's polling reader.
pub struct ShardReader {
    /// The shard and where its batches go.
    pub feed: ShardFeed,
    /// Test fault injection.
    pub faults: FaultInjection,
}

/// A record's ApproximateArrivalTimestamp in epoch ms.
pub(super) fn arrival_ms(record: &Record) -> Option<i64> {
    record
        .approximate_arrival_timestamp()
        .and_then(|t: &DateTime| t.to_millis().ok())
}

impl ShardReader {
    /// Reads until SHARD_END, the stop time, a fatal error, or the source
    /// task going away.
    pub async fn run(self) {
        self.feed.report(self.read().await).await;
    }

    async fn iterator(&self, position: &StartPosition) -> Result<String, AwsError> {
        self.feed
            .iterator(position)
            .await?
            .ok_or(AwsError::Missing {
                call: "GetShardIterator",
                what: "iterator",
            })
    }

    async fn read(&self) -> Result<(), AwsError> {
        let feed = &self.feed;
        let mut iterator = self.iterator(&feed.start).await?;
        let mut last_sequence: Option<SequenceNumber> = match &feed.start {
            StartPosition::After(s) => Some(s.clone()),
            _ => None,
        };
        let mut backoff: Backoff = RetryPolicy::PATIENT.backoff();
        let mut next_call = Instant::now();
        loop {
            tokio::time::sleep_until(next_call).await;
            next_call = Instant::now() + CALL_INTERVAL;
            if self.faults.throttled() {
                backoff
                    .wait(Fault::Throttled, "GetRecords", Some(&feed.retries))
                    .await;
                continue;
            }
            let called = Instant::now();
            let called_ms = crate::sources::ingest::now_ms();
            let Some(out) = self.get_records(&iterator, &mut backoff).await? else {
                // The iterator expired: a new one after the last record sent.
                let from = match &last_sequence {
                    Some(s) => StartPosition::After(s.clone()),
                    None => feed.start.clone(),
                };
                iterator = self.iterator(&from).await?;
                continue;
            };
            backoff.reset();
            let behind_ms = out.millis_behind_latest();
            let next = out.next_shard_iterator().map(str::to_string);
            let mut records = out.records;
            let stop = cut_at_stop(&mut records, feed.stop_ms);
            let empty = records.is_empty();
            if let Some(last) = records.last() {
                last_sequence = Some(SequenceNumber(last.sequence_number().to_string()));
            }
            let call_us = Some(called.elapsed().as_micros() as u64);
            if !feed.send_records(records, behind_ms, call_us).await {
                return Ok(());
            }
            let caught_up = empty && behind_ms.unwrap_or(0) == 0;
            // Caught up in a call sent at or after the stop time: every
            // record that arrived before it was in this batch or earlier.
            let past_stop = feed.stop_ms.is_some_and(|s| called_ms >= s);
            if stop || (caught_up && past_stop) {
                feed.stopped().await;
                return Ok(());
            }
            match next {
                Some(next) => iterator = next,
                None => {
                    feed.ended().await;
                    return Ok(());
                }
            }
            if caught_up {
                next_call = Instant::now() + TIP_PAUSE;
            }
        }
    }

    /// One GetRecords call (retried under the policy); `None` when the
    /// iterator expired.
    async fn get_records(
        &self,
        iterator: &str,
        backoff: &mut Backoff,
    ) -> Result<Option<GetRecordsOutput>, AwsError> {
        let request = self
            .feed
            .client
            .get_records()
            .shard_iterator(iterator)
            .limit(self.faults.limit);
        let counts = Some(&*self.feed.retries);
        match retry(backoff, "GetRecords", counts, || request.clone().send()).await {
            Ok(out) => Ok(Some(out)),
            Err(AwsError::Call {
                fault: Fault::ExpiredIterator,
                ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Drops the records that arrived at or after the stop time; whether the
/// stop time was reached.
pub(super) fn cut_at_stop(records: &mut Vec<Record>, stop_ms: Option<i64>) -> bool {
    let Some(stop_ms) = stop_ms else {
        return false;
    };
    match records
        .iter()
        .position(|r| arrival_ms(r).is_some_and(|t| t >= stop_ms))
    {
        Some(cut) => {
            records.truncate(cut);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_kinesis::primitives::Blob;

    fn record(bytes: usize) -> Record {
        Record::builder()
            .sequence_number("1")
            .partition_key("k")
            .data(Blob::new(vec![b'x'; bytes]))
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn a_batch_waits_while_the_bytes_in_flight_are_used_up() {
        let budget = InFlight::new();
        let half = vec![record(IN_FLIGHT_BYTES / 2)];
        let first = budget.take(&half).await.unwrap();
        let second = budget.take(&half).await.unwrap();
        let small = vec![record(10_000)];
        let waited = tokio::time::timeout(Duration::from_millis(50), budget.take(&small)).await;
        assert!(waited.is_err(), "the budget was full");
        drop(first);
        assert!(budget.take(&small).await.is_some());
        drop(second);
        // A batch larger than the whole budget takes all of it.
        let huge = vec![record(IN_FLIGHT_BYTES * 2)];
        let all = budget.take(&huge).await.unwrap();
        assert_eq!(all.num_permits(), IN_FLIGHT_BYTES >> 10);
    }
}
