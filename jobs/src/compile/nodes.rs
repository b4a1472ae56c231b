//! Compiling the `[job]` table, sources and sinks: paths resolved against
//! the job file's folder, durations and times typed, defaults filled in.

use std::net::SocketAddr;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use super::Ctx;
use crate::duration::millis;
use crate::plan::{
    ConnectorPlan, DedupPlan, FileSourcePlan, KinesisReader, KinesisSourcePlan, OnExpired,
    SinkPlan, SourcePlan, StartAt, StopAt,
};
use crate::size::parse_size;
use crate::spec::{JobSection, KinesisSourceSpec, RecordSpec, SinkSpec, SourceSpec, Spanned};

/// `[job]`, resolved.
pub(crate) struct JobSettings {
    pub(crate) name: String,
    pub(crate) state_dir: PathBuf,
    pub(crate) dead_letter_path: PathBuf,
    pub(crate) checkpoint_interval: Duration,
    pub(crate) state_memory_bytes: u64,
    pub(crate) metrics: Option<SocketAddr>,
    pub(crate) checkpoint_store: Option<String>,
    pub(crate) retain_checkpoints: usize,
}

const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(10);
const DEFAULT_STATE_MEMORY: u64 = 256 << 20;
const DEFAULT_RETAIN_CHECKPOINTS: usize = 3;

pub(crate) fn compile_job(ctx: &mut Ctx<'_>, job: Option<&Spanned<JobSection>>) -> JobSettings {
    let Some(job) = job.map(Spanned::get_ref) else {
        return JobSettings {
            name: String::new(),
            state_dir: ctx.base_dir.join(".kflow"),
            dead_letter_path: ctx.base_dir.join(".kflow").join("dead-letter.jsonl"),
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
            state_memory_bytes: DEFAULT_STATE_MEMORY,
            metrics: None,
            checkpoint_store: None,
            retain_checkpoints: DEFAULT_RETAIN_CHECKPOINTS,
        };
    };
    let name = job.name.get_ref().clone();
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !valid {
        ctx.error(
            job.name.span(),
            format!("invalid job name `{name}`: use lowercase letters, digits, `_` and `-`"),
        );
    }
    let state_dir = job
        .state_dir
        .as_ref()
        .and_then(|dir| ctx.path(dir))
        .unwrap_or_else(|| ctx.base_dir.join(".kflow").join(&name));
    let dead_letter_path = job
        .dead_letter
        .as_ref()
        .and_then(|path| ctx.path(path))
        .unwrap_or_else(|| state_dir.join("dead-letter.jsonl"));
    let checkpoint_interval = job
        .checkpoint_interval
        .as_ref()
        .and_then(|d| ctx.positive_duration(d, "`checkpoint_interval`"))
        .unwrap_or(DEFAULT_CHECKPOINT_INTERVAL);
    let state_memory_bytes = match &job.state_memory {
        None => DEFAULT_STATE_MEMORY,
        Some(size) => match parse_size(size.get_ref()) {
            Ok(0) => {
                ctx.error(size.span(), "`state_memory` must be more than 0");
                DEFAULT_STATE_MEMORY
            }
            Ok(bytes) => bytes,
            Err(message) => {
                ctx.error(size.span(), message);
                DEFAULT_STATE_MEMORY
            }
        },
    };
    let metrics =
        job.metrics
            .as_ref()
            .and_then(|addr| match addr.get_ref().parse::<SocketAddr>() {
                Ok(parsed) => Some(parsed),
                Err(_) => {
                    ctx.error(
                        addr.span(),
                        format!(
                            "invalid `metrics` address `{}`: write IP:PORT, like `127.0.0.1:9464`",
                            addr.get_ref()
                        ),
                    );
                    None
                }
            });
    let checkpoint_store = job.checkpoint_store.as_ref().and_then(|url| {
        if s3_url_valid(url.get_ref()) {
            Some(url.get_ref().clone())
        } else {
            ctx.error(
                url.span(),
                format!(
                    "invalid `checkpoint_store` `{}`: write s3://BUCKET/PREFIX",
                    url.get_ref()
                ),
            );
            None
        }
    });
    let retain_checkpoints = match &job.retain_checkpoints {
        None => DEFAULT_RETAIN_CHECKPOINTS,
        Some(n) if *n.get_ref() >= 1 => *n.get_ref() as usize,
        Some(n) => {
            ctx.error(n.span(), "`retain_checkpoints` must be at least 1");
            DEFAULT_RETAIN_CHECKPOINTS
        }
    };
    JobSettings {
        name,
        state_dir,
        dead_letter_path,
        checkpoint_interval,
        state_memory_bytes,
        metrics,
        checkpoint_store,
        retain_checkpoints,
    }
}

