//! Kinesis end to end (issue 5), against a real Kinesis API served by an
//! emulator on loopback (tests/src/kinesis.rs starts it): `kflow produce`
//! into a stream, `kflow run` over it, and the window results compared with
//! the same job over the same events read from a file. Resharding while
//! producing and consuming, SIGKILLed runs, a restart of the emulator, a
//! replay from a timestamp, positions that no longer exist, throttling
//! (injected: the emulators never throttle), and the Kinesis sink.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use kflow_benches::workload::START_MS;
use kflow_tests::fixtures::{self, kinesis_source};
use kflow_tests::fixtures::{assert_rows_equal, events, file_reference, per_user_order, produce};
use kflow_tests::job::{count_before, now_ms, records_read, JobDir};
use kflow_tests::kinesis::{Emulator, EmulatorKind};
use kflow_tests::kpl::kpl_aggregate;
use kflow_tests::process::{wait_with_timeout, Watched};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;

const TIMEOUT: Duration = Duration::from_secs(240);

fn header(name: &str) -> String {
    fixtures::header(name, "300ms")
}

/// The click job (per-user windows into `out/result.jsonl`) named `name`
/// over `source`, with `extra` (more sinks) after it.
fn click_job(name: &str, source: &str, extra: &str) -> String {
    format!(
        "{}{source}{}{extra}",
        header(name),
        fixtures::click_windows()
    )
}

fn result_of(dir: &JobDir) -> String {
    dir.read("out/result.jsonl")
}

#[test]
fn produce_then_run_equals_the_file_run_and_the_kinesis_sink_carries_result_ids() {
    let em = Emulator::start(EmulatorKind::KinesisMock);
    let client = em.client();
    let input = client.create_fresh_stream("clicks", 2);
    let output = client.create_fresh_stream("results", 1);
    let lines = events(1500, 40, 7);
    let produced = produce(&em, &input, &lines);
    assert!(
        produced.stderr.contains("produced 1,500 records"),
        "{}",
        produced.stderr
    );

    let sink = format!(
        "\n[sinks.stream]\ninput = \"per_user\"\ntype = \"kinesis\"\nstream = \"{output}\"\nendpoint = \"{}\"\n",
        em.endpoint()
    );
    let job = click_job(
        "produce-run",
        &kinesis_source(
            &input,
            &em.endpoint(),
            "start_at = \"trim_horizon\"\nstop_at = \"latest\"",
        ),
        &sink,
    );
    let dir = JobDir::new(&job);
    // Throttle half of the GetRecords calls (at least 15 of them, at 100
    // records a call): retried, nothing lost.
    let out = dir.run_ok(
        &["run", "job.toml"],
        &[
            ("KFLOW_KINESIS_FAULTS", "throttle:0.5"),
            ("KFLOW_KINESIS_LIMIT", "100"),
        ],
    );
    assert!(out.stderr.contains("kinesis shards"), "{}", out.stderr);
    let throttled = count_before(&out.stderr, " throttled calls retried");
    assert!(throttled > 0, "no throttling was injected:\n{}", out.stderr);

    let expected = file_reference(&lines);
    let actual = result_of(&dir);
    assert_rows_equal(&expected, &actual);

    // The Kinesis sink: the same rows plus a result id, keyed by user.
    let records = client.read_all(&output);
    assert_eq!(records.len(), actual.lines().count());
    let mut ids = HashSet::new();
    let mut rows = String::new();
    for (_, _, key, data) in &records {
        let mut row: serde_json::Value = serde_json::from_slice(data).unwrap();
        let object = row.as_object_mut().unwrap();
        let id = object.remove("result_id").unwrap();
        assert!(
            ids.insert(id.as_str().unwrap().to_string()),
            "result id repeated"
        );
        assert_eq!(key, object["user_id"].as_str().unwrap());
        rows.push_str(&row.to_string());
        rows.push('\n');
    }
    assert_rows_equal(&actual, &rows);
}

#[test]
fn resharding_while_producing_and_consuming_keeps_results_and_per_key_order() {
    resharding_case("1");
}

