//! Golden cases: `tests/golden/<case>/` holds a `job.toml`, its input files
//! and the outputs kflow must produce from them.
//!
//! Conventions (also in `tests/golden/README.md`):
//! - every file sink writes `out/<x>.jsonl`; `expected.jsonl` is the
//!   expected content of `out/result.jsonl` and `expected.<x>.jsonl` that of
//!   `out/<x>.jsonl`;
//! - `expected.dead-letter.jsonl` is the expected content of the dead-letter
//!   file, `<state_dir>/dead-letter.jsonl`; without it the dead-letter file
//!   must be absent or empty;
//! - a sink reading a `.errors` output, and the dead-letter file, hold error
//!   rows, compared as [`RowKind::Errors`].
//!
//! A run happens in a [`StagedCase`]: a scratch copy of the case (without
//! its expected files), so runs never see each other's state or outputs.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use crate::compare::{compare_jsonl, RowKind};
use crate::process::{kflow_bin, run_with_timeout, RunOutput};

/// How long one `kflow run` of a golden case may take before it counts as
/// hung (the cases are tiny; this only turns a hang into a failure).
pub const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// The name of the expected dead-letter file in a case folder.
pub const DEAD_LETTER_EXPECTED: &str = "expected.dead-letter.jsonl";

/// How a case is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RunMode {
    /// One uninterrupted `kflow run job.toml`.
    Straight,
    /// The same, file sources decoded by this many threads in blocks.
    DecodeThreads(usize),
    // Next (the checkpoint issue): a small `checkpoint_interval` set with
    // `StagedCase::set_job_setting`, `kflow run` killed mid-run
    // (`StagedCase::command` + `Child::kill`) and run again, then the same
    // `StagedCase::check_outputs`.
}

/// `tests/golden`.
pub fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("golden")
}

