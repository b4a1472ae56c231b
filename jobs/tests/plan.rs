//! Valid jobs compile into the expected plan: topological order, resolved
//! inputs, defaults, field table and projections. And no input
//! whatsoever makes compiling panic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kflow_jobs::{
    compile_str, AggregateFunction, AggregatePlan, ConnectorPlan, FieldId, JobPlan, NodeKind,
    OnExpired, Port, SinkPlan, StartAt, StopAt, StreamRef, Value, WindowKind,
};
use proptest::prelude::*;

/// The design document's example job, with both sources used.
const CHECKOUT_HEALTH: &str = r#"
[job]
name = "checkout-health"
checkpoint_interval = "5s"
state_memory = "64MiB"

[sources.clicks]
type = "kinesis"
stream = "clickstream"
region = "us-east-1"
endpoint = "http://127.0.0.1:4567"
start_at = "trim_horizon"
stop_at = "latest"
format = "json"
event_time = { field = "ts" }
watermark = { max_out_of_orderness = "5s", idle_timeout = "30s" }
dedup = { field = "event_id", within = "10m" }

[sources.replay]
type = "file"
path = "data/clicks.jsonl"
follow = false
event_time = { field = "ts" }

[filters.checkouts]
input = ["clicks", "replay"]
where = "type != 'product_view' && amount > 0"

[windows.per_user]
input = "checkouts"
key = ["user_id"]
tumbling = "1m"
allowed_lateness = "0s"

[windows.per_user.aggregates]
events = "count()"
revenue = "sum(amount)"
avg_amount = "avg(amount)"
max_amount = "max(amount)"
p99_amount = "percentile(amount, 0.99)"
users = "count_distinct(user_id)"

[sinks.dashboard]
input = "per_user"
type = "file"
path = "out/per_user.jsonl"

[sinks.late]
input = "per_user.late"
type = "file"
path = "out/late.jsonl"
"#;

fn compile(text: &str) -> JobPlan {
    match compile_str(text, Path::new("jobs/job.toml")) {
        Ok(plan) => plan,
        Err(error) => panic!("{}", error.render()),
    }
}

fn names(plan: &JobPlan) -> Vec<&str> {
    plan.nodes.iter().map(|n| n.name.as_str()).collect()
}

fn field(plan: &JobPlan, dotted: &str) -> FieldId {
    let index = plan
        .fields
        .iter()
        .position(|f| f.dotted == dotted)
        .unwrap_or_else(|| panic!("no field {dotted}"));
    FieldId(index as u32)
}

fn fields(plan: &JobPlan, dotted: &[&str]) -> Vec<FieldId> {
    let mut ids: Vec<FieldId> = dotted.iter().map(|d| field(plan, d)).collect();
    ids.sort();
    ids
}

fn id(plan: &JobPlan, name: &str) -> kflow_jobs::NodeId {
    let index = plan.nodes.iter().position(|n| n.name == name).unwrap();
    kflow_jobs::NodeId(index as u32)
}

#[test]
fn design_example_compiles_in_topological_order() {
    let plan = compile(CHECKOUT_HEALTH);
    assert_eq!(plan.name, "checkout-health");
    assert_eq!(
        names(&plan),
        [
            "clicks",
            "replay",
            "checkouts",
            "per_user",
            "dashboard",
            "late"
        ]
    );
    for (i, node) in plan.nodes.iter().enumerate() {
        for input in &node.inputs {
            assert!(input.node.index() < i, "{} reads a later node", node.name);
        }
    }
    assert_eq!(
        plan.node(id(&plan, "checkouts")).inputs,
        [
            StreamRef {
                node: id(&plan, "clicks"),
                port: Port::Main
            },
            StreamRef {
                node: id(&plan, "replay"),
                port: Port::Main
            },
        ]
    );
    assert_eq!(
        plan.node(id(&plan, "late")).inputs,
        [StreamRef {
            node: id(&plan, "per_user"),
            port: Port::Late
        }]
    );
    let late_readers: Vec<_> = plan
        .consumers(StreamRef {
            node: id(&plan, "per_user"),
            port: Port::Late,
        })
        .map(|(_, n)| n.name.as_str())
        .collect();
    assert_eq!(late_readers, ["late"]);
}

