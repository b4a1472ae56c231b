//! What each task publishes about itself: one record per source, shard,
//! window partition, sink and for the checkpoints, all atomics or short
//! locks that the owning task updates at batch boundaries and the metrics
//! endpoint reads.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use super::buckets::{Buckets, DURATION_BOUNDS, LATENCY_BOUNDS, SIZE_BOUNDS};
use super::Counters;

/// No value yet (a watermark before any record, a time never seen).
pub const UNSET: i64 = i64::MIN;

/// Keys kept in a published heavy-hitters list.
pub const HOT_KEYS: usize = 10;

/// One source task.
#[derive(Debug)]
pub struct SourceMetrics {
    /// Source name.
    pub name: String,
    /// `file` or `kinesis`.
    pub kind: &'static str,
    /// The source's `idle_timeout`.
    pub idle_timeout: Option<Duration>,
    /// Records read and what became of them.
    pub counts: Counters,
    /// Record sizes, bytes (a Kinesis record before de-aggregation).
    pub sizes: Buckets,
    /// The source's watermark, epoch ms ([`UNSET`] before any record).
    pub watermark: AtomicI64,
    /// Whether its consumers were told it is idle.
    pub idle: AtomicBool,
    /// Whether it opened its input (file opened, shards listed).
    pub open: AtomicBool,
    /// Whether a consumer's channel was full when last looked at.
    pub backpressured: AtomicBool,
    /// When it last read a record, epoch ms ([`UNSET`]: never).
    pub last_data_ms: AtomicI64,
    /// GetRecords calls and their durations, microseconds.
    pub calls: Buckets,
    /// Calls retried after throttling.
    pub throttles: AtomicU64,
    /// Calls retried after a transient fault.
    pub retries: AtomicU64,
    /// Kinesis read delays, microseconds: ApproximateArrivalTimestamp to
    /// the record reaching kflow.
    pub read_delays: Buckets,
    /// Enhanced fan-out subscriptions started (first ones and renewals).
    pub subscriptions: AtomicU64,
    /// Enhanced fan-out subscriptions refused, broken or gone silent.
    pub subscription_failures: AtomicU64,
    /// Kinesis shards by id.
    pub shards: Mutex<BTreeMap<String, ShardMetrics>>,
    /// The heaviest partition keys of the last minute or two.
    pub hot_keys: Mutex<Vec<(String, u64)>>,
}

impl SourceMetrics {
    /// A source that has read nothing yet.
    pub fn new(name: &str, kind: &'static str, idle_timeout: Option<Duration>) -> SourceMetrics {
        SourceMetrics {
            name: name.to_string(),
            kind,
            idle_timeout,
            counts: Counters::default(),
            sizes: Buckets::new(SIZE_BOUNDS),
            watermark: AtomicI64::new(UNSET),
            idle: AtomicBool::new(false),
            open: AtomicBool::new(false),
            backpressured: AtomicBool::new(false),
            last_data_ms: AtomicI64::new(UNSET),
            calls: Buckets::new(DURATION_BOUNDS),
            throttles: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            read_delays: Buckets::new(LATENCY_BOUNDS),
            subscriptions: AtomicU64::new(0),
            subscription_failures: AtomicU64::new(0),
            shards: Mutex::new(BTreeMap::new()),
            hot_keys: Mutex::new(Vec::new()),
        }
    }

    /// Updates one shard.
    pub fn set_shard(&self, id: &str, shard: ShardMetrics) {
        if let Ok(mut shards) = self.shards.lock() {
            shards.insert(id.to_string(), shard);
        }
    }

    /// Every shard, by id.
    pub fn shards(&self) -> BTreeMap<String, ShardMetrics> {
        self.shards.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Replaces the hot-key list.
    pub fn set_hot_keys(&self, keys: Vec<(String, u64)>) {
        if let Ok(mut hot) = self.hot_keys.lock() {
            *hot = keys;
        }
    }
}

/// One Kinesis shard's progress.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardMetrics {
    /// Records read from the shard in this run.
    pub records: u64,
    /// MillisBehindLatest of the last GetRecords call.
    pub behind_ms: Option<i64>,
    /// Where the shard is.
    pub state: ShardStatus,
    /// The shard's own watermark (its largest event time less the allowed
    /// out-of-orderness), epoch ms.
    pub watermark: Option<i64>,
    /// ApproximateArrivalTimestamp of the last record read, epoch ms.
    pub arrival_ms: Option<i64>,
    /// When the shard last returned a record, epoch ms.
    pub last_data_ms: Option<i64>,
    /// The parent a waiting child shard waits for.
    pub parent: Option<String>,
}

