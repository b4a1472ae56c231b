//! The S3 sink, exactly once: the rows written since the last checkpoint
//! become one object, `part-<n>-<partition>.jsonl` (`.jsonl.gz` with
//! `compression = "gzip"`). When the checkpoint reaches the sink, the part
//! is handed to the coordinator as the checkpoint's durability work, which
//! uploads it (as a multipart upload past 64 MiB) before the checkpoint can
//! commit, while the sink goes on taking rows. If S3 is unreachable the
//! upload fails, so does the checkpoint, and the coordinator uploads the
//! same part again after a backoff. The sink's position is the number of
//! parts committed. On restore, parts numbered from that count on
//! (uploaded for a checkpoint that never committed) are deleted before
//! anything is written, so the replay writes them anew: the committed parts
//! always equal one uninterrupted run's rows.
//!
//! While the job runs, `_manifests/<checkpoint>-<parts>.json` objects say
//! which parts are final: one per committed checkpoint that made parts
//! final, `{"checkpoint":C,"parts":N}` meaning parts `0..N`, written with
//! the next checkpoint's upload. After a bounded run every part is final.

use std::io::Write as _;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Committed, LineWriter};
use crate::aws::s3::{S3Url, S3};
use crate::aws::{AwsError, RetryPolicy};
use crate::dataflow::checkpoint::Durability;
use crate::dataflow::message::Lines;
use crate::error::EngineError;

/// What an S3 sink has committed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct S3SinkPosition {
    /// Parts written (numbered from 0).
    pub parts: u64,
    /// Rows in them.
    pub rows: u64,
}

/// Writes each checkpoint's rows as one object.
pub struct S3Writer {
    name: String,
    url: S3Url,
    gzip: bool,
    s3: Arc<S3>,
    buf: Vec<u8>,
    rows: u64,
    position: S3SinkPosition,
    /// Parts whose checkpoint is not known committed yet: (part count
    /// after it, the checkpoint it belongs to).
    pending: Vec<(u64, u64)>,
    /// The part count the last manifest said.
    said: u64,
    /// A manifest to write with the next checkpoint's upload: (key, body).
    manifest: Option<(String, Vec<u8>)>,
    /// Parts larger than this go up as multipart uploads.
    part_bytes: usize,
}

/// Parts of a multipart upload: 64 MiB (test hook
/// `KFLOW_S3_PART_BYTES` makes them smaller, down to S3's 5 MiB).
const PART_BYTES: usize = 64 << 20;

impl S3Writer {
    /// A writer for sink `name` at `path` (`s3://bucket/prefix`) that
    /// resumes at `restore`, deleting the parts after it.
    ///
    /// # Errors
    /// An invalid path, or the store cannot be listed or cleaned.
    pub fn new(
        name: String,
        path: &str,
        gzip: bool,
        restore: Option<S3SinkPosition>,
    ) -> Result<S3Writer, EngineError> {
        let url = S3Url::parse(path).ok_or_else(|| EngineError::StoreContents {
            url: path.to_string(),
            what: "is not s3://BUCKET/PREFIX".into(),
        })?;
        let fail = |e: AwsError| EngineError::Store {
            url: url.to_string(),
            what: format!("sink `{name}`"),
            source: e,
        };
        // Brief: a part that cannot go up fails its checkpoint, which the
        // coordinator retries; the sink itself never waits on S3.
        let s3 = S3::connect(RetryPolicy::BRIEF).map_err(fail)?;
        let position = restore.unwrap_or_default();
        let mut stale: Vec<String> = s3
            .list(&url.bucket, &url.key("part-"))
            .map_err(fail)?
            .into_iter()
            .map(|(key, _)| key)
            .filter(|key| part_number(&url, key).is_some_and(|n| n >= position.parts))
            .collect();
        // Manifests that call parts final beyond the restored checkpoint's.
        stale.extend(
            s3.list(&url.bucket, &url.key("_manifests/"))
                .map_err(fail)?
                .into_iter()
                .map(|(key, _)| key)
                .filter(|key| manifest_parts(key).is_some_and(|n| n > position.parts)),
        );
        if !stale.is_empty() {
            tracing::info!(
                "sink `{name}`: deleting {} part(s) written after the restored checkpoint",
                stale.len()
            );
            s3.delete(&url.bucket, &stale).map_err(fail)?;
        }
        let said = position.parts;
        Ok(S3Writer {
            name,
            url,
            gzip,
            s3: Arc::new(s3),
            buf: Vec::new(),
            rows: 0,
            position,
            pending: Vec::new(),
            said,
            manifest: None,
            part_bytes: std::env::var("KFLOW_S3_PART_BYTES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(PART_BYTES),
        })
    }

    /// The work that uploads this checkpoint's part and the manifest due.
    fn upload(&mut self) -> Option<Upload> {
        let part = (!self.buf.is_empty()).then(|| {
            let extension = if self.gzip { "jsonl.gz" } else { "jsonl" };
            let key = self
                .url
                .key(&format!("part-{:08}-000.{extension}", self.position.parts));
            self.position.parts += 1;
            self.position.rows += std::mem::take(&mut self.rows);
            (key, std::mem::take(&mut self.buf))
        });
        let manifest = self.manifest.take();
        if part.is_none() && manifest.is_none() {
            return None;
        }
        Some(Upload {
            name: self.name.clone(),
            url: self.url.clone(),
            s3: Arc::clone(&self.s3),
            gzip: self.gzip,
            part_bytes: self.part_bytes,
            part: part.map(|(key, rows)| (key, Body::Rows(rows))),
            manifest,
        })
    }
}

/// A part's body: the rows as written, or compressed once (a retry sends
/// the same bytes).
enum Body {
    Rows(Vec<u8>),
    Ready(hyper::body::Bytes),
}

/// One checkpoint's uploads, run by the coordinator before it commits; it
/// runs again when it failed, skipping what already went up.
struct Upload {
    name: String,
    url: S3Url,
    s3: Arc<S3>,
    gzip: bool,
    part_bytes: usize,
    part: Option<(String, Body)>,
    manifest: Option<(String, Vec<u8>)>,
}

impl Upload {
    fn run(&mut self) -> Result<(), EngineError> {
        if let Some((key, body)) = self.part.take() {
            let body = match body {
                Body::Ready(bytes) => bytes,
                Body::Rows(rows) if self.gzip => self.compress(&rows)?.into(),
                Body::Rows(rows) => rows.into(),
            };
            let sent = self
                .s3
                .put_large(&self.url.bucket, &key, body.clone(), self.part_bytes);
            if let Err(e) = sent {
                self.part = Some((key, Body::Ready(body)));
                return Err(self.fail("uploading a part", e));
            }
        }
        if let Some((key, body)) = &self.manifest {
            self.s3
                .put(&self.url.bucket, key, body.clone())
                .map_err(|e| self.fail("writing a manifest", e))?;
            self.manifest = None;
        }
        Ok(())
    }

