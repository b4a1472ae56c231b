//! The write-back cache of window partials in front of RocksDB.
//!
//! Partials are grouped by time (a window's or pane's end) and hashed by key
//! with the caller's stable hash, so an update is one BTreeMap step to the
//! time and one hash probe, with no RocksDB access. RocksDB is read only for
//! times that were evicted ("spilled") earlier, so a job whose state fits in
//! memory never reads the database. [`WindowCache::snapshot`] writes every
//! dirty entry (and the removal of fired times) into a [`StateBatch`];
//! [`WindowCache::evict`] then drops clean entries to honour the budget.

use std::collections::{BTreeMap, BTreeSet};

use hashbrown::hash_table::{Entry as TableEntry, HashTable};
use smallvec::SmallVec;

use crate::codec;
use crate::store::{Family, StateStore};
use crate::StateBatch;
use crate::StateError;

/// A value the cache can keep and persist.
pub trait StateValue: Sized {
    /// Appends the value's bytes.
    fn encode(&self, out: &mut Vec<u8>);
    /// Reads a value written by [`StateValue::encode`].
    ///
    /// # Errors
    /// [`StateError::Corrupt`] when the bytes are not a valid encoding.
    fn decode(bytes: &[u8]) -> Result<Self, StateError>;
    /// Heap bytes owned by the value (for the memory budget).
    fn heap_bytes(&self) -> usize;
}

/// A cached key: short keys (most are) live inside the entry, so a probe
/// compares them without following a pointer.
type Key = SmallVec<[u8; 16]>;

struct Entry<V> {
    hash: u64,
    key: Key,
    value: V,
    dirty: bool,
}

impl<V: StateValue> Entry<V> {
    fn bytes(&self) -> usize {
        let key_heap = if self.key.spilled() {
            self.key.capacity()
        } else {
            0
        };
        // Heap outside the table only: the table's slots are counted by
        // capacity (see `WindowCache::table_bytes`).
        key_heap + self.value.heap_bytes()
    }
}

/// Shards per time: a table grows (doubles) one shard at a time, so a
/// resize never holds two copies of a whole large time's table at once.
/// A key lands in the same shard of every time, so callers can merge times
/// one shard at a time (see [`WindowCache::shard_entries`]).
pub const SHARDS: usize = 16;

/// The entries of one time, sharded by hash.
struct Table<V> {
    shards: Vec<HashTable<Entry<V>>>,
}

impl<V> Default for Table<V> {
    fn default() -> Table<V> {
        Table {
            shards: (0..SHARDS).map(|_| HashTable::new()).collect(),
        }
    }
}

impl<V> Table<V> {
    /// An empty table sized to hold as many entries per shard as `like`
    /// holds: times of a stream usually see similar key counts, and a table
    /// that starts at its final size never rehashes on the hot path.
    fn sized_like(like: &Table<V>) -> Table<V> {
        Table {
            shards: like
                .shards
                .iter()
                .map(|s| HashTable::with_capacity(s.len()))
                .collect(),
        }
    }

    fn index(hash: u64) -> usize {
        // Bits hashbrown does not use for its buckets or control bytes.
        (hash >> 40) as usize % SHARDS
    }

    fn shard(&self, hash: u64) -> &HashTable<Entry<V>> {
        &self.shards[Self::index(hash)]
    }

    fn shard_mut(&mut self, hash: u64) -> &mut HashTable<Entry<V>> {
        &mut self.shards[Self::index(hash)]
    }

    fn find(&self, hash: u64, key: &[u8]) -> Option<&Entry<V>> {
        self.shard(hash).find(hash, |e| &*e.key == key)
    }

    fn entry(&mut self, hash: u64, key: &[u8]) -> TableEntry<'_, Entry<V>> {
        self.shard_mut(hash)
            .entry(hash, |e| &*e.key == key, |e| e.hash)
    }

    fn iter(&self) -> impl Iterator<Item = &Entry<V>> {
        self.shards.iter().flat_map(HashTable::iter)
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = &mut Entry<V>> {
        self.shards.iter_mut().flat_map(HashTable::iter_mut)
    }

    fn len(&self) -> usize {
        self.shards.iter().map(HashTable::len).sum()
    }

    fn capacity(&self) -> usize {
        self.shards.iter().map(HashTable::capacity).sum()
    }

    fn is_empty(&self) -> bool {
        self.shards.iter().all(HashTable::is_empty)
    }
}

