//! `kflow test JOB [TESTS...]`: runs a job's test cases.
//!
//! Each case runs the real engine on its own copy of the job in a scratch
//! folder: every source (file or Kinesis) reads the case's records from a
//! file there, in the order written, every sink writes a file there, and
//! state and dead letters live there, so the job's own inputs, outputs,
//! state and checkpoint store are never touched and no AWS or emulator is
//! needed. An expectation on a stream that no sink reads (`per_user`,
//! `per_user.late`, `clicks.errors`) adds a file sink on it for the case.
//! Outputs are compared once every input has ended (all windows fired), as
//! multisets, so the result does not depend on `--parallelism`.

pub mod rows;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde::Deserialize;

use kflow_jobs::testfile::{self, Object, OutputRef, TestCase, TestFileError};
use kflow_jobs::{
    ConnectorPlan, FileSourcePlan, JobError, JobPlan, NodeId, NodeKind, NodePlan, SinkPlan,
    StreamRef,
};

use crate::error::EngineError;
use crate::runtime::meta::CheckpointMeta;
use crate::runtime::{self, RunOptions};
use crate::sources::file::FilePosition;

/// Why a case could not run (as opposed to failing its expectations).
#[derive(Debug, thiserror::Error)]
pub enum TestError {
    /// The job file is not valid.
    #[error("{}", .0.render())]
    Job(#[from] JobError),
    /// A test file is not valid.
    #[error("{}", .0.render())]
    TestFile(#[from] TestFileError),
    /// The scratch folder could not be written or read.
    #[error("{what} {}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The engine failed.
    #[error("the run failed")]
    Engine(#[from] EngineError),
    /// A phase before a restart failed.
    #[error("the run before restart {} failed: {what}", phase + 1)]
    Phase {
        /// Which (0: before the first restart).
        phase: usize,
        /// How.
        what: String,
    },
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> TestError + 'a {
    move |source| TestError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// The test files of `job`: `named` when given, else the files next to it
/// named `STEM.test.toml` or `STEM.*.test.toml`, sorted.
pub fn test_files(job: &Path, named: &[PathBuf]) -> Vec<PathBuf> {
    if !named.is_empty() {
        return named.to_vec();
    }
    let stem = job
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let folder = job.parent().filter(|p| !p.as_os_str().is_empty());
    let mut found: Vec<PathBuf> = std::fs::read_dir(folder.unwrap_or(Path::new(".")))
        .into_iter()
        .flatten()
        .flatten()
        // Next to a job named without a folder: named without one too.
        .map(|e| folder.map_or_else(|| PathBuf::from(e.file_name()), |_| e.path()))
        .filter(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
            name.is_some_and(|n| {
                n == format!("{stem}.test.toml")
                    || (n.starts_with(&format!("{stem}.")) && n.ends_with(".test.toml"))
            })
        })
        .collect();
    found.sort();
    found
}

/// Reads every test file of the job, checked against it.
///
/// # Errors
/// The first file that cannot be read or is invalid (all its problems).
pub fn read_files(
    plan: &JobPlan,
    files: &[PathBuf],
) -> Result<Vec<testfile::TestFile>, TestFileError> {
    files.iter().map(|f| testfile::read(f, plan)).collect()
}

/// Builds the command that runs phase `k` of the case (up to its `k`th
/// restart) in a scratch folder, as a process of its own: [`run_phase`]
/// in a `kflow` child.
pub type PhaseCommand<'a> = &'a dyn Fn(usize, &Path) -> Command;

/// How long a phase may take to checkpoint its records.
const PHASE_TIMEOUT: Duration = Duration::from_secs(60);

fn run_options(parallelism: usize, reset: bool) -> RunOptions {
    RunOptions {
        parallelism: parallelism.max(1),
        status: false,
        checkpoint_interval: Some(None),
        reset,
        decode_threads: 1,
        ..RunOptions::default()
    }
}

/// Runs `case` of the job at `job` with `parallelism` window partitions;
/// `None` when every expectation holds, else the diff. Each `restart` step
/// runs the records before it in a child process (`phase`), killed with
/// SIGKILL once a checkpoint covers them; the last run, here, restores
/// from that checkpoint and reads the rest.
///
/// # Errors
/// The job cannot be loaded, the scratch folder cannot be used, a phase
/// fails, or the engine fails.
pub fn run_case(
    job: &Path,
    case: &TestCase,
    parallelism: usize,
    phase: PhaseCommand<'_>,
) -> Result<Option<String>, TestError> {
    let scratch =
        tempfile::tempdir().map_err(io("creating a scratch folder in", &std::env::temp_dir()))?;
    let dir = scratch.path();
    for (k, turns) in case.restarts.iter().enumerate() {
        run_killed_phase(phase(k, dir), dir, k, &case.cut(k), *turns as u64)?;
    }
    let mut plan = kflow_jobs::load(job)?;
    let outputs = isolate(&mut plan, case, dir, None)?;
    runtime::run(&plan, &run_options(parallelism, case.restarts.is_empty()))?;
    let input_prefix =
        serde_json::to_string(&format!("{}/", dir.join("input").display())).unwrap_or_default();
    let input_prefix = input_prefix.trim_end_matches('"');
    let mut report = String::new();
    for (expect, path) in case.expects.iter().zip(&outputs) {
        let rows = read_rows(path, input_prefix)?;
        if let Some(diff) = rows::check(expect, &rows) {
            report.push_str(&diff);
        }
    }
    Ok((!report.is_empty()).then_some(report))
}

/// Starts phase `k` and kills it (SIGKILL) once its state holds a
/// checkpoint in which every source has read its lines of `cut` and
/// finished its first `turns` turns.
fn run_killed_phase(
    mut command: Command,
    dir: &Path,
    k: usize,
    cut: &BTreeMap<String, u64>,
    turns: u64,
) -> Result<(), TestError> {
    let log = dir.join(format!("phase-{k}.log"));
    let file = std::fs::File::create(&log).map_err(io("writing", &log))?;
    let err = file.try_clone().map_err(io("writing", &log))?;
    command
        .stdout(file)
        .stderr(err)
        .stdin(std::process::Stdio::null());
    let mut child = command.spawn().map_err(io("starting a phase for", dir))?;
    let db = dir.join("state").join("db");
    let started = Instant::now();
    let outcome = loop {
        if covered(&db, cut, turns) {
            break Ok(());
        }
        let exited = child
            .try_wait()
            .map_err(io("waiting for a phase in", dir))?;
        if exited.is_some() || started.elapsed() > PHASE_TIMEOUT {
            let said = std::fs::read_to_string(&log).unwrap_or_default();
            let what = match exited {
                Some(status) => {
                    format!("it exited ({status}) before a checkpoint covered its records:\n{said}")
                }
                None => format!("no checkpoint covered its records in {PHASE_TIMEOUT:?}:\n{said}"),
            };
            break Err(TestError::Phase { phase: k, what });
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = child.kill();
    let _ = child.wait();
    outcome
}

/// Whether the last checkpoint in `db` has every source of `cut` at or
/// past its line and its `turns` (read without the lock: the phase is
/// running).
fn covered(db: &Path, cut: &BTreeMap<String, u64>, turns: u64) -> bool {
    let Ok(store) = kflow_state::StateStore::open_read_only(db) else {
        return false;
    };
    let Ok(Some(meta)) = CheckpointMeta::load(&store) else {
        return false;
    };
    cut.iter().all(|(source, line)| {
        meta.sources
            .get(source)
            .and_then(|p| FilePosition::deserialize(p).ok())
            .is_some_and(|p| p.line >= *line && p.turns >= turns)
    })
}

/// Runs phase `k` of `case` in `dir`: the records before its `k`th
/// restart, from a tailed file (the run does not end), checkpointing every
/// 10 ms, until the parent kills it. Restores from phase `k - 1`.
///
/// # Errors
/// The job cannot be loaded, the folder cannot be used, the engine fails.
pub fn run_phase(
    job: &Path,
    case: &TestCase,
    k: usize,
    dir: &Path,
    parallelism: usize,
) -> Result<(), TestError> {
    let mut plan = kflow_jobs::load(job)?;
    isolate(&mut plan, case, dir, Some(k))?;
    let options = RunOptions {
        checkpoint_interval: Some(Some(Duration::from_millis(10))),
        ..run_options(parallelism, k == 0)
    };
    runtime::run(&plan, &options)?;
    Ok(())
}

/// Points the plan's sources at the case's inputs and turns (up to its
/// restart and tailed, for phase `k`) and its sinks, state and dead
/// letters into `dir`; adds a file sink for each expectation on a stream.
/// Returns the file each expectation reads, in order.
fn isolate(
    plan: &mut JobPlan,
    case: &TestCase,
    dir: &Path,
    phase: Option<usize>,
) -> Result<Vec<PathBuf>, TestError> {
    let cut = phase.map(|k| case.cut(k));
    let turns = phase.map_or(case.turns.len(), |k| case.restarts[k]);
    let (inputs, out) = (dir.join("input"), dir.join("out"));
    for folder in [&inputs, &out] {
        std::fs::create_dir_all(folder).map_err(io("creating", folder))?;
    }
    for node in &mut plan.nodes {
        match &mut node.kind {
            NodeKind::Source(source) => {
                let path = inputs.join(format!("{}.jsonl", node.name));
                let lines = case.inputs.get(&node.name).map_or(&[][..], |l| &l[..]);
                let take = cut.as_ref().map_or(lines.len(), |c| {
                    c.get(&node.name)
                        .map_or(0, |n| *n as usize)
                        .min(lines.len())
                });
                let mut text = String::new();
                for line in &lines[..take] {
                    text.push_str(line);
                    text.push('\n');
                }
                std::fs::write(&path, text).map_err(io("writing", &path))?;
                source.connector = ConnectorPlan::File(FileSourcePlan {
                    path,
                    follow: phase.is_some(),
                    turns: case.turns_of(&node.name, turns),
                });
            }
            NodeKind::Sink(sink) => {
                *sink = SinkPlan::File {
                    path: out.join(format!("sink-{}.jsonl", node.name)),
                };
            }
            NodeKind::Filter(_) | NodeKind::Window(_) => {}
        }
    }
    plan.state_dir = dir.join("state");
    plan.dead_letter_path = dir.join("dead-letter.jsonl");
    plan.checkpoint_store = None;
    plan.metrics = None;
    plan.cluster = None;
    let mut files = Vec::new();
    for (i, expect) in case.expects.iter().enumerate() {
        let file = match testfile::resolve_output(plan, &expect.output) {
            Some(OutputRef::Stream { node, port }) => {
                let path = out.join(format!("tap-{i}.jsonl"));
                plan.nodes.push(NodePlan {
                    name: format!("test:{}", expect.output),
                    inputs: vec![StreamRef {
                        node: NodeId(node as u32),
                        port,
                    }],
                    kind: NodeKind::Sink(SinkPlan::File { path: path.clone() }),
                });
                path
            }
            Some(OutputRef::Sink) => out.join(format!("sink-{}.jsonl", expect.output)),
            Some(OutputRef::DeadLetters) | None => plan.dead_letter_path.clone(),
        };
        files.push(file);
    }
    Ok(files)
}

/// An output file's rows (none when it was never written). Positions of
/// the case's inputs name the input file alone (`clicks.jsonl`, not the
/// scratch path), so expectations can state them.
fn read_rows(path: &Path, input_prefix: &str) -> Result<Vec<Object>, TestError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io("reading", path)(e)),
    };
    let text = text.replace(input_prefix, "\"");
    Ok(text
        .lines()
        .map(
            |line| match serde_json::from_str::<serde_json::Value>(line) {
                Ok(serde_json::Value::Object(row)) => row,
                _ => {
                    let mut row = Object::new();
                    row.insert("_line".into(), serde_json::Value::String(line.into()));
                    row
                }
            },
        )
        .collect())
}

/// Runs every case of `files` and renders the report like `cargo test`;
/// `phase(file, case, k, dir)` is the command of a case's phase `k`
/// ([`run_phase`]). Returns the number of failed cases.
///
/// # Errors
/// A case that could not run at all (not one that failed).
pub fn run_all(
    job: &Path,
    files: &[testfile::TestFile],
    parallelism: usize,
    phase: &dyn Fn(&Path, usize, usize, &Path) -> Command,
    mut progress: impl FnMut(&str),
) -> Result<usize, TestError> {
    let total: usize = files.iter().map(|f| f.cases.len()).sum();
    progress(&format!(
        "running {total} case{} of {}\n",
        if total == 1 { "" } else { "s" },
        job.display()
    ));
    let mut failures = Vec::new();
    for file in files {
        for (index, case) in file.cases.iter().enumerate() {
            let name = format!("{} :: {}", file.path.display(), case.name);
            let command = |k: usize, dir: &Path| phase(&file.path, index, k, dir);
            match run_case(job, case, parallelism, &command)? {
                None => progress(&format!("case {name} ... ok\n")),
                Some(diff) => {
                    progress(&format!("case {name} ... FAILED\n"));
                    failures.push((name, diff));
                }
            }
        }
    }
    let mut out = String::new();
    if !failures.is_empty() {
        let _ = writeln!(out, "\nfailures:");
        for (name, diff) in &failures {
            let _ = write!(out, "\n---- {name} ----\n{diff}");
        }
    }
    let _ = writeln!(
        out,
        "\ntest result: {}. {} passed; {} failed",
        if failures.is_empty() { "ok" } else { "FAILED" },
        total - failures.len(),
        failures.len()
    );
    progress(&out);
    Ok(failures.len())
}
