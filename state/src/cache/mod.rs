//! The write-back cache of window partials in front of RocksDB.
//!
//! Partials are grouped by time (a window's or pane's end) and hashed by key
//! with the caller's stable hash, so an update is one BTreeMap step to the
//! time and one hash probe, with no RocksDB access. RocksDB is read only for
//! times that were evicted ("spilled") earlier, so a job whose state fits in
//! memory never reads the database, nor does a key the cache knows it never
//! wrote (see `written.rs`). [`WindowCache::snapshot`] (in
//! `persist.rs`, with eviction and loading) writes what changed, and the
//! removal of fired times, into a [`crate::StateBatch`]: a time wholly in
//! memory as [`crate::pack`]s, rewriting the buckets that changed; a time
//! with few changes, or any time once the cache fills, key by key (all its
//! entries when it moves to keys, then only the changed ones);
//! [`WindowCache::evict`] then drops clean entries of keyed times to honour
//! the budget.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;

use smallvec::SmallVec;

use crate::codec;
use crate::family::Family;
use crate::hint::prefetch;
use crate::store::StateStore;
use crate::StateError;
use shard::{Shard, Slot, Vacant};
use written::WrittenKeys;

mod persist;
mod rewrite;
mod shard;
mod written;

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
    /// Whether the value holds nothing and its key should go: an empty
    /// value is deleted from RocksDB at the next snapshot and then dropped
    /// from memory, so a caller removes one key by emptying its value.
    fn is_empty(&self) -> bool {
        false
    }
}

/// A cached key: short keys (most are) live inside the entry, so a probe
/// compares them without following a pointer.
type Key = SmallVec<[u8; 16]>;

struct Entry<V> {
    hash: u64,
    key: Key,
    value: V,
    dirty: bool,
    /// RocksDB may hold a copy of this key (it was read from there, or
    /// written by a snapshot): removing it then takes a delete.
    stored: bool,
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

/// How many entries ahead a walk of a shard's list prefetches.
const WALK_AHEAD: usize = 8;

/// The entries of one time, sharded by hash.
struct Table<V> {
    shards: Vec<Shard<V>>,
}

impl<V> Default for Table<V> {
    fn default() -> Table<V> {
        Table {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
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
                .map(|s| Shard::with_capacity(s.len()))
                .collect(),
        }
    }

    fn index(hash: u64) -> usize {
        // Bits hashbrown does not use for its buckets or control bytes.
        (hash >> 40) as usize % SHARDS
    }

    fn shard(&self, hash: u64) -> &Shard<V> {
        &self.shards[Self::index(hash)]
    }

    fn shard_mut(&mut self, hash: u64) -> &mut Shard<V> {
        &mut self.shards[Self::index(hash)]
    }

    fn find(&self, hash: u64, key: &[u8]) -> Option<&Entry<V>> {
        self.shard(hash).find(hash, key)
    }

    fn entry(&mut self, hash: u64, key: &[u8]) -> Slot<'_, V> {
        self.shard_mut(hash).entry(hash, key)
    }

    fn iter(&self) -> impl Iterator<Item = &Entry<V>> {
        self.shards.iter().flat_map(Shard::iter)
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = &mut Entry<V>> {
        self.shards.iter_mut().flat_map(Shard::iter_mut)
    }

    fn len(&self) -> usize {
        self.shards.iter().map(Shard::len).sum()
    }

    /// Entries the table holds without growing.
    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.shards.iter().map(Shard::capacity).sum()
    }

    /// Bytes of the shards' indexes and lists ([`Shard::bytes`]).
    fn bytes(&self) -> usize {
        self.shards.iter().map(Shard::bytes).sum()
    }

    fn is_empty(&self) -> bool {
        self.shards.iter().all(Shard::is_empty)
    }
}

impl<V: StateValue> Table<V> {
    /// Inserts `(key, value())` unless the key is already here (memory
    /// wins over what is stored); `value` runs only for a new key. Returns
    /// the heap bytes the new entry owns.
    fn insert_absent(
        &mut self,
        hash: u64,
        key: &[u8],
        dirty: bool,
        value: impl FnOnce() -> Result<(V, bool), StateError>,
    ) -> Result<usize, StateError> {
        let Slot::Vacant(slot) = self.entry(hash, key) else {
            return Ok(0);
        };
        let (value, stored) = value()?;
        let entry = Entry {
            hash,
            key: Key::from_slice(key),
            value,
            dirty,
            stored,
        };
        let bytes = entry.bytes();
        slot.insert(entry);
        Ok(bytes)
    }
}

