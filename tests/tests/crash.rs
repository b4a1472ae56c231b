//! Crash tests (issue 3): real `kflow` processes killed with SIGKILL at
//! random moments and restarted until they finish; the file sinks must then
//! hold exactly the rows of one uninterrupted run (same multiset, no row
//! twice). Also: aborts inside the checkpoint write and inside a sink write,
//! and state directories that are not kflow's (job changes between runs:
//! `changes.rs`).
//!
//! The kill schedule is drawn from a seeded RNG; the seed is printed and can
//! be fixed with `KFLOW_CRASH_SEED` to replay a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use kflow_benches::jobs::{ClickJob, ClickSource};
use kflow_benches::workload::Workload;
use kflow_tests::compare::{compare_jsonl, RowKind};
use kflow_tests::fixtures;
use kflow_tests::job::{JobDir, TIMEOUT};
use kflow_tests::process::run_with_timeout;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;

const MIN_KILLS: usize = 10;

/// The clickstream job every crash test starts from: `clicks.jsonl`,
/// checkpoints every 10 s, checkouts per user per minute.
fn crash_job() -> ClickJob {
    let mut job = ClickJob::new(
        "crash",
        ClickSource::File {
            path: "clicks.jsonl".into(),
        },
    );
    job.checkpoint_interval = Some("10s".into());
    job
}

/// The `[job]` table alone.
fn header() -> String {
    fixtures::header("crash", "10s")
}

/// `job`'s head (job table and source), then `windows` (TOML tables),
/// then a file sink `out/<name>.jsonl` for each stream in `sinks`.
fn job_with(job: &ClickJob, windows: &str, sinks: &[&str]) -> String {
    let mut text = format!("{}{windows}", job.head());
    for input in sinks {
        let name = input.replace('.', "_");
        text.push_str(&format!(
            "\n[sinks.{name}_file]\ninput = \"{input}\"\ntype = \"file\"\npath = \"out/{name}.jsonl\"\n"
        ));
    }
    text
}

