//! One part of a cluster job, as one worker runs it for one lease: a
//! source shard (read it, put its records into the shuffle) or a key group
//! (read the shuffle, run the windows, write the group's sinks).
//!
//! A part is an ordinary run of the job's plan, narrowed by [`Part::plan`]:
//! its own state directory and its own prefix in the checkpoint store (so
//! the worker that takes the lease over restores exactly that part), and
//! for a key group its own sink files (`hourly.jsonl` becomes
//! `hourly.group-0003.jsonl`; an S3 sink writes under `group-0003/`). The
//! union of the groups' outputs is the job's output.

use std::path::{Path, PathBuf};

use kflow_jobs::{JobPlan, NodeKind, SinkPlan};

use super::table::Lease;

/// A lease's work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Read this source shard into the shuffle.
    Shard(String),
    /// Own this key group.
    Group(u32),
}

impl Part {
    /// The part of lease key `key` (`shard/ID` or `group/N`).
    pub fn from_lease(key: &str) -> Option<Part> {
        Part::parse(key, '/')
    }

    /// The part of a state directory's name (`shard-ID` or `group-NNNN`,
    /// as [`Part::dir_name`] writes them).
    pub fn from_dir_name(name: &str) -> Option<Part> {
        Part::parse(name, '-')
    }

    /// `shard{separator}ID` or `group{separator}N`.
    fn parse(text: &str, separator: char) -> Option<Part> {
        let (kind, rest) = text.split_once(separator)?;
        match kind {
            "shard" => (!rest.is_empty()).then(|| Part::Shard(rest.to_string())),
            "group" => rest.parse().ok().map(Part::Group),
            _ => None,
        }
    }

    /// Its lease's key.
    pub fn lease(&self) -> String {
        match self {
            Part::Shard(shard) => Lease::shard_key(shard),
            Part::Group(group) => Lease::group_key(*group),
        }
    }

    /// Its name in paths: `shard-ID` or `group-NNNN`.
    pub fn dir_name(&self) -> String {
        match self {
            Part::Shard(shard) => format!("shard-{shard}"),
            Part::Group(group) => format!("group-{group:04}"),
        }
    }

    /// Its local state directory under the job's `state_dir`:
    /// `state_dir/parts/NAME`.
    pub fn state_dir(&self, state_dir: &Path) -> PathBuf {
        state_dir.join("parts").join(self.dir_name())
    }

    /// Beside its state directory, the file where the worker keeps until
    /// when the lease is valid ([`super::fence`]).
    pub fn fence_path(&self, state_dir: &Path) -> PathBuf {
        state_dir
            .join("parts")
            .join(format!("{}.lease", self.dir_name()))
    }

    /// Beside its state directory, the file where the part reports its
    /// progress for the lease table (one line, rewritten every second).
    pub fn progress_path(&self, state_dir: &Path) -> PathBuf {
        state_dir
            .join("parts")
            .join(format!("{}.progress", self.dir_name()))
    }

    /// The job narrowed to this part: state under
    /// `state_dir/parts/NAME`, checkpoints under `STORE/parts/NAME/`, and
    /// the sinks and dead-letter file of this part.
    pub fn plan(&self, plan: JobPlan) -> JobPlan {
        let name = self.dir_name();
        let mut part = plan;
        part.state_dir = self.state_dir(&part.state_dir);
        part.checkpoint_store = part
            .checkpoint_store
            .as_ref()
            .map(|store| format!("{}/parts/{name}", store.trim_end_matches('/')));
        part.dead_letter_path = with_part(&part.dead_letter_path, &name);
        for node in &mut part.nodes {
            if let NodeKind::Sink(sink) = &mut node.kind {
                match sink {
                    SinkPlan::File { path } => *path = with_part(path, &name),
                    SinkPlan::S3 { path, .. } => {
                        *path = format!("{}/{name}/", path.trim_end_matches('/'));
                    }
                    SinkPlan::Kinesis { .. } | SinkPlan::Stdout => {}
                }
            }
        }
        part
    }
}

impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.lease())
    }
}

/// `dir/name.ext` -> `dir/name.PART.ext` (`dir/name.PART` without an
/// extension).
fn with_part(path: &Path, part: &str) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let file = match path.extension() {
        Some(ext) => format!("{stem}.{part}.{}", ext.to_string_lossy()),
        None => format!("{stem}.{part}"),
    };
    path.with_file_name(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_keys_name_parts() {
        let shard = Part::from_lease("shard/shardId-000000000001");
        assert_eq!(shard, Some(Part::Shard("shardId-000000000001".into())));
        assert_eq!(Part::from_lease("group/0012"), Some(Part::Group(12)));
        assert_eq!(Part::from_lease("group/x"), None);
        assert_eq!(Part::from_lease("shard/"), None);
        assert_eq!(Part::from_lease("other"), None);
        for part in [Part::Shard("s-1".into()), Part::Group(7)] {
            assert_eq!(Part::from_lease(&part.lease()).as_ref(), Some(&part));
            assert_eq!(Part::from_dir_name(&part.dir_name()).as_ref(), Some(&part));
        }
        assert_eq!(Part::from_dir_name("group-x"), None);
        assert_eq!(Part::from_dir_name("shard-"), None);
    }

    #[test]
    fn part_paths_keep_the_extension() {
        assert_eq!(
            with_part(Path::new("out/hourly.jsonl"), "group-0003"),
            PathBuf::from("out/hourly.group-0003.jsonl")
        );
        assert_eq!(
            with_part(Path::new("out/hourly"), "group-0003"),
            PathBuf::from("out/hourly.group-0003")
        );
    }
}
