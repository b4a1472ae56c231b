//! `/metrics`: the run's metrics in the Prometheus text format (0.0.4),
//! built by a `prometheus` [`Collector`] that reads the tasks' atomics at
//! scrape time (the tasks never touch the registry) and written by its
//! `TextEncoder`.
//!
//! Names follow the Prometheus conventions: counters end in `_total`,
//! units are seconds and bytes, timestamps are `_timestamp_seconds`.
//! Every series carries `job`; sources add `source` (and `shard`), windows
//! `node`, sinks `sink`. docs/operations.md lists them all.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, LabelPair, MetricFamily, MetricType};
use prometheus::{Encoder, Registry, TextEncoder};

use crate::dataflow::metrics::buckets::BucketsSnapshot;
use crate::dataflow::metrics::parts::get_time;
use crate::dataflow::metrics::{Metrics, NodeMetrics, ShardStatus, SourceMetrics};

/// Label pairs of one series.
type Labels = Vec<(&'static str, String)>;

/// The content type of [`encode`]'s output.
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// A registry holding the run's collector, every series labelled `job`.
///
/// # Errors
/// Only an invalid job name as a label value (never: names are checked).
pub fn registry(
    metrics: Arc<Metrics>,
    job: &str,
    started: Instant,
) -> Result<Registry, prometheus::Error> {
    let labels = HashMap::from([("job".to_string(), job.to_string())]);
    let registry = Registry::new_custom(None, Some(labels))?;
    registry.register(Box::new(RunCollector {
        metrics,
        started,
        started_ms: chrono::Utc::now().timestamp_millis(),
    }))?;
    Ok(registry)
}

/// Encodes every metric of `registry` in the text format.
///
/// # Errors
/// Only an encoder error (an invalid name, which the collector never
/// makes).
pub fn encode(registry: &Registry) -> Result<Vec<u8>, prometheus::Error> {
    let mut out = Vec::new();
    TextEncoder::new().encode(&registry.gather(), &mut out)?;
    Ok(out)
}

struct RunCollector {
    metrics: Arc<Metrics>,
    started: Instant,
    started_ms: i64,
}

/// Collects families of series.
#[derive(Default)]
struct Out {
    families: Vec<MetricFamily>,
}

/// A counter's value.
trait Count {
    fn as_f64(&self) -> f64;
}

impl Count for u64 {
    fn as_f64(&self) -> f64 {
        *self as f64
    }
}

impl Count for f64 {
    fn as_f64(&self) -> f64 {
        *self
    }
}

fn label_pairs(labels: Labels) -> Vec<LabelPair> {
    labels
        .into_iter()
        .map(|(name, value)| {
            let mut pair = LabelPair::default();
            pair.set_name(name.to_string());
            pair.set_value(value);
            pair
        })
        .collect()
}

impl Out {
    fn family(&mut self, name: &str, help: &str, kind: MetricType, metrics: Vec<proto::Metric>) {
        let mut family = MetricFamily::default();
        family.set_name(name.to_string());
        family.set_help(help.to_string());
        family.set_field_type(kind);
        family.set_metric(metrics);
        self.families.push(family);
    }

    /// `name` ends in `_total`.
    fn counter<N: Count>(&mut self, name: &str, help: &str, series: Vec<(Labels, N)>) {
        let metrics = series
            .into_iter()
            .map(|(labels, value)| {
                let mut counter = proto::Counter::default();
                counter.set_value(value.as_f64());
                let mut metric = proto::Metric::from_label(label_pairs(labels));
                metric.set_counter(counter);
                metric
            })
            .collect();
        self.family(name, help, MetricType::COUNTER, metrics);
    }

    fn gauge(&mut self, name: &str, help: &str, series: Vec<(Labels, f64)>) {
        let metrics = series
            .into_iter()
            .map(|(labels, value)| {
                let mut gauge = proto::Gauge::default();
                gauge.set_value(value);
                let mut metric = proto::Metric::from_label(label_pairs(labels));
                metric.set_gauge(gauge);
                metric
            })
            .collect();
        self.family(name, help, MetricType::GAUGE, metrics);
    }

    /// `scale` converts the observed unit to the exposed one (µs -> s).
    fn histogram(
        &mut self,
        name: &str,
        help: &str,
        scale: f64,
        series: Vec<(Labels, BucketsSnapshot)>,
    ) {
        let metrics = series
            .into_iter()
            .map(|(labels, snapshot)| {
                let buckets = snapshot
                    .cumulative
                    .iter()
                    .filter(|(bound, _)| *bound != u64::MAX)
                    .map(|(bound, count)| {
                        let mut bucket = proto::Bucket::default();
                        bucket.set_upper_bound(*bound as f64 * scale);
                        bucket.set_cumulative_count(*count);
                        bucket
                    })
                    .collect();
                let mut histogram = proto::Histogram::default();
                histogram.set_sample_count(snapshot.count);
                histogram.set_sample_sum(snapshot.sum as f64 * scale);
                histogram.set_bucket(buckets);
                let mut metric = proto::Metric::from_label(label_pairs(labels));
                metric.set_histogram(histogram);
                metric
            })
            .collect();
        self.family(name, help, MetricType::HISTOGRAM, metrics);
    }
}

fn load(value: &AtomicU64) -> u64 {
    value.load(Ordering::Relaxed)
}

fn seconds(ms: i64) -> f64 {
    ms as f64 / 1e3
}

impl Collector for RunCollector {
    /// The series are known only at scrape time: none are declared.
    fn desc(&self) -> Vec<&Desc> {
        Vec::new()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut out = Out::default();
        let now_ms = chrono::Utc::now().timestamp_millis();
        let sources = self.metrics.sources.all();
        encode_sources(&mut out, &sources, now_ms);
        encode_shards(&mut out, &sources, now_ms);
        encode_windows(&mut out, &self.metrics.nodes.all(), now_ms);
        self.encode_sinks(&mut out);
        self.encode_checkpoints(&mut out, now_ms);
        self.encode_process(&mut out);
        out.families
    }
}

fn source_labels(s: &SourceMetrics) -> Labels {
    vec![("source", s.name.clone())]
}

fn encode_sources(out: &mut Out, sources: &[Arc<SourceMetrics>], now_ms: i64) {
    let each = |f: &dyn Fn(&SourceMetrics) -> u64| -> Vec<(Labels, u64)> {
        sources.iter().map(|s| (source_labels(s), f(s))).collect()
    };
    out.counter(
        "kflow_source_records_read_total",
        "Records read by the source (user records after KPL de-aggregation).",
        each(&|s| load(&s.counts.read)),
    );
    out.counter(
        "kflow_source_read_bytes_total",
        "Bytes read by the source.",
        each(&|s| load(&s.counts.bytes)),
    );
    out.histogram(
        "kflow_source_record_size_bytes",
        "Sizes of the records read (Kinesis records before de-aggregation, file lines).",
        1.0,
        sources
            .iter()
            .map(|s| (source_labels(s), s.sizes.snapshot()))
            .collect(),
    );
    let mut outcomes = Vec::new();
    for s in sources {
        let c = s.counts.snapshot();
        let kept = c.decoded.saturating_sub(c.duplicates + c.filtered_out);
        for (outcome, n) in [
            ("kept", kept),
            ("filtered", c.filtered_out),
            ("error", c.errors),
            ("duplicate", c.duplicates),
        ] {
            let mut labels = source_labels(s);
            labels.push(("outcome", outcome.to_string()));
            outcomes.push((labels, n));
        }
    }
    out.counter(
        "kflow_source_records_total",
        "Records by outcome: kept (sent on), filtered, error (dead-letter or .errors), duplicate.",
        outcomes,
    );
    let watermarks: Vec<(Labels, i64)> = sources
        .iter()
        .filter_map(|s| get_time(&s.watermark).map(|w| (source_labels(s), w)))
        .collect();
    out.gauge(
        "kflow_source_watermark_timestamp_seconds",
        "The source's watermark (event time), as a Unix timestamp.",
        watermarks
            .iter()
            .map(|(l, w)| (l.clone(), seconds(*w)))
            .collect(),
    );
    out.gauge(
        "kflow_source_watermark_lag_seconds",
        "Now minus the source's watermark.",
        watermarks
            .into_iter()
            .map(|(l, w)| (l, seconds(now_ms - w)))
            .collect(),
    );
    let flag = |f: &dyn Fn(&SourceMetrics) -> bool| -> Vec<(Labels, f64)> {
        sources
            .iter()
            .map(|s| (source_labels(s), if f(s) { 1.0 } else { 0.0 }))
            .collect()
    };
    out.gauge(
        "kflow_source_idle",
        "1 while the source told its consumers it is idle (idle_timeout passed).",
        flag(&|s| s.idle.load(Ordering::Relaxed)),
    );
    out.gauge(
        "kflow_source_backpressured",
        "1 while a consumer's channel is full: the source waits for a slower window or sink.",
        flag(&|s| s.backpressured.load(Ordering::Relaxed)),
    );
    out.gauge(
        "kflow_source_last_record_timestamp_seconds",
        "When the source last read a record, as a Unix timestamp.",
        sources
            .iter()
            .filter_map(|s| get_time(&s.last_data_ms).map(|t| (source_labels(s), seconds(t))))
            .collect(),
    );
    encode_kinesis_calls(out, sources)
}

fn encode_kinesis_calls(out: &mut Out, sources: &[Arc<SourceMetrics>]) {
    let kinesis: Vec<&Arc<SourceMetrics>> =
        sources.iter().filter(|s| s.kind == "kinesis").collect();
    out.histogram(
        "kflow_kinesis_get_records_duration_seconds",
        "GetRecords call durations, retries included (the count is the number of calls).",
        1e-6,
        kinesis
            .iter()
            .map(|s| (source_labels(s), s.calls.snapshot()))
            .collect(),
    );
    out.counter(
        "kflow_kinesis_get_records_throttles_total",
        "Read calls retried after throttling: GetRecords, or SubscribeToShard with reader = efo.",
        kinesis
            .iter()
            .map(|s| (source_labels(s), load(&s.throttles)))
            .collect(),
    );
    out.counter(
        "kflow_kinesis_get_records_retries_total",
        "GetRecords calls retried after a transient fault.",
        kinesis
            .iter()
            .map(|s| (source_labels(s), load(&s.retries)))
            .collect(),
    );
    out.histogram(
        "kflow_kinesis_read_delay_seconds",
        "Time from each record's ApproximateArrivalTimestamp to kflow receiving it (polling interval or subscription push, plus any backlog).",
        1e-6,
        kinesis
            .iter()
            .map(|s| (source_labels(s), s.read_delays.snapshot()))
            .collect(),
    );
    out.counter(
        "kflow_kinesis_subscriptions_total",
        "Enhanced fan-out subscriptions started: one per shard, then one per renewal.",
        kinesis
            .iter()
            .map(|s| (source_labels(s), load(&s.subscriptions)))
            .collect(),
    );
    out.counter(
        "kflow_kinesis_subscription_failures_total",
        "Enhanced fan-out subscriptions refused, broken or silent (each followed by a new one).",
        kinesis
            .iter()
            .map(|s| (source_labels(s), load(&s.subscription_failures)))
            .collect(),
    );
    let mut states = Vec::new();
    for s in &kinesis {
        let shards = s.shards();
        for state in ShardStatus::ALL {
            let n = shards.values().filter(|m| m.state == state).count();
            let mut labels = source_labels(s);
            labels.push(("state", state.as_str().to_string()));
            states.push((labels, n as f64));
        }
    }
    out.gauge(
        "kflow_kinesis_shards",
        "Shards by state: reading, waiting (for a parent), finished, stopped.",
        states,
    )
}

fn encode_shards(out: &mut Out, sources: &[Arc<SourceMetrics>], now_ms: i64) {
    let mut records = Vec::new();
    let mut share = Vec::new();
    let mut behind = Vec::new();
    let mut arrival_age = Vec::new();
    let mut watermark = Vec::new();
    for s in sources {
        let shards = s.shards();
        let total: u64 = shards.values().map(|m| m.records).sum();
        for (id, m) in shards {
            let labels = vec![("source", s.name.clone()), ("shard", id)];
            records.push((labels.clone(), m.records));
            if total > 0 {
                share.push((labels.clone(), m.records as f64 / total as f64));
            }
            if let Some(b) = m.behind_ms {
                behind.push((labels.clone(), seconds(b)));
            }
            if let Some(a) = m.arrival_ms {
                arrival_age.push((labels.clone(), seconds(now_ms - a)));
            }
            if let Some(w) = m.watermark {
                watermark.push((labels, seconds(w)));
            }
        }
    }
    out.counter(
        "kflow_shard_records_read_total",
        "Records read from the shard in this run.",
        records,
    );
    out.gauge(
        "kflow_shard_records_share",
        "The shard's share of its source's records in this run (a hot shard is near 1).",
        share,
    );
    out.gauge(
        "kflow_shard_millis_behind_latest_seconds",
        "MillisBehindLatest of the shard's last GetRecords call, in seconds.",
        behind,
    );
    out.gauge(
        "kflow_shard_arrival_age_seconds",
        "Now minus the ApproximateArrivalTimestamp of the last record read from the shard.",
        arrival_age,
    );
    out.gauge(
        "kflow_shard_watermark_timestamp_seconds",
        "The shard's watermark (its largest event time less the allowed out-of-orderness).",
        watermark,
    )
}

fn encode_windows(out: &mut Out, parts: &[Arc<NodeMetrics>], now_ms: i64) {
    let mut nodes: Vec<&str> = parts.iter().map(|p| p.node.as_str()).collect();
    nodes.dedup();
    let sum = |f: &dyn Fn(&NodeMetrics) -> u64| -> Vec<(Labels, u64)> {
        nodes
            .iter()
            .map(|n| {
                let total = parts.iter().filter(|p| p.node == *n).map(|p| f(p)).sum();
                (vec![("node", n.to_string())], total)
            })
            .collect()
    };
    let as_f64 = |v: Vec<(Labels, u64)>| v.into_iter().map(|(l, n)| (l, n as f64)).collect();
    out.counter(
        "kflow_window_records_in_total",
        "Records the window took in.",
        sum(&|p| load(&p.records_in)),
    );
    out.counter(
        "kflow_window_rows_emitted_total",
        "Result rows the window emitted.",
        sum(&|p| load(&p.counts.rows_emitted)),
    );
    out.counter(
        "kflow_window_late_records_total",
        "Records that came after all their windows fired.",
        sum(&|p| load(&p.counts.late)),
    );
    out.counter(
        "kflow_window_late_dropped_total",
        "Late records no .late consumer took.",
        sum(&|p| load(&p.counts.late_dropped)),
    );
    out.gauge(
        "kflow_window_open_windows",
        "Windows (panes, for sliding windows) holding state.",
        as_f64(sum(&|p| load(&p.open_windows))),
    );
    out.gauge(
        "kflow_window_open_partials",
        "Keyed partial aggregates held in memory.",
        as_f64(sum(&|p| load(&p.partials))),
    );
    out.gauge(
        "kflow_window_state_memory_bytes",
        "Estimated bytes of window state in memory.",
        as_f64(sum(&|p| load(&p.state_bytes))),
    );
    out.gauge(
        "kflow_window_state_budget_bytes",
        "The memory budget of the window's state (state_memory shared by its partitions).",
        as_f64(sum(&|p| load(&p.budget_bytes))),
    );
    out.counter(
        "kflow_window_evictions_total",
        "Times a partition evicted its clean state to RocksDB.",
        sum(&|p| load(&p.evictions)),
    );
    out.counter(
        "kflow_window_spilled_reads_total",
        "Keys read back from RocksDB after an eviction or a restore.",
        sum(&|p| load(&p.spilled_reads)),
    );
    let watermarks: Vec<(Labels, i64)> = nodes
        .iter()
        .filter_map(|n| {
            parts
                .iter()
                .filter(|p| p.node == *n)
                .map(|p| get_time(&p.watermark))
                .min()
                .flatten()
                .map(|w| (vec![("node", n.to_string())], w))
        })
        .collect();
    out.gauge(
        "kflow_window_watermark_timestamp_seconds",
        "The window's watermark (lowest over its partitions), as a Unix timestamp.",
        watermarks
            .iter()
            .map(|(l, w)| (l.clone(), seconds(*w)))
            .collect(),
    );
    out.gauge(
        "kflow_window_watermark_lag_seconds",
        "Now minus the window's watermark.",
        watermarks
            .into_iter()
            .map(|(l, w)| (l, seconds(now_ms - w)))
            .collect(),
    )
}

impl RunCollector {
    fn encode_sinks(&self, out: &mut Out) {
        let sinks = self.metrics.sinks.all();
        let labels = |name: &str| vec![("sink", name.to_string())];
        let each = |f: &dyn Fn(&crate::dataflow::metrics::SinkMetrics) -> u64| {
            sinks.iter().map(|s| (labels(&s.name), f(s))).collect()
        };
        out.counter(
            "kflow_sink_rows_written_total",
            "Rows written.",
            each(&|s| load(&s.rows)),
        );
        out.counter(
            "kflow_sink_written_bytes_total",
            "Bytes written.",
            each(&|s| load(&s.bytes)),
        );
        out.histogram(
            "kflow_sink_commit_duration_seconds",
            "Durations of the sink's commits at checkpoints (flush, fsync, puts).",
            1e-6,
            sinks
                .iter()
                .map(|s| (labels(&s.name), s.commits.snapshot()))
                .collect(),
        );
        out.counter(
            "kflow_sink_put_throttles_total",
            "Kinesis sink: records and calls retried after throttling.",
            each(&|s| load(&s.throttles)),
        );
        out.counter(
            "kflow_sink_put_retries_total",
            "Kinesis sink: records and calls retried after a transient fault.",
            each(&|s| load(&s.retries)),
        );
        out.histogram(
            "kflow_end_to_end_latency_seconds",
            "From reading the input that fired a result row to writing the row.",
            1e-6,
            sinks
                .iter()
                .map(|s| (labels(&s.name), s.latency.snapshot()))
                .collect(),
        );
        out.gauge(
            "kflow_end_to_end_latency_max_seconds",
            "The largest end-to-end latency of a row written in this run.",
            sinks
                .iter()
                .map(|s| (labels(&s.name), load(&s.latency_max_us) as f64 / 1e6))
                .collect(),
        )
    }

    fn encode_checkpoints(&self, out: &mut Out, now_ms: i64) {
        let c = &self.metrics.checkpoints;
        let job = || Labels::new();
        out.counter(
            "kflow_checkpoints_total",
            "Checkpoints committed in this run.",
            vec![(job(), load(&c.completed))],
        );
        out.counter(
            "kflow_checkpoint_failures_total",
            "Checkpoints that failed to be written.",
            vec![(job(), load(&c.failures))],
        );
        out.gauge(
            "kflow_checkpoint_last_duration_seconds",
            "From the last checkpoint's request to its commit.",
            vec![(job(), load(&c.last_duration_us) as f64 / 1e6)],
        );
        out.gauge(
            "kflow_checkpoint_last_size_bytes",
            "Bytes of state the last checkpoint wrote.",
            vec![(job(), load(&c.last_bytes) as f64)],
        );
        let age = super::report::checkpoint_age(&self.metrics, self.started.elapsed(), now_ms);
        out.gauge(
            "kflow_checkpoint_age_seconds",
            "Seconds since the last completed checkpoint (since the start before the first).",
            vec![(job(), age.as_secs_f64())],
        );
        out.gauge(
            "kflow_checkpoint_interval_seconds",
            "The periodic checkpoint interval (0: off).",
            vec![(job(), load(&c.interval_ms) as f64 / 1e3)],
        );
        out.gauge(
            "kflow_checkpoint_last_id",
            "The last checkpoint committed locally.",
            vec![(job(), load(&c.last_id) as f64)],
        );
        out.gauge(
            "kflow_checkpoint_durable_id",
            "The newest checkpoint complete in the checkpoint store (0: none yet).",
            vec![(job(), load(&c.durable_id) as f64)],
        );
        out.counter(
            "kflow_checkpoint_uploads_total",
            "Checkpoints uploaded to the checkpoint store.",
            vec![(job(), load(&c.uploads))],
        );
        out.counter(
            "kflow_checkpoint_upload_failures_total",
            "Checkpoint uploads that failed (the next checkpoint uploads what is missing).",
            vec![(job(), load(&c.upload_failures))],
        );
        out.counter(
            "kflow_checkpoint_uploaded_bytes_total",
            "Bytes uploaded to the checkpoint store.",
            vec![(job(), load(&c.uploaded_bytes))],
        );
        out.gauge(
            "kflow_checkpoint_last_upload_size_bytes",
            "Bytes the last upload sent: the SST files the store lacked, the small files, the manifest.",
            vec![(job(), load(&c.last_upload_bytes) as f64)],
        );
        let ready = super::report::readiness(&self.metrics, self.started.elapsed(), now_ms);
        out.gauge(
            "kflow_ready",
            "1 when /readyz answers 200.",
            vec![(job(), if ready.is_ok() { 1.0 } else { 0.0 })],
        )
    }

    fn encode_process(&self, out: &mut Out) {
        let usage = super::process::usage();
        if let Some(rss) = usage.rss_bytes {
            out.gauge(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                vec![(Labels::new(), rss as f64)],
            );
        }
        if let Some(cpu) = usage.cpu_seconds {
            out.counter(
                "process_cpu_seconds_total",
                "Total user and system CPU time spent in seconds.",
                vec![(Labels::new(), cpu)],
            );
        }
        out.gauge(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch in seconds.",
            vec![(Labels::new(), seconds(self.started_ms))],
        )
    }
}