fn seed() -> u64 {
    let seed = std::env::var("KFLOW_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("crash schedule seed: {seed} (set KFLOW_CRASH_SEED={seed} to replay)");
    seed
}

fn assert_same_outputs(reference: &JobDir, crashed: &JobDir) {
    let expected = reference.outputs(&["out", ".kflow/crash"]);
    let actual = crashed.outputs(&["out", ".kflow/crash"]);
    assert!(!expected.is_empty(), "the reference run wrote nothing");
    let names = |v: &[(PathBuf, String)]| v.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>();
    assert_eq!(names(&expected), names(&actual), "different output files");
    for ((path, want), (_, got)) in expected.iter().zip(&actual) {
        let kind = if path.to_string_lossy().contains("dead-letter") {
            RowKind::Errors
        } else {
            RowKind::Rows
        };
        if let Err(mismatch) = compare_jsonl(want, got, kind) {
            panic!(
                "{} differs from the uninterrupted run:\n{mismatch}",
                path.display()
            );
        }
        let mut lines: Vec<&str> = got.lines().collect();
        let total = lines.len();
        lines.sort_unstable();
        lines.dedup();
        assert_eq!(
            lines.len(),
            total,
            "{}: a row was written twice",
            path.display()
        );
    }
}

/// Runs the job uninterrupted in one folder and, in another, kills it with
/// SIGKILL at random moments at least `MIN_KILLS` times before letting it
/// finish; both must produce the same outputs.
fn kill_and_restart(job: &str, inputs: &[(&str, Workload)]) {
    let reference = JobDir::with_workloads(job, inputs);
    let started = Instant::now();
    reference.run_job_ok(&[]);
    kill_and_restart_against(&reference, started.elapsed(), job, inputs, &[], &[]);
}

/// [`kill_and_restart_against`] for runs decoding on a pool of 3 threads,
/// against a reference decoding on one.
fn kill_pool_of_decoders(job: &str, inputs: &[(&str, Workload)]) {
    let reference = JobDir::with_workloads(job, inputs);
    let started = Instant::now();
    reference.run_job_ok(&["--decode-threads", "1"]);
    kill_and_restart_against(
        &reference,
        started.elapsed(),
        job,
        inputs,
        &["--decode-threads", "3"],
        &[],
    );
}

/// Kills `job` in a fresh folder at random moments (within `full`, the
/// time an uninterrupted run takes) at least `MIN_KILLS` times, lets it
/// finish, and compares its outputs with `reference`'s. Every run of it
/// has the environment `env`.
fn kill_and_restart_against(
    reference: &JobDir,
    full: Duration,
    job: &str,
    inputs: &[(&str, Workload)],
    extra: &[&str],
    env: &[(&str, &str)],
) {
    let args: Vec<&str> = ["--checkpoint-interval", "50ms"]
        .into_iter()
        .chain(extra.iter().copied())
        .collect();
    let crashed = JobDir::with_workloads(job, inputs);
    let mut rng = Pcg64::seed_from_u64(seed());
    let mut kills = 0;
    let mut attempts = 0;
    while kills < MIN_KILLS {
        attempts += 1;
        assert!(
            attempts <= 100,
            "could not kill the job {MIN_KILLS} times mid-run in 100 attempts"
        );
        let mut child = crashed
            .job_command(&args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Anywhere from start-up to well into an uninterrupted run (a resumed
        // run has less left to do and may finish first: then it starts over).
        let delay = full
            .mul_f64(rng.random_range(0.05..0.7))
            .max(Duration::from_millis(20));
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();
    }
    let out = crashed.run_job(&args, env);
    assert!(out.status.success(), "kflow failed: {}", out.stderr);
    println!("{kills} kills in {attempts} runs");
    assert_same_outputs(reference, &crashed);
}

fn events(n: u64, users: u64, seed: u64) -> Workload {
    Workload {
        events: n,
        users,
        seed,
        ..Workload::default()
    }
}

#[test]
fn issue_3_tumbling_survives_repeated_kills() {
    let job = crash_job().toml();
    kill_and_restart(&job, &[("clicks.jsonl", events(200_000, 2_000, 1))]);
}

#[test]
fn issue_18_block_parallel_decoding_survives_repeated_kills() {
    // The reference decodes on one thread; the killed runs on a pool of 3
    // in blocks (2 MB of input: several blocks), barriers between blocks.
    let job = crash_job().toml();
    let inputs = [("clicks.jsonl", events(200_000, 2_000, 13))];
    kill_pool_of_decoders(&job, &inputs);
}

#[test]
fn issue_3_sliding_survives_repeated_kills() {
    let job = job_with(
        &crash_job(),
        r#"
[windows.recent]
input = "clicks"
key = ["user_id"]
sliding = { size = "5m", slide = "1m" }
aggregates = { events = "count()", revenue = "sum(amount)", types = "count_distinct(type)" }
"#,
        &["recent"],
    );
    kill_and_restart(&job, &[("clicks.jsonl", events(200_000, 500, 2))]);
}

#[test]
fn issue_17_new_aggregates_survive_repeated_kills() {
    // Per user (sliding: panes merged at firing; picks whose ties must not
    // depend on the order a replay reads records in) and over everyone
    // (2,000 users a minute: the distinct sketch is past its exact limit,
    // so its registers are what checkpoints store and restores read back).
    let job = job_with(
        &crash_job(),
        r#"
[windows.recent]
input = "clicks"
key = ["user_id"]
sliding = { size = "5m", slide = "1m" }
aggregates = { spread = "variance(amount)", deviation = "stddev(amount)", types = "count_distinct_approx(type)", biggest = "max_by(amount, type)", smallest = "min_by(amount, event_id)", first_type = "first(type)", last_type = "last(type)", types_seen = "top_k(type, 3)" }

[windows.everyone]
input = "clicks"
tumbling = "1m"
aggregates = { users = "count_distinct_approx(user_id)", exact = "count_distinct(user_id)", deviation = "stddev(amount)", busiest = "top_k(user_id, 5)" }
"#,
        &["recent", "everyone"],
    );
    kill_and_restart(&job, &[("clicks.jsonl", events(200_000, 2_000, 5))]);
}

/// Windows whose state is far larger than a 64 KB `state_memory`: every
/// window spills (early checkpoints, eviction, reads of spilled partials,
/// spilled panes loaded to fire a sliding window, growing distinct sets
/// written and read back). Results must equal a run that never spills, both
/// uninterrupted and with the spilling run killed again and again.
#[test]
fn issue_4_state_larger_than_memory_spills_and_survives_repeated_kills() {
    spill_and_kill(SPILLING_WINDOWS, &["per_user", "recent"], &[]);
}

/// A tumbling and a sliding window over 20,000 users: far more state than
/// 64 KB.
const SPILLING_WINDOWS: &str = r#"
[windows.per_user]
input = "clicks"
key = ["user_id"]
tumbling = "1m"
aggregates = { events = "count()", revenue = "sum(amount)", types = "count_distinct(type)" }

[windows.recent]
input = "clicks"
key = ["user_id"]
sliding = { size = "3m", slide = "1m" }
aggregates = { events = "count()", smallest = "min(amount)" }
"#;

/// Every checkpoint's window partials go to a table file RocksDB ingests
/// (issue 18; at least 16 MB of them do by default): committed with a
/// marker first, ingested after, so a kill between the two must leave a
/// state the next run finishes, never one counted twice or lost.
#[test]
fn issue_18_spill_runs_ingested_as_table_files_survive_repeated_kills() {
    spill_and_kill(SPILLING_WINDOWS, &["per_user", "recent"], INGEST_ALL);
}

/// How many table files RocksDB ingested into the crash job's database
/// in `dir` (its info logs, the current and the kept old ones, record
/// each).
fn ingested_runs(dir: &JobDir) -> usize {
    let db = dir.path().join(".kflow/crash/db");
    std::fs::read_dir(&db)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with("LOG"))
        .map(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .matches("\"ingest_finished\"")
                .count()
        })
        .sum()
}

/// The environment that makes every checkpoint with window partials to
/// write take the ingested-file path.
const INGEST_ALL: &[(&str, &str)] = &[("KFLOW_INGEST_MIN_BYTES", "1")];

/// Aborted once the first checkpoint that leaves a run of partials in a
/// table file committed, before the run was ingested: the file is left
/// beside the database, and the next start ingests it before anything
/// reads the state.
#[test]
fn issue_18_abort_between_a_commit_and_its_runs_ingestion() {
    let inputs = [("clicks.jsonl", events(200_000, 20_000, 5))];
    let in_memory = JobDir::with_workloads(
        &job_with(&crash_job(), SPILLING_WINDOWS, &["per_user"]),
        &inputs,
    );
    in_memory.run_job_ok(&[]);
    let mut spilling = crash_job();
    spilling.state_memory = Some("64KB".into());
    let crashed = JobDir::with_workloads(
        &job_with(&spilling, SPILLING_WINDOWS, &["per_user"]),
        &inputs,
    );
    let hook = [INGEST_ALL[0], ("KFLOW_CRASH_AT", "before-ingest:1")];
    let out = crashed.run_job(&[], &hook);
    assert!(
        !out.status.success(),
        "the hook should have aborted the run: {}",
        out.stderr
    );
    assert!(out.stderr.contains("test hook"), "{}", out.stderr);
    let db = crashed.path().join(".kflow/crash/db");
    let runs = || -> Vec<String> {
        std::fs::read_dir(&db)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with("kflow-run-"))
            .collect()
    };
    assert_eq!(runs().len(), 1, "one run file left in {}", db.display());
    let out = crashed.run_job(&[], INGEST_ALL);
    assert!(out.status.success(), "kflow failed: {}", out.stderr);
    assert!(runs().is_empty(), "the run file was ingested and removed");
    assert_same_outputs(&in_memory, &crashed);
}

