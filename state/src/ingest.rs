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
//! naming the file, and the file is then ingested (RocksDB copies it into
//! level 0 or below, a manifest write).
//!
//! Copied, not moved: RocksDB writes the sequence number it assigns an
//! ingested file into the file itself, and a moved file is the run's own
//! (one inode, two names); a kill after that write and before the
//! manifest's left the run's file altered and no longer ingestible ("global
//! seqno property with value 7, while largest seqno in the file is 0",
//! found by the crash tests). A copy costs ~4% of a 5M-keys spilling run.
//!
//! Crash safety: the file (named after the database's sequence number, so
//! no two runs share a name) is synced, and its directory, before the
//! batch that names it commits; it is removed once its copy's ingestion
//! is durable, and the marker is removed, synced, after that. So on open,
//! a marker whose file is gone was ingested; a marker whose file is there
//! is ingested (again, if its copy went in before a kill: the same writes
//! at a newer sequence number, and nothing was written in between, so the
//! state is the same); a marker whose file has a second link comes from a
//! version that moved files (the link is the database's: it went in). A
//! run file no marker names belongs to a batch that never committed and
//! is removed.
//! One run is pending at a time: the store's run lock is held from a
//! run's commit to its ingestion (window partitions rewriting their state
//! at a start write at once).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{MutexGuard, PoisonError};

use rocksdb::{IngestExternalFileOptions, SstFileWriter, WriteBatch};

use crate::batch::{Op, StateBatch};
use crate::family::Family;
use crate::store::StateStore;
use crate::StateError;

/// The table file a committing batch's run is written to, in the
/// database's directory (RocksDB ignores names it did not make):
/// `kflow-run-<sequence number>.sst`.
const RUN_PREFIX: &str = "kflow-run-";
const RUN_SUFFIX: &str = ".sst";

/// The meta-family key of the marker a batch with a run commits.
const PENDING_KEY: &[u8] = b"ingest-pending";

/// Window-family point writes at least this large (keys and values) in
/// one batch go to a table file: the size of the family's memtable, which
/// a batch that large would fill and flush anyway.
pub const DEFAULT_INGEST_MIN_BYTES: usize = 16 << 20;

