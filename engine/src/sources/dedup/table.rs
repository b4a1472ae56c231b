//! The seen-id set of a dedup source: an open-addressing table with linear
//! probing over a flat array, each slot naming an entry of the source's
//! arrival log (the ids in the order they came, with their expiries).
//!
//! A slot is 8 bytes: the id hash's low 32 bits, which pick its home slot,
//! and the 32-bit position of the id's newest entry in the log. The full
//! hash and the expiry live in the log only, read when a slot's 32 bits
//! match (an id seen before, repeat or not, or one chance in 2^32 per
//! slot passed). Half the size of `(hash, expiry)` slots, the table's
//! random reads, two per id (its check, and its removal when it expires),
//! are served from a 16 MB array instead of a 32 MB one for W5's ~850,000
//! live ids: on this project's machine random reads of 16 MB run at about
//! twice the rate of 32 MB (docs/performance/dedup.md, "Seen ids in 8-byte
//! slots").
//!
//! The table is at most half full, so a probe usually reads one cache
//! line. Removal shifts the probe run back (no tombstones), so a table that
//! removes as many ids as it adds, as the expiry of a dedup span does,
//! stays as fast as a fresh one. A log position is kept modulo 2^32: the
//! log must hold fewer than 2^32 entries (64 GB of them).

use std::collections::VecDeque;

use kflow_state::hint::prefetch;

/// Marks an empty slot. No slot in use equals it: a key is at most
/// `u32::MAX - 1` ([`key_of`]).
const EMPTY: u64 = u64::MAX;

/// The arrival log: `(expiry, id hash)` per entry, oldest first, and the
/// position (counted over the whole run) of its front entry.
#[derive(Debug, Clone, Copy)]
pub struct Log<'a> {
    pub entries: &'a VecDeque<(i64, u64)>,
    pub first: u64,
}

impl Log<'_> {
    /// The entry at position `at` (modulo 2^32).
    fn get(&self, at: u32) -> Option<(i64, u64)> {
        let offset = at.wrapping_sub(self.first as u32) as usize;
        self.entries.get(offset).copied()
    }
}

/// The 32 bits of `id` a slot keeps, which also pick its home.
fn key_of(id: u64) -> u32 {
    (id as u32).min(u32::MAX - 1)
}

fn slot(key: u32, at: u64) -> u64 {
    (u64::from(key) << 32) | u64::from(at as u32)
}

fn key_in(slot: u64) -> u32 {
    (slot >> 32) as u32
}

/// id hash -> position of its newest entry in the arrival log.
#[derive(Debug, Default)]
pub struct IdTable {
    /// [`slot`]s; [`EMPTY`] marks a free one. A power of two long (or
    /// empty).
    slots: Vec<u64>,
    len: usize,
}

impl IdTable {
    fn mask(&self) -> usize {
        self.slots.len().wrapping_sub(1)
    }

    fn home(&self, key: u32) -> usize {
        key as usize & self.mask()
    }