/// Runs `windows` (with a file sink for each of `sinks`) over 200,000
/// clicks of 20,000 users with a 64 KB state budget: it must spill (at
/// least 3 early checkpoints) and its outputs must equal a run that never
/// spills, uninterrupted and killed again and again.
fn spill_and_kill(windows: &str, sinks: &[&str], env: &[(&str, &str)]) {
    let inputs = [("clicks.jsonl", events(200_000, 20_000, 5))];
    let in_memory = JobDir::with_workloads(&job_with(&crash_job(), windows, sinks), &inputs);
    in_memory.run_job_ok(&[]);
    let mut spilling = crash_job();
    spilling.state_memory = Some("64KB".into());
    let spilling_job = job_with(&spilling, windows, sinks);
    let spilling = JobDir::with_workloads(&spilling_job, &inputs);
    let started = Instant::now();
    let mut command = spilling.loud_job_command();
    command.envs(env.iter().copied());
    let out = run_with_timeout(command, TIMEOUT).unwrap();
    let full = started.elapsed();
    assert!(out.status.success(), "kflow failed: {}", out.stderr);
    // The run summary: `checkpoints  N  (…, M early (memory budget, …))`;
    // no `early` part means none were early.
    let summary = out
        .stderr
        .lines()
        .find(|l| l.trim_start().starts_with("checkpoints"))
        .unwrap_or_else(|| panic!("no checkpoint summary in:\n{}", out.stderr));
    let early: u64 = summary
        .split(" early")
        .next()
        .filter(|before| before.len() < summary.len())
        .and_then(|before| before.rsplit([' ', '(']).next())
        .map_or(0, |n| n.replace(',', "").parse().unwrap());
    println!("{early} early checkpoints in {full:?}");
    assert!(
        early >= 3,
        "the state should have spilled many times, {early} early checkpoints:\n{}",
        out.stderr
    );
    if env.contains(&INGEST_ALL[0]) {
        let runs = ingested_runs(&spilling);
        println!("{runs} runs ingested");
        assert!(runs > 0, "no run was ingested:\n{}", out.stderr);
    }
    assert_same_outputs(&in_memory, &spilling);
    kill_and_restart_against(&in_memory, full, &spilling_job, &inputs, &[], env);
}

