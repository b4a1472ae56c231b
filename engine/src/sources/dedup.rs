//! Dropping producer retries: records whose id field was already seen
//! within the job's `dedup.within` span of event time.
//!
//! Seen ids are kept as 64-bit hashes with their expiry time, in memory for
//! the check and in RocksDB's dedup family for recovery: each checkpoint
//! writes the ids added and deletes the ids expired since the previous one,
//! so the stored set always matches the source's checkpointed position.

use std::collections::VecDeque;

use hashbrown::HashMap;
use kflow_jobs::Value;
use kflow_state::{Family, StateBatch, StateError, StateStore};

use crate::dataflow::key;

/// The seen-id set of one source.
#[derive(Debug)]
pub struct Dedup {
    within: i64,
    prefix: Vec<u8>,
    seen: HashMap<u64, i64>,
    expiries: VecDeque<(i64, u64)>,
    added: Vec<(u64, i64)>,
    removed: Vec<u64>,
    scratch: Vec<u8>,
}

impl Dedup {
    /// An empty set for source `source` remembering ids for `within` ms.
    pub fn new(source: &str, within: i64) -> Dedup {
        let mut prefix = source.as_bytes().to_vec();
        prefix.push(0);
        Dedup {
            within,
            prefix,
            seen: HashMap::new(),
            expiries: VecDeque::new(),
            added: Vec::new(),
            removed: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Loads the ids stored by the last checkpoint.
    ///
    /// # Errors
    /// State errors reading them.
    pub fn restore(&mut self, store: &StateStore) -> Result<(), StateError> {
        let mut loaded: Vec<(i64, u64)> = Vec::new();
        for (k, v) in store.scan_prefix(Family::Dedup, &self.prefix)? {
            let (Some(h), Ok(expiry)) = (
                k.get(self.prefix.len()..)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok()),
                <[u8; 8]>::try_from(&v[..]),
            ) else {
                return Err(StateError::Corrupt("malformed dedup entry".into()));
            };
            loaded.push((i64::from_be_bytes(expiry), u64::from_be_bytes(h)));
        }
        loaded.sort_unstable();
        for (expiry, h) in loaded {
            self.seen.insert(h, expiry);
            self.expiries.push_back((expiry, h));
        }
        Ok(())
    }

    /// Whether a record with id `value` at event `time` repeats one seen
    /// within the span; remembers it otherwise. Records without the id
    /// field are never duplicates.
    pub fn is_duplicate(&mut self, value: &Value<'_>, time: i64, watermark: i64) -> bool {
        while let Some(&(expiry, h)) = self.expiries.front() {
            if expiry >= watermark {
                break;
            }
            self.expiries.pop_front();
            if self.seen.get(&h) == Some(&expiry) {
                self.seen.remove(&h);
                self.removed.push(h);
            }
        }
        if value.is_null() {
            return false;
        }
        self.scratch.clear();
        if key::encode_value(value, &mut self.scratch).is_none() {
            return false;
        }
        let h = key::hash(&self.scratch);
        if let Some(&expiry) = self.seen.get(&h) {
            if time <= expiry {
                return true;
            }
        }
        let expiry = time.saturating_add(self.within);
        self.seen.insert(h, expiry);
        self.expiries.push_back((expiry, h));
        self.added.push((h, expiry));
        false
    }

    /// Writes the ids added and expired since the last snapshot.
    pub fn snapshot(&mut self, batch: &mut StateBatch) {
        for h in self.removed.drain(..) {
            let mut k = self.prefix.clone();
            k.extend_from_slice(&h.to_be_bytes());
            batch.delete(Family::Dedup, &k);
        }
        for (h, expiry) in self.added.drain(..) {
            // An id re-added after expiring within the same interval: the
            // newest expiry is the one in `seen`.
            if self.seen.get(&h) != Some(&expiry) {
                continue;
            }
            let mut k = self.prefix.clone();
            k.extend_from_slice(&h.to_be_bytes());
            batch.put(Family::Dedup, &k, &expiry.to_be_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn repeats_within_the_span_are_dropped_and_the_set_survives_a_restore() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        let id = |s: &str| Value::Str(s.to_string().into());
        let mut d = Dedup::new("clicks", 10_000);
        assert!(!d.is_duplicate(&id("a"), 1_000, 0));
        assert!(d.is_duplicate(&id("a"), 5_000, 0));
        assert!(!d.is_duplicate(&id("b"), 5_000, 0));
        assert!(!d.is_duplicate(&Value::Null, 5_000, 0));
        assert!(!d.is_duplicate(&Value::Null, 5_000, 0));
        let mut batch = StateBatch::new();
        d.snapshot(&mut batch);
        store.write(batch, kflow_state::WriteMode::Synced).unwrap();

        let mut restored = Dedup::new("clicks", 10_000);
        restored.restore(&store).unwrap();
        assert!(restored.is_duplicate(&id("b"), 6_000, 0));
        // Past the span (the watermark passed a's expiry): counted again.
        assert!(!restored.is_duplicate(&id("a"), 20_000, 12_000));
        let mut batch = StateBatch::new();
        restored.snapshot(&mut batch);
        store.write(batch, kflow_state::WriteMode::Synced).unwrap();
        assert_eq!(
            store.scan_prefix(Family::Dedup, b"clicks\0").unwrap().len(),
            2
        );
        assert!(Dedup::new("other", 1).restore(&store).is_ok());
    }
}
