//! The metadata of a committed checkpoint: which job wrote it, and every
//! task's part (source positions, window clocks, sink lengths) as the task
//! serialised it.
//!
//! The runtime does not look inside a part: each source, operator and sink
//! defines its position type beside its code (`FilePosition`,
//! `KinesisPosition`, `WindowState`, sink lengths) and reads it back with
//! [`crate::dataflow::checkpoint::restore_part`]. The three maps keep the
//! layout that older state directories were written with.

use std::collections::BTreeMap;

use kflow_state::{Family, StateError, StateStore};
use serde::{Deserialize, Serialize};

use crate::error::EngineError;

/// The metadata key of the last completed checkpoint.
pub const META_KEY: &[u8] = b"checkpoint";

/// The metadata of one completed checkpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// Checkpoint id (1, 2, ...).
    pub id: u64,
    /// Wall time of the commit, epoch ms.
    pub created_ms: i64,
    /// The job's name.
    pub job: String,
    /// Partitions per window (restored as is).
    pub parallelism: usize,
    /// Descriptions of the stateful parts of the job (sources, windows).
    pub stateful: BTreeMap<String, String>,
    /// Descriptions of the stateless parts (filters, sinks).
    pub stateless: BTreeMap<String, String>,
    /// Source positions by source name, as each source wrote them.
    pub sources: BTreeMap<String, serde_json::Value>,
    /// Window partition states by `window/partition`.
    pub windows: BTreeMap<String, serde_json::Value>,
    /// Sink states by sink name (`(dead-letter)` for the dead-letter file).
    pub sinks: BTreeMap<String, serde_json::Value>,
    /// Every task had ended: a bounded run completed.
    pub finished: bool,
    /// Names the database's history in the checkpoint store: a fresh
    /// start draws a new one, a restore keeps it, so SST file names never
    /// collide between histories (empty before the store existed).
    #[serde(default)]
    pub lineage: String,
}

impl CheckpointMeta {
    /// Reads the last completed checkpoint, if any.
    ///
    /// # Errors
    /// State errors, or metadata that does not parse (corruption).
    pub fn load(store: &StateStore) -> Result<Option<CheckpointMeta>, EngineError> {
        let Some(bytes) = store.get(Family::Meta, META_KEY)? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            EngineError::State(StateError::Corrupt(format!(
                "checkpoint metadata does not parse: {e}"
            )))
        })
    }

    /// The metadata as stored.
    ///
    /// # Errors
    /// [`EngineError::State`] if it does not serialise (a bug).
    pub fn to_bytes(&self) -> Result<Vec<u8>, EngineError> {
        serde_json::to_vec(self).map_err(|e| {
            EngineError::State(StateError::Corrupt(format!("checkpoint metadata: {e}")))
        })
    }
}
