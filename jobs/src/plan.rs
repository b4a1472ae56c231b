//! The compiled job: a DAG of sources, filters, windows and sinks with every
//! name resolved, durations typed and expressions compiled.
//!
//! A [`JobPlan`] holds only resolved data (node ids, field ids, milliseconds),
//! so the runtime never looks anything up by name. Nodes are stored in
//! topological order: every node's inputs come before it.

use std::path::PathBuf;
use std::time::Duration;

use crate::expr::CompiledExpr;
use crate::value::{FieldId, FieldPath};

/// Index of a node in [`JobPlan::nodes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

impl NodeId {
    /// The index as a `usize`, for slicing.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Which of a node's outputs a consumer reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Port {
    /// The node's records (source, filter) or results (window).
    Main,
    /// A window's side output of records that came after their window fired.
    Late,
    /// A source's side output of records it could not decode.
    Errors,
}

/// A reference to one output of a node: `name`, `name.late`, `name.errors`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamRef {
    /// The producing node.
    pub node: NodeId,
    /// Which of its outputs.
    pub port: Port,
}

/// A whole compiled job.
#[derive(Debug)]
pub struct JobPlan {
    /// `[job] name`.
    pub name: String,
    /// The job file this plan came from.
    pub job_path: PathBuf,
    /// Where RocksDB state and the default dead-letter file live
    /// (resolved against the job file's folder).
    pub state_dir: PathBuf,
    /// Where undecodable records go when no `.errors` consumer exists.
    pub dead_letter_path: PathBuf,
    /// `[job] checkpoint_interval` (default 10 s).
    pub checkpoint_interval: Duration,
    /// `[job] state_memory` (default 256 MiB): the write-back cache budget.
    pub state_memory_bytes: u64,
    /// `[job] metrics`: where to serve `/metrics`, `/healthz`, `/readyz`
    /// and `/status` (off when `None`).
    pub metrics: Option<std::net::SocketAddr>,
    /// `[job] checkpoint_store`: `s3://bucket/prefix` where checkpoints
    /// are uploaded (none: local only).
    pub checkpoint_store: Option<String>,
    /// `[job] retain_checkpoints` (default 3): complete checkpoints kept in
    /// the store.
    pub retain_checkpoints: usize,
    /// `[job.cluster]`: how the job runs on several processes (none: one
    /// process).
    pub cluster: Option<ClusterPlan>,
    /// Every field path any expression, key or aggregate references.
    pub fields: Vec<FieldPath>,
    /// All nodes, in topological order.
    pub nodes: Vec<NodePlan>,
}

impl JobPlan {
    /// The node with this id.
    pub fn node(&self, id: NodeId) -> &NodePlan {
        &self.nodes[id.index()]
    }

    /// The id of a field path in [`JobPlan::fields`], if the job references
    /// it (window output columns are looked up this way, by column name).
    pub fn field_id(&self, dotted: &str) -> Option<FieldId> {
        self.fields
            .iter()
            .position(|field| field.dotted == dotted)
            .and_then(|index| u32::try_from(index).ok())
            .map(FieldId)
    }

    /// The consumers of one output of a node, in node order.
    pub fn consumers(&self, stream: StreamRef) -> impl Iterator<Item = (NodeId, &NodePlan)> {
        self.nodes
            .iter()
            .enumerate()
            .filter(move |(_, n)| n.inputs.contains(&stream))
            .map(|(i, n)| (NodeId(i as u32), n))
    }
}

/// One node of the DAG.
#[derive(Debug)]
pub struct NodePlan {
    /// Its name in the job file.
    pub name: String,
    /// The streams it reads (empty for sources; several for a union).
    pub inputs: Vec<StreamRef>,
    /// What it does.
    pub kind: NodeKind,
}

/// `[job.cluster]`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterPlan {
    /// The DynamoDB lease table's name.
    pub leases_table: String,
    /// Key groups of the windows' state (fixed for the job's life).
    pub key_groups: u32,
    /// The shuffle stream (`None`: the job has no windows and needs none).
    pub shuffle_stream: Option<String>,
    /// Shards of the shuffle stream when kflow creates it.
    pub shuffle_shards: u32,
    /// How long a lease outlives its holder's last heartbeat.
    pub failover_timeout: Duration,
    /// DynamoDB endpoint URL (`None`: the AWS chain).
    pub endpoint: Option<String>,
    /// Region of the lease table and the shuffle stream.
    pub region: Option<String>,
}

/// The closed set of node kinds.
#[derive(Debug)]
pub enum NodeKind {
    /// `[sources.NAME]`.
    Source(SourcePlan),
    /// `[filters.NAME]`.
    Filter(FilterPlan),
    /// `[windows.NAME]`.
    Window(WindowPlan),
    /// `[sinks.NAME]`.
    Sink(SinkPlan),
}

