//! How a run starts: open the state, then either resume from the last
//! checkpoint (after checking the job against its fingerprint) or start
//! from empty state, and say which in one log line.

use std::sync::Arc;

use kflow_jobs::{ConnectorPlan, JobPlan, NodeKind};
use kflow_state::{Family, StateStore};
use serde::Deserialize;

use super::meta::CheckpointMeta;
use super::{database_dir, fingerprint, RunOptions};
use crate::dataflow::metrics::group;
use crate::error::EngineError;
use crate::sources::file::FilePosition;
use crate::sources::kinesis::position::KinesisPosition;

/// How a run started: fresh, or from which checkpoint.
#[derive(Debug, Clone)]
pub enum Start {
    /// No usable checkpoint: empty state, sinks start empty.
    Fresh {
        /// Why (no checkpoint, `--reset`, last run finished).
        why: String,
    },
    /// Resumed from a checkpoint.
    Restored {
        /// The checkpoint.
        meta: Box<CheckpointMeta>,
        /// Allowed job changes since it was taken.
        changes: Vec<String>,
        /// Windows whose stored partials get empty accumulators for
        /// aggregates appended since.
        extended: Vec<String>,
    },
}

impl Start {
    /// One line for the log.
    pub fn describe(&self, plan: &JobPlan) -> String {
        match self {
            Start::Fresh { why } => format!("starting from empty state ({why})"),
            Start::Restored { meta, changes, .. } => {
                let age = (chrono::Utc::now().timestamp_millis() - meta.created_ms).max(0) as f64
                    / 1000.0;
                let positions: Vec<String> = meta
                    .sources
                    .iter()
                    .map(|(name, stored)| describe_position(plan, name, stored))
                    .collect();
                let mut line = format!(
                    "restored checkpoint {} taken {age:.1} s ago: {}",
                    meta.id,
                    if positions.is_empty() {
                        "no sources".to_string()
                    } else {
                        positions.join(", ")
                    }
                );
                for change in changes {
                    line.push_str(&format!("\n  job change: {change}"));
                }
                line
            }
        }
    }
}

/// One source's restored position for the log: a file's line and byte, or
/// a Kinesis source's records and shards.
fn describe_position(plan: &JobPlan, name: &str, stored: &serde_json::Value) -> String {
    let connector = plan.nodes.iter().find_map(|n| match &n.kind {
        NodeKind::Source(s) if n.name == name => Some(&s.connector),
        _ => None,
    });
    let described = match connector {
        Some(ConnectorPlan::Kinesis(_)) => KinesisPosition::deserialize(stored)
            .map(|k| {
                format!(
                    "{name} after {} records, {} shards ({} finished)",
                    group(k.records),
                    k.stream.shards.len(),
                    k.stream.shards.values().filter(|s| s.finished).count()
                )
            })
            .ok(),
        _ => FilePosition::deserialize(stored)
            .map(|f| {
                format!(
                    "{name} at line {} (byte {})",
                    group(f.line),
                    group(f.offset)
                )
            })
            .ok(),
    };
    described.unwrap_or_else(|| format!("{name} at an unreadable position"))
}

/// Opens the state, decides how to start and checks the job against the
/// checkpoint.
///
/// # Errors
/// [`EngineError::JobChanged`] when a stateful part of the job changed since
/// the checkpoint, state errors (corrupt or foreign state directory).
pub fn prepare(
    plan: &JobPlan,
    options: &RunOptions,
) -> Result<(Arc<StateStore>, Start), EngineError> {
    let store_url = super::durable::store_url(plan);
    let db_dir = database_dir(plan);
    if let Some(url) = &store_url {
        // No local state (a new or lost machine), or a rollback asked for:
        // the store's checkpoint becomes the local state.
        let local = db_dir.join("CURRENT").is_file();
        if !options.reset && (options.from_checkpoint.is_some() || !local) {
            super::durable::restore::download(url, &db_dir, options.from_checkpoint)?;
        }
    } else if let Some(id) = options.from_checkpoint {
        return Err(EngineError::StoreContents {
            url: "(none)".into(),
            what: format!("--from-checkpoint {id} needs `[job] checkpoint_store`"),
        });
    }
    let mut store = StateStore::open(&db_dir)?;
    // Test hook: the size from which a checkpoint's window writes go to an
    // ingested table file (`kflow_state::ingest`), lowered so small jobs
    // take that path too.
    if let Some(bytes) = std::env::var("KFLOW_INGEST_MIN_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        store.set_ingest_min_bytes(Some(bytes));
    }
    let store = Arc::new(store);
    let meta = CheckpointMeta::load(&store)?;
    let start = match meta {
        Some(_) if options.reset => Start::Fresh {
            why: "--reset".into(),
        },
        Some(meta) if meta.finished => Start::Fresh {
            why: format!(
                "the last run finished at checkpoint {}: running again",
                meta.id
            ),
        },
        Some(meta) => {
            let (stateful, stateless) = fingerprint::describe(plan);
            let changes =
                fingerprint::compare(&meta.stateful, &meta.stateless, &stateful, &stateless);
            if !changes.incompatible.is_empty() {
                return Err(EngineError::JobChanged(changes.incompatible));
            }
            Start::Restored {
                meta: Box::new(meta),
                changes: changes.compatible,
                extended: changes.extended,
            }
        }
        None => Start::Fresh {
            why: "no checkpoint".into(),
        },
    };
    if let Start::Fresh { .. } = start {
        store.clear(&[Family::Windows, Family::Packs, Family::Dedup, Family::Meta])?;
        if let Some(url) = &store_url {
            // The store's checkpoints belong to the history just discarded.
            let deleted = super::durable::clear(url)?;
            if deleted > 0 {
                tracing::info!("deleted {deleted} objects of earlier checkpoints in {url}");
            }
        }
    }
    Ok((store, start))
}