/// Whether `url` is `s3://BUCKET[/PREFIX]` with a bucket.
pub(crate) fn s3_url_valid(url: &str) -> bool {
    url.strip_prefix("s3://")
        .is_some_and(|rest| !rest.split('/').next().unwrap_or("").is_empty())
}

/// `reader` and `consumer_name`; `None` after reporting an error.
fn kinesis_reader(ctx: &mut Ctx<'_>, kinesis: &KinesisSourceSpec) -> Option<KinesisReader> {
    let efo = match &kinesis.reader {
        None => false,
        Some(value) => match value.get_ref().as_str() {
            "polling" => false,
            "efo" => true,
            other => {
                ctx.error(
                    value.span(),
                    format!("invalid `reader` value `{other}`, expected `polling` or `efo` (enhanced fan-out)"),
                );
                return None;
            }
        },
    };
    let consumer_name = match &kinesis.consumer_name {
        None => None,
        Some(name) if !efo => {
            ctx.error(
                name.span(),
                "`consumer_name` names an enhanced fan-out consumer: it needs `reader = \"efo\"`",
            );
            return None;
        }
        Some(name) => {
            let text = name.get_ref();
            let valid = (1..=128).contains(&text.len())
                && text
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
            if !valid {
                ctx.error(
                    name.span(),
                    format!("invalid `consumer_name` `{text}`: use 1 to 128 letters, digits, `_`, `.` and `-` (the Kinesis consumer name rule)"),
                );
                return None;
            }
            Some(text.clone())
        }
    };
    Some(if efo {
        KinesisReader::Efo { consumer_name }
    } else {
        KinesisReader::Polling
    })
}

/// Compiles a source; `None` if it had errors (all reported). The
/// projection is filled in once the whole DAG is known.
pub(crate) fn compile_source(
    ctx: &mut Ctx<'_>,
    name_span: Range<usize>,
    spec: &SourceSpec,
) -> Option<SourcePlan> {
    let errors_before = ctx.diagnostics.len();
    let connector = match spec {
        SourceSpec::File(file) => ctx.path(&file.path).map(|path| {
            ConnectorPlan::File(FileSourcePlan {
                path,
                follow: file.follow.as_ref().is_some_and(|f| *f.get_ref()),
                turns: Vec::new(),
            })
        }),
        SourceSpec::Kinesis(kinesis) => {
            let stream = match (&kinesis.stream, &kinesis.stream_arn) {
                (None, None) => {
                    ctx.error(
                        name_span,
                        "a kinesis source needs `stream` (the stream name) or `stream_arn`",
                    );
                    None
                }
                (Some(_), Some(arn)) => {
                    ctx.error(arn.span(), "set either `stream` or `stream_arn`, not both");
                    None
                }
                (Some(stream), None) => ctx.non_empty(stream, "`stream`").map(|s| (s, false)),
                (None, Some(arn)) => {
                    if arn.get_ref().starts_with("arn:") {
                        Some((arn.get_ref().clone(), true))
                    } else {
                        ctx.error(
                            arn.span(),
                            "`stream_arn` must be an ARN, like `arn:aws:kinesis:us-east-1:123456789012:stream/clicks`",
                        );
                        None
                    }
                }
            };
            let region = kinesis
                .region
                .as_ref()
                .and_then(|r| ctx.non_empty(r, "`region`"));
            let endpoint = kinesis.endpoint.as_ref().and_then(|e| ctx.endpoint(e));
            let start_at = match &kinesis.start_at {
                None => Some(StartAt::Latest),
                Some(at) => match at.get_ref().as_str() {
                    "latest" => Some(StartAt::Latest),
                    "trim_horizon" => Some(StartAt::TrimHorizon),
                    other => match rfc3339_millis(other) {
                        Some(ms) => Some(StartAt::Timestamp(ms)),
                        None => {
                            ctx.error(
                                at.span(),
                                format!("invalid `start_at` value `{other}`: expected `latest`, `trim_horizon` or an RFC 3339 time like `2026-01-01T00:00:00Z`"),
                            );
                            None
                        }
                    },
                },
            };
            let stop_at = match &kinesis.stop_at {
                None => None,
                Some(at) => match at.get_ref().as_str() {
                    "latest" => Some(StopAt::Latest),
                    other => match rfc3339_millis(other) {
                        Some(ms) => Some(StopAt::Timestamp(ms)),
                        None => {
                            ctx.error(
                                at.span(),
                                format!("invalid `stop_at` value `{other}`: expected `latest` or an RFC 3339 time like `2026-01-01T00:00:00Z`"),
                            );
                            None
                        }
                    },
                },
            };
            let on_expired = match &kinesis.on_expired {
                None => Some(OnExpired::Fail),
                Some(value) => match value.get_ref().as_str() {
                    "fail" => Some(OnExpired::Fail),
                    "trim_horizon" => Some(OnExpired::TrimHorizon),
                    other => {
                        ctx.error(
                            value.span(),
                            format!("invalid `on_expired` value `{other}`, expected `fail` or `trim_horizon`"),
                        );
                        None
                    }
                },
            };
            let reader = kinesis_reader(ctx, kinesis);
            match (stream, start_at, on_expired, reader) {
                (Some((stream, is_arn)), Some(start_at), Some(on_expired), Some(reader)) => {
                    Some(ConnectorPlan::Kinesis(KinesisSourcePlan {
                        stream,
                        is_arn,
                        region,
                        endpoint,
                        start_at,
                        stop_at,
                        on_expired,
                        reader,
                    }))
                }
                _ => None,
            }
        }
    };
    let record = compile_record(ctx, spec.common());
    match (connector, record) {
        (Some(connector), Some(record)) if ctx.diagnostics.len() == errors_before => {
            Some(SourcePlan {
                connector,
                event_time: record.event_time,
                max_out_of_orderness_ms: record.max_out_of_orderness_ms,
                idle_timeout: record.idle_timeout,
                dedup: record.dedup,
                projection: Vec::new(),
            })
        }
        _ => None,
    }
}

