//! Comparing JSON-lines outputs with golden files.
//!
//! kflow guarantees which rows it writes, not in which order (windows fire
//! per partition, sources interleave), and its floating-point sums may be
//! added in a different order than the reference's. So rows are compared as
//! a multiset, and a number matches within [`RELATIVE_TOLERANCE`]. Integers
//! stay exact: where the golden file has an integer (`"count": 3`), kflow
//! must write an integer too, because the contract says counts are integers.

use std::fmt;

use serde_json::{Map, Number, Value};

/// How far apart two numbers may be, relative to the larger one.
pub const RELATIVE_TOLERANCE: f64 = 1e-9;

/// Which kind of rows a JSON-lines output holds: it decides what is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowKind {
    /// Window results and records (late records, records a filter passed):
    /// every field is compared.
    Rows,
    /// A source's `.errors` output or the dead-letter file: rows are
    /// compared on `source`, `position` and `record` only; `reason` is
    /// free text but must be a non-empty string.
    Errors,
}

/// The fields of an error row that are compared.
const ERROR_ROW_FIELDS: [&str; 3] = ["source", "position", "record"];

/// Why an actual output does not match its golden file.
#[derive(Debug, Default)]
pub struct Mismatch {
    /// Expected rows kflow did not write (each as many times as it is short).
    pub missing: Vec<Value>,
    /// Rows kflow wrote that were not expected.
    pub unexpected: Vec<Value>,
    /// Lines that are not valid rows at all (not JSON, an error row without
    /// a reason, ...), with their line number.
    pub invalid: Vec<String>,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} missing, {} unexpected, {} invalid",
            self.missing.len(),
            self.unexpected.len(),
            self.invalid.len()
        )?;
        for (title, rows) in [("missing", &self.missing), ("unexpected", &self.unexpected)] {
            if !rows.is_empty() {
                write!(f, "\n  {title} rows:")?;
                if rows.len() > 20 {
                    write!(f, " (first 20 of {})", rows.len())?;
                }
                for row in rows.iter().take(20) {
                    write!(f, "\n    {}", canonical(row))?;
                }
            }
        }
        if !self.invalid.is_empty() {
            write!(f, "\n  invalid lines:")?;
            for line in &self.invalid {
                write!(f, "\n    {line}")?;
            }
        }
        Ok(())
    }
}

/// Compares an actual JSON-lines text with the expected one, as multisets of
/// rows (see the module docs for the rules).
///
/// # Errors
///
/// A [`Mismatch`] listing the missing, unexpected and invalid rows.
pub fn compare_jsonl(expected: &str, actual: &str, kind: RowKind) -> Result<(), Mismatch> {
    let mut mismatch = Mismatch::default();
    let expected_rows = parse_rows(expected, kind, "expected", &mut mismatch.invalid);
    let actual_rows = parse_rows(actual, kind, "actual", &mut mismatch.invalid);

    // Rows that are exactly equal pair up through a map (linear time, so
    // crash tests can compare hundreds of thousands of rows); only the rest
    // are matched pairwise within the numeric tolerance.
    let mut exact: std::collections::HashMap<String, Vec<usize>> = std::collections::HashMap::new();
    for (i, row) in actual_rows.iter().enumerate() {
        exact.entry(canonical(row)).or_default().push(i);
    }
    let mut unmatched: Vec<Option<Value>> = actual_rows.into_iter().map(Some).collect();
    let mut left = Vec::new();
    for row in expected_rows {
        match exact.get_mut(&canonical(&row)).and_then(Vec::pop) {
            Some(i) => unmatched[i] = None,
            None => left.push(row),
        }
    }
    let mut unmatched: Vec<Option<Value>> = unmatched.into_iter().filter(Option::is_some).collect();
    // Pairwise matching is quadratic: past a few thousand leftovers the
    // outputs are plainly different, and listing them is enough.
    if left.len().saturating_mul(unmatched.len()) > 10_000_000 {
        mismatch.missing = left;
        mismatch.unexpected = unmatched.into_iter().flatten().collect();
        return Err(mismatch);
    }
    for row in left {
        let found = unmatched
            .iter_mut()
            .find(|candidate| candidate.as_ref().is_some_and(|c| values_match(&row, c)));
        match found {
            Some(slot) => *slot = None,
            None => mismatch.missing.push(row),
        }
    }
    mismatch.unexpected = unmatched.into_iter().flatten().collect();

    if mismatch.missing.is_empty() && mismatch.unexpected.is_empty() && mismatch.invalid.is_empty()
    {
        Ok(())
    } else {
        Err(mismatch)
    }
}

