//! Dropping producer retries: records whose id field was already seen
//! within the job's `dedup.within` span of event time.
//!
//! Seen ids are kept as 64-bit hashes with their expiry time, in memory for
//! the check (a log in the order they came, indexed by an 8-byte-slot
//! table, [`table`]) and in RocksDB's dedup family for recovery. A checkpoint
//! writes the ids added since the previous one as a few packed *blobs*, one
//! per expiry bucket (`within / 8`, at least a second), each id its hash
//! and the step from the expiry before it, ~10 bytes ([`blob`]).
//! Once the watermark passes a bucket's end every id in it has expired,
//! and one range delete drops the bucket. So a checkpoint costs a memory
//! copy per id, not a RocksDB key per id: one key per id (inserted at
//! random hash positions into the memtable skip list) made a 2M-id
//! checkpoint take 11.6 s (5.8 us per id). The stored set always matches the
//! source's checkpointed position.
//!
//! Checkpoints written before this format (one key per id, `source \0 |
//! hash` -> expiry) are still read, and dropped with their buckets' range
//! once expired.
//!
//! A block-parallel file source checks ids ahead of what it has handed on
//! ([`Dedup::check`] with hashes its decoders made, [`id_hash`]); a
//! snapshot then writes only the ids up to the position the checkpoint
//! stands for ([`Dedup::mark`], [`Dedup::save_through`]), and an id the
//! look-ahead saw expire stays in memory until it is written or had
//! expired at the mark of the last block handed on.

use std::collections::{BTreeSet, VecDeque};

use kflow_jobs::Value;
use kflow_state::{Family, StateBatch, StateError, StateStore};

use crate::dataflow::key;

mod blob;
mod table;

use self::blob::WORD;
use self::table::{IdTable, Log};

/// How far ahead ids are prefetched (see [`Dedup::touch`]): the misses of
/// the 16 ids ahead are in flight while one is checked.
pub const TOUCH_AHEAD: usize = 16;

/// The seen-id set of one source.
#[derive(Debug)]
pub struct Dedup {
    within: i64,
    /// Expiry bucket width, ms.
    bucket_ms: i64,
    prefix: Vec<u8>,
    /// Id hash -> its newest entry in `expiries`.
    seen: IdTable,
    /// Every remembered id in the order it was added, with its expiry;
    /// expired ones leave from the front. `seen`'s slots point only at
    /// entries from `cursor` on.
    expiries: VecDeque<(i64, u64)>,
    /// Entries ever popped from the front of `expiries`.
    popped: u64,
    /// The first entry (counted like `unsaved`) not expired yet.
    cursor: u64,
    /// Where the next snapshot stops, and the watermark there: `None`
    /// writes everything checked so far.
    limit: Option<Mark>,
    /// The first entry (counted over the whole run, popped ones included)
    /// that no snapshot wrote yet: the ids added since the last snapshot
    /// are the tail of `expiries`, without a copy of their own.
    unsaved: u64,
    /// Buckets with ids stored.
    stored: BTreeSet<i64>,
    /// The newest watermark ids were expired by.
    expired_through: i64,
    /// Blob sequence numbers: unique per bucket across snapshots and
    /// restarts.
    sequence: u64,
    /// Whether the store holds entries of the one-key-per-id format.
    legacy: bool,
    scratch: Vec<u8>,
}

/// A point in the ids checked: how many, and the watermark there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    entries: u64,
    watermark: i64,
}

/// The hash a record's id is remembered by; `None` for a record without
/// one (null, or an object or array), which is never a duplicate.
/// `scratch` is working space.
pub fn id_hash(value: &Value<'_>, scratch: &mut Vec<u8>) -> Option<u64> {
    if value.is_null() {
        return None;
    }
    scratch.clear();
    key::encode_value(value, scratch)?;
    Some(key::hash(scratch))
}

impl Dedup {
    /// An empty set for source `source` remembering ids for `within` ms.
    pub fn new(source: &str, within: i64) -> Dedup {
        let mut prefix = source.as_bytes().to_vec();
        prefix.push(0);
        Dedup {
            within,
            bucket_ms: (within / 8).max(1_000),
            prefix,
            seen: IdTable::default(),
            expiries: VecDeque::new(),
            popped: 0,
            cursor: 0,
            limit: None,
            unsaved: 0,
            stored: BTreeSet::new(),
            expired_through: i64::MIN,
            sequence: 0,
            legacy: false,
            scratch: Vec::new(),
        }
    }

