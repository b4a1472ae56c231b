//! Moving a [`WindowCache`]'s partials to and from RocksDB: snapshots
//! (packed or key by key), eviction, and loading stored times back.

use super::written::WrittenKeys;
use super::{table_of, Entry, Table, WindowCache};
use crate::codec;
use crate::family::Family;
use crate::hint::prefetch;
use crate::pack;
use crate::store::StateStore;
use crate::{StateBatch, StateError, StateValue};

impl<V: StateValue> WindowCache<V> {
    /// Applies a run of updates to keys of `time` in order: `apply(i, ..)`
    /// updates `keys[i]`'s partial, created with `init` when stored
    /// nowhere. The stored partials of keys not in memory are read first,
    /// with one sorted, batched multi-get per [`READ_BATCH`] keys (RocksDB
    /// walks each file once per batch instead of once per key), so the
    /// result is exactly that of [`WindowCache::get_mut`] key by key: each
    /// partial is the stored one updated in arrival order. Memory the
    /// updates grow values by is accounted (as [`WindowCache::account`]).
    ///
    /// # Errors
    /// [`StateError`] when a read or a decode fails.
    pub fn update_spilled(
        &mut self,
        store: &StateStore,
        time: i64,
        keys: &[(u64, &[u8])],
        init: impl Fn() -> V,
        mut apply: impl FnMut(usize, &mut V),
    ) -> Result<(), StateError> {
        if self.spilled.contains(&time) {
            let table = table_of(&mut self.times, &mut self.spare, time);
            let written = self.written.get(&time);
            let mut missing: Vec<(u128, usize)> = (0..keys.len())
                .filter(|&i| written.is_none_or(|w| w.may_contain(keys[i].0)))
                .filter(|&i| table.find(keys[i].0, keys[i].1).is_none())
                .map(|i| (order_prefix(keys[i].1), i))
                .collect();
            missing
                .sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| keys[a.1].1.cmp(keys[b.1].1)));
            missing.dedup_by(|a, b| keys[a.1].1 == keys[b.1].1);
            self.stats.spilled_reads += missing.len() as u64;
            let mut full: Vec<Vec<u8>> = Vec::new();
            let mut found: Vec<Option<V>> = Vec::new();
            for part in missing.chunks(READ_BATCH) {
                full.resize_with(part.len(), Vec::new);
                for (bytes, &(_, i)) in full.iter_mut().zip(part) {
                    bytes.clear();
                    codec::encode_key(self.instance, time, keys[i].1, bytes);
                }
                found.clear();
                found.resize_with(part.len(), || None);
                store.multi_get(Family::Windows, &full[..part.len()], |j, bytes| {
                    found[j] = Some(V::decode(bytes)?);
                    Ok(())
                })?;
                let table = table_of(&mut self.times, &mut self.spare, time);
                for (&(_, i), value) in part.iter().zip(found.drain(..)) {
                    let (hash, key) = keys[i];
                    self.bytes += table.insert_absent(hash, key, true, || {
                        Ok(match value {
                            Some(value) => (value, true),
                            None => (init(), false),
                        })
                    })?;
                }
            }
        }
        for (i, &(hash, key)) in keys.iter().enumerate() {
            let value = self.get_mut(store, time, hash, key, &init)?;
            let before = value.heap_bytes();
            apply(i, value);
            let grown = value.heap_bytes().saturating_sub(before);
            self.bytes += grown;
        }
        Ok(())
    }

    /// Loads the packs of `times` (restored state that was wholly in memory
    /// when it was checkpointed) into memory, as clean entries.
    ///
    /// # Errors
    /// [`StateError::Corrupt`] when a pack does not decode or a time is
    /// also stored key by key; [`StateError::Rocks`] when the scan fails.
    pub fn load_packed(
        &mut self,
        store: &StateStore,
        times: impl IntoIterator<Item = i64>,
    ) -> Result<(), StateError> {
        for time in times {
            if self.on_disk.contains(&time) {
                return Err(StateError::Corrupt(format!(
                    "time {time} of state instance {} is stored both packed and key by key",
                    self.instance
                )));
            }
            let prefix = codec::prefix(self.instance, time);
            let packs = store.scan_prefix(Family::Packs, &prefix)?;
            if packs.is_empty() {
                // A packed time always has a pack: its state is missing.
                return Err(StateError::Corrupt(format!(
                    "time {time} of state instance {} is listed as packed but has no packs",
                    self.instance
                )));
            }
            let table = self.times.entry(time).or_default();
            for (_, bytes) in packs {
                for entry in pack::entries(&bytes) {
                    let (key, value) = entry?;
                    let hash = xxhash_rust::xxh3::xxh3_64(key);
                    self.bytes +=
                        table.insert_absent(hash, key, false, || Ok((V::decode(value)?, true)))?;
                }
            }
            self.packed.insert(time);
        }
        Ok(())
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
        self.stats.spilled_reads += found.len() as u64;
        let table = self.times.entry(time).or_default();
        for (full, bytes) in found {
            let (_, _, key) = codec::decode_key(&full)?;
            let hash = xxhash_rust::xxh3::xxh3_64(key);
            self.bytes +=
                table.insert_absent(hash, key, false, || Ok((V::decode(&bytes)?, true)))?;
        }
        Ok(())
    }

    /// Calls `visit` for every entry of `time`, the stored ones that memory
    /// does not shadow and then those in memory, and removes the time.
    /// Stored entries are decoded one at a time, and read at most about a
    /// megabyte ahead, so firing a window much larger than the memory
    /// budget never loads it whole.
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
            // RocksDB yields the time's keys in byte order: walk the keys
            // in memory in the same order beside it, so a stored key is
            // found shadowed (or not) by one comparison, where hashing it
            // and probing the time's table was a sixth of firing a window
            // of 5M keys.
            let mut memory: Vec<(u128, &[u8])> = self
                .times
                .get(&time)
                .into_iter()
                .flat_map(Table::iter)
                .map(|e| (order_prefix(&e.key), &*e.key))
                .collect();
            memory.sort_unstable();
            let mut next = 0;
            let mut failed: Option<E> = None;
            // RocksDB's merging of the time's runs, on a thread of its own,
            // overlaps the decoding and `visit` here.
            store.for_each_prefix_read_ahead(Family::Windows, &prefix, |full, bytes| {
                let result = codec::decode_key(full)
                    .map_err(E::from)
                    .and_then(|(_, _, key)| {
                        let at = (order_prefix(key), key);
                        while memory.get(next).is_some_and(|m| *m < at) {
                            next += 1;
                        }
                        if memory.get(next).is_some_and(|m| *m == at) {
                            return Ok(());
                        }
                        V::decode(bytes)
                            .map_err(E::from)
                            .and_then(|v| visit(key, &v))
                    });
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
        self.remove_visiting(time, visit)
    }

    /// Writes what changed since the last snapshot, and every pending
    /// removal, into `batch`; afterwards all entries are clean.
    ///
    /// A time wholly in memory is packed: the buckets holding a changed
    /// entry are rewritten whole. It is stored key by key instead, all its
    /// entries at once and from then on only the changed ones, when few of
    /// its entries changed, when `evicting` (an [`WindowCache::evict`]
    /// follows once the batch is committed, and may drop any clean entry),
    /// or when the cache holds more than a third of its budget: packed
    /// times then move to keys ahead of the eviction that needs them there,
    /// not all in the batch taken when memory is tightest.
    pub fn snapshot(&mut self, batch: &mut StateBatch, evicting: bool) {
        let key_by_key = evicting || self.bytes() > self.budget / 3;
        for (family, time) in self.removed.drain(..) {
            let (from, to) = time_range(self.instance, time);
            batch.delete_range(family, &from, &to);
        }
        let mut packs: Vec<Vec<u8>> = Vec::new();
        let mut scratch = Vec::new();
        let mut key = Vec::new();
        for (time, table) in &mut self.times {
            if self.on_disk.contains(time) {
                let written = self.written.get_mut(time);
                write_keyed(
                    self.instance,
                    *time,
                    table,
                    false,
                    written,
                    batch,
                    &mut scratch,
                );
                continue;
            }
            let mut buckets = [0u64; pack::BUCKETS / 64];
            let mut dirty = 0;
            for entry in table.iter().filter(|e| e.dirty) {
                let b = pack::bucket(entry.hash);
                buckets[b / 64] |= 1 << (b % 64);
                dirty += 1;
            }
            if dirty == 0 && !(key_by_key && self.packed.contains(time)) {
                continue;
            }
            // Rewriting a bucket costs its entries as copies; a keyed
            // write costs about PUT_COST copies per dirty entry.
            let rewritten: usize = buckets.iter().map(|w| w.count_ones() as usize).sum();
            let per_bucket = table.len() / pack::BUCKETS + 1;
            if key_by_key || rewritten * per_bucket > PUT_COST * dirty {
                // Its first keyed write: every key it will ever have
                // stored goes through this cache from here on.
                let keys = table.len();
                let written = self
                    .written
                    .entry(*time)
                    .or_insert_with(|| WrittenKeys::expecting(keys));
                write_keyed(
                    self.instance,
                    *time,
                    table,
                    true,
                    Some(written),
                    batch,
                    &mut scratch,
                );
                if self.packed.remove(time) {
                    let (from, to) = time_range(self.instance, *time);
                    batch.delete_range(Family::Packs, &from, &to);
                }
                self.on_disk.insert(*time);
                continue;
            }
            packs.resize_with(pack::BUCKETS, Vec::new);
            for entry in table.iter_mut() {
                let b = pack::bucket(entry.hash);
                if buckets[b / 64] & (1 << (b % 64)) != 0 {
                    if !entry.value.is_empty() {
                        pack::push(&mut packs[b], &entry.key, |out| entry.value.encode(out));
                    }
                    entry.dirty = false;
                    entry.stored = true;
                }
            }
            for (b, bytes) in packs.iter_mut().enumerate() {
                if buckets[b / 64] & (1 << (b % 64)) == 0 {
                    continue;
                }
                key.clear();
                pack::key(self.instance, *time, b, &mut key);
                if bytes.is_empty() {
                    // Every entry of the bucket was emptied: it goes.
                    batch.delete(Family::Packs, &key);
                } else {
                    batch.put(Family::Packs, &key, bytes);
                    bytes.clear();
                }
            }
            self.packed.insert(*time);
        }
        self.drop_empty();
    }

    /// Drops the empty values a snapshot just deleted from RocksDB (see
    /// [`StateValue::is_empty`]) from times nothing is read back for, and
    /// such a time left with no entry at all (none of its keys is stored
    /// any more). In a spilled time the empty value stays until
    /// [`WindowCache::evict`]: until the batch is committed RocksDB still
    /// has the old value, and a read of the key would bring it back.
    fn drop_empty(&mut self) {
        let mut freed = 0;
        let mut gone = Vec::new();
        for (time, table) in &mut self.times {
            if self.spilled.contains(time) {
                continue;
            }
            for shard in &mut table.shards {
                shard.retain(
                    |e| {
                        if e.value.is_empty() && !e.dirty {
                            freed += e.bytes();
                            false
                        } else {
                            true
                        }
                    },
                    false,
                );
            }
            if table.is_empty() {
                gone.push(*time);
            }
        }
        self.bytes = self.bytes.saturating_sub(freed);
        for time in gone {
            self.times.remove(&time);
            self.packed.remove(&time);
            self.on_disk.remove(&time);
            self.written.remove(&time);
        }
    }

    /// Drops every clean entry from memory; their times become spilled.
    /// Call after [`WindowCache::snapshot`] has been written.
    pub fn evict(&mut self) {
        self.spare = None;
        let mut freed = 0;
        self.stats.evictions += 1;
        for (time, table) in &mut self.times {
            if self.packed.contains(time) {
                // Its only stored copy is its packs, which are rewritten
                // whole: it stays in memory (a snapshot taken for eviction
                // stores every time key by key).
                continue;
            }
            for shard in &mut table.shards {
                let before = shard.len();
                // Give the room back, or the table keeps its peak size.
                shard.retain(
                    |e| {
                        if e.dirty {
                            true
                        } else {
                            freed += e.bytes();
                            false
                        }
                    },
                    true,
                );
                if shard.len() != before {
                    self.spilled.insert(*time);
                }
            }
        }
        self.times.retain(|_, t| !t.is_empty());
        self.bytes = self.bytes.saturating_sub(freed);
        // Filters of written keys cannot be evicted, only dropped (a time
        // without one is always read): keep them to a quarter of the
        // budget, or they would crowd out the partials they serve.
        let mut filters = self.filter_bytes();
        while filters > self.budget / 4 {
            let largest = self.written.iter().max_by_key(|(_, w)| w.bytes());
            let Some((&time, written)) = largest else {
                break;
            };
            filters -= written.bytes();
            self.written.remove(&time);
        }
    }
}