/// Parses and normalises the rows of a JSON-lines text, sorted canonically
/// so that a greedy match pairs rows that are equal up to tolerance.
fn parse_rows(text: &str, kind: RowKind, label: &str, invalid: &mut Vec<String>) -> Vec<Value> {
    let mut rows = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        match serde_json::from_str::<Value>(line) {
            Ok(row) => match normalise(row, kind) {
                Ok(row) => rows.push(row),
                Err(problem) => invalid.push(format!("{label} line {number}: {problem}: {line}")),
            },
            Err(error) => {
                invalid.push(format!("{label} line {number}: not JSON ({error}): {line}"))
            }
        }
    }
    rows.sort_by_cached_key(canonical);
    rows
}

/// Reduces an error row to the fields that are compared, after checking
/// that it gives a reason.
fn normalise(row: Value, kind: RowKind) -> Result<Value, String> {
    match kind {
        RowKind::Rows => Ok(row),
        RowKind::Errors => {
            let Value::Object(mut fields) = row else {
                return Err("an error row must be a JSON object".to_string());
            };
            match fields.get("reason") {
                Some(Value::String(reason)) if !reason.trim().is_empty() => {}
                _ => return Err("an error row needs a non-empty string `reason`".to_string()),
            }
            let kept: Map<String, Value> = ERROR_ROW_FIELDS
                .iter()
                .filter_map(|name| fields.remove(*name).map(|value| (name.to_string(), value)))
                .collect();
            Ok(Value::Object(kept))
        }
    }
}

/// Whether an actual value matches an expected one: same structure, numbers
/// within tolerance, integers exact.
fn values_match(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Number(e), Value::Number(a)) => numbers_match(e, a),
        (Value::Array(e), Value::Array(a)) => {
            e.len() == a.len() && e.iter().zip(a).all(|(e, a)| values_match(e, a))
        }
        (Value::Object(e), Value::Object(a)) => {
            e.len() == a.len()
                && e.iter()
                    .all(|(key, e)| a.get(key).is_some_and(|a| values_match(e, a)))
        }
        _ => expected == actual,
    }
}

fn numbers_match(expected: &Number, actual: &Number) -> bool {
    if is_integer(expected) {
        // `3` must not come out as `3.0` (or `3.0000000001`).
        return is_integer(actual) && expected == actual;
    }
    match (expected.as_f64(), actual.as_f64()) {
        (Some(e), Some(a)) => e == a || (e - a).abs() <= RELATIVE_TOLERANCE * e.abs().max(a.abs()),
        _ => false,
    }
}

fn is_integer(number: &Number) -> bool {
    number.is_i64() || number.is_u64()
}

