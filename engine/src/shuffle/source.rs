//! The group side of the shuffle: a source task that reads the shuffle
//! shard serving one key group and feeds that group's window tasks what a
//! local emitter would have sent them.
//!
//! - *Exactly once.* Per window and source shard it remembers the last
//!   record applied (sequence and subsequence number) and drops records at
//!   or before it: the repeats a source worker puts again when it resumes
//!   from its last checkpoint. This and the shuffle shard's read position
//!   are its checkpointed position, so a restart reads the shuffle shard
//!   after the last frame read and drops nothing twice.
//! - *Watermarks.* Each record carries its source shard's watermark before
//!   it; a window's watermark is the minimum over the source shards not
//!   ended (less idle ones), as in one process. Source shards are the
//!   source stream's shards without a listed parent at first; when one
//!   ends, the shards it split or merged into join.
//! - *End.* When every source shard of a window ended, the window gets its
//!   end (and fires everything); when every window has, the task ends.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_channel::Sender;
use aws_sdk_kinesis::Client;
use serde::{Deserialize, Serialize};
use tokio::runtime::Runtime;
use tokio::sync::mpsc::{channel, Receiver};

use super::frame::{self, Frame};
use super::out::{open_in_hash_order, ShuffleWriter};
use crate::aws::{connect, AwsError, Endpoint, RetryCounts, SequenceNumber, StreamId};
use crate::dataflow::checkpoint::{CheckpointCtx, Part, PartKind};
use crate::dataflow::message::{InputId, WindowBatch, WindowMsg};
use crate::dataflow::metrics::{LocalCounts, Metrics, SourceMetrics};
use crate::error::EngineError;
use crate::shuffle::stream_error;
use crate::sources::kinesis::discovery::list_shards;
use crate::sources::kinesis::reader::{
    FaultInjection, InFlight, ReaderEvent, ShardFeed, ShardReader, StartPosition,
};

/// How long the task waits for frames before doing its chores.
const TICK: Duration = Duration::from_millis(100);
/// Records per batch sent to a window task.
const BATCH: usize = 1024;
/// The task's name in checkpoints (not a valid node name).
pub const SHUFFLE_TASK: &str = "(shuffle)";

/// What the task applied from one source shard for one window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Upstream {
    /// The last record applied.
    pub sequence: Option<SequenceNumber>,
    /// Its subsequence number (`None`: not inside a KPL aggregate).
    pub subsequence: Option<u64>,
    /// The shard's watermark (`None`: nothing heard yet).
    pub watermark: Option<i64>,
    /// The shard ended.
    pub ended: bool,
    /// It said it is idle (until its next frame; not checkpointed).
    #[serde(skip)]
    pub idle: bool,
}

impl Upstream {
    /// Whether the record at `(sequence, subsequence)` was applied.
    fn applied(&self, sequence: &[u8], subsequence: u64) -> bool {
        let Some(last) = &self.sequence else {
            return false;
        };
        let last = last.as_str().as_bytes();
        let by_number = sequence.len().cmp(&last.len()).then(sequence.cmp(last));
        let last_sub = self.subsequence.unwrap_or(u64::MAX);
        by_number.then(subsequence.cmp(&last_sub)).is_le()
    }
}

/// The task's checkpointed position.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShufflePosition {
    /// The last frame read of each shuffle shard.
    pub read: BTreeMap<String, SequenceNumber>,
    /// Per window (node index), per source shard.
    pub windows: BTreeMap<u16, BTreeMap<String, Upstream>>,
    /// Records applied.
    pub records: u64,
}

/// A window fed by the shuffle.
#[derive(Debug)]
pub struct ShuffleWindow {
    /// Its node index in the plan.
    pub node: u16,
    /// The task's emitter id among the window's inputs.
    pub input: InputId,
    /// The channel of the window's (one) partition.
    pub sender: Sender<WindowMsg>,
}

/// One key group's shuffle source.
pub struct ShuffleSourceTask {
    /// The key group.
    pub group: u32,
    /// The job's key groups.
    pub groups: u32,
    /// The shuffle stream.
    pub shuffle: StreamId,
    /// The job's source stream (its shards are the upstreams).
    pub source: StreamId,
    /// Region and endpoint of both.
    pub endpoint: Endpoint,
    /// The windows it feeds.
    pub windows: Vec<ShuffleWindow>,
    /// Checkpoint coordination.
    pub checkpoints: CheckpointCtx,
    /// Shared counters.
    pub metrics: Arc<Metrics>,
    /// Where to resume.
    pub restore: Option<ShufflePosition>,
}