#[test]
fn job_settings_have_defaults_and_resolved_paths() {
    let plan = compile(CHECKOUT_HEALTH);
    assert_eq!(plan.job_path, PathBuf::from("jobs/job.toml"));
    assert_eq!(plan.state_dir, PathBuf::from("jobs/.kflow/checkout-health"));
    assert_eq!(
        plan.dead_letter_path,
        PathBuf::from("jobs/.kflow/checkout-health/dead-letter.jsonl")
    );
    assert_eq!(plan.checkpoint_interval, Duration::from_secs(5));
    assert_eq!(plan.state_memory_bytes, 64 << 20);

    let minimal = compile(
        "[job]\nname = \"m\"\ndead_letter = \"/var/dead.jsonl\"\nstate_dir = \"state\"\n\n[sources.s]\ntype = \"file\"\npath = \"in.jsonl\"\n",
    );
    assert_eq!(minimal.checkpoint_interval, Duration::from_secs(10));
    assert_eq!(minimal.state_memory_bytes, 256 << 20);
    assert_eq!(minimal.state_dir, PathBuf::from("jobs/state"));
    assert_eq!(minimal.dead_letter_path, PathBuf::from("/var/dead.jsonl"));
}

#[test]
fn cluster_settings_have_defaults() {
    let kinesis = "\n[sources.s]\ntype = \"kinesis\"\nstream = \"clicks\"\n";
    let store = "[job]\nname = \"c\"\ncheckpoint_store = \"s3://b/p\"\n";
    assert!(compile(&format!("{store}{kinesis}")).cluster.is_none());
    let plan = compile(&format!(
        "{store}[job.cluster]\nleases = \"dynamodb://kflow-leases\"\n{kinesis}"
    ));
    let cluster = plan.cluster.expect("a cluster");
    assert_eq!(cluster.leases_table, "kflow-leases");
    assert_eq!(cluster.key_groups, 64);
    assert_eq!(cluster.shuffle_shards, 4);
    assert_eq!(cluster.shuffle_stream, None);
    assert_eq!(cluster.failover_timeout, Duration::from_secs(10));
    let plan = compile(&format!(
        "{store}[job.cluster]\nleases = \"dynamodb://t-1\"\nkey_groups = 2\n\
         shuffle_stream = \"clicks-shuffle\"\nfailover_timeout = \"30s\"\n{kinesis}"
    ));
    let cluster = plan.cluster.expect("a cluster");
    assert_eq!(cluster.key_groups, 2);
    assert_eq!(cluster.shuffle_shards, 2, "never more shards than groups");
    assert_eq!(cluster.shuffle_stream.as_deref(), Some("clicks-shuffle"));
    assert_eq!(cluster.failover_timeout, Duration::from_secs(30));
}

#[test]
fn sources_are_typed() {
    let plan = compile(CHECKOUT_HEALTH);
    let NodeKind::Source(clicks) = &plan.node(id(&plan, "clicks")).kind else {
        panic!("clicks is a source");
    };
    let ConnectorPlan::Kinesis(kinesis) = &clicks.connector else {
        panic!("clicks reads kinesis");
    };
    assert_eq!(kinesis.stream, "clickstream");
    assert!(!kinesis.is_arn);
    assert_eq!(kinesis.region.as_deref(), Some("us-east-1"));
    assert_eq!(kinesis.endpoint.as_deref(), Some("http://127.0.0.1:4567"));
    assert_eq!(kinesis.start_at, StartAt::TrimHorizon);
    assert_eq!(kinesis.stop_at, Some(StopAt::Latest));
    assert_eq!(kinesis.on_expired, OnExpired::Fail);
    assert_eq!(clicks.event_time, Some(field(&plan, "ts")));
    assert_eq!(clicks.max_out_of_orderness_ms, 5_000);
    assert_eq!(clicks.idle_timeout, Some(Duration::from_secs(30)));
    let dedup = clicks.dedup.as_ref().unwrap();
    assert_eq!(
        (dedup.field, dedup.within_ms),
        (field(&plan, "event_id"), 600_000)
    );

    let NodeKind::Source(replay) = &plan.node(id(&plan, "replay")).kind else {
        panic!("replay is a source");
    };
    let ConnectorPlan::File(file) = &replay.connector else {
        panic!("replay reads a file");
    };
    assert_eq!(file.path, PathBuf::from("jobs/data/clicks.jsonl"));
    assert!(!file.follow);
    assert_eq!(replay.idle_timeout, None);
}

