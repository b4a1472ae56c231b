//! Watching a running job (issue 14): a real Prometheus server scrapes
//! kflow's `/metrics` over a followed file and over kinesalite and its
//! API shows the records, watermarks, per-shard lag and checkpoint age;
//! `promtool` accepts the exposition; `/healthz` and `/readyz` answer; and
//! `kflow top --once` names the source or shard that holds a window's
//! watermark back, and why.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::time::Duration;

use kflow_tests::job::{now_ms, JobDir, TIMEOUT};
use kflow_tests::kinesis::{Emulator, EmulatorKind};
use kflow_tests::process::Watched;
use kflow_tests::prometheus::{http_get, metrics_addr, promtool_check, Prometheus, Sample};

/// `n` events of ten users, one second apart from `start_ms`, numbered
/// from `first`.
fn events(first: u64, n: u64, start_ms: i64) -> String {
    let mut out = String::new();
    for i in first..first + n {
        let ts = start_ms + i as i64 * 1000;
        let _ = writeln!(out, r#"{{"ts":{ts},"user_id":"u{}","amount":{i}}}"#, i % 10);
    }
    out
}

/// A job reading `sources` (`[sources.*]` tables) into one window.
fn job(name: &str, sources: &str, inputs: &str) -> String {
    format!(
        "[job]\nname = \"{name}\"\ncheckpoint_interval = \"1s\"\n{sources}\n\
         [windows.per_user]\ninput = {inputs}\nkey = [\"user_id\"]\ntumbling = \"1m\"\n\
         aggregates = {{ events = \"count()\", revenue = \"sum(amount)\" }}\n\n\
         [sinks.result]\ninput = \"per_user\"\ntype = \"file\"\npath = \"out/result.jsonl\"\n"
    )
}

fn file_source(name: &str, path: &str, idle_timeout: Option<&str>) -> String {
    let idle = idle_timeout.map_or(String::new(), |t| format!(", idle_timeout = \"{t}\""));
    format!(
        "\n[sources.{name}]\ntype = \"file\"\npath = \"{path}\"\nfollow = true\n\
         event_time = {{ field = \"ts\" }}\nwatermark = {{ max_out_of_orderness = \"5s\"{idle} }}\n"
    )
}

fn kinesis_source(name: &str, stream: &str, em: &Emulator, idle_timeout: &str) -> String {
    format!(
        "\n[sources.{name}]\ntype = \"kinesis\"\nstream = \"{stream}\"\nendpoint = \"{}\"\n\
         start_at = \"trim_horizon\"\nevent_time = {{ field = \"ts\" }}\n\
         watermark = {{ max_out_of_orderness = \"5s\", idle_timeout = \"{idle_timeout}\" }}\n",
        em.endpoint()
    )
}

/// Starts `kflow run job.toml --metrics 127.0.0.1:0` in `dir`.
fn start(dir: &JobDir, env: &[(&str, String)]) -> (Watched, std::net::SocketAddr) {
    let mut command = dir.loud_job_command();
    command.args(["--metrics", "127.0.0.1:0"]);
    for (k, v) in env {
        command.env(k, v);
    }
    let mut run = Watched::spawn(&mut command);
    let addr = metrics_addr(&mut run);
    (run, addr)
}

fn one_value(samples: &[Sample]) -> Option<f64> {
    match samples {
        [(_, v)] => Some(*v),
        _ => None,
    }
}

#[test]
fn issue_14_prometheus_scrapes_a_followed_file_job() {
    let start_ms = now_ms() - 3_600_000;
    let dir = JobDir::new(&job(
        "scraped",
        &file_source("clicks", "clicks.jsonl", None),
        "\"clicks\"",
    ));
    dir.write("clicks.jsonl", &events(0, 2_000, start_ms));
    let (run, addr) = start(&dir, &[]);

    // The endpoint itself: health, readiness, a valid exposition.
    assert_eq!(http_get(addr, "/healthz").0, 200);
    kflow_tests::job::wait_until(TIMEOUT, "/readyz says ready", || {
        http_get(addr, "/readyz").0 == 200
    });
    let (status, exposition) = http_get(addr, "/metrics");
    assert_eq!(status, 200);
    if let Err(problems) = promtool_check(&exposition) {
        panic!("promtool check metrics failed:\n{problems}\n--- exposition ---\n{exposition}");
    }
    assert_eq!(http_get(addr, "/nothing").0, 404);

    let prometheus = Prometheus::start(addr);
    let records = r#"kflow_source_records_read_total{job="scraped",source="clicks"}"#;
    prometheus.wait_for(records, TIMEOUT, |s| one_value(s) == Some(2_000.0));
    let watermark = r#"kflow_source_watermark_timestamp_seconds{source="clicks"}"#;
    let before =
        one_value(&prometheus.wait_for(watermark, TIMEOUT, |s| one_value(s).is_some())).unwrap();
    // 2,000 events a second apart, less 5 s of allowed disorder.
    let expected = (start_ms + 1_999_000 - 5_000) as f64 / 1e3;
    assert!((before - expected).abs() < 0.01, "{before} vs {expected}");

    // The file grows: the counter follows and the watermark moves on.
    let more = events(2_000, 500, start_ms);
    std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join("clicks.jsonl"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, more.as_bytes()))
        .unwrap();
    prometheus.wait_for(records, TIMEOUT, |s| one_value(s) == Some(2_500.0));
    prometheus.wait_for(watermark, TIMEOUT, |s| {
        one_value(s).is_some_and(|w| w > before)
    });
    prometheus.wait_for(
        r#"kflow_window_watermark_timestamp_seconds{node="per_user"}"#,
        TIMEOUT,
        |s| one_value(s).is_some_and(|w| w > before),
    );
    // Checkpoints every second: the age stays well under 3 intervals, and
    // the count rises.
    let age = prometheus.wait_for("kflow_checkpoint_age_seconds", TIMEOUT, |s| {
        one_value(s).is_some()
    });
    assert!(one_value(&age).unwrap() < 3.0, "{age:?}");
    prometheus.wait_for("kflow_checkpoints_total", TIMEOUT, |s| {
        one_value(s).is_some_and(|n| n >= 3.0)
    });
    prometheus.wait_for("kflow_window_rows_emitted_total", TIMEOUT, |s| {
        one_value(s).is_some_and(|n| n > 0.0)
    });
    // The sink counts each row the window emitted once, as it writes it.
    prometheus.wait_for(
        "sum(kflow_sink_rows_written_total) - sum(kflow_window_rows_emitted_total)",
        TIMEOUT,
        |s| one_value(s) == Some(0.0),
    );
    prometheus.wait_for("process_resident_memory_bytes", TIMEOUT, |s| {
        one_value(s).is_some_and(|n| n > 1e6)
    });

    run.terminate();
    let (status, log) = run.wait(Duration::from_secs(30)).unwrap();
    assert!(status.success(), "{status}\n{log}");
}