/// Session windows (issue 17): sessions open across many checkpoints,
/// sessions cut by `max_duration`, and a window over the sessions, killed
/// again and again; ties in `first`/`last` must not depend on the order a
/// replay reads records in.
#[test]
fn issue_17_session_windows_survive_repeated_kills() {
    let job = job_with(
        &crash_job(),
        r#"
[windows.visits]
input = "clicks"
key = ["user_id"]
session = { gap = "1m" }
aggregates = { clicks = "count()", spent = "sum(amount)", first_type = "first(type)", last_type = "last(type)", types = "count_distinct(type)", kinds = "top_k(type, 2)" }

[windows.capped]
input = "clicks"
key = ["user_id"]
session = { gap = "2m", max_duration = "10m" }
aggregates = { clicks = "count()", biggest = "max_by(amount, type)" }

[windows.per_five]
input = "visits"
tumbling = "5m"
aggregates = { visits = "count()", longest = "max_by(clicks, user_id)", clicks = "sum(clicks)" }
"#,
        &["visits", "capped", "per_five"],
    );
    kill_and_restart(&job, &[("clicks.jsonl", events(200_000, 2_000, 7))]);
}

/// Dense, disordered sessions: 20 users clicking about every 0.36 s with
/// event times jittered by up to a second, and a 400 ms gap, so records
/// arrive ahead of earlier ones, start sessions of their own and are
/// bridged into one by the records that come after (before and after
/// restarts).
#[test]
fn issue_17_sessions_bridged_out_of_order_survive_repeated_kills() {
    let job = job_with(
        &crash_job(),
        r#"
[windows.bursts]
input = "clicks"
key = ["user_id"]
session = { gap = "400ms" }
aggregates = { clicks = "count()", revenue = "sum(amount)", first_type = "first(type)", kinds = "top_k(type, 4)" }
"#,
        &["bursts"],
    );
    kill_and_restart(&job, &[("clicks.jsonl", events(200_000, 20, 11))]);
}