/// A source: where records come from and how their time is read.
#[derive(Debug)]
pub struct SourcePlan {
    /// File or Kinesis specifics.
    pub connector: ConnectorPlan,
    /// The field holding event time (RFC 3339 string or epoch millis);
    /// `None`: arrival time.
    pub event_time: Option<FieldId>,
    /// `watermark.max_out_of_orderness` in milliseconds (default 0).
    pub max_out_of_orderness_ms: i64,
    /// `watermark.idle_timeout` (default: none, an idle input holds the
    /// watermark back).
    pub idle_timeout: Option<Duration>,
    /// `dedup = { field, within }`.
    pub dedup: Option<DedupPlan>,
    /// The fields this source must decode: every field referenced
    /// downstream of it through filters and windows, plus its event-time
    /// and dedup fields. Sorted, no duplicates.
    pub projection: Vec<FieldId>,
}

/// Source connector settings.
#[derive(Debug)]
pub enum ConnectorPlan {
    /// `type = "file"`.
    File(FileSourcePlan),
    /// `type = "kinesis"`.
    Kinesis(KinesisSourcePlan),
}

/// A JSON-lines file.
#[derive(Debug)]
pub struct FileSourcePlan {
    /// Resolved against the job file's folder.
    pub path: PathBuf,
    /// Keep tailing at end of file instead of ending the source.
    pub follow: bool,
    /// A `kflow test` case's steps as this source takes them, in order
    /// (empty for a job file's source, which cannot set them): every
    /// source of the run finishes a turn, and the windows take in all it
    /// read, before any source starts the next.
    pub turns: Vec<Turn>,
}

/// One turn of a `kflow test` case for one source: at its start the
/// source's watermark moves to at least `advance` and the source is quiet
/// for `quiet_ms`; then it reads until it has read `lines` lines in all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Turn {
    /// The watermark the source moves to (epoch ms): an `advance` step.
    pub advance: Option<i64>,
    /// How long the source is quiet (ms): an `idle` step. It is idle, and
    /// holds no window's watermark back, when that reaches its
    /// `idle_timeout`.
    pub quiet_ms: Option<i64>,
    /// The source's line count at the end of the turn.
    pub lines: u64,
}

/// A Kinesis data stream.
#[derive(Debug)]
pub struct KinesisSourcePlan {
    /// Stream name (or ARN when `stream_arn` was given).
    pub stream: String,
    /// Whether `stream` is an ARN.
    pub is_arn: bool,
    /// `region`, if set.
    pub region: Option<String>,
    /// `endpoint`, if set.
    pub endpoint: Option<String>,
    /// Where to start without a checkpoint.
    pub start_at: StartAt,
    /// Where a bounded read stops.
    pub stop_at: Option<StopAt>,
    /// What to do when a checkpointed position has expired.
    pub on_expired: OnExpired,
    /// How shards are read.
    pub reader: KinesisReader,
}

/// `reader`: how a Kinesis source reads its shards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KinesisReader {
    /// GetRecords, sharing each shard's 2 MB/s and 5 calls/s with the
    /// stream's other polling consumers (default).
    Polling,
    /// Enhanced fan-out: SubscribeToShard as a registered consumer, with a
    /// dedicated 2 MB/s per shard.
    Efo {
        /// `consumer_name`; `None`: the job's name.
        consumer_name: Option<String>,
    },
}

/// `start_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// Only records written after the start.
    Latest,
    /// The oldest record retained.
    TrimHorizon,
    /// Records at or after this time (epoch millis).
    Timestamp(i64),
}

/// `stop_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopAt {
    /// The shards' tips as of the start.
    Latest,
    /// Records before this time (epoch millis).
    Timestamp(i64),
}

/// `on_expired`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnExpired {
    /// Fail the run with a clear message (default).
    Fail,
    /// Restart the shard from its trim horizon.
    TrimHorizon,
}

/// `dedup = { field, within }`.
#[derive(Debug)]
pub struct DedupPlan {
    /// The id field.
    pub field: FieldId,
    /// How long an id is remembered, in milliseconds of event time.
    pub within_ms: i64,
}

/// A filter: a compiled CEL expression.
#[derive(Debug)]
pub struct FilterPlan {
    /// The compiled `where` expression.
    pub expr: CompiledExpr,
    /// The expression as written.
    pub text: String,
}

/// A keyed event-time window with aggregates.
#[derive(Debug)]
pub struct WindowPlan {
    /// Key fields (empty: one global group), in order.
    pub key: Vec<FieldId>,
    /// Key fields' names as written (the output row's key columns).
    pub key_names: Vec<String>,
    /// Tumbling or sliding.
    pub kind: WindowKind,
    /// `allowed_lateness` in milliseconds.
    pub allowed_lateness_ms: i64,
    /// The aggregates, in the order the job file lists them.
    pub aggregates: Vec<AggregatePlan>,
}

