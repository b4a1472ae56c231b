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

use crate::aws::s3::{S3Url, S3};
use crate::cluster::Part;
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

/// Compares `plan` with the last checkpoint in `target`. For a cluster
/// job's state directory or store (`parts/NAME` per lease), each part's
/// checkpoint is compared with the job narrowed to that part, from
/// `reload` (a plan is consumed by narrowing).
///
/// # Errors
/// The state directory or the store cannot be read (missing, not a kflow
/// database, unreachable).
pub fn against(
    plan: &JobPlan,
    target: &Target,
    reload: &dyn Fn() -> Option<JobPlan>,
) -> Result<Report, EngineError> {
    match target {
        Target::Dir(dir) => {
            let parts = dir.join("parts");
            if plan.cluster.is_some() && !dir.join("db").exists() && parts.is_dir() {
                let place = parts.display().to_string();
                return against_parts(plan, &place, dir_parts(&parts)?, reload);
            }
            compare(plan, from_dir(dir)?, &dir.display().to_string())
        }
        Target::Store(url) => {
            let s3 = crate::runtime::durable::connect(url)?;
            if plan.cluster.is_some() && !url.prefix.contains("/parts/") {
                let parts = store_parts(&s3, url)?;
                if !parts.is_empty() {
                    return against_parts(plan, &url.to_string(), parts, reload);
                }
            }
            compare(plan, from_store(&s3, url)?, &url.to_string())
        }
    }
}

/// A part of a cluster job, where its checkpoints are, and its last one.
type FoundPart = (Part, String, Option<CheckpointMeta>);

/// The parts with state in a cluster worker's `state_dir/parts`.
fn dir_parts(parts: &Path) -> Result<Vec<FoundPart>, EngineError> {
    let mut dirs: Vec<(Part, PathBuf)> = std::fs::read_dir(parts)
        .map_err(|source| {
            EngineError::State(kflow_state::StateError::Io {
                path: parts.to_path_buf(),
                source,
            })
        })?
        .flatten()
        .filter(|e| e.path().join("db").join("CURRENT").is_file())
        .filter_map(|e| {
            Some((
                Part::from_dir_name(&e.file_name().to_string_lossy())?,
                e.path(),
            ))
        })
        .collect();
    dirs.sort_by_key(|(part, _)| part.dir_name());
    dirs.into_iter()
        .map(|(part, dir)| Ok((part, dir.display().to_string(), from_dir(&dir)?)))
        .collect()
}

/// The parts with checkpoints under a cluster job's store (`STORE/parts/NAME/`).
fn store_parts(s3: &S3, url: &S3Url) -> Result<Vec<FoundPart>, EngineError> {
    let prefix = url.key("parts/");
    let listed = s3
        .list(&url.bucket, &prefix)
        .map_err(|e| crate::runtime::durable::store_error(url, "listing parts", e))?;
    let mut names: Vec<&str> = listed
        .iter()
        .filter_map(|(key, _)| key.strip_prefix(&prefix)?.split('/').next())
        .collect();
    names.sort_unstable();
    names.dedup();
    let mut found = Vec::new();
    for name in names {
        let part_url = S3Url::parse(&format!("{url}/parts/{name}"));
        if let (Some(part), Some(part_url)) = (Part::from_dir_name(name), part_url) {
            found.push((part, part_url.to_string(), from_store(s3, &part_url)?));
        }
    }
    Ok(found)
}

/// Every part of a cluster job against the job narrowed to it.
fn against_parts(
    plan: &JobPlan,
    place: &str,
    found: Vec<FoundPart>,
    reload: &dyn Fn() -> Option<JobPlan>,
) -> Result<Report, EngineError> {
    let mut text = format!(
        "cluster job `{}`: {} part(s) with checkpoints in {place}\n",
        plan.name,
        found.len(),
    );
    let mut compatible = true;
    for (part, at, meta) in found {
        let Some(narrowed) = reload().map(|p| part.plan(p)) else {
            let _ = writeln!(text, "\npart {part}: the job file could not be read again");
            compatible = false;
            continue;
        };
        let report = compare(&narrowed, meta, &at)?;
        let _ = write!(text, "\npart {part}: {}", report.text);
        compatible &= report.compatible;
    }
    let _ = writeln!(
        text,
        "\nverdict for the job: {}",
        if compatible {
            "compatible"
        } else {
            "incompatible"
        }
    );
    Ok(Report { text, compatible })
}