/// The names of every case folder (a folder of `tests/golden` with a
/// `job.toml`), sorted.
///
/// # Panics
///
/// When `tests/golden` cannot be read.
pub fn case_names() -> Vec<String> {
    let entries = fs::read_dir(golden_dir()).expect("tests/golden is readable");
    let mut names: Vec<String> = entries
        .map(|entry| entry.expect("tests/golden is readable").path())
        .filter(|path| path.join("job.toml").is_file())
        .filter_map(|path| path.file_name()?.to_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

/// One output of a case and what it must contain.
#[derive(Debug, Clone)]
pub struct ExpectedOutput {
    /// The file kflow writes, relative to the job's folder.
    pub actual: PathBuf,
    /// The golden file; `None`: the output must be absent or empty.
    pub expected: Option<PathBuf>,
    /// How its rows are compared.
    pub kind: RowKind,
}

/// A golden case, with its outputs worked out from `job.toml`.
#[derive(Debug, Clone)]
pub struct Case {
    /// The folder name.
    pub name: String,
    /// The case folder in the source tree.
    pub dir: PathBuf,
    /// Every output that is checked after a run.
    pub outputs: Vec<ExpectedOutput>,
}

impl Case {
    /// Loads the case `tests/golden/<name>`.
    ///
    /// # Errors
    ///
    /// When the case breaks the conventions: a file sink not writing
    /// `out/<x>.jsonl`, a sink without its expected file, an expected file
    /// no output matches.
    pub fn load(name: &str) -> Result<Case, String> {
        Case::load_from(&golden_dir().join(name))
    }

    /// Loads a case from any folder (see [`Case::load`]).
    ///
    /// # Errors
    ///
    /// As [`Case::load`].
    pub fn load_from(dir: &Path) -> Result<Case, String> {
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| format!("{}: not a case folder", dir.display()))?
            .to_string();
        let job_path = dir.join("job.toml");
        let text = fs::read_to_string(&job_path)
            .map_err(|error| format!("{}: {error}", job_path.display()))?;
        let job: toml::Table = text
            .parse()
            .map_err(|error| format!("{}: {error}", job_path.display()))?;

        let mut outputs = Vec::new();
        let sinks = job.get("sinks").and_then(toml::Value::as_table);
        for (sink, spec) in sinks.into_iter().flatten() {
            if spec.get("type").and_then(toml::Value::as_str) != Some("file") {
                continue;
            }
            let path = spec
                .get("path")
                .and_then(toml::Value::as_str)
                .ok_or_else(|| format!("{name}: sink {sink} has no path"))?;
            let stem = path
                .strip_prefix("out/")
                .and_then(|rest| rest.strip_suffix(".jsonl"))
                .filter(|stem| is_output_name(stem))
                .ok_or_else(|| format!("{name}: sink {sink} writes {path}, not out/<x>.jsonl"))?;
            let expected = if stem == "result" {
                "expected.jsonl".to_string()
            } else {
                format!("expected.{stem}.jsonl")
            };
            outputs.push(ExpectedOutput {
                actual: PathBuf::from(path),
                expected: Some(dir.join(expected)),
                kind: sink_row_kind(spec)
                    .map_err(|problem| format!("{name}: sink {sink}: {problem}"))?,
            });
        }

        let dead_letter = state_dir(&job)
            .map_err(|problem| format!("{name}: {problem}"))?
            .join("dead-letter.jsonl");
        let dead_letter_expected = dir.join(DEAD_LETTER_EXPECTED);
        outputs.push(ExpectedOutput {
            actual: dead_letter,
            expected: dead_letter_expected
                .is_file()
                .then_some(dead_letter_expected),
            kind: RowKind::Errors,
        });

        // Every golden file must be checked, and every checked output needs one.
        let listed: Vec<&PathBuf> = outputs.iter().filter_map(|o| o.expected.as_ref()).collect();
        for output in &outputs {
            if let Some(expected) = &output.expected {
                if !expected.is_file() {
                    return Err(format!("{name}: {} is missing", expected.display()));
                }
            }
        }
        let entries = fs::read_dir(dir).map_err(|error| format!("{}: {error}", dir.display()))?;
        for entry in entries {
            let path = entry
                .map_err(|error| format!("{}: {error}", dir.display()))?
                .path();
            let file_name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if is_expected_file(file_name) && !listed.contains(&&path) {
                return Err(format!(
                    "{name}: {file_name} matches no file sink of job.toml"
                ));
            }
        }
        Ok(Case {
            name,
            dir: dir.to_path_buf(),
            outputs,
        })
    }
}

/// `[a-z0-9_]+`, the output names the convention allows.
fn is_output_name(stem: &str) -> bool {
    !stem.is_empty()
        && stem
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn is_expected_file(file_name: &str) -> bool {
    file_name.starts_with("expected") && file_name.ends_with(".jsonl")
}

/// Error rows when the sink reads `.errors` outputs, plain rows otherwise.
fn sink_row_kind(spec: &toml::Value) -> Result<RowKind, String> {
    let inputs: Vec<&str> = match spec.get("input") {
        Some(toml::Value::String(input)) => vec![input.as_str()],
        Some(toml::Value::Array(inputs)) => inputs.iter().filter_map(toml::Value::as_str).collect(),
        _ => return Err("no input".to_string()),
    };
    let errors = inputs
        .iter()
        .filter(|input| input.ends_with(".errors"))
        .count();
    match errors {
        0 => Ok(RowKind::Rows),
        n if n == inputs.len() => Ok(RowKind::Errors),
        _ => Err("mixes .errors with other inputs".to_string()),
    }
}

/// `[job] state_dir`, or its default `.kflow/<name>`, relative to the job's
/// folder.
fn state_dir(job: &toml::Table) -> Result<PathBuf, String> {
    let section = job
        .get("job")
        .and_then(toml::Value::as_table)
        .ok_or("no [job] table")?;
    if let Some(dir) = section.get("state_dir") {
        let dir = dir.as_str().ok_or("[job] state_dir is not a string")?;
        return Ok(PathBuf::from(dir));
    }
    let name = section
        .get("name")
        .and_then(toml::Value::as_str)
        .ok_or("no [job] name")?;
    Ok(Path::new(".kflow").join(name))
}

/// A scratch copy of a case, where kflow runs with the job's folder as its
/// working directory. Removed when dropped.
#[derive(Debug)]
pub struct StagedCase {
    case: Case,
    root: TempDir,
}

impl StagedCase {
    /// Copies the case's job file and inputs (not its expected files) into a
    /// fresh temporary folder, with an empty `out/` for the sinks.
    ///
    /// # Errors
    ///
    /// When the copy fails.
    pub fn new(case: &Case) -> Result<StagedCase, String> {
        let root = tempfile::Builder::new()
            .prefix(&format!("kflow-golden-{}-", case.name))
            .tempdir()
            .map_err(|error| format!("cannot create a scratch folder: {error}"))?;
        copy_inputs(&case.dir, root.path())?;
        fs::create_dir_all(root.path().join("out"))
            .map_err(|error| format!("cannot create out/: {error}"))?;
        Ok(StagedCase {
            case: case.clone(),
            root,
        })
    }

    /// The case this is a copy of.
    pub fn case(&self) -> &Case {
        &self.case
    }

    /// The job's folder (kflow's working directory).
    pub fn dir(&self) -> &Path {
        self.root.path()
    }

    /// Sets `key = value` in the `[section]` table of the staged `job.toml`
    /// (for run modes that change the job, e.g. `checkpoint_interval`).
    /// Comments in the staged copy are lost; the case folder is untouched.
    ///
    /// # Errors
    ///
    /// When the job file cannot be read, parsed or written.
    pub fn set_job_setting(
        &self,
        section: &str,
        key: &str,
        value: toml::Value,
    ) -> Result<(), String> {
        let path = self.dir().join("job.toml");
        let text =
            fs::read_to_string(&path).map_err(|error| format!("{}: {error}", path.display()))?;
        let mut job: toml::Table = text
            .parse()
            .map_err(|error| format!("{}: {error}", path.display()))?;
        let table = job
            .entry(section)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| format!("{section} in job.toml is not a table"))?;
        table.insert(key.to_string(), value);
        let text = toml::to_string(&job).map_err(|error| format!("job.toml: {error}"))?;
        fs::write(&path, text).map_err(|error| format!("{}: {error}", path.display()))
    }

    /// `kflow run job.toml` in the job's folder, not started yet.
    pub fn command(&self) -> Command {
        let mut command = Command::new(kflow_bin());
        command
            .args(["run", "job.toml"])
            .current_dir(self.dir())
            .env("RUST_BACKTRACE", "1");
        command
    }

    /// Runs `kflow run job.toml` to the end.
    ///
    /// # Errors
    ///
    /// When it cannot start or hangs past [`RUN_TIMEOUT`].
    pub fn run(&self) -> Result<RunOutput, String> {
        run_with_timeout(self.command(), RUN_TIMEOUT)
    }

    /// Compares every output of the case with its golden file, and reports
    /// all differences at once.
    ///
    /// # Errors
    ///
    /// A report naming each output that differs, with its missing and
    /// unexpected rows.
    pub fn check_outputs(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        for output in &self.case.outputs {
            let actual_path = self.dir().join(&output.actual);
            let actual = match fs::read_to_string(&actual_path) {
                Ok(text) => Some(text),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
                Err(error) => {
                    problems.push(format!("{}: {error}", output.actual.display()));
                    continue;
                }
            };
            let (expected, expected_name) = match &output.expected {
                Some(path) => match fs::read_to_string(path) {
                    Ok(text) => (text, file_name(path)),
                    Err(error) => {
                        problems.push(format!("{}: {error}", path.display()));
                        continue;
                    }
                },
                None => (String::new(), "nothing".to_string()),
            };
            let Some(actual) = actual else {
                // kflow may or may not create an output it never writes to.
                if !expected.trim().is_empty() {
                    problems.push(format!("{} was not written", output.actual.display()));
                }
                continue;
            };
            if let Err(mismatch) = compare_jsonl(&expected, &actual, output.kind) {
                problems.push(format!(
                    "{} differs from {expected_name}: {mismatch}",
                    output.actual.display()
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Copies a case folder, recursively, leaving out its expected files.
fn copy_inputs(from: &Path, to: &Path) -> Result<(), String> {
    let entries = fs::read_dir(from).map_err(|error| format!("{}: {error}", from.display()))?;
    for entry in entries {
        let path = entry
            .map_err(|error| format!("{}: {error}", from.display()))?
            .path();
        let name = file_name(&path);
        let target = to.join(&name);
        if path.is_dir() {
            fs::create_dir_all(&target)
                .map_err(|error| format!("{}: {error}", target.display()))?;
            copy_inputs(&path, &target)?;
        } else if !is_expected_file(&name) {
            fs::copy(&path, &target).map_err(|error| format!("{}: {error}", path.display()))?;
        }
    }
    Ok(())
}

/// Runs one case in the given mode and checks every output.
///
/// # Errors
///
/// A report of everything that went wrong: kflow's exit status and stderr
/// when it failed, otherwise each output that differs from its golden file.
pub fn run_case(name: &str, mode: RunMode) -> Result<(), String> {
    let case = Case::load(name)?;
    let staged = StagedCase::new(&case)?;
    let run = match mode {
        RunMode::Straight => staged.run(),
        RunMode::DecodeThreads(n) => {
            let mut command = staged.command();
            command.arg("--decode-threads").arg(n.to_string());
            run_with_timeout(command, RUN_TIMEOUT)
        }
    };
    match mode {
        RunMode::Straight | RunMode::DecodeThreads(_) => {
            let output = run?;
            if !output.status.success() {
                return Err(format!(
                    "case {name}: kflow run exited with {}\n--- stderr ---\n{}",
                    output.status, output.stderr
                ));
            }
            staged.check_outputs().map_err(|report| {
                format!(
                    "case {name}:\n{report}\n--- kflow stderr ---\n{}",
                    output.stderr
                )
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_case_follows_the_conventions() {
        let names = case_names();
        assert!(
            !names.is_empty(),
            "no golden cases found in {}",
            golden_dir().display()
        );
        for name in names {
            let case = Case::load(&name).unwrap_or_else(|problem| panic!("{problem}"));
            let result = case
                .outputs
                .iter()
                .find(|o| o.actual == Path::new("out/result.jsonl"));
            assert!(result.is_some(), "case {name} has no out/result.jsonl sink");
        }
    }

    #[test]
    fn dead_letter_defaults_to_the_state_dir() {
        let case = Case::load("malformed").unwrap_or_else(|problem| panic!("{problem}"));
        let dead_letter = case
            .outputs
            .iter()
            .find(|o| {
                o.kind == RowKind::Errors
                    && o.expected
                        .as_ref()
                        .is_some_and(|p| p.ends_with(DEAD_LETTER_EXPECTED))
            })
            .expect("malformed checks its dead-letter file");
        assert_eq!(
            dead_letter.actual,
            Path::new(".kflow/malformed/dead-letter.jsonl")
        );
    }

    #[test]
    fn staging_copies_inputs_but_not_expectations() {
        let case = Case::load("union").unwrap_or_else(|problem| panic!("{problem}"));
        let staged = StagedCase::new(&case).unwrap_or_else(|problem| panic!("{problem}"));
        assert!(staged.dir().join("job.toml").is_file());
        assert!(staged.dir().join("web.jsonl").is_file());
        assert!(staged.dir().join("out").is_dir());
        assert!(!staged.dir().join("expected.jsonl").exists());
    }

    #[test]
    fn unwritten_outputs_fail_the_check() {
        let case = Case::load("tumbling_basic").unwrap_or_else(|problem| panic!("{problem}"));
        let staged = StagedCase::new(&case).unwrap_or_else(|problem| panic!("{problem}"));
        let report = staged
            .check_outputs()
            .expect_err("nothing ran, so nothing matches");
        assert!(
            report.contains("out/result.jsonl was not written"),
            "{report}"
        );
    }

    #[test]
    fn a_wrong_output_fails_the_check_and_the_right_one_passes() {
        let case = Case::load("global_window").unwrap_or_else(|problem| panic!("{problem}"));
        let staged = StagedCase::new(&case).unwrap_or_else(|problem| panic!("{problem}"));
        let expected = fs::read_to_string(case.dir.join("expected.jsonl")).expect("golden file");
        let result = staged.dir().join("out/result.jsonl");
        // Reversed row order: still equal.
        let reversed: String = expected.lines().rev().map(|l| format!("{l}\n")).collect();
        fs::write(&result, reversed).expect("write out/result.jsonl");
        staged
            .check_outputs()
            .unwrap_or_else(|report| panic!("{report}"));
        // One row dropped: reported.
        let fewer: String = expected.lines().skip(1).map(|l| format!("{l}\n")).collect();
        fs::write(&result, fewer).expect("write out/result.jsonl");
        let report = staged.check_outputs().expect_err("a missing row must fail");
        assert!(report.contains("1 missing, 0 unexpected"), "{report}");
    }

    #[test]
    fn dead_letter_rows_fail_a_case_that_expects_none() {
        let case = Case::load("tumbling_basic").unwrap_or_else(|problem| panic!("{problem}"));
        let staged = StagedCase::new(&case).unwrap_or_else(|problem| panic!("{problem}"));
        let expected = fs::read_to_string(case.dir.join("expected.jsonl")).expect("golden file");
        fs::write(staged.dir().join("out/result.jsonl"), expected).expect("write result");
        let dead_letter = staged.dir().join(".kflow/tumbling_basic/dead-letter.jsonl");
        fs::create_dir_all(dead_letter.parent().expect("has a parent")).expect("mkdir");
        let row = r#"{"source":"orders","reason":"x","position":{"file":"input.jsonl","line":1},"record":"{}"}"#;
        fs::write(&dead_letter, format!("{row}\n")).expect("write dead letter");
        let report = staged
            .check_outputs()
            .expect_err("an unexpected dead letter must fail");
        assert!(
            report.contains("dead-letter.jsonl differs from nothing"),
            "{report}"
        );
    }

    #[test]
    fn job_settings_can_be_changed_in_the_staged_copy() {
        let case = Case::load("tumbling_basic").unwrap_or_else(|problem| panic!("{problem}"));
        let staged = StagedCase::new(&case).unwrap_or_else(|problem| panic!("{problem}"));
        staged
            .set_job_setting(
                "job",
                "checkpoint_interval",
                toml::Value::String("100ms".into()),
            )
            .unwrap_or_else(|problem| panic!("{problem}"));
        let text = fs::read_to_string(staged.dir().join("job.toml")).expect("staged job");
        let job: toml::Table = text.parse().expect("still TOML");
        assert_eq!(job["job"]["checkpoint_interval"].as_str(), Some("100ms"));
        assert_eq!(job["job"]["name"].as_str(), Some("tumbling_basic"));
        assert_eq!(
            job["sources"]["orders"]["path"].as_str(),
            Some("input.jsonl")
        );
        let original = fs::read_to_string(case.dir.join("job.toml")).expect("case job");
        assert!(!original.contains("checkpoint_interval"));
    }
}