/// The window's shape, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// `tumbling = SIZE`.
    Tumbling {
        /// Window size.
        size_ms: i64,
    },
    /// `sliding = { size, slide }`; `slide` divides `size`.
    Sliding {
        /// Window size.
        size_ms: i64,
        /// Distance between window starts.
        slide_ms: i64,
    },
    /// `session = { gap, max_duration }`: per key, maximal runs of records
    /// less than `gap` apart.
    Session {
        /// Inactivity that closes a session.
        gap_ms: i64,
        /// Sessions never cross a multiple of this (since the epoch), so
        /// none is longer.
        max_duration_ms: Option<i64>,
    },
}

impl WindowKind {
    /// The window size and slide in milliseconds of a tumbling or sliding
    /// window; `None` for sessions, which have neither.
    pub fn panes(self) -> Option<(i64, i64)> {
        match self {
            WindowKind::Tumbling { size_ms } => Some((size_ms, size_ms)),
            WindowKind::Sliding { size_ms, slide_ms } => Some((size_ms, slide_ms)),
            WindowKind::Session { .. } => None,
        }
    }
}

/// One named aggregate of a window.
#[derive(Debug, Clone, PartialEq)]
pub struct AggregatePlan {
    /// The output column name.
    pub name: String,
    /// The function.
    pub function: AggregateFunction,
    /// The argument field (`None` only for `count()`); for `max_by` and
    /// `min_by` the field whose value is the result.
    pub field: Option<FieldId>,
    /// `max_by` and `min_by`: the numeric field that picks the record.
    pub by: Option<FieldId>,
}

/// The closed set of aggregate functions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AggregateFunction {
    /// `count()`: number of records.
    Count,
    /// `sum(field)`.
    Sum,
    /// `min(field)`.
    Min,
    /// `max(field)`.
    Max,
    /// `avg(field)`.
    Avg,
    /// `count_distinct(field)`.
    CountDistinct,
    /// `percentile(field, q)` with `0 <= q <= 1`.
    Percentile(f64),
    /// `variance(field)`: the population variance.
    Variance,
    /// `stddev(field)`: the population standard deviation.
    Stddev,
    /// `count_distinct_approx(field)`: HyperLogLog, exact up to 512.
    CountDistinctApprox,
    /// `max_by(value, field)`: `field` of the record with the largest
    /// `value`.
    MaxBy,
    /// `min_by(value, field)`: `field` of the record with the smallest
    /// `value`.
    MinBy,
    /// `first(field)`: `field` of the earliest record (event time).
    First,
    /// `last(field)`: `field` of the latest record (event time).
    Last,
    /// `top_k(field, k)`: the `k` most frequent values with their counts
    /// (a mergeable Misra-Gries summary; `1 <= k <= 1000`).
    TopK(u32),
}

impl AggregateFunction {
    /// Whether the argument must be a number.
    pub fn needs_number(self) -> bool {
        !matches!(
            self,
            AggregateFunction::Count
                | AggregateFunction::CountDistinct
                | AggregateFunction::CountDistinctApprox
                | AggregateFunction::MaxBy
                | AggregateFunction::MinBy
                | AggregateFunction::First
                | AggregateFunction::Last
                | AggregateFunction::TopK(_)
        )
    }

    /// Whether the aggregate reads its field's value itself (any type but
    /// an object or array), not a number or a hash.
    pub fn carries_a_value(self) -> bool {
        self.picks_a_value() || matches!(self, AggregateFunction::TopK(_))
    }

    /// Whether the result is one of the records' values (any type), not a
    /// number.
    pub fn picks_a_value(self) -> bool {
        matches!(
            self,
            AggregateFunction::MaxBy
                | AggregateFunction::MinBy
                | AggregateFunction::First
                | AggregateFunction::Last
        )
    }
}

/// A sink.
#[derive(Debug)]
pub enum SinkPlan {
    /// `type = "stdout"`.
    Stdout,
    /// `type = "file"`: JSON lines at this path (resolved against the job
    /// file's folder).
    File {
        /// Output file.
        path: PathBuf,
    },
    /// `type = "kinesis"`.
    Kinesis {
        /// Stream name.
        stream: String,
        /// `region`, if set.
        region: Option<String>,
        /// `endpoint`, if set.
        endpoint: Option<String>,
    },
    /// `type = "s3"`: one object of JSON lines per checkpoint.
    S3 {
        /// `s3://bucket/prefix`.
        path: String,
        /// `compression = "gzip"`.
        gzip: bool,
    },
}
