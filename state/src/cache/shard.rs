//! One shard of a time's entries: the entries in a list, in the order they
//! came, and an index from key hash to place in that list.
//!
//! A new key is appended, so the window's hottest path (most records of a
//! pane are the first of their key: 1.7M of W1's 2.0M) writes the end of a
//! list the CPU just wrote, where an entry in the hash table's own slots
//! went to a random slot of a table larger than the CPU's cache. The index
//! holds 4 bytes per key and stays in cache; only a lookup whose control
//! byte matches reads an entry. A fire or a snapshot walks the list front
//! to back. Removing one key moves the last entry into its place.

use hashbrown::hash_table::{Entry as IndexEntry, HashTable};

use super::Entry;
use crate::hint::prefetch;
use crate::keys::same;

/// The entries of one shard of one time.
pub(super) struct Shard<V> {
    index: HashTable<u32>,
    entries: Vec<Entry<V>>,
    /// The most places of the list ever written (kept across its
    /// reallocations, so it may overcount; reset when eviction allocates
    /// it again): what of a large list is resident, as it only grows at
    /// its end ([`Shard::bytes`]).
    written: usize,
}

/// A list of at least this many bytes is the allocator's alone (whole
/// pages, handed back to the OS when freed, as kflow sets mimalloc up):
/// its room past the places written is untouched and not resident, and is
/// not counted. A smaller one may sit in memory the allocator reuses
/// while resident, and counts by capacity.
const FRESH_LIST_BYTES: usize = 1 << 20;

/// A key's place in a shard: its entry, or where it would go.
pub(super) enum Slot<'a, V> {
    Occupied(Occupied<'a, V>),
    Vacant(Vacant<'a, V>),
}

/// A key's entry in a shard.
pub(super) struct Occupied<'a, V> {
    index: hashbrown::hash_table::OccupiedEntry<'a, u32>,
    entries: &'a mut Vec<Entry<V>>,
}

/// Where a key absent from a shard goes.
pub(super) struct Vacant<'a, V> {
    index: hashbrown::hash_table::VacantEntry<'a, u32>,
    entries: &'a mut Vec<Entry<V>>,
    written: &'a mut usize,
}

impl<'a, V> Occupied<'a, V> {
    pub(super) fn get(&self) -> &Entry<V> {
        &self.entries[*self.index.get() as usize]
    }

    pub(super) fn into_mut(self) -> &'a mut Entry<V> {
        &mut self.entries[*self.index.get() as usize]
    }

    /// Takes the entry out; the shard's last entry moves into its place.
    pub(super) fn remove(self) -> Entry<V> {
        let (at, index) = self.index.remove();
        let entries = self.entries;
        let at = at as usize;
        let gone = entries.swap_remove(at);
        if let Some(moved) = entries.get(at) {
            let from = entries.len() as u32;
            if let Some(place) = index.into_table().find_mut(moved.hash, |&i| i == from) {
                *place = at as u32;
            }
        }
        gone
    }
}

impl<'a, V> Vacant<'a, V> {
    pub(super) fn insert(self, entry: Entry<V>) -> &'a mut Entry<V> {
        let at = self.entries.len();
        self.entries.push(entry);
        *self.written = (*self.written).max(self.entries.len());
        // The next new key of this shard goes right after: its lines are
        // asked for now, a shard's turn or so (~16 new keys) ahead. A
        // list's end is fresh memory, and sixteen lists growing at once
        // in hash order are too many streams for the CPU to foresee.
        for next in self.entries.spare_capacity_mut().iter().take(2) {
            prefetch(next);
        }
        self.index.insert(at as u32);
        &mut self.entries[at]
    }
}

/// Whether an index slot holds the place of the entry for `key` (with
/// `hash`) in `entries`.
fn is_key<'a, V>(entries: &'a [Entry<V>], hash: u64, key: &'a [u8]) -> impl Fn(&u32) -> bool + 'a {
    move |&i| {
        let e = &entries[i as usize];
        e.hash == hash && same(&e.key, key)
    }
}

impl<V> Default for Shard<V> {
    fn default() -> Shard<V> {
        Shard {
            index: HashTable::new(),
            entries: Vec::new(),
            written: 0,
        }
    }
}

impl<V> Shard<V> {
    pub(super) fn with_capacity(n: usize) -> Shard<V> {
        Shard {
            index: HashTable::with_capacity(n),
            entries: Vec::with_capacity(n),
            written: 0,
        }
    }

    pub(super) fn find(&self, hash: u64, key: &[u8]) -> Option<&Entry<V>> {
        let entries = &self.entries;
        self.index
            .find(hash, is_key(entries, hash, key))
            .map(|&i| &entries[i as usize])
    }

