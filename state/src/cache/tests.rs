//! Tests of the window cache: placement, budget, eviction, snapshots.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::pack;
use crate::store::StateStore;
use crate::StateBatch;

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
    fn is_empty(&self) -> bool {
        self.0 == 0
    }
}

fn bump(cache: &mut WindowCache<Count>, store: &StateStore, time: i64, key: &str) {
    let hash = xxhash_rust::xxh3::xxh3_64(key.as_bytes());
    cache
        .get_mut(store, time, hash, key.as_bytes(), || Count(0))
        .unwrap()
        .0 += 1;
}

/// Snapshots every time key by key, commits it and evicts: all of the
/// cache's entries are then in RocksDB only.
fn spill(cache: &mut WindowCache<Count>, store: &StateStore) {
    let mut batch = StateBatch::new();
    cache.snapshot(&mut batch, true);
    store.write(batch, crate::WriteMode::Buffered).unwrap();
    cache.evict();
}

/// Drains `time`, returning what it visited, sorted.
fn drained(cache: &mut WindowCache<Count>, store: &StateStore, time: i64) -> Vec<(String, u64)> {
    let mut seen = Vec::new();
    cache
        .drain(store, time, |k, v| {
            seen.push((String::from_utf8(k.to_vec()).unwrap(), v.0));
            Ok::<(), StateError>(())
        })
        .unwrap();
    seen.sort();
    seen
}

/// Bumps `user0` .. `user{n - 1}` at `time` once each.
fn bump_users(cache: &mut WindowCache<Count>, store: &StateStore, time: i64, n: usize) {
    for i in 0..n {
        bump(cache, store, time, &format!("user{i}"));
    }
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
    bump_users(&mut cache, &store, 60_000, 100);
    assert!(cache.over_budget(), "100 entries should pass a 2 kB budget");
    assert!(cache.should_spill());
    let mut batch = StateBatch::new();
    cache.snapshot(&mut batch, true);
    assert_eq!(batch.len(), 100);
    store.write(batch, crate::WriteMode::Buffered).unwrap();
    cache.evict();
    assert_eq!(cache.len(), 0);
    // The filter of the keys written (512 keys' worth, 640 bytes) is past
    // a quarter of this budget: dropped, so the time is always read.
    assert!(cache.written.is_empty());
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
    cache.snapshot(&mut batch, true);
    store.write(batch, crate::WriteMode::Buffered).unwrap();
    assert!(store.scan_prefix(Family::Windows, &[]).unwrap().is_empty());
}

#[test]
fn drain_visits_a_time_in_memory_in_entry_order_and_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path()).unwrap();
    let mut cache = WindowCache::new(3, usize::MAX);
    bump_users(&mut cache, &store, 60_000, 2_000);
    bump_users(&mut cache, &store, 120_000, 10);
    let order: Vec<Vec<u8>> = cache.entries(60_000).map(|(k, _)| k.to_vec()).collect();
    let mut seen = Vec::new();
    cache
        .drain(&store, 60_000, |k, v| {
            seen.push(k.to_vec());
            assert_eq!(v.0, 1);
            Ok::<(), StateError>(())
        })
        .unwrap();
    // Rows go out in the order the entries iterate, as before the drain
    // and the removal were one pass.
    assert_eq!(seen, order);
    assert_eq!(cache.entries(60_000).count(), 0);
    assert_eq!(counts(&cache, 120_000).len(), 10);
    // A visit that fails still removes the time.
    let failed = cache.drain(&store, 120_000, |_, _| {
        Err(StateError::Corrupt("stop".into()))
    });
    assert!(failed.is_err());
    assert_eq!(cache.entries(120_000).count(), 0);
}