    /// Loads the ids stored by the last checkpoint.
    ///
    /// # Errors
    /// State errors reading them.
    pub fn restore(&mut self, store: &StateStore) -> Result<(), StateError> {
        let mut loaded: Vec<(i64, u64)> = Vec::new();
        let corrupt = || StateError::Corrupt("malformed dedup entry".into());
        for (k, v) in store.scan_prefix(Family::Dedup, &self.prefix)? {
            let rest = k.get(self.prefix.len()..).ok_or_else(corrupt)?;
            match rest.len() {
                // The one-key-per-id format.
                WORD => {
                    let h = u64::from_be_bytes(rest.try_into().map_err(|_| corrupt())?);
                    let expiry = <[u8; 8]>::try_from(&v[..]).map_err(|_| corrupt())?;
                    loaded.push((i64::from_be_bytes(expiry), h));
                    self.legacy = true;
                }
                // A blob: bucket, sequence -> ids.
                _ => {
                    let key = blob::parse_key(rest).ok_or_else(corrupt)?;
                    self.stored.insert(key.bucket);
                    self.sequence = self.sequence.max(key.sequence + 1);
                    blob::read(&v, key.pairs, |expiry, h| loaded.push((expiry, h)))
                        .ok_or_else(corrupt)?;
                }
            }
        }
        loaded.sort_unstable();
        self.seen.reserve(loaded.len());
        self.expiries.reserve(loaded.len());
        for (expiry, h) in loaded {
            // Sorted by expiry: the newest expiry of an id wins.
            let at = self.popped + self.expiries.len() as u64;
            self.expiries.push_back((expiry, h));
            let log = Log {
                entries: &self.expiries,
                first: self.popped,
            };
            self.seen.set(h, at, log);
        }
        // What was loaded is stored already.
        self.unsaved = self.popped + self.expiries.len() as u64;
        self.cursor = self.popped;
        Ok(())
    }

    /// Where the ids checked so far end, with the newest watermark they
    /// were checked at: what a snapshot taken at this point would write.
    pub fn mark(&self) -> Mark {
        Mark {
            entries: self.popped + self.expiries.len() as u64,
            watermark: self.expired_through,
        }
    }

    /// Makes the next snapshots stop at `mark` (ids checked after it
    /// belong to records not handed on yet).
    pub fn save_through(&mut self, mark: Mark) {
        self.limit = Some(mark);
        self.drop_expired();
    }

    /// Whether a record with id `value` at event `time` repeats one seen
    /// within the span; remembers it otherwise. Records without the id
    /// field are never duplicates.
    pub fn is_duplicate(&mut self, value: &Value<'_>, time: i64, watermark: i64) -> bool {
        let h = id_hash(value, &mut self.scratch);
        self.check(h, time, watermark)
    }

    /// [`Dedup::is_duplicate`] for an id already hashed ([`id_hash`]).
    pub fn check(&mut self, h: Option<u64>, time: i64, watermark: i64) -> bool {
        if watermark > self.expired_through {
            self.expired_through = watermark;
            self.expire(watermark);
        }
        let Some(h) = h else {
            return false;
        };
        if self.seen.is_full() {
            self.grow();
        }
        // An id expired at the newest watermark is absent even while the
        // expiry queue, in the order ids came, has not reached it: the set
        // a restore rebuilds decides the same.
        let at = self.popped + self.expiries.len() as u64;
        debug_assert!(
            (self.expiries.len() as u64) < 1 << 32,
            "log positions wrap at 2^32"
        );
        let log = Log {
            entries: &self.expiries,
            first: self.popped,
        };
        if self
            .seen
            .check_and_set(h, time, self.expired_through, at, log)
        {
            return true;
        }
        self.expiries
            .push_back((time.saturating_add(self.within), h));
        false
    }