    pub(super) fn entry(&mut self, hash: u64, key: &[u8]) -> Slot<'_, V> {
        let entries = &mut self.entries;
        let found = {
            let list = &*entries;
            self.index
                .entry(hash, is_key(list, hash, key), |&i| list[i as usize].hash)
        };
        match found {
            IndexEntry::Occupied(index) => Slot::Occupied(Occupied { index, entries }),
            IndexEntry::Vacant(index) => Slot::Vacant(Vacant {
                index,
                entries,
                written: &mut self.written,
            }),
        }
    }

    /// The entries as one slice, for a walk that reads ahead of itself.
    pub(super) fn as_slice(&self) -> &[Entry<V>] {
        &self.entries
    }

    /// The entries in the order they came (removals aside).
    pub(super) fn iter(&self) -> std::slice::Iter<'_, Entry<V>> {
        self.entries.iter()
    }

    pub(super) fn iter_mut(&mut self) -> std::slice::IterMut<'_, Entry<V>> {
        self.entries.iter_mut()
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries the shard holds without growing.
    #[cfg(test)]
    pub(super) fn capacity(&self) -> usize {
        self.index.capacity().min(self.entries.capacity())
    }

    /// Bytes of the index, by capacity, and of the list: a large list by
    /// the places ever written (see [`FRESH_LIST_BYTES`]), a small one by
    /// capacity.
    pub(super) fn bytes(&self) -> usize {
        let entry = std::mem::size_of::<Entry<V>>();
        let room = self.entries.capacity() * entry;
        let list = if room >= FRESH_LIST_BYTES {
            self.written.max(self.entries.len()) * entry
        } else {
            room
        };
        // Index buckets are a power of two with at most 7/8 of them usable,
        // each a u32 and a control byte.
        self.index.capacity() * 8 / 7 * (std::mem::size_of::<u32>() + 1) + list
    }

    /// Takes every entry out, in order, keeping the allocations.
    pub(super) fn drain(&mut self) -> std::vec::Drain<'_, Entry<V>> {
        self.index.clear();
        self.entries.drain(..)
    }

    /// Keeps the entries for which `keep` holds, in order; with `shrink`,
    /// gives back the memory of those that went but keeps the list's
    /// size, in fresh memory.
    pub(super) fn retain(&mut self, keep: impl FnMut(&mut Entry<V>) -> bool, shrink: bool) {
        let before = self.entries.len();
        self.entries.retain_mut(keep);
        if self.entries.len() == before {
            return;
        }
        if shrink {
            // The room the list had, in fresh memory: the pages written go
            // back to the OS with the old list, and the list grows to its
            // size before without moving (growing by doubling moved and
            // faulted in every entry about twice per spill cycle). An
            // emptied list gives everything back: its table may go.
            let kept = std::mem::take(&mut self.entries);
            if !kept.is_empty() {
                self.entries = Vec::with_capacity(before);
                self.entries.extend(kept);
            }
            self.written = self.entries.len();
            self.index = HashTable::with_capacity(self.entries.len());
        } else {
            self.index.clear();
        }
        let entries = &self.entries;
        for (at, entry) in entries.iter().enumerate() {
            self.index
                .insert_unique(entry.hash, at as u32, |&i| entries[i as usize].hash);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::cache::Key;

    #[derive(Debug, Clone)]
    enum Op {
        Add(u8, u64),
        Remove(u8),
        Retain(u64, bool),
        Drain,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => (0u8..40, 1u64..100).prop_map(|(k, v)| Op::Add(k, v)),
            3 => (0u8..40).prop_map(Op::Remove),
            1 => (2u64..5, any::<bool>()).prop_map(|(m, s)| Op::Retain(m, s)),
            1 => Just(Op::Drain),
        ]
    }

    /// Few hashes for many keys: lookups must tell keys apart by their
    /// bytes, and moved entries must be found by place, not hash.
    fn hash(key: u8) -> u64 {
        u64::from(key % 5) << 40
    }

    fn entry(key: u8, value: u64) -> Entry<u64> {
        Entry {
            hash: hash(key),
            key: Key::from_slice(&[key]),
            value,
            dirty: false,
            stored: false,
        }
    }

    proptest! {
        // Adds, removals, retains and drains agree with a map, and the
        // entries keep the order their keys came in.
        #[test]
        fn a_shard_is_a_map_in_arrival_order(ops in proptest::collection::vec(op(), 0..200)) {
            let mut shard: Shard<u64> = Shard::default();
            let mut model: BTreeMap<u8, u64> = BTreeMap::new();
            let mut order: Vec<u8> = Vec::new();
            for op in ops {
                match op {
                    Op::Add(key, value) => match shard.entry(hash(key), &[key]) {
                        Slot::Occupied(found) => {
                            found.into_mut().value += value;
                            *model.get_mut(&key).unwrap() += value;
                        }
                        Slot::Vacant(slot) => {
                            prop_assert!(!model.contains_key(&key));
                            prop_assert_eq!(slot.insert(entry(key, value)).value, value);
                            model.insert(key, value);
                            order.push(key);
                        }
                    },
                    Op::Remove(key) => {
                        if let Slot::Occupied(found) = shard.entry(hash(key), &[key]) {
                            prop_assert_eq!(found.get().key[0], key);
                            prop_assert_eq!(found.remove().value, model.remove(&key).unwrap());
                            // The last entry moved into the gap.
                            let at = order.iter().position(|k| *k == key).unwrap();
                            order.swap_remove(at);
                        } else {
                            prop_assert!(!model.contains_key(&key));
                        }
                    }
                    Op::Retain(m, shrink) => {
                        shard.retain(|e| e.value % m != 0, shrink);
                        model.retain(|_, v| *v % m != 0);
                        order.retain(|k| model.contains_key(k));
                    }
                    Op::Drain => {
                        let drained: Vec<u8> = shard.drain().map(|e| e.key[0]).collect();
                        prop_assert_eq!(&drained, &order);
                        model.clear();
                        order.clear();
                    }
                }
                prop_assert_eq!(shard.len(), model.len());
                for key in 0u8..40 {
                    let found = shard.find(hash(key), &[key]).map(|e| e.value);
                    prop_assert_eq!(found, model.get(&key).copied());
                }
                let keys: Vec<u8> = shard.iter().map(|e| e.key[0]).collect();
                prop_assert_eq!(&keys, &order);
            }
        }
    }
}
