//! `kflow checkpoints`: what the last checkpoint of a job holds.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use kflow_jobs::{ConnectorPlan, JobPlan, NodeKind, SinkPlan};
use kflow_state::{codec, Family, StateStore};
use serde::de::DeserializeOwned;

use crate::dataflow::json::format_time;
use crate::dataflow::metrics::group;
use crate::error::EngineError;
use crate::operators::window::WindowState;
use crate::runtime::database_dir;
use crate::runtime::meta::CheckpointMeta;
use crate::sinks::{FileSinkPosition, KinesisSinkPosition, S3SinkPosition, StdoutPosition};
use crate::sources::file::FilePosition;
use crate::sources::kinesis::position::KinesisPosition;

fn time(t: Option<i64>) -> String {
    match t {
        None | Some(i64::MIN) => "none yet".to_string(),
        Some(i64::MAX) => "+infinity (all fired)".to_string(),
        Some(t) => format_time(t),
    }
}

/// A task's stored part as its type, or why it is not.
fn read<T: DeserializeOwned>(stored: &serde_json::Value) -> Result<T, String> {
    T::deserialize(stored).map_err(|e| format!("unreadable position ({e})"))
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 10_000_000 => format!("{} MB", group(n / 1_000_000)),
        n if n >= 10_000 => format!("{} kB", group(n / 1000)),
        n => format!("{} bytes", group(n)),
    }
}

/// The checkpoints in `plan`'s checkpoint store, newest first (empty when
/// it has none configured).
///
/// # Errors
/// The store cannot be reached or listed.
pub fn store_report(plan: &JobPlan) -> Result<String, EngineError> {
    let Some(url) = crate::runtime::durable::store_url(plan) else {
        return Ok(String::new());
    };
    let s3 = crate::runtime::durable::connect(&url)?;
    let listed = crate::runtime::durable::restore::list(&s3, &url)?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "checkpoint store {url}: {} complete checkpoint(s), newest first",
        listed.len()
    );
    for (id, manifest) in listed {
        match manifest {
            Some(m) => {
                let _ = writeln!(
                    out,
                    "  {id:>8}  taken {}  {} files  {}{}",
                    format_time(m.created_ms),
                    m.files.len(),
                    bytes(m.bytes()),
                    if m.meta.finished {
                        "  run finished"
                    } else {
                        ""
                    }
                );
            }
            None => {
                let _ = writeln!(out, "  {id:>8}  manifest unreadable: skipped on restore");
            }
        }
    }
    Ok(out)
}

/// A report of the last checkpoint of `plan`'s job, read without the
/// state's lock: a running job can be inspected (as of its last write).
///
/// # Errors
/// State errors (not a kflow state directory, unreadable).
pub fn checkpoints(plan: &JobPlan) -> Result<String, EngineError> {
    let dir = database_dir(plan);
    if !dir.exists() {
        return Ok(format!(
            "job `{}` has no state yet ({} does not exist)\n",
            plan.name,
            dir.display()
        ));
    }
    let store = StateStore::open_read_only(&dir)?;
    let mut out = String::new();
    let Some(meta) = CheckpointMeta::load(&store)? else {
        let _ = writeln!(
            out,
            "job `{}` has no checkpoint yet (state in {})",
            plan.name,
            dir.display()
        );
        return Ok(out);
    };
    let age = (chrono::Utc::now().timestamp_millis() - meta.created_ms).max(0) as f64 / 1000.0;
    let _ = writeln!(
        out,
        "checkpoint {} of job `{}`, taken {} ({age:.1} s ago){}",
        meta.id,
        meta.job,
        format_time(meta.created_ms),
        if meta.finished { ", run finished" } else { "" }
    );
    let _ = writeln!(
        out,
        "state dir    {} ({} on disk)",
        plan.state_dir.display(),
        bytes(store.size_on_disk())
    );
    let _ = writeln!(out, "parallelism  {}", meta.parallelism);
    render_sources(plan, &meta, &mut out);
    render_windows(plan, &meta, &store, &mut out)?;
    render_sinks(plan, &meta, &mut out);
    Ok(out)
}

/// Each source's position and clock.
fn render_sources(plan: &JobPlan, meta: &CheckpointMeta, out: &mut String) {
    let _ = writeln!(out, "\nsources");
    for (name, stored) in &meta.sources {
        let source = plan.nodes.iter().find_map(|n| match &n.kind {
            NodeKind::Source(s) if &n.name == name => Some(s),
            _ => None,
        });
        let lag = source.map_or(0, |s| s.max_out_of_orderness_ms);
        let kinesis = matches!(
            source.map(|s| &s.connector),
            Some(ConnectorPlan::Kinesis(_))
        );
        let text = if kinesis {
            read::<KinesisPosition>(stored).map(|k| kinesis_source(&k))
        } else {
            read::<FilePosition>(stored).map(|f| {
                format!(
                    "line {} (byte {}){}, max event time {}, watermark {}",
                    group(f.line),
                    group(f.offset),
                    if f.ended { ", at end" } else { "" },
                    time(f.max_time),
                    time(f.max_time.map(|t| t.saturating_sub(lag))),
                )
            })
        };
        let text = text.unwrap_or_else(|e| e);
        let _ = writeln!(out, "  {name:<16} {text}");
    }
}

