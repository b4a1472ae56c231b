//! The RocksDB database behind a job: opening it (and refusing directories
//! that are not kflow state), atomic batches, point reads and prefix scans.
//!
//! Every write goes through a [`StateBatch`] applied in one RocksDB
//! `WriteBatch`, so a reader never sees half of a snapshot; a batch's
//! large run of window partials goes to a table file ingested right after
//! it ([`crate::ingest`]), and is whole again once `write` returns.

use std::path::{Path, PathBuf};

use rocksdb::{
    ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB,
};

use crate::batch::{Op, StateBatch};
use crate::family::{Family, WriteMode};
use crate::ingest::DEFAULT_INGEST_MIN_BYTES;
use crate::StateError;

/// The marker every kflow state directory carries in its meta family.
const FORMAT_KEY: &[u8] = b"format";
const FORMAT_VALUE: &[u8] = b"kflow-state 1";

/// A file in a state directory whose database is being created: written
/// before RocksDB creates anything there, removed once the format marker
/// is stored. A directory that still has it was left by a crash during
/// creation, and its creation is finished on the next open.
const CREATING: &str = "KFLOW-CREATING";

/// A stored `(key, value)` pair.
pub type Entry = (Box<[u8]>, Box<[u8]>);

/// A job's RocksDB database.
pub struct StateStore {
    pub(crate) db: DB,
    pub(crate) path: PathBuf,
    /// Window-family point writes at least this large in one batch go to
    /// a table file (`crate::ingest`); `None`: never.
    pub(crate) ingest_min_bytes: Option<usize>,
    /// Held from a run's commit to its ingestion (`crate::ingest`).
    pub(crate) run_lock: std::sync::Mutex<()>,
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateStore")
            .field("path", &self.path)
            .finish()
    }
}

