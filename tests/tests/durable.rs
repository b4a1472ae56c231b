//! Checkpoints that survive the machine (issue 15): checkpoints uploaded to
//! an S3 emulator (s3rver), an exactly-once S3 sink, restores on a fresh
//! machine (a new, empty job folder), S3 outages, retention and rollback
//! to an older checkpoint.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use kflow_tests::fixtures::{assert_rows_equal, events, file_reference, kinesis_source, produce};
use kflow_tests::job::JobDir;
use kflow_tests::kinesis::{Emulator, EmulatorKind};
use kflow_tests::process::Watched;
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

fn env_of<'a>(s3: &'a S3Emulator, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, String)> {
    let mut env = s3.env();
    env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    env
}

#[test]
fn issue_15_killed_runs_and_lost_machines_still_give_the_exact_output() {
    let em = Emulator::start(EmulatorKind::Kinesalite);
    let s3 = S3Emulator::start();
    let stream = em.client().create_fresh_stream("durable", 2);
    let lines = events(2_000, 40, 15);
    produce(&em, &stream, &lines);
    let source = kinesis_source(
        &stream,
        &em.endpoint(),
        "start_at = \"trim_horizon\"\nstop_at = \"latest\"",
    );
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