/// A window's batch on its way, and whether the window ended.
struct Outgoing {
    batch: WindowBatch,
    /// The watermark last sent.
    watermark: i64,
    ended: bool,
}

struct Running {
    runtime: Runtime,
    client: Client,
    events: Receiver<ReaderEvent>,
    position: ShufflePosition,
    out: BTreeMap<u16, Outgoing>,
    sent: u64,
    counts: LocalCounts,
    own: Arc<SourceMetrics>,
    /// Each ended source shard's children.
    children: BTreeMap<String, Vec<String>>,
}

impl ShuffleSourceTask {
    /// Reads until every window's source shards ended (or forever).
    ///
    /// # Errors
    /// Kinesis calls that fail for good, a record that is not a frame, or a
    /// lost downstream task.
    pub fn run(mut self) -> Result<(), EngineError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("shuffle")
            .enable_all()
            .build()
            .map_err(|e| stream_error("shuffle stream", &self.shuffle, AwsError::Runtime(e)))?;
        let client = runtime.block_on(connect(&self.endpoint));
        let (events_tx, events) = channel(16);
        let own = self
            .metrics
            .sources
            .add(SourceMetrics::new(SHUFFLE_TASK, "shuffle", None));
        let mut r = Running {
            runtime,
            client,
            events,
            position: self.restore.take().unwrap_or_default(),
            out: BTreeMap::new(),
            sent: self.checkpoints.committed(),
            counts: LocalCounts::default(),
            own,
            children: BTreeMap::new(),
        };
        let roots = self.roots(&r)?;
        for w in &self.windows {
            let upstreams = r.position.windows.entry(w.node).or_default();
            if upstreams.is_empty() {
                for root in &roots {
                    upstreams.insert(root.clone(), Upstream::default());
                }
            }
            let batch = WindowBatch {
                input: w.input,
                ..WindowBatch::default()
            };
            let outgoing = Outgoing {
                batch,
                watermark: i64::MIN,
                ended: false,
            };
            r.out.insert(w.node, outgoing);
        }
        let retries = Arc::new(RetryCounts::default());
        let in_flight = InFlight::new();
        for shard in &self.serving(&r)? {
            let start = match r.position.read.get(shard) {
                Some(seq) => StartPosition::After(seq.clone()),
                None => StartPosition::TrimHorizon,
            };
            let reader = ShardReader {
                feed: ShardFeed {
                    client: r.client.clone(),
                    stream: self.shuffle.clone(),
                    shard: Arc::from(shard.as_str()),
                    start,
                    stop_ms: None,
                    events: events_tx.clone(),
                    retries: retries.clone(),
                    in_flight: in_flight.clone(),
                },
                faults: FaultInjection::from_env(),
            };
            r.runtime.spawn(reader.run());
        }
        self.own_open(&r);
        let result = self.read(&mut r);
        r.runtime.shutdown_background();
        result
    }

    fn own_open(&self, r: &Running) {
        r.own.open.store(true, Ordering::Relaxed);
    }

    /// Publishes the shuffle shard's progress (its lag is the key group's).
    fn own_shard(&self, r: &Running, shard: &str, records: usize, behind_ms: Option<i64>) {
        let mut metrics = r.own.shards().remove(shard).unwrap_or_default();
        metrics.records += records as u64;
        metrics.behind_ms = behind_ms.or(metrics.behind_ms);
        let watermark = r.out.values().map(|o| o.watermark).min();
        metrics.watermark = watermark.filter(|w| *w != i64::MIN);
        if records > 0 {
            metrics.last_data_ms = Some(chrono::Utc::now().timestamp_millis());
        }
        r.own.set_shard(shard, metrics);
    }

    /// The shuffle shard that serves the group (see
    /// [`ShuffleWriter::shard_of`]).
    fn serving(&self, r: &Running) -> Result<Vec<String>, EngineError> {
        let listing = r
            .runtime
            .block_on(list_shards(&r.client, &self.shuffle))
            .map_err(|e| stream_error("shuffle stream", &self.shuffle, e))?;
        let open = open_in_hash_order(listing);
        let index = ShuffleWriter::shard_of(self.group, self.groups, open.len());
        match open.into_iter().nth(index) {
            Some(shard) => Ok(vec![shard.id]),
            None => Err(EngineError::Shuffle(format!(
                "shuffle stream {:?} has no open shard",
                self.shuffle
            ))),
        }
    }

    /// The source stream's shards without a listed parent.
    fn roots(&self, r: &Running) -> Result<Vec<String>, EngineError> {
        let listing = r
            .runtime
            .block_on(list_shards(&r.client, &self.source))
            .map_err(|e| stream_error("source", &self.source, e))?;
        let ids: BTreeSet<&str> = listing.iter().map(|s| s.id.as_str()).collect();
        Ok(listing
            .iter()
            .filter(|s| s.parents.iter().all(|p| !ids.contains(p.as_str())))
            .map(|s| s.id.clone())
            .collect())
    }

    /// The shards that continue `shard` (its children), listed once per
    /// shard whatever the number of windows.
    fn children(&self, r: &mut Running, shard: &str) -> Result<Vec<String>, EngineError> {
        if let Some(children) = r.children.get(shard) {
            return Ok(children.clone());
        }
        let listing = r
            .runtime
            .block_on(list_shards(&r.client, &self.source))
            .map_err(|e| stream_error("source", &self.source, e))?;
        let children: Vec<String> = listing
            .into_iter()
            .filter(|s| s.parents.iter().any(|p| p == shard))
            .map(|s| s.id)
            .collect();
        r.children.insert(shard.to_string(), children.clone());
        Ok(children)
    }

    fn read(&mut self, r: &mut Running) -> Result<(), EngineError> {
        loop {
            let event = r
                .runtime
                .block_on(async { tokio::time::timeout(TICK, r.events.recv()).await });
            match event {
                Ok(Some(ReaderEvent::Records {
                    shard,
                    records,
                    behind_ms,
                    ..
                })) => {
                    self.own_shard(r, &shard, records.len(), behind_ms);
                    for record in &records {
                        let data = record.data().as_ref();
                        // Other key groups' frames are skipped unread.
                        let theirs =
                            frame::addressee(data).is_some_and(|(_, group)| group != self.group);
                        if theirs {
                            r.position.read.insert(
                                shard.to_string(),
                                SequenceNumber(record.sequence_number().to_string()),
                            );
                            continue;
                        }
                        let frame = frame::decode(data).map_err(|e| {
                            EngineError::Shuffle(format!(
                                "record {} of shuffle shard {shard}: {e}",
                                record.sequence_number()
                            ))
                        })?;
                        self.apply(r, frame)?;
                        r.position.read.insert(
                            shard.to_string(),
                            SequenceNumber(record.sequence_number().to_string()),
                        );
                        if self.checkpoint(r)? {
                            return park(r);
                        }
                    }
                }
                Ok(Some(ReaderEvent::Failed { shard, error })) => {
                    let error = AwsError::Shard {
                        shard: shard.to_string(),
                        source: Box::new(error),
                    };
                    return Err(stream_error("shuffle stream", &self.shuffle, error));
                }
                // The shuffle stream is not resharded while a job runs.
                Ok(Some(ReaderEvent::End { .. } | ReaderEvent::Stopped { .. })) | Ok(None) => {}
                Err(_) => {}
            }
            self.flush(r)?;
            r.counts.publish(&self.metrics, &r.own.counts);
            if self.checkpoint(r)? {
                return park(r);
            }
            if r.out.values().all(|o| o.ended) {
                let part = Part::new(
                    SHUFFLE_TASK,
                    None,
                    PartKind::Source,
                    &r.position,
                    kflow_state::StateBatch::new(),
                )?;
                return self.checkpoints.report(part);
            }
        }
    }

    /// Applies one frame: records not applied yet go to their window's
    /// batch, stamped with the window's watermark.
    fn apply(&mut self, r: &mut Running, frame: Frame) -> Result<(), EngineError> {
        let route = frame.route().clone();
        if route.group != self.group {
            return Ok(());
        }
        let (Some(upstreams), Some(out)) = (
            r.position.windows.get_mut(&route.window),
            r.out.get_mut(&route.window),
        ) else {
            return Ok(());
        };
        if out.ended {
            return Ok(());
        }
        let upstream = upstreams.entry(route.shard.clone()).or_default();
        if upstream.ended {
            return Ok(());
        }
        match frame {
            Frame::Batch { batch, .. } => {
                // Records, or a watermark that moved, end a quiet spell.
                if !batch.is_empty() || upstream.watermark.is_none_or(|w| batch.final_watermark > w)
                {
                    upstream.idle = false;
                }
                for i in 0..batch.len() {
                    let Some(upstream) = upstreams.get_mut(&route.shard) else {
                        break;
                    };
                    let (sequence, subsequence) = (batch.sequence(i), batch.subsequences[i]);
                    if upstream.applied(sequence, subsequence) {
                        r.counts.duplicates += 1;
                        continue;
                    }
                    upstream.sequence = Some(SequenceNumber(
                        String::from_utf8_lossy(sequence).into_owned(),
                    ));
                    upstream.subsequence = (subsequence != u64::MAX).then_some(subsequence);
                    raise(&mut upstream.watermark, batch.watermarks[i]);
                    let watermark = watermark_of(upstreams, out.watermark);
                    copy_record(&batch, i, watermark, &mut out.batch);
                    out.watermark = watermark;
                    r.position.records += 1;
                    r.counts.read += 1;
                    r.counts.decoded += 1;
                }
                if let Some(upstream) = upstreams.get_mut(&route.shard) {
                    raise(&mut upstream.watermark, batch.final_watermark);
                }
            }
            Frame::Idle { watermark, .. } => {
                upstream.idle = true;
                raise(&mut upstream.watermark, watermark);
            }
            Frame::End { .. } => {
                upstream.ended = true;
                let children = self.children(r, &route.shard)?;
                let upstreams = r
                    .position
                    .windows
                    .get_mut(&route.window)
                    .ok_or_else(|| EngineError::Shuffle("window vanished".into()))?;
                for child in children {
                    upstreams.entry(child).or_default();
                }
            }
        }
        let (Some(upstreams), Some(out)) = (
            r.position.windows.get(&route.window),
            r.out.get_mut(&route.window),
        ) else {
            return Ok(());
        };
        let window = self.windows.iter().find(|w| w.node == route.window);
        if out.batch.len() >= BATCH {
            if let Some(w) = window {
                send(w, out, watermark_of(upstreams, out.watermark))?;
            }
        }
        Ok(())
    }

    /// Sends every window its batch (when it has records or its watermark
    /// moved), and the end to windows whose source shards all ended.
    fn flush(&mut self, r: &mut Running) -> Result<(), EngineError> {
        for w in &self.windows {
            let (Some(upstreams), Some(out)) =
                (r.position.windows.get(&w.node), r.out.get_mut(&w.node))
            else {
                continue;
            };
            if out.ended {
                continue;
            }
            let watermark = watermark_of(upstreams, out.watermark);
            if !out.batch.is_empty() || watermark > out.watermark {
                send(w, out, watermark)?;
            }
            if !upstreams.is_empty() && upstreams.values().all(|u| u.ended) {
                send(w, out, i64::MAX)?;
                w.sender
                    .send_blocking(WindowMsg::End(w.input))
                    .map_err(|_| EngineError::Disconnected(SHUFFLE_TASK.into()))?;
                out.ended = true;
            }
        }
        Ok(())
    }

    /// Sends the barrier of a requested checkpoint with the position.
    /// Returns whether it ended a graceful stop (read nothing more).
    fn checkpoint(&mut self, r: &mut Running) -> Result<bool, EngineError> {
        let requested = self.checkpoints.requested();
        if requested <= r.sent {
            return Ok(false);
        }
        let stopping = self.checkpoints.stopping();
        self.flush(r)?;
        for w in &self.windows {
            if r.out.get(&w.node).is_some_and(|o| !o.ended) {
                w.sender
                    .send_blocking(WindowMsg::Barrier(w.input, requested))
                    .map_err(|_| EngineError::Disconnected(SHUFFLE_TASK.into()))?;
            }
        }
        let part = Part::new(
            SHUFFLE_TASK,
            Some(requested),
            PartKind::Source,
            &r.position,
            kflow_state::StateBatch::new(),
        )?;
        self.checkpoints.report(part)?;
        r.sent = requested;
        Ok(stopping)
    }
}