/// Keys per multi-get in [`WindowCache::update_spilled`].
const READ_BATCH: usize = 1024;

/// What a keyed put costs, in packed entries copied (RocksDB's memtable
/// insert and log record against a copy into a pack).
const PUT_COST: usize = 16;

/// The keys from `time`'s first to just past its last, in either family.
fn time_range(instance: u32, time: i64) -> (Vec<u8>, Vec<u8>) {
    let from = codec::prefix(instance, time).to_vec();
    let to = match time.checked_add(1) {
        Some(next) => codec::prefix(instance, next).to_vec(),
        None => codec::prefix(instance.saturating_add(1), i64::MIN).to_vec(),
    };
    (from, to)
}

/// A key's first sixteen bytes as a big-endian number (zero-padded):
/// sorting by it, then by the whole key, gives the keys' byte order, and
/// most comparisons are decided by the number alone, in the sort's own
/// array, instead of by a `memcmp` through pointers to keys scattered in
/// memory (the profile of a 5M-key spilling run: a sixth of the window
/// thread). Sixteen bytes, not eight: a string key's encoding starts with
/// five bytes of tag and length, which left eight bytes three characters
/// of an id to tell keys apart.
fn order_prefix(key: &[u8]) -> u128 {
    let mut head = [0u8; 16];
    let n = key.len().min(16);
    head[..n].copy_from_slice(&key[..n]);
    u128::from_be_bytes(head)
}

