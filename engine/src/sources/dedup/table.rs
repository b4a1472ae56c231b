//! The seen-id map of a dedup source: id hash -> expiry, an open-addressing
//! table with linear probing over a flat array.
//!
//! The ids are xxh3 hashes already, so their low bits pick the slot with no
//! hashing of their own; a slot is 16 bytes and the table at most half
//! full, so a probe usually reads one cache line. Removal shifts the probe
//! run back (no tombstones), so a table that removes as many ids as it
//! adds, as the expiry of a dedup span does, stays as fast as a fresh one.
//! Against `hashbrown::HashMap<u64, i64>` (foldhash) on W5 it used about
//! 20 MB less memory and ran as fast or faster (docs/performance.md).

use kflow_state::hint::prefetch;

/// Marks an empty slot; an id hashing to it is stored as [`ZERO_AS`].
const EMPTY: u64 = 0;
/// Where id 0 is kept (it then shares a slot with this id: one chance in
/// 2^64 of taking one for the other).
const ZERO_AS: u64 = u64::MAX;

/// id hash -> expiry (event time, ms).
#[derive(Debug, Default)]
pub struct IdTable {
    /// `(id, expiry)`; the id `EMPTY` marks a free slot. A power of two
    /// long (or empty).
    slots: Vec<(u64, i64)>,
    len: usize,
}

fn stored(id: u64) -> u64 {
    if id == EMPTY {
        ZERO_AS
    } else {
        id
    }
}

impl IdTable {
    fn mask(&self) -> usize {
        self.slots.len().wrapping_sub(1)
    }

    fn home(&self, id: u64) -> usize {
        id as usize & self.mask()
    }

    /// The slot holding `id`, or the free slot ending its probe run.
    fn find(&self, id: u64) -> usize {
        let mask = self.mask();
        let mut at = self.home(id);
        loop {
            let key = self.slots[at].0;
            if key == id || key == EMPTY {
                return at;
            }
            at = (at + 1) & mask;
        }
    }

    /// How many ids the table holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether adding one more id grows the table (it is kept at most half
    /// full).
    pub fn is_full(&self) -> bool {
        (self.len + 1) * 2 > self.slots.len()
    }

    /// Makes room for `more` ids without growing.
    pub fn reserve(&mut self, more: usize) {
        let wanted = (self.len + more)
            .saturating_mul(2)
            .next_power_of_two()
            .max(16);
        if wanted > self.slots.len() {
            self.resize(wanted);
        }
    }

    fn resize(&mut self, capacity: usize) {
        // Written, not allocated zeroed: a zeroed allocation maps each page
        // to the shared zero page, and the probe's read and then its write
        // fault twice on it (26,500 faults in a W5 run, half of them
        // avoidable); written, each page faults once. The fill value is
        // hidden from the optimizer, which may otherwise turn a fill with
        // zeros back into a zeroed allocation.
        let mut slots = Vec::with_capacity(capacity);
        slots.resize(capacity, std::hint::black_box((EMPTY, 0)));
        let old = std::mem::replace(&mut self.slots, slots);
        for (id, expiry) in old {
            if id != EMPTY {
                let at = self.find(id);
                self.slots[at] = (id, expiry);
            }
        }
    }

    /// Prefetches the home slots of `ids` ahead of their lookups: the
    /// table is far larger than the CPU caches and each lookup is a miss,
    /// and misses of reads asked for together are served together rather
    /// than one after another (the lookups that follow then hit the
    /// cache). Only a hint: it changes nothing.
    pub fn touch(&self, ids: impl IntoIterator<Item = u64>) {
        for id in ids {
            let home = self.home(stored(id));
            if let Some(slot) = self.slots.get(home) {
                prefetch(slot);
            }
            // A probe run often goes on into the next cache line (slots
            // are 16 bytes, four to a line in a table that starts on one,
            // as the allocator's large blocks do; on another start the
            // two prefetches still cover the home slot's neighbours).
            if let Some(slot) = self.slots.get((home | 3) + 1) {
                prefetch(slot);
            }
        }
    }

