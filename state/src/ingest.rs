//! Large runs of window partials written as a table file and ingested,
//! rather than through RocksDB's log, memtable and flush.
//!
//! A window spilling state larger than memory writes hundreds of
//! thousands of partials at every early checkpoint. Through a
//! `WriteBatch` each is written four times: to the write-ahead log (with
//! Debian's software CRC32C), into the memtable's skip list, into a
//! level-0 file by the flush, and again by compactions. When a batch's
//! window-family point writes pass [`StateStore::ingest_min_bytes`], they
//! are sorted (the last write of a key wins, as in the batch) into one
//! table file instead, the rest of the batch is committed with a marker
//! naming the file, and the file is then ingested (RocksDB links it into
//! level 0 or below, a manifest write).
//!
//! Crash safety: the file is synced, and its directory, before the batch
//! that names it commits; RocksDB removes a moved file only once its
//! ingestion is durable. So on open a marker whose file exists means the
//! ingestion may not have happened and it is done (again: the same values
//! for the same keys, since nothing commits between a batch and its
//! ingestion); a marker whose file is gone means it was ingested; a file
//! no marker names belongs to a batch that never committed and is
//! removed.

use std::path::{Path, PathBuf};

use rocksdb::{IngestExternalFileOptions, SstFileWriter, WriteBatch};

use crate::batch::{Op, StateBatch};
use crate::family::Family;
use crate::store::StateStore;
use crate::StateError;

/// The table file a committing batch's run is written to, in the
/// database's directory (RocksDB ignores names it did not make).
const RUN_FILE: &str = "kflow-run.sst";

/// The meta-family key of the marker a batch with a run commits.
const PENDING_KEY: &[u8] = b"ingest-pending";

/// Window-family point writes at least this large (keys and values) in
/// one batch go to a table file: the size of the family's memtable, which
/// a batch that large would fill and flush anyway.
pub const DEFAULT_INGEST_MIN_BYTES: usize = 16 << 20;

/// A committed batch's run of window partials, written to a table file
/// but not yet ingested: [`StateStore::ingest`] finishes the write.
#[derive(Debug)]
#[must_use = "a committed run must be ingested"]
pub struct PendingRun {
    path: PathBuf,
}

/// One window-family point write of a batch: a key and its value, or
/// `None` for a delete.
type Write<'a> = (&'a [u8], Option<&'a [u8]>);

/// A batch's window-family point writes, when they can go to a table
/// file: sorted by key, each key once with its last write. And the
/// batch's other writes, in order.
struct Run<'a> {
    writes: Vec<Write<'a>>,
    others: Vec<Op<'a>>,
}

impl<'a> Run<'a> {
    /// The run of `chunks` if its point writes reach `min_bytes` and no
    /// range delete of the family covers one of them (a range delete
    /// written after a key must hide it, and the ingested file would come
    /// after it).
    fn of(chunks: &'a [Vec<u8>], min_bytes: usize) -> Result<Option<Run<'a>>, StateError> {
        let mut bytes = 0;
        let mut writes: Vec<Write<'a>> = Vec::new();
        let mut others = Vec::new();
        // Whether the keys came in strictly rising order (a partition's
        // keyed snapshot writes them so): then there is nothing to sort
        // and no key twice.
        let mut rising = true;
        for chunk in chunks {
            for op in StateBatch::ops_of(chunk) {
                let write = match op? {
                    Op::Put(Family::Windows, key, value) => (key, Some(value)),
                    Op::Delete(Family::Windows, key) => (key, None),
                    other => {
                        others.push(other);
                        continue;
                    }
                };
                bytes += write.0.len() + write.1.map_or(0, <[u8]>::len);
                rising = rising && writes.last().is_none_or(|last| last.0 < write.0);
                writes.push(write);
            }
        }
        if bytes < min_bytes || writes.is_empty() {
            return Ok(None);
        }
        if !rising {
            // Stable: of a key's writes, the batch's last comes last, and
            // is the one kept.
            writes.sort_by(|a, b| a.0.cmp(b.0));
            let mut kept = 0;
            for i in 0..writes.len() {
                if writes.get(i + 1).is_some_and(|next| next.0 == writes[i].0) {
                    continue;
                }
                writes[kept] = writes[i];
                kept += 1;
            }
            writes.truncate(kept);
        }
        let covered = others.iter().any(|op| match *op {
            Op::DeleteRange(Family::Windows, from, to) => {
                let first = writes.partition_point(|w| w.0 < from);
                writes.get(first).is_some_and(|w| w.0 < to)
            }
            _ => false,
        });
        Ok((!covered).then_some(Run { writes, others }))
    }

    /// Writes the run to a synced table file at `path`.
    fn write_file(&self, store: &StateStore, path: &Path) -> Result<(), StateError> {
        let options = StateStore::family_options(Family::Windows);
        let mut file = SstFileWriter::create(&options);
        file.open(path).map_err(|e| store.rocks(e))?;
        for &(key, value) in &self.writes {
            match value {
                Some(value) => file.put(key, value),
                None => file.delete(key),
            }
            .map_err(|e| store.rocks(e))?;
        }
        // Syncs the file.
        file.finish().map_err(|e| store.rocks(e))
    }
}

impl StateStore {
    /// Applies `batch` atomically, except that its run of window-family
    /// point writes, when large enough, is written to a table file first
    /// and left for [`StateStore::ingest`]: until then the database lacks
    /// it, and if the process dies before, the next [`StateStore::open`]
    /// ingests it. With `sync` the write is on disk when this returns.
    ///
    /// # Errors
    /// [`StateError::Rocks`] when RocksDB fails the write or the file,
    /// [`StateError::Io`] when the file's directory cannot be synced.
    pub fn commit(
        &self,
        batch: StateBatch,
        sync: crate::WriteMode,
    ) -> Result<Option<PendingRun>, StateError> {
        let run = match self.ingest_min_bytes {
            Some(min) if batch.bytes() >= min => Run::of(&batch.chunks, min)?,
            _ => None,
        };
        let Some(run) = run else {
            self.write_batch(batch, sync)?;
            return Ok(None);
        };
        let path = self.path.join(RUN_FILE);
        remove_if_present(&path)?;
        run.write_file(self, &path)?;
        sync_dir(&self.path)?;
        let mut wb = WriteBatch::default();
        for op in &run.others {
            match *op {
                Op::Put(family, key, value) => wb.put_cf(self.cf(family)?, key, value),
                Op::Delete(family, key) => wb.delete_cf(self.cf(family)?, key),
                Op::DeleteRange(family, from, to) => wb.delete_range_cf(self.cf(family)?, from, to),
            }
        }
        drop(run);
        drop(batch);
        wb.put_cf(self.cf(Family::Meta)?, PENDING_KEY, RUN_FILE.as_bytes());
        self.apply(wb, sync)?;
        Ok(Some(PendingRun { path }))
    }

