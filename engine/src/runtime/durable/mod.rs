//! The checkpoint store: committed checkpoints copied off the machine to
//! S3, so that a job can resume on another host after its disk is lost.
//!
//! Local RocksDB stays the working state and the local commit stays the
//! commit. Right after a local commit the coordinator takes a RocksDB
//! snapshot (hard links, in `state_dir/uploads/<id>`) and hands it to the
//! [`upload::Uploader`] thread, which uploads the SST files the store does
//! not have yet, the checkpoint's small files, and last its manifest
//! ([`layout`]). A checkpoint is *durable* once its manifest exists. While
//! an upload runs, later checkpoints are not snapshotted (the next one
//! after it is): records flow on, and disk and memory stay bounded. A
//! failed upload is logged and counted, and the next checkpoint uploads
//! everything the store still lacks.
//!
//! [`restore`] downloads the newest complete checkpoint (or a chosen one)
//! into an empty state directory.

pub mod layout;
pub mod restore;
pub mod upload;

use std::path::{Path, PathBuf};

use kflow_jobs::JobPlan;

use crate::aws::s3::{S3Url, S3};
use crate::aws::RetryPolicy;
use crate::error::EngineError;

/// The store of `plan`, if it has one.
pub fn store_url(plan: &JobPlan) -> Option<S3Url> {
    plan.checkpoint_store.as_deref().and_then(S3Url::parse)
}

/// Where snapshots wait for their upload.
pub fn uploads_dir(plan: &JobPlan) -> PathBuf {
    plan.state_dir.join("uploads")
}

/// A store error with its URL.
pub(crate) fn store_error(
    url: &S3Url,
    what: impl Into<String>,
    source: crate::aws::AwsError,
) -> EngineError {
    EngineError::Store {
        url: url.to_string(),
        what: what.into(),
        source,
    }
}

/// A local file error.
pub(crate) fn io_error(path: &Path, source: std::io::Error) -> EngineError {
    EngineError::StoreIo {
        path: path.to_path_buf(),
        source,
    }
}

/// A client for the store at `url`, with the bounded retry policy of
/// commands and restores.
///
/// # Errors
/// The client cannot be built.
pub fn connect(url: &S3Url) -> Result<S3, EngineError> {
    S3::connect(RetryPolicy::BOUNDED).map_err(|e| store_error(url, "connecting", e))
}

/// Deletes every checkpoint and SST file of the store (a fresh start
/// discards the history, as it does locally).
///
/// # Errors
/// The store cannot be listed or an object deleted.
pub fn clear(url: &S3Url) -> Result<usize, EngineError> {
    let s3 = connect(url)?;
    let mut keys = Vec::new();
    for folder in ["checkpoints/", "sst/"] {
        let listed = s3
            .list(&url.bucket, &url.key(folder))
            .map_err(|e| store_error(url, "listing", e))?;
        keys.extend(listed.into_iter().map(|(k, _)| k));
    }
    // Manifests first: a checkpoint stops being complete before its files go.
    keys.sort_by_key(|k| !k.ends_with("manifest.json"));
    s3.delete(&url.bucket, &keys)
        .map_err(|e| store_error(url, "deleting old checkpoints", e))?;
    Ok(keys.len())
}