impl StateStore {
    /// Opens (or creates) the state database in `dir`.
    ///
    /// # Errors
    /// [`StateError::Foreign`] when `dir` holds files that are not a kflow
    /// state database, [`StateError::InUse`] when another process has it
    /// open, [`StateError::Rocks`] when RocksDB cannot open it (corruption,
    /// permissions), [`StateError::Io`] when the directory cannot be
    /// created.
    pub fn open(dir: &Path) -> Result<StateStore, StateError> {
        let path = dir.to_path_buf();
        let io = |source| StateError::Io {
            path: path.clone(),
            source,
        };
        let fresh = match std::fs::read_dir(dir) {
            Ok(mut entries) => entries.next().is_none(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
            Err(e) => return Err(io(e)),
        };
        let creating = dir.join(CREATING);
        if fresh {
            Self::start_creating(dir, &creating)?;
        }
        // Fresh, or a creation a crash interrupted: RocksDB makes what is
        // missing (it is crash-safe itself), then the marker is stored.
        let create = fresh || creating.exists();
        if !create && !dir.join("CURRENT").exists() {
            return Err(StateError::Foreign {
                path,
                reason: "it holds files but no RocksDB database".into(),
            });
        }
        // A database made before the `packs` family existed opens without
        // it and gains it once its marker shows it is kflow's.
        let families = if create {
            Vec::new()
        } else {
            DB::list_cf(&Options::default(), dir).unwrap_or_default()
        };
        let before_packs = families.len() == 4
            && ["default", "windows", "dedup", "meta"]
                .iter()
                .all(|name| families.iter().any(|f| f == name));
        let opened = Family::ALL
            .into_iter()
            .filter(|f| !(before_packs && *f == Family::Packs));
        let db = DB::open_cf_descriptors(&Self::options(create), dir, Self::descriptors(opened))
            .map_err(|source| Self::open_error(&path, source))?;
        if create {
            let store = StateStore::with(db, path.clone(), Some(DEFAULT_INGEST_MIN_BYTES));
            let mut batch = StateBatch::new();
            batch.put(Family::Meta, FORMAT_KEY, FORMAT_VALUE);
            store.write(batch, WriteMode::Synced)?;
            std::fs::remove_file(&creating).map_err(io)?;
            return Ok(store);
        }
        let mut store = StateStore::with(db, path, Some(DEFAULT_INGEST_MIN_BYTES));
        match store.get(Family::Meta, FORMAT_KEY)? {
            Some(v) if v == FORMAT_VALUE => {
                if before_packs {
                    let name = Family::Packs.name();
                    let made = store
                        .db
                        .create_cf(name, &Self::family_options(Family::Packs));
                    made.map_err(|e| store.rocks(e))?;
                }
                store.finish_pending_run()?;
                Ok(store)
            }
            Some(v) => Err(StateError::Foreign {
                path: store.path.clone(),
                reason: format!("unknown format {:?}", String::from_utf8_lossy(&v)),
            }),
            None => Err(StateError::Foreign {
                path: store.path.clone(),
                reason: "its database has no kflow format marker".into(),
            }),
        }
    }

    /// Opens an existing state database for reading only, without taking
    /// its lock: a running job's state can be inspected (as of its last
    /// write) while the job holds it. A run of window partials committed
    /// but not yet ingested (`crate::ingest`), or left so by a crash until
    /// the job opens its state again, is not seen.
    ///
    /// # Errors
    /// [`StateError::Foreign`] when `dir` is not a kflow state database,
    /// [`StateError::Rocks`] when RocksDB cannot read it.
    pub fn open_read_only(dir: &Path) -> Result<StateStore, StateError> {
        let path = dir.to_path_buf();
        if !dir.join("CURRENT").is_file() {
            return Err(StateError::Foreign {
                path,
                reason: "it holds no RocksDB database".into(),
            });
        }
        let families = DB::list_cf(&Options::default(), dir).unwrap_or_default();
        let present = Family::ALL
            .into_iter()
            .filter(|f| families.iter().any(|name| name == f.name()));
        let db = DB::open_cf_descriptors_read_only(
            &Self::options(false),
            dir,
            Self::descriptors(present),
            false,
        )
        .map_err(|source| Self::open_error(&path, source))?;
        let store = StateStore::with(db, path, None);
        match store.get(Family::Meta, FORMAT_KEY)? {
            Some(v) if v == FORMAT_VALUE => Ok(store),
            _ => Err(StateError::Foreign {
                path: store.path.clone(),
                reason: "its database has no kflow format marker".into(),
            }),
        }
    }

    /// Names why an existing database would not open: another process
    /// holds it, it is some other program's RocksDB (other column
    /// families), or RocksDB's own reason (corruption, permissions).
    fn open_error(path: &Path, source: rocksdb::Error) -> StateError {
        let text = source.to_string();
        let path = path.to_path_buf();
        // The lock file held elsewhere (EAGAIN from flock), or by this
        // process; other lock failures (ENOLCK on a network filesystem)
        // keep RocksDB's reason.
        let held = text.contains("lock hold")
            || (text.contains("While lock file")
                && text.contains("Resource temporarily unavailable"));
        if held {
            StateError::InUse { path, source }
        } else if text.contains("olumn famil") {
            StateError::Foreign { path, reason: text }
        } else {
            StateError::Rocks { path, source }
        }
    }

    /// Marks `dir` as a database being created ([`CREATING`]), durably,
    /// before RocksDB writes anything there: a crash then leaves a
    /// directory the next open recognizes and finishes, never a half-made
    /// database it would have to refuse. (A database used to be built in a
    /// sibling `<dir>.creating` and renamed into place, then opened again:
    /// ~4 ms of every fresh start. A sibling left by a crash of such a
    /// kflow is removed here.)
    fn start_creating(dir: &Path, creating: &Path) -> Result<(), StateError> {
        let io = |path: &Path, source| StateError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut sibling = dir
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_default();
        sibling.push(".creating");
        let sibling = dir.with_file_name(sibling);
        match std::fs::remove_dir_all(&sibling) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&sibling, e)),
        }
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        std::fs::write(creating, b"").map_err(|e| io(creating, e))?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io(dir, e))
    }

    fn options(create: bool) -> Options {
        let mut options = Options::default();
        options.create_if_missing(create);
        options.create_missing_column_families(create);
        options.increase_parallelism(2);
        // RocksDB opens each family's table files on 16 threads by
        // default, started and joined per family at every open even when
        // it has no files: 75 threads for kflow's five, ~3-4 ms of every
        // start on a 2-core machine. One per core still opens a large
        // state's files in parallel.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        options.set_max_file_opening_threads(cores.min(16) as i32);
        // Memtables are bounded across families (checkpoints are synced
        // writes; state beyond the budget lives in SST files, not here).
        options.set_db_write_buffer_size(64 << 20);
        // A family with few writes (meta, dedup) would otherwise keep every
        // write-ahead log alive until its memtable fills: flush it instead
        // once the logs pass this.
        options.set_max_total_wal_size(128 << 20);
        options
    }

    fn descriptors(
        families: impl Iterator<Item = Family>,
    ) -> impl Iterator<Item = ColumnFamilyDescriptor> {
        families.map(|f| ColumnFamilyDescriptor::new(f.name(), Self::family_options(f)))
    }

    /// The store of the open `db` in `path`.
    fn with(db: DB, path: PathBuf, ingest_min_bytes: Option<usize>) -> StateStore {
        StateStore {
            db,
            path,
            ingest_min_bytes,
            run_lock: std::sync::Mutex::new(()),
        }
    }

    pub(crate) fn family_options(family: Family) -> Options {
        // Bloom filters: a cache miss on a key that was never stored (most
        // new keys of a spilled window) costs no block reads. The window
        // family's are asked for a key in every one of a spilled window's
        // runs (13 for 5M keys at 64MB), so at 10 bits a key (1% false
        // "maybe" per file) an eighth of the keys read a block; at 16 bits
        // (~0.1%) a hundredth do, for 6 bits more a key in memory
        // (docs/performance/spilling.md, "Tighter filters on spilled runs").
        let bits = if family == Family::Windows {
            16.0
        } else {
            10.0
        };
        let mut table = rocksdb::BlockBasedOptions::default();
        table.set_bloom_filter(bits, false);
        let mut family_options = Options::default();
        family_options.set_block_based_table_factory(&table);
        family_options.set_write_buffer_size(16 << 20);
        // The same for memtables: without a filter, every miss walks the
        // skip list (a 5M-new-key run spent most of its time there). Only
        // the window family looks up keys that may be absent; each
        // memtable's filter (1.6 MB here) is allocated and zeroed when the
        // memtable is made, at every open and flush.
        if family == Family::Windows {
            family_options.set_memtable_prefix_bloom_ratio(0.1);
            family_options.set_memtable_whole_key_filtering(true);
        }
        // Partials are short-lived and their keys (ids, hashes) compress
        // poorly: compressing cost flushes and compactions CPU for little.
        family_options.set_compression_type(rocksdb::DBCompressionType::None);
        // A spilling window writes a run of new keys at every early
        // checkpoint, each overlapping all the others: compacting level 0
        // at RocksDB's default of 4 files rewrote level 1 (the whole
        // window so far) every four checkpoints; at 8, half as often, and a
        // 5M-key window's compaction CPU fell by more than half
        // (docs/performance/spilling.md, "A keyed write read ahead, a fire
        // beside RocksDB, fewer level-0 compactions").
        family_options.set_level_zero_file_num_compaction_trigger(8);
        family_options
    }

    /// The directory this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn cf(&self, family: Family) -> Result<&rocksdb::ColumnFamily, StateError> {
        self.db.cf_handle(family.name()).ok_or_else(|| {
            StateError::Corrupt(format!("column family `{}` is missing", family.name()))
        })
    }

    pub(crate) fn rocks(&self, source: rocksdb::Error) -> StateError {
        StateError::Rocks {
            path: self.path.clone(),
            source,
        }
    }

    /// Writes a consistent copy of the database as it is now into `dir`
    /// (which must not exist): the memtables are flushed, SST files are
    /// hard-linked, the small metadata files copied. Writes that come later
    /// do not change the copy.
    ///
    /// # Errors
    /// [`StateError::Rocks`] when RocksDB cannot make the copy.
    pub fn snapshot_to(&self, dir: &Path) -> Result<(), StateError> {
        let checkpoint =
            rocksdb::checkpoint::Checkpoint::new(&self.db).map_err(|e| self.rocks(e))?;
        checkpoint.create_checkpoint(dir).map_err(|e| self.rocks(e))
    }

    /// Sets the size of a batch's window-family point writes from which
    /// [`StateStore::commit`] writes them as a table file (`None`: never).
    /// The default, [`DEFAULT_INGEST_MIN_BYTES`], is the family's memtable
    /// size; tests lower it to take that path with little state.
    pub fn set_ingest_min_bytes(&mut self, bytes: Option<usize>) {
        self.ingest_min_bytes = bytes;
    }

    /// Applies `batch` ([`StateStore::commit`], then [`StateStore::ingest`]
    /// of a run it left: atomically once this returns, and after a crash
    /// once the store is opened again); with `sync` the write is on disk
    /// when this returns.
    ///
    /// # Errors
    /// [`StateError::Rocks`] when RocksDB fails the write;
    /// [`StateError::Io`] when a run's file cannot be made durable.
    pub fn write(&self, batch: StateBatch, sync: WriteMode) -> Result<(), StateError> {
        match self.commit(batch, sync)? {
            Some(run) => self.ingest(run),
            None => Ok(()),
        }
    }

    /// Applies `batch` in one RocksDB `WriteBatch`.
    pub(crate) fn write_batch(&self, batch: StateBatch, sync: WriteMode) -> Result<(), StateError> {
        let mut wb = WriteBatch::default();
        for chunk in batch.chunks {
            for op in StateBatch::ops_of(&chunk) {
                self.add(&mut wb, op?)?;
            }
            // `chunk` is freed here: RocksDB's batch holds its writes now.
        }
        self.apply(wb, sync)
    }

    /// Adds `op` to RocksDB's `wb`.
    pub(crate) fn add(&self, wb: &mut WriteBatch, op: Op<'_>) -> Result<(), StateError> {
        match op {
            Op::Put(family, key, value) => wb.put_cf(self.cf(family)?, key, value),
            Op::Delete(family, key) => wb.delete_cf(self.cf(family)?, key),
            Op::DeleteRange(family, from, to) => wb.delete_range_cf(self.cf(family)?, from, to),
        }
        Ok(())
    }

    /// Writes RocksDB's `wb`.
    pub(crate) fn apply(&self, wb: WriteBatch, sync: WriteMode) -> Result<(), StateError> {
        let mut options = WriteOptions::default();
        options.set_sync(sync == WriteMode::Synced);
        self.db.write_opt(wb, &options).map_err(|e| self.rocks(e))
    }

    /// Reads one value.
    ///
    /// # Errors
    /// [`StateError::Rocks`] when RocksDB fails the read.
    pub fn get(&self, family: Family, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.db
            .get_cf(self.cf(family)?, key)
            .map_err(|e| self.rocks(e))
    }

    /// Reads `keys` (sorted ascending) in one batch and calls `found` with
    /// the index and value of each key that is stored.
    ///
    /// # Errors
    /// [`StateError::Rocks`] when RocksDB fails a read; the first error
    /// `found` returns.
    pub fn multi_get(
        &self,
        family: Family,
        keys: &[Vec<u8>],
        mut found: impl FnMut(usize, &[u8]) -> Result<(), StateError>,
    ) -> Result<(), StateError> {
        debug_assert!(keys.windows(2).all(|w| w[0] < w[1]), "keys must be sorted");
        // The reads of a spilled window's evicted keys land anywhere in
        // its runs (hundreds of MB): kept in the block cache they rarely
        // hit, and each insert evicted another block and cost an
        // allocation (a 5M-user window revisiting evicted keys: 18.0 ->
        // 15.4 s; docs/performance/spilling.md, "Tighter filters on spilled runs").
        let mut read = rocksdb::ReadOptions::default();
        read.fill_cache(false);
        let values = self
            .db
            .batched_multi_get_cf_opt(self.cf(family)?, keys, true, &read);
        for (i, value) in values.into_iter().enumerate() {
            if let Some(bytes) = value.map_err(|e| self.rocks(e))? {
                found(i, &bytes)?;
            }
        }
        Ok(())
    }

    /// Every `(key, value)` whose key starts with `prefix`, in key order.
    ///
    /// # Errors
    /// [`StateError::Rocks`] when RocksDB fails the scan.
    pub fn scan_prefix(&self, family: Family, prefix: &[u8]) -> Result<Vec<Entry>, StateError> {
        self.scan_range(family, prefix, |k| k.starts_with(prefix))
    }

    /// Every `(key, value)` from `start` on while `keep(key)` holds.
    ///
    /// # Errors
    /// [`StateError::Rocks`] when RocksDB fails the scan.
    pub fn scan_range(
        &self,
        family: Family,
        start: &[u8],
        keep: impl Fn(&[u8]) -> bool,
    ) -> Result<Vec<Entry>, StateError> {
        let mut out = Vec::new();
        let mode = IteratorMode::From(start, Direction::Forward);
        for item in self.db.iterator_cf(self.cf(family)?, mode) {
            let (key, value) = item.map_err(|e| self.rocks(e))?;
            if !keep(&key) {
                break;
            }
            out.push((key, value));
        }
        Ok(out)
    }

    /// Calls `visit` for every `(key, value)` whose key starts with
    /// `prefix`, in key order, without collecting them, until it returns
    /// `false`.
    ///
    /// # Errors
    /// [`StateError::Rocks`] when RocksDB fails the scan.
    pub fn for_each_prefix(
        &self,
        family: Family,
        prefix: &[u8],
        mut visit: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StateError> {
        // A one-pass scan: keep its blocks out of the block cache, read
        // ahead, and stop at the end of the prefix (past range tombstones).
        let mut read = rocksdb::ReadOptions::default();
        read.fill_cache(false);
        read.set_readahead_size(2 << 20);
        if let Some(upper) = prefix_successor(prefix) {
            read.set_iterate_upper_bound(upper);
        }
        // The raw iterator lends each entry where RocksDB holds it; the
        // plain one copies every key and value into two fresh allocations.
        let mut entries = self.db.raw_iterator_cf_opt(self.cf(family)?, read);
        entries.seek(prefix);
        while let (Some(key), Some(value)) = (entries.key(), entries.value()) {
            if !key.starts_with(prefix) || !visit(key, value) {
                return Ok(());
            }
            entries.next();
        }
        entries.status().map_err(|e| self.rocks(e))
    }

    /// Removes every entry of `families` (a fresh start) in one synced
    /// write, so a crash leaves either all of it or none of it; the format
    /// marker stays.
    ///
    /// # Errors
    /// [`StateError::Rocks`] when RocksDB fails.
    pub fn clear(&self, families: &[Family]) -> Result<(), StateError> {
        let mut batch = StateBatch::new();
        for &family in families {
            // One range delete from the first key to just past the last.
            let last = self
                .db
                .iterator_cf(self.cf(family)?, IteratorMode::End)
                .next();
            if let Some(item) = last {
                let (key, _) = item.map_err(|e| self.rocks(e))?;
                let mut end = key.to_vec();
                end.push(0);
                batch.delete_range(family, &[], &end);
            }
            if family == Family::Meta {
                batch.put(Family::Meta, FORMAT_KEY, FORMAT_VALUE);
            }
        }
        self.write(batch, WriteMode::Synced)
    }

    /// Bytes of SST and log files on disk, as RocksDB estimates them.
    pub fn size_on_disk(&self) -> u64 {
        self.property_sum("rocksdb.total-sst-files-size")
    }

    /// Bytes RocksDB holds in memory outside its block cache: memtables
    /// (active, immutable and pinned) and open SST files' index and filter
    /// blocks.
    pub fn memory(&self) -> u64 {
        self.property_sum("rocksdb.size-all-mem-tables")
            + self.property_sum("rocksdb.estimate-table-readers-mem")
    }

    /// An integer property summed over every column family.
    fn property_sum(&self, name: &str) -> u64 {
        Family::ALL
            .iter()
            .filter_map(|f| {
                let cf = self.cf(*f).ok()?;
                self.db.property_int_value_cf(cf, name).ok().flatten()
            })
            .sum()
    }
}

