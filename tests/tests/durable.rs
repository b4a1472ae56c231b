//! Checkpoints that survive the machine (issue 15): checkpoints uploaded to
//! an S3 emulator (s3rver), an exactly-once S3 sink, restores on a fresh
//! machine (a new, empty job folder), S3 outages, retention and rollback
//! to an older checkpoint.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use kflow_tests::fixtures::{assert_rows_equal, events, file_reference, kinesis_source, produce};
use kflow_tests::job::JobDir;
use kflow_tests::job::TIMEOUT;
use kflow_tests::kinesis::{Emulator, EmulatorKind};
use kflow_tests::process::Watched;
use kflow_tests::prometheus::{http_get, metrics_addr};
use kflow_tests::s3::{S3Emulator, BUCKET};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;

/// The clickstream job over `source`, checkpoints every 300 ms to the
/// store at `store/`, results into the S3 sink at `out/`.
fn job(name: &str, source: &str) -> String {
    let windows = kflow_tests::fixtures::click_windows().replace(
        "type = \"file\"\npath = \"out/result.jsonl\"",
        &format!("type = \"s3\"\npath = \"s3://{BUCKET}/out\""),
    );
    assert!(windows.contains("type = \"s3\""), "{windows}");
    format!(
        "[job]\nname = \"{name}\"\ncheckpoint_interval = \"300ms\"\n\
         checkpoint_store = \"s3://{BUCKET}/store\"\n{source}{windows}"
    )
}

/// A kinesalite stream holding `n` click events, an S3 emulator, the
/// events, and a bounded Kinesis source over the stream.
fn setup(name: &str, n: u64, seed: u64) -> (Emulator, S3Emulator, String, String) {
    let em = Emulator::start(EmulatorKind::Kinesalite);
    let s3 = S3Emulator::start();
    let stream = em.client().create_fresh_stream(name, 2);
    let lines = events(n, 40, seed);
    produce(&em, &stream, &lines);
    let source = kinesis_source(
        &stream,
        &em.endpoint(),
        "start_at = \"trim_horizon\"\nstop_at = \"latest\"",
    );
    (em, s3, lines, source)
}

/// Every committed part of the S3 sink, concatenated in part order.
fn sink_rows(s3: &S3Emulator) -> String {
    s3.list("out/part-")
        .into_iter()
        .map(|(key, _)| String::from_utf8(s3.get(&key)).unwrap())
        .collect()
}

/// Complete checkpoints in the store.
fn manifests(s3: &S3Emulator) -> Vec<String> {
    s3.list("store/checkpoints/")
        .into_iter()
        .map(|(key, _)| key)
        .filter(|key| key.ends_with("manifest.json"))
        .collect()
}

/// The emulator's environment and `extra`, for [`JobDir::run`].
fn env_of(s3: &S3Emulator, extra: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    let mut env = s3.env();
    env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    env
}

fn borrowed<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// The clickstream job over `source` with the store, results in the local
/// file sink `out/result.jsonl`.
fn job_with_file_sink(name: &str, source: &str, interval: &str) -> String {
    format!(
        "[job]\nname = \"{name}\"\ncheckpoint_interval = \"{interval}\"\n\
         checkpoint_store = \"s3://{BUCKET}/store\"\n{source}{}",
        kflow_tests::fixtures::click_windows()
    )
}

