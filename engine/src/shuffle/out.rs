//! The source side of the shuffle: a window destination whose partitions
//! are the job's key groups on other workers. Each batch becomes frames
//! ([`super::frame`]) put into the shuffle shard that serves its key group
//! (by `ExplicitHashKey`), under a partition key per window and key group,
//! so the putter keeps their order ([`crate::aws::put`]).
//!
//! A checkpoint barrier waits until every frame is acknowledged: the source
//! records a position only when everything before it is in the shuffle
//! stream. After a crash the source replays from that position and puts the
//! same records again; the group side drops them by position.
//!
//! Frames that carry no records only move the watermark; they go at most
//! every [`WATERMARK_EVERY`] per key group, and only when it moved.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;

use super::frame::{self, Route};
use crate::aws::put::{PutEntry, Putter};
use crate::aws::{connect, AwsError, Endpoint, StreamId};
use crate::dataflow::message::WindowBatch;
use crate::dataflow::route::RemotePartitions;
use crate::error::EngineError;
use crate::shuffle::stream_error;
use crate::sources::kinesis::discovery::{list_shards, ShardInfo};

/// How often a key group hears of a watermark that no record carried.
pub const WATERMARK_EVERY: Duration = Duration::from_millis(200);
/// How long a frame may wait in the queue for a full PutRecords call.
const LINGER: Duration = Duration::from_millis(50);

/// The shuffle stream's writer, shared by the destinations of one source
/// task (one per window).
#[derive(Debug)]
pub struct ShuffleWriter {
    runtime: Runtime,
    putter: Putter,
    /// The starting hash key of each open shard, in hash order.
    shards: Vec<String>,
    groups: u32,
    last_send: Instant,
}

impl ShuffleWriter {
    /// A writer putting to `stream`, whose open shards serve the `groups`
    /// key groups in contiguous ranges.
    ///
    /// # Errors
    /// [`EngineError::Shuffle`] when the stream cannot be listed or has no
    /// open shard.
    pub fn open(
        stream: &str,
        endpoint: &Endpoint,
        groups: u32,
    ) -> Result<Arc<Mutex<ShuffleWriter>>, EngineError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| {
                stream_error(
                    "shuffle stream",
                    &StreamId::parse(stream),
                    AwsError::Runtime(e),
                )
            })?;
        let client = runtime.block_on(connect(endpoint));
        let id = StreamId::parse(stream);
        let listed = runtime
            .block_on(list_shards(&client, &id))
            .map_err(|e| stream_error("shuffle stream", &StreamId::parse(stream), e))?;
        let open = open_in_hash_order(listed);
        if open.is_empty() {
            return Err(EngineError::Shuffle(format!(
                "shuffle stream `{stream}` has no open shard"
            )));
        }
        Ok(Arc::new(Mutex::new(ShuffleWriter {
            putter: Putter::new(client, id),
            runtime,
            shards: open.into_iter().map(|s| s.hash_start).collect(),
            groups: groups.max(1),
            last_send: Instant::now(),
        })))
    }

    /// The shuffle shard (index in hash order) that serves key group
    /// `group`, out of `shards` shards and `groups` groups: groups are
    /// dealt in contiguous ranges, so a shard serves neighbouring groups.
    pub fn shard_of(group: u32, groups: u32, shards: usize) -> usize {
        (u64::from(group) * shards as u64 / u64::from(groups.max(1))) as usize
    }

    fn push(&mut self, route: &Route, data: Vec<u8>) -> Result<(), AwsError> {
        let shard = Self::shard_of(route.group, self.groups, self.shards.len());
        self.putter.push(PutEntry {
            key: format!("w{}g{}", route.window, route.group),
            explicit_hash_key: self.shards.get(shard).cloned(),
            data,
        })?;
        if self.putter.batch_ready() || self.last_send.elapsed() >= LINGER {
            self.send()?;
        }
        Ok(())
    }

    fn send(&mut self) -> Result<(), AwsError> {
        while self.putter.batch_ready()
            || (self.putter.pending() > 0 && self.last_send.elapsed() >= LINGER)
        {
            self.runtime.block_on(self.putter.send_batch())?;
            self.last_send = Instant::now();
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), AwsError> {
        self.runtime.block_on(self.putter.flush())?;
        self.last_send = Instant::now();
        Ok(())
    }
}