/// Where a shard's reading is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ShardStatus {
    /// Being read.
    #[default]
    Reading,
    /// A child shard waiting for its parent to be read to its end.
    Waiting,
    /// Reached SHARD_END and every record was processed.
    Finished,
    /// Reached the source's stop time.
    Stopped,
}

impl ShardStatus {
    /// The word the summary, status line and metrics use.
    pub fn as_str(self) -> &'static str {
        match self {
            ShardStatus::Reading => "reading",
            ShardStatus::Waiting => "waiting",
            ShardStatus::Finished => "finished",
            ShardStatus::Stopped => "stopped",
        }
    }

    /// Every state, for gauges that must show zeros too.
    pub const ALL: [ShardStatus; 4] = [
        ShardStatus::Reading,
        ShardStatus::Waiting,
        ShardStatus::Finished,
        ShardStatus::Stopped,
    ];
}

/// One partition of a window node.
#[derive(Debug)]
pub struct NodeMetrics {
    /// The window node's name.
    pub node: String,
    /// Partition index.
    pub partition: usize,
    /// Late records and result rows.
    pub counts: Counters,
    /// Records taken in.
    pub records_in: AtomicU64,
    /// The partition's watermark, epoch ms ([`UNSET`] before any input).
    pub watermark: AtomicI64,
    /// Each input's watermark and state, in input order.
    pub inputs: Mutex<Vec<InputMetrics>>,
    /// Window panes with state (open windows; panes of sliding windows).
    pub open_windows: AtomicU64,
    /// Keyed partial aggregates in memory.
    pub partials: AtomicU64,
    /// Estimated bytes of state held in memory.
    pub state_bytes: AtomicU64,
    /// The memory budget of this partition's state.
    pub budget_bytes: AtomicU64,
    /// Times the cache evicted its clean entries to RocksDB.
    pub evictions: AtomicU64,
    /// Keys read back from RocksDB after an eviction.
    pub spilled_reads: AtomicU64,
    /// Whether the partition is over its budget (it stops taking records
    /// until a checkpoint lets it evict).
    pub over_budget: AtomicBool,
    /// The heaviest window keys of the last minute or two.
    pub hot_keys: Mutex<Vec<(String, u64)>>,
}

/// One input of a window partition, as its watermark tracking sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputMetrics {
    /// The emitter's name (a source or a window node).
    pub name: String,
    /// Its last watermark, epoch ms.
    pub watermark: i64,
    /// Whether it said it is idle.
    pub idle: bool,
    /// Whether it ended.
    pub ended: bool,
}

impl NodeMetrics {
    /// A partition with no state yet.
    pub fn new(node: &str, partition: usize, budget: usize) -> NodeMetrics {
        NodeMetrics {
            node: node.to_string(),
            partition,
            counts: Counters::default(),
            records_in: AtomicU64::new(0),
            watermark: AtomicI64::new(UNSET),
            inputs: Mutex::new(Vec::new()),
            open_windows: AtomicU64::new(0),
            partials: AtomicU64::new(0),
            state_bytes: AtomicU64::new(0),
            budget_bytes: AtomicU64::new(budget as u64),
            evictions: AtomicU64::new(0),
            spilled_reads: AtomicU64::new(0),
            over_budget: AtomicBool::new(false),
            hot_keys: Mutex::new(Vec::new()),
        }
    }

    /// Replaces the inputs' watermarks.
    pub fn set_inputs(&self, inputs: Vec<InputMetrics>) {
        if let Ok(mut mine) = self.inputs.lock() {
            *mine = inputs;
        }
    }

    /// Replaces the hot-key list.
    pub fn set_hot_keys(&self, keys: Vec<(String, u64)>) {
        if let Ok(mut hot) = self.hot_keys.lock() {
            *hot = keys;
        }
    }
}