    /// Ingests a committed run's file: its keys are in the database when
    /// this returns.
    ///
    /// # Errors
    /// [`StateError::Rocks`] when RocksDB cannot ingest the file or clear
    /// the marker.
    pub fn ingest(&self, run: PendingRun) -> Result<(), StateError> {
        let mut options = IngestExternalFileOptions::default();
        options.set_move_files(true);
        self.db
            .ingest_external_file_cf_opts(self.cf(Family::Windows)?, &options, vec![&run.path])
            .map_err(|e| self.rocks(e))?;
        // A file copied rather than linked stays; it is in the database.
        remove_if_present(&run.path)?;
        // Not synced: a marker whose file is gone is dropped on open.
        let mut wb = WriteBatch::default();
        wb.delete_cf(self.cf(Family::Meta)?, PENDING_KEY);
        self.apply(wb, crate::WriteMode::Buffered)
    }

    /// On open: ingests the run of a batch that committed before its
    /// ingestion finished, and removes the file of one that never
    /// committed.
    pub(crate) fn finish_pending_run(&self) -> Result<(), StateError> {
        let path = self.path.join(RUN_FILE);
        if self.get(Family::Meta, PENDING_KEY)?.is_some() {
            if path.exists() {
                return self.ingest(PendingRun { path });
            }
            let mut wb = WriteBatch::default();
            wb.delete_cf(self.cf(Family::Meta)?, PENDING_KEY);
            return self.apply(wb, crate::WriteMode::Synced);
        }
        remove_if_present(&path)
    }
}

fn remove_if_present(path: &Path) -> Result<(), StateError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(StateError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Makes a new file's directory entry durable.
fn sync_dir(dir: &Path) -> Result<(), StateError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| StateError::Io {
            path: dir.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::WriteMode;

    fn open(dir: &Path) -> StateStore {
        let mut store = StateStore::open(dir).unwrap();
        store.set_ingest_min_bytes(Some(1));
        store
    }

    fn key(i: u32) -> Vec<u8> {
        format!("k{i:05}").into_bytes()
    }

    /// 1,000 window partials, a meta value, then later writes of the same
    /// batch to some of the partials.
    fn batch() -> StateBatch {
        let mut batch = StateBatch::new();
        for i in (0..1000).rev() {
            batch.put(Family::Windows, &key(i), format!("v{i}").as_bytes());
        }
        batch.put(Family::Meta, b"m", b"meta");
        batch.delete(Family::Windows, &key(5));
        batch.put(Family::Windows, &key(7), b"new");
        batch.delete(Family::Windows, b"old");
        batch
    }

    fn assert_batch_applied(store: &StateStore) {
        let found = store.scan_prefix(Family::Windows, b"").unwrap();
        assert_eq!(
            found.len(),
            999,
            "every key once, k00005 deleted, `old` gone"
        );
        assert_eq!(&*found[0].1, b"v0");
        assert_eq!(
            store.get(Family::Windows, &key(7)).unwrap().unwrap(),
            b"new"
        );
        assert!(store.get(Family::Windows, &key(5)).unwrap().is_none());
        assert_eq!(store.get(Family::Meta, b"m").unwrap().unwrap(), b"meta");
        assert!(store.get(Family::Meta, PENDING_KEY).unwrap().is_none());
        assert!(!store.path.join(RUN_FILE).exists());
    }

    fn store_old(store: &StateStore) {
        let mut old = StateBatch::new();
        old.put(Family::Windows, b"old", b"stored before");
        store.write_batch(old, WriteMode::Synced).unwrap();
    }

    #[test]
    fn a_large_run_is_ingested_with_each_keys_last_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        store_old(&store);
        let run = store.commit(batch(), WriteMode::Synced).unwrap();
        let run = run.expect("the batch's window writes pass the size");
        assert!(run.path.exists());
        assert!(
            store.get(Family::Windows, &key(1)).unwrap().is_none(),
            "not in the database before its ingestion"
        );
        assert_eq!(store.get(Family::Meta, b"m").unwrap().unwrap(), b"meta");
        store.ingest(run).unwrap();
        assert_batch_applied(&store);
    }

    #[test]
    fn a_run_in_rising_key_order_is_written_as_it_came() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let mut batch = StateBatch::new();
        for i in 0..1000 {
            batch.put(Family::Windows, &key(i), format!("v{i}").as_bytes());
        }
        batch.delete(Family::Windows, &key(1000));
        let run = store.commit(batch, WriteMode::Synced).unwrap().unwrap();
        store.ingest(run).unwrap();
        let found = store.scan_prefix(Family::Windows, b"").unwrap();
        assert_eq!(found.len(), 1000);
        for (i, (k, v)) in found.iter().enumerate() {
            assert_eq!(
                (&**k, &**v),
                (&key(i as u32)[..], format!("v{i}").as_bytes())
            );
        }
    }