/// Keyed partials of one operator instance, by time.
pub struct WindowCache<V> {
    instance: u32,
    times: BTreeMap<i64, Table<V>>,
    /// Times that have entries in RocksDB which may be missing from memory.
    spilled: BTreeSet<i64>,
    /// Times that have any entries in RocksDB (a superset of `spilled`).
    on_disk: BTreeSet<i64>,
    /// Times removed since the last snapshot whose RocksDB entries must go.
    removed: Vec<i64>,
    bytes: usize,
    budget: usize,
}

impl<V: StateValue> WindowCache<V> {
    /// An empty cache for state instance `instance` (see
    /// [`codec::instance`]) that wants to stay under `budget` bytes.
    pub fn new(instance: u32, budget: usize) -> WindowCache<V> {
        WindowCache {
            instance,
            times: BTreeMap::new(),
            spilled: BTreeSet::new(),
            on_disk: BTreeSet::new(),
            removed: Vec::new(),
            bytes: 0,
            budget,
        }
    }

    /// Marks times found in RocksDB at start-up (restored state) as spilled.
    pub fn add_spilled(&mut self, times: impl IntoIterator<Item = i64>) {
        for time in times {
            self.spilled.insert(time);
            self.on_disk.insert(time);
        }
    }

    /// Times whose entries are stored in RocksDB (after a snapshot, every
    /// time with entries), oldest first.
    pub fn stored_times(&self) -> Vec<i64> {
        self.on_disk.iter().copied().collect()
    }

    /// Estimated bytes held in memory: the hash tables' slots (by
    /// capacity, used or not, with their control bytes) plus what entries
    /// own on the heap.
    pub fn bytes(&self) -> usize {
        self.bytes + self.table_bytes()
    }

    fn table_bytes(&self) -> usize {
        let slot = std::mem::size_of::<Entry<V>>() + 1;
        // Buckets are a power of two with at most 7/8 of them usable.
        self.times
            .values()
            .map(|t| t.capacity() * 8 / 7 * slot)
            .sum()
    }

    /// Whether the cache should spill: it holds more than two thirds of its
    /// budget. The last third is room for the records that arrive while the
    /// checkpoint that lets it evict is taken.
    pub fn should_spill(&self) -> bool {
        self.bytes() > self.budget / 3 * 2
    }

    /// Whether the cache holds more than its budget: the owner should stop
    /// taking records until it can evict.
    pub fn over_budget(&self) -> bool {
        self.bytes() > self.budget
    }

    /// Number of entries in memory.
    pub fn len(&self) -> usize {
        self.times.values().map(Table::len).sum()
    }

    /// Whether no entries are in memory and none are spilled.
    pub fn is_empty(&self) -> bool {
        self.times.is_empty() && self.spilled.is_empty()
    }

