//! The checkpoint store's layout in S3 and its manifest.
//!
//! ```text
//! s3://bucket/prefix/
//!   sst/<lineage>/<number>.sst            SST files, shared by every checkpoint that has them
//!   checkpoints/<id, 20 digits>/<file>    the checkpoint's own small files (MANIFEST-*, CURRENT, OPTIONS-*)
//!   checkpoints/<id, 20 digits>/manifest.json   written last: the checkpoint is complete when it exists
//! ```
//!
//! RocksDB never rewrites an SST file under the same name within one
//! database history (the lineage), so an SST uploaded once serves every
//! later checkpoint that still has it.

use serde::{Deserialize, Serialize};

use crate::aws::s3::S3Url;
use crate::runtime::meta::CheckpointMeta;

/// The manifest's format version.
pub const FORMAT: u32 = 1;

/// What one complete checkpoint in the store is made of.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: u32,
    /// The checkpoint id.
    pub id: u64,
    /// The job's name.
    pub job: String,
    /// The database history.
    pub lineage: String,
    /// When it was committed locally, epoch ms.
    pub created_ms: i64,
    /// Every file of the database copy.
    pub files: Vec<StoredFile>,
    /// The checkpoint's metadata: source positions, window clocks, sink
    /// lengths, the job's fingerprint.
    pub meta: CheckpointMeta,
}

/// One file of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredFile {
    /// Its name in the database folder.
    pub name: String,
    /// Its object key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
}

impl Manifest {
    /// Total bytes of its files.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// The folder of checkpoint `id`.
pub fn checkpoint_dir(url: &S3Url, id: u64) -> String {
    url.key(&format!("checkpoints/{id:020}"))
}

/// The manifest key of checkpoint `id`.
pub fn manifest_key(url: &S3Url, id: u64) -> String {
    format!("{}/manifest.json", checkpoint_dir(url, id))
}

/// The key of a database file of checkpoint `id`.
pub fn file_key(url: &S3Url, lineage: &str, id: u64, name: &str) -> String {
    if name.ends_with(".sst") {
        url.key(&format!("sst/{lineage}/{name}"))
    } else {
        format!("{}/{name}", checkpoint_dir(url, id))
    }
}

/// The id of the checkpoint whose manifest is at `key`, if it is one.
pub fn manifest_id(url: &S3Url, key: &str) -> Option<u64> {
    let rest = key.strip_prefix(&url.key("checkpoints/"))?;
    let (id, file) = rest.split_once('/')?;
    (file == "manifest.json").then(|| id.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let url = S3Url::parse("s3://b/jobs/clicks").expect("valid");
        assert_eq!(
            manifest_key(&url, 12),
            "jobs/clicks/checkpoints/00000000000000000012/manifest.json"
        );
        assert_eq!(manifest_id(&url, &manifest_key(&url, 12)), Some(12));
        assert_eq!(
            file_key(&url, "ab", 12, "000031.sst"),
            "jobs/clicks/sst/ab/000031.sst"
        );
        assert_eq!(
            file_key(&url, "ab", 12, "CURRENT"),
            "jobs/clicks/checkpoints/00000000000000000012/CURRENT"
        );
        assert_eq!(
            manifest_id(&url, "jobs/clicks/checkpoints/00000000000000000012/CURRENT"),
            None
        );
    }
}
