//! Golden end-to-end cases: each runs `kflow run job.toml` on a copy of
//! `tests/golden/<case>/` and compares every output with the files the
//! independent reference (`tests/golden/reference.py`) computed. One test
//! per case, so a failure names its case; `every_case_folder_has_a_test`
//! keeps the list below and the folders in step.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kflow_tests::golden::{case_names, run_case, RunMode};

macro_rules! golden_cases {
    ($($case:ident),+ $(,)?) => {
        $(
            #[test]
            fn $case() {
                // One thread, then a pool decoding in blocks: the same rows.
                for mode in [RunMode::Straight, RunMode::DecodeThreads(3)] {
                    if let Err(report) = run_case(stringify!($case), mode) {
                        panic!("{mode:?}: {report}");
                    }
                }
            }
        )+

        /// Every case with a test above.
        const CASES: &[&str] = &[$(stringify!($case)),+];
    };
}

golden_cases!(
    tumbling_basic,
    sliding,
    filters,
    missing_fields,
    late_data,
    out_of_order,
    union,
    malformed,
    global_window,
    percentile_distinct,
    negative_time,
    window_of_window,
    moments_approx,
    picks,
    sessions,
    top_k,
    combined_rows,
);

#[test]
fn every_case_folder_has_a_test() {
    let mut listed: Vec<&str> = CASES.to_vec();
    listed.sort_unstable();
    assert_eq!(
        case_names(),
        listed,
        "tests/golden and the golden_cases! list in tests/tests/golden.rs differ"
    );
}

/// Issue 20: the golden cases in `kflow test`'s format too. Each case's
/// `golden.test.toml` feeds its input files and expects every sink to hold
/// the reference's expected file (`rows = { file = ... }`); `kflow test`
/// must pass them all. `malformed` has none: its expected dead letters
/// name the job's input file, where a test case names `SOURCE.jsonl`.
#[test]
fn every_case_but_malformed_passes_as_a_kflow_test_file() {
    let dir = kflow_tests::golden::golden_dir();
    let mut ran = Vec::new();
    for case in case_names() {
        let tests = dir.join(&case).join("golden.test.toml");
        if case == "malformed" {
            assert!(!tests.exists(), "{case} has a test file now: run it");
            continue;
        }
        let out = std::process::Command::new(kflow_tests::kflow_bin())
            .arg("test")
            .arg(dir.join(&case).join("job.toml"))
            .arg(&tests)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed; 0 failed"),
            "{case}:\n{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        ran.push(case);
    }
    assert_eq!(ran.len(), CASES.len() - 1);
}