/// One sink task.
#[derive(Debug)]
pub struct SinkMetrics {
    /// Sink name.
    pub name: String,
    /// Rows written.
    pub rows: AtomicU64,
    /// Bytes written.
    pub bytes: AtomicU64,
    /// Commit (flush, sync) durations at checkpoints, microseconds.
    pub commits: Buckets,
    /// End-to-end latency of the rows written, microseconds.
    pub latency: Buckets,
    /// The largest end-to-end latency seen, microseconds.
    pub latency_max_us: AtomicU64,
    /// Kinesis puts retried after throttling.
    pub throttles: AtomicU64,
    /// Kinesis puts retried after a transient fault or a partial failure.
    pub retries: AtomicU64,
}

impl SinkMetrics {
    /// A sink that wrote nothing yet.
    pub fn new(name: &str) -> SinkMetrics {
        SinkMetrics {
            name: name.to_string(),
            rows: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            commits: Buckets::new(DURATION_BOUNDS),
            latency: Buckets::new(LATENCY_BOUNDS),
            latency_max_us: AtomicU64::new(0),
            throttles: AtomicU64::new(0),
            retries: AtomicU64::new(0),
        }
    }
}

/// The checkpoints of a run.
#[derive(Debug)]
pub struct CheckpointMetrics {
    /// Checkpoints committed.
    pub completed: AtomicU64,
    /// Checkpoints that failed to be written.
    pub failures: AtomicU64,
    /// Id of the last committed one.
    pub last_id: AtomicU64,
    /// From its request to its commit, microseconds.
    pub last_duration_us: AtomicU64,
    /// Bytes of state it wrote.
    pub last_bytes: AtomicU64,
    /// When it was committed, epoch ms ([`UNSET`]: none in this run).
    pub last_completed_ms: AtomicI64,
    /// The periodic interval, ms (0: off).
    pub interval_ms: AtomicU64,
    /// The newest checkpoint complete in the checkpoint store (0: none).
    pub durable_id: AtomicU64,
    /// Checkpoints uploaded to the store.
    pub uploads: AtomicU64,
    /// Uploads that failed (the next checkpoint tries again).
    pub upload_failures: AtomicU64,
    /// Bytes uploaded to the store.
    pub uploaded_bytes: AtomicU64,
    /// Bytes the last upload sent.
    pub last_upload_bytes: AtomicU64,
    /// Bytes of the database snapshots uploaded (what full copies would
    /// have sent).
    pub snapshot_bytes: AtomicU64,
    /// How long the last upload took, microseconds.
    pub last_upload_us: AtomicU64,
}

impl Default for CheckpointMetrics {
    fn default() -> CheckpointMetrics {
        CheckpointMetrics {
            completed: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            last_id: AtomicU64::new(0),
            last_duration_us: AtomicU64::new(0),
            last_bytes: AtomicU64::new(0),
            last_completed_ms: AtomicI64::new(UNSET),
            interval_ms: AtomicU64::new(0),
            durable_id: AtomicU64::new(0),
            uploads: AtomicU64::new(0),
            upload_failures: AtomicU64::new(0),
            uploaded_bytes: AtomicU64::new(0),
            last_upload_bytes: AtomicU64::new(0),
            snapshot_bytes: AtomicU64::new(0),
            last_upload_us: AtomicU64::new(0),
        }
    }
}

impl CheckpointMetrics {
    /// Counts an upload that failed, or a snapshot that could not be made.
    pub fn upload_failed(&self) {
        self.upload_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a checkpoint made durable in the store.
    pub fn uploaded(&self, id: u64, bytes: u64, snapshot: u64, took: Duration) {
        self.uploads.fetch_add(1, Ordering::Relaxed);
        self.snapshot_bytes.fetch_add(snapshot, Ordering::Relaxed);
        self.durable_id.fetch_max(id, Ordering::Relaxed);
        self.uploaded_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.last_upload_bytes.store(bytes, Ordering::Relaxed);
        self.last_upload_us
            .store(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// Records a committed checkpoint.
    pub fn committed(&self, id: u64, took: Duration, bytes: u64, at_ms: i64) {
        self.completed.fetch_add(1, Ordering::Relaxed);
        self.last_id.store(id, Ordering::Relaxed);
        self.last_duration_us
            .store(took.as_micros() as u64, Ordering::Relaxed);
        self.last_bytes.store(bytes, Ordering::Relaxed);
        self.last_completed_ms.store(at_ms, Ordering::Relaxed);
    }
}

/// Reads an [`UNSET`]-able atomic.
pub fn get_time(value: &AtomicI64) -> Option<i64> {
    Some(value.load(Ordering::Relaxed)).filter(|v| *v != UNSET)
}