/// After the last barrier of a graceful stop: read nothing more, until the
/// process exits.
fn park(r: &mut Running) -> Result<(), EngineError> {
    r.own.open.store(false, Ordering::Relaxed);
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn raise(watermark: &mut Option<i64>, to: i64) {
    *watermark = Some(watermark.map_or(to, |w| w.max(to)));
}

/// The minimum watermark over the source shards not ended (idle ones
/// aside); never below `last`. All ended: the end of time.
fn watermark_of(upstreams: &BTreeMap<String, Upstream>, last: i64) -> i64 {
    if !upstreams.is_empty() && upstreams.values().all(|u| u.ended) {
        return i64::MAX;
    }
    let min = upstreams
        .values()
        .filter(|u| !u.ended && !u.idle)
        .map(|u| u.watermark.unwrap_or(i64::MIN))
        .min();
    min.map_or(last, |m| m.max(last))
}

fn send(w: &ShuffleWindow, out: &mut Outgoing, watermark: i64) -> Result<(), EngineError> {
    let fresh = WindowBatch::sized_like(w.input, &out.batch);
    let mut batch = std::mem::replace(&mut out.batch, fresh);
    batch.final_watermark = watermark;
    batch.origin.get_or_insert_with(Instant::now);
    out.watermark = out.watermark.max(watermark);
    w.sender
        .send_blocking(WindowMsg::Batch(batch))
        .map_err(|_| EngineError::Disconnected(SHUFFLE_TASK.into()))
}

/// Appends record `i` of `from` to `to`, with watermark `watermark`.
fn copy_record(from: &WindowBatch, i: usize, watermark: i64, to: &mut WindowBatch) {
    let n_args = if from.is_empty() {
        0
    } else {
        from.args.len() / from.len()
    };
    to.times.push(from.times[i]);
    to.watermarks.push(watermark);
    to.hashes.push(from.hashes[i]);
    to.keys.extend_from_slice(from.key(i));
    to.key_ends.push(to.keys.len() as u32);
    for arg in &from.args[i * n_args..(i + 1) * n_args] {
        to.args.push(match *arg {
            crate::dataflow::arg::Arg::Pick { order, start, len } => {
                let at = to.values.len() as u32;
                to.values
                    .extend_from_slice(&from.values[start as usize..(start + len) as usize]);
                crate::dataflow::arg::Arg::Pick {
                    order,
                    start: at,
                    len,
                }
            }
            crate::dataflow::arg::Arg::Merge { start, len } => {
                let at = to.values.len() as u32;
                to.values
                    .extend_from_slice(&from.values[start as usize..(start + len) as usize]);
                crate::dataflow::arg::Arg::Merge { start: at, len }
            }
            other => other,
        });
    }
    if let Some(raw) = from.raw(i) {
        to.raw.extend_from_slice(raw);
        to.raw_ends.push(to.raw.len() as u32);
    }
    if to.origin.is_none() {
        to.origin = Some(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(watermark: Option<i64>, ended: bool, idle: bool) -> Upstream {
        Upstream {
            watermark,
            ended,
            idle,
            ..Upstream::default()
        }
    }

    #[test]
    fn the_watermark_is_the_minimum_over_live_shards() {
        let mut ups = BTreeMap::new();
        ups.insert("a".to_string(), up(Some(100), false, false));
        ups.insert("b".to_string(), up(None, false, false));
        assert_eq!(watermark_of(&ups, i64::MIN), i64::MIN);
        ups.insert("b".to_string(), up(Some(50), false, false));
        assert_eq!(watermark_of(&ups, i64::MIN), 50);
        ups.insert("b".to_string(), up(Some(50), false, true));
        assert_eq!(watermark_of(&ups, i64::MIN), 100);
        ups.insert("b".to_string(), up(Some(50), true, false));
        assert_eq!(watermark_of(&ups, 120), 120, "never moves back");
        ups.insert("a".to_string(), up(Some(100), true, false));
        assert_eq!(watermark_of(&ups, 0), i64::MAX);
    }

    #[test]
    fn applied_positions_compare_as_numbers_then_subsequences() {
        let u = Upstream {
            sequence: Some(SequenceNumber("100".into())),
            subsequence: Some(3),
            ..Upstream::default()
        };
        assert!(u.applied(b"99", u64::MAX));
        assert!(u.applied(b"100", 3));
        assert!(u.applied(b"100", 2));
        assert!(!u.applied(b"100", 4));
        assert!(!u.applied(b"101", 0));
        assert!(!u.applied(b"1000", u64::MAX));
        let whole = Upstream {
            sequence: Some(SequenceNumber("7".into())),
            ..Upstream::default()
        };
        assert!(whole.applied(b"7", u64::MAX));
        assert!(!Upstream::default().applied(b"1", u64::MAX));
    }
}
