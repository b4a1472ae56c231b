//! Enhanced fan-out end to end (issue 19), against kinesis-mock (the
//! emulator that serves RegisterStreamConsumer and SubscribeToShard): a job
//! with `reader = "efo"` reads a stream while it is being written, and its
//! window results equal the same job's over the same events from a file,
//! through subscription renewals and throttled subscribe calls, side by
//! side with a polling job, through resharding, SIGKILLs at random moments,
//! and the network dropping every connection. `kpl_aggregates_are_split_
//! when_read_by_enhanced_fan_out` is in kinesis.rs beside its polling twin.
//!
//! kinesis-mock sends everything a shard holds in the subscription's first
//! event, so a stream written before the run would be read in one event;
//! these tests write while the job reads (rounds of PutRecords from a
//! thread) and stop the job at a fixed time after the last round.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::thread::{self, JoinHandle};
use std::time::Duration;

use kflow_benches::workload::rfc3339_millis;
use kflow_tests::fixtures::{
    self, assert_rows_equal, events, file_reference, four_rounds, kinesis_source, per_user_order,
};
use kflow_tests::job::{count_before, now_ms, JobDir};
use kflow_tests::kinesis::{Emulator, EmulatorKind, Kinesis};
use kflow_tests::process::Watched;
use kflow_tests::proxy::Proxy;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;

const TIMEOUT: Duration = Duration::from_secs(240);

/// Writes `lines` into `stream` in `rounds` PutRecords rounds `pause`
/// apart, keyed by user as `kflow produce --partition-key user_id` would;
/// the thread returns each record's `(shard, sequence number)`.
fn produce_live(
    endpoint: String,
    stream: String,
    lines: &str,
    rounds: usize,
    pause: Duration,
) -> JoinHandle<Vec<(String, String)>> {
    let records: Vec<(String, String)> = lines
        .lines()
        .map(|line| {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            (
                row["user_id"].as_str().unwrap().to_string(),
                line.to_string(),
            )
        })
        .collect();
    thread::spawn(move || {
        let client = Kinesis::new(&endpoint);
        let mut placed = Vec::new();
        for round in records.chunks(records.len().div_ceil(rounds)) {
            placed.extend(client.put_records(&stream, round));
            thread::sleep(pause);
        }
        placed
    })
}

/// The click job named `name` reading `stream` at `endpoint` by enhanced
/// fan-out from its trim horizon until `stop_ms`, `extra` in its source.
fn efo_job(name: &str, stream: &str, endpoint: &str, stop_ms: i64, extra: &str) -> String {
    format!(
        "{}{}{}",
        fixtures::header(name, "300ms"),
        kinesis_source(
            stream,
            endpoint,
            &format!(
                "start_at = \"trim_horizon\"\nstop_at = \"{}\"\n{extra}",
                rfc3339_millis(stop_ms)
            ),
        ),
        fixtures::click_windows()
    )
}

/// Waits for `run` to exit 0 and checks its result equals the same job's
/// over `lines` from a file; returns its log.
fn exact_run(run: Watched, dir: &JobDir, lines: &str) -> String {
    let (status, log) = run.wait(TIMEOUT).unwrap();
    assert!(status.success(), "kflow failed:\n{log}");
    assert_rows_equal(&file_reference(lines), &dir.read("out/result.jsonl"));
    log
}

/// Waits for the producer, checking it finished well before the runs stop.
fn finish_producing(producer: JoinHandle<Vec<(String, String)>>, stop_ms: i64) {
    producer.join().unwrap();
    assert!(
        now_ms() < stop_ms - 2000,
        "producing took too long for the runs' stop time"
    );
}