    fn compress(&self, rows: &[u8]) -> Result<Vec<u8>, EngineError> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder
            .write_all(rows)
            .and_then(|()| encoder.finish())
            .map_err(|source| EngineError::SinkIo {
                name: self.name.clone(),
                path: self.url.to_string().into(),
                source,
            })
    }

    fn fail(&self, what: &str, source: AwsError) -> EngineError {
        EngineError::Store {
            url: self.url.to_string(),
            what: format!("sink `{}`: {what}", self.name),
            source,
        }
    }
}

/// The part count of a `_manifests/<checkpoint>-<parts>.json` key.
fn manifest_parts(key: &str) -> Option<u64> {
    let name = key.rsplit('/').next()?.strip_suffix(".json")?;
    name.split_once('-')?.1.parse().ok()
}

/// The number of a part object, from its key.
fn part_number(url: &S3Url, key: &str) -> Option<u64> {
    let rest = key.strip_prefix(&url.key("part-"))?;
    rest.split('-').next()?.parse().ok()
}

impl LineWriter for S3Writer {
    fn write(&mut self, lines: &Lines) -> Result<(), EngineError> {
        self.buf.extend_from_slice(&lines.text);
        self.rows += memchr::memchr_iter(b'\n', &lines.text).count() as u64;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), EngineError> {
        Ok(())
    }

    fn commit(&mut self) -> Result<Committed, EngineError> {
        let durability = self
            .upload()
            .map(|mut upload| Durability::new(move || upload.run()));
        Committed::new(&self.name, &self.position, durability)
    }

    fn checkpoint(&mut self, current: Option<u64>, committed: u64) -> Result<(), EngineError> {
        self.pending
            .push((self.position.parts, current.unwrap_or(u64::MAX)));
        let final_parts = self
            .pending
            .iter()
            .filter(|(_, checkpoint)| *checkpoint <= committed)
            .map(|(parts, _)| *parts)
            .max();
        self.pending
            .retain(|(_, checkpoint)| *checkpoint > committed);
        if let Some(parts) = final_parts.filter(|p| *p > self.said) {
            let body = format!("{{\"checkpoint\":{committed},\"parts\":{parts}}}\n");
            let key = self
                .url
                .key(&format!("_manifests/{committed:020}-{parts:08}.json"));
            self.manifest = Some((key, body.into_bytes()));
            self.said = parts;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_and_manifest_keys_parse() {
        let url = S3Url::parse("s3://b/out").expect("valid");
        assert_eq!(
            part_number(&url, "out/part-00000012-000.jsonl.gz"),
            Some(12)
        );
        assert_eq!(part_number(&url, "out/_manifests/x.json"), None);
        assert_eq!(
            manifest_parts("out/_manifests/00000000000000000007-00000003.json"),
            Some(3)
        );
        assert_eq!(manifest_parts("out/part-00000001-000.jsonl"), None);
    }
}
