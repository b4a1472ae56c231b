//! A job in a scratch folder: its job file and inputs, and the `kflow`
//! commands run there. Crash tests and Kinesis tests drive jobs through it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kflow_benches::workload::{write_events, Workload};

use crate::process::{kflow_bin, run_with_timeout, RunOutput};

/// How long one `kflow` command may take before it counts as hung.
pub const TIMEOUT: Duration = Duration::from_secs(300);

/// A temporary folder holding `job.toml` and the job's inputs; outputs and
/// state land in it too.
pub struct JobDir {
    dir: tempfile::TempDir,
}

impl JobDir {
    /// A folder with `job` as its `job.toml`.
    pub fn new(job: &str) -> JobDir {
        let dir = tempfile::tempdir().expect("a temporary folder");
        fs::write(dir.path().join("job.toml"), job).expect("job.toml is written");
        JobDir { dir }
    }

    /// A folder with `job` and each input file generated from its workload.
    pub fn with_workloads(job: &str, inputs: &[(&str, Workload)]) -> JobDir {
        let dir = JobDir::new(job);
        for (name, workload) in inputs {
            let file = fs::File::create(dir.path().join(name)).expect("input is created");
            let mut file = std::io::BufWriter::new(file);
            write_events(workload, &mut file).expect("input is written");
        }
        dir
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A copy of the folder (job, inputs, outputs, state) in a new one,
    /// to try several things from the same starting point.
    pub fn copy(&self) -> JobDir {
        JobDir::copy_of(self.path(), |_| true)
    }

    /// A new folder holding a copy of `folder`, but for the files and
    /// folders (at any depth) whose names `keep` refuses.
    pub fn copy_of(folder: &Path, keep: impl Fn(&str) -> bool) -> JobDir {
        fn copy_tree(from: &Path, to: &Path, keep: &dyn Fn(&str) -> bool) {
            fs::create_dir_all(to).expect("folder is created");
            for entry in fs::read_dir(from).expect("folder is read") {
                let entry = entry.expect("entry is read");
                if !keep(&entry.file_name().to_string_lossy()) {
                    continue;
                }
                let target = to.join(entry.file_name());
                if entry.file_type().expect("type is read").is_dir() {
                    copy_tree(&entry.path(), &target, keep);
                } else {
                    fs::copy(entry.path(), target).expect("file is copied");
                }
            }
        }
        let copy = JobDir {
            dir: tempfile::tempdir().expect("a temporary folder"),
        };
        copy_tree(folder, copy.path(), &keep);
        copy
    }

    /// Writes `text` to `name` in the folder (a new job file, an input).
    pub fn write(&self, name: &str, text: &str) {
        fs::write(self.path().join(name), text).expect("file is written");
    }

    /// The text of `name` in the folder; empty when it does not exist.
    pub fn read(&self, name: &str) -> String {
        fs::read_to_string(self.path().join(name)).unwrap_or_default()
    }

    /// `kflow ARGS` in the folder, with `env` set and no standard input.
    pub fn kflow(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut command = Command::new(kflow_bin());
        command
            .current_dir(self.path())
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null());
        command
    }