#[test]
fn drain_visits_stored_and_memory_entries_once_with_memory_winning() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path()).unwrap();
    let mut cache = WindowCache::new(3, usize::MAX);
    for key in ["a", "b", "c"] {
        bump(&mut cache, &store, 60_000, key);
    }
    spill(&mut cache, &store);
    // `b` is updated again: memory (2) shadows the stored copy (1).
    bump(&mut cache, &store, 60_000, "b");
    assert_eq!(
        drained(&mut cache, &store, 60_000),
        [
            ("a".to_string(), 1),
            ("b".to_string(), 2),
            ("c".to_string(), 1)
        ]
    );
    assert!(cache.is_empty());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    // Keys that share long prefixes, longer and shorter than the 16 bytes
    // the drain orders by first: every key is visited once, with its
    // count in memory when it was bumped after the eviction.
    #[test]
    fn drain_walks_stored_and_memory_keys_in_step(
        stored in proptest::collection::btree_set("(k{0,20})[ab]{0,3}", 1..40),
        again in proptest::collection::btree_set("(k{0,20})[ab]{0,3}", 0..40),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        let mut cache = WindowCache::new(3, usize::MAX);
        for key in &stored {
            bump(&mut cache, &store, 60_000, key);
        }
        spill(&mut cache, &store);
        for key in &again {
            bump(&mut cache, &store, 60_000, key);
        }
        let seen = drained(&mut cache, &store, 60_000);
        let mut expected: Vec<(String, u64)> = stored
            .union(&again)
            .map(|k| (k.clone(), u64::from(stored.contains(k)) + u64::from(again.contains(k))))
            .collect();
        expected.sort();
        proptest::prop_assert_eq!(seen, expected);
    }
}

#[test]
fn times_are_found_in_order_across_memory_and_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path()).unwrap();
    let mut cache = WindowCache::new(1, usize::MAX);
    bump(&mut cache, &store, -120_000, "a");
    let mut batch = StateBatch::new();
    cache.snapshot(&mut batch, true);
    store.write(batch, crate::WriteMode::Buffered).unwrap();
    cache.evict();
    bump(&mut cache, &store, 60_000, "b");
    assert_eq!(cache.first_time_from(i64::MIN), Some(-120_000));
    assert_eq!(cache.first_time_from(-119_999), Some(60_000));
    assert_eq!(cache.first_time_from(60_001), None);
}

fn commit(cache: &mut WindowCache<Count>, store: &StateStore, evicting: bool) -> StateBatch {
    let mut batch = StateBatch::new();
    cache.snapshot(&mut batch, evicting);
    let mut copy = StateBatch::new();
    for chunk in &batch.chunks {
        for op in StateBatch::ops_of(chunk) {
            match op.unwrap() {
                crate::batch::Op::Put(f, k, v) => copy.put(f, k, v),
                crate::batch::Op::Delete(f, k) => copy.delete(f, k),
                crate::batch::Op::DeleteRange(f, a, b) => copy.delete_range(f, a, b),
            }
        }
    }
    store.write(batch, crate::WriteMode::Buffered).unwrap();
    copy
}

fn families(batch: &StateBatch) -> (usize, usize, usize) {
    let (mut windows, mut packs, mut ranges) = (0, 0, 0);
    for chunk in &batch.chunks {
        for op in StateBatch::ops_of(chunk) {
            match op.unwrap() {
                crate::batch::Op::Put(Family::Windows, ..) => windows += 1,
                crate::batch::Op::Put(Family::Packs, ..) => packs += 1,
                crate::batch::Op::DeleteRange(..) => ranges += 1,
                _ => {}
            }
        }
    }
    (windows, packs, ranges)
}

#[test]
fn a_time_in_memory_is_packed_and_restored_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path()).unwrap();
    let mut cache = WindowCache::new(4, usize::MAX);
    for i in 0..5_000 {
        bump(&mut cache, &store, 60_000, &format!("user{}", i % 2_000));
    }
    let batch = commit(&mut cache, &store, false);
    let (windows, packs, _) = families(&batch);
    assert_eq!(windows, 0);
    assert!((200..=pack::BUCKETS).contains(&packs), "{packs} packs");
    assert_eq!(cache.packed_times(), [60_000]);
    assert!(cache.stored_times().is_empty());

    // Clean now: nothing to write. Then one bucket changes: only it is
    // rewritten (2,000 entries over 256 buckets: cheaper than keyed).
    assert!(commit(&mut cache, &store, false).is_empty());
    for _ in 0..3 {
        bump(&mut cache, &store, 60_000, "user7");
    }
    assert_eq!(families(&commit(&mut cache, &store, false)), (0, 1, 0));

    let mut restored = WindowCache::new(4, usize::MAX);
    restored.load_packed(&store, [60_000]).unwrap();
    assert_eq!(counts(&restored, 60_000), counts(&cache, 60_000));
    assert!(counts(&restored, 60_000).contains(&("user7".to_string(), 6)));
    // Restored entries are clean; packed times are never evicted.
    restored.evict();
    assert_eq!(restored.len(), 2_000);
    assert!(commit(&mut restored, &store, false).is_empty());
}

