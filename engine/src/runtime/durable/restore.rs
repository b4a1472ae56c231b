//! Restoring from the checkpoint store: the newest complete checkpoint (or
//! a chosen one) is downloaded into a fresh database folder. A checkpoint
//! whose manifest does not parse or whose files are missing or of the wrong
//! size is skipped, loudly, for the one before it.

use std::path::Path;

use super::layout::{manifest_id, manifest_key, Manifest};
use super::{io_error, store_error};
use crate::aws::s3::{S3Url, S3};
use crate::error::EngineError;

/// The ids of the checkpoints in the store that have a manifest, newest
/// first, with their manifests (`None`: it does not parse).
///
/// # Errors
/// The store cannot be listed or read.
pub fn list(s3: &S3, url: &S3Url) -> Result<Vec<(u64, Option<Manifest>)>, EngineError> {
    let listed = s3
        .list(&url.bucket, &url.key("checkpoints/"))
        .map_err(|e| store_error(url, "listing checkpoints", e))?;
    let mut ids: Vec<u64> = listed
        .iter()
        .filter_map(|(k, _)| manifest_id(url, k))
        .collect();
    ids.sort_unstable_by(|a, b| b.cmp(a));
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let bytes = s3
            .get(&url.bucket, &manifest_key(url, id))
            .map_err(|e| store_error(url, "reading a manifest", e))?;
        let manifest = bytes.and_then(|b| serde_json::from_slice::<Manifest>(&b).ok());
        out.push((id, manifest));
    }
    Ok(out)
}

/// Downloads checkpoint `wanted` (default: the newest complete one) into
/// `db_dir`, replacing what is there. Returns the checkpoint restored, or
/// `None` when the store holds none.
///
/// # Errors
/// The store cannot be read, `wanted` is not there or incomplete, or the
/// local folder cannot be written.
pub fn download(
    url: &S3Url,
    db_dir: &Path,
    wanted: Option<u64>,
) -> Result<Option<u64>, EngineError> {
    let s3 = super::connect(url)?;
    let checkpoints = list(&s3, url)?;
    let candidates: Vec<&(u64, Option<Manifest>)> = checkpoints
        .iter()
        .filter(|(id, _)| wanted.is_none_or(|w| w == *id))
        .collect();
    if let Some(w) = wanted {
        if candidates.is_empty() {
            let ids: Vec<String> = checkpoints.iter().map(|(id, _)| id.to_string()).collect();
            return Err(EngineError::StoreContents {
                url: url.to_string(),
                what: format!(
                    "has no checkpoint {w} (it has: {})",
                    if ids.is_empty() {
                        "none".into()
                    } else {
                        ids.join(", ")
                    }
                ),
            });
        }
    }
    let staging = db_dir.with_extension("restoring");
    for (id, manifest) in candidates {
        let Some(manifest) = manifest else {
            tracing::error!(
                "checkpoint {id} in {url}: its manifest does not parse; trying the one before"
            );
            continue;
        };
        match fetch(&s3, url, manifest, &staging) {
            Ok(()) => {
                if db_dir.exists() {
                    std::fs::remove_dir_all(db_dir).map_err(|e| io_error(db_dir, e))?;
                }
                std::fs::rename(&staging, db_dir).map_err(|e| io_error(db_dir, e))?;
                tracing::info!(
                    "downloaded checkpoint {id} from {url} ({} files, {} bytes)",
                    manifest.files.len(),
                    manifest.bytes()
                );
                return Ok(Some(*id));
            }
            Err(problem) if wanted.is_none() => {
                tracing::error!(
                    "checkpoint {id} in {url} is incomplete ({problem}); trying the one before"
                );
            }
            Err(problem) => {
                return Err(EngineError::StoreContents {
                    url: url.to_string(),
                    what: format!("checkpoint {id} is incomplete: {problem}"),
                })
            }
        }
    }
    let _ = std::fs::remove_dir_all(&staging);
    Ok(None)
}

/// Downloads every file of `manifest` into `dir` (made afresh); what is
/// wrong with the checkpoint if it cannot be.
fn fetch(s3: &S3, url: &S3Url, manifest: &Manifest, dir: &Path) -> Result<(), String> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for file in &manifest.files {
        let body = s3
            .get(&url.bucket, &file.key)
            .map_err(|e| crate::error::causes(&e))?
            .ok_or_else(|| format!("{} is missing", file.key))?;
        if body.len() as u64 != file.size {
            return Err(format!(
                "{} has {} bytes, the manifest says {}",
                file.key,
                body.len(),
                file.size
            ));
        }
        let path = dir.join(&file.name);
        std::fs::write(&path, body).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}