    /// The smallest time with entries (in memory or spilled) that is `>= from`.
    pub fn first_time_from(&self, from: i64) -> Option<i64> {
        let mem = self.times.range(from..).next().map(|(t, _)| *t);
        let disk = self.spilled.range(from..).next().copied();
        match (mem, disk) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The partial for `(time, key)`, created with `init` when absent both
    /// here and in RocksDB. The entry is marked dirty.
    ///
    /// # Errors
    /// [`StateError`] when reading a spilled entry fails.
    pub fn get_mut(
        &mut self,
        store: &StateStore,
        time: i64,
        hash: u64,
        key: &[u8],
        init: impl FnOnce() -> V,
    ) -> Result<&mut V, StateError> {
        if !self.times.contains_key(&time) {
            let table = match self.times.range(..time).next_back() {
                Some((_, earlier)) => Table::sized_like(earlier),
                None => Table::default(),
            };
            self.times.insert(time, table);
        }
        let table = self.times.entry(time).or_default();
        match table.entry(hash, key) {
            TableEntry::Occupied(entry) => {
                let entry = entry.into_mut();
                entry.dirty = true;
                Ok(&mut entry.value)
            }
            TableEntry::Vacant(slot) => {
                let value = if self.spilled.contains(&time) {
                    let mut full = Vec::with_capacity(codec::PREFIX_LEN + key.len());
                    codec::encode_key(self.instance, time, key, &mut full);
                    match store.get(Family::Windows, &full)? {
                        Some(bytes) => V::decode(&bytes)?,
                        None => init(),
                    }
                } else {
                    init()
                };
                let entry = Entry {
                    hash,
                    key: Key::from_slice(key),
                    value,
                    dirty: true,
                };
                self.bytes += entry.bytes();
                Ok(&mut slot.insert(entry).into_mut().value)
            }
        }
    }

    /// Re-estimates the memory of one entry after the caller grew its value
    /// (e.g. a distinct set). Cheap enough to call after every update of a
    /// value whose size can change.
    pub fn account(&mut self, grown_by: usize) {
        self.bytes += grown_by;
    }

    /// Brings every spilled entry of `time` back into memory, so that
    /// [`WindowCache::entries`] sees all of them.
    ///
    /// # Errors
    /// [`StateError`] when the scan or a decode fails.
    pub fn load(&mut self, store: &StateStore, time: i64) -> Result<(), StateError> {
        if !self.spilled.remove(&time) {
            return Ok(());
        }
        let prefix = codec::prefix(self.instance, time);
        let found = store.scan_prefix(Family::Windows, &prefix)?;
        let table = self.times.entry(time).or_default();
        for (full, bytes) in found {
            let (_, _, key) = codec::decode_key(&full)?;
            let hash = xxhash_rust::xxh3::xxh3_64(key);
            if let TableEntry::Vacant(slot) = table.entry(hash, key) {
                let entry = Entry {
                    hash,
                    key: Key::from_slice(key),
                    value: V::decode(&bytes)?,
                    dirty: false,
                };
                self.bytes += entry.bytes();
                slot.insert(entry);
            }
        }
        Ok(())
    }

    /// Calls `visit` for every entry of `time`, the stored ones that memory
    /// does not shadow and then those in memory, and removes the time.
    /// Stored entries are decoded one at a time, so firing a window much
    /// larger than the memory budget never loads it whole.
    ///
    /// # Errors
    /// The first error of the scan, a decode or `visit`.
    pub fn drain<E: From<StateError>>(
        &mut self,
        store: &StateStore,
        time: i64,
        mut visit: impl FnMut(&[u8], &V) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.spilled.contains(&time) {
            let prefix = codec::prefix(self.instance, time);
            let memory = self.times.get(&time);
            let mut failed: Option<E> = None;
            store.for_each_prefix(Family::Windows, &prefix, |full, bytes| {
                let step = codec::decode_key(full).map(|(_, _, key)| {
                    let hash = xxhash_rust::xxh3::xxh3_64(key);
                    let shadowed = memory.is_some_and(|t| t.find(hash, key).is_some());
                    (key, shadowed)
                });
                let result = match step {
                    Ok((_, true)) => Ok(()),
                    Ok((key, false)) => V::decode(bytes)
                        .map_err(E::from)
                        .and_then(|v| visit(key, &v)),
                    Err(e) => Err(E::from(e)),
                };
                match result {
                    Ok(()) => true,
                    Err(e) => {
                        failed = Some(e);
                        false
                    }
                }
            })?;
            if let Some(e) = failed {
                return Err(e);
            }
        }
        for (key, value) in self.entries(time) {
            visit(key, value)?;
        }
        self.remove(time);
        Ok(())
    }

    /// The in-memory entries of `time` as `(hash, key, value)`: the hash is
    /// the one the entry was stored with, so callers need not rehash.
    pub fn entries_hashed(&self, time: i64) -> impl Iterator<Item = (u64, &[u8], &V)> {
        self.times
            .get(&time)
            .into_iter()
            .flat_map(|t| t.iter().map(|e| (e.hash, &*e.key, &e.value)))
    }

    /// The in-memory entries of `time` in shard `shard` (below [`SHARDS`])
    /// as `(hash, key, value)`. A key is in the same shard of every time.
    pub fn shard_entries(&self, time: i64, shard: usize) -> impl Iterator<Item = (u64, &[u8], &V)> {
        self.times
            .get(&time)
            .and_then(|t| t.shards.get(shard))
            .into_iter()
            .flat_map(|s| s.iter().map(|e| (e.hash, &*e.key, &e.value)))
    }

    /// The in-memory entries of `time` as `(key, value)`.
    pub fn entries(&self, time: i64) -> impl Iterator<Item = (&[u8], &V)> {
        self.entries_hashed(time)
            .map(|(_, key, value)| (key, value))
    }

    /// Drops `time` (its windows fired); its RocksDB copies are deleted at
    /// the next snapshot.
    pub fn remove(&mut self, time: i64) {
        if let Some(table) = self.times.remove(&time) {
            let freed: usize = table.iter().map(Entry::bytes).sum();
            self.bytes = self.bytes.saturating_sub(freed);
        }
        self.spilled.remove(&time);
        if self.on_disk.remove(&time) {
            self.removed.push(time);
        }
    }

    /// Writes every dirty entry and every pending removal into `batch`;
    /// afterwards all entries are clean.
    pub fn snapshot(&mut self, batch: &mut StateBatch) {
        for time in self.removed.drain(..) {
            let from = codec::prefix(self.instance, time).to_vec();
            let to = match time.checked_add(1) {
                Some(next) => codec::prefix(self.instance, next).to_vec(),
                None => codec::prefix(self.instance.saturating_add(1), i64::MIN).to_vec(),
            };
            batch.delete_range(Family::Windows, &from, &to);
        }
        let (mut key, mut value) = (Vec::new(), Vec::new());
        for (time, table) in &mut self.times {
            // In key order: RocksDB's memtable inserts a sorted run far
            // faster than keys in hash order (each insert starts from where
            // the last one ended in the skip list).
            let mut dirty: Vec<&mut Entry<V>> = table.iter_mut().filter(|e| e.dirty).collect();
            dirty.sort_unstable_by(|a, b| a.key.cmp(&b.key));
            for entry in dirty {
                key.clear();
                codec::encode_key(self.instance, *time, &entry.key, &mut key);
                value.clear();
                entry.value.encode(&mut value);
                batch.put(Family::Windows, &key, &value);
                entry.dirty = false;
                self.on_disk.insert(*time);
            }
        }
    }

    /// Drops every clean entry from memory; their times become spilled.
    /// Call after [`WindowCache::snapshot`] has been written.
    pub fn evict(&mut self) {
        let mut freed = 0;
        for (time, table) in &mut self.times {
            for shard in &mut table.shards {
                let before = shard.len();
                shard.retain(|e| {
                    if e.dirty {
                        true
                    } else {
                        freed += e.bytes();
                        false
                    }
                });
                if shard.len() != before {
                    self.spilled.insert(*time);
                    // Give the slots back, or the table keeps its peak size.
                    shard.shrink_to_fit(|e| e.hash);
                }
            }
        }
        self.times.retain(|_, t| !t.is_empty());
        self.bytes = self.bytes.saturating_sub(freed);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Count(u64);

    impl StateValue for Count {
        fn encode(&self, out: &mut Vec<u8>) {
            out.extend_from_slice(&self.0.to_le_bytes());
        }
        fn decode(bytes: &[u8]) -> Result<Self, StateError> {
            let arr: [u8; 8] = bytes
                .try_into()
                .map_err(|_| StateError::Corrupt("len".into()))?;
            Ok(Count(u64::from_le_bytes(arr)))
        }
        fn heap_bytes(&self) -> usize {
            0
        }
    }

    fn bump(cache: &mut WindowCache<Count>, store: &StateStore, time: i64, key: &str) {
        let hash = xxhash_rust::xxh3::xxh3_64(key.as_bytes());
        cache
            .get_mut(store, time, hash, key.as_bytes(), || Count(0))
            .unwrap()
            .0 += 1;
    }

    fn counts(cache: &WindowCache<Count>, time: i64) -> Vec<(String, u64)> {
        let mut out: Vec<_> = cache
            .entries(time)
            .map(|(k, v)| (String::from_utf8(k.to_vec()).unwrap(), v.0))
            .collect();
        out.sort();
        out
    }

    #[test]
    fn a_key_is_in_the_same_shard_of_every_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        let mut cache = WindowCache::new(7, usize::MAX);
        for i in 0..500 {
            bump(&mut cache, &store, 60_000, &format!("user{i}"));
        }
        for i in (0..500).step_by(2) {
            bump(&mut cache, &store, 120_000, &format!("user{i}"));
        }
        // The later time's table started at the earlier one's shard sizes.
        let capacity = |t: i64| cache.times[&t].capacity();
        assert!(capacity(120_000) >= 500, "{}", capacity(120_000));
        let shard_of = |time: i64| {
            let mut found = std::collections::BTreeMap::new();
            for shard in 0..SHARDS {
                for (_, key, _) in cache.shard_entries(time, shard) {
                    assert!(found.insert(key.to_vec(), shard).is_none());
                }
            }
            found
        };
        let (early, late) = (shard_of(60_000), shard_of(120_000));
        assert_eq!((early.len(), late.len()), (500, 250));
        for (key, shard) in &late {
            assert_eq!(early[key], *shard, "{}", String::from_utf8_lossy(key));
        }
        assert!(
            early
                .values()
                .collect::<std::collections::BTreeSet<_>>()
                .len()
                > 1
        );
    }

    #[test]
    fn budget_is_reported_and_eviction_frees_memory_without_losing_counts() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        let mut cache = WindowCache::new(7, 2_000);
        for i in 0..100 {
            bump(&mut cache, &store, 60_000, &format!("user{i}"));
        }
        assert!(cache.over_budget(), "100 entries should pass a 2 kB budget");
        assert!(cache.should_spill());
        let mut batch = StateBatch::new();
        cache.snapshot(&mut batch);
        assert_eq!(batch.len(), 100);
        store.write(batch, false).unwrap();
        cache.evict();
        assert_eq!(cache.len(), 0);
        assert_eq!(cache.bytes(), 0);
        assert!(!cache.over_budget());
        assert!(!cache.should_spill());
        assert_eq!(cache.first_time_from(i64::MIN), Some(60_000));

        // A miss on a spilled time reads the stored partial back.
        bump(&mut cache, &store, 60_000, "user3");
        assert_eq!(cache.len(), 1);
        cache.load(&store, 60_000).unwrap();
        let all = counts(&cache, 60_000);
        assert_eq!(all.len(), 100);
        assert!(all.contains(&("user3".to_string(), 2)));
        assert!(all.contains(&("user4".to_string(), 1)));

        // Removing the time deletes its stored copies at the next snapshot.
        cache.remove(60_000);
        assert!(cache.is_empty());
        let mut batch = StateBatch::new();
        cache.snapshot(&mut batch);
        store.write(batch, false).unwrap();
        assert!(store.scan_prefix(Family::Windows, &[]).unwrap().is_empty());
    }

