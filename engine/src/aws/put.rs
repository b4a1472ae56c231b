//! PutRecords with per-key order: batches of up to 500 records / 5 MiB,
//! partial failures retried with backoff, and never two records of one
//! partition key in the same request.
//!
//! Kinesis processes a PutRecords request's entries independently: when the
//! first of two same-key entries fails and the second succeeds, the key's
//! order is broken for good. So a batch takes at most one entry per key;
//! the others wait for the next batch, and a failed entry goes back to the
//! front of the queue, ahead of its key's later records. One request is in
//! flight at a time, so a key's next record always waits for its retry.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::Ordering;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use aws_sdk_kinesis::Client;

use super::retry::{retry, Backoff, RetryCounts, RetryPolicy};
use super::{AwsError, StreamId};

/// Most entries in one PutRecords call.
pub const MAX_BATCH_RECORDS: usize = 500;
/// Most bytes (data + partition keys) in one PutRecords call.
pub const MAX_BATCH_BYTES: usize = 5 << 20;
/// Most bytes in one record (data + partition key).
pub const MAX_RECORD_BYTES: usize = 1 << 20;
/// How far past the front a batch looks for keys not yet in it.
const LOOKAHEAD: usize = 4 * MAX_BATCH_RECORDS;

/// One record to put.
#[derive(Debug, Clone)]
pub struct PutEntry {
    /// Partition key.
    pub key: String,
    /// Routes the record to the shard whose hash range holds this number
    /// (decimal) instead of the partition key's hash.
    pub explicit_hash_key: Option<String>,
    /// Data.
    pub data: Vec<u8>,
}

/// What a [`Putter`] did.
#[derive(Debug, Clone, Copy, Default)]
pub struct PutStats {
    /// Records written.
    pub records: u64,
    /// Bytes of data written.
    pub bytes: u64,
    /// PutRecords calls.
    pub calls: u64,
    /// Entries, and whole calls, retried after a transient failure.
    pub retries: u64,
    /// Entries, and whole calls, retried after throttling.
    pub throttles: u64,
}

/// A queue of records and the PutRecords calls that drain it.
#[derive(Debug)]
pub struct Putter {
    client: Client,
    stream: StreamId,
    pending: VecDeque<PutEntry>,
    pending_bytes: usize,
    pushed: u64,
    backoff: Backoff,
    /// Whole calls retried (entries are counted in `stats`).
    call_retries: RetryCounts,
    stats: PutStats,
}

impl Putter {
    /// A putter writing to `stream`.
    pub fn new(client: Client, stream: StreamId) -> Putter {
        Putter {
            client,
            stream,
            pending: VecDeque::new(),
            pending_bytes: 0,
            pushed: 0,
            backoff: RetryPolicy::PATIENT.backoff(),
            call_retries: RetryCounts::default(),
            stats: PutStats::default(),
        }
    }

    /// Queues a record.
    ///
    /// # Errors
    /// [`AwsError::Invalid`] for a record Kinesis would refuse.
    pub fn push(&mut self, entry: PutEntry) -> Result<(), AwsError> {
        let index = self.pushed;
        self.pushed += 1;
        let chars = entry.key.chars().count();
        if chars == 0 || chars > 256 {
            return Err(AwsError::Invalid {
                index,
                reason: format!("partition key has {chars} characters (1 to 256 allowed)"),
            });
        }
        let size = entry.data.len() + entry.key.len();
        if size > MAX_RECORD_BYTES {
            return Err(AwsError::Invalid {
                index,
                reason: format!("{size} bytes is over Kinesis' 1 MiB record limit"),
            });
        }
        self.pending_bytes += size;
        self.pending.push_back(entry);
        Ok(())
    }

    /// Records queued and not yet written.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Whether a full batch is queued.
    pub fn batch_ready(&self) -> bool {
        self.pending.len() >= MAX_BATCH_RECORDS || self.pending_bytes >= MAX_BATCH_BYTES
    }

    /// What was done so far.
    pub fn stats(&self) -> PutStats {
        let calls = &self.call_retries;
        PutStats {
            retries: self.stats.retries + calls.transient.load(Ordering::Relaxed),
            throttles: self.stats.throttles + calls.throttled.load(Ordering::Relaxed),
            ..self.stats
        }
    }

    /// Takes the next batch: in queue order, at most one entry per key.
    fn take_batch(&mut self) -> Vec<PutEntry> {
        let mut batch = Vec::new();
        let mut keys: HashSet<String> = HashSet::new();
        let mut deferred = Vec::new();
        let mut bytes = 0;
        let mut scanned = 0;
        while let Some(entry) = self.pending.pop_front() {
            scanned += 1;
            let size = entry.data.len() + entry.key.len();
            if batch.len() == MAX_BATCH_RECORDS || bytes + size > MAX_BATCH_BYTES {
                self.pending.push_front(entry);
                break;
            }
            if keys.contains(&entry.key) {
                deferred.push(entry);
            } else {
                bytes += size;
                keys.insert(entry.key.clone());
                batch.push(entry);
            }
            if scanned >= LOOKAHEAD {
                break;
            }
        }
        for entry in deferred.into_iter().rev() {
            self.pending.push_front(entry);
        }
        self.pending_bytes -= bytes;
        batch
    }

