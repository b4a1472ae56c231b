//! The job file as written: serde types that mirror `job.toml` one to one,
//! every value that an error may point at kept as a [`Spanned`].
//!
//! Nothing here is checked beyond TOML types and key names: durations,
//! names, inputs and expressions stay strings until [`crate::compile`]
//! resolves them, so that one pass can report every problem with its
//! position. [`read`] fills these types one node at a time (see there why).

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
pub use toml::Spanned;

mod read;
mod skeleton;

pub(crate) use read::{read, SpecRead};

use crate::diagnostic::{sort_and_dedup, Diagnostic};

/// Reads a job file's text into a [`JobSpec`], without compiling it.
///
/// # Errors
///
/// Every TOML syntax error, unknown or missing key, wrong value type and
/// unknown `type`, sorted by position.
pub fn parse(text: &str) -> Result<JobSpec, Vec<Diagnostic>> {
    let mut read = read(text);
    if read.diagnostics.is_empty() {
        Ok(read.spec)
    } else {
        sort_and_dedup(&mut read.diagnostics);
        Err(read.diagnostics)
    }
}

/// A whole job file.
#[derive(Debug)]
pub struct JobSpec {
    /// `[job]`; `None` when the file has none (an error).
    pub job: Option<Spanned<JobSection>>,
    /// `[sources.NAME]`, in file order.
    pub sources: Vec<Named<SourceSpec>>,
    /// `[filters.NAME]`, in file order.
    pub filters: Vec<Named<FilterSpec>>,
    /// `[windows.NAME]`, in file order.
    pub windows: Vec<Named<WindowSpec>>,
    /// `[sinks.NAME]`, in file order.
    pub sinks: Vec<Named<SinkSpec>>,
}

/// A node of one of the four sections with its name.
#[derive(Debug)]
pub struct Named<T> {
    /// The name, spanning the key in the file (`clicks` in `[sources.clicks]`).
    pub name: Spanned<String>,
    /// The node's table.
    pub spec: Spanned<T>,
}

/// `[job]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSection {
    /// Required; `[a-z0-9_-]+`.
    pub name: Spanned<String>,
    /// Default `.kflow/<name>`, relative to the job file's folder.
    pub state_dir: Option<Spanned<String>>,
    /// A duration; default `10s`.
    pub checkpoint_interval: Option<Spanned<String>>,
    /// Where undecodable records go; default `<state_dir>/dead-letter.jsonl`.
    pub dead_letter: Option<Spanned<String>>,
    /// The state cache budget, like `256MB`; default 256 MiB.
    pub state_memory: Option<Spanned<String>>,
    /// Where to serve metrics and health over HTTP, like `127.0.0.1:9464`;
    /// off by default.
    pub metrics: Option<Spanned<String>>,
    /// Where checkpoints are uploaded, `s3://bucket/prefix`; none by
    /// default.
    pub checkpoint_store: Option<Spanned<String>>,
    /// Complete checkpoints kept in the store; default 3.
    pub retain_checkpoints: Option<Spanned<i64>>,
    /// `[job.cluster]`: run the job on several processes.
    pub cluster: Option<Spanned<ClusterSection>>,
}

/// `[job.cluster]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// Required: the lease table, `dynamodb://TABLE`.
    pub leases: Spanned<String>,
    /// Key groups of the windows' state; default 64, fixed for the job's
    /// life.
    pub key_groups: Option<Spanned<i64>>,
    /// The Kinesis stream records are repartitioned through by key group;
    /// required when the job has windows.
    pub shuffle_stream: Option<Spanned<String>>,
    /// Shards of the shuffle stream when kflow creates it; default 4.
    pub shuffle_shards: Option<Spanned<i64>>,
    /// How long a worker's lease outlives its last heartbeat; default 10 s.
    pub failover_timeout: Option<Spanned<String>>,
    /// DynamoDB endpoint URL (an emulator); default the AWS chain.
    pub endpoint: Option<Spanned<String>>,
    /// AWS region of the lease table and the shuffle stream.
    pub region: Option<Spanned<String>>,
}

/// `[sources.NAME]`, by its `type`.
// Built once per job file: the size difference between variants is moot.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum SourceSpec {
    /// `type = "file"`.
    File(FileSourceSpec),
    /// `type = "kinesis"`.
    Kinesis(KinesisSourceSpec),
}