/// Keyed partials of one operator instance, by time.
pub struct WindowCache<V> {
    instance: u32,
    times: BTreeMap<i64, Table<V>>,
    /// Times that have entries in RocksDB which may be missing from memory.
    spilled: BTreeSet<i64>,
    /// Times stored key by key in RocksDB (a superset of `spilled`).
    on_disk: BTreeSet<i64>,
    /// Times stored as packs: wholly in memory, never evicted.
    packed: BTreeSet<i64>,
    /// For keyed times whose every stored key was written by this cache
    /// (not restored), which keys those are: a key it never wrote is not
    /// looked up.
    written: BTreeMap<i64, WrittenKeys>,
    /// Stored times removed since the last snapshot, whose RocksDB entries
    /// (in this family) must go.
    removed: Vec<(Family, i64)>,
    /// The table of the last time removed, emptied, for the next new time:
    /// a stream's times hold similar key counts, and reusing the slots
    /// spares the allocator's fresh pages (their zeroing was ~3% of a
    /// keyed tumbling job's CPU). Counted in [`WindowCache::bytes`].
    spare: Option<Table<V>>,
    bytes: usize,
    budget: usize,
    stats: CacheStats,
}

/// What a cache did since it was made, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Times it evicted its clean entries.
    pub evictions: u64,
    /// Entries read back from RocksDB (evicted or restored keys).
    pub spilled_reads: u64,
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
            packed: BTreeSet::new(),
            written: BTreeMap::new(),
            removed: Vec::new(),
            spare: None,
            bytes: 0,
            budget,
            stats: CacheStats::default(),
        }
    }

    /// Evictions and reads back since the cache was made.
    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    /// Times (window panes) with entries in memory or in RocksDB.
    pub fn open_times(&self) -> usize {
        let on_disk_only = self
            .spilled
            .iter()
            .filter(|t| !self.times.contains_key(t))
            .count();
        self.times.len() + on_disk_only
    }

    /// Marks times found in RocksDB at start-up (restored state) as spilled.
    pub fn add_spilled(&mut self, times: impl IntoIterator<Item = i64>) {
        for time in times {
            self.spilled.insert(time);
            self.on_disk.insert(time);
        }
    }

    /// Times whose entries are stored key by key in RocksDB, oldest first.
    pub fn stored_times(&self) -> Vec<i64> {
        self.on_disk.iter().copied().collect()
    }

    /// Times stored as packs, oldest first. After a snapshot every time
    /// with entries is in this list or in [`WindowCache::stored_times`].
    pub fn packed_times(&self) -> Vec<i64> {
        self.packed.iter().copied().collect()
    }

    /// Estimated bytes held in memory: the shards' indexes (by capacity,
    /// with their control bytes) and lists (a large list by the places
    /// ever written, a small one by capacity), plus what entries own on
    /// the heap.
    pub fn bytes(&self) -> usize {
        self.bytes + self.table_bytes() + self.filter_bytes()
    }

    /// Bytes held by the filters of written keys.
    fn filter_bytes(&self) -> usize {
        self.written.values().map(WrittenKeys::bytes).sum()
    }

    fn table_bytes(&self) -> usize {
        self.times
            .values()
            .chain(&self.spare)
            .map(Table::bytes)
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
        let table = table_of(&mut self.times, &mut self.spare, time);
        match table.entry(hash, key) {
            Slot::Occupied(entry) => Ok(mark_dirty(entry.into_mut())),
            Slot::Vacant(slot) => {
                let (value, stored) = if may_be_stored(&self.spilled, &self.written, time, hash) {
                    let mut full = Vec::with_capacity(codec::PREFIX_LEN + key.len());
                    codec::encode_key(self.instance, time, key, &mut full);
                    match store.get(Family::Windows, &full)? {
                        Some(bytes) => (V::decode(&bytes)?, true),
                        None => (init(), false),
                    }
                } else {
                    (init(), false)
                };
                Ok(add_dirty(&mut self.bytes, slot, hash, key, value, stored))
            }
        }
    }

    /// The partial for `(time, key)` when updating it reads nothing from
    /// RocksDB: the key is in memory, or it is stored nowhere (it is then
    /// created with `init`). The entry is marked dirty. `None` when RocksDB
    /// may hold the key's partial (its time has evicted entries and the key
    /// may have been written): the caller gathers such updates for
    /// [`WindowCache::update_spilled`]. One probe of the time's table,
    /// where asking whether the key is in memory and then taking its entry
    /// took two (each a cache miss on a table larger than the CPU's).
    pub fn get_mut_in_memory(
        &mut self,
        time: i64,
        hash: u64,
        key: &[u8],
        init: impl FnOnce() -> V,
    ) -> Option<&mut V> {
        let table = table_of(&mut self.times, &mut self.spare, time);
        match table.entry(hash, key) {
            Slot::Occupied(entry) => Some(mark_dirty(entry.into_mut())),
            Slot::Vacant(slot) => {
                if may_be_stored(&self.spilled, &self.written, time, hash) {
                    return None;
                }
                Some(add_dirty(&mut self.bytes, slot, hash, key, init(), false))
            }
        }
    }

    /// Whether updating `(time, key)` would read RocksDB: the time has
    /// spilled entries, the key is not in memory, and it may be stored (the
    /// cache did not write every stored key of the time, or wrote one with
    /// this hash): when [`WindowCache::get_mut_in_memory`] answers `None`.
    /// Only tests ask it without updating.
    #[cfg(test)]
    pub(crate) fn is_spilled_miss(&self, time: i64, hash: u64, key: &[u8]) -> bool {
        may_be_stored(&self.spilled, &self.written, time, hash)
            && self
                .times
                .get(&time)
                .is_none_or(|t| t.find(hash, key).is_none())
    }

    /// Whether some time has evicted entries, so that updates may consult
    /// the filters of written keys (see [`WindowCache::touch`]).
    pub fn has_spilled(&self) -> bool {
        !self.spilled.is_empty()
    }

    /// Prefetches what checking whether `(time, key with hash)` is stored
    /// will read, for an update a few records later: the blocks of the
    /// time's filter of written keys, which miss the CPU cache on every
    /// new key of a spilled time. Changes nothing.
    pub fn touch(&self, time: i64, hash: u64) {
        if !self.spilled.contains(&time) {
            return;
        }
        if let Some(written) = self.written.get(&time) {
            written.touch(hash);
        }
    }

    /// Re-estimates the memory of one entry after the caller grew its value
    /// (e.g. a distinct set). Cheap enough to call after every update of a
    /// value whose size can change.
    pub fn account(&mut self, grown_by: usize) {
        self.bytes += grown_by;
    }

    /// Drops `(time, key)` from memory at once if RocksDB holds no copy of
    /// it (it was never read from there nor written by a snapshot), after
    /// the caller emptied its value (see [`StateValue::is_empty`]); a key
    /// with a stored copy stays, empty, for the next snapshot to delete.
    /// Keys that live briefly (a session per visit) then never cost a
    /// write, nor memory after they are gone.
    pub fn discard(&mut self, time: i64, hash: u64, key: &[u8]) {
        let Some(table) = self.times.get_mut(&time) else {
            return;
        };
        if let Slot::Occupied(entry) = table.entry(hash, key) {
            if !entry.get().stored && entry.get().value.is_empty() {
                let gone = entry.remove();
                self.bytes = self.bytes.saturating_sub(gone.bytes());
            }
        }
    }

    /// Re-estimates the memory of one entry whose value went from `before`
    /// to `after` heap bytes, either way.
    pub fn resize(&mut self, before: usize, after: usize) {
        self.bytes = (self.bytes + after).saturating_sub(before);
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
    /// Each entry prefetches the one `WALK_AHEAD` (8) places on: a sliding
    /// window's merge walks a few short lists per shard of times written
    /// minutes ago, too short for the CPU's prefetcher to warm up to.
    pub fn shard_entries(&self, time: i64, shard: usize) -> impl Iterator<Item = (u64, &[u8], &V)> {
        self.times
            .get(&time)
            .and_then(|t| t.shards.get(shard))
            .into_iter()
            .flat_map(|s| {
                let list = s.as_slice();
                list.iter().enumerate().map(move |(i, e)| {
                    if let Some(ahead) = list.get(i + WALK_AHEAD) {
                        prefetch(ahead);
                    }
                    (e.hash, &*e.key, &e.value)
                })
            })
    }

    /// The in-memory entries of `time` as `(key, value)`.
    pub fn entries(&self, time: i64) -> impl Iterator<Item = (&[u8], &V)> {
        self.entries_hashed(time)
            .map(|(_, key, value)| (key, value))
    }

    /// Drops `time` (its windows fired); its RocksDB copies are deleted at
    /// the next snapshot.
    pub fn remove(&mut self, time: i64) {
        let Ok(()) = self.remove_visiting(time, |_, _| Ok::<(), Infallible>(()));
    }

    /// [`WindowCache::remove`], calling `visit` on each in-memory entry as
    /// it is dropped, in the order of [`WindowCache::entries`]: one pass
    /// over the entries (a pane of W1 holds ~28k, 2.7 MB, more than the
    /// CPU's cache), each counted as it goes. `time` is removed whatever
    /// `visit` returns; its first error is returned.
    ///
    /// # Errors
    /// The first error of `visit`.
    pub(crate) fn remove_visiting<E>(
        &mut self,
        time: i64,
        mut visit: impl FnMut(&[u8], &V) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut failed = None;
        if let Some(mut table) = self.times.remove(&time) {
            let mut freed = 0;
            for shard in &mut table.shards {
                for entry in shard.drain() {
                    freed += entry.bytes();
                    if failed.is_none() {
                        failed = visit(&entry.key, &entry.value).err();
                    }
                }
            }
            self.bytes = self.bytes.saturating_sub(freed);
            if self.spare.is_none() {
                self.spare = Some(table);
            }
        }
        self.spilled.remove(&time);
        self.written.remove(&time);
        if self.on_disk.remove(&time) {
            self.removed.push((Family::Windows, time));
        }
        if self.packed.remove(&time) {
            self.removed.push((Family::Packs, time));
        }
        failed.map_or(Ok(()), Err)
    }
}

