//! Test files for `kflow test`: cases of input records per source, in the
//! order they arrive, and the rows each output must (or must not) hold.
//!
//! ```toml
//! [[case]]
//! name = "checkouts per user per minute"
//! [case.input]
//! clicks = [
//!   { user_id = "u1", type = "purchase", amount = 10.0, ts = "2026-11-25T10:00:01Z" },
//!   '{"user_id": "u1", "type": ',          # a string is one raw line
//! ]
//! [[case.step]]                            # then, in order: a watermark move,
//! advance = "2026-11-25T10:05:00Z"
//! [[case.step]]
//! restart = true                           # a kill and a restore,
//! [[case.step]]
//! input.clicks = [ { user_id = "u2", ts = "2026-11-25T10:00:30Z" } ]  # more records
//! [case.expect.per_user]                   # a sink, a stream, `x.late`, `x.errors`
//! rows = [ { user_id = "u1", events = 1 } ] # exactly these rows, any order
//! ```
//!
//! Reading collects every problem as a [`Diagnostic`] (rendered
//! `PATH:LINE:COL: message`, like a job file's), including names that the
//! job does not have.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::diagnostic::{self, Diagnostic};
use crate::plan::{JobPlan, NodeKind, Port};

/// The test file's JSON object type.
pub type Object = serde_json::Map<String, serde_json::Value>;

/// A test file, read and checked against its job.
#[derive(Debug, Clone)]
pub struct TestFile {
    /// The path as given.
    pub path: PathBuf,
    /// Its cases, in file order.
    pub cases: Vec<TestCase>,
}

/// One case: inputs, then what the outputs hold once every input ended.
#[derive(Debug, Clone)]
pub struct TestCase {
    /// `name`.
    pub name: String,
    /// The lines each source reads, by source name, in arrival order. A
    /// source without an entry reads nothing.
    pub inputs: BTreeMap<String, Vec<String>>,
    /// Watermark steps: after the source's first `line` lines, its
    /// watermark moves to at least `watermark` (epoch ms).
    pub advances: Vec<Advance>,
    /// Restarts: after each source's first lines (by source name; absent
    /// means none), the run is killed after a checkpoint covering them and
    /// the rest is read by a run restored from it.
    pub restarts: Vec<BTreeMap<String, u64>>,
    /// Expectations by output name, in name order.
    pub expects: Vec<Expect>,
}

/// An `advance` step for one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advance {
    /// The source.
    pub source: String,
    /// After this many of its lines.
    pub line: u64,
    /// The watermark it moves to, epoch ms.
    pub watermark: i64,
}

/// What one output must hold.
#[derive(Debug, Clone)]
pub struct Expect {
    /// A sink's name, a stream (`window`, `filter`, `source`, `x.late`,
    /// `x.errors`) or `dead_letters`.
    pub output: String,
    /// Exactly these rows, in any order (every field compared).
    pub rows: Option<Vec<Object>>,
    /// Rows that must be there: each matches a distinct output row on the
    /// fields it names.
    pub contains: Vec<Object>,
    /// Rows that must not be there: no output row matches one on the
    /// fields it names.
    pub absent: Vec<Object>,
}

/// What an expectation's output name refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputRef {
    /// The rows a sink of the job receives.
    Sink,
    /// The records of a stream: a node's main, late or errors port.
    Stream {
        /// The node's index in the plan.
        node: usize,
        /// Which port.
        port: Port,
    },
    /// The dead-letter file.
    DeadLetters,
}

/// The name of the dead-letter output in expectations.
pub const DEAD_LETTERS: &str = "dead_letters";

/// Resolves an output name against the job.
pub fn resolve_output(plan: &JobPlan, name: &str) -> Option<OutputRef> {
    if name == DEAD_LETTERS {
        return Some(OutputRef::DeadLetters);
    }
    let (node, port) = match name.rsplit_once('.') {
        Some((node, "late")) => (node, Port::Late),
        Some((node, "errors")) => (node, Port::Errors),
        _ => (name, Port::Main),
    };
    let index = plan.nodes.iter().position(|n| n.name == node)?;
    match (&plan.nodes[index].kind, port) {
        (NodeKind::Sink(_), Port::Main) => Some(OutputRef::Sink),
        (NodeKind::Sink(_), _) => None,
        (NodeKind::Window(_), Port::Late)
        | (NodeKind::Source(_), Port::Errors)
        | (_, Port::Main) => Some(OutputRef::Stream { node: index, port }),
        _ => None,
    }
}

