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
//! idle.clicks = "1m"                       # a quiet spell (`idle_timeout`),
//! [[case.step]]
//! restart = true                           # a kill and a restore,
//! [[case.step]]
//! input.clicks = [ { user_id = "u2", ts = "2026-11-25T10:00:30Z" } ]  # more records
//! [case.expect.per_user]                   # a sink, a stream, `x.late`, `x.errors`
//! rows = [ { user_id = "u1", events = 1 } ] # exactly these rows, any order
//! ```
//!
//! Every step but a restart is a *turn* ([`CaseTurn`]): the engine runs a
//! case's sources in step, so the order the steps give across sources is
//! the order their records meet at a window. Reading collects every
//! problem as a [`Diagnostic`] (rendered `PATH:LINE:COL: message`, like a
//! job file's), including names that the job does not have.

mod check;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::diagnostic::{self, Diagnostic};
use crate::plan::{JobPlan, NodeKind, Port, Turn};
use check::Checker;

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
    /// The case's turns, in order: `[case.input]`, then one per step but a
    /// `restart`.
    pub turns: Vec<CaseTurn>,
    /// Restarts: how many turns come before each. The run is killed after
    /// a checkpoint covering them, and the rest is read by a run restored
    /// from it.
    pub restarts: Vec<usize>,
    /// Expectations by output name, in name order.
    pub expects: Vec<Expect>,
}

/// One turn of a case: what its step does to each source of the job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaseTurn {
    /// Every source's line count at the end of the turn, by name.
    pub lines: BTreeMap<String, u64>,
    /// An `advance` step: the sources whose watermark moves to at least
    /// this (epoch ms) at the turn's start.
    pub advance: BTreeMap<String, i64>,
    /// An `idle` step: the sources quiet for this long (ms).
    pub quiet: BTreeMap<String, i64>,
}

impl TestCase {
    /// Each source's line count (every source of the job) when restart
    /// `k` is taken.
    pub fn cut(&self, k: usize) -> BTreeMap<String, u64> {
        let before = self.restarts.get(k).copied().unwrap_or(self.turns.len());
        match before.checked_sub(1).and_then(|last| self.turns.get(last)) {
            Some(turn) => turn.lines.clone(),
            None => self.turns.first().map_or_else(BTreeMap::new, |t| {
                t.lines.keys().map(|source| (source.clone(), 0)).collect()
            }),
        }
    }

    /// The first `count` turns as `source` takes them.
    pub fn turns_of(&self, source: &str, count: usize) -> Vec<Turn> {
        self.turns
            .iter()
            .take(count)
            .map(|t| Turn {
                advance: t.advance.get(source).copied(),
                quiet_ms: t.quiet.get(source).copied(),
                lines: t.lines.get(source).copied().unwrap_or(0),
            })
            .collect()
    }
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

/// One `[[case.step]]`: records, a watermark move, a quiet spell or a
/// restart.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StepSpec {
    input: Option<BTreeMap<Spanned<String>, Spanned<toml::Value>>>,
    advance: Option<toml::Value>,
    idle: Option<toml::Value>,
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