#[test]
fn issue_14_prometheus_sees_each_shard_over_kinesalite() {
    let em = Emulator::start(EmulatorKind::Kinesalite);
    let client = em.client();
    let stream = client.create_fresh_stream("scraped", 2);
    let start_ms = now_ms() - 3_600_000;
    let lines = events(0, 1_000, start_ms);
    let records: Vec<(String, &str)> = lines
        .lines()
        .enumerate()
        .map(|(i, line)| (format!("key-{i}"), line))
        .collect();
    client.put_records(&stream, &records);
    let dir = JobDir::new(&job(
        "kinesis-scraped",
        &kinesis_source("clicks", &stream, &em, "1h"),
        "\"clicks\"",
    ));
    let (run, addr) = start(&dir, &[]);
    let prometheus = Prometheus::start(addr);
    prometheus.wait_for(
        r#"kflow_source_records_read_total{source="clicks"}"#,
        TIMEOUT,
        |s| one_value(s) == Some(1_000.0),
    );
    // MillisBehindLatest, arrival age and watermark per shard.
    for metric in [
        "kflow_shard_millis_behind_latest_seconds",
        "kflow_shard_arrival_age_seconds",
        "kflow_shard_watermark_timestamp_seconds",
        "kflow_shard_records_read_total",
    ] {
        let series = prometheus.wait_for(metric, TIMEOUT, |s| s.len() == 2);
        for (labels, _) in &series {
            assert!(labels["shard"].starts_with("shardId-"), "{labels:?}");
            assert_eq!(labels["source"], "clicks");
        }
    }
    let shares = prometheus.query("sum(kflow_shard_records_share)");
    assert!(
        (one_value(&shares).unwrap() - 1.0).abs() < 1e-9,
        "{shares:?}"
    );
    prometheus.wait_for(r#"kflow_kinesis_shards{state="reading"}"#, TIMEOUT, |s| {
        one_value(s) == Some(2.0)
    });
    prometheus.wait_for(
        "kflow_kinesis_get_records_duration_seconds_count",
        TIMEOUT,
        |s| one_value(s).is_some_and(|n| n >= 2.0),
    );
    let (_, exposition) = http_get(addr, "/metrics");
    if let Err(problems) = promtool_check(&exposition) {
        panic!("promtool check metrics failed:\n{problems}\n--- exposition ---\n{exposition}");
    }
    run.terminate();
    let (status, log) = run.wait(Duration::from_secs(30)).unwrap();
    assert!(status.success(), "{status}\n{log}");
}

