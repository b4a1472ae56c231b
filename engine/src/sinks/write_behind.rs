//! Write-behind for file sinks: the bytes a sink hands to the OS are pushed
//! to disk in the background as they accumulate, so the `fdatasync` that
//! commits a checkpoint (and the one at the end of a run) finds little left
//! to write.
//!
//! Without it a machine with plenty of memory keeps the whole output dirty
//! in the page cache until the checkpoint's sync, which then writes all of
//! it at once: W2 of the benchmarks writes 618 MB and its last checkpoint
//! waited a second for the disk. RocksDB's `bytes_per_sync` does the same
//! for its files.
//!
//! The background syncs go through a file description of their own, opened
//! on the same file. Linux (since 4.13, `errseq`) reports a writeback error
//! once to each open description, so an error seen here is still reported
//! to the sink's own description by the sync that commits; this helper can
//! therefore only make commits faster, never make them wrong, and its own
//! errors only stop it. Elsewhere an error could be reported to whichever
//! sync asks first, so other systems do without write-behind.

use std::fs::File;
use std::path::Path;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};

/// Bytes handed to the OS between two background syncs.
pub const WRITE_BEHIND_STEP: u64 = 16 << 20;

/// A background thread syncing one file.
#[derive(Debug)]
pub struct WriteBehind {
    requests: SyncSender<()>,
    /// The file length at the last request.
    requested: u64,
}

impl WriteBehind {
    /// Starts syncing `path` in the background for the sink `name`; `start`
    /// is the file's length now (already durable or not ours to sync).
    /// `None` when the file cannot be opened a second time or the thread
    /// cannot start: the sink then works as before, with larger syncs.
    pub fn start(name: &str, path: &Path, start: u64) -> Option<WriteBehind> {
        if !cfg!(target_os = "linux") {
            return None;
        }
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) => {
                tracing::warn!(sink = name, error = %e, "no write-behind: cannot reopen the file");
                return None;
            }
        };
        // One pending request at most: a sync covers whatever is dirty when
        // it starts, so requests made while one runs can be dropped.
        let (requests, pending) = sync_channel::<()>(1);
        let sink = name.to_owned();
        let spawned = std::thread::Builder::new()
            // A thread name must not hold a NUL (a job file's name could).
            .name(format!("sink {} sync", name.replace('\0', "")))
            .spawn(move || {
                while pending.recv().is_ok() {
                    if let Err(e) = file.sync_data() {
                        tracing::warn!(sink, error = %e, "write-behind stopped");
                        return;
                    }
                }
            });
        match spawned {
            Ok(_) => Some(WriteBehind {
                requests,
                requested: start,
            }),
            Err(e) => {
                tracing::warn!(sink = name, error = %e, "no write-behind: cannot start its thread");
                None
            }
        }
    }

    /// Notes that the OS now holds `handed` bytes of the file, and asks for
    /// a background sync once another [`WRITE_BEHIND_STEP`] has arrived.
    pub fn handed(&mut self, handed: u64) {
        if handed < self.requested.saturating_add(WRITE_BEHIND_STEP) {
            return;
        }
        match self.requests.try_send(()) {
            // A full queue means a sync is about to start; it covers these
            // bytes too.
            Ok(()) | Err(TrySendError::Full(())) => self.requested = handed,
            // The thread stopped (it logged why).
            Err(TrySendError::Disconnected(())) => self.requested = u64::MAX,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn asks_for_a_sync_once_per_step() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        std::fs::write(&path, b"x").unwrap();
        let mut behind = WriteBehind::start("out", &path, 1).unwrap();
        behind.handed(WRITE_BEHIND_STEP);
        assert_eq!(behind.requested, 1, "less than a step: no request");
        behind.handed(WRITE_BEHIND_STEP + 1);
        assert_eq!(behind.requested, WRITE_BEHIND_STEP + 1);
        behind.handed(2 * WRITE_BEHIND_STEP);
        assert_eq!(behind.requested, WRITE_BEHIND_STEP + 1);
        assert!(WriteBehind::start("gone", &dir.path().join("missing"), 0).is_none());
    }
}
