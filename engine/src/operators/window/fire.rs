//! Firing: which windows the watermark closes, and writing their rows.
//! Tumbling windows stream their one pane's partials; sliding windows
//! merge their panes per key, one hash shard at a time; session windows
//! fire by timer bucket ([`super::session`]).

use hashbrown::hash_table::Entry::{Occupied, Vacant};
use hashbrown::hash_table::HashTable;
use kflow_state::cache::SHARDS;
use kflow_state::keys::same;

use super::aggregate::Partial;
use super::WindowTask;
use crate::dataflow::reuse::reuse;
use crate::error::EngineError;

/// A key's partial over a sliding window's panes: its one pane's, borrowed,
/// or the merge of two or more.
enum Merged<'a> {
    One(&'a Partial),
    Many(Partial),
}

/// Where a sliding window's fire merges one shard of its panes: an index
/// from key hash to the key's place in a list of keys and merged partials,
/// which borrow from the panes. Both keep their allocations from fire to
/// fire (the list between fires as an empty list of another lifetime): a
/// table freed after each fire went back to the OS and was faulted in and
/// zeroed again by the next (`clear_page_erms`, 5% of W2's window thread).
#[derive(Default)]
pub(super) struct Merge {
    index: HashTable<(u64, u32)>,
    keys: Vec<(&'static [u8], Merged<'static>)>,
}

/// An empty merge list with `list`'s allocation, for borrows of another
/// lifetime.
fn reuse_list<'a, 'b>(list: Vec<(&'a [u8], Merged<'a>)>) -> Vec<(&'b [u8], Merged<'b>)> {
    reuse(list, |_| {
        (&[][..], Merged::Many(Partial(Default::default())))
    })
}

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
        // is in the same shard of every pane, so the merge holds a
        // sixteenth of the window and stays in the CPU cache; it is
        // cleared, not freed, from shard to shard and from fire to fire.
        // Keys and partials are borrowed from the panes: a key in one pane
        // of the window (most, in a window over sparse keys) is emitted
        // from its pane, and a partial is cloned only for a key's second
        // pane, then merged in pane order. Rows go out in the order their
        // keys came.
        let panes: Vec<i64> = self.panes.panes_of_window(end).collect();
        for &pane in &panes {
            self.cache.load(&self.store, pane)?;
        }
        let cache = &self.cache;
        let index = &mut self.merge.index;
        let mut keys = reuse_list(std::mem::take(&mut self.merge.keys));
        for shard in 0..SHARDS {
            index.clear();
            keys.clear();
            for &pane in &panes {
                for (hash, key, partial) in cache.shard_entries(pane, shard) {
                    let found = index.entry(
                        hash,
                        |&(h, i)| h == hash && same(keys[i as usize].0, key),
                        |&(h, _)| h,
                    );
                    match found {
                        Occupied(slot) => {
                            let into = &mut keys[slot.get().1 as usize].1;
                            match into {
                                Merged::One(first) => {
                                    let mut sum = (*first).clone();
                                    sum.merge(partial);
                                    *into = Merged::Many(sum);
                                }
                                Merged::Many(sum) => sum.merge(partial),
                            }
                        }
                        Vacant(slot) => {
                            slot.insert((hash, keys.len() as u32));
                            keys.push((key, Merged::One(partial)));
                        }
                    }
                }
            }
            for (key, partial) in &keys {
                let partial = match partial {
                    Merged::One(p) => p,
                    Merged::Many(p) => p,
                };
                self.out
                    .emit(start, end, key, partial, watermark, &mut self.counts)?;
            }
        }
        self.merge.keys = reuse_list(keys);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_merge_list_keeps_its_allocation_between_fires() {
        let partial = Partial(Default::default());
        let mut list: Vec<(&[u8], Merged<'_>)> = Vec::with_capacity(1000);
        list.push((b"k", Merged::One(&partial)));
        let kept: Vec<(&'static [u8], Merged<'static>)> = reuse_list(list);
        assert!(kept.is_empty());
        assert!(kept.capacity() >= 1000, "capacity {}", kept.capacity());
    }
}