    /// Prefetches the slots of `ids`, to be checked soon (see
    /// [`IdTable::touch`]): [`TOUCH_AHEAD`] ids before their turn.
    pub fn touch(&self, ids: impl IntoIterator<Item = u64>) {
        self.seen.touch(ids);
    }

    /// Makes room in the seen-id set before it fills. While the ids held
    /// span between a sixteenth and all of `within` in event time (a run's
    /// first `within`), the set is sized for a whole span at the rate seen
    /// so far, at most 8 times what it holds: growing by doubling moved
    /// every id about twice and faulted in twice the final table's memory
    /// (5-12% of W5's samples on this project's machine). Otherwise it
    /// doubles. A rate that falls after the first sixteenth of the span
    /// leaves the set larger than doubling would have, by at most 4 times.
    fn grow(&mut self) {
        let held = self.seen.len();
        let first = (self.cursor - self.popped) as usize;
        let span = match (self.expiries.get(first), self.expiries.back()) {
            (Some(oldest), Some(newest)) => newest.0.saturating_sub(oldest.0),
            _ => 0,
        };
        let wanted = if span >= self.within / 16 && span > 0 && span < self.within {
            let whole = (held as f64 * self.within as f64 / span as f64) as usize;
            whole.clamp(2 * held, 8 * held)
        } else {
            2 * held
        };
        self.seen.reserve(wanted.saturating_sub(held).max(1));
        // The arrival log holds at least as many entries: sized alike, it
        // is not copied into fresh pages at every doubling on the way.
        let logged = self.expiries.len();
        self.expiries.reserve(wanted.saturating_sub(logged));
    }

    /// Forgets the ids that expired before `watermark`; drops them from
    /// memory once a snapshot wrote them (or no snapshot stops short).
    /// Each id's slot is read [`TOUCH_AHEAD`] ids ahead.
    fn expire(&mut self, watermark: i64) {
        let end = self.popped + self.expiries.len() as u64;
        let first = (self.cursor - self.popped) as usize;
        let ahead = self.expiries.range(first..).take(TOUCH_AHEAD);
        self.seen.touch(ahead.map(|&(_, h)| h));
        while self.cursor < end {
            let at = (self.cursor - self.popped) as usize;
            let (expiry, h) = self.expiries[at];
            if expiry >= watermark {
                break;
            }
            if let Some(&(_, ahead)) = self.expiries.get(at + TOUCH_AHEAD) {
                self.seen.touch([ahead]);
            }
            self.seen.remove_at(h, self.cursor);
            self.cursor += 1;
        }
        self.drop_expired();
    }

    /// Drops expired ids from the front of `expiries`: the ones a
    /// snapshot wrote, or will not need to (while snapshots stop at a
    /// mark, an id stays until it is written or had expired at the mark).
    fn drop_expired(&mut self) {
        while self.popped < self.cursor {
            let Some(&(expiry, _)) = self.expiries.front() else {
                break;
            };
            let moot = match self.limit {
                None => true,
                Some(mark) => {
                    // Restored ids of the one-key-per-id format are
                    // written again by the first snapshot, so they count
                    // as unwritten until then.
                    (self.popped < self.unsaved && !self.legacy)
                        || (self.popped < mark.entries && expiry < mark.watermark)
                }
            };
            if !moot {
                break;
            }
            self.expiries.pop_front();
            self.popped += 1;
        }
    }