#[test]
fn a_packed_time_with_few_changes_is_stored_key_by_key_from_then_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path()).unwrap();
    let mut cache = WindowCache::new(4, usize::MAX);
    bump_users(&mut cache, &store, 60_000, 20_000);
    commit(&mut cache, &store, false);
    // 100 changes touch ~83 of the 256 buckets: rewriting them would copy
    // ~6,500 entries, more than 16 puts per change.
    bump_users(&mut cache, &store, 60_000, 100);
    let batch = commit(&mut cache, &store, false);
    assert_eq!(families(&batch), (20_000, 0, 1));
    assert_eq!(cache.stored_times(), [60_000]);
    assert!(cache.packed_times().is_empty());
    assert!(store.scan_prefix(Family::Packs, &[]).unwrap().is_empty());
    // From then on only dirty entries are written.
    bump(&mut cache, &store, 60_000, "user5");
    assert_eq!(families(&commit(&mut cache, &store, false)), (1, 0, 0));
    cache.evict();
    assert_eq!(cache.len(), 0);
    cache.load(&store, 60_000).unwrap();
    assert!(counts(&cache, 60_000).contains(&("user5".to_string(), 3)));
}

#[test]
fn a_snapshot_for_eviction_stores_packed_times_key_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path()).unwrap();
    let mut cache = WindowCache::new(4, usize::MAX);
    for i in 0..300 {
        bump(&mut cache, &store, 60_000, &format!("user{i}"));
        bump(&mut cache, &store, 120_000, &format!("user{i}"));
    }
    commit(&mut cache, &store, false);
    assert_eq!(cache.packed_times(), [60_000, 120_000]);
    bump(&mut cache, &store, 120_000, "user1");
    // Every entry of both times is written, and their packs deleted.
    assert_eq!(families(&commit(&mut cache, &store, true)), (600, 0, 2));
    assert_eq!(cache.stored_times(), [60_000, 120_000]);
    cache.evict();
    assert_eq!(cache.len(), 0);
    assert!(store.scan_prefix(Family::Packs, &[]).unwrap().is_empty());
    let mut seen = 0;
    cache
        .drain(&store, 120_000, |k, v| {
            seen += 1;
            assert_eq!(v.0, if k == b"user1" { 2 } else { 1 });
            Ok::<(), StateError>(())
        })
        .unwrap();
    assert_eq!(seen, 300);
}

#[test]
fn removing_a_packed_time_deletes_its_packs() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path()).unwrap();
    let mut cache = WindowCache::new(4, usize::MAX);
    bump(&mut cache, &store, 60_000, "a");
    bump(&mut cache, &store, 120_000, "b");
    commit(&mut cache, &store, false);
    cache.remove(60_000);
    assert_eq!(families(&commit(&mut cache, &store, false)), (0, 0, 1));
    let left = store.scan_prefix(Family::Packs, &[]).unwrap();
    assert_eq!(left.len(), 1);
    assert!(left[0].0.starts_with(&codec::prefix(4, 120_000)));
    assert_eq!(cache.packed_times(), [120_000]);
}

#[test]
fn a_time_both_packed_and_keyed_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path()).unwrap();
    let mut cache: WindowCache<Count> = WindowCache::new(4, usize::MAX);
    cache.add_spilled([60_000]);
    let err = cache.load_packed(&store, [60_000]).unwrap_err();
    assert!(
        err.to_string().contains("both packed and key by key"),
        "{err}"
    );
}

#[test]
fn a_packed_time_without_packs_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path()).unwrap();
    let mut cache: WindowCache<Count> = WindowCache::new(4, usize::MAX);
    let err = cache.load_packed(&store, [60_000]).unwrap_err();
    assert!(err.to_string().contains("has no packs"), "{err}");
}