/// Session windows of 20,000 users: far more state than 64 KB.
const SPILLING_SESSIONS: &str = r#"
[windows.visits]
input = "clicks"
key = ["user_id"]
session = { gap = "5m" }
aggregates = { clicks = "count()", revenue = "sum(amount)", last_type = "last(type)" }
"#;

/// Session windows far larger than a 64 KB budget: sessions and timers
/// spill, evicted keys are read back to extend or fire, and the results
/// equal a run that never spills, killed or not.
#[test]
fn issue_17_session_windows_spill_and_survive_repeated_kills() {
    spill_and_kill(SPILLING_SESSIONS, &["visits"], &[]);
}

/// The same with every checkpoint's session partials in an ingested
/// table file.
#[test]
fn issue_18_spilled_sessions_ingested_as_table_files_survive_repeated_kills() {
    spill_and_kill(SPILLING_SESSIONS, &["visits"], INGEST_ALL);
}

/// Checkouts per user per minute over `clicks.jsonl`, dropping repeats of
/// an `event_id` within 10 minutes.
fn dedup_job() -> String {
    format!(
        "{}{}",
        header(),
        r#"
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
aggregates = { events = "count()" }

[sinks.result]
input = "per_user"
type = "file"
path = "out/result.jsonl"
"#
    )
}

/// 200,000 click events with 5% of them sent twice, as a producer's
/// retries would.
fn with_retries() -> Workload {
    Workload {
        duplicate_rate: 0.05,
        ..events(200_000, 1_000, 3)
    }
}

#[test]
fn issue_3_dedup_survives_repeated_kills() {
    let job = dedup_job();
    let with_retries = with_retries();
    // Dedup must actually drop the retries: the counts equal those of the
    // same events without duplicates.
    let clean = JobDir::with_workloads(&job, &[("clicks.jsonl", events(200_000, 1_000, 3))]);
    clean.run_job_ok(&[]);
    let retried = JobDir::with_workloads(&job, &[("clicks.jsonl", with_retries.clone())]);
    retried.run_job_ok(&[]);
    let lines = fs::read_to_string(retried.path().join("clicks.jsonl"))
        .unwrap()
        .lines()
        .count();
    assert!(
        lines > 205_000,
        "the workload should contain retries, has {lines} lines"
    );
    assert_same_outputs(&clean, &retried);
    kill_and_restart(&job, &[("clicks.jsonl", with_retries)]);
}

#[test]
fn issue_18_block_parallel_dedup_survives_repeated_kills() {
    // The reference checks ids on one thread; the killed runs check them
    // ahead of the blocks handed on, from a pool of 3 decoders, so their
    // checkpoints must store the ids of the blocks handed on alone.
    let job = dedup_job();
    let inputs = [("clicks.jsonl", with_retries())];
    kill_pool_of_decoders(&job, &inputs);
}

#[test]
fn issue_3_two_source_union_survives_repeated_kills() {
    let job = format!(
        "{}{}",
        header(),
        r#"
[sources.web]
type = "file"
path = "web.jsonl"
event_time = { field = "ts" }
watermark = { max_out_of_orderness = "5s" }

[sources.app]
type = "file"
path = "app.jsonl"
event_time = { field = "ts" }
watermark = { max_out_of_orderness = "5s" }

[windows.per_user]
input = ["web", "app"]
key = ["user_id"]
tumbling = "1m"
aggregates = { events = "count()", revenue = "sum(amount)" }

[sinks.result]
input = "per_user"
type = "file"
path = "out/result.jsonl"
"#
    );
    kill_and_restart(
        &job,
        &[
            ("web.jsonl", events(100_000, 1_000, 4)),
            ("app.jsonl", events(100_000, 1_000, 5)),
        ],
    );
}