/// Writes the dirty entries of `table` (with `all`, every entry) key by
/// key, in key order: RocksDB's memtable inserts a sorted run far faster
/// than keys in hash order (each insert starts where the last one ended).
/// Each written key is recorded in `written`, when the time keeps one.
///
/// In key order the entries, and the keys longer than an entry holds, are
/// read from random places of a table far larger than the CPU caches: two
/// misses per entry, a third of the window thread of a job with 5M new
/// keys. Both are prefetched a few entries ahead (the entry first, then,
/// once it has arrived, its key), and the filter of written keys is filled
/// in table order with its blocks prefetched the same way (see
/// docs/performance/spilling.md, "A keyed write read ahead").
fn write_keyed<V: StateValue>(
    instance: u32,
    time: i64,
    table: &mut Table<V>,
    all: bool,
    written: Option<&mut WrittenKeys>,
    batch: &mut StateBatch,
    value: &mut Vec<u8>,
) {
    // At most the table's size, allocated at once: collected from a
    // filter, the list grew by doubling, copying itself into fresh pages
    // (a 5M-key run's snapshots faulted in ~20 MB each that way).
    let mut entries: Vec<(u128, &mut Entry<V>)> = Vec::with_capacity(table.len());
    entries.extend(
        table
            .iter_mut()
            .filter(|e| all || e.dirty)
            .map(|e| (order_prefix(&e.key), e)),
    );
    if let Some(written) = written {
        // Still in table order.
        for i in 0..entries.len() {
            if let Some((_, ahead)) = entries.get(i + WRITE_AHEAD) {
                written.touch(ahead.hash);
            }
            let entry = &entries[i].1;
            if !entry.value.is_empty() {
                written.insert(entry.hash);
            }
        }
    }
    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.key.cmp(&b.1.key)));
    let prefix = codec::prefix(instance, time);
    for i in 0..entries.len() {
        if let Some((_, far)) = entries.get(i + 2 * WRITE_AHEAD) {
            prefetch(&**far);
        }
        if let Some((_, near)) = entries.get(i + WRITE_AHEAD) {
            if let Some(byte) = near.key.first() {
                prefetch(byte);
            }
        }
        let entry = &mut *entries[i].1;
        entry.dirty = false;
        entry.stored = true;
        if entry.value.is_empty() {
            batch.delete_prefixed(Family::Windows, &prefix, &entry.key);
            continue;
        }
        value.clear();
        entry.value.encode(value);
        batch.put_prefixed(Family::Windows, &prefix, &entry.key, value);
    }
}

/// How far ahead of its copy [`write_keyed`] prefetches an entry.
const WRITE_AHEAD: usize = 8;

#[cfg(test)]
mod tests {
    use super::order_prefix;
    use proptest::prelude::*;

    proptest! {
        // Prefix first, then the whole key: exactly the keys' byte order,
        // keys shorter and longer than the prefix, zero bytes and shared
        // prefixes included.
        #[test]
        fn prefix_then_key_is_byte_order(
            a in proptest::collection::vec(prop_oneof![Just(0u8), Just(1u8), any::<u8>()], 0..24),
            b in proptest::collection::vec(prop_oneof![Just(0u8), Just(1u8), any::<u8>()], 0..24),
        ) {
            let by_prefix = order_prefix(&a).cmp(&order_prefix(&b)).then_with(|| a.cmp(&b));
            prop_assert_eq!(by_prefix, a.cmp(&b));
            let mut longer = a.clone();
            longer.extend_from_slice(&b);
            let by_prefix = order_prefix(&a).cmp(&order_prefix(&longer)).then_with(|| a.cmp(&longer));
            prop_assert_eq!(by_prefix, a.cmp(&longer));
        }
    }
}