    /// Puts entries back at the front, in their order.
    fn requeue(&mut self, entries: Vec<PutEntry>) {
        for entry in entries.into_iter().rev() {
            self.pending_bytes += entry.data.len() + entry.key.len();
            self.pending.push_front(entry);
        }
    }

    /// Sends one batch. A call that fails for a retryable reason is sent
    /// again under the retry policy; entries the service rejects go back to
    /// the front of the queue (and the call waits out a backoff); written
    /// ones are counted.
    ///
    /// # Errors
    /// [`AwsError::Call`] when the service refuses the request.
    pub async fn send_batch(&mut self) -> Result<(), AwsError> {
        let batch = self.take_batch();
        if batch.is_empty() {
            return Ok(());
        }
        let entries: Vec<PutRecordsRequestEntry> = batch
            .iter()
            .filter_map(|e| {
                PutRecordsRequestEntry::builder()
                    .partition_key(&e.key)
                    .set_explicit_hash_key(e.explicit_hash_key.clone())
                    .data(Blob::new(e.data.clone()))
                    .build()
                    .ok()
            })
            .collect();
        let request = self
            .client
            .put_records()
            .set_records(Some(entries))
            .set_stream_name(self.stream.name())
            .set_stream_arn(self.stream.arn());
        self.stats.calls += 1;
        let counts = Some(&self.call_retries);
        let sent = retry(&mut self.backoff, "PutRecords", counts, || {
            request.clone().send()
        })
        .await;
        let out = match sent {
            Ok(out) => out,
            Err(e) => {
                self.requeue(batch);
                return Err(e);
            }
        };
        let mut failed = Vec::new();
        let mut throttled = false;
        for (entry, result) in batch.into_iter().zip(out.records()) {
            match result.error_code() {
                None => {
                    self.stats.records += 1;
                    self.stats.bytes += entry.data.len() as u64;
                }
                Some(code) => {
                    if code == "ProvisionedThroughputExceededException" {
                        self.stats.throttles += 1;
                        throttled = true;
                    } else {
                        self.stats.retries += 1;
                    }
                    failed.push(entry);
                }
            }
        }
        if failed.is_empty() {
            self.backoff.reset();
        } else {
            if !throttled {
                tracing::debug!("{} PutRecords entries failed; retrying", failed.len());
            }
            self.requeue(failed);
            tokio::time::sleep(self.backoff.next_delay()).await;
        }
        Ok(())
    }

    /// Sends batches until the queue is empty.
    ///
    /// # Errors
    /// As [`Putter::send_batch`].
    pub async fn flush(&mut self) -> Result<(), AwsError> {
        while !self.pending.is_empty() {
            self.send_batch().await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn putter() -> Putter {
        let config = aws_sdk_kinesis::Config::builder()
            .behavior_version(aws_sdk_kinesis::config::BehaviorVersion::latest())
            .build();
        Putter::new(Client::from_conf(config), StreamId::Name("s".into()))
    }

    fn entry(key: &str, n: u8) -> PutEntry {
        PutEntry {
            key: key.into(),
            explicit_hash_key: None,
            data: vec![n],
        }
    }

    #[test]
    fn a_batch_holds_one_record_per_key_and_keeps_key_order() {
        let mut p = putter();
        for (k, n) in [("a", 1), ("a", 2), ("b", 3), ("a", 4), ("c", 5), ("b", 6)] {
            p.push(entry(k, n)).unwrap();
        }
        let first: Vec<u8> = p.take_batch().iter().map(|e| e.data[0]).collect();
        assert_eq!(first, vec![1, 3, 5]);
        // Entry 1 failed: it goes back ahead of a's later records.
        p.requeue(vec![entry("a", 1)]);
        let second: Vec<u8> = p.take_batch().iter().map(|e| e.data[0]).collect();
        assert_eq!(second, vec![1, 6]);
        let third: Vec<u8> = p.take_batch().iter().map(|e| e.data[0]).collect();
        assert_eq!(third, vec![2]);
        let fourth: Vec<u8> = p.take_batch().iter().map(|e| e.data[0]).collect();
        assert_eq!(fourth, vec![4]);
        assert_eq!(p.pending(), 0);
        assert_eq!(p.pending_bytes, 0);
    }

    #[test]
    fn batches_stop_at_500_records() {
        let mut p = putter();
        for i in 0..1200 {
            p.push(entry(&format!("k{i}"), 0)).unwrap();
        }
        assert_eq!(p.take_batch().len(), 500);
        assert_eq!(p.take_batch().len(), 500);
        assert_eq!(p.take_batch().len(), 200);
    }

    #[test]
    fn oversized_records_and_bad_keys_are_refused() {
        let mut p = putter();
        let big = PutEntry {
            key: "k".into(),
            explicit_hash_key: None,
            data: vec![0; MAX_RECORD_BYTES],
        };
        assert!(matches!(
            p.push(big),
            Err(AwsError::Invalid { index: 0, .. })
        ));
        assert!(p.push(entry("", 1)).is_err());
        assert!(p.push(entry(&"x".repeat(257), 1)).is_err());
        assert_eq!(p.pending(), 0);
    }
}