    /// Writes the ids added since the last snapshot (up to the mark set by
    /// [`Dedup::save_through`]), one blob per expiry bucket, and drops the
    /// buckets that expired whole.
    pub fn snapshot(&mut self, batch: &mut StateBatch) {
        if self.legacy {
            self.rewrite_legacy(batch);
        }
        let Mark {
            entries: through,
            watermark,
        } = self.limit.unwrap_or_else(|| self.mark());
        // Every id of a bucket ending at or before the watermark has expired.
        while let Some(&bucket) = self.stored.first() {
            if bucket.saturating_add(1).saturating_mul(self.bucket_ms) > watermark {
                break;
            }
            self.stored.remove(&bucket);
            batch.delete_range(
                Family::Dedup,
                &blob::bucket_start(self.prefix.clone(), bucket),
                &blob::bucket_start(self.prefix.clone(), bucket.saturating_add(1)),
            );
        }
        let start = self.unsaved.saturating_sub(self.popped) as usize;
        let end = through.saturating_sub(self.popped) as usize;
        self.unsaved = self.unsaved.max(through);
        if start >= end {
            self.drop_expired();
            return;
        }
        // An id re-added after expiring within the interval is written with
        // both expiries: a restore keeps the newest, as `seen` does, and
        // skipping the stale one would cost a map probe per id.
        let mut blobs = blob::Blobs::default();
        for &(expiry, h) in self.expiries.range(start..end) {
            blobs.push(expiry.div_euclid(self.bucket_ms), h, expiry);
        }
        for (bucket, value) in blobs.into_sorted() {
            let key = blob::key(self.prefix.clone(), bucket, self.sequence);
            batch.put(Family::Dedup, &key, &value);
            self.stored.insert(bucket);
        }
        self.sequence += 1;
        self.drop_expired();
    }

    /// Replaces a restored one-key-per-id set by blobs: deletes every
    /// entry of this source and writes the live ids again.
    fn rewrite_legacy(&mut self, batch: &mut StateBatch) {
        let mut end = self.prefix.clone();
        if let Some(separator) = end.last_mut() {
            *separator = 1;
        }
        batch.delete_range(Family::Dedup, &self.prefix, &end);
        self.legacy = false;
        self.stored.clear();
        self.unsaved = self.popped;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Writes a snapshot of `set` to `store`, as a checkpoint does.
    fn checkpoint(set: &mut Dedup, store: &StateStore) {
        let mut batch = StateBatch::new();
        set.snapshot(&mut batch);
        store
            .write(batch, kflow_state::WriteMode::Buffered)
            .unwrap();
    }

    /// The set of source `clicks` a restart loads from `store`.
    fn restored(within: i64, store: &StateStore) -> Dedup {
        let mut set = Dedup::new("clicks", within);
        set.restore(store).unwrap();
        set
    }

    #[test]
    fn the_seen_ids_grow_to_a_whole_span_in_few_steps() {
        // One id per ms for two spans of 60 s: ~60k ids alive at a time.
        let mut d = Dedup::new("s", 60_000);
        let mut sizes = Vec::new();
        let mut log_sizes = Vec::new();
        for t in 0..120_000i64 {
            assert!(!d.check(Some(key::hash(&t.to_le_bytes())), t, t));
            if sizes.last() != Some(&d.seen.slot_count()) {
                sizes.push(d.seen.slot_count());
            }
            if log_sizes.last() != Some(&d.expiries.capacity()) {
                log_sizes.push(d.expiries.capacity());
            }
        }
        // The arrival log grows with the table: two steps past 8,192
        // entries, where doubling takes three.
        let large = log_sizes.iter().filter(|&&c| c > 8_192).count();
        assert_eq!(large, 2, "{log_sizes:?}");
        // Doubling while the ids span less than a sixteenth of `within`
        // (to 8,192 slots), then two steps where doubling takes four.
        assert_eq!(sizes.iter().filter(|&&s| s > 8_192).count(), 2, "{sizes:?}");
        let last = *sizes.last().unwrap();
        assert!((131_072..=262_144).contains(&last), "{sizes:?}");
    }

    #[test]
    fn repeats_within_the_span_are_dropped_and_the_set_survives_a_restore() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        let mut d = Dedup::new("clicks", 10_000);
        assert!(!d.is_duplicate(&id("a"), 1_000, 0));
        assert!(d.is_duplicate(&id("a"), 5_000, 0));
        assert!(!d.is_duplicate(&id("b"), 5_000, 0));
        assert!(!d.is_duplicate(&Value::Null, 5_000, 0));
        assert!(!d.is_duplicate(&Value::Null, 5_000, 0));
        checkpoint(&mut d, &store);

        let mut restored = restored(10_000, &store);
        assert!(restored.is_duplicate(&id("b"), 6_000, 0));
        // Past the span (the watermark passed a's expiry): counted again.
        assert!(!restored.is_duplicate(&id("a"), 20_000, 12_000));
        checkpoint(&mut restored, &store);
        assert_eq!(
            store.scan_prefix(Family::Dedup, b"clicks\0").unwrap().len(),
            2
        );
        assert!(Dedup::new("other", 1).restore(&store).is_ok());
    }