/// Issue 18: the same with the batches decoded by a pool of threads (a
/// child shard starts only after its parents' batches were handed on).
#[test]
fn resharding_with_a_pool_of_decoders_keeps_results_and_per_key_order() {
    resharding_case("3");
}

/// Splits and merges while producing and reading, decoding on `threads`.
fn resharding_case(threads: &str) {
    let em = Emulator::start(EmulatorKind::KinesisMock);
    let client = em.client();
    let stream = client.create_fresh_stream("reshard", 2);
    // A bounded run that stops at a time after all producing is done.
    let stop_ms = now_ms() + 45_000;
    let raw_sink = "\n[sinks.raw]\ninput = \"clicks\"\ntype = \"file\"\npath = \"out/raw.jsonl\"\n";
    let job = click_job(
        "reshard",
        &kinesis_source(
            &stream,
            &em.endpoint(),
            &format!(
                "start_at = \"trim_horizon\"\nstop_at = \"{}\"",
                kflow_benches::workload::rfc3339_millis(stop_ms)
            ),
        ),
        raw_sink,
    );
    let dir = JobDir::new(&job);
    let child = dir
        .job_command(&["--decode-threads", threads])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();

    let all = events(2000, 30, 11);
    let rounds = fixtures::four_rounds(&all);
    client.put_while_resharding(&stream, &rounds, |round| {
        produce(&em, &stream, round);
    });
    assert!(
        now_ms() < stop_ms - 2000,
        "producing took too long for the run's stop time"
    );

    let out = wait_with_timeout(child, TIMEOUT).unwrap();
    assert!(out.status.success(), "kflow failed:\n{}", out.stderr);
    assert_rows_equal(&file_reference(&all), &result_of(&dir));
    // Per-key order: each user's records in the order they were produced.
    let raw = dir.read("out/raw.jsonl");
    assert_eq!(raw.lines().count(), 2000);
    assert_eq!(per_user_order(&raw), per_user_order(&all));
}

#[test]
fn sigkill_mid_stream_and_restart_gives_the_exact_result() {
    sigkill_case(EmulatorKind::KinesisMock, "1");
}

/// Issue 18: the same with the batches decoded by a pool of threads.
#[test]
fn sigkill_mid_stream_with_a_pool_of_decoders_gives_the_exact_result() {
    sigkill_case(EmulatorKind::Kinesalite, "3");
}