/// Aborts the process at a test hook, then restarts it to completion.
/// The input takes long enough to read (~1M events) that a run makes
/// several checkpoints at 20 ms however fast this machine is: with 200k
/// events a faster build finished before its third checkpoint and the
/// hook never fired.
fn abort_then_recover(hook: &str) {
    let job = crash_job().toml();
    let inputs = [("clicks.jsonl", events(1_000_000, 2_000, 6))];
    let reference = JobDir::with_workloads(&job, &inputs);
    reference.run_job_ok(&[]);
    let crashed = JobDir::with_workloads(&job, &inputs);
    let out = crashed.run_job(
        &["--checkpoint-interval", "20ms"],
        &[("KFLOW_CRASH_AT", hook)],
    );
    assert!(
        !out.status.success(),
        "the {hook} hook should have aborted the run: {}",
        out.stderr
    );
    assert!(out.stderr.contains("test hook"), "{}", out.stderr);
    crashed.run_job_ok(&["--checkpoint-interval", "20ms"]);
    assert_same_outputs(&reference, &crashed);
}

#[test]
fn issue_3_abort_before_the_checkpoint_write() {
    abort_then_recover("before-commit:3");
}

#[test]
fn issue_3_abort_right_after_the_checkpoint_write() {
    abort_then_recover("after-commit:3");
}

#[test]
fn issue_3_abort_in_the_middle_of_a_sink_write() {
    abort_then_recover("sink-write:2");
}

#[test]
fn issue_3_checkpoints_command_lists_the_last_checkpoint() {
    let job = crash_job().toml();
    // `interrupted` read the listing while the job ran, until a
    // checkpoint held half the input.
    let dir = JobDir::interrupted(&job, &events(100_000, 1_000, 8));
    let (id, line) = dir.last_checkpoint().unwrap();
    assert!(id >= 2 && line >= 50_000, "checkpoint {id} at line {line}");
    let out = dir.list_checkpoints();
    assert!(out.status.success(), "{}", out.stderr);
    for expected in [
        "of job `crash`",
        "clicks",
        "line",
        "per_user/0",
        "fired through",
        "out/result.jsonl",
        "on disk",
    ] {
        assert!(
            out.stdout.contains(expected),
            "missing {expected:?} in:\n{}",
            out.stdout
        );
    }
}

#[test]
fn issue_3_foreign_state_dir_is_refused_not_reset() {
    let job = crash_job().toml();
    let dir = JobDir::with_workloads(&job, &[("clicks.jsonl", events(1_000, 10, 9))]);
    let db = dir.path().join(".kflow/crash/db");
    fs::create_dir_all(&db).unwrap();
    fs::write(db.join("notes.txt"), "not a database").unwrap();
    let out = dir.run_job(&[], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("is not a kflow state directory"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    assert!(
        db.join("notes.txt").exists(),
        "the foreign file must be left alone"
    );
}

#[test]
fn issue_3_a_second_run_of_a_running_job_is_refused() {
    // A following source keeps the first run going until it is killed.
    let job = crash_job()
        .toml()
        .replace("event_time", "follow = true\nevent_time");
    let dir = JobDir::with_workloads(&job, &[("clicks.jsonl", events(1_000, 10, 9))]);
    let mut first = dir
        .job_command(&[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !dir.path().join("out/result.jsonl").exists() {
        assert!(
            first.try_wait().unwrap().is_none(),
            "the first run ended before it opened its sink"
        );
        assert!(
            Instant::now() < deadline,
            "the first run did not open its sink in 60 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = run_with_timeout(dir.job_command(&[]), Duration::from_secs(60));
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first run must still be running"
    );
    first.kill().unwrap();
    first.wait().unwrap();
    let out = out.unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("is in use by another process"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}

#[test]
fn issue_3_corrupted_state_is_an_error_not_a_fresh_start() {
    let job = crash_job().toml();
    let dir = JobDir::interrupted(&job, &events(100_000, 1_000, 8));
    let db = dir.path().join(".kflow/crash/db");
    let mut corrupted = 0;
    for entry in fs::read_dir(&db).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("MANIFEST") || name == "CURRENT" {
            fs::write(&path, b"garbage garbage garbage").unwrap();
            corrupted += 1;
        }
    }
    assert!(corrupted > 0);
    let out = dir.run_job(&[], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("state"), "{}", out.stderr);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    assert!(
        !out.stderr.contains("starting from empty state"),
        "{}",
        out.stderr
    );
}