#[test]
fn efo_reads_a_live_stream_exactly_through_renewals_and_throttled_subscribes() {
    let em = Emulator::start(EmulatorKind::KinesisMock);
    let stream = em.client().create_fresh_stream("efo-live", 2);
    let lines = events(1500, 40, 41);
    let stop_ms = now_ms() + 25_000;
    let dir = JobDir::new(&efo_job(
        "efo-live",
        &stream,
        &em.endpoint(),
        stop_ms,
        "reader = \"efo\"",
    ));
    // Each subscription ends after 700 ms (the service's five minutes,
    // shortened), and a third of the SubscribeToShard calls are refused
    // as LimitExceeded: resubscribed, nothing skipped or read twice.
    let env = [
        ("KFLOW_EFO_RENEW_MS", "700"),
        ("KFLOW_EFO_FAULTS", "limit:0.3"),
    ];
    let run = Watched::spawn(dir.loud_job_command().envs(env));
    let producer = produce_live(
        em.endpoint(),
        stream.clone(),
        &lines,
        15,
        Duration::from_millis(300),
    );
    finish_producing(producer, stop_ms);
    let log = exact_run(run, &dir, &lines);
    assert!(
        log.contains("registered enhanced fan-out consumer `efo-live`"),
        "{log}"
    );
    // About 25 s of 700 ms subscriptions on each of two shards.
    let subscriptions = count_before(&log, " subscriptions,");
    assert!(subscriptions >= 20, "renewals: {log}");
    assert!(
        count_before(&log, " throttled calls retried") > 0,
        "no LimitExceeded was injected:\n{log}"
    );
}

