//! UI tests: each `tests/ui/<case>.toml` is a job file with errors, and
//! `tests/ui/<case>.stderr` the exact text `JobError::render` must produce
//! for it. The expected text is the contract users see: review every
//! change to it. `KFLOW_BLESS=1 cargo test -p kflow-jobs --test ui`
//! rewrites the `.stderr` files from the current output.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

#[test]
fn ui_cases_render_exactly_as_expected() {
    let dir = Path::new("tests/ui");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("tests/ui exists (cargo test runs in the crate folder)")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "toml"))
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 20,
        "expected the UI cases in {}",
        dir.display()
    );

    let bless = std::env::var("KFLOW_BLESS").is_ok_and(|v| v == "1");
    let mut failures = Vec::new();
    for case in &cases {
        let actual = match kflow_jobs::load(case) {
            Ok(_) => "(no errors)\n".to_string(),
            Err(error) => error.render(),
        };
        let expected_path = case.with_extension("stderr");
        if bless {
            std::fs::write(&expected_path, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if actual != expected {
            failures.push(format!(
                "{} (- expected, + actual):\n{}",
                case.display(),
                diff(&expected, &actual)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} UI case(s) differ; if the new text is right, rerun with KFLOW_BLESS=1 and review the diff\n\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A line diff (longest common subsequence), enough for small files.
fn diff(expected: &str, actual: &str) -> String {
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = String::new();
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push_str(&format!("  {}\n", a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push_str(&format!("- {}\n", a[i]));
            i += 1;
        } else {
            out.push_str(&format!("+ {}\n", b[j]));
            j += 1;
        }
    }
    out
}
