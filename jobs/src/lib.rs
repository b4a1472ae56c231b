//! kflow job files: parse `job.toml` into a [`JobSpec`](spec::JobSpec) that
//! mirrors the file, then compile it into a [`JobPlan`] that holds only
//! resolved data. Every error found on the way is collected with its
//! location, so `kflow validate` can report them all at once.
//!
//! This crate is pure: no threads, no I/O beyond reading the job file (and
//! the test files of `kflow test`, [`testfile`]).
//!
//! ```
//! let text = r#"
//! [job]
//! name = "demo"
//!
//! [sources.clicks]
//! type = "file"
//! path = "clicks.jsonl"
//!
//! [sinks.out]
//! type = "stdout"
//! input = "clicks"
//! "#;
//! let plan = kflow_jobs::compile_str(text, std::path::Path::new("jobs/demo.toml")).unwrap();
//! assert_eq!(plan.nodes.len(), 2);
//! ```

mod compile;
pub mod diagnostic;
pub mod duration;
mod error;
pub mod expr;
pub mod plan;
pub mod size;
pub mod spec;
pub mod testfile;
mod toml_string;
pub mod value;

use std::path::Path;

pub use diagnostic::Diagnostic;
pub use error::JobError;
pub use plan::*;
pub use value::{FieldId, FieldPath, Row, Value};

/// Reads and compiles the job file at `path`.
///
/// # Errors
///
/// [`JobError::Io`] if the file cannot be read, [`JobError::Invalid`] with
/// every problem found if it is not a valid job (a file that is not UTF-8
/// is reported as invalid, at the first bad byte).
pub fn load(path: &Path) -> Result<JobPlan, JobError> {
    let bytes = std::fs::read(path).map_err(|source| JobError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    match String::from_utf8(bytes) {
        Ok(text) => compile_str(&text, path),
        Err(error) => {
            let at = error.utf8_error().valid_up_to();
            let text = String::from_utf8_lossy(error.as_bytes()).into_owned();
            // The lossy text has U+FFFD (3 bytes) where the bad byte was;
            // the prefix before it is unchanged, so `at` is still right.
            Err(JobError::Invalid {
                path: path.to_path_buf(),
                text,
                diagnostics: vec![Diagnostic::new(
                    at..at + 3,
                    "the job file is not valid UTF-8",
                )],
            })
        }
    }
}

/// Compiles job file text. `path` names the file in messages and is where
/// relative paths in the job resolve from (its folder).
///
/// # Errors
///
/// [`JobError::Invalid`] with every problem found.
pub fn compile_str(text: &str, path: &Path) -> Result<JobPlan, JobError> {
    compile::compile(text, path).map_err(|diagnostics| JobError::Invalid {
        path: path.to_path_buf(),
        text: text.to_string(),
        diagnostics,
    })
}