/// The open shards of a shuffle stream's listing, in the order of their
/// hash ranges: the order key groups are dealt in.
pub fn open_in_hash_order(listing: Vec<ShardInfo>) -> Vec<ShardInfo> {
    let mut open: Vec<(u128, ShardInfo)> = listing
        .into_iter()
        .filter(|s| !s.closed)
        .filter_map(|s| s.hash_start.parse::<u128>().ok().map(|h| (h, s)))
        .collect();
    open.sort_by_key(|(h, _)| *h);
    open.into_iter().map(|(_, s)| s).collect()
}

/// One window's destination in a source task of a cluster job.
#[derive(Debug)]
pub struct ShuffleOut {
    writer: Arc<Mutex<ShuffleWriter>>,
    stream: String,
    window: u16,
    shard: String,
    n_args: usize,
    groups: u32,
    /// Per key group: the watermark last sent and when.
    sent: Vec<(i64, Instant)>,
}

impl ShuffleOut {
    /// The destination of window node `window` (with `n_args` aggregates)
    /// for records read from source shard `shard`.
    pub fn new(
        writer: Arc<Mutex<ShuffleWriter>>,
        stream: &str,
        window: u16,
        shard: &str,
        n_args: usize,
    ) -> ShuffleOut {
        let groups = writer.lock().map_or(1, |w| w.groups);
        let long_ago = Instant::now()
            .checked_sub(WATERMARK_EVERY)
            .unwrap_or_else(Instant::now);
        ShuffleOut {
            writer,
            stream: stream.to_string(),
            window,
            shard: shard.to_string(),
            n_args,
            groups,
            sent: vec![(i64::MIN, long_ago); groups as usize],
        }
    }

    fn route(&self, group: u32) -> Route {
        Route {
            window: self.window,
            group,
            shard: self.shard.clone(),
        }
    }

    fn with_writer<T>(
        &self,
        f: impl FnOnce(&mut ShuffleWriter) -> Result<T, AwsError>,
    ) -> Result<T, EngineError> {
        let mut writer = self
            .writer
            .lock()
            .map_err(|_| EngineError::Shuffle("shuffle writer poisoned".into()))?;
        f(&mut writer)
            .map_err(|e| stream_error("shuffle stream", &StreamId::parse(&self.stream), e))
    }

    fn send_every_group(&mut self, frame: impl Fn(&Route) -> Vec<u8>) -> Result<(), EngineError> {
        let routes: Vec<Route> = (0..self.groups).map(|g| self.route(g)).collect();
        self.with_writer(|w| {
            for route in &routes {
                w.push(route, frame(route))?;
            }
            Ok(())
        })
    }
}

impl RemotePartitions for ShuffleOut {
    fn count(&self) -> usize {
        self.groups as usize
    }

    fn batch(&mut self, group: usize, batch: WindowBatch) -> Result<(), EngineError> {
        let (last, at) = self.sent[group];
        if batch.is_empty() && (batch.final_watermark <= last || at.elapsed() < WATERMARK_EVERY) {
            return Ok(());
        }
        self.sent[group] = (batch.final_watermark.max(last), Instant::now());
        let route = self.route(group as u32);
        let frames = frame::encode_batch(&route, &batch, self.n_args);
        self.with_writer(|w| {
            for data in frames {
                w.push(&route, data)?;
            }
            Ok(())
        })
    }

    fn idle(&mut self, watermark: i64) -> Result<(), EngineError> {
        self.send_every_group(|route| frame::encode_idle(route, watermark))
    }

    fn barrier(&mut self) -> Result<(), EngineError> {
        self.with_writer(ShuffleWriter::flush)
    }

    fn end(&mut self) -> Result<(), EngineError> {
        self.send_every_group(frame::encode_end)?;
        self.with_writer(ShuffleWriter::flush)
    }
}