struct RecordPlan {
    event_time: Option<crate::value::FieldId>,
    max_out_of_orderness_ms: i64,
    idle_timeout: Option<Duration>,
    dedup: Option<DedupPlan>,
}

fn compile_record(ctx: &mut Ctx<'_>, record: &RecordSpec) -> Option<RecordPlan> {
    let errors_before = ctx.diagnostics.len();
    if let Some(format) = &record.format {
        if format.get_ref() != "json" {
            ctx.error(
                format.span(),
                format!(
                    "unsupported format `{}`: only `json` is supported for now",
                    format.get_ref()
                ),
            );
        }
    }
    let event_time = record
        .event_time
        .as_ref()
        .and_then(|e| ctx.field(&e.get_ref().field));
    let (max_out_of_orderness_ms, idle_timeout) = match &record.watermark {
        None => (0, None),
        Some(watermark) => {
            let watermark = watermark.get_ref();
            let lag = watermark
                .max_out_of_orderness
                .as_ref()
                .and_then(|d| ctx.duration(d))
                .map_or(0, millis);
            let idle = watermark
                .idle_timeout
                .as_ref()
                .and_then(|d| ctx.positive_duration(d, "`idle_timeout`"));
            (lag, idle)
        }
    };
    let dedup = record.dedup.as_ref().and_then(|dedup| {
        let dedup = dedup.get_ref();
        let field = ctx.field(&dedup.field);
        let within = ctx.positive_duration(&dedup.within, "`within`");
        Some(DedupPlan {
            field: field?,
            within_ms: millis(within?),
        })
    });
    (ctx.diagnostics.len() == errors_before).then_some(RecordPlan {
        event_time,
        max_out_of_orderness_ms,
        idle_timeout,
        dedup,
    })
}

/// Epoch milliseconds of an RFC 3339 time.
pub(crate) fn rfc3339_millis(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// Compiles a sink (its input is resolved by the graph); `None` if it had
/// errors.
pub(crate) fn compile_sink(ctx: &mut Ctx<'_>, spec: &SinkSpec) -> Option<SinkPlan> {
    match spec {
        SinkSpec::Stdout(_) => Some(SinkPlan::Stdout),
        SinkSpec::File(file) => ctx.path(&file.path).map(|path| SinkPlan::File { path }),
        SinkSpec::Kinesis(kinesis) => {
            let stream = ctx.non_empty(&kinesis.stream, "`stream`");
            let region = kinesis
                .region
                .as_ref()
                .and_then(|r| ctx.non_empty(r, "`region`"));
            let endpoint = kinesis.endpoint.as_ref().and_then(|e| ctx.endpoint(e));
            Some(SinkPlan::Kinesis {
                stream: stream?,
                region,
                endpoint,
            })
        }
        SinkSpec::S3(s3) => {
            let path = if s3_url_valid(s3.path.get_ref()) {
                Some(s3.path.get_ref().clone())
            } else {
                ctx.error(
                    s3.path.span(),
                    format!(
                        "invalid S3 path `{}`: write s3://BUCKET/PREFIX",
                        s3.path.get_ref()
                    ),
                );
                None
            };
            let gzip = match s3.compression.as_ref().map(|c| c.get_ref().as_str()) {
                None | Some("none") => false,
                Some("gzip") => true,
                Some(other) => {
                    let span = s3
                        .compression
                        .as_ref()
                        .map(Spanned::span)
                        .unwrap_or_default();
                    ctx.error(
                        span,
                        format!("unknown compression `{other}`: use \"gzip\" or \"none\""),
                    );
                    false
                }
            };
            Some(SinkPlan::S3 { path: path?, gzip })
        }
    }
}
