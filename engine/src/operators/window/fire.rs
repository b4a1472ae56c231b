//! Firing: which windows the watermark closes, and writing their rows.
//! Tumbling windows stream their one pane's partials; sliding windows
//! merge their panes per key, one hash shard at a time; session windows
//! fire by timer bucket ([`super::session`]).

use hashbrown::hash_table::Entry::{Occupied, Vacant};
use kflow_state::cache::SHARDS;
use kflow_state::keys::same;
use smallvec::SmallVec;

use super::WindowTask;
use crate::error::EngineError;

impl WindowTask {
    /// Whether the watermark as the inputs now stand fires a window: the
    /// first step of [`WindowTask::advance`] (keep the two in step; `fire`
    /// asserts that no gathered update is left behind).
    pub(super) fn would_fire(&self) -> bool {
        let Some((_, target)) = self.watermark_target() else {
            return false;
        };
        target > self.fired_through
            && self.cache.first_time_from(i64::MIN).is_some_and(|first| {
                first.max(self.panes.next_window_end_after(self.fired_through)) <= target
            })
    }

    /// Fires every window ending at or before `target`, oldest first.
    pub(super) fn advance(&mut self, target: i64) -> Result<(), EngineError> {
        if target <= self.fired_through {
            return Ok(());
        }
        if self.sessions.is_some() {
            return self.advance_sessions(target);
        }
        let before = self.fired_through;
        while let Some(first) = self.cache.first_time_from(i64::MIN) {
            let end = first.max(self.panes.next_window_end_after(self.fired_through));
            if end > target {
                break;
            }
            self.fire(end, before)?;
            self.fired_through = end;
        }
        self.fired_through = target;
        self.flush_due = true;
        Ok(())
    }

    /// Sends the rows fired and the frontier reached while taking in one
    /// message, once. A batch whose records move the watermark record by
    /// record advances the window as often, and a flush per advance would
    /// send each consumer a message per record (278,000 empty batches from
    /// W4S's sliding window to the window over it); the rows' own stamps,
    /// taken when they fired, do not depend on when they are sent.
    pub(super) fn flush_results(&mut self) -> Result<(), EngineError> {
        if !std::mem::take(&mut self.flush_due) {
            return Ok(());
        }
        if self.out.router.has_routes() {
            // Results carry event time end - 1 >= the frontier.
            let frontier = self.frontier();
            self.out.router.flush(frontier)?;
        }
        for sink in &mut self.late {
            sink.flush()?;
        }
        Ok(())
    }

    /// Fires the sessions ending at or before `target` (see
    /// [`SessionStore::fire`]) and moves the frontier.
    fn advance_sessions(&mut self, target: i64) -> Result<(), EngineError> {
        let before = self.frontier();
        if let Some(sessions) = &mut self.sessions {
            let (out, counts) = (&mut self.out, &mut self.counts);
            sessions.fire(&self.store, target, |start, end, key, partial| {
                out.emit(start, end, key, partial, before, counts)
            })?;
        }
        self.fired_through = target;
        self.flush_due = true;
        Ok(())
    }

    /// Emits the window ending at `end` and drops panes no later window uses.
    fn fire(&mut self, end: i64, watermark: i64) -> Result<(), EngineError> {
        debug_assert!(
            self.spilled_updates.is_empty(),
            "a window fired with updates of evicted keys still gathered"
        );
        let start = end.saturating_sub(self.panes.size());
        if self.panes.is_tumbling() {
            // Stream the window: stored partials are decoded one at a time,
            // so a window far larger than the memory budget fires in it.
            let (out, counts) = (&mut self.out, &mut self.counts);
            return self.cache.drain(&self.store, end, |key, partial| {
                out.emit(start, end, key, partial, watermark, counts)
            });
        }
        // Merge the window's panes per key, one hash shard at a time: a key
        // is in the same shard of every pane, so the merge table holds a
        // sixteenth of the window and stays in the CPU cache, and it is
        // reused (cleared, not freed) from shard to shard and fire to fire.
        // Entries keep the hash they were stored with (no rehash) and short
        // keys are copied inline, so merging allocates nothing per key.
        let panes: Vec<i64> = self.panes.panes_of_window(end).collect();
        for &pane in &panes {
            self.cache.load(&self.store, pane)?;
        }
        let merged = &mut self.merge_table;
        let mut largest = 0;
        for shard in 0..SHARDS {
            merged.clear();
            for &pane in &panes {
                for (hash, key, partial) in self.cache.shard_entries(pane, shard) {
                    match merged.entry(hash, |(_, k, _)| same(k, key), |(h, _, _)| *h) {
                        Occupied(mut slot) => slot.get_mut().2.merge(partial),
                        Vacant(slot) => {
                            slot.insert((hash, SmallVec::from_slice(key), partial.clone()));
                        }
                    }
                }
            }
            largest = largest.max(merged.len());
            for (_, key, partial) in merged.iter() {
                self.out
                    .emit(start, end, key, partial, watermark, &mut self.counts)?;
            }
        }
        // Keep room for a shard of this fire, not of the largest fire ever.
        merged.clear();
        merged.shrink_to(largest, |(h, _, _)| *h);
        let obsolete = start.saturating_add(self.panes.slide());
        while let Some(pane) = self
            .cache
            .first_time_from(i64::MIN)
            .filter(|p| *p <= obsolete)
        {
            self.cache.remove(pane);
        }
        Ok(())
    }
}