/// Five runs SIGKILLed at random moments, then one to the end, decoding
/// on `threads` threads: the exact result.
fn sigkill_case(kind: EmulatorKind, threads: &str) {
    let em = Emulator::start(kind);
    let client = em.client();
    let stream = client.create_fresh_stream("kill", 2);
    let lines = events(1500, 40, 23);
    produce(&em, &stream, &lines);
    let job = click_job(
        "kill",
        &kinesis_source(
            &stream,
            &em.endpoint(),
            "start_at = \"trim_horizon\"\nstop_at = \"latest\"",
        ),
        "",
    );
    let dir = JobDir::new(&job);
    // 20 records per call, 5 calls/s per shard: about 8 s of reading.
    let env = [("KFLOW_KINESIS_LIMIT", "20")];
    let seed: u64 = std::env::var("KFLOW_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| now_ms() as u64);
    println!("kill schedule seed: {seed} (KFLOW_CRASH_SEED={seed} replays it)");
    let mut rng = Pcg64::seed_from_u64(seed);
    let mut kills = 0;
    for _ in 0..5 {
        let mut child = dir.spawn(
            &["run", "job.toml", "-q", "--decode-threads", threads],
            &env,
        );
        // The kill moment: anywhere in the first ~2 s of reading.
        std::thread::sleep(Duration::from_millis(rng.random_range(800..2000)));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();
    }
    assert!(kills >= 3, "only {kills} runs were killed mid-stream");
    dir.run_ok(
        &["run", "job.toml", "-q", "--decode-threads", threads],
        &env,
    );
    assert_rows_equal(&file_reference(&lines), &result_of(&dir));
}

/// Issue 14: SIGTERM mid-stream takes a final checkpoint and exits 0; the
/// restart reads no record twice and its stdout repeats no row.
#[test]
fn sigterm_mid_stream_stops_gracefully_and_the_restart_repeats_nothing() {
    sigterm_case("1");
}

/// Issue 18: the same with the batches decoded by a pool of threads
/// (batches decoded past the final barrier are dropped, read again).
#[test]
fn sigterm_mid_stream_with_a_pool_of_decoders_repeats_nothing() {
    sigterm_case("3");
}

fn sigterm_case(threads: &str) {
    let em = Emulator::start(EmulatorKind::Kinesalite);
    let client = em.client();
    let stream = client.create_fresh_stream("term", 2);
    let lines = events(1500, 40, 29);
    produce(&em, &stream, &lines);
    let screen = "\n[sinks.screen]\ninput = \"per_user\"\ntype = \"stdout\"\n";
    let job = click_job(
        "term",
        &kinesis_source(
            &stream,
            &em.endpoint(),
            "start_at = \"trim_horizon\"\nstop_at = \"latest\"",
        ),
        screen,
    );
    let dir = JobDir::new(&job);
    // 20 records per call, 5 calls/s per shard: about 8 s of reading.
    let env = [("KFLOW_KINESIS_LIMIT", "20"), ("KFLOW_LOG", "kflow=debug")];
    let stdout = std::fs::File::create(dir.path().join("first.jsonl")).unwrap();
    let mut command = dir.loud_job_command();
    command.args(["--decode-threads", threads]).envs(env);
    let mut run = Watched::spawn_to(&mut command, stdout.into());
    run.wait_for("reading shard", 2, TIMEOUT);
    // A few checkpoints into the stream (300 ms apart).
    let seen = run.count("checkpoint committed");
    run.wait_for("checkpoint committed", seen + 3, TIMEOUT);
    run.terminate();
    let (status, log) = run.wait(Duration::from_secs(30)).unwrap();
    assert!(status.success(), "a graceful stop exits 0: {status}\n{log}");
    assert!(log.contains("stopped gracefully at checkpoint"), "{log}");
    let first_read = records_read(&log);
    assert!(first_read > 0 && first_read < 1500, "{log}");

    let second = dir.run(
        &["run", "job.toml", "--decode-threads", threads],
        &[("KFLOW_KINESIS_LIMIT", "20")],
    );
    assert!(second.status.success(), "{}", second.stderr);
    assert_eq!(first_read + records_read(&second.stderr), 1500);
    let expected = file_reference(&lines);
    assert_rows_equal(&expected, &(dir.read("first.jsonl") + &second.stdout));
    assert_rows_equal(&expected, &result_of(&dir));
}

#[test]
fn an_emulator_restart_mid_run_costs_a_pause_not_data() {
    let mut em = Emulator::start(EmulatorKind::Kinesalite);
    let client = em.client();
    let stream = client.create_fresh_stream("restart", 2);
    let lines = events(1500, 40, 31);
    produce(&em, &stream, &lines);
    let job = click_job(
        "restart",
        &kinesis_source(
            &stream,
            &em.endpoint(),
            "start_at = \"trim_horizon\"\nstop_at = \"latest\"",
        ),
        "",
    );
    let dir = JobDir::new(&job);
    let env = [("KFLOW_KINESIS_LIMIT", "20"), ("KFLOW_LOG", "kflow=debug")];
    let mut run = Watched::spawn(dir.job_command(&[]).envs(env));
    // Both shards are being read (20 records a call: ~7 s of reading)...
    run.wait_for("reading shard", 2, TIMEOUT);
    // ...when the emulator goes away for 1.5 s (the fault under test).
    em.kill();
    std::thread::sleep(Duration::from_millis(1500));
    em.restart();
    let (status, log) = run.wait(TIMEOUT).unwrap();
    assert!(status.success(), "kflow failed:\n{log}");
    assert_rows_equal(&file_reference(&lines), &result_of(&dir));
}

#[test]
fn start_at_a_timestamp_replays_from_there() {
    let em = Emulator::start(EmulatorKind::KinesisMock);
    let client = em.client();
    let stream = client.create_fresh_stream("replay", 2);
    let before = events(400, 20, 41);
    let after = events(600, 20, 43);
    produce(&em, &stream, &before);
    // Clock gaps, not waits for kflow: every record of `before` arrived
    // well before `from`, every record of `after` well after it.
    std::thread::sleep(Duration::from_millis(1500));
    let from = now_ms();
    std::thread::sleep(Duration::from_millis(1500));
    produce(&em, &stream, &after);
    let job = click_job(
        "replay",
        &kinesis_source(
            &stream,
            &em.endpoint(),
            &format!(
                "start_at = \"{}\"\nstop_at = \"latest\"",
                kflow_benches::workload::rfc3339_millis(from)
            ),
        ),
        "",
    );
    let dir = JobDir::new(&job);
    dir.run_job_ok(&[]);
    assert_rows_equal(&file_reference(&after), &result_of(&dir));
}

#[test]
fn a_position_in_a_recreated_stream_fails_clearly_unless_on_expired_says_otherwise() {
    let em = Emulator::start(EmulatorKind::KinesisMock);
    let client = em.client();
    let stream = client.create_fresh_stream("expired", 1);
    let first = events(300, 10, 51);
    produce(&em, &stream, &first);
    let raw_sink = "\n[sinks.raw]\ninput = \"clicks\"\ntype = \"file\"\npath = \"out/raw.jsonl\"\n";
    let job = |on_expired: &str| {
        format!(
            "{}{}{raw_sink}",
            header("expired"),
            kinesis_source(
                &stream,
                &em.endpoint(),
                &format!("start_at = \"trim_horizon\"\n{on_expired}")
            )
        )
    };
    let dir = JobDir::new(&job(""));
    // An unbounded run: read everything, checkpoint, then die.
    let committed = "checkpoint committed";
    let mut run = Watched::spawn(dir.job_command(&[]).env("KFLOW_LOG", "kflow=debug"));
    dir.wait_for_lines("out/raw.jsonl", 300, Duration::from_secs(60));
    // The lines reach the file at a checkpoint's barrier; the next commit
    // after that covers every one of them.
    let seen = run.count(committed);
    run.wait_for(committed, seen + 1, Duration::from_secs(60));
    run.kill();
    let checkpoint = dir.run_ok(&["checkpoints", "job.toml"], &[]);
    assert!(
        checkpoint.stdout.contains("shardId-"),
        "{}",
        checkpoint.stdout
    );

    // The stream is deleted and recreated: the checkpointed sequence
    // numbers mean nothing in it.
    client.delete_stream(&stream);
    client.create_stream(&stream, 1);
    let second = events(200, 10, 53);
    produce(&em, &stream, &second);
    let out = dir.run_job(&[], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("deleted and recreated") && out.stderr.contains("on_expired"),
        "{}",
        out.stderr
    );

    // With on_expired = "trim_horizon" the new stream is read from its start.
    dir.write("job.toml", &job("on_expired = \"trim_horizon\""));
    let mut child = dir.spawn(&["run", "job.toml", "-q"], &[]);
    dir.wait_for_lines("out/raw.jsonl", 500, Duration::from_secs(60));
    child.kill().unwrap();
    child.wait().unwrap();
    let raw = dir.read("out/raw.jsonl");
    let ids: BTreeMap<&str, usize> =
        raw.lines()
            .map(|l| (l, 1))
            .fold(BTreeMap::new(), |mut m, (l, n)| {
                *m.entry(l).or_default() += n;
                m
            });
    for line in first.lines().chain(second.lines()) {
        assert_eq!(ids.get(line), Some(&1), "missing or repeated: {line}");
    }
}

#[test]
fn a_bad_record_goes_to_the_dead_letter_file_with_its_shard_and_sequence() {
    let em = Emulator::start(EmulatorKind::Kinesalite);
    let client = em.client();
    let stream = client.create_fresh_stream("bad", 1);
    let good = format!(
        "{{\"event_id\":\"e1\",\"user_id\":\"u1\",\"type\":\"purchase_completed\",\"amount\":3.5,\"ts\":{}}}",
        START_MS
    );
    client.put_records(&stream, &[("u1", "not json at all"), ("u1", good.as_str())]);
    let job = click_job(
        "bad",
        &kinesis_source(
            &stream,
            &em.endpoint(),
            "start_at = \"trim_horizon\"\nstop_at = \"latest\"",
        ),
        "",
    );
    let dir = JobDir::new(&job);
    dir.run_job_ok(&[]);
    let dead = dir.read(".kflow/bad/dead-letter.jsonl");
    let row: serde_json::Value = serde_json::from_str(dead.lines().next().unwrap()).unwrap();
    assert_eq!(row["position"]["shard"], "shardId-000000000000", "{dead}");
    assert!(row["position"]["sequence"].as_str().unwrap().len() > 10);
    let result = result_of(&dir);
    assert!(result.contains("\"events\":1"), "{result}");
}

#[test]
fn a_stream_that_does_not_exist_fails_clearly() {
    let em = Emulator::start(EmulatorKind::Kinesalite);
    let job = click_job(
        "missing",
        &kinesis_source("no-such-stream", &em.endpoint(), "stop_at = \"latest\""),
        "",
    );
    let dir = JobDir::new(&job);
    let out = dir.run_job(&[], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("source `clicks`: Kinesis")
            && out.stderr.contains("ResourceNotFound")
            && out.stderr.contains("no-such-stream"),
        "{}",
        out.stderr
    );
}

#[test]
fn kpl_aggregates_are_split_and_arrival_time_stands_in_for_event_time() {
    kpl_case(EmulatorKind::Kinesalite, "");
}

/// Issue 19: the same through enhanced fan-out (kinesalite has none).
#[test]
fn kpl_aggregates_are_split_when_read_by_enhanced_fan_out() {
    kpl_case(EmulatorKind::KinesisMock, "reader = \"efo\"\n");
}

fn kpl_case(kind: EmulatorKind, reader: &str) {
    let em = Emulator::start(kind);
    let client = em.client();
    let stream = client.create_fresh_stream("kpl", 1);
    let event = |user: &str, amount: f64| {
        format!("{{\"user_id\":\"{user}\",\"type\":\"purchase_completed\",\"amount\":{amount}}}")
    };
    let aggregate = kpl_aggregate(
        &["a", "b"],
        &[
            (0, &event("u1", 1.0)),
            (1, &event("u2", 2.0)),
            (0, &event("u1", 4.0)),
        ],
    );
    let plain = event("u2", 8.0);
    let before = now_ms();
    client.put_records(
        &stream,
        &[("a", aggregate.as_slice()), ("b", plain.as_bytes())],
    );
    // No event_time: records are stamped with their arrival time.
    let job = format!(
        "{}[sources.clicks]\ntype = \"kinesis\"\nstream = \"{stream}\"\nendpoint = \"{}\"\n\
         start_at = \"trim_horizon\"\nstop_at = \"latest\"\n{reader}{}",
        header("kpl"),
        em.endpoint(),
        fixtures::click_windows().replace("tumbling = \"1m\"", "tumbling = \"1d\"")
    );
    let dir = JobDir::new(&job);
    dir.run_job_ok(&[]);
    let result = result_of(&dir);
    let rows: Vec<serde_json::Value> = result
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2, "{result}");
    // The day of arrival (either side of a midnight during the test).
    let day = |ms: i64| {
        kflow_benches::workload::rfc3339_millis(ms - ms.rem_euclid(86_400_000))
            .replace(".000Z", "Z")
    };
    let days = [day(before), day(now_ms())];
    for row in &rows {
        let (events, revenue) = match row["user_id"].as_str().unwrap() {
            "u1" => (2, 5.0),
            "u2" => (2, 10.0),
            other => panic!("unexpected user {other}"),
        };
        assert_eq!(row["events"], events, "{result}");
        assert_eq!(row["revenue"].as_f64().unwrap(), revenue, "{result}");
        let start = row["window_start"].as_str().unwrap();
        assert!(days.iter().any(|d| d == start), "{result}");
    }
}
