//! The error type of this crate: a job file that cannot be read, or one
//! that is invalid, with every problem found in it.

use std::path::PathBuf;

use crate::diagnostic::{self, Diagnostic};

/// Why a job file could not be turned into a plan.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The file could not be read.
    #[error("cannot read job file {}", path.display())]
    Io {
        /// The path as given.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file was read but is not a valid job. `diagnostics` holds every
    /// problem found, sorted by position.
    #[error("invalid job file {}: {}", path.display(), count(diagnostics.len()))]
    Invalid {
        /// The path as given.
        path: PathBuf,
        /// The file's text (with any invalid UTF-8 replaced), for rendering.
        text: String,
        /// The problems, sorted by position; never empty.
        diagnostics: Vec<Diagnostic>,
    },
}

fn count(n: usize) -> String {
    if n == 1 {
        "1 error".to_string()
    } else {
        format!("{n} errors")
    }
}

impl JobError {
    /// The full report for a terminal or a log: for an invalid job, every
    /// diagnostic as `PATH:LINE:COL: message`, the offending line and a
    /// caret under the problem; for an unreadable file, one line.
    pub fn render(&self) -> String {
        match self {
            JobError::Io { path, source } => {
                format!("{}: cannot read job file: {source}\n", path.display())
            }
            JobError::Invalid {
                path,
                text,
                diagnostics,
            } => diagnostic::render(&path.display().to_string(), text, diagnostics),
        }
    }

    /// The diagnostics of an invalid job (empty for an I/O error).
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            JobError::Io { .. } => &[],
            JobError::Invalid { diagnostics, .. } => diagnostics,
        }
    }
}