#[test]
fn projection_covers_filters_windows_and_time_fields() {
    let plan = compile(CHECKOUT_HEALTH);
    let NodeKind::Source(clicks) = &plan.node(id(&plan, "clicks")).kind else {
        panic!("clicks is a source");
    };
    assert_eq!(
        clicks.projection,
        fields(&plan, &["ts", "event_id", "type", "amount", "user_id"])
    );
    let NodeKind::Source(replay) = &plan.node(id(&plan, "replay")).kind else {
        panic!("replay is a source");
    };
    assert_eq!(
        replay.projection,
        fields(&plan, &["ts", "type", "amount", "user_id"])
    );
}

#[test]
fn windows_and_aggregates_are_compiled() {
    let plan = compile(CHECKOUT_HEALTH);
    let NodeKind::Window(window) = &plan.node(id(&plan, "per_user")).kind else {
        panic!("per_user is a window");
    };
    assert_eq!(window.kind, WindowKind::Tumbling { size_ms: 60_000 });
    assert_eq!(window.key, [field(&plan, "user_id")]);
    assert_eq!(window.key_names, ["user_id"]);
    assert_eq!(window.allowed_lateness_ms, 0);
    let amount = Some(field(&plan, "amount"));
    assert_eq!(
        window.aggregates,
        [
            AggregatePlan {
                name: "events".into(),
                function: AggregateFunction::Count,
                field: None,
                by: None,
            },
            AggregatePlan {
                name: "revenue".into(),
                function: AggregateFunction::Sum,
                field: amount,
                by: None,
            },
            AggregatePlan {
                name: "avg_amount".into(),
                function: AggregateFunction::Avg,
                field: amount,
                by: None,
            },
            AggregatePlan {
                name: "max_amount".into(),
                function: AggregateFunction::Max,
                field: amount,
                by: None,
            },
            AggregatePlan {
                name: "p99_amount".into(),
                function: AggregateFunction::Percentile(0.99),
                field: amount,
                by: None,
            },
            AggregatePlan {
                name: "users".into(),
                function: AggregateFunction::CountDistinct,
                field: Some(field(&plan, "user_id")),
                by: None,
            },
        ]
    );
    let NodeKind::Sink(SinkPlan::File { path }) = &plan.node(id(&plan, "dashboard")).kind else {
        panic!("dashboard is a file sink");
    };
    assert_eq!(path, &PathBuf::from("jobs/out/per_user.jsonl"));
}

#[test]
fn filters_evaluate_over_rows_indexed_by_the_field_table() {
    let plan = compile(CHECKOUT_HEALTH);
    let NodeKind::Filter(filter) = &plan.node(id(&plan, "checkouts")).kind else {
        panic!("checkouts is a filter");
    };
    assert_eq!(filter.text, "type != 'product_view' && amount > 0");
    assert_eq!(filter.expr.fields(), fields(&plan, &["type", "amount"]));
    let mut row = vec![Value::Null; plan.fields.len()];
    row[field(&plan, "type").index()] = Value::Str(Cow::Borrowed("checkout"));
    row[field(&plan, "amount").index()] = Value::Num(12.5);
    assert!(filter.expr.matches(row.as_slice()));
    row[field(&plan, "type").index()] = Value::Str(Cow::Borrowed("product_view"));
    assert!(!filter.expr.matches(row.as_slice()));
}

/// Windows over windows, sliding windows, a stdout sink on a source, the
/// `.errors` output, an ARN and start/stop times.
const PIPELINE: &str = r#"
[job]
name = "pipeline"

[sinks.raw]
type = "stdout"
input = "events"

[sources.events]
type = "kinesis"
stream_arn = "arn:aws:kinesis:eu-west-1:123456789012:stream/events"
start_at = "2026-01-01T00:00:00Z"
stop_at = "2026-01-01T01:00:00+01:00"
on_expired = "trim_horizon"