/// `kflow top --once` against the job in `dir` (at `addr`).
fn top_once(dir: &JobDir, addr: std::net::SocketAddr) -> String {
    let out = dir.run_ok(
        &["top", "job.toml", "--once", "--metrics", &addr.to_string()],
        &[],
    );
    out.stdout
}

#[test]
fn issue_14_top_names_the_idle_shard_that_holds_the_watermark() {
    let em = Emulator::start(EmulatorKind::Kinesalite);
    let client = em.client();
    let stream = client.create_fresh_stream("held", 2);
    let start_ms = now_ms() - 3_600_000;
    let lines = events(0, 300, start_ms);
    // One partition key: every record lands on one shard, the other idles.
    let records: Vec<(&str, &str)> = lines.lines().map(|line| ("one-key", line)).collect();
    let put = client.put_records(&stream, &records);
    let busy = put[0].0.clone();
    let shards = client.list_shards(&stream);
    let idle = shards
        .iter()
        .map(|s| s.id.clone())
        .find(|id| *id != busy)
        .expect("two shards");
    let dir = JobDir::new(&job(
        "held",
        &kinesis_source("clicks", &stream, &em, "1h"),
        "\"clicks\"",
    ));
    let (run, addr) = start(&dir, &[]);
    kflow_tests::job::wait_until(TIMEOUT, "every record read", || {
        kflow::cli::top::fetch(addr).is_ok_and(|r| r.read == 300)
    });
    // A source publishes its hot keys at most once a second, so the
    // screen right after the last record may not show them yet.
    let mut screen = String::new();
    kflow_tests::job::wait_until(TIMEOUT, "the hot partition keys", || {
        screen = top_once(&dir, addr);
        screen.contains("hot partition keys")
    });
    let held = format!("watermark held by clicks/{idle}");
    assert!(screen.contains(&held), "expected `{held}` in:\n{screen}");
    assert!(
        screen.contains("idle: no records read yet, below its idle_timeout 3600s"),
        "{screen}"
    );
    // The hot partition key and the busy shard's whole share show too.
    assert!(screen.contains("hot partition keys: one-key"), "{screen}");
    assert!(screen.contains("share 100%"), "{screen}");
    run.terminate();
    let (status, log) = run.wait(Duration::from_secs(30)).unwrap();
    assert!(status.success(), "{status}\n{log}");
}

#[test]
fn issue_14_top_names_the_file_source_that_stopped_growing() {
    let start_ms = now_ms() - 3_600_000;
    let sources = file_source("fast", "fast.jsonl", Some("10m"))
        + &file_source("slow", "slow.jsonl", Some("10m"));
    let dir = JobDir::new(&job("two-files", &sources, "[\"fast\", \"slow\"]"));
    // `slow` stops an hour of event time before `fast`.
    dir.write("slow.jsonl", &events(0, 100, start_ms));
    dir.write("fast.jsonl", &events(0, 100, start_ms + 3_600_000));
    let (run, addr) = start(&dir, &[]);
    kflow_tests::job::wait_until(TIMEOUT, "both files read", || {
        kflow::cli::top::fetch(addr).is_ok_and(|r| r.read == 200)
    });
    // Quiet for a few seconds: the holder's reason says for how long.
    std::thread::sleep(Duration::from_secs(3));
    let screen = top_once(&dir, addr);
    assert!(
        screen.contains("watermark held by slow, 3600s behind: idle for"),
        "{screen}"
    );
    assert!(screen.contains("below its idle_timeout 600s"), "{screen}");
    assert!(screen.contains("hot window keys: u"), "{screen}");
    run.terminate();
    let (status, log) = run.wait(Duration::from_secs(30)).unwrap();
    assert!(status.success(), "{status}\n{log}");
}

#[test]
fn issue_14_top_says_clearly_when_the_job_serves_no_metrics() {
    let dir = JobDir::new(&job(
        "silent",
        &file_source("clicks", "clicks.jsonl", None),
        "\"clicks\"",
    ));
    let out = dir.run(&["top", "job.toml", "--once"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("serves no metrics"), "{}", out.stderr);
    // And a job that names an address nobody listens on.
    let [port] = kflow_tests::kinesis::free_ports::<1>();
    let out = dir.run(
        &[
            "top",
            "job.toml",
            "--once",
            "--metrics",
            &format!("127.0.0.1:{port}"),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("cannot reach the job"),
        "{}",
        out.stderr
    );
}
