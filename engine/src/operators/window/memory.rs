//! The window's memory budget: when its state should spill, the updates
//! of keys already evicted to RocksDB, and eviction once the checkpoint
//! holding the snapshot is committed.

use super::aggregate::Partial;
use super::WindowTask;
use crate::dataflow::message::WindowBatch;
use crate::error::EngineError;

/// How long a window well over its memory budget waits for the checkpoint
/// that lets it evict, before going on regardless (a stuck coordinator must
/// not hang the task; its own error ends the run).
const OVER_BUDGET_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

impl WindowTask {
    /// Whether the state should spill (more than two thirds of its budget).
    pub(super) fn should_spill(&self) -> bool {
        self.cache.should_spill() || self.sessions.as_ref().is_some_and(|s| s.should_spill())
    }

    /// Whether the state is over its budget.
    pub(super) fn over_budget(&self) -> bool {
        self.cache.over_budget() || self.sessions.as_ref().is_some_and(|s| s.over_budget())
    }

    /// Applies the gathered updates `(record, pane)` of keys evicted to
    /// RocksDB, pane by pane, each pane's in record order, and clears them.
    pub(super) fn update_spilled(&mut self, batch: &WindowBatch) -> Result<(), EngineError> {
        let mut updates = std::mem::take(&mut self.spilled_updates);
        if updates.is_empty() {
            self.spilled_updates = updates;
            return Ok(());
        }
        // Stable: each pane's updates stay in record order.
        updates.sort_by_key(|&(_, pane)| pane);
        let n_args = self.out.aggregates.len();
        let mut keys: Vec<(u64, &[u8])> = Vec::with_capacity(updates.len());
        let mut records: Vec<usize> = Vec::with_capacity(updates.len());
        for run in updates.chunk_by(|a, b| a.1 == b.1) {
            let pane = run[0].1;
            keys.clear();
            records.clear();
            for &(i, _) in run {
                keys.push((batch.hashes[i], batch.key(i)));
                records.push(i);
            }
            let aggregates = &self.out.aggregates;
            self.cache.update_spilled(
                &self.store,
                pane,
                &keys,
                || Partial::new(aggregates),
                |j, partial| {
                    let i = records[j];
                    partial.update_with(&batch.args[i * n_args..(i + 1) * n_args], &batch.values);
                },
            )?;
        }
        updates.clear();
        self.spilled_updates = updates;
        Ok(())
    }

    /// Keeps the cache within its budget: past two thirds of it, ask for a
    /// checkpoint; once the checkpoint holding the snapshot is committed,
    /// drop the clean entries (RocksDB has them).
    pub(super) fn manage_memory(&mut self) {
        if let Some(id) = self.evict_after {
            if self.checkpoints.committed() < id && self.over_budget() {
                // Over budget with the snapshot not yet committed:
                // stop taking records (backpressure reaches the sources)
                // until the commit lets the clean entries go.
                let deadline = std::time::Instant::now() + OVER_BUDGET_WAIT;
                while self.checkpoints.committed() < id && std::time::Instant::now() < deadline {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
            if self.checkpoints.committed() >= id {
                self.cache.evict();
                if let Some(sessions) = &mut self.sessions {
                    sessions.evict();
                }
                self.evict_after = None;
                self.early_requested = false;
            }
        }
        if self.should_spill() && self.evict_after.is_none() && !self.early_requested {
            self.checkpoints.request_early();
            self.early_requested = true;
        }
    }
}
