//! `kflow test` (issue 20): the shipped examples' tests pass at any
//! parallelism, a failing case prints a readable diff and exits 1, bad
//! test files are reported with their places and exit 2, and a test never
//! touches the job's own outputs or state.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use kflow_tests::job::JobDir;
use kflow_tests::process::{kflow_bin, run_with_timeout, RunOutput};

fn kflow_test(dir: &Path, args: &[&str]) -> RunOutput {
    let mut command = std::process::Command::new(kflow_bin());
    command.current_dir(dir).arg("test").args(args);
    run_with_timeout(command, kflow_tests::job::TIMEOUT).unwrap()
}

/// A copy of `jobs/examples` (jobs, their tests, `data/`) in a scratch
/// folder, so what a test run leaves beside the jobs can be checked.
fn examples() -> JobDir {
    JobDir::copy_of(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../jobs/examples"),
        |name| !name.starts_with('.') && name != "out",
    )
}

#[test]
fn issue_20_every_example_passes_its_tests_at_any_parallelism() {
    let copy = examples();
    let examples = copy.path();
    let mut jobs: Vec<String> = std::fs::read_dir(examples)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml") && !n.ends_with(".test.toml"))
        .collect();
    jobs.sort();
    assert!(jobs.len() >= 5, "{jobs:?}");
    for job in &jobs {
        for parallelism in ["1", "4"] {
            let out = kflow_test(examples, &[job, "--parallelism", parallelism]);
            assert!(
                out.status.success(),
                "{job} at parallelism {parallelism}:\n{}{}",
                out.stdout,
                out.stderr
            );
            assert!(out.stdout.contains("test result: ok."), "{}", out.stdout);
            assert!(!out.stdout.contains("0 passed"), "{}", out.stdout);
        }
    }
    // The tests ran in scratch folders: no state or output beside the jobs.
    assert!(!examples.join(".kflow").exists());
    assert!(!examples.join("out").exists());
}

/// A job with dedup, a window over a window, a file sink and state of its
/// own.
const JOB: &str = r#"
[job]
name = "t"

[sources.clicks]
type = "file"
path = "clicks.jsonl"
event_time = { field = "ts" }
watermark = { max_out_of_orderness = "5s" }
dedup = { field = "event_id", within = "10m" }

[windows.per_user]
input = "clicks"
key = ["user_id"]
tumbling = "1m"
aggregates = { events = "count()", revenue = "sum(amount)" }

[windows.per_hour]
input = "per_user"
tumbling = "1h"
aggregates = { users = "count()", top = "max(revenue)" }

[sinks.result]
input = "per_user"
type = "file"
path = "out/result.jsonl"
"#;

const CASES: &str = r#"
[[case]]
name = "a retried event counts once"
[case.input]
clicks = [
  { event_id = "e1", user_id = "u1", amount = 5.0, ts = "2026-11-25T10:00:01Z" },
  { event_id = "e1", user_id = "u1", amount = 5.0, ts = "2026-11-25T10:00:01Z" },
  { event_id = "e2", user_id = "u1", amount = 7.0, ts = "2026-11-25T10:00:02Z" },
  { event_id = "e3", user_id = "u2", amount = 1.0, ts = "2026-11-25T10:00:03Z" },
]
[case.expect.result]
rows = [
  { window_start = "2026-11-25T10:00:00Z", window_end = "2026-11-25T10:01:00Z", user_id = "u1", events = 2, revenue = 12 },
  { window_start = "2026-11-25T10:00:00Z", window_end = "2026-11-25T10:01:00Z", user_id = "u2", events = 1, revenue = 1 },
]
[case.expect.per_hour]
rows = [ { window_start = "2026-11-25T10:00:00Z", window_end = "2026-11-25T11:00:00Z", users = 2, top = 12 } ]

[[case]]
name = "a retry after a restart still counts once, a late record after an advance goes to .late"
[[case.step]]
input.clicks = [
  { event_id = "e1", user_id = "u1", amount = 5.0, ts = "2026-11-25T10:00:01Z" },
  { event_id = "e2", user_id = "u1", amount = 7.0, ts = "2026-11-25T10:00:02Z" },
]
[[case.step]]
restart = true
[[case.step]]
input.clicks = [ { event_id = "e1", user_id = "u1", amount = 5.0, ts = "2026-11-25T10:00:01Z" } ]
[[case.step]]
restart = true
[[case.step]]
advance.clicks = "2026-11-25T10:01:00Z"
[[case.step]]
input.clicks = [
  { event_id = "e3", user_id = "u2", amount = 1.0, ts = "2026-11-25T10:00:30Z" },
  { event_id = "e4", user_id = "u2", amount = 2.0, ts = "2026-11-25T10:01:30Z" },
]
[case.expect.result]
rows = [
  { window_start = "2026-11-25T10:00:00Z", window_end = "2026-11-25T10:01:00Z", user_id = "u1", events = 2, revenue = 12 },
  { window_start = "2026-11-25T10:01:00Z", window_end = "2026-11-25T10:02:00Z", user_id = "u2", events = 1, revenue = 2 },
]
[case.expect."per_user.late"]
rows = [ { event_id = "e3", user_id = "u2", amount = 1.0, ts = "2026-11-25T10:00:30Z" } ]