    /// Runs `kflow ARGS` to completion (a hang past [`TIMEOUT`] panics).
    pub fn run(&self, args: &[&str], env: &[(&str, &str)]) -> RunOutput {
        run_with_timeout(self.kflow(args, env), TIMEOUT).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs `kflow ARGS` and asserts that it succeeded.
    pub fn run_ok(&self, args: &[&str], env: &[(&str, &str)]) -> RunOutput {
        let out = self.run(args, env);
        assert!(
            out.status.success(),
            "kflow {args:?} failed: {}\n{}",
            out.status,
            out.stderr
        );
        out
    }

    /// `kflow run job.toml -q ARGS`.
    pub fn job_command(&self, args: &[&str]) -> Command {
        let mut command = self.loud_job_command();
        command.arg("-q").args(args);
        command
    }

    /// `kflow run job.toml`, with its status line and run summary.
    pub fn loud_job_command(&self) -> Command {
        self.kflow(&["run", "job.toml"], &[])
    }

    /// Runs `kflow run job.toml -q ARGS` to completion.
    pub fn run_job(&self, args: &[&str], env: &[(&str, &str)]) -> RunOutput {
        let mut command = self.job_command(args);
        command.envs(env.iter().copied());
        run_with_timeout(command, TIMEOUT).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs `kflow run job.toml -q ARGS` and asserts that it succeeded.
    pub fn run_job_ok(&self, args: &[&str]) -> RunOutput {
        let out = self.run_job(args, &[]);
        assert!(
            out.status.success(),
            "kflow run {args:?} failed: {}\n{}",
            out.status,
            out.stderr
        );
        out
    }

    /// Starts `kflow ARGS` in the background with its output discarded.
    pub fn spawn(&self, args: &[&str], env: &[(&str, &str)]) -> Child {
        self.kflow(args, env)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("kflow starts")
    }

    /// A folder whose run of `job` over `input` (as `clicks.jsonl`, the
    /// job's only file source) was killed (SIGKILL) mid-run, once a
    /// checkpoint numbered 2 or later held the first half of the input;
    /// then the second half was appended. Deterministic on a loaded
    /// machine: the first run tails its half (`follow = true`), so it
    /// cannot finish before the kill, and checkpoints every 20 ms.
    pub fn interrupted(job: &str, input: &Workload) -> JobDir {
        let path = "path = \"clicks.jsonl\"\n";
        assert_eq!(
            job.matches(path).count(),
            1,
            "one source reads clicks.jsonl"
        );
        let mut text = Vec::new();
        write_events(input, &mut text).expect("input is generated");
        let lines = text.iter().filter(|b| **b == b'\n').count() as u64;
        let half = lines / 2;
        let cut = text
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .nth(half as usize - 1)
            .map_or(text.len(), |(i, _)| i + 1);

        let dir = JobDir::new(&job.replace(path, &format!("{path}follow = true\n")));
        fs::write(dir.path().join("clicks.jsonl"), &text[..cut]).expect("input is written");
        let log = fs::File::create(dir.path().join("first-run.log")).expect("a log file");
        let mut run = dir
            .job_command(&["--checkpoint-interval", "20ms"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("kflow starts");
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some((id, line)) = dir.last_checkpoint() {
                if id >= 2 && line >= half {
                    break;
                }
            }
            if let Some(status) = run.try_wait().expect("the run can be waited for") {
                let said = dir.read("first-run.log");
                panic!(
                    "the run ended ({status}) before its checkpoint held half the input:\n{said}"
                );
            }
            assert!(
                Instant::now() < deadline,
                "no checkpoint held half the input"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        run.kill().expect("the run is killed");
        run.wait().expect("the run is reaped");
        dir.write("job.toml", job);
        let mut file = fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("clicks.jsonl"))
            .expect("input opens for appending");
        std::io::Write::write_all(&mut file, &text[cut..]).expect("input is appended");
        dir
    }

    /// The id of the job's last checkpoint and the line its `clicks`
    /// source had read, from `kflow checkpoints job.toml` (which reads a
    /// running job's state too); `None` before the first checkpoint.
    pub fn last_checkpoint(&self) -> Option<(u64, u64)> {
        let listed = self.list_checkpoints();
        let number = |text: &str| -> Option<u64> {
            let digits: String = text
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == ',')
                .filter(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        };
        let id = number(listed.stdout.strip_prefix("checkpoint ")?)?;
        let line = listed.stdout.lines().find_map(|l| {
            let rest = l.trim_start().strip_prefix("clicks")?;
            number(rest.trim_start().strip_prefix("line ")?)
        })?;
        Some((id, line))
    }

    /// `kflow checkpoints job.toml`.
    pub fn list_checkpoints(&self) -> RunOutput {
        self.run(&["checkpoints", "job.toml"], &[])
    }

    /// Every `.jsonl` file in `dirs` (relative to the folder), by relative
    /// path, sorted.
    pub fn outputs(&self, dirs: &[&str]) -> Vec<(PathBuf, String)> {
        let mut files = Vec::new();
        for dir in dirs {
            let Ok(entries) = fs::read_dir(self.path().join(dir)) else {
                continue;
            };
            for entry in entries {
                let path = entry.expect("a directory entry").path();
                if path.extension().is_some_and(|e| e == "jsonl") {
                    let rel = path.strip_prefix(self.path()).unwrap_or(&path);
                    let text = fs::read_to_string(&path).expect("output is readable");
                    files.push((rel.to_path_buf(), text));
                }
            }
        }
        files.sort();
        files
    }

    /// Waits until `name` holds at least `lines` lines (a running job has
    /// got that far); panics after `timeout`.
    pub fn wait_for_lines(&self, name: &str, lines: usize, timeout: Duration) {
        wait_until(timeout, &format!("{lines} lines in {name}"), || {
            self.read(name).lines().count() >= lines
        });
    }
}

/// Polls `done` every 50 ms until it holds; panics with `what` after
/// `timeout`. Tests wait on conditions like this, never on fixed sleeps.
pub fn wait_until(timeout: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "waited {timeout:?} for {what} in vain"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The wall clock in epoch milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The `records read` count of a run summary (`kflow run` without `-q`).
///
/// # Panics
///
/// When the summary has none.
pub fn records_read(summary: &str) -> u64 {
    summary
        .lines()
        .find(|l| l.trim_start().starts_with("records read"))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|n| n.replace(',', "").parse().ok())
        .unwrap_or_else(|| panic!("no `records read` in:\n{summary}"))
}

/// The number written just before `phrase` in a run's summary (`12
/// throttled calls retried`, `3 subscriptions`).
///
/// # Panics
///
/// When the summary does not say it.
pub fn count_before(summary: &str, phrase: &str) -> u64 {
    summary
        .split(phrase)
        .next()
        .filter(|_| summary.contains(phrase))
        .and_then(|before| before.split([' ', '(']).next_back())
        .and_then(|n| n.replace(',', "").parse().ok())
        .unwrap_or_else(|| panic!("no number before `{phrase}` in:\n{summary}"))
}