/// A polling job and an enhanced fan-out job on one stream at once: both
/// exact; the fan-out job makes no GetRecords call at all (every one would
/// be throttled here: the emulators never throttle, so the test injects it
/// into both processes), so it takes nothing from the 5 calls/s a shard
/// shares between its polling consumers. Then `kflow consumers`.
#[test]
fn an_efo_job_takes_no_polling_capacity_from_a_polling_job_beside_it() {
    let em = Emulator::start(EmulatorKind::KinesisMock);
    let stream = em.client().create_fresh_stream("efo-side", 2);
    let lines = events(1200, 30, 43);
    let stop_ms = now_ms() + 22_000;
    let efo = JobDir::new(&efo_job(
        "efo-side",
        &stream,
        &em.endpoint(),
        stop_ms,
        "reader = \"efo\"\nconsumer_name = \"side-by-side\"",
    ));
    let polling = JobDir::new(&efo_job(
        "polling-side",
        &stream,
        &em.endpoint(),
        stop_ms,
        "",
    ));
    let env = [("KFLOW_KINESIS_FAULTS", "throttle:0.3")];
    let efo_run = Watched::spawn(efo.loud_job_command().envs(env));
    let polling_run = Watched::spawn(polling.loud_job_command().envs(env));
    let producer = produce_live(
        em.endpoint(),
        stream.clone(),
        &lines,
        12,
        Duration::from_millis(300),
    );
    finish_producing(producer, stop_ms);
    let (efo_status, efo_log) = efo_run.wait(TIMEOUT).unwrap();
    let (polling_status, polling_log) = polling_run.wait(TIMEOUT).unwrap();
    assert!(efo_status.success(), "{efo_log}");
    assert!(polling_status.success(), "{polling_log}");
    let expected = file_reference(&lines);
    assert_rows_equal(&expected, &efo.read("out/result.jsonl"));
    assert_rows_equal(&expected, &polling.read("out/result.jsonl"));
    assert_eq!(
        count_before(&efo_log, " throttled calls retried"),
        0,
        "{efo_log}"
    );
    assert!(count_before(&efo_log, " subscriptions,") >= 2, "{efo_log}");
    assert!(
        count_before(&polling_log, " GetRecords calls") > 0,
        "{polling_log}"
    );
    assert!(
        count_before(&polling_log, " throttled calls retried") > 0,
        "{polling_log}"
    );

    // The consumer stays registered after the run, and the next run reuses it.
    let endpoint = em.endpoint();
    let consumers = |args: &[&str]| {
        let mut all = vec!["consumers"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--stream", &stream, "--endpoint", &endpoint]);
        efo.run_ok(&all, &[]).stdout
    };
    let listed = consumers(&["list"]);
    let row = listed
        .lines()
        .find(|l| l.starts_with("side-by-side "))
        .unwrap_or_else(|| panic!("{listed}"));
    assert!(
        row.contains("ACTIVE") && row.contains("arn:aws:kinesis:"),
        "{listed}"
    );
    let again = efo.run_ok(&["run", "job.toml"], &[]);
    assert!(
        again
            .stderr
            .contains("reusing enhanced fan-out consumer `side-by-side`"),
        "{}",
        again.stderr
    );
    let gone = consumers(&["deregister", "--name", "side-by-side"]);
    assert!(
        gone.contains("deregistered consumer `side-by-side`"),
        "{gone}"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while consumers(&["list"]).contains("side-by-side ") {
        assert!(std::time::Instant::now() < deadline, "still listed");
        thread::sleep(Duration::from_millis(100));
    }
    let missing = efo.run(
        &[
            "consumers",
            "deregister",
            "--name",
            "side-by-side",
            "--stream",
            &stream,
            "--endpoint",
            &endpoint,
        ],
        &[],
    );
    assert_eq!(missing.status.code(), Some(1), "{}", missing.stderr);
    assert!(missing.stderr.contains("no consumer named `side-by-side`"));
}

#[test]
fn efo_keeps_results_and_per_key_order_through_resharding() {
    let em = Emulator::start(EmulatorKind::KinesisMock);
    let client = em.client();
    let stream = client.create_fresh_stream("efo-reshard", 2);
    let stop_ms = now_ms() + 45_000;
    let raw = "\n[sinks.raw]\ninput = \"clicks\"\ntype = \"file\"\npath = \"out/raw.jsonl\"\n";
    let job = efo_job(
        "efo-reshard",
        &stream,
        &em.endpoint(),
        stop_ms,
        "reader = \"efo\"",
    ) + raw;
    let dir = JobDir::new(&job);
    let run = Watched::spawn(&mut dir.loud_job_command());

    let all = events(2000, 30, 47);
    let rounds = four_rounds(&all);
    let put = |round: &str| {
        produce_live(
            em.endpoint(),
            stream.clone(),
            round,
            5,
            Duration::from_millis(100),
        )
        .join()
        .unwrap();
    };
    client.put_while_resharding(&stream, &rounds, put);
    assert!(now_ms() < stop_ms - 2000, "producing took too long");

    exact_run(run, &dir, &all);
    let raw = dir.read("out/raw.jsonl");
    assert_eq!(raw.lines().count(), 2000);
    assert_eq!(per_user_order(&raw), per_user_order(&all));
}

#[test]
fn sigkills_at_random_moments_while_the_stream_is_written_leave_the_exact_result() {
    let em = Emulator::start(EmulatorKind::KinesisMock);
    let stream = em.client().create_fresh_stream("efo-kill", 2);
    let lines = events(1500, 40, 53);
    let stop_ms = now_ms() + 30_000;
    let dir = JobDir::new(&efo_job(
        "efo-kill",
        &stream,
        &em.endpoint(),
        stop_ms,
        "reader = \"efo\"",
    ));
    let seed: u64 = std::env::var("KFLOW_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| now_ms() as u64);
    println!("kill schedule seed: {seed} (KFLOW_CRASH_SEED={seed} replays it)");
    let mut rng = Pcg64::seed_from_u64(seed);
    let producer = produce_live(
        em.endpoint(),
        stream.clone(),
        &lines,
        20,
        Duration::from_millis(400),
    );
    let mut kills = 0;
    while kills < 6 && now_ms() < stop_ms - 8000 {
        let mut child = dir.spawn(&["run", "job.toml", "-q"], &[]);
        // Anywhere from registering the consumer to well into reading.
        thread::sleep(Duration::from_millis(rng.random_range(300..2500)));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();
    }
    finish_producing(producer, stop_ms);
    assert!(kills >= 5, "only {kills} runs were killed mid-stream");
    let out = dir.run_ok(&["run", "job.toml"], &[]);
    assert!(out.stderr.contains("restored checkpoint"), "{}", out.stderr);
    assert_rows_equal(&file_reference(&lines), &dir.read("out/result.jsonl"));
}

/// The network drops every connection twice under the subscriptions
/// (kinesis-mock loses its streams on a restart, so the fault is made by a
/// proxy between kflow and the emulator): resubscribed from the last
/// record passed on, nothing lost or repeated.
#[test]
fn dropped_connections_under_subscriptions_cost_a_pause_not_data() {
    let em = Emulator::start(EmulatorKind::KinesisMock);
    let stream = em.client().create_fresh_stream("efo-cut", 2);
    let proxy = Proxy::start(em.port());
    let lines = events(1500, 40, 59);
    let stop_ms = now_ms() + 25_000;
    let dir = JobDir::new(&efo_job(
        "efo-cut",
        &stream,
        &proxy.endpoint(),
        stop_ms,
        "reader = \"efo\"",
    ));
    let mut run = Watched::spawn(dir.loud_job_command().envs([("KFLOW_LOG", "kflow=debug")]));
    run.wait_for("reading shard", 2, TIMEOUT);
    let producer = produce_live(
        em.endpoint(),
        stream.clone(),
        &lines,
        15,
        Duration::from_millis(300),
    );
    for _ in 0..2 {
        thread::sleep(Duration::from_millis(2000));
        proxy.cut(Duration::from_millis(1500));
    }
    finish_producing(producer, stop_ms);
    let log = exact_run(run, &dir, &lines);
    assert!(proxy.broken() >= 2, "the proxy broke no connection");
    assert!(count_before(&log, " failed;") > 0, "{log}");
}

/// kinesis-mock itself killed (SIGKILL) and started again mid-run, with
/// the state it saved (streams, records, the consumer): the subscriptions
/// fail until it is back, then resume after the last record passed on.
#[test]
fn an_emulator_restart_mid_run_costs_a_pause_not_data() {
    let mut em = Emulator::start_persistent();
    let stream = em.client().create_fresh_stream("efo-restart", 2);
    let lines = events(1200, 40, 61);
    let all: Vec<&str> = lines.lines().collect();
    let (first, second) = all.split_at(600);
    let stop_ms = now_ms() + 30_000;
    let dir = JobDir::new(&efo_job(
        "efo-restart",
        &stream,
        &em.endpoint(),
        stop_ms,
        "reader = \"efo\"",
    ));
    let mut run = Watched::spawn(dir.loud_job_command().envs([("KFLOW_LOG", "kflow=debug")]));
    run.wait_for("reading shard", 2, TIMEOUT);
    let pause = Duration::from_millis(200);
    let written = produce_live(em.endpoint(), stream.clone(), &first.join("\n"), 6, pause);
    let placed = written.join().unwrap();
    // Read at least part of the first half before the emulator goes.
    run.wait_for(
        "checkpoint committed",
        run.count("checkpoint committed") + 2,
        TIMEOUT,
    );
    em.kill_after_save(&placed.last().unwrap().1);
    thread::sleep(Duration::from_millis(1500));
    em.restart();
    let producer = produce_live(em.endpoint(), stream.clone(), &second.join("\n"), 6, pause);
    finish_producing(producer, stop_ms);
    let log = exact_run(run, &dir, &lines);
    assert!(count_before(&log, " failed;") > 0, "{log}");
}

/// Two jobs subscribing as one consumer: the second finds every shard's
/// subscription held (ResourceInUseException), retries for its patience
/// (40 s; 4 s here), then fails with an error that names the cause, not
/// a loop; the first reads on, exact.
#[test]
fn a_second_job_on_the_same_consumer_fails_clearly() {
    let em = Emulator::start(EmulatorKind::KinesisMock);
    let stream = em.client().create_fresh_stream("efo-twice", 1);
    let lines = events(300, 10, 67);
    let stop_ms = now_ms() + 20_000;
    let settings = "reader = \"efo\"\nconsumer_name = \"shared\"";
    let first = JobDir::new(&efo_job(
        "efo-first",
        &stream,
        &em.endpoint(),
        stop_ms,
        settings,
    ));
    let second = JobDir::new(&efo_job(
        "efo-second",
        &stream,
        &em.endpoint(),
        stop_ms,
        settings,
    ));
    let mut run = Watched::spawn(
        first
            .loud_job_command()
            .envs([("KFLOW_LOG", "kflow=debug")]),
    );
    run.wait_for("reading shard", 1, TIMEOUT);
    // The first job's subscription is up once its first event came.
    let producer = produce_live(
        em.endpoint(),
        stream.clone(),
        &lines,
        3,
        Duration::from_millis(300),
    );
    run.wait_for(
        "checkpoint committed",
        run.count("checkpoint committed") + 2,
        TIMEOUT,
    );
    let refused = second.run(&["run", "job.toml"], &[("KFLOW_EFO_IN_USE_MS", "4000")]);
    assert_eq!(refused.status.code(), Some(1), "{}", refused.stderr);
    assert!(
        refused
            .stderr
            .contains("another process holds this consumer's subscription to the shard"),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("consumer_name"),
        "{}",
        refused.stderr
    );
    finish_producing(producer, stop_ms);
    exact_run(run, &first, &lines);
}
