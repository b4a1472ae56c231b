//! A window partition's checkpointed part: its clock (fired-through time,
//! watermarks per input) and which times of its state are stored key by
//! key or as packs. The partition serialises it into its checkpoint part
//! and reads it back on restore.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A window partition's clock and where its state lives.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowState {
    /// Every window ending at or before this has fired.
    pub fired_through: i64,
    /// The operator watermark.
    pub watermark: i64,
    /// Each input's watermark, by emitter name.
    pub inputs: BTreeMap<String, i64>,
    /// Pane/window end times whose partials are in RocksDB key by key
    /// (loaded lazily after a restart).
    pub stored_times: Vec<i64>,
    /// Pane/window end times stored as packs (loaded whole at start).
    #[serde(default)]
    pub packed_times: Vec<i64>,
    /// Number of (time, key) partials stored.
    pub entries: u64,
    /// The partition finished (all inputs ended, everything fired).
    pub ended: bool,
    /// A session window's stored and packed times.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions: Option<super::session::SessionTimes>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_window_state_from_before_packs_still_reads() {
        let old = r#"{"fired_through":60000,"watermark":61000,"inputs":{"clicks":61000},
                      "stored_times":[120000],"entries":5,"ended":false}"#;
        let state: WindowState = serde_json::from_str(old).unwrap();
        assert_eq!(state.stored_times, [120_000]);
        assert!(state.packed_times.is_empty());
    }
}
