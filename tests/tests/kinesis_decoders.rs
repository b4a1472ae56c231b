//! A Kinesis source decoded by a pool of threads (issue 18, `kflow run
//! --decode-threads N`) gives exactly one thread's outputs, against a real
//! Kinesis API (kinesalite on loopback): the same window rows, the same late
//! records (the stamps' watermarks are one thread's), a sink fed straight
//! from the source in the shard's order byte for byte, KPL aggregates split,
//! bad records in the dead-letter output with their shard and sequence. Kill
//! and graceful-stop restarts with a pool: tests/tests/kinesis.rs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kflow_tests::fixtures::{self, assert_rows_equal, events, file_reference, per_user_order};
use kflow_tests::job::JobDir;
use kflow_tests::kinesis::{Emulator, EmulatorKind};
use kflow_tests::kpl::kpl_aggregate;

/// Sinks for the source's records as they came and the window's late ones.
const RAW_AND_LATE: &str =
    "\n[sinks.raw]\ninput = \"clicks\"\ntype = \"file\"\npath = \"out/raw.jsonl\"\n\
     \n[sinks.late]\ninput = \"per_user.late\"\ntype = \"file\"\npath = \"out/late.jsonl\"\n";

/// The click job over Kinesis stream `stream` read to its tip, with
/// `out_of_orderness`, its raw records and late records in files.
fn job(name: &str, em: &Emulator, stream: &str, out_of_orderness: &str) -> String {
    format!(
        "{}{}{}{RAW_AND_LATE}",
        fixtures::header(name, "200ms"),
        fixtures::kinesis_source_allowing(
            stream,
            &em.endpoint(),
            out_of_orderness,
            "start_at = \"trim_horizon\"\nstop_at = \"latest\"",
        ),
        fixtures::click_windows()
    )
}

/// Checks that two runs wrote the same late records, in the same order,
/// and the same rows; `what` says how the runs differed.
fn assert_same_late_and_rows(a: &JobDir, b: &JobDir, what: &str) {
    assert!(
        a.read("out/late.jsonl") == b.read("out/late.jsonl"),
        "the late records differ {what}"
    );
    assert_rows_equal(&a.read("out/result.jsonl"), &b.read("out/result.jsonl"));
}

/// Runs `job` with `threads` decoding threads, `limit` records a call.
fn run(job: &str, threads: &str, limit: &str) -> JobDir {
    run_with(job, threads, limit, &[])
}

/// [`run`] with more arguments for `kflow run`.
fn run_with(job: &str, threads: &str, limit: &str, more: &[&str]) -> JobDir {
    let dir = JobDir::new(job);
    let mut args = vec!["run", "job.toml", "-q", "--decode-threads", threads];
    args.extend_from_slice(more);
    dir.run_ok(&args, &[("KFLOW_KINESIS_LIMIT", limit)]);
    dir
}

#[test]
fn a_pool_of_decoders_reads_a_shard_as_one_thread_does() {
    let em = Emulator::start(EmulatorKind::Kinesalite);
    let client = em.client();
    let stream = client.create_fresh_stream("pool", 1);
    // Out of order by up to seconds: with 1 s allowed, some are late.
    let lines = events(4000, 60, 41);
    let all: Vec<&str> = lines.lines().collect();
    let (first, second) = all.split_at(2000);
    fixtures::produce(&em, &stream, &(first.join("\n") + "\n"));
    // Mid-stream: a bad record and a KPL aggregate of three events.
    let aggregate = kpl_aggregate(&["a", "b"], &[(0, all[0]), (1, all[1]), (0, all[2])]);
    client.put_records(
        &stream,
        &[
            ("u1", b"not json at all".as_slice()),
            ("a", aggregate.as_slice()),
        ],
    );
    fixtures::produce(&em, &stream, &(second.join("\n") + "\n"));

    let job = job("pool", &em, &stream, "1s");
    // 250 records a call: 17 batches, up to 7 of them decoding at once.
    let one = run(&job, "1", "250");
    let pool = run(&job, "3", "250");

    let raw = one.read("out/raw.jsonl");
    assert_eq!(raw.lines().count(), 4003, "every good record, once");
    assert!(raw == pool.read("out/raw.jsonl"), "the raw copies differ");
    let late = one.read("out/late.jsonl");
    assert!(
        late.lines().count() > 10,
        "too few late records to compare: {late}"
    );
    assert_same_late_and_rows(&one, &pool, "between one thread and a pool");
    let dead = |dir: &JobDir| dir.read(".kflow/pool/dead-letter.jsonl");
    let errors = dead(&one);
    assert_eq!(errors.lines().count(), 1, "{errors}");
    assert!(errors.contains("shardId-000000000000"), "{errors}");
    assert_eq!(errors, dead(&pool));
}

/// Which records are late must not hang on when checkpoints fall: a
/// barrier sends the watermark as it stands, and one sent in the middle of
/// a batch was above the stamps of the batch's later records (each bears
/// the watermark before its batch), which were then judged against it.
/// One GetRecords call returns the whole stream, so without checkpoints no
/// record is late; with checkpoints every millisecond, one decoding thread
/// took barriers inside that batch and judged records after them late (a
/// third of the runs before the fix; CI caught it once as one thread's
/// late records differing from a pool's). A pool checkpoints between
/// batches only; it is held to the same.
#[test]
fn late_records_do_not_depend_on_when_checkpoints_fall() {
    let em = Emulator::start(EmulatorKind::Kinesalite);
    let client = em.client();
    let stream = client.create_fresh_stream("barriers", 1);
    fixtures::produce(&em, &stream, &events(4000, 60, 47));
    let job = job("barriers", &em, &stream, "1s");
    let reference = run_with(&job, "1", "10000", &["--checkpoint-interval", "off"]);
    for threads in ["1", "3"] {
        let often = run_with(&job, threads, "10000", &["--checkpoint-interval", "1ms"]);
        assert_same_late_and_rows(
            &reference,
            &often,
            &format!("with checkpoints every 1 ms, {threads} decoding thread(s)"),
        );
    }
}

#[test]
fn a_pool_of_decoders_keeps_each_keys_order_across_shards() {
    let em = Emulator::start(EmulatorKind::Kinesalite);
    let client = em.client();
    let stream = client.create_fresh_stream("shards", 3);
    let lines = events(3000, 40, 43);
    fixtures::produce(&em, &stream, &lines);
    // Out of order by at most 20 minutes: nothing is late, so the result
    // is the file's whatever the shards' interleaving.
    let pool = run(&job("shards", &em, &stream, "20m"), "3", "100");
    assert_rows_equal(&file_reference(&lines), &pool.read("out/result.jsonl"));
    let raw = pool.read("out/raw.jsonl");
    assert_eq!(raw.lines().count(), 3000);
    assert_eq!(per_user_order(&raw), per_user_order(&lines));
}