#[test]
fn loaded_packs_count_against_the_budget_until_removed() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path()).unwrap();
    let mut cache = WindowCache::new(4, usize::MAX);
    for i in 0..1_000 {
        bump(
            &mut cache,
            &store,
            60_000,
            &format!("a-key-longer-than-sixteen-bytes-{i}"),
        );
    }
    commit(&mut cache, &store, false);
    let mut restored: WindowCache<Count> = WindowCache::new(4, usize::MAX);
    restored.load_packed(&store, [60_000]).unwrap();
    // Slots plus the keys that live on the heap.
    let before = restored.bytes();
    assert!(before > 1_000 * 32, "{before}");
    restored.remove(60_000);
    // The keys are freed; the emptied table stays, counted, for the next
    // time, until an eviction wants the memory back.
    let after = restored.bytes();
    assert!(
        after > 0 && after + 1_000 * 16 < before,
        "{before} -> {after}"
    );
    restored.evict();
    assert_eq!(restored.bytes(), 0);
}

#[test]
fn a_removed_times_table_is_reused_by_the_next_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path()).unwrap();
    let mut cache: WindowCache<Count> = WindowCache::new(4, usize::MAX);
    for i in 0..1_000 {
        bump(&mut cache, &store, 60_000, &format!("k{i}"));
    }
    let full = cache.bytes();
    cache.remove(60_000);
    assert_eq!(cache.bytes(), full, "short keys live in the slots");
    for i in 0..1_000 {
        bump(&mut cache, &store, 120_000, &format!("k{i}"));
    }
    assert_eq!(cache.bytes(), full, "the same slots, not a second table");
    assert_eq!(cache.entries(60_000).count(), 0);
    assert_eq!(cache.entries(120_000).count(), 1_000);
}

#[test]
fn a_time_moved_to_keys_is_removed_from_the_keyed_family_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path()).unwrap();
    let mut cache = WindowCache::new(4, usize::MAX);
    bump(&mut cache, &store, 60_000, "a");
    commit(&mut cache, &store, false);
    commit(&mut cache, &store, true);
    assert_eq!(cache.stored_times(), [60_000]);
    cache.remove(60_000);
    assert_eq!(families(&commit(&mut cache, &store, false)), (0, 0, 1));
    assert!(store.scan_prefix(Family::Windows, &[]).unwrap().is_empty());
    assert!(store.scan_prefix(Family::Packs, &[]).unwrap().is_empty());
}

#[test]
fn a_cache_past_a_third_of_its_budget_stores_key_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path()).unwrap();
    let mut cache = WindowCache::new(4, 1 << 20);
    bump_users(&mut cache, &store, 60_000, 100);
    assert!(cache.bytes() < (1 << 20) / 3);
    commit(&mut cache, &store, false);
    assert_eq!(cache.packed_times(), [60_000]);
    bump_users(&mut cache, &store, 120_000, 20_000);
    assert!(cache.bytes() > (1 << 20) / 3);
    // Both times move to keys, the clean packed one included.
    assert_eq!(families(&commit(&mut cache, &store, false)), (20_100, 0, 1));
    assert!(cache.packed_times().is_empty());
}

/// A value that records its updates in order (order-sensitive, growing).
#[derive(Debug, PartialEq, Clone)]
struct Seq(Vec<u8>);

impl StateValue for Seq {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0);
    }
    fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        Ok(Seq(bytes.to_vec()))
    }
    fn heap_bytes(&self) -> usize {
        self.0.capacity()
    }
}