#[test]
fn issue_15_killed_runs_and_lost_machines_still_give_the_exact_output() {
    let (_em, s3, lines, source) = setup("durable", 2_000, 15);
    let job = job("durable", &source);
    // 20 records per GetRecords call: the run lasts several seconds.
    let env = env_of(
        &s3,
        &[("KFLOW_KINESIS_LIMIT", "20"), ("KFLOW_LOG", "kflow=debug")],
    );
    let mut rng = Pcg64::seed_from_u64(15);
    let mut dir = JobDir::new(&job);
    let (mut kills, mut machines, mut restored) = (0, 1, 0);
    while kills < 10 {
        let mut command = dir.loud_job_command();
        let run = Watched::spawn(command.envs(env.iter().map(|(k, v)| (*k, v.as_str()))));
        std::thread::sleep(Duration::from_millis(rng.random_range(400..1800)));
        let log = run.log();
        restored += usize::from(log.contains("downloaded checkpoint"));
        if log.contains("finished in") {
            break;
        }
        run.kill();
        kills += 1;
        if kills % 3 == 0 {
            // The machine is lost: a new one starts with an empty folder.
            dir = JobDir::new(&job);
            machines += 1;
        }
    }
    assert!(kills >= 10, "the job finished after only {kills} kills");
    let last = dir.run(
        &["run", "job.toml"],
        &env_of(&s3, &[])
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect::<Vec<_>>(),
    );
    assert!(last.status.success(), "{}", last.stderr);
    println!("{kills} kills, {machines} machines, {restored} restores seen mid-run");
    assert_rows_equal(&file_reference(&lines), &sink_rows(&s3));
    // Retention keeps at most three complete checkpoints.
    let kept = manifests(&s3);
    assert!(!kept.is_empty() && kept.len() <= 3, "{kept:?}");
}

#[test]
fn issue_15_an_s3_outage_costs_failed_uploads_not_the_run() {
    let (_em, mut s3, lines, source) = setup("outage", 2_000, 16);
    // Two jobs over the same stream. `windows` writes its results to a
    // local file: only its store uploads fail while S3 is away, and local
    // checkpoints go on. `archive` also writes the raw records into S3 as
    // they come: its checkpoints fail (a part cannot go up) and are retried.
    let windows = JobDir::new(&job_with_file_sink("outage", &source, "500ms"));
    let archive = JobDir::new(&format!(
        "{}\n[sinks.archive]\ninput = \"clicks\"\ntype = \"s3\"\npath = \"s3://{BUCKET}/out\"\n",
        job_with_file_sink("archive", &source, "500ms").replace("/store\"", "/store-archive\"")
    ));
    // 5 records per call: about 50 records/s, 40 s of reading.
    let env = env_of(
        &s3,
        &[("KFLOW_KINESIS_LIMIT", "5"), ("KFLOW_LOG", "kflow=debug")],
    );
    let start = |dir: &JobDir| {
        let mut command = dir.loud_job_command();
        command.args(["--metrics", "127.0.0.1:0"]);
        let mut run = Watched::spawn(command.envs(borrowed(&env)));
        let addr = metrics_addr(&mut run);
        run.wait_for("checkpoint durable in", 1, TIMEOUT);
        (run, addr)
    };
    let (mut run, addr) = start(&windows);
    let (archiving, archive_addr) = start(&archive);
    s3.stop();
    let read_before = metric(archive_addr, "kflow_source_records_read_total");
    std::thread::sleep(Duration::from_secs(20));
    let failures = metric(addr, "kflow_checkpoint_upload_failures_total");
    assert!(failures >= 1.0, "no upload failed during the outage");
    let failed = metric(archive_addr, "kflow_checkpoint_failures_total");
    assert!(failed >= 1.0, "no checkpoint failed for the S3 sink");
    let read_after = metric(archive_addr, "kflow_source_records_read_total");
    assert!(
        read_after > read_before + 100.0,
        "the pipeline stalled during the outage: {read_before} -> {read_after} records"
    );
    let durable = run.count("checkpoint durable in");
    s3.restart();
    // Checkpoints become durable again.
    run.wait_for("checkpoint durable in", durable + 2, TIMEOUT);
    let (status, log) = run.wait(TIMEOUT).unwrap();
    assert!(status.success(), "{status}\n{log}");
    assert!(
        log.contains("not uploaded (the next checkpoint tries again)"),
        "{log}"
    );
    let reference = file_reference(&lines);
    assert_rows_equal(&reference, &windows.read("out/result.jsonl"));
    assert!(!manifests(&s3).is_empty());
    let (status, log) = archiving.wait(TIMEOUT).unwrap();
    assert!(status.success(), "{status}\n{log}");
    assert!(log.contains("failed, retrying in"), "{log}");
    assert_rows_equal(&reference, &archive.read("out/result.jsonl"));
    let sorted = |text: &str| {
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        lines.sort();
        lines
    };
    assert_eq!(
        sorted(&sink_rows(&s3)),
        sorted(&lines),
        "the S3 parts hold every record once"
    );
}