[[case]]
name = "a wrong expectation"
[case.input]
clicks = [ { event_id = "e1", user_id = "u1", amount = 5.0, ts = "2026-11-25T10:00:01Z" } ]
[case.expect.result]
rows = [ { window_start = "2026-11-25T10:00:00Z", window_end = "2026-11-25T10:01:00Z", user_id = "u1", events = 1, revenue = 6 } ]
[case.expect.clicks]
contains = [ { event_id = "e9" } ]
"#;

#[test]
fn issue_20_a_failing_case_shows_a_diff_and_exits_1_and_nothing_of_the_job_is_touched() {
    let dir = JobDir::new(JOB);
    dir.write("job.test.toml", CASES);
    let out = kflow_test(dir.path(), &["job.toml"]);
    assert_eq!(out.status.code(), Some(1), "{}{}", out.stdout, out.stderr);
    let stdout = &out.stdout;
    assert!(
        stdout.contains("a retried event counts once ... ok"),
        "{stdout}"
    );
    assert!(
        stdout.contains("a wrong expectation ... FAILED"),
        "{stdout}"
    );
    assert!(stdout.contains("revenue: expected 6, got 5"), "{stdout}");
    assert!(
        stdout.contains("clicks: no row matches {\"event_id\":\"e9\"}"),
        "{stdout}"
    );
    assert!(
        stdout.contains("test result: FAILED. 2 passed; 1 failed"),
        "{stdout}"
    );
    assert!(
        !dir.path().join("out").exists(),
        "the job's sink was written"
    );
    assert!(
        !dir.path().join(".kflow").exists(),
        "the job's state was written"
    );
    // The same cases named explicitly; a missing test file is exit 2.
    let out = kflow_test(dir.path(), &["job.toml", "job.test.toml"]);
    assert_eq!(out.status.code(), Some(1), "{}{}", out.stdout, out.stderr);
    std::fs::remove_file(dir.path().join("job.test.toml")).unwrap();
    let out = kflow_test(dir.path(), &["job.toml"]);
    assert_eq!(out.status.code(), Some(2), "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("no test files"), "{}", out.stderr);
}

#[test]
fn issue_20_a_bad_test_file_reports_every_error_with_its_place() {
    let dir = JobDir::new(JOB);
    dir.write(
        "job.test.toml",
        r#"[[case]]
name = "one"
[case.input]
taps = [ { a = 1 } ]
clicks = [ 42 ]
[case.expect.nowhere]
rows = []
[case.expect.result]

[[case]]
name = "one"
"#,
    );
    let out = kflow_test(dir.path(), &["job.toml"]);
    assert_eq!(out.status.code(), Some(2), "{}{}", out.stdout, out.stderr);
    let expected = [
        "job.test.toml:4:1: the job has no source `taps`",
        "job.test.toml:5:10: a record is an inline table or a string holding one raw line",
        "job.test.toml:6:14: the job has no output `nowhere`",
        "job.test.toml:8:1: an expectation needs `rows`, `contains` or `absent`",
        "job.test.toml:11:8: a second case named `one`",
    ];
    for line in expected {
        assert!(
            out.stderr.contains(line),
            "missing {line:?} in:\n{}",
            out.stderr
        );
    }
    dir.write("job.test.toml", "[[case]]\nname = \"x\"\nbogus = 1\n");
    let out = kflow_test(dir.path(), &["job.toml"]);
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("job.test.toml:3:1: unknown field `bogus`"),
        "{}",
        out.stderr
    );
    dir.write(
        "job.test.toml",
        "[[case]]\nname = \"x\"\n[[case.step]]\nrestart = true\nadvance = \"2026-11-25T10:00:00Z\"\n\
         [[case.step]]\nadvance = \"yesterday\"\n[[case.step]]\nidle = 30\n\
         [[case.step]]\nidle.nowhere = \"30s\"\n[case.expect.result]\nrows = []\n",
    );
    let out = kflow_test(dir.path(), &["job.toml"]);
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    for line in [
        "job.test.toml:3:1: a step is one of `input`, `advance`, `idle` or `restart = true`",
        "job.test.toml:6:1: `advance` takes an RFC 3339 time, or a table of them by source",
        "job.test.toml:8:1: `idle` takes a duration such as \"30s\", or a table of them by source",
        "job.test.toml:10:1: the job has no source `nowhere`",
    ] {
        assert!(
            out.stderr.contains(line),
            "missing {line:?} in:\n{}",
            out.stderr
        );
    }
}