/// A committed batch's run of window partials, written to a table file
/// but not yet ingested: [`StateStore::ingest`] finishes the write. It
/// holds the store's run lock, so no other run commits meanwhile.
#[derive(Debug)]
#[must_use = "a committed run must be ingested"]
pub struct PendingRun<'a> {
    path: PathBuf,
    _lock: MutexGuard<'a, ()>,
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
    /// The run of `batch` if its point writes reach `min_bytes` and no
    /// range delete of the family covers one of them (a range delete
    /// written after a key must hide it, and the ingested file would come
    /// after it).
    fn of(batch: &'a StateBatch, min_bytes: usize) -> Result<Option<Run<'a>>, StateError> {
        let mut bytes = 0;
        // Room for every write at once: grown by doubling, the list of a
        // 400,000-key run copied itself into fresh pages (a sixth of the
        // page faults of a 5M-key spilling run).
        let mut writes: Vec<Write<'a>> = Vec::with_capacity(batch.len());
        let mut others = Vec::new();
        // Whether the keys came in strictly rising order (a partition's
        // keyed snapshot writes them so): then there is nothing to sort
        // and no key twice.
        let mut rising = true;
        for chunk in &batch.chunks {
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
    /// and left for [`StateStore::ingest`]: until then readers do not see
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
    ) -> Result<Option<PendingRun<'_>>, StateError> {
        let run = match self.ingest_min_bytes {
            Some(min) if batch.bytes() >= min => Run::of(&batch, min)?,
            _ => None,
        };
        let Some(mut run) = run else {
            self.write_batch(batch, sync)?;
            return Ok(None);
        };
        let lock = self.run_lock.lock().unwrap_or_else(PoisonError::into_inner);
        // The marker names one run: one an error left uningested goes in
        // first.
        self.finish_pending_run_locked()?;
        let name = format!(
            "{RUN_PREFIX}{}{RUN_SUFFIX}",
            self.db.latest_sequence_number()
        );
        let path = self.path.join(&name);
        run.write_file(self, &path)?;
        sync_dir(&self.path)?;
        let mut wb = WriteBatch::default();
        for op in run.others.drain(..) {
            self.add(&mut wb, op)?;
        }
        drop(run);
        drop(batch);
        wb.put_cf(self.cf(Family::Meta)?, PENDING_KEY, name.as_bytes());
        self.apply(wb, sync)?;
        Ok(Some(PendingRun { path, _lock: lock }))
    }

    /// Ingests a committed run's file: its keys are in the database when
    /// this returns.
    ///
    /// # Errors
    /// [`StateError::Rocks`] when RocksDB cannot ingest the file or clear
    /// the marker.
    pub fn ingest(&self, run: PendingRun<'_>) -> Result<(), StateError> {
        self.ingest_file(&run.path)
    }

    /// Ingests a copy of the file at `path` (see the module docs), removes
    /// the file, and removes the marker, synced.
    fn ingest_file(&self, path: &Path) -> Result<(), StateError> {
        self.ingest_copy(path)?;
        remove_if_present(path)?;
        self.drop_marker()
    }

    /// Has RocksDB ingest a copy of the table file at `path`, leaving the
    /// file as it was written.
    fn ingest_copy(&self, path: &Path) -> Result<(), StateError> {
        let mut options = IngestExternalFileOptions::default();
        options.set_move_files(false);
        self.db
            .ingest_external_file_cf_opts(self.cf(Family::Windows)?, &options, vec![path])
            .map_err(|e| self.rocks(e))
    }

    fn drop_marker(&self) -> Result<(), StateError> {
        let mut wb = WriteBatch::default();
        wb.delete_cf(self.cf(Family::Meta)?, PENDING_KEY);
        self.apply(wb, crate::WriteMode::Synced)
    }

    /// On open: ingests the run of a batch that committed before its
    /// ingestion finished, and removes the files of runs that never
    /// committed.
    pub(crate) fn finish_pending_run(&self) -> Result<(), StateError> {
        let _lock = self.run_lock.lock().unwrap_or_else(PoisonError::into_inner);
        self.finish_pending_run_locked()
    }

    /// [`StateStore::finish_pending_run`] with the run lock held.
    fn finish_pending_run_locked(&self) -> Result<(), StateError> {
        let marker = self.get(Family::Meta, PENDING_KEY)?;
        let name = marker.as_deref().map(String::from_utf8_lossy);
        remove_runs(&self.path, name.as_deref())?;
        let Some(name) = name else {
            return Ok(());
        };
        let path = self.path.join(&*name);
        match std::fs::metadata(&path) {
            Ok(file) if file.nlink() > 1 => {
                // Moved into the database by an earlier version, and in it
                // already under RocksDB's name.
                remove_if_present(&path)?;
                self.drop_marker()
            }
            Ok(_) => self.ingest_file(&path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => self.drop_marker(),
            Err(source) => Err(StateError::Io { path, source }),
        }
    }
}

/// Removes the run files in `dir` but `keep`.
fn remove_runs(dir: &Path, keep: Option<&str>) -> Result<(), StateError> {
    let io = |source| StateError::Io {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let name = entry.map_err(io)?.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        if name.starts_with(RUN_PREFIX) && name.ends_with(RUN_SUFFIX) && Some(name) != keep {
            remove_if_present(&dir.join(name))?;
        }
    }
    Ok(())
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
        assert!(runs(&store.path).is_empty(), "{:?}", runs(&store.path));
    }

    /// The run files in `dir`.
    fn runs(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with(RUN_PREFIX))
            .collect();
        names.sort();
        names
    }

    fn put_marker(store: &StateStore, name: &str) {
        let mut marker = StateBatch::new();
        marker.put(Family::Meta, PENDING_KEY, name.as_bytes());
        store.write_batch(marker, WriteMode::Synced).unwrap();
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

    /// A run committed and not ingested yet, over the keys of one
    /// ingested before it.
    fn overlapping_run(store: &StateStore) -> PendingRun<'_> {
        let first = store.commit(batch(), WriteMode::Synced).unwrap().unwrap();
        store.ingest(first).unwrap();
        store.commit(batch(), WriteMode::Synced).unwrap().unwrap()
    }

    #[test]
    fn ingesting_a_run_leaves_its_file_as_written() {
        // A run overlapping one ingested before gets a sequence number of
        // its own, which RocksDB writes into the file it ingests: into
        // its copy, never into the run's file, which a kill mid-ingestion
        // leaves to be ingested again at the next open.
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let second = overlapping_run(&store);
        let kept = dir.path().join("kept.sst");
        std::fs::hard_link(&second.path, &kept).unwrap();
        let written = std::fs::read(&kept).unwrap();
        store.ingest(second).unwrap();
        assert_eq!(
            std::fs::read(&kept).unwrap(),
            written,
            "the run's file changed"
        );
        assert_batch_applied(&store);
    }

    #[test]
    fn a_run_whose_copy_went_in_before_a_kill_is_ingested_again_alike() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open(dir.path());
            let second = overlapping_run(&store);
            // The copy in, then a kill before the file and the marker go.
            store.ingest_copy(&second.path).unwrap();
            assert!(second.path.exists());
            drop(second);
        }
        let store = open(dir.path());
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

    /// A store with `old` stored and then [`batch`] committed and
    /// ingested; and the path the run's file had.
    fn ingested(dir: &Path) -> (StateStore, PathBuf) {
        let store = open(dir);
        store_old(&store);
        let run = store.commit(batch(), WriteMode::Synced).unwrap().unwrap();
        let path = run.path.clone();
        store.ingest(run).unwrap();
        (store, path)
    }

    #[test]
    fn a_marker_whose_file_is_gone_is_dropped_on_open() {
        // A crash between the ingestion and the marker's removal.
        let dir = tempfile::tempdir().unwrap();
        let (store, path) = ingested(dir.path());
        put_marker(&store, path.file_name().unwrap().to_str().unwrap());
        drop(store);
        assert_batch_applied(&StateStore::open(dir.path()).unwrap());
    }

    #[test]
    fn a_run_file_whose_batch_never_committed_is_removed_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let batch = batch();
        let run = Run::of(&batch, 1).unwrap().unwrap();
        run.write_file(&store, &store.path.join("kflow-run-5.sst"))
            .unwrap();
        drop(run);
        drop(store);
        assert_eq!(runs(dir.path()), ["kflow-run-5.sst"]);
        let store = StateStore::open(dir.path()).unwrap();
        assert!(runs(dir.path()).is_empty());
        assert!(store.scan_prefix(Family::Windows, b"").unwrap().is_empty());
    }

    /// A crash after RocksDB linked the file in but before the file's own
    /// name went: the name and the live table are one inode, which holds
    /// the sequence number RocksDB assigned it (7.8 writes it into the
    /// file) and cannot be ingested again. It is recognised by its second
    /// link and only its name goes, so the database opens again and
    /// again.
    #[test]
    fn a_run_already_in_the_database_is_not_ingested_again() {
        let dir = tempfile::tempdir().unwrap();
        let (store, path) = ingested(dir.path());
        // The run's table: the largest (the memtable holding `old`, which
        // it overlapped, was flushed into another).
        let live = store.db.live_files().unwrap();
        let table = live
            .iter()
            .filter(|f| f.column_family_name == Family::Windows.name())
            .max_by_key(|f| f.size)
            .unwrap();
        std::fs::hard_link(dir.path().join(table.name.trim_start_matches('/')), &path).unwrap();
        put_marker(&store, path.file_name().unwrap().to_str().unwrap());
        drop(store);
        for _ in 0..3 {
            assert_batch_applied(&StateStore::open(dir.path()).unwrap());
        }
    }

    /// A stale marker (its removal lost) must not claim a newer run whose
    /// batch never committed.
    #[test]
    fn a_stale_marker_does_not_claim_a_newer_uncommitted_run() {
        let dir = tempfile::tempdir().unwrap();
        let (store, path) = ingested(dir.path());
        put_marker(&store, path.file_name().unwrap().to_str().unwrap());
        let mut newer = StateBatch::new();
        newer.put(Family::Windows, b"uncommitted", b"x");
        let run = Run::of(&newer, 1).unwrap().unwrap();
        run.write_file(&store, &store.path.join("kflow-run-999999.sst"))
            .unwrap();
        drop(run);
        drop(store);
        let store = StateStore::open(dir.path()).unwrap();
        assert_batch_applied(&store);
        assert!(store
            .get(Family::Windows, b"uncommitted")
            .unwrap()
            .is_none());
    }

    /// Window partitions rewriting their state at a start write at once:
    /// each run is committed and ingested whole, none lost.
    #[test]
    fn runs_written_at_once_from_many_threads_all_go_in() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        std::thread::scope(|scope| {
            for t in 0..4u8 {
                let store = &store;
                scope.spawn(move || {
                    for round in 0..10u32 {
                        let mut batch = StateBatch::new();
                        for i in 0..200u32 {
                            let key = [&[t][..], &round.to_be_bytes(), &i.to_be_bytes()].concat();
                            batch.put(Family::Windows, &key, &i.to_le_bytes());
                        }
                        store.write(batch, WriteMode::Buffered).unwrap();
                    }
                });
            }
        });
        assert_eq!(
            store.scan_prefix(Family::Windows, b"").unwrap().len(),
            4 * 10 * 200
        );
        assert!(store.get(Family::Meta, PENDING_KEY).unwrap().is_none());
        assert!(runs(dir.path()).is_empty());
    }
}
