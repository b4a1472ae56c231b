//! Checking one case of a test file against its job: its inputs, steps
//! (as turns) and expectations, every problem a [`Diagnostic`].

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use toml::Spanned;

use super::{resolve_output, CaseSpec, CaseTurn, Expect, Object, TestCase, DEAD_LETTERS};
use crate::diagnostic::Diagnostic;
use crate::plan::{JobPlan, NodeKind};

/// Checks one case's parts against the job, collecting diagnostics.
pub(super) struct Checker<'a> {
    pub(super) plan: &'a JobPlan,
    pub(super) base: &'a Path,
    pub(super) diagnostics: &'a mut Vec<Diagnostic>,
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

    /// The sources of the job, in plan order.
    fn sources(&self) -> Vec<String> {
        self.plan
            .nodes
            .iter()
            .filter(|n| matches!(n.kind, NodeKind::Source(_)))
            .map(|n| n.name.clone())
            .collect()
    }

    /// A step's value for some sources: one value for every source, or a
    /// table of them by source name (unknown names reported at `span`).
    fn by_source(&mut self, value: toml::Value, span: &Range<usize>) -> Vec<(String, toml::Value)> {
        let pairs: Vec<(String, toml::Value)> = match value {
            toml::Value::Table(table) => table.into_iter().collect(),
            one => self
                .sources()
                .into_iter()
                .map(|s| (s, one.clone()))
                .collect(),
        };
        pairs
            .into_iter()
            .filter(|(source, _)| self.known_source(source, span.clone()))
            .collect()
    }

    /// An `advance` step: `"TIME"` for every source, or `{ SOURCE =
    /// "TIME", ... }`.
    fn advance(&mut self, value: toml::Value, span: &Range<usize>, turn: &mut CaseTurn) {
        for (source, time) in self.by_source(value, span) {
            let text = match time {
                toml::Value::String(s) => s,
                toml::Value::Datetime(d) => d.to_string(),
                _ => String::new(),
            };
            match crate::compile::rfc3339_millis(&text) {
                Some(watermark) => {
                    turn.advance.insert(source, watermark);
                }
                None => self.error(
                    span.clone(),
                    "`advance` takes an RFC 3339 time, or a table of them by source",
                ),
            }
        }
    }

    /// An `idle` step: `"30s"` for every source, or `{ SOURCE = "30s",
    /// ... }`.
    fn idle(&mut self, value: toml::Value, span: &Range<usize>, turn: &mut CaseTurn) {
        for (source, quiet) in self.by_source(value, span) {
            let parsed = quiet
                .as_str()
                .ok_or_else(String::new)
                .and_then(crate::duration::parse_duration);
            match parsed {
                Ok(quiet) => {
                    turn.quiet.insert(source, crate::duration::millis(quiet));
                }
                Err(_) => self.error(
                    span.clone(),
                    "`idle` takes a duration such as \"30s\", or a table of them by source",
                ),
            }
        }
    }

    pub(super) fn case(&mut self, name: String, case: CaseSpec) -> TestCase {
        let mut inputs: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut turns = Vec::new();
        let mut restarts = Vec::new();
        self.input(case.input, &mut inputs);
        let lines = |inputs: &BTreeMap<String, Vec<String>>, sources: &[String]| {
            sources
                .iter()
                .map(|s| (s.clone(), inputs.get(s).map_or(0, |l| l.len() as u64)))
                .collect()
        };
        let sources = self.sources();
        turns.push(CaseTurn {
            lines: lines(&inputs, &sources),
            ..CaseTurn::default()
        });
        for step in case.step {
            let span = step.span();
            let step = step.into_inner();
            let given = [
                step.input.is_some(),
                step.advance.is_some(),
                step.idle.is_some(),
                step.restart.is_some(),
            ];
            if given.iter().filter(|g| **g).count() != 1 {
                self.error(
                    span,
                    "a step is one of `input`, `advance`, `idle` or `restart = true`",
                );
                continue;
            }
            let mut turn = CaseTurn::default();
            if let Some(records) = step.input {
                self.input(records, &mut inputs);
            } else if let Some(value) = step.advance {
                self.advance(value, &span, &mut turn);
            } else if let Some(value) = step.idle {
                self.idle(value, &span, &mut turn);
            } else if let Some(restart) = step.restart {
                if !*restart.get_ref() {
                    self.error(restart.span(), "write `restart = true`, or no step");
                }
                restarts.push(turns.len());
                continue;
            }
            turn.lines = lines(&inputs, &sources);
            turns.push(turn);
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
            turns,
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