/// A test file that could not be read, or is not valid for its job.
#[derive(Debug, thiserror::Error)]
pub enum TestFileError {
    /// The file could not be read.
    #[error("cannot read test file {}", path.display())]
    Io {
        /// The path as given.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid test of the job; every problem found.
    #[error("invalid test file {}: {} error(s)", path.display(), diagnostics.len())]
    Invalid {
        /// The path as given.
        path: PathBuf,
        /// The file's text, for rendering.
        text: String,
        /// The problems, sorted by position; never empty.
        diagnostics: Vec<Diagnostic>,
    },
}

impl TestFileError {
    /// Every problem as `PATH:LINE:COL: message` with the line and a caret.
    pub fn render(&self) -> String {
        match self {
            TestFileError::Io { path, source } => {
                format!("{}: cannot read test file: {source}\n", path.display())
            }
            TestFileError::Invalid {
                path,
                text,
                diagnostics,
            } => diagnostic::render(&path.display().to_string(), text, diagnostics),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    #[serde(default)]
    case: Vec<Spanned<CaseSpec>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseSpec {
    name: Option<Spanned<String>>,
    #[serde(default)]
    input: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    #[serde(default)]
    step: Vec<Spanned<StepSpec>>,
    #[serde(default)]
    expect: BTreeMap<Spanned<String>, Spanned<ExpectSpec>>,
}

/// One `[[case.step]]`: records, a watermark move or a restart.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StepSpec {
    input: Option<BTreeMap<Spanned<String>, Spanned<toml::Value>>>,
    advance: Option<toml::Value>,
    restart: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectSpec {
    rows: Option<Spanned<toml::Value>>,
    contains: Option<Spanned<toml::Value>>,
    absent: Option<Spanned<toml::Value>>,
}

/// Reads the test file at `path` and checks it against `plan` (sources
/// and outputs it names; input files resolved against its folder).
///
/// # Errors
/// [`TestFileError::Io`] when it cannot be read, [`TestFileError::Invalid`]
/// with every problem found.
pub fn read(path: &Path, plan: &JobPlan) -> Result<TestFile, TestFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| TestFileError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let mut diagnostics = Vec::new();
    let cases = match toml::from_str::<FileSpec>(&text) {
        Ok(spec) => {
            if spec.case.is_empty() {
                diagnostics.push(Diagnostic::new(0..0, "no `[[case]]` in the test file"));
            }
            let mut names: BTreeMap<String, Range<usize>> = BTreeMap::new();
            let mut cases = Vec::new();
            for case in spec.case {
                let span = case.span();
                let case = case.into_inner();
                let name = match &case.name {
                    Some(name) => {
                        if let Some(_first) = names.insert(name.get_ref().clone(), name.span()) {
                            diagnostics.push(Diagnostic::new(
                                name.span(),
                                format!("a second case named `{}`", name.get_ref()),
                            ));
                        }
                        name.get_ref().clone()
                    }
                    None => {
                        diagnostics.push(Diagnostic::new(span.clone(), "a case needs a `name`"));
                        String::new()
                    }
                };
                let mut checker = Checker {
                    plan,
                    base: &base,
                    diagnostics: &mut diagnostics,
                };
                cases.push(checker.case(name, case));
            }
            cases
        }
        Err(e) => {
            diagnostics.push(Diagnostic::new(
                e.span().unwrap_or(0..0),
                e.message().to_string(),
            ));
            Vec::new()
        }
    };
    if diagnostics.is_empty() {
        Ok(TestFile {
            path: path.to_path_buf(),
            cases,
        })
    } else {
        diagnostic::sort_and_dedup(&mut diagnostics);
        Err(TestFileError::Invalid {
            path: path.to_path_buf(),
            text,
            diagnostics,
        })
    }
}

/// Checks one case's parts against the job, collecting diagnostics.
struct Checker<'a> {
    plan: &'a JobPlan,
    base: &'a Path,
    diagnostics: &'a mut Vec<Diagnostic>,
}

impl Checker<'_> {
    fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic::new(span, message));
    }

    /// Whether the job has source `name`; if not, says so at `span`.
    fn known_source(&mut self, name: &str, span: Range<usize>) -> bool {
        let known = self
            .plan
            .nodes
            .iter()
            .any(|n| n.name == name && matches!(n.kind, NodeKind::Source(_)));
        if !known {
            self.error(span, format!("the job has no source `{name}`"));
        }
        known
    }

    /// Appends a step's records to the sources' inputs.
    fn input(
        &mut self,
        records: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
        inputs: &mut BTreeMap<String, Vec<String>>,
    ) {
        for (source, value) in records {
            if !self.known_source(source.get_ref(), source.span()) {
                continue;
            }
            let lines = self.lines(value);
            inputs.entry(source.into_inner()).or_default().extend(lines);
        }
    }

    /// An `advance` step: `"TIME"` for every source, or `{ SOURCE =
    /// "TIME", ... }`.
    fn advance(
        &mut self,
        value: toml::Value,
        span: Range<usize>,
        inputs: &BTreeMap<String, Vec<String>>,
        advances: &mut Vec<Advance>,
    ) {
        let pairs: Vec<(String, toml::Value)> = match value {
            toml::Value::Table(table) => table.into_iter().collect(),
            time => self
                .plan
                .nodes
                .iter()
                .filter(|n| matches!(n.kind, NodeKind::Source(_)))
                .map(|n| (n.name.clone(), time.clone()))
                .collect(),
        };
        for (source, time) in pairs {
            if !self.known_source(&source, span.clone()) {
                continue;
            }
            let text = match time {
                toml::Value::String(s) => s,
                toml::Value::Datetime(d) => d.to_string(),
                _ => String::new(),
            };
            let Some(watermark) = crate::compile::rfc3339_millis(&text) else {
                self.error(
                    span.clone(),
                    "`advance` takes an RFC 3339 time, or a table of them by source",
                );
                continue;
            };
            let line = inputs.get(&source).map_or(0, |l| l.len() as u64);
            advances.push(Advance {
                source,
                line,
                watermark,
            });
        }
    }

    fn case(&mut self, name: String, case: CaseSpec) -> TestCase {
        let mut inputs = BTreeMap::new();
        let mut advances = Vec::new();
        let mut restarts = Vec::new();
        self.input(case.input, &mut inputs);
        for step in case.step {
            let span = step.span();
            let step = step.into_inner();
            let given = [
                step.input.is_some(),
                step.advance.is_some(),
                step.restart.is_some(),
            ];
            if given.iter().filter(|g| **g).count() != 1 {
                self.error(
                    span,
                    "a step is one of `input`, `advance` or `restart = true`",
                );
                continue;
            }
            if let Some(records) = step.input {
                self.input(records, &mut inputs);
            } else if let Some(value) = step.advance {
                self.advance(value, span, &inputs, &mut advances);
            } else if let Some(restart) = step.restart {
                if *restart.get_ref() {
                    let at = inputs
                        .iter()
                        .map(|(source, lines)| (source.clone(), lines.len() as u64))
                        .collect();
                    restarts.push(at);
                } else {
                    self.error(restart.span(), "write `restart = true`, or no step");
                }
            }
        }
        let mut expects = Vec::new();
        for (output, spec) in case.expect {
            if resolve_output(self.plan, output.get_ref()).is_none() {
                self.error(
                    output.span(),
                    format!(
                        "the job has no output `{}`: name a sink, a source, filter or window, \
                         `WINDOW.late`, `SOURCE.errors` or `{DEAD_LETTERS}`",
                        output.get_ref()
                    ),
                );
                continue;
            }
            let span = spec.span();
            let spec = spec.into_inner();
            if spec.rows.is_none() && spec.contains.is_none() && spec.absent.is_none() {
                self.error(span, "an expectation needs `rows`, `contains` or `absent`");
            }
            expects.push(Expect {
                output: output.into_inner(),
                rows: spec.rows.map(|rows| self.objects(rows)),
                contains: spec.contains.map(|r| self.objects(r)).unwrap_or_default(),
                absent: spec.absent.map(|r| self.objects(r)).unwrap_or_default(),
            });
        }
        TestCase {
            name,
            inputs,
            advances,
            restarts,
            expects,
        }
    }

    /// A source's input: an array of records (inline tables, or strings
    /// taken as raw lines), or `{ file = "PATH" }` of JSON lines.
    fn lines(&mut self, value: Spanned<toml::Value>) -> Vec<String> {
        let span = value.span();
        match value.into_inner() {
            toml::Value::Array(records) => {
                let mut lines = Vec::with_capacity(records.len());
                for record in records {
                    match record {
                        toml::Value::String(line) if line.contains('\n') => self.error(
                            span.clone(),
                            "a raw record must be one line (no newline in the string)",
                        ),
                        toml::Value::String(line) => lines.push(line),
                        toml::Value::Table(table) => {
                            lines.push(serde_json::Value::Object(object(table)).to_string());
                        }
                        _ => self.error(
                            span.clone(),
                            "a record is an inline table or a string holding one raw line",
                        ),
                    }
                }
                lines
            }
            toml::Value::Table(table) => match (table.get("file"), table.len()) {
                (Some(toml::Value::String(file)), 1) => {
                    let path = self.base.join(file);
                    match std::fs::read_to_string(&path) {
                        Ok(text) => text.lines().map(str::to_string).collect(),
                        Err(e) => {
                            self.error(span, format!("cannot read {}: {e}", path.display()));
                            Vec::new()
                        }
                    }
                }
                _ => {
                    self.error(span, "an input file is written `{ file = \"PATH\" }`");
                    Vec::new()
                }
            },
            _ => {
                self.error(
                    span,
                    "an input is an array of records or `{ file = \"PATH\" }`",
                );
                Vec::new()
            }
        }
    }

    /// Expected rows: an array of inline tables, or `{ file = "PATH" }` of
    /// JSON lines, each an object (what a file sink writes).
    fn objects(&mut self, rows: Spanned<toml::Value>) -> Vec<Object> {
        let span = rows.span();
        let mut out = Vec::new();
        match rows.into_inner() {
            toml::Value::Array(rows) => {
                for row in rows {
                    match row {
                        toml::Value::Table(table) => out.push(object(table)),
                        _ => self.error(span.clone(), "an expected row is an inline table"),
                    }
                }
            }
            toml::Value::Table(table) => match (table.get("file"), table.len()) {
                (Some(toml::Value::String(file)), 1) => {
                    let path = self.base.join(file);
                    let text = match std::fs::read_to_string(&path) {
                        Ok(text) => text,
                        Err(e) => {
                            self.error(span, format!("cannot read {}: {e}", path.display()));
                            return out;
                        }
                    };
                    for (i, line) in text.lines().enumerate() {
                        if line.trim().is_empty() {
                            continue;
                        }
                        match serde_json::from_str::<serde_json::Value>(line) {
                            Ok(serde_json::Value::Object(row)) => out.push(row),
                            _ => self.error(
                                span.clone(),
                                format!(
                                    "{} line {}: an expected row is one JSON object",
                                    path.display(),
                                    i + 1
                                ),
                            ),
                        }
                    }
                }
                _ => self.error(
                    span,
                    "a file of expected rows is written `{ file = \"PATH\" }`",
                ),
            },
            _ => self.error(
                span,
                "expected rows are an array of inline tables or `{ file = \"PATH\" }`",
            ),
        }
        out
    }
}

/// A TOML table as a JSON object: datetimes become their RFC 3339 text.
fn object(table: toml::Table) -> Object {
    table.into_iter().map(|(k, v)| (k, json(v))).collect()
}

fn json(value: toml::Value) -> serde_json::Value {
    match value {
        toml::Value::String(s) => serde_json::Value::String(s),
        toml::Value::Integer(n) => serde_json::Value::from(n),
        toml::Value::Float(f) => serde_json::Number::from_f64(f)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null),
        toml::Value::Boolean(b) => serde_json::Value::Bool(b),
        toml::Value::Datetime(d) => serde_json::Value::String(d.to_string()),
        toml::Value::Array(items) => {
            serde_json::Value::Array(items.into_iter().map(json).collect())
        }
        toml::Value::Table(table) => serde_json::Value::Object(object(table)),
    }
}