/// A counter or gauge of the run at `addr`, summed over its series.
fn metric(addr: std::net::SocketAddr, name: &str) -> f64 {
    let (_, text) = http_get(addr, "/metrics");
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn issue_15_from_checkpoint_rolls_back_to_an_older_checkpoint() {
    let (_em, s3, lines, source) = setup("rollback", 1_500, 17);
    let dir = JobDir::new(&job_with_file_sink("rollback", &source, "300ms"));
    let env = env_of(
        &s3,
        &[("KFLOW_KINESIS_LIMIT", "20"), ("KFLOW_LOG", "kflow=debug")],
    );
    let mut command = dir.loud_job_command();
    let mut run = Watched::spawn(command.envs(borrowed(&env)));
    run.wait_for("checkpoint durable in", 4, TIMEOUT);
    run.terminate();
    let (status, log) = run.wait(TIMEOUT).unwrap();
    assert!(status.success(), "{status}\n{log}");
    assert!(log.contains("stopped gracefully"), "{log}");
    // The store keeps three; roll back to the oldest.
    let listing = dir
        .run_ok(&["checkpoints", "job.toml"], &borrowed(&env))
        .stdout;
    assert!(listing.contains("3 complete checkpoint(s)"), "{listing}");
    // `plan --against` the store (issue 20): its newest checkpoint decides.
    let store = format!("s3://{BUCKET}/store");
    let same = dir.run(&["plan", "job.toml", "--against", &store], &borrowed(&env));
    assert_eq!(
        same.status.code(),
        Some(0),
        "{}{}",
        same.stdout,
        same.stderr
    );
    assert!(
        same.stdout.contains("verdict: compatible"),
        "{}",
        same.stdout
    );
    dir.write(
        "changed.toml",
        &dir.read("job.toml")
            .replace("tumbling = \"1m\"", "tumbling = \"2m\""),
    );
    let changed = dir.run(
        &["plan", "changed.toml", "--against", &store],
        &borrowed(&env),
    );
    assert_eq!(
        changed.status.code(),
        Some(1),
        "{}{}",
        changed.stdout,
        changed.stderr
    );
    assert!(
        changed.stdout.contains("incompatible"),
        "{}",
        changed.stdout
    );
    let oldest = listing
        .lines()
        .rev()
        .find_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        .expect("a checkpoint id");
    let rolled = dir.run(
        &["run", "job.toml", "--from-checkpoint", &oldest.to_string()],
        &borrowed(&env),
    );
    assert!(rolled.status.success(), "{}", rolled.stderr);
    assert!(
        rolled
            .stderr
            .contains(&format!("restored checkpoint {oldest} ")),
        "{}",
        rolled.stderr
    );
    assert_rows_equal(&file_reference(&lines), &dir.read("out/result.jsonl"));
    // A checkpoint the store does not have is a clear error.
    let missing = dir.run(
        &["run", "job.toml", "--from-checkpoint", "999999"],
        &borrowed(&env),
    );
    assert_eq!(missing.status.code(), Some(1), "{}", missing.stderr);
    assert!(
        missing.stderr.contains("has no checkpoint 999999"),
        "{}",
        missing.stderr
    );
}

#[test]
fn issue_15_a_damaged_newest_checkpoint_is_skipped_for_the_one_before() {
    let (_em, s3, lines, source) = setup("damaged", 1_500, 18);
    // Results gzipped into the S3 sink.
    let job = job("damaged", &source).replace(
        &format!("path = \"s3://{BUCKET}/out\""),
        &format!("path = \"s3://{BUCKET}/out\"\ncompression = \"gzip\""),
    );
    let env = env_of(
        &s3,
        &[("KFLOW_KINESIS_LIMIT", "20"), ("KFLOW_LOG", "kflow=debug")],
    );
    let first = JobDir::new(&job);
    let mut command = first.loud_job_command();
    let mut run = Watched::spawn(command.envs(borrowed(&env)));
    run.wait_for("checkpoint durable in", 3, TIMEOUT);
    run.terminate();
    let (status, log) = run.wait(TIMEOUT).unwrap();
    assert!(status.success(), "{status}\n{log}");
    // Damage the newest checkpoint: one of its own files goes missing.
    let newest = manifests(&s3).pop().expect("a checkpoint");
    let folder = newest.trim_end_matches("manifest.json");
    let own: Vec<String> = s3
        .list(folder)
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| !k.ends_with("manifest.json"))
        .collect();
    s3.client().delete(BUCKET, &own[..1]).unwrap();
    // A new machine restores the one before, says so, and finishes exactly.
    let second = JobDir::new(&job);
    let out = second.run(&["run", "job.toml"], &borrowed(&env));
    assert!(out.status.success(), "{}", out.stderr);
    assert!(out.stderr.contains("is incomplete"), "{}", out.stderr);
    assert!(
        out.stderr.contains("trying the one before"),
        "{}",
        out.stderr
    );
    let parts: String = s3
        .list("out/part-")
        .into_iter()
        .map(|(key, _)| {
            assert!(key.ends_with(".jsonl.gz"), "{key}");
            let mut text = String::new();
            std::io::Read::read_to_string(
                &mut flate2::read::GzDecoder::new(&s3.get(&key)[..]),
                &mut text,
            )
            .unwrap();
            text
        })
        .collect();
    assert_rows_equal(&file_reference(&lines), &parts);
}