[sources.metrics]
type = "file"
path = "/data/metrics.jsonl"
follow = true

[windows.per_device]
input = "metrics"
key = ["device.id", "region"]
sliding = { size = "5m", slide = "1m" }
aggregates = { readings = "count()", hottest = "max(device.temp)" }

[filters.hot]
input = "per_device"
where = "hottest > 80 && region.startsWith('eu-')"

[windows.per_region]
input = "hot"
key = ["region"]
tumbling = "1h"
aggregates = { devices = "count_distinct(device.id)", worst = "max(hottest)" }

[sinks.alerts]
type = "kinesis"
input = "per_region"
stream = "alerts"

[sinks.dead]
type = "file"
input = "events.errors"
path = "dead.jsonl"
"#;

#[test]
fn pipeline_with_windows_over_windows() {
    let plan = compile(PIPELINE);
    assert_eq!(
        names(&plan),
        [
            "events",
            "raw",
            "metrics",
            "per_device",
            "hot",
            "per_region",
            "alerts",
            "dead"
        ]
    );

    let NodeKind::Source(events) = &plan.node(id(&plan, "events")).kind else {
        panic!("events is a source");
    };
    let ConnectorPlan::Kinesis(kinesis) = &events.connector else {
        panic!("kinesis");
    };
    assert!(kinesis.is_arn);
    assert_eq!(kinesis.start_at, StartAt::Timestamp(1_767_225_600_000));
    assert_eq!(kinesis.stop_at, Some(StopAt::Timestamp(1_767_225_600_000)));
    assert_eq!(kinesis.on_expired, OnExpired::TrimHorizon);
    // Read directly by a sink: no decoded fields.
    assert!(events.projection.is_empty());

    let NodeKind::Source(metrics) = &plan.node(id(&plan, "metrics")).kind else {
        panic!("metrics is a source");
    };
    let ConnectorPlan::File(file) = &metrics.connector else {
        panic!("file");
    };
    assert_eq!(file.path, PathBuf::from("/data/metrics.jsonl"));
    assert!(file.follow);
    // Only the first window reads the source; the rest read window rows.
    assert_eq!(
        metrics.projection,
        fields(&plan, &["device.id", "region", "device.temp"])
    );

    let NodeKind::Window(per_device) = &plan.node(id(&plan, "per_device")).kind else {
        panic!("window");
    };
    assert_eq!(
        per_device.kind,
        WindowKind::Sliding {
            size_ms: 300_000,
            slide_ms: 60_000
        }
    );
    assert_eq!(per_device.key_names, ["device.id", "region"]);
    assert_eq!(
        plan.fields[field(&plan, "device.id").index()].segments,
        ["device", "id"]
    );

    // Downstream of a window, rows are addressed by column name.
    let NodeKind::Window(per_region) = &plan.node(id(&plan, "per_region")).kind else {
        panic!("window");
    };
    assert_eq!(
        per_region.aggregates[1].field,
        Some(field(&plan, "hottest"))
    );

    assert!(matches!(
        &plan.node(id(&plan, "alerts")).kind,
        NodeKind::Sink(SinkPlan::Kinesis { stream, .. }) if stream == "alerts"
    ));
    assert_eq!(
        plan.node(id(&plan, "dead")).inputs,
        [StreamRef {
            node: id(&plan, "events"),
            port: Port::Errors
        }]
    );
}

#[test]
fn late_records_can_only_feed_sinks() {
    let error = compile_str(
        r#"
[job]
name = "late"

[sources.s]
type = "file"
path = "s.jsonl"

[windows.w]
input = "s"
key = ["k"]
tumbling = "1m"
aggregates = { n = "count()" }

[filters.late_big]
input = "w.late"
where = "size > 10"

[sinks.out]
input = "late_big"
type = "stdout"
"#,
        Path::new("late.toml"),
    )
    .unwrap_err();
    let rendered = error.render();
    assert!(
        rendered.contains("only a sink can read `w.late`"),
        "{rendered}"
    );
}