    #[test]
    fn small_batches_and_batches_below_the_size_are_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        store.set_ingest_min_bytes(Some(1 << 20));
        assert!(store.commit(batch(), WriteMode::Synced).unwrap().is_none());
        store.set_ingest_min_bytes(None);
        assert!(store.commit(batch(), WriteMode::Synced).unwrap().is_none());
        let found = store.scan_prefix(Family::Windows, b"").unwrap();
        assert_eq!(found.len(), 999);
    }

    #[test]
    fn a_range_delete_that_covers_a_written_key_keeps_the_batch_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let mut batch = batch();
        batch.delete_range(Family::Windows, &key(10), &key(20));
        assert!(store.commit(batch, WriteMode::Synced).unwrap().is_none());
        assert!(store.get(Family::Windows, &key(15)).unwrap().is_none());
        assert_eq!(
            store.get(Family::Windows, &key(20)).unwrap().unwrap(),
            b"v20"
        );
        // One that covers none of them does not.
        let mut batch = StateBatch::new();
        batch.put(Family::Windows, &key(1), b"again");
        batch.delete_range(Family::Windows, b"a", b"b");
        let run = store.commit(batch, WriteMode::Synced).unwrap().unwrap();
        store.ingest(run).unwrap();
        assert_eq!(
            store.get(Family::Windows, &key(1)).unwrap().unwrap(),
            b"again"
        );
    }

    #[test]
    fn a_run_committed_but_not_ingested_is_ingested_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        store_old(&store);
        let run = store.commit(batch(), WriteMode::Synced).unwrap().unwrap();
        // The process dies here.
        drop(run);
        drop(store);
        let store = StateStore::open(dir.path()).unwrap();
        assert_batch_applied(&store);
        // Opening again changes nothing.
        drop(store);
        assert_batch_applied(&StateStore::open(dir.path()).unwrap());
    }

    #[test]
    fn a_marker_whose_file_is_gone_is_dropped_on_open() {
        // The marker's removal is not synced: after a crash it may be back
        // while its file is already in the database.
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        store_old(&store);
        let run = store.commit(batch(), WriteMode::Synced).unwrap().unwrap();
        store.ingest(run).unwrap();
        let mut marker = StateBatch::new();
        marker.put(Family::Meta, PENDING_KEY, RUN_FILE.as_bytes());
        store.write_batch(marker, WriteMode::Synced).unwrap();
        drop(store);
        assert_batch_applied(&StateStore::open(dir.path()).unwrap());
    }

    #[test]
    fn a_run_file_whose_batch_never_committed_is_removed_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let batch = batch();
        let run = Run::of(&batch.chunks, 1).unwrap().unwrap();
        run.write_file(&store, &store.path.join(RUN_FILE)).unwrap();
        drop(run);
        drop(store);
        let store = StateStore::open(dir.path()).unwrap();
        assert!(!dir.path().join(RUN_FILE).exists());
        assert!(store.scan_prefix(Family::Windows, b"").unwrap().is_empty());
    }
}
