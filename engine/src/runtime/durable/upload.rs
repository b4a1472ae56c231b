//! The uploader thread: takes local snapshots of committed checkpoints and
//! makes them durable in the store, manifest last, then drops the
//! checkpoints beyond `retain_checkpoints` and the SST files no retained
//! checkpoint uses.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use super::layout::{file_key, manifest_id, manifest_key, Manifest, StoredFile, FORMAT};
use super::{io_error, store_error};
use crate::aws::s3::{S3Url, S3};
use crate::aws::RetryPolicy;
use crate::dataflow::metrics::Metrics;
use crate::error::EngineError;
use crate::runtime::meta::CheckpointMeta;

/// One committed checkpoint's local snapshot, to upload.
#[derive(Debug)]
pub struct UploadJob {
    /// The checkpoint id.
    pub id: u64,
    /// The snapshot folder (removed after the upload).
    pub dir: PathBuf,
    /// Its metadata.
    pub meta: CheckpointMeta,
}

/// The handle of the uploader thread.
pub struct Uploader {
    sender: Option<SyncSender<UploadJob>>,
    busy: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Uploader {
    /// Starts the thread uploading to `url`, keeping `retain` complete
    /// checkpoints. What the store holds is read first (in the thread).
    ///
    /// # Errors
    /// The S3 client's runtime cannot start.
    pub fn start(
        url: S3Url,
        retain: usize,
        metrics: Arc<Metrics>,
    ) -> Result<Uploader, EngineError> {
        let s3 = S3::connect(RetryPolicy::BRIEF).map_err(|e| store_error(&url, "connecting", e))?;
        let (sender, jobs) = sync_channel::<UploadJob>(1);
        let busy = Arc::new(AtomicBool::new(false));
        let worker = Worker {
            s3,
            url,
            retain,
            metrics,
            manifests: BTreeMap::new(),
            present: BTreeSet::new(),
            known: false,
        };
        let thread = {
            let busy = busy.clone();
            std::thread::Builder::new()
                .name("checkpoint-upload".into())
                .spawn(move || worker.run(&jobs, &busy))
                .map_err(|e| io_error(std::path::Path::new("checkpoint-upload thread"), e))?
        };
        Ok(Uploader {
            sender: Some(sender),
            busy,
            thread: Some(thread),
        })
    }

    /// Whether an upload is under way (a new snapshot would wait).
    pub fn is_busy(&self) -> bool {
        self.busy.load(Ordering::Acquire)
    }

    /// Queues a snapshot; waits while another is queued.
    pub fn submit(&self, job: UploadJob) {
        self.busy.store(true, Ordering::Release);
        if let Some(sender) = &self.sender {
            let _ = sender.send(job);
        }
    }

    /// Waits until every queued upload is done.
    pub fn finish(&mut self) {
        self.sender.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Uploader {
    fn drop(&mut self) {
        self.finish();
    }
}

struct Worker {
    s3: S3,
    url: S3Url,
    retain: usize,
    metrics: Arc<Metrics>,
    /// Complete checkpoints in the store: id -> every key it owns (its own
    /// files and manifest) and the SST keys it uses.
    manifests: BTreeMap<u64, (Vec<String>, Vec<String>)>,
    /// SST keys known to be in the store.
    present: BTreeSet<String>,
    /// Whether the store's contents were read.
    known: bool,
}

impl Worker {
    fn run(mut self, jobs: &Receiver<UploadJob>, busy: &AtomicBool) {
        while let Ok(job) = jobs.recv() {
            let started = Instant::now();
            let dir = job.dir.clone();
            let id = job.id;
            match self.upload(job) {
                Ok((bytes, snapshot)) => {
                    let c = &self.metrics.checkpoints;
                    c.uploaded(id, bytes, snapshot, started.elapsed());
                    tracing::debug!(checkpoint = id, bytes, "checkpoint durable in {}", self.url);
                }
                Err(e) => {
                    self.metrics.checkpoints.upload_failed();
                    tracing::warn!(
                        "checkpoint {id} not uploaded (the next checkpoint tries again): {}",
                        crate::error::causes(&e)
                    );
                }
            }
            let _ = std::fs::remove_dir_all(&dir);
            busy.store(false, Ordering::Release);
        }
    }

    /// Reads which complete checkpoints and SST files the store holds, and
    /// deletes what failed uploads left behind.
    fn learn(&mut self) -> Result<(), EngineError> {
        let url = &self.url;
        let listed = self
            .s3
            .list(&url.bucket, &url.key("checkpoints/"))
            .map_err(|e| store_error(url, "listing checkpoints", e))?;
        let ids: BTreeSet<u64> = listed
            .iter()
            .filter_map(|(k, _)| manifest_id(url, k))
            .collect();
        for id in &ids {
            let key = manifest_key(url, *id);
            let manifest = self
                .s3
                .get(&url.bucket, &key)
                .map_err(|e| store_error(url, "reading a manifest", e))?
                .and_then(|bytes| serde_json::from_slice::<Manifest>(&bytes).ok());
            if let Some(m) = manifest {
                self.manifests.insert(*id, owned_and_used(&m, &key));
            }
        }
        // Files of checkpoints without a manifest: an upload that failed.
        let orphans: Vec<String> = listed
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| {
                !self
                    .manifests
                    .values()
                    .any(|(owned, _)| owned.iter().any(|o| o == k))
            })
            .collect();
        self.s3
            .delete(&url.bucket, &orphans)
            .map_err(|e| store_error(url, "deleting an incomplete checkpoint", e))?;
        let ssts = self
            .s3
            .list(&url.bucket, &url.key("sst/"))
            .map_err(|e| store_error(url, "listing SST files", e))?;
        self.present = ssts.into_iter().map(|(k, _)| k).collect();
        self.known = true;
        Ok(())
    }

    /// Uploads one snapshot; the bytes sent and the snapshot's size.
    fn upload(&mut self, job: UploadJob) -> Result<(u64, u64), EngineError> {
        if !self.known {
            self.learn()?;
        }
        let url = self.url.clone();
        let mut names: Vec<(String, u64)> = std::fs::read_dir(&job.dir)
            .map_err(|e| io_error(&job.dir, e))?
            .filter_map(Result::ok)
            .filter_map(|e| {
                let size = e.metadata().ok()?.len();
                Some((e.file_name().to_string_lossy().into_owned(), size))
            })
            .collect();
        names.sort();
        let mut files = Vec::with_capacity(names.len());
        let mut sent = 0;
        for (name, size) in names {
            let key = file_key(&url, &job.meta.lineage, job.id, &name);
            let shared = name.ends_with(".sst");
            if !(shared && self.present.contains(&key)) {
                let path = job.dir.join(&name);
                let body = std::fs::read(&path).map_err(|e| io_error(&path, e))?;
                self.s3
                    .put(&url.bucket, &key, body)
                    .map_err(|e| store_error(&url, format!("uploading {name}"), e))?;
                sent += size;
                if shared {
                    self.present.insert(key.clone());
                }
            }
            files.push(StoredFile { name, key, size });
        }
        let manifest = Manifest {
            format: FORMAT,
            id: job.id,
            job: job.meta.job.clone(),
            lineage: job.meta.lineage.clone(),
            created_ms: job.meta.created_ms,
            files,
            meta: job.meta,
        };
        let key = manifest_key(&url, manifest.id);
        let snapshot = manifest.bytes();
        let body =
            serde_json::to_vec_pretty(&manifest).map_err(|e| EngineError::StoreContents {
                url: url.to_string(),
                what: format!("manifest: {e}"),
            })?;
        sent += body.len() as u64;
        self.s3
            .put(&url.bucket, &key, body)
            .map_err(|e| store_error(&url, "writing the manifest", e))?;
        self.manifests
            .insert(manifest.id, owned_and_used(&manifest, &key));
        self.retire()?;
        Ok((sent, snapshot))
    }

    /// Deletes the checkpoints beyond `retain` (manifest first, so none is
    /// ever complete with files missing) and the SST files no retained
    /// checkpoint uses.
    fn retire(&mut self) -> Result<(), EngineError> {
        let url = self.url.clone();
        while self.manifests.len() > self.retain {
            let Some((_, (mut owned, _))) = self.manifests.pop_first() else {
                break;
            };
            owned.sort_by_key(|k| !k.ends_with("manifest.json"));
            self.s3
                .delete(&url.bucket, &owned)
                .map_err(|e| store_error(&url, "deleting an old checkpoint", e))?;
        }
        let used: BTreeSet<&String> = self.manifests.values().flat_map(|(_, used)| used).collect();
        let unused: Vec<String> = self
            .present
            .iter()
            .filter(|k| !used.contains(k))
            .cloned()
            .collect();
        self.s3
            .delete(&url.bucket, &unused)
            .map_err(|e| store_error(&url, "deleting unused SST files", e))?;
        for key in unused {
            self.present.remove(&key);
        }
        Ok(())
    }
}

/// The keys a checkpoint owns (its manifest and own files) and the SST
/// keys it uses.
fn owned_and_used(manifest: &Manifest, manifest_key: &str) -> (Vec<String>, Vec<String>) {
    let (used, mut owned): (Vec<String>, Vec<String>) = manifest
        .files
        .iter()
        .map(|f| f.key.clone())
        .partition(|k| k.ends_with(".sst"));
    owned.push(manifest_key.to_string());
    (owned, used)
}
