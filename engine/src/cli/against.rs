//! `kflow plan JOB --against STATE_DIR|s3://STORE`: whether a job file can
//! resume from a job's last checkpoint, node by node, before it is
//! deployed.
//!
//! The verdicts are the ones `kflow run` acts on ([`fingerprint::verdicts`]
//! decides both), so `compatible` here means `run` resumes and
//! `incompatible` means it refuses until `--reset`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use kflow_jobs::JobPlan;
use kflow_state::StateStore;

use crate::aws::s3::S3Url;
use crate::dataflow::json::format_time;
use crate::error::EngineError;
use crate::runtime::fingerprint::{self, Verdict};
use crate::runtime::meta::CheckpointMeta;

/// Where the checkpoint to compare with is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A state directory (the job's `state_dir`, or its `db` folder).
    Dir(PathBuf),
    /// A checkpoint store: its newest complete checkpoint.
    Store(S3Url),
}

impl Target {
    /// `s3://bucket/prefix` is a store; anything else a directory.
    pub fn parse(text: &str) -> Target {
        match S3Url::parse(text) {
            Some(url) => Target::Store(url),
            None => Target::Dir(PathBuf::from(text)),
        }
    }
}

/// The report and whether `run` would resume (or start fresh) without
/// refusing.
#[derive(Debug)]
pub struct Report {
    /// What to print.
    pub text: String,
    /// No node is incompatible.
    pub compatible: bool,
}

/// Compares `plan` with the last checkpoint in `target`.
///
/// # Errors
/// The state directory or the store cannot be read (missing, not a kflow
/// database, unreachable).
pub fn against(plan: &JobPlan, target: &Target) -> Result<Report, EngineError> {
    let (meta, place) = match target {
        Target::Dir(dir) => (from_dir(dir)?, dir.display().to_string()),
        Target::Store(url) => (from_store(url)?, url.to_string()),
    };
    let mut text = String::new();
    let Some(meta) = meta else {
        let _ = writeln!(
            text,
            "{place} holds no checkpoint: `kflow run` starts from empty state\nverdict: compatible"
        );
        return Ok(Report {
            text,
            compatible: true,
        });
    };
    let _ = writeln!(
        text,
        "job `{}` against checkpoint {} of job `{}` in {place}, taken {}",
        plan.name,
        meta.id,
        meta.job,
        format_time(meta.created_ms)
    );
    if meta.finished {
        let _ = writeln!(
            text,
            "that run finished: `kflow run` starts over from empty state, whatever changed\nverdict: compatible"
        );
        return Ok(Report {
            text,
            compatible: true,
        });
    }
    let (stateful, stateless) = fingerprint::describe(plan);
    let verdicts = fingerprint::verdicts(&meta.stateful, &meta.stateless, &stateful, &stateless);
    let width = verdicts.iter().map(|v| v.node.len()).max().unwrap_or(0);
    let mut incompatible = 0;
    for v in &verdicts {
        let _ = writeln!(text, "  {:width$}  {}", v.node, v.verdict.word());
        let detail = match &v.verdict {
            Verdict::Same => None,
            Verdict::Added => Some("new: starts empty".to_string()),
            Verdict::Changed { was, now } => Some(format!(
                "was `{was}`\nnow `{now}`\nrecords before the checkpoint are not reprocessed"
            )),
            Verdict::Removed { was } => Some(format!("removed (was `{was}`)")),
            Verdict::Incompatible { was, now } => {
                incompatible += 1;
                let change = match now {
                    Some(now) => format!("was `{was}`\nnow `{now}`"),
                    None => format!("removed (was `{was}`)"),
                };
                Some(format!(
                    "{change}\n`kflow run` refuses to resume; `kflow run --reset` discards \
                     the whole checkpoint (every window's state and every source's position) \
                     and starts over"
                ))
            }
        };
        for line in detail.iter().flat_map(|d| d.lines()) {
            let _ = writeln!(text, "  {:width$}    {line}", "");
        }
    }
    if incompatible == 0 {
        let _ = writeln!(
            text,
            "verdict: compatible (`kflow run` resumes from checkpoint {})",
            meta.id
        );
    } else {
        let _ = writeln!(
            text,
            "verdict: incompatible ({incompatible} node{})",
            if incompatible == 1 { "" } else { "s" }
        );
    }
    Ok(Report {
        text,
        compatible: incompatible == 0,
    })
}

/// The last checkpoint of a local state directory, read without its lock
/// (the job may be running).
fn from_dir(dir: &Path) -> Result<Option<CheckpointMeta>, EngineError> {
    let db = if dir.join("db").join("CURRENT").is_file() {
        dir.join("db")
    } else {
        dir.to_path_buf()
    };
    let store = StateStore::open_read_only(&db)?;
    CheckpointMeta::load(&store)
}

/// The newest complete checkpoint of a store.
fn from_store(url: &S3Url) -> Result<Option<CheckpointMeta>, EngineError> {
    let listed = crate::runtime::durable::restore::connect_and_list(url)?;
    Ok(listed
        .into_iter()
        .find_map(|(_, manifest)| manifest.map(|m| m.meta)))
}
