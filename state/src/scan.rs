//! A prefix scan whose RocksDB reads run on a thread of their own, ahead
//! of the caller: firing a tumbling window of millions of stored partials
//! spends most of its time in RocksDB's merging iterator (a heap over the
//! window's runs, block reads, checksums), which then overlaps the
//! caller's decoding and emitting instead of preceding it.

use std::sync::mpsc;

use crate::family::Family;
use crate::store::StateStore;
use crate::StateError;

/// Bytes of keys and values per batch handed over.
const BATCH_BYTES: usize = 256 << 10;

/// Batches read ahead of the caller at most: with [`BATCH_BYTES`], about
/// a megabyte, however large the scan.
const AHEAD: usize = 4;

/// Entries read ahead: keys and values back to back in `bytes`; per
/// entry, where its key and its value end.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    ends: Vec<(usize, usize)>,
}

impl Batch {
    fn push(&mut self, key: &[u8], value: &[u8]) {
        self.bytes.extend_from_slice(key);
        let key_end = self.bytes.len();
        self.bytes.extend_from_slice(value);
        self.ends.push((key_end, self.bytes.len()));
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }
}

impl StateStore {
    /// [`StateStore::for_each_prefix`], with RocksDB read on another
    /// thread up to about a megabyte ahead of `visit` (on this thread).
    ///
    /// # Errors
    /// [`StateError::Rocks`] when RocksDB fails the scan.
    pub fn for_each_prefix_read_ahead(
        &self,
        family: Family,
        prefix: &[u8],
        mut visit: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StateError> {
        let (full, filled) = mpsc::sync_channel::<Result<Batch, StateError>>(AHEAD);
        let (give_back, returned) = mpsc::channel::<Batch>();
        std::thread::scope(|scope| {
            let reader = std::thread::Builder::new()
                .name("state scan".into())
                .spawn_scoped(scope, move || {
                    let mut batch = Batch::default();
                    let mut gone = false;
                    let scanned = self.for_each_prefix(family, prefix, |key, value| {
                        batch.push(key, value);
                        if batch.bytes.len() < BATCH_BYTES {
                            return true;
                        }
                        let mut next = returned.try_recv().unwrap_or_default();
                        next.clear();
                        gone = full.send(Ok(std::mem::replace(&mut batch, next))).is_err();
                        !gone
                    });
                    if !gone {
                        // A caller that stopped has dropped its end.
                        let _ = full.send(scanned.map(|()| batch));
                    }
                });
            let reader = match reader {
                Ok(reader) => reader,
                // No thread to be had: read here.
                Err(_) => return self.for_each_prefix(family, prefix, &mut visit),
            };
            let mut outcome = Ok(());
            'batches: for batch in filled.iter() {
                let batch = match batch {
                    Ok(batch) => batch,
                    Err(e) => {
                        outcome = Err(e);
                        break;
                    }
                };
                let mut start = 0;
                for &(key_end, value_end) in &batch.ends {
                    let key = &batch.bytes[start..key_end];
                    if !visit(key, &batch.bytes[key_end..value_end]) {
                        break 'batches;
                    }
                    start = value_end;
                }
                let _ = give_back.send(batch);
            }
            // The reader, if still reading, fails its next hand-over and
            // stops.
            drop(filled);
            if let Err(panic) = reader.join() {
                std::panic::resume_unwind(panic);
            }
            outcome
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::{StateBatch, WriteMode};

    fn store_with(n: u32) -> (tempfile::TempDir, StateStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        let mut batch = StateBatch::new();
        for i in 0..n {
            let value = vec![i as u8; (i % 300) as usize];
            batch.put(Family::Windows, format!("p/{i:06}").as_bytes(), &value);
        }
        batch.put(Family::Windows, b"q/after", b"not in the prefix");
        store.write(batch, WriteMode::Buffered).unwrap();
        (dir, store)
    }

    type Scan = fn(
        &StateStore,
        Family,
        &[u8],
        &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StateError>;

    /// Every entry under `prefix`, as `scan` visits them.
    fn entries(store: &StateStore, prefix: &[u8], scan: Scan) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut found = Vec::new();
        scan(store, Family::Windows, prefix, &mut |k, v| {
            found.push((k.to_vec(), v.to_vec()));
            true
        })
        .unwrap();
        found
    }

    #[test]
    fn reads_ahead_the_same_entries_in_the_same_order() {
        // Many batches' worth, and an empty prefix.
        let (_dir, store) = store_with(20_000);
        let plain: Scan = |s, f, p, visit| s.for_each_prefix(f, p, visit);
        let ahead: Scan = |s, f, p, visit| s.for_each_prefix_read_ahead(f, p, visit);
        let expected = entries(&store, b"p/", plain);
        assert_eq!(expected.len(), 20_000);
        assert!(
            entries(&store, b"p/", ahead) == expected,
            "the same entries in the same order"
        );
        assert_eq!(entries(&store, b"x/", ahead), Vec::new());
    }

    #[test]
    fn a_visit_that_stops_ends_the_scan_and_its_reader() {
        let (_dir, store) = store_with(20_000);
        let mut seen = 0;
        store
            .for_each_prefix_read_ahead(Family::Windows, b"p/", |k, _| {
                seen += 1;
                k != b"p/012345"
            })
            .unwrap();
        assert_eq!(seen, 12_346);
    }
}