#[test]
fn batched_updates_of_evicted_keys_equal_updates_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path()).unwrap();
    let (mut one, mut many) = (
        WindowCache::new(6, usize::MAX),
        WindowCache::new(7, usize::MAX),
    );
    let hash = |n: &str| xxhash_rust::xxh3::xxh3_64(n.as_bytes());
    for cache in [&mut one, &mut many] {
        for i in 0..3_000 {
            let name = format!("user{i}");
            cache
                .get_mut(&store, 60_000, hash(&name), name.as_bytes(), || {
                    Seq(Vec::new())
                })
                .unwrap()
                .0
                .push(b's');
        }
        let mut batch = StateBatch::new();
        cache.snapshot(&mut batch, true);
        store.write(batch, crate::WriteMode::Buffered).unwrap();
        cache.evict();
        assert_eq!(cache.len(), 0);
        // A few keys back in memory: hits among the misses.
        for i in 0..50 {
            let name = format!("user{}", i * 60);
            cache
                .get_mut(&store, 60_000, hash(&name), name.as_bytes(), || {
                    Seq(Vec::new())
                })
                .unwrap()
                .0
                .push(b'h');
        }
    }
    // Stored keys, new keys, in-memory keys and repeats, more than one
    // read batch's worth; each update appends its record's number.
    let names: Vec<String> = (0..5_000)
        .map(|i| format!("user{}", (i * 7) % 4_000))
        .collect();
    let keys: Vec<(u64, &[u8])> = names.iter().map(|n| (hash(n), n.as_bytes())).collect();
    assert!(many.is_spilled_miss(60_000, keys[2].0, keys[2].1));
    assert!(!many.is_spilled_miss(60_000, hash("user0"), b"user0"));
    many.update_spilled(
        &store,
        60_000,
        &keys,
        || Seq(Vec::new()),
        |i, v| {
            v.0.extend_from_slice(&(i as u16).to_le_bytes());
        },
    )
    .unwrap();
    for (i, name) in names.iter().enumerate() {
        one.get_mut(&store, 60_000, hash(name), name.as_bytes(), || {
            Seq(Vec::new())
        })
        .unwrap()
        .0
        .extend_from_slice(&(i as u16).to_le_bytes());
    }
    let all = |cache: &WindowCache<Seq>| {
        let mut v: Vec<(Vec<u8>, Vec<u8>)> = cache
            .entries(60_000)
            .map(|(k, v)| (k.to_vec(), v.0.clone()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(all(&many), all(&one));
    // user7: stored, then records 1 and 4001, in that order.
    let user7 = all(&many)
        .into_iter()
        .find(|(k, _)| k == b"user7")
        .unwrap()
        .1;
    assert_eq!(user7, [b's', 1, 0, 0xa1, 0x0f]);
    assert!(!many.is_spilled_miss(60_000, keys[2].0, keys[2].1));
}

#[test]
fn a_key_the_cache_never_wrote_is_not_looked_up_until_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path()).unwrap();
    let mut cache = WindowCache::new(7, usize::MAX);
    bump_users(&mut cache, &store, 60_000, 100);
    commit(&mut cache, &store, true);
    cache.evict();
    // Partials planted behind the cache's back: only a lookup can see them.
    let mut planted = StateBatch::new();
    for ghost in ["ghost", "ghost2"] {
        let mut key = Vec::new();
        codec::encode_key(7, 60_000, ghost.as_bytes(), &mut key);
        planted.put(Family::Windows, &key, &41u64.to_le_bytes());
    }
    store.write(planted, crate::WriteMode::Buffered).unwrap();
    let hash = |n: &str| xxhash_rust::xxh3::xxh3_64(n.as_bytes());

    // This cache wrote every stored key of the time: "ghost" is not one.
    assert!(!cache.is_spilled_miss(60_000, hash("ghost"), b"ghost"));
    assert!(cache.is_spilled_miss(60_000, hash("user5"), b"user5"));
    bump(&mut cache, &store, 60_000, "ghost");
    bump(&mut cache, &store, 60_000, "user5");
    let keys = [
        (hash("ghost2"), &b"ghost2"[..]),
        (hash("user6"), &b"user6"[..]),
    ];
    cache
        .update_spilled(&store, 60_000, &keys, || Count(0), |_, v| v.0 += 1)
        .unwrap();
    let seen = counts(&cache, 60_000);
    for (key, count) in [("ghost", 1), ("user5", 2), ("ghost2", 1), ("user6", 2)] {
        assert!(seen.contains(&(key.to_string(), count)), "{key}: {seen:?}");
    }

    // Restored state: nothing is known about what is stored, so every key
    // not in memory is looked up.
    let mut restored: WindowCache<Count> = WindowCache::new(7, usize::MAX);
    restored.add_spilled([60_000]);
    assert!(restored.is_spilled_miss(60_000, hash("ghost"), b"ghost"));
    bump(&mut restored, &store, 60_000, "ghost");
    restored
        .update_spilled(&store, 60_000, &keys[..1], || Count(0), |_, v| v.0 += 1)
        .unwrap();
    let seen = counts(&restored, 60_000);
    assert!(seen.contains(&("ghost".to_string(), 42)), "{seen:?}");
    assert!(seen.contains(&("ghost2".to_string(), 42)), "{seen:?}");
}