impl SourceSpec {
    /// The settings every source type has.
    pub fn common(&self) -> &RecordSpec {
        match self {
            SourceSpec::File(file) => &file.record,
            SourceSpec::Kinesis(kinesis) => &kinesis.record,
        }
    }
}

/// How a source's records are read, whatever its type. Flattened by hand
/// into each source type (serde's `flatten` would lose spans and defeat
/// `deny_unknown_fields`).
#[derive(Debug, Default)]
pub struct RecordSpec {
    /// `format`; only `"json"` for now.
    pub format: Option<Spanned<String>>,
    /// `event_time = { field = "ts" }`.
    pub event_time: Option<Spanned<EventTimeSpec>>,
    /// `watermark = { max_out_of_orderness, idle_timeout }`.
    pub watermark: Option<Spanned<WatermarkSpec>>,
    /// `dedup = { field, within }`.
    pub dedup: Option<Spanned<DedupSpec>>,
}

/// `type = "file"`.
#[derive(Debug)]
pub struct FileSourceSpec {
    /// JSON lines, relative to the job file's folder.
    pub path: Spanned<String>,
    /// Keep tailing at end of file.
    pub follow: Option<Spanned<bool>>,
    /// Format, event time, watermark, dedup.
    pub record: RecordSpec,
}

/// `type = "kinesis"`.
#[derive(Debug)]
pub struct KinesisSourceSpec {
    /// Stream name (exactly one of `stream` and `stream_arn`).
    pub stream: Option<Spanned<String>>,
    /// Stream ARN.
    pub stream_arn: Option<Spanned<String>>,
    /// AWS region.
    pub region: Option<Spanned<String>>,
    /// Endpoint URL (an emulator).
    pub endpoint: Option<Spanned<String>>,
    /// `latest`, `trim_horizon` or an RFC 3339 time.
    pub start_at: Option<Spanned<String>>,
    /// `latest` or an RFC 3339 time.
    pub stop_at: Option<Spanned<String>>,
    /// `fail` or `trim_horizon`.
    pub on_expired: Option<Spanned<String>>,
    /// `polling` or `efo`.
    pub reader: Option<Spanned<String>>,
    /// The enhanced fan-out consumer's name (`reader = "efo"`).
    pub consumer_name: Option<Spanned<String>>,
    /// Format, event time, watermark, dedup.
    pub record: RecordSpec,
}

/// `event_time = { field = "ts" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventTimeSpec {
    /// The field holding the time.
    pub field: Spanned<String>,
}

/// `watermark = { max_out_of_orderness = "5s", idle_timeout = "30s" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatermarkSpec {
    /// A duration; default `0s`.
    pub max_out_of_orderness: Option<Spanned<String>>,
    /// A duration; default none.
    pub idle_timeout: Option<Spanned<String>>,
}

/// `dedup = { field = "event_id", within = "10m" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupSpec {
    /// The id field.
    pub field: Spanned<String>,
    /// A duration.
    pub within: Spanned<String>,
}

/// `[filters.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterSpec {
    /// What it reads.
    pub input: Spanned<StringOrList>,
    /// The CEL condition.
    #[serde(rename = "where")]
    pub condition: Spanned<String>,
}

/// `[windows.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    /// What it reads.
    pub input: Spanned<StringOrList>,
    /// Key fields; none: one global group.
    pub key: Option<Spanned<StringOrList>>,
    /// `tumbling = SIZE`.
    pub tumbling: Option<Spanned<String>>,
    /// `sliding = { size, slide }`.
    pub sliding: Option<Spanned<SlidingSpec>>,
    /// `session = { gap, max_duration }`.
    pub session: Option<Spanned<SessionSpec>>,
    /// A duration; default `0s`.
    pub allowed_lateness: Option<Spanned<String>>,
    /// Output column name -> aggregate call, in file order.
    #[serde(default)]
    pub aggregates: Option<Spanned<Aggregates>>,
}

/// `sliding = { size = "5m", slide = "1m" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlidingSpec {
    /// Window size.
    pub size: Spanned<String>,
    /// Distance between window starts.
    pub slide: Spanned<String>,
}

/// `session = { gap = "30m", max_duration = "1d" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSpec {
    /// Inactivity that closes a session.
    pub gap: Spanned<String>,
    /// Sessions are cut at multiples of this since the epoch (optional).
    pub max_duration: Option<Spanned<String>>,
}