/// The smallest key greater than every key starting with `prefix`, if any.
fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut upper = prefix.to_vec();
    while let Some(last) = upper.pop() {
        if last < u8::MAX {
            upper.push(last + 1);
            return Some(upper);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A plain RocksDB database in `dir` with `families`, as kflow did not
    /// make it (or did not finish making it).
    fn raw_db(dir: &Path, families: &[&str]) -> DB {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        DB::open_cf(&options, dir, families).unwrap()
    }

    /// Writes to the `packs` family of `store`, reopens `dir` and reads it
    /// back.
    fn packs_survive_a_reopen(store: StateStore, dir: &Path) {
        let mut batch = StateBatch::new();
        batch.put(Family::Packs, b"p", b"q");
        store.write(batch, WriteMode::Synced).unwrap();
        drop(store);
        let store = StateStore::open(dir).unwrap();
        assert_eq!(store.get(Family::Packs, b"p").unwrap().unwrap(), b"q");
    }

    #[test]
    fn a_held_database_can_be_read_without_its_lock() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        let mut batch = StateBatch::new();
        batch.put(Family::Meta, b"checkpoint", b"{\"id\":3}");
        store.write(batch, WriteMode::Synced).unwrap();
        assert!(matches!(
            StateStore::open(dir.path()),
            Err(StateError::InUse { .. })
        ));
        let reader = StateStore::open_read_only(dir.path()).unwrap();
        assert_eq!(
            reader.get(Family::Meta, b"checkpoint").unwrap().unwrap(),
            b"{\"id\":3}"
        );
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            StateStore::open_read_only(empty.path()),
            Err(StateError::Foreign { .. })
        ));
    }

    #[test]
    fn batches_are_applied_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = StateStore::open(dir.path()).unwrap();
            let mut batch = StateBatch::new();
            batch.put(Family::Windows, b"a1", b"x");
            batch.put(Family::Windows, b"a2", b"y");
            batch.put(Family::Windows, b"b1", b"z");
            store.write(batch, WriteMode::Synced).unwrap();
            let mut batch = StateBatch::new();
            batch.delete(Family::Windows, b"a2");
            store.write(batch, WriteMode::Synced).unwrap();
        }
        let store = StateStore::open(dir.path()).unwrap();
        let found = store.scan_prefix(Family::Windows, b"a").unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(&*found[0].0, b"a1");
        assert_eq!(store.get(Family::Windows, b"b1").unwrap().unwrap(), b"z");
        let mut batch = StateBatch::new();
        batch.put(Family::Meta, b"checkpoint", b"{}");
        batch.put(Family::Windows, &[0xff, 0xff, 0xff], b"last");
        store.write(batch, WriteMode::Synced).unwrap();
        store.clear(&[Family::Windows, Family::Meta]).unwrap();
        assert!(store.scan_prefix(Family::Windows, b"").unwrap().is_empty());
        assert_eq!(store.scan_prefix(Family::Meta, b"").unwrap().len(), 1);
        drop(store);
        // The marker stayed: the database still opens as kflow's.
        let store = StateStore::open(dir.path()).unwrap();
        assert!(store.get(Family::Meta, b"checkpoint").unwrap().is_none());
    }

    #[test]
    fn a_database_open_elsewhere_is_reported_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let _first = StateStore::open(dir.path()).unwrap();
        let err = StateStore::open(dir.path()).unwrap_err();
        assert!(matches!(err, StateError::InUse { .. }), "{err}");
        assert!(
            err.to_string().contains("in use by another process"),
            "{err}"
        );
    }

    #[test]
    fn a_creation_interrupted_by_a_crash_is_finished() {
        let dir = tempfile::tempdir().unwrap();
        // What a kill during creation leaves: the mark, and RocksDB with
        // some of the families and no format marker.
        std::fs::write(dir.path().join(CREATING), "").unwrap();
        drop(raw_db(dir.path(), &["windows"]));
        let store = StateStore::open(dir.path()).unwrap();
        assert!(store.get(Family::Meta, FORMAT_KEY).unwrap().is_some());
        assert!(!dir.path().join(CREATING).exists());
        packs_survive_a_reopen(store, dir.path());
    }

    #[test]
    fn a_fresh_directory_is_created_in_place_and_unmarked() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("db");
        // A sibling left by a kflow that built its database aside.
        std::fs::create_dir_all(parent.path().join("db.creating")).unwrap();
        std::fs::write(parent.path().join("db.creating/CURRENT"), "half").unwrap();
        let store = StateStore::open(&dir).unwrap();
        assert!(store.get(Family::Meta, FORMAT_KEY).unwrap().is_some());
        assert!(!dir.join(CREATING).exists());
        assert!(!parent.path().join("db.creating").exists());
        drop(store);
        assert!(StateStore::open(&dir).is_ok());
    }

    #[test]
    fn a_folder_of_other_files_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("notes.txt"), "hello").unwrap();
        let err = StateStore::open(dir.path()).unwrap_err();
        assert!(matches!(err, StateError::Foreign { .. }), "{err}");
    }

    #[test]
    fn a_database_from_before_packs_gains_the_family() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = raw_db(dir.path(), &["windows", "dedup", "meta"]);
            let meta = db.cf_handle("meta").unwrap();
            db.put_cf(meta, FORMAT_KEY, FORMAT_VALUE).unwrap();
            db.put_cf(db.cf_handle("windows").unwrap(), b"k", b"v")
                .unwrap();
        }
        let store = StateStore::open(dir.path()).unwrap();
        assert_eq!(store.get(Family::Windows, b"k").unwrap().unwrap(), b"v");
        packs_survive_a_reopen(store, dir.path());
    }

    #[test]
    fn other_column_families_are_not_taken_for_an_old_database() {
        let dir = tempfile::tempdir().unwrap();
        drop(raw_db(dir.path(), &["windows", "dedup", "other"]));
        let err = StateStore::open(dir.path()).unwrap_err();
        assert!(matches!(err, StateError::Foreign { .. }), "{err}");
        let families = DB::list_cf(&Options::default(), dir.path()).unwrap();
        assert!(!families.iter().any(|f| f == "packs"), "{families:?}");
    }

    #[test]
    fn a_rocksdb_without_the_marker_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut options = Options::default();
            options.create_if_missing(true);
            let db = DB::open(&options, dir.path()).unwrap();
            db.put(b"k", b"v").unwrap();
        }
        let err = StateStore::open(dir.path()).unwrap_err();
        assert!(matches!(err, StateError::Foreign { .. }), "{err}");
    }

    #[test]
    fn prefix_successors_bound_prefix_scans() {
        assert_eq!(prefix_successor(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_successor(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_successor(&[0xff, 0xff]), None);
    }
}