/// Marks `entry` changed since the last snapshot and hands out its value.
fn mark_dirty<V>(entry: &mut Entry<V>) -> &mut V {
    entry.dirty = true;
    &mut entry.value
}

/// Puts a new dirty entry in `slot`, adding the heap it owns to `bytes`.
fn add_dirty<'a, V: StateValue>(
    bytes: &mut usize,
    slot: Vacant<'a, V>,
    hash: u64,
    key: &[u8],
    value: V,
    stored: bool,
) -> &'a mut V {
    let entry = Entry {
        hash,
        key: Key::from_slice(key),
        value,
        dirty: true,
        stored,
    };
    *bytes += entry.bytes();
    &mut slot.insert(entry).value
}

/// Whether a key of `time` with `hash` that is not in memory may have a
/// stored partial: the time has evicted entries, and (when the cache wrote
/// all of them) one with that hash was written. A free function on the
/// fields it reads, for callers that hold one of the cache's tables.
fn may_be_stored(
    spilled: &BTreeSet<i64>,
    written: &BTreeMap<i64, WrittenKeys>,
    time: i64,
    hash: u64,
) -> bool {
    spilled.contains(&time) && written.get(&time).is_none_or(|w| w.may_contain(hash))
}

/// The table of `time`, created (sized like the time before it) if new.
fn table_of<'a, V>(
    times: &'a mut BTreeMap<i64, Table<V>>,
    spare: &mut Option<Table<V>>,
    time: i64,
) -> &'a mut Table<V> {
    if !times.contains_key(&time) {
        let table = match (spare.take(), times.range(..time).next_back()) {
            (Some(spare), _) => spare,
            (None, Some((_, earlier))) => Table::sized_like(earlier),
            (None, None) => Table::default(),
        };
        times.insert(time, table);
    }
    times.entry(time).or_default()
}

#[cfg(test)]
mod tests;