    /// The slot holding `id` (its key matches and its log entry is `id`),
    /// or the free slot ending its probe run.
    fn find(&self, id: u64, log: Log<'_>) -> usize {
        let key = key_of(id);
        let mask = self.mask();
        let mut at = self.home(key);
        loop {
            let s = self.slots[at];
            if s == EMPTY || (key_in(s) == key && log.get(s as u32).is_some_and(|(_, h)| h == id)) {
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
        // Filled, not allocated zeroed (an empty slot is not zero): each
        // page faults once, on the fill, not twice on a probe's read of
        // the shared zero page and then its write.
        let old = std::mem::replace(&mut self.slots, vec![EMPTY; capacity]);
        let mask = self.mask();
        for s in old {
            if s != EMPTY {
                let mut at = self.home(key_in(s));
                while self.slots[at] != EMPTY {
                    at = (at + 1) & mask;
                }
                self.slots[at] = s;
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
            let home = self.home(key_of(id));
            if let Some(slot) = self.slots.get(home) {
                prefetch(slot);
            }
            // A probe run sometimes goes on into the next cache line
            // (slots are 8 bytes, eight to a line in a table that starts
            // on one, as the allocator's large blocks do).
            if let Some(slot) = self.slots.get((home | 7) + 1) {
                prefetch(slot);
            }
        }
    }

    /// Whether `id` is held alive (an expiry at or after `alive_from`)
    /// with an expiry at or after `time`: a repeat. Otherwise points `id`
    /// at the log entry the caller adds next, at position `at`. One probe
    /// run for both.
    pub fn check_and_set(
        &mut self,
        id: u64,
        time: i64,
        alive_from: i64,
        at: u64,
        log: Log<'_>,
    ) -> bool {
        // At most half full: probe runs stay short.
        if self.is_full() {
            self.reserve(1);
        }
        let found = self.find(id, log);
        let s = self.slots[found];
        if s == EMPTY {
            self.len += 1;
        } else if let Some((expiry, _)) = log.get(s as u32) {
            if time <= expiry && expiry >= alive_from {
                return true;
            }
        }
        self.slots[found] = slot(key_of(id), at);
        false
    }

    /// Points `id` at the log entry at position `at` (the log holds it).
    pub fn set(&mut self, id: u64, at: u64, log: Log<'_>) {
        if self.is_full() {
            self.reserve(1);
        }
        let found = self.find(id, log);
        if self.slots[found] == EMPTY {
            self.len += 1;
        }
        self.slots[found] = slot(key_of(id), at);
    }

    /// Forgets `id` if its newest entry is the one at position `at` (an id
    /// re-added since points at its newer entry). Reads no log entry.
    pub fn remove_at(&mut self, id: u64, at: u64) {
        if self.slots.is_empty() {
            return;
        }
        let wanted = slot(key_of(id), at);
        let mask = self.mask();
        let mut hole = self.home(key_of(id));
        loop {
            match self.slots[hole] {
                EMPTY => return,
                s if s == wanted => break,
                _ => hole = (hole + 1) & mask,
            }
        }
        self.len -= 1;
        // Shift back every later slot of the run that may move into the
        // hole without passing its home.
        let mut next = (hole + 1) & mask;
        loop {
            let s = self.slots[next];
            if s == EMPTY {
                break;
            }
            let home = self.home(key_in(s));
            if (next.wrapping_sub(home) & mask) >= (next.wrapping_sub(hole) & mask) {
                self.slots[hole] = s;
                hole = next;
            }
            next = (next + 1) & mask;
        }
        self.slots[hole] = EMPTY;
    }
}

#[cfg(test)]
impl IdTable {
    /// How many slots the table has.
    pub(super) fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// The position of `id`'s newest entry.
    fn get(&self, id: u64, log: Log<'_>) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let s = self.slots[self.find(id, log)];
        (s != EMPTY).then_some(s as u32)
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
        /// Expires the entry this many entries from the log's front.
        Remove(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        // Few distinct low bits: long probe runs that wrap around, and
        // ids whose slots' 32 bits are the same (the high bits differ).
        let id = prop_oneof![
            0..40u64,
            any::<u64>(),
            (0..8u64).prop_map(|i| i << 60),
            (0..4u64).prop_map(|i| (i << 40) | 0xffff_ffff),
        ];
        prop_oneof![
            (id, 0..50i64).prop_map(|(id, t)| Op::Check(id, t)),
            (0..400usize).prop_map(Op::Remove),
        ]
    }

    proptest! {
        #[test]
        fn behaves_as_a_hash_map(
            ops in proptest::collection::vec(op(), 0..400),
            // Positions from near 2^32 wrap the slots' 32 bits.
            first in prop_oneof![Just(0u64), Just(u64::from(u32::MAX) - 20)],
        ) {
            let mut table = IdTable::default();
            let mut entries: VecDeque<(i64, u64)> = VecDeque::new();
            // id -> (expiry, position) of its newest entry.
            let mut model: HashMap<u64, (i64, u64)> = HashMap::new();
            for op in ops {
                let log = Log { entries: &entries, first };
                match op {
                    Op::Check(id, time) => {
                        // Expiries before 20 count as gone.
                        let repeat = model.get(&id).is_some_and(|&(e, _)| time <= e && e >= 20);
                        let at = first + entries.len() as u64;
                        prop_assert_eq!(table.check_and_set(id, time, 20, at, log), repeat);
                        if !repeat {
                            model.insert(id, (time + 10, at));
                            entries.push_back((time + 10, id));
                        }
                    }
                    Op::Remove(offset) => {
                        let Some(&(_, id)) = entries.get(offset) else { continue };
                        let at = first + offset as u64;
                        if model.get(&id).is_some_and(|&(_, p)| p == at) {
                            model.remove(&id);
                        }
                        table.remove_at(id, at);
                    }
                }
                prop_assert_eq!(table.len(), model.len());
            }
            let log = Log { entries: &entries, first };
            for (&id, &(_, at)) in &model {
                prop_assert_eq!(table.get(id, log), Some(at as u32));
            }
            prop_assert_eq!(table.get(12_345_678, log), model.get(&12_345_678).map(|&(_, at)| at as u32));
        }
    }

    #[test]
    fn grows_and_keeps_every_id() {
        let mut table = IdTable::default();
        let mut entries = VecDeque::new();
        for i in 0..10_000u64 {
            let id = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let log = Log {
                entries: &entries,
                first: 0,
            };
            assert!(!table.check_and_set(id, 1, 0, i, log));
            entries.push_back((5, id));
        }
        assert_eq!(table.len(), 10_000);
        let log = Log {
            entries: &entries,
            first: 0,
        };
        assert!(table.check_and_set(0, 3, 0, 10_000, log));
        assert!(
            !table.check_and_set(0, 3, 6, 10_000, log),
            "expired, so absent"
        );
        assert!(table.slots.len() <= 32_768);
    }

    #[test]
    fn ids_sharing_their_low_bits_are_told_apart_by_the_log() {
        let (a, b) = (0x1_0000_0007u64, 0x2_0000_0007u64);
        let mut table = IdTable::default();
        let mut entries = VecDeque::new();
        let log = Log {
            entries: &entries,
            first: 0,
        };
        assert!(!table.check_and_set(a, 1, 0, 0, log));
        entries.push_back((11, a));
        let log = Log {
            entries: &entries,
            first: 0,
        };
        assert!(!table.check_and_set(b, 2, 0, 1, log), "b is not a");
        entries.push_back((12, b));
        let log = Log {
            entries: &entries,
            first: 0,
        };
        assert!(table.check_and_set(a, 5, 0, 2, log));
        assert!(table.check_and_set(b, 5, 0, 2, log));
        table.remove_at(a, 0);
        let log = Log {
            entries: &entries,
            first: 0,
        };
        assert_eq!(table.get(a, log), None);
        assert_eq!(table.get(b, log), Some(1));
    }
}