    #[test]
    fn restores_at_any_checkpoint_decide_as_an_uninterrupted_run() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        let within = 8_000;
        let mut reference = Dedup::new("clicks", within);
        let mut restarted = Dedup::new("clicks", within);
        let mut rng = 0x2545_f491_4f6c_dd1d_u64;
        for step in 0..20_000_i64 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let id = Value::Num((rng % 3_000) as f64);
            let time = step * 10 + (rng % 500) as i64;
            let watermark = step * 10 - 1_000;
            assert_eq!(
                reference.is_duplicate(&id, time, watermark),
                restarted.is_duplicate(&id, time, watermark),
                "step {step}"
            );
            if step % 700 == 0 {
                checkpoint(&mut restarted, &store);
                if step % 2_100 == 0 {
                    // A crash right after the checkpoint: only the store is left.
                    restarted = restored(within, &store);
                }
            }
        }
        // Expired buckets were dropped: what is stored is about one span.
        let stored = restored(within, &store).expiries.len();
        assert!(stored < 3_000, "{stored} ids stored");
    }

    #[test]
    fn snapshots_through_a_mark_restore_as_a_run_without_look_ahead() {
        // Records (id, time, watermark before it) in blocks of 40; the
        // look-ahead checks up to 12 blocks (4.8 s of event time, more
        // than the 2 s span) before handing one on, as a block-parallel
        // source with many decoders does.
        let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
        let stream: Vec<(Option<u64>, i64, i64)> = (0..6_000_i64)
            .map(|step| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let id = (!rng.is_multiple_of(11)).then_some(rng % 1_000);
                (id, step * 10 + (rng % 700) as i64, step * 10 - 1_500)
            })
            .collect();
        let within = 2_000;
        let mut reference = Dedup::new("clicks", within);
        let verdicts: Vec<bool> = stream
            .iter()
            .map(|&(id, time, watermark)| reference.check(id, time, watermark))
            .collect();
        assert!(verdicts.iter().filter(|&&v| v).count() > 500);

        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        let blocks: Vec<usize> = (0..stream.len()).step_by(40).collect();
        let mut ahead = Dedup::new("clicks", within);
        // As the source does before its first check.
        ahead.save_through(ahead.mark());
        let mut marks = VecDeque::new();
        let mut checked = 0;
        for handed in 0..blocks.len() {
            while checked < blocks.len() && checked < handed + 12 {
                let first = blocks[checked];
                for i in first..(first + 40).min(stream.len()) {
                    let (id, time, watermark) = stream[i];
                    assert_eq!(ahead.check(id, time, watermark), verdicts[i], "record {i}");
                }
                marks.push_back(ahead.mark());
                checked += 1;
            }
            ahead.save_through(marks.pop_front().unwrap());
            // No checkpoints in the last third: ids must not pile up.
            if handed % 7 != 0 || handed > 100 {
                continue;
            }
            checkpoint(&mut ahead, &store);
            // A crash after this checkpoint: the restored set decides the
            // records after the block handed on as the uninterrupted run.
            let mut restored = restored(within, &store);
            let next = (blocks[handed] + 40).min(stream.len());
            for (i, &(id, time, watermark)) in stream.iter().enumerate().skip(next) {
                assert_eq!(
                    restored.check(id, time, watermark),
                    verdicts[i],
                    "record {i} after a restore at block {handed}"
                );
            }
        }
        // Memory holds about a span of ids (200 records and the 1.5 s
        // lag) and the blocks checked ahead (480), not the ids since the
        // last snapshot.
        assert!(ahead.expiries.len() < 1_200, "{}", ahead.expiries.len());
    }

    #[test]
    fn an_id_expired_behind_a_later_one_is_gone_with_or_without_a_restore() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        let mut d = Dedup::new("clicks", 1_000);
        assert!(!d.check(Some(1), 5_000, 0));
        // Out of order: expires before the id ahead of it in the queue.
        assert!(!d.check(Some(2), 3_000, 0));
        checkpoint(&mut d, &store);
        let mut restored = restored(1_000, &store);
        // The watermark passes id 2's expiry (4,000), not id 1's (6,000):
        // a late repeat of id 2 is no repeat, as after a restore.
        for set in [&mut d, &mut restored] {
            assert!(!set.check(Some(3), 5_500, 4_500));
            assert!(!set.check(Some(2), 3_500, 4_500));
            assert!(set.check(Some(1), 5_200, 4_500));
        }
    }

    #[test]
    fn blobs_of_pairs_from_earlier_checkpoints_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        let h = id_hash(&id("a"), &mut Vec::new()).unwrap();
        let mut pairs = h.to_le_bytes().to_vec();
        pairs.extend_from_slice(&11_000_i64.to_le_bytes());
        // A blob of the earlier form: no form byte, sequence 0, bucket 8
        // (1.25 s buckets for a 10 s span).
        let mut old = StateBatch::new();
        let key = blob::bucket_start(b"clicks\0".to_vec(), 8);
        old.put(Family::Dedup, &key, &pairs);
        store.write(old, kflow_state::WriteMode::Buffered).unwrap();
        let mut d = restored(10_000, &store);
        assert!(d.is_duplicate(&id("a"), 10_500, 0));
        assert!(!d.is_duplicate(&id("b"), 10_600, 0));
        checkpoint(&mut d, &store);
        let stored = store.scan_prefix(Family::Dedup, b"clicks\0").unwrap();
        assert_eq!(
            stored.len(),
            2,
            "the earlier blob and one of the current form"
        );
        let mut again = restored(10_000, &store);
        assert!(again.is_duplicate(&id("a"), 10_700, 0));
        assert!(again.is_duplicate(&id("b"), 10_700, 0));
        assert!(!again.is_duplicate(&id("c"), 10_700, 0));
    }

    fn id(s: &str) -> Value<'static> {
        Value::Str(s.to_string().into())
    }

    /// A store holding ids `a` (expiry 11,000) and `b` (15,000) of source
    /// `clicks` in the one-key-per-id format, and its folder.
    fn one_key_per_id_store() -> (tempfile::TempDir, StateStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        let mut old = StateBatch::new();
        for (name, expiry) in [("a", 11_000_i64), ("b", 15_000)] {
            let mut scratch = Vec::new();
            key::encode_value(&id(name), &mut scratch).unwrap();
            let mut k = b"clicks\0".to_vec();
            k.extend_from_slice(&key::hash(&scratch).to_be_bytes());
            old.put(Family::Dedup, &k, &expiry.to_be_bytes());
        }
        store.write(old, kflow_state::WriteMode::Buffered).unwrap();
        (dir, store)
    }

    #[test]
    fn a_one_key_per_id_set_rewritten_through_a_mark_keeps_its_live_ids() {
        let (_dir, store) = one_key_per_id_store();
        let mut d = restored(10_000, &store);
        // A block source: snapshots stop at the mark, while its checks run
        // ahead to a watermark past a's expiry.
        d.save_through(d.mark());
        assert!(!d.is_duplicate(&id("c"), 14_000, 12_000));
        checkpoint(&mut d, &store);
        let mut again = restored(10_000, &store);
        assert!(
            again.is_duplicate(&id("a"), 10_500, 0),
            "a is alive at the mark"
        );
        assert!(again.is_duplicate(&id("b"), 10_500, 0));
        assert!(
            !again.is_duplicate(&id("c"), 10_500, 0),
            "c is past the mark"
        );
    }

    #[test]
    fn one_key_per_id_checkpoints_are_read_and_rewritten() {
        let (_dir, store) = one_key_per_id_store();
        let mut d = restored(10_000, &store);
        assert!(d.is_duplicate(&id("a"), 5_000, 0));
        checkpoint(&mut d, &store);
        let keys = store.scan_prefix(Family::Dedup, b"clicks\0").unwrap();
        assert!(
            keys.iter().all(|(k, _)| k.len() == 7 + 17),
            "only blobs are left"
        );
        let mut again = restored(10_000, &store);
        assert!(again.is_duplicate(&id("b"), 14_000, 0));
        assert!(again.is_duplicate(&id("a"), 10_000, 0));
    }
}