/// `[sinks.NAME]`, by its `type`.
#[derive(Debug)]
pub enum SinkSpec {
    /// `type = "file"`.
    File(FileSinkSpec),
    /// `type = "stdout"`.
    Stdout(StdoutSinkSpec),
    /// `type = "kinesis"`.
    Kinesis(KinesisSinkSpec),
    /// `type = "s3"`.
    S3(S3SinkSpec),
}

impl SinkSpec {
    /// What the sink reads.
    pub fn input(&self) -> &Spanned<StringOrList> {
        match self {
            SinkSpec::File(sink) => &sink.input,
            SinkSpec::Stdout(sink) => &sink.input,
            SinkSpec::Kinesis(sink) => &sink.input,
            SinkSpec::S3(sink) => &sink.input,
        }
    }
}

/// `type = "file"` sink.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkSpec {
    /// Checked by [`read`]; kept so `deny_unknown_fields` accepts it.
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    /// What it reads.
    pub input: Spanned<StringOrList>,
    /// Output file, relative to the job file's folder.
    pub path: Spanned<String>,
}

/// `type = "stdout"` sink.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutSinkSpec {
    /// Checked by [`read`]; kept so `deny_unknown_fields` accepts it.
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    /// What it reads.
    pub input: Spanned<StringOrList>,
}

/// `type = "kinesis"` sink.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KinesisSinkSpec {
    /// Checked by [`read`]; kept so `deny_unknown_fields` accepts it.
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    /// What it reads.
    pub input: Spanned<StringOrList>,
    /// Stream name.
    pub stream: Spanned<String>,
    /// AWS region.
    pub region: Option<Spanned<String>>,
    /// Endpoint URL.
    pub endpoint: Option<Spanned<String>>,
}

/// `type = "s3"` sink.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3SinkSpec {
    /// Checked by [`read`]; kept so `deny_unknown_fields` accepts it.
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    /// What it reads.
    pub input: Spanned<StringOrList>,
    /// `s3://bucket/prefix`.
    pub path: Spanned<String>,
    /// `"gzip"` or `"none"` (default).
    pub compression: Option<Spanned<String>>,
}

/// `input = "a"` or `input = ["a", "b"]` (likewise `key`).
#[derive(Debug, Clone, PartialEq)]
pub enum StringOrList {
    /// One string; its span is the enclosing `Spanned`'s.
    One(String),
    /// A list, each entry with its own span.
    List(Vec<Spanned<String>>),
}

impl StringOrList {
    /// The entries with their spans (`outer` is the span of the whole value).
    pub fn entries(&self, outer: std::ops::Range<usize>) -> Vec<(String, std::ops::Range<usize>)> {
        match self {
            StringOrList::One(one) => vec![(one.clone(), outer)],
            StringOrList::List(list) => list
                .iter()
                .map(|entry| (entry.get_ref().clone(), entry.span()))
                .collect(),
        }
    }
}

impl<'de> Deserialize<'de> for StringOrList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StringOrListVisitor;

        impl<'de> Visitor<'de> for StringOrListVisitor {
            type Value = StringOrList;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or a list of strings")
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<StringOrList, E> {
                Ok(StringOrList::One(value.to_string()))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StringOrList, A::Error> {
                let mut list = Vec::new();
                while let Some(entry) = seq.next_element::<Spanned<String>>()? {
                    list.push(entry);
                }
                Ok(StringOrList::List(list))
            }
        }

        deserializer.deserialize_any(StringOrListVisitor)
    }
}

/// `[windows.NAME.aggregates]` or `aggregates = { ... }`: output column
/// name and aggregate call, in file order.
#[derive(Debug, Default)]
pub struct Aggregates(pub Vec<(Spanned<String>, Spanned<String>)>);

impl<'de> Deserialize<'de> for Aggregates {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AggregatesVisitor;

        impl<'de> Visitor<'de> for AggregatesVisitor {
            type Value = Aggregates;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a table of `name = \"function(field)\"`")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Aggregates, A::Error> {
                let mut entries = Vec::new();
                while let Some(name) = map.next_key::<Spanned<String>>()? {
                    entries.push((name, map.next_value::<Spanned<String>>()?));
                }
                Ok(Aggregates(entries))
            }
        }

        deserializer.deserialize_map(AggregatesVisitor)
    }
}