/// Empties `key` at `time` (the way a caller removes one key).
fn empty(cache: &mut WindowCache<Count>, store: &StateStore, time: i64, key: &str) {
    let hash = xxhash_rust::xxh3::xxh3_64(key.as_bytes());
    cache
        .get_mut(store, time, hash, key.as_bytes(), || Count(0))
        .unwrap()
        .0 = 0;
}

#[test]
fn an_emptied_key_is_deleted_whether_packed_keyed_or_evicted() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path()).unwrap();
    let mut cache = WindowCache::new(9, usize::MAX);
    // Packed: user3's bucket is rewritten without it.
    bump_users(&mut cache, &store, 60_000, 2_000);
    commit(&mut cache, &store, false);
    assert_eq!(cache.packed_times(), [60_000]);
    empty(&mut cache, &store, 60_000, "user3");
    commit(&mut cache, &store, false);
    assert_eq!(cache.len(), 1_999, "the emptied entry left memory");
    let mut restored = WindowCache::new(9, usize::MAX);
    restored.load_packed(&store, [60_000]).unwrap();
    assert_eq!(counts(&restored, 60_000).len(), 1_999);
    assert!(!counts(&restored, 60_000).iter().any(|(k, _)| k == "user3"));

    // Keyed and evicted: the stored key is deleted, so reading it back
    // (it is not in memory) finds nothing.
    bump_users(&mut cache, &store, 120_000, 100);
    commit(&mut cache, &store, true);
    cache.evict();
    empty(&mut cache, &store, 120_000, "user5");
    commit(&mut cache, &store, false);
    bump(&mut cache, &store, 120_000, "user5");
    bump(&mut cache, &store, 120_000, "user6");
    let mut seen = Vec::new();
    cache
        .drain::<StateError>(&store, 120_000, |k, v| {
            seen.push((String::from_utf8(k.to_vec()).unwrap(), v.0));
            Ok(())
        })
        .unwrap();
    assert_eq!(seen.len(), 100);
    assert!(seen.contains(&("user5".to_string(), 1)), "{seen:?}");
    assert!(seen.contains(&("user6".to_string(), 2)));

    // A packed bucket whose only entry is emptied has its pack deleted.
    let mut small = WindowCache::new(10, usize::MAX);
    bump(&mut small, &store, 0, "only");
    commit(&mut small, &store, false);
    empty(&mut small, &store, 0, "only");
    let batch = commit(&mut small, &store, false);
    assert_eq!(families(&batch), (0, 0, 0));
    assert!(!batch.is_empty(), "the pack is deleted");
    assert!(store
        .scan_prefix(Family::Packs, &codec::prefix(10, 0))
        .unwrap()
        .is_empty());
}

#[test]
fn an_emptied_key_never_stored_leaves_at_once_and_a_stored_one_at_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path()).unwrap();
    let mut cache = WindowCache::new(11, usize::MAX);
    bump(&mut cache, &store, 0, "old");
    commit(&mut cache, &store, false);
    bump(&mut cache, &store, 0, "new");
    let before = cache.bytes();
    for key in ["old", "new"] {
        empty(&mut cache, &store, 0, key);
        cache.discard(
            0,
            xxhash_rust::xxh3::xxh3_64(key.as_bytes()),
            key.as_bytes(),
        );
    }
    // "new" was never written: gone, and no write for it; "old" waits for
    // the snapshot that deletes its pack entry.
    assert_eq!(cache.len(), 1);
    assert!(cache.bytes() <= before);
    let batch = commit(&mut cache, &store, false);
    assert!(!batch.is_empty());
    assert_eq!(cache.len(), 0);
    // The time has no entry left: it is no longer listed (a restore
    // would look for its packs), and no pack of it is left behind.
    assert!(cache.packed_times().is_empty() && cache.stored_times().is_empty());
    assert!(store
        .scan_prefix(Family::Packs, &codec::prefix(11, 0))
        .unwrap()
        .is_empty());
    // Discarding a key with a value, or one not there, changes nothing.
    bump(&mut cache, &store, 0, "kept");
    cache.discard(0, xxhash_rust::xxh3::xxh3_64(b"kept"), b"kept");
    cache.discard(5, 1, b"absent");
    assert_eq!(counts(&cache, 0), [("kept".to_string(), 1)]);
}