#[test]
fn issue_15_large_parts_go_up_in_pieces_and_manifests_name_the_final_ones() {
    let s3 = S3Emulator::start();
    // About 12 MB of lines, straight from a followed file into the sink:
    // one part, uploaded in 5 MiB pieces.
    let lines = events(90_000, 1_000, 19);
    assert!(lines.len() > 11 << 20, "{}", lines.len());
    let job = format!(
        "[job]\nname = \"pieces\"\ncheckpoint_interval = \"200ms\"\n\
         {}\n[sinks.archive]\ntype = \"s3\"\ninput = \"clicks\"\npath = \"s3://{BUCKET}/raw\"\n",
        kflow_tests::fixtures::file_source("clicks.jsonl", "5s")
            .replace("type = \"file\"", "type = \"file\"\nfollow = true")
    );
    let dir = JobDir::new(&job);
    dir.write("clicks.jsonl", &lines);
    let env = env_of(&s3, &[("KFLOW_S3_PART_BYTES", "5242880")]);
    let mut command = dir.loud_job_command();
    let run = Watched::spawn(command.envs(borrowed(&env)));
    kflow_tests::job::wait_until(TIMEOUT, "a manifest names the final parts", || {
        !s3.list("raw/_manifests/").is_empty()
    });
    run.terminate();
    let (status, log) = run.wait(TIMEOUT).unwrap();
    assert!(status.success(), "{status}\n{log}");
    let parts = s3.list("raw/part-");
    assert!(parts.iter().any(|(_, size)| *size > 5 << 20), "{parts:?}");
    let written: String = parts
        .iter()
        .map(|(key, _)| String::from_utf8(s3.get(key)).unwrap())
        .collect();
    assert_eq!(written, lines, "the parts hold the input, once, in order");
    let (newest, _) = s3.list("raw/_manifests/").pop().unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&s3.get(&newest)).unwrap();
    let final_parts = manifest["parts"].as_u64().unwrap();
    assert!(
        final_parts >= 1 && final_parts as usize <= parts.len(),
        "{manifest}"
    );
}