    /// Whether `id` is held alive (an expiry at or after `alive_from`)
    /// with an expiry at or after `time`: a repeat. Sets its expiry to
    /// `expiry` otherwise. One probe run for both.
    pub fn check_and_set(&mut self, id: u64, time: i64, expiry: i64, alive_from: i64) -> bool {
        // At most half full: probe runs stay short.
        if self.is_full() {
            self.reserve(1);
        }
        let id = stored(id);
        let at = self.find(id);
        let slot = &mut self.slots[at];
        if slot.0 == id {
            if time <= slot.1 && slot.1 >= alive_from {
                return true;
            }
        } else {
            slot.0 = id;
            self.len += 1;
        }
        slot.1 = expiry;
        false
    }

    /// Sets the expiry of `id`.
    pub fn set(&mut self, id: u64, expiry: i64) {
        if self.is_full() {
            self.reserve(1);
        }
        let id = stored(id);
        let at = self.find(id);
        if self.slots[at].0 != id {
            self.len += 1;
        }
        self.slots[at] = (id, expiry);
    }

    /// Forgets `id` if its expiry is `expiry` (an id re-added since keeps
    /// its newer one).
    pub fn remove_if(&mut self, id: u64, expiry: i64) {
        if self.slots.is_empty() {
            return;
        }
        let mask = self.mask();
        let mut hole = self.find(stored(id));
        if self.slots[hole] != (stored(id), expiry) {
            return;
        }
        self.len -= 1;
        // Shift back every later slot of the run that may move into the
        // hole without passing its home.
        let mut next = (hole + 1) & mask;
        loop {
            let (key, _) = self.slots[next];
            if key == EMPTY {
                break;
            }
            let home = self.home(key);
            if (next.wrapping_sub(home) & mask) >= (next.wrapping_sub(hole) & mask) {
                self.slots[hole] = self.slots[next];
                hole = next;
            }
            next = (next + 1) & mask;
        }
        self.slots[hole] = (EMPTY, 0);
    }
}

#[cfg(test)]
impl IdTable {
    /// How many slots the table has.
    pub(super) fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// The expiry of `id`.
    fn get(&self, id: u64) -> Option<i64> {
        if self.slots.is_empty() {
            return None;
        }
        let at = self.find(stored(id));
        (self.slots[at].0 != EMPTY).then_some(self.slots[at].1)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        Check(u64, i64),
        Remove(u64, i64),
    }

    fn op() -> impl Strategy<Value = Op> {
        // Few distinct low bits: long probe runs that wrap around.
        let id = prop_oneof![0..40u64, any::<u64>(), (0..8u64).prop_map(|i| i << 60)];
        prop_oneof![
            (id.clone(), 0..50i64).prop_map(|(id, t)| Op::Check(id, t)),
            (id, 0..60i64).prop_map(|(id, e)| Op::Remove(id, e)),
        ]
    }

    proptest! {
        #[test]
        fn behaves_as_a_hash_map(ops in proptest::collection::vec(op(), 0..400)) {
            let mut table = IdTable::default();
            let mut model: HashMap<u64, i64> = HashMap::new();
            for op in ops {
                match op {
                    Op::Check(id, time) => {
                        // Expiries before 20 count as gone.
                        let repeat = model.get(&id).is_some_and(|&e| time <= e && e >= 20);
                        if !repeat {
                            model.insert(id, time + 10);
                        }
                        prop_assert_eq!(table.check_and_set(id, time, time + 10, 20), repeat);
                    }
                    Op::Remove(id, expiry) => {
                        if model.get(&id) == Some(&expiry) {
                            model.remove(&id);
                        }
                        table.remove_if(id, expiry);
                    }
                }
                prop_assert_eq!(table.len(), model.len());
            }
            for (&id, &expiry) in &model {
                prop_assert_eq!(table.get(id), Some(expiry));
            }
            prop_assert_eq!(table.get(12_345_678), model.get(&12_345_678).copied());
        }
    }

    #[test]
    fn grows_and_keeps_every_id() {
        let mut table = IdTable::default();
        for id in 0..10_000u64 {
            assert!(!table.check_and_set(id.wrapping_mul(0x9e37_79b9_7f4a_7c15), 1, 5, 0));
        }
        assert_eq!(table.len(), 10_000);
        assert!(table.check_and_set(0, 3, 9, 0));
        assert!(!table.check_and_set(0, 3, 9, 6), "expired, so absent");
        assert!(table.slots.len() <= 32_768);
    }
}