#[test]
fn load_reports_unreadable_files() {
    let error = kflow_jobs::load(Path::new("tests/ui/does-not-exist.toml")).unwrap_err();
    assert!(matches!(error, kflow_jobs::JobError::Io { .. }));
    assert!(error
        .render()
        .starts_with("tests/ui/does-not-exist.toml: cannot read job file: "));
}

#[test]
fn non_utf8_files_are_invalid_at_the_bad_byte() {
    let dir = std::env::temp_dir().join(format!("kflow-jobs-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("latin1.toml");
    std::fs::write(&path, b"[job]\nname = \"caf\xe9\"\n").unwrap();
    let error = kflow_jobs::load(&path).unwrap_err();
    let rendered = error.render();
    assert!(
        rendered.contains("latin1.toml:2:12: the job file is not valid UTF-8"),
        "{rendered}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_diagnostic_is_rendered_with_its_position() {
    let error = compile_str(
        "[job]\nname = \"X\"\n[sources.a]\ntype = \"nope\"\n",
        Path::new("j.toml"),
    )
    .unwrap_err();
    assert_eq!(error.diagnostics().len(), 2);
    let rendered = error.render();
    assert!(
        rendered.starts_with("j.toml:2:8: invalid job name `X`"),
        "{rendered}"
    );
    assert!(
        rendered.contains("\nj.toml:4:8: unknown source type `nope`"),
        "{rendered}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn compiling_arbitrary_text_never_panics(text in "\\PC{0,200}") {
        if let Err(error) = compile_str(&text, Path::new("fuzz.toml")) {
            let _ = error.render();
        }
    }

    /// Mutations of a real job reach far deeper than random text.
    #[test]
    fn compiling_mutated_jobs_never_panics(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 0usize..4, "\\PC{0,3}"), 1..6),
        base in prop_oneof![Just(CHECKOUT_HEALTH), Just(PIPELINE)],
    ) {
        let mut text = base.to_string();
        for (at, kind, insert) in edits {
            let mut offset = at.index(text.len() + 1);
            while !text.is_char_boundary(offset) {
                offset -= 1;
            }
            match kind {
                0 => text.insert_str(offset, &insert),
                1 => {
                    let end = (offset..=text.len()).find(|e| *e >= offset + 3 && text.is_char_boundary(*e)).unwrap_or(text.len());
                    text.replace_range(offset..end, "");
                }
                2 => {
                    let end = (offset..=text.len()).find(|e| *e > offset && text.is_char_boundary(*e)).unwrap_or(text.len());
                    text.replace_range(offset..end, &insert);
                }
                _ => {
                    // Duplicate a line: duplicate keys, names, tables.
                    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
                    let end = text[offset..].find('\n').map_or(text.len(), |i| offset + i + 1);
                    let line = text[start..end].to_string();
                    text.insert_str(end, &line);
                }
            }
        }
        match compile_str(&text, Path::new("fuzz.toml")) {
            Ok(plan) => {
                for (i, node) in plan.nodes.iter().enumerate() {
                    for input in &node.inputs {
                        prop_assert!(input.node.index() < i);
                    }
                }
            }
            Err(error) => {
                prop_assert!(!error.diagnostics().is_empty());
                for diagnostic in error.diagnostics() {
                    prop_assert!(diagnostic.span.start <= diagnostic.span.end);
                    prop_assert!(diagnostic.span.end <= text.len());
                    prop_assert!(!diagnostic.message.is_empty());
                }
                let _ = error.render();
            }
        }
    }
}

#[test]
fn every_bundled_example_compiles() {
    let mut seen = 0;
    for entry in std::fs::read_dir("examples").unwrap() {
        let path = entry.unwrap().path();
        let name = path.to_string_lossy().into_owned();
        if name.ends_with(".toml") && !name.ends_with(".test.toml") {
            let plan = match kflow_jobs::load(&path) {
                Ok(plan) => plan,
                Err(error) => panic!("{}", error.render()),
            };
            // Its tests (`kflow test`) read as valid for it.
            let tests = path.with_extension("test.toml");
            if let Err(error) = kflow_jobs::testfile::read(&tests, &plan) {
                panic!("{}", error.render());
            }
            seen += 1;
        }
    }
    assert!(seen >= 5, "only {seen} examples found");
}