/// A deterministic text for a value: object keys sorted, whatever map type
/// serde_json was built with. Used to sort rows and to print them.
fn canonical(value: &Value) -> String {
    match value {
        Value::Object(fields) => {
            let mut entries: Vec<(&String, &Value)> = fields.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let inner: Vec<String> = entries
                .into_iter()
                .map(|(key, value)| format!("{}:{}", Value::String(key.clone()), canonical(value)))
                .collect();
            format!("{{{}}}", inner.join(","))
        }
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(canonical).collect();
            format!("[{}]", inner.join(","))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(result: Result<(), Mismatch>) -> (usize, usize, usize) {
        match result {
            Ok(()) => (0, 0, 0),
            Err(m) => (m.missing.len(), m.unexpected.len(), m.invalid.len()),
        }
    }

    #[test]
    fn order_and_key_order_do_not_matter() {
        let expected = "{\"a\":1,\"b\":\"x\"}\n{\"a\":2,\"b\":\"y\"}\n";
        let actual = "{\"b\":\"y\",\"a\":2}\n{\"b\":\"x\",\"a\":1}\n";
        assert_eq!(
            rows(compare_jsonl(expected, actual, RowKind::Rows)),
            (0, 0, 0)
        );
    }

    #[test]
    fn rows_are_a_multiset() {
        let expected = "{\"a\":1}\n{\"a\":1}\n";
        assert_eq!(
            rows(compare_jsonl(expected, "{\"a\":1}\n", RowKind::Rows)),
            (1, 0, 0)
        );
        let actual = "{\"a\":1}\n{\"a\":1}\n{\"a\":1}\n";
        assert_eq!(
            rows(compare_jsonl(expected, actual, RowKind::Rows)),
            (0, 1, 0)
        );
    }

    #[test]
    fn floats_match_within_tolerance_only() {
        let expected = "{\"avg\":6.666666666666667}\n";
        let close = "{\"avg\":6.666666666666666}\n";
        let far = "{\"avg\":6.6666}\n";
        assert_eq!(
            rows(compare_jsonl(expected, close, RowKind::Rows)),
            (0, 0, 0)
        );
        assert_eq!(rows(compare_jsonl(expected, far, RowKind::Rows)), (1, 1, 0));
        // A float in the golden file accepts an integer-looking number.
        assert_eq!(
            rows(compare_jsonl(
                "{\"sum\":20.0}",
                "{\"sum\":20}",
                RowKind::Rows
            )),
            (0, 0, 0)
        );
    }

    #[test]
    fn integers_must_stay_integers() {
        assert_eq!(
            rows(compare_jsonl(
                "{\"count\":3}",
                "{\"count\":3.0}",
                RowKind::Rows
            )),
            (1, 1, 0)
        );
        assert_eq!(
            rows(compare_jsonl(
                "{\"count\":3}",
                "{\"count\":4}",
                RowKind::Rows
            )),
            (1, 1, 0)
        );
    }

    #[test]
    fn null_and_missing_fields_differ() {
        let expected = "{\"sum\":null}\n";
        assert_eq!(
            rows(compare_jsonl(expected, "{}\n", RowKind::Rows)),
            (1, 1, 0)
        );
        assert_eq!(
            rows(compare_jsonl(expected, "{\"sum\":0}\n", RowKind::Rows)),
            (1, 1, 0)
        );
        let extra = "{\"sum\":null,\"extra\":1}\n";
        assert_eq!(
            rows(compare_jsonl(expected, extra, RowKind::Rows)),
            (1, 1, 0)
        );
    }

    #[test]
    fn invalid_lines_are_reported() {
        assert_eq!(
            rows(compare_jsonl("{\"a\":1}\n", "{\"a\":1\n", RowKind::Rows)),
            (1, 0, 1)
        );
        assert_eq!(rows(compare_jsonl("", "\n", RowKind::Rows)), (0, 0, 1));
    }

    #[test]
    fn error_rows_compare_without_their_reason() {
        let expected = r#"{"source":"s","reason":"bad json","position":{"file":"in.jsonl","line":2},"record":"x"}"#;
        let same = r#"{"source":"s","reason":"expected value at line 1","position":{"file":"in.jsonl","line":2},"record":"x"}"#;
        let other_line = r#"{"source":"s","reason":"bad json","position":{"file":"in.jsonl","line":3},"record":"x"}"#;
        let no_reason =
            r#"{"source":"s","reason":"","position":{"file":"in.jsonl","line":2},"record":"x"}"#;
        assert_eq!(
            rows(compare_jsonl(expected, same, RowKind::Errors)),
            (0, 0, 0)
        );
        assert_eq!(
            rows(compare_jsonl(expected, other_line, RowKind::Errors)),
            (1, 1, 0)
        );
        assert_eq!(
            rows(compare_jsonl(expected, no_reason, RowKind::Errors)),
            (1, 0, 1)
        );
        // As plain rows, the reason counts.
        assert_eq!(
            rows(compare_jsonl(expected, same, RowKind::Rows)),
            (1, 1, 0)
        );
    }

    #[test]
    fn mismatch_message_lists_rows() {
        let Err(mismatch) = compare_jsonl("{\"a\":1}\n", "{\"a\":2}\n", RowKind::Rows) else {
            panic!("different rows compared equal");
        };
        let text = mismatch.to_string();
        assert!(text.contains("missing rows:\n    {\"a\":1}"), "{text}");
        assert!(text.contains("unexpected rows:\n    {\"a\":2}"), "{text}");
    }
}