/// The report for one checkpoint (`None`: there is none) of the job
/// `plan`, found in `place`.
fn compare(
    plan: &JobPlan,
    meta: Option<CheckpointMeta>,
    place: &str,
) -> Result<Report, EngineError> {
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
            Verdict::Extended { added, .. } => Some(format!(
                "aggregates appended: {added}\n`kflow run` resumes and extends the stored \
                 partials: the new aggregates start empty on the windows open at the restart \
                 (they count only what is read from then on)"
            )),
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
fn from_store(s3: &S3, url: &S3Url) -> Result<Option<CheckpointMeta>, EngineError> {
    let listed = crate::runtime::durable::restore::list(s3, url)?;
    Ok(listed
        .into_iter()
        .find_map(|(_, manifest)| manifest.map(|m| m.meta)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use kflow_state::{Family, StateBatch, WriteMode};

    fn job(dir: &Path, size: &str) -> JobPlan {
        let text = format!(
            "[job]\nname = \"c\"\nstate_dir = \"state\"\ncheckpoint_store = \"s3://b/store\"\n\
             [job.cluster]\nleases = \"dynamodb://leases\"\nshuffle_stream = \"s\"\n\
             [sources.clicks]\ntype = \"kinesis\"\nstream = \"clicks\"\n\
             event_time = {{ field = \"ts\" }}\n\
             [windows.w]\ninput = \"clicks\"\nkey = [\"user\"]\ntumbling = \"{size}\"\n\
             aggregates = {{ n = \"count()\" }}\n\
             [sinks.out]\ninput = \"w\"\ntype = \"file\"\npath = \"out.jsonl\"\n"
        );
        kflow_jobs::compile_str(&text, &dir.join("job.toml")).unwrap()
    }

    /// A part's state holding a checkpoint of the job narrowed to it.
    fn checkpoint(plan: JobPlan, part: &Part) {
        let plan = part.plan(plan);
        let (stateful, stateless) = fingerprint::describe(&plan);
        let meta = CheckpointMeta {
            id: 4,
            job: plan.name.clone(),
            parallelism: 1,
            stateful,
            stateless,
            ..CheckpointMeta::default()
        };
        let store = StateStore::open(&plan.state_dir.join("db")).unwrap();
        let mut batch = StateBatch::new();
        batch.put(
            Family::Meta,
            crate::runtime::meta::META_KEY,
            &meta.to_bytes().unwrap(),
        );
        store.write(batch, WriteMode::Synced).unwrap();
    }

    #[test]
    fn a_cluster_job_is_compared_part_by_part() {
        let dir = tempfile::tempdir().unwrap();
        let parts = [Part::Shard("shardId-1".into()), Part::Group(3)];
        for part in &parts {
            checkpoint(job(dir.path(), "1m"), part);
        }
        let target = Target::Dir(dir.path().join("state"));
        let same = against(&job(dir.path(), "1m"), &target, &|| {
            Some(job(dir.path(), "1m"))
        })
        .unwrap();
        assert!(same.compatible, "{}", same.text);
        assert!(
            same.text.contains("2 part(s) with checkpoints in"),
            "{}",
            same.text
        );
        assert!(
            same.text
                .contains("part group/0003: job `c` against checkpoint 4"),
            "{}",
            same.text
        );
        let changed = against(&job(dir.path(), "5m"), &target, &|| {
            Some(job(dir.path(), "5m"))
        })
        .unwrap();
        assert!(!changed.compatible, "{}", changed.text);
        assert!(
            changed.text.contains("  window w       incompatible\n"),
            "{}",
            changed.text
        );
        assert!(
            changed
                .text
                .ends_with("verdict for the job: incompatible\n"),
            "{}",
            changed.text
        );
    }
}