/// Each window partition's clock and the partials it has stored.
fn render_windows(
    plan: &JobPlan,
    meta: &CheckpointMeta,
    store: &StateStore,
    out: &mut String,
) -> Result<(), EngineError> {
    let _ = writeln!(out, "\nwindows");
    for (task, stored) in &meta.windows {
        let w = match read::<WindowState>(stored) {
            Ok(w) => w,
            Err(e) => {
                let _ = writeln!(out, "  {task:<16} {e}");
                continue;
            }
        };
        let (name, partition) = task.rsplit_once('/').unwrap_or((task, "0"));
        let node = plan.nodes.iter().position(|n| n.name == name);
        let (mut entries, mut times) = (0u64, BTreeSet::new());
        if let (Some(node), Ok(partition)) = (node, partition.parse::<u16>()) {
            let instance = codec::instance(node as u16, partition);
            // A time is stored key by key (one partial per key) or packed
            // (many partials per value).
            for family in [Family::Windows, Family::Packs] {
                store.for_each_prefix(family, &instance.to_be_bytes(), |key, value| {
                    entries += match family {
                        Family::Packs => kflow_state::pack::entries(value)
                            .filter(Result::is_ok)
                            .count() as u64,
                        _ => 1,
                    };
                    if let Ok((_, t, _)) = codec::decode_key(key) {
                        times.insert(t);
                    }
                    true
                })?;
            }
        }
        let _ = writeln!(
            out,
            "  {task:<16} fired through {}, watermark {}, {} open partials in {} windows/panes",
            time(Some(w.fired_through)),
            time(Some(w.watermark)),
            group(entries),
            group(times.len() as u64)
        );
    }
    Ok(())
}

/// Each sink's committed output.
fn render_sinks(plan: &JobPlan, meta: &CheckpointMeta, out: &mut String) {
    let _ = writeln!(out, "\nsinks");
    for (name, stored) in &meta.sinks {
        let kind = plan.nodes.iter().find(|n| &n.name == name).map(|n| &n.kind);
        let line = match kind {
            Some(NodeKind::Sink(SinkPlan::Kinesis { stream, .. })) => {
                read::<KinesisSinkPosition>(stored)
                    .map(|k| format!("kinesis stream {stream}: {} records written", group(k.rows)))
            }
            Some(NodeKind::Sink(SinkPlan::S3 { path, .. })) => {
                read::<S3SinkPosition>(stored).map(|p| {
                    format!(
                        "{path}: {} parts, {} rows committed",
                        group(p.parts),
                        group(p.rows)
                    )
                })
            }
            Some(NodeKind::Sink(SinkPlan::Stdout)) => read::<StdoutPosition>(stored)
                .map(|s| format!("stdout: {} written", bytes(s.bytes))),
            // File sinks and the dead-letter file.
            _ => read::<FileSinkPosition>(stored)
                .map(|f| format!("{}: {} committed", f.path.display(), bytes(f.length))),
        };
        let line = line.unwrap_or_else(|e| e);
        let _ = writeln!(out, "  {name:<16} {line}");
    }
}

/// A Kinesis source's stream and shard positions.
fn kinesis_source(k: &KinesisPosition) -> String {
    let s = &k.stream;
    let mut text = format!(
        "{} records from {} shards{}, max event time {}, start {}, stop {}",
        group(k.records),
        s.shards.len(),
        if k.ended { ", at end" } else { "" },
        time(k.max_time),
        s.start_ms
            .map_or_else(|| "trim horizon".to_string(), |t| time(Some(t))),
        s.stop_ms
            .map_or_else(|| "none".to_string(), |t| time(Some(t))),
    );
    for (shard, st) in &s.shards {
        let position = match (&st.sequence, st.subsequence) {
            (Some(seq), Some(sub)) => format!("after {seq} (subsequence {sub})"),
            (Some(seq), None) => format!("after {seq}"),
            (None, _) => "not started".to_string(),
        };
        let _ = write!(
            text,
            "\n    {shard:<24} {}{position}, {} records, max event time {}",
            if st.finished { "finished, " } else { "" },
            group(st.records),
            time(st.max_time),
        );
    }
    text
}
