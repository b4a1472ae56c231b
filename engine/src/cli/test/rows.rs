//! Comparing the rows an output held with a case's expectations, and the
//! readable diff printed when they differ.
//!
//! Rows are JSON objects; numbers compare by value (`10` equals `10.0`),
//! within a relative [`RELATIVE_TOLERANCE`] (kflow writes 15 significant
//! digits, so an average of 20/3 is `6.66666666666667`, which must match a
//! `6.666666666666667` computed elsewhere).
//! Exact rows match as a multiset; `contains` and `absent` rows match any
//! output row that has the fields they name with those values.

use std::fmt::Write as _;

use kflow_jobs::testfile::{Expect, Object};
use serde_json::Value;

use crate::sources::time::parse_rfc3339;

/// How far apart two numbers may be, relative to the larger one.
pub const RELATIVE_TOLERANCE: f64 = 1e-12;

/// Whether two JSON values are equal: numbers by value (within
/// [`RELATIVE_TOLERANCE`]), RFC 3339 times by instant (`10:00:00Z` equals
/// `10:00:00.000Z` and `11:00:00+01:00`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => {
                x == y || (x - y).abs() <= RELATIVE_TOLERANCE * x.abs().max(y.abs())
            }
            _ => false,
        },
        (Value::String(x), Value::String(y)) if x != y => {
            match (parse_rfc3339(x), parse_rfc3339(y)) {
                (Some(x), Some(y)) => x == y,
                _ => false,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// How many of an output's rows a failed `contains` shows.
const HELD_SHOWN: usize = 10;

/// Whether `row` has every field of `pattern`, with the same value.
fn matches(pattern: &Object, row: &Object) -> bool {
    pattern
        .iter()
        .all(|(k, v)| row.get(k).is_some_and(|w| same(v, w)))
}

fn exact(expected: &Object, row: &Object) -> bool {
    expected.len() == row.len() && matches(expected, row)
}

fn text(row: &Object) -> String {
    serde_json::to_string(row).unwrap_or_default()
}

/// The fields in which `got` differs from `want` (missing, extra or other
/// values), for a diff line.
fn field_diff(want: &Object, got: &Object) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in want {
        match got.get(k) {
            None => out.push(format!("{k}: expected {v}, missing")),
            Some(w) if !same(v, w) => out.push(format!("{k}: expected {v}, got {w}")),
            Some(_) => {}
        }
    }
    for (k, w) in got {
        if !want.contains_key(k) {
            out.push(format!("{k}: not expected, got {w}"));
        }
    }
    out
}

/// Pairs rows `matcher` says are equal, each output row used once; returns
/// the expected rows left unmatched and the output rows left unused.
fn pair<'a>(
    expected: &'a [Object],
    actual: &'a [Object],
    matcher: fn(&Object, &Object) -> bool,
) -> (Vec<&'a Object>, Vec<&'a Object>) {
    let mut used = vec![false; actual.len()];
    let mut missing = Vec::new();
    for want in expected {
        let found = (0..actual.len()).find(|&i| !used[i] && matcher(want, &actual[i]));
        match found {
            Some(i) => used[i] = true,
            None => missing.push(want),
        }
    }
    let unused = actual
        .iter()
        .zip(&used)
        .filter(|(_, u)| !**u)
        .map(|(row, _)| row)
        .collect();
    (missing, unused)
}