    #[test]
    fn drain_visits_stored_and_memory_entries_once_with_memory_winning() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        let mut cache = WindowCache::new(3, usize::MAX);
        for key in ["a", "b", "c"] {
            bump(&mut cache, &store, 60_000, key);
        }
        let mut batch = StateBatch::new();
        cache.snapshot(&mut batch);
        store.write(batch, false).unwrap();
        cache.evict();
        // `b` is updated again: memory (2) shadows the stored copy (1).
        bump(&mut cache, &store, 60_000, "b");
        let mut seen = Vec::new();
        cache
            .drain(&store, 60_000, |k, v| {
                seen.push((String::from_utf8(k.to_vec()).unwrap(), v.0));
                Ok::<(), StateError>(())
            })
            .unwrap();
        seen.sort();
        assert_eq!(
            seen,
            [
                ("a".to_string(), 1),
                ("b".to_string(), 2),
                ("c".to_string(), 1)
            ]
        );
        assert!(cache.is_empty());
    }

    #[test]
    fn times_are_found_in_order_across_memory_and_disk() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        let mut cache = WindowCache::new(1, usize::MAX);
        bump(&mut cache, &store, -120_000, "a");
        let mut batch = StateBatch::new();
        cache.snapshot(&mut batch);
        store.write(batch, false).unwrap();
        cache.evict();
        bump(&mut cache, &store, 60_000, "b");
        assert_eq!(cache.first_time_from(i64::MIN), Some(-120_000));
        assert_eq!(cache.first_time_from(-119_999), Some(60_000));
        assert_eq!(cache.first_time_from(60_001), None);
    }
}
