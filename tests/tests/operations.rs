//! Running kflow as a service (issue 14): SIGTERM stops a run gracefully,
//! with a final checkpoint after which the sources read nothing, so a
//! restart reads no record twice and even the at-least-once stdout sink
//! repeats no row, over a bounded file and over a followed one, also when
//! the signal lands while a checkpoint is being written, and over a dedup
//! source decoded by a pool of threads (issue 18). A second signal exits
//! at once, as a crash would, and the exactly-once file sinks stay exact.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::fs::File;
use std::time::Duration;

use kflow_benches::jobs::{ClickJob, ClickSource};
use kflow_benches::workload::Workload;
use kflow_tests::compare::{compare_jsonl, RowKind};
use kflow_tests::job::{records_read, JobDir, TIMEOUT};
use kflow_tests::process::Watched;

const EVENTS: u64 = 300_000;

/// The clickstream job with its rows on stdout as well as in a file.
fn job() -> String {
    let mut job = ClickJob::new(
        "ops",
        ClickSource::File {
            path: "clicks.jsonl".into(),
        },
    );
    job.checkpoint_interval = Some("200ms".into());
    job.toml() + "\n[sinks.screen]\ninput = \"per_user\"\ntype = \"stdout\"\n"
}

fn inputs() -> [(&'static str, Workload); 1] {
    let workload = Workload {
        events: EVENTS,
        users: 2_000,
        seed: 14,
        ..Workload::default()
    };
    [("clicks.jsonl", workload)]
}

fn assert_same_rows(expected: &str, actual: &str, what: &str) {
    if let Err(mismatch) = compare_jsonl(expected, actual, RowKind::Rows) {
        panic!("{what} differs from one uninterrupted run:\n{mismatch}");
    }
    let mut seen = HashSet::new();
    for line in actual.lines() {
        assert!(seen.insert(line), "{what}: row written twice: {line}");
    }
}

/// Starts `kflow run job.toml ARGS` in `dir`, its stdout to `stdout`, and
/// waits until it has written rows (it is well into the input).
fn start(dir: &JobDir, stdout: &str, args: &[&str]) -> Watched {
    let out = File::create(dir.path().join(stdout)).unwrap();
    let mut command = dir.loud_job_command();
    command.args(args);
    let run = Watched::spawn_to(&mut command, out.into());
    dir.wait_for_lines(stdout, 200, TIMEOUT);
    run
}

/// Stops `job` (run with `args`) by SIGTERM partway, restarts it, and
/// checks that the two runs read every record once and wrote the rows of
/// one uninterrupted run, on stdout too.
fn stop_and_restart(job: &str, inputs: &[(&str, Workload)], args: &[&str]) {
    let reference = JobDir::with_workloads(job, inputs);
    let uninterrupted = reference.run(&["run", "job.toml"], &[]);
    assert!(uninterrupted.status.success(), "{}", uninterrupted.stderr);
    let lines = records_read(&uninterrupted.stderr);

    // A run may finish before the signal on a fast machine: try again.
    for attempt in 1..=3 {
        let dir = JobDir::with_workloads(job, inputs);
        let run = start(&dir, "first.jsonl", args);
        run.terminate();
        let (status, log) = run.wait(Duration::from_secs(30)).unwrap();
        assert!(status.success(), "a graceful stop exits 0: {status}\n{log}");
        if !log.contains("stopped gracefully at checkpoint") {
            assert!(log.contains("finished in"), "{log}");
            println!("attempt {attempt}: the run finished before the signal");
            continue;
        }
        let first_read = records_read(&log);
        assert!(first_read < lines, "{log}");

        let mut again = vec!["run", "job.toml"];
        again.extend_from_slice(args);
        let second = dir.run(&again, &[]);
        assert!(second.status.success(), "{}", second.stderr);
        // Nothing read twice, nothing skipped.
        assert_eq!(first_read + records_read(&second.stderr), lines);
        let stdout = dir.read("first.jsonl") + &second.stdout;
        assert_same_rows(&uninterrupted.stdout, &stdout, "stdout of both runs");
        assert_same_rows(
            &reference.read("out/result.jsonl"),
            &dir.read("out/result.jsonl"),
            "the file sink",
        );
        return;
    }
    panic!("every run finished before its SIGTERM");
}

#[test]
fn issue_14_sigterm_takes_a_final_checkpoint_and_a_restart_repeats_nothing() {
    stop_and_restart(&job(), &inputs(), &[]);
}

#[test]
fn issue_18_sigterm_stops_decoders_checking_dedup_ids_ahead() {
    // Decoders wait for the source thread's verdicts on their blocks' ids
    // when the stop's barrier goes out: they must be let go, and the ids
    // checked ahead of the barrier must not count as seen after the
    // restart.
    let job = job().replacen(
        "event_time = { field = \"ts\" }",
        "event_time = { field = \"ts\" }\ndedup = { field = \"event_id\", within = \"10m\" }",
        1,
    );
    assert!(job.contains("dedup"), "{job}");
    let [(name, workload)] = inputs();
    let retried = Workload {
        duplicate_rate: 0.05,
        ..workload
    };
    stop_and_restart(&job, &[(name, retried)], &["--decode-threads", "3"]);
}

#[test]
fn issue_14_a_second_sigterm_exits_at_once_and_file_output_stays_exact() {
    let reference = JobDir::with_workloads(&job(), &inputs());
    reference.run_job_ok(&[]);
    let dir = JobDir::with_workloads(&job(), &inputs());
    let mut run = start(&dir, "first.jsonl", &[]);
    run.terminate();
    // The first signal is taken: the final checkpoint is on its way...
    run.wait_for("stopping: taking a final checkpoint", 1, TIMEOUT);
    // ...and a second one ends the process at once with status 1 (or, if
    // the process had already written it and exited, that run ended 0).
    run.terminate();
    let (status, log) = run.wait(Duration::from_secs(30)).unwrap();
    let stopped = log.contains("stopped gracefully at checkpoint");
    assert!(
        status.code() == Some(1) || (stopped && status.success()),
        "a second signal exits 1: {status}\n{log}"
    );
    dir.run_job_ok(&[]);
    assert_same_rows(
        &reference.read("out/result.jsonl"),
        &dir.read("out/result.jsonl"),
        "the file sink",
    );
}

/// Epoch-free milliseconds of a `YYYY-MM-DDTHH:MM:SS[.mmm]Z` time of the
/// workload's day (the date is checked, not counted).
fn day_ms(time: &str) -> i64 {
    assert!(time.starts_with("2026-11-25T"), "{time}");
    let field = |range: std::ops::Range<usize>| time[range].parse::<i64>().unwrap();
    let millis = if time.len() > 21 { field(20..23) } else { 0 };
    ((field(11..13) * 60 + field(14..16)) * 60 + field(17..19)) * 1000 + millis
}

/// The followed variant of [`job`], and the rows it writes until stopped
/// after reading the whole input: a followed file never ends, so windows
/// fire only up to the watermark, the largest event time less the 5 s of
/// allowed disorder.
fn followed() -> (String, String) {
    let followed = job().replace("event_time", "follow = true\nevent_time");
    let reference = JobDir::with_workloads(&job(), &inputs());
    let all_rows = reference.run_job_ok(&[]).stdout;
    let input = reference.read("clicks.jsonl");
    let watermark = input
        .lines()
        .map(|l| {
            let row: serde_json::Value = serde_json::from_str(l).unwrap();
            day_ms(row["ts"].as_str().unwrap())
        })
        .max()
        .unwrap()
        - 5_000;
    let expected: String = all_rows
        .lines()
        .filter(|l| {
            let row: serde_json::Value = serde_json::from_str(l).unwrap();
            day_ms(row["window_end"].as_str().unwrap()) <= watermark
        })
        .map(|l| format!("{l}\n"))
        .collect();
    (followed, expected)
}

/// Restarts the followed job in `dir`, lets it read the file to its end,
/// stops it with SIGTERM and checks that the two runs read every record
/// once and wrote `expected` once, on stdout and in the file sink.
fn finish_followed(dir: &JobDir, first_read: u64, expected: &str) {
    let out = File::create(dir.path().join("second.jsonl")).unwrap();
    let mut command = dir.loud_job_command();
    let mut run = Watched::spawn_to(command.env("KFLOW_LOG", "kflow=debug"), out.into());
    run.wait_for("at the end of clicks.jsonl", 1, TIMEOUT);
    run.terminate();
    let (status, log) = run.wait(Duration::from_secs(30)).unwrap();
    assert!(status.success(), "a graceful stop exits 0: {status}\n{log}");
    assert!(log.contains("stopped gracefully at checkpoint"), "{log}");
    assert_eq!(first_read + records_read(&log), EVENTS, "{log}");
    let stdout = dir.read("first.jsonl") + &dir.read("second.jsonl");
    assert_same_rows(expected, &stdout, "stdout of both runs");
    assert_same_rows(expected, &dir.read("out/result.jsonl"), "the file sink");
}

#[test]
fn issue_14_sigterm_on_a_followed_file_and_the_restart_repeat_nothing() {
    let (followed, expected) = followed();
    let dir = JobDir::with_workloads(&followed, &inputs());
    let run = start(&dir, "first.jsonl", &[]);
    run.terminate();
    let (status, log) = run.wait(Duration::from_secs(30)).unwrap();
    assert!(status.success(), "a graceful stop exits 0: {status}\n{log}");
    finish_followed(&dir, records_read(&log), &expected);
}

#[test]
fn issue_14_sigterm_while_a_checkpoint_is_written_still_stops_exactly() {
    let (followed, expected) = followed();
    let dir = JobDir::with_workloads(&followed, &inputs());
    let out = File::create(dir.path().join("first.jsonl")).unwrap();
    // Every checkpoint write takes 1.5 s more: the signal lands in one.
    let mut command = dir.loud_job_command();
    command.env("KFLOW_SLOW_CHECKPOINT_MS", "1500");
    let mut run = Watched::spawn_to(&mut command, out.into());
    run.wait_for("writing checkpoint", 1, TIMEOUT);
    run.terminate();
    let (status, log) = run.wait(Duration::from_secs(30)).unwrap();
    assert!(status.success(), "a graceful stop exits 0: {status}\n{log}");
    assert!(log.contains("stopped gracefully at checkpoint"), "{log}");
    // The write under way completed, then the final checkpoint followed.
    assert!(log.matches("writing checkpoint").count() >= 2, "{log}");
    finish_followed(&dir, records_read(&log), &expected);
}

#[test]
fn issue_14_json_logs_are_one_object_per_event() {
    let workload = Workload {
        events: 2_000,
        users: 50,
        seed: 3,
        ..Workload::default()
    };
    let dir = JobDir::with_workloads(&job(), &[("clicks.jsonl", workload)]);
    let out = dir.run(&["run", "job.toml"], &[("KFLOW_LOG_FORMAT", "json")]);
    assert!(out.status.success(), "{}", out.stderr);
    let events: Vec<serde_json::Value> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let start = events
        .iter()
        .find(|e| e["fields"]["message"] == "starting from empty state (no checkpoint)")
        .unwrap_or_else(|| panic!("no start event in:\n{}", out.stderr));
    assert_eq!(start["level"], "INFO");
    assert!(start["timestamp"].is_string());
}