/// Checks `actual` against `expect`; `None` when it holds, else the diff
/// to print (lines indented by two spaces).
pub fn check(expect: &Expect, actual: &[Object]) -> Option<String> {
    let mut out = String::new();
    if let Some(rows) = &expect.rows {
        let (missing, unexpected) = pair(rows, actual, exact);
        if !missing.is_empty() || !unexpected.is_empty() {
            let _ = writeln!(
                out,
                "  {}: {} row(s) expected, {} held; {} missing, {} unexpected",
                expect.output,
                rows.len(),
                actual.len(),
                missing.len(),
                unexpected.len()
            );
            let mut left: Vec<&Object> = unexpected.clone();
            for want in &missing {
                let _ = writeln!(out, "    missing:    {}", text(want));
                // The unexpected row sharing the most values is most likely
                // the same row with other values: show how it differs.
                let closest = left
                    .iter()
                    .enumerate()
                    .map(|(i, got)| {
                        let shared = want
                            .iter()
                            .filter(|(k, v)| got.get(*k).is_some_and(|w| same(v, w)))
                            .count();
                        (shared, i)
                    })
                    .filter(|(shared, _)| *shared > 0)
                    .max_by_key(|(shared, i)| (*shared, std::cmp::Reverse(*i)));
                if let Some((_, i)) = closest {
                    let got = left.remove(i);
                    let _ = writeln!(out, "    got:        {}", text(got));
                    for line in field_diff(want, got) {
                        let _ = writeln!(out, "      {line}");
                    }
                }
            }
            for got in left {
                let _ = writeln!(out, "    unexpected: {}", text(got));
            }
        }
    }
    let (missing, _) = pair(&expect.contains, actual, matches);
    for want in &missing {
        let _ = writeln!(
            out,
            "  {}: no row matches {} ({} row(s) held)",
            expect.output,
            text(want),
            actual.len()
        );
    }
    if !missing.is_empty() {
        for got in actual.iter().take(HELD_SHOWN) {
            let _ = writeln!(out, "    held: {}", text(got));
        }
        if actual.len() > HELD_SHOWN {
            let _ = writeln!(out, "    held: ... {} more", actual.len() - HELD_SHOWN);
        }
    }
    for pattern in &expect.absent {
        for got in actual.iter().filter(|row| matches(pattern, row)) {
            let _ = writeln!(
                out,
                "  {}: a row matches absent {}: {}",
                expect.output,
                text(pattern),
                text(got)
            );
        }
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn obj(text: &str) -> Object {
        serde_json::from_str(text).unwrap()
    }

    fn expect(rows: Option<&[&str]>, contains: &[&str], absent: &[&str]) -> Expect {
        Expect {
            output: "out".into(),
            rows: rows.map(|r| r.iter().map(|t| obj(t)).collect()),
            contains: contains.iter().map(|t| obj(t)).collect(),
            absent: absent.iter().map(|t| obj(t)).collect(),
        }
    }

    #[test]
    fn exact_rows_match_as_a_multiset_with_numbers_by_value() {
        let actual = [obj(r#"{"k":"b","n":2}"#), obj(r#"{"k":"a","n":1.0}"#)];
        let e = expect(
            Some(&[r#"{"k":"a","n":1}"#, r#"{"k":"b","n":2.0}"#]),
            &[],
            &[],
        );
        assert_eq!(check(&e, &actual), None);
        // 15 written digits match the exact value; a real difference does not.
        let avg = [obj(r#"{"avg":6.66666666666667}"#)];
        let e = expect(Some(&[r#"{"avg":6.666666666666667}"#]), &[], &[]);
        assert_eq!(check(&e, &avg), None);
        let e = expect(Some(&[r#"{"avg":6.6666666667}"#]), &[], &[]);
        assert!(check(&e, &avg).is_some());
        // Times by instant.
        let at = [obj(r#"{"t":"2026-11-25T10:00:00Z"}"#)];
        let e = expect(
            Some(&[r#"{"t":"2026-11-25T11:00:00.000+01:00"}"#]),
            &[],
            &[],
        );
        assert_eq!(check(&e, &at), None);
        let e = expect(Some(&[r#"{"t":"2026-11-25T10:00:01Z"}"#]), &[], &[]);
        assert!(check(&e, &at).is_some());
        // A row twice is not the same as once.
        let e = expect(
            Some(&[r#"{"k":"a","n":1}"#, r#"{"k":"a","n":1}"#]),
            &[],
            &[],
        );
        let diff = check(&e, &actual[1..]).unwrap();
        assert!(diff.contains("1 missing, 0 unexpected"), "{diff}");
    }

    #[test]
    fn a_different_value_is_shown_field_by_field() {
        let actual = [obj(r#"{"k":"a","n":2,"x":true}"#)];
        let e = expect(Some(&[r#"{"k":"a","n":1}"#]), &[], &[]);
        let diff = check(&e, &actual).unwrap();
        assert!(diff.contains("missing:    {\"k\":\"a\",\"n\":1}"), "{diff}");
        assert!(diff.contains("n: expected 1, got 2"), "{diff}");
        assert!(diff.contains("x: not expected, got true"), "{diff}");
        assert!(!diff.contains("unexpected:"), "{diff}");
    }

    #[test]
    fn contains_and_absent_match_on_the_fields_they_name() {
        let actual = [obj(r#"{"k":"a","n":1}"#), obj(r#"{"k":"b","n":2}"#)];
        assert_eq!(
            check(&expect(None, &[r#"{"k":"b"}"#], &[r#"{"k":"c"}"#]), &actual),
            None
        );
        let diff = check(&expect(None, &[r#"{"k":"c"}"#], &[r#"{"n":2}"#]), &actual).unwrap();
        assert!(diff.contains("no row matches {\"k\":\"c\"}"), "{diff}");
        assert!(diff.contains("a row matches absent {\"n\":2}"), "{diff}");
    }
}
