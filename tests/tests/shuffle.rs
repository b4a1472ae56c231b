//! Scale-out (issue 16), the workers' pipeline: a cluster job's parts run
//! as separate processes, against real Kinesis and S3 APIs (kinesalite,
//! s3rver). Source shard parts decode, filter and put each record into the
//! shuffle stream by key group; key-group parts read the shuffle, drop
//! repeats, run the windows and write their own sink files. The union of
//! the groups' files equals the one-process run of the same job, also when
//! a shard part or a group part is SIGKILLed mid-run and started again.
//! Workers (`kflow run` on the cluster job, leases in dynalite) run those
//! parts: three of them give the one-process result, also when one is
//! SIGKILLed and another joins mid-run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kflow_tests::dynamo::DynamoEmulator;
use kflow_tests::fixtures::{self, assert_rows_equal, events, file_reference, kinesis_source};
use kflow_tests::job::{JobDir, TIMEOUT};
use kflow_tests::kinesis::{Emulator, EmulatorKind};
use kflow_tests::process::Watched;
use kflow_tests::s3::{S3Emulator, BUCKET};

const KEY_GROUPS: u32 = 4;

/// Emulators, streams and the job (2 source shards, 2 shuffle shards,
/// [`KEY_GROUPS`] key groups) over `n` click events.
struct Cluster {
    _kinesis: Emulator,
    s3: S3Emulator,
    lines: String,
    shards: Vec<String>,
    dir: JobDir,
}

impl Cluster {
    fn new(name: &str, n: u64, seed: u64) -> Cluster {
        let em = Emulator::start(EmulatorKind::Kinesalite);
        let s3 = S3Emulator::start();
        let client = em.client();
        let stream = client.create_fresh_stream(name, 2);
        let shuffle = client.create_fresh_stream(&format!("{name}-shuffle"), 2);
        let lines = events(n, 40, seed);
        fixtures::produce(&em, &stream, &lines);
        let shards = client
            .list_shards(&stream)
            .into_iter()
            .map(|s| s.id)
            .collect();
        let job = format!(
            "{}checkpoint_store = \"s3://{BUCKET}/store\"\n\
             [job.cluster]\nleases = \"dynamodb://{name}-leases\"\nkey_groups = {KEY_GROUPS}\n\
             shuffle_stream = \"{shuffle}\"\n{}{}",
            fixtures::header(name, "300ms"),
            kinesis_source(
                &stream,
                &em.endpoint(),
                "start_at = \"trim_horizon\"\nstop_at = \"latest\""
            ),
            fixtures::click_windows()
        );
        let dir = JobDir::new(&job);
        Cluster {
            _kinesis: em,
            s3,
            lines,
            shards,
            dir,
        }
    }

    fn env(&self, extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, String)> {
        let mut env = self.s3.env();
        env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        env
    }

    /// Runs part `part` to its end.
    fn run_part(&self, part: &str) -> String {
        let env = self.env(&[]);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let out = self.dir.run_ok(&["run", "job.toml", "--part", part], &env);
        out.stderr
    }

    /// Runs part `part` with `env` until it exits; its status and log.
    fn run_part_with(&self, part: &str, extra: &[(&'static str, &'static str)]) -> (bool, String) {
        let env = self.env(extra);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let out = self.dir.run(&["run", "job.toml", "--part", part], &env);
        (out.status.success(), out.stderr)
    }

    /// Complete checkpoints of part `name` (`group-0001`) in the store.
    fn checkpoints_of(&self, name: &str) -> usize {
        self.s3
            .list(&format!("store/parts/{name}/checkpoints/"))
            .into_iter()
            .filter(|(key, _)| key.ends_with("manifest.json"))
            .count()
    }

    /// Every key group's rows, concatenated.
    fn union(&self) -> String {
        (0..KEY_GROUPS)
            .map(|g| self.dir.read(&format!("out/result.group-{g:04}.jsonl")))
            .collect()
    }
}

#[test]
fn shard_and_group_parts_through_the_shuffle_equal_one_process() {
    let cluster = Cluster::new("shuffle", 3000, 41);
    for shard in &cluster.shards {
        let stderr = cluster.run_part(&format!("shard/{shard}"));
        assert!(stderr.contains("records"), "{stderr}");
    }
    for group in 0..KEY_GROUPS {
        cluster.run_part(&format!("group/{group}"));
    }
    let expected = file_reference(&cluster.lines);
    let union = cluster.union();
    assert_rows_equal(&expected, &union);
    // Every group got rows: the keys spread.
    for group in 0..KEY_GROUPS {
        let rows = cluster
            .dir
            .read(&format!("out/result.group-{group:04}.jsonl"));
        assert!(!rows.is_empty(), "group {group} wrote nothing");
    }
    // Each part checkpointed under its own prefix of the store.
    let stored = cluster.s3.list("store/parts/");
    for part in ["group-0000", "group-0003"] {
        let prefix = format!("store/parts/{part}/");
        assert!(
            stored.iter().any(|(key, _)| key.starts_with(&prefix)),
            "no checkpoint of {part}: {stored:?}"
        );
    }
}

#[test]
fn killed_and_restarted_parts_repeat_nothing() {
    let cluster = Cluster::new("shuffle-kill", 3000, 43);
    // A shard part that dies after its puts up to checkpoint 2 were
    // acknowledged, but before that checkpoint was written, resumes from
    // checkpoint 1 and puts those records again: the groups drop them.
    let first = format!("shard/{}", cluster.shards[0]);
    let (ok, log) = cluster.run_part_with(
        &first,
        &[
            ("KFLOW_KINESIS_LIMIT", "5"),
            ("KFLOW_CRASH_AT", "before-commit:2"),
        ],
    );
    assert!(!ok, "the shard part ended before its checkpoint 2:\n{log}");
    for shard in &cluster.shards {
        cluster.run_part(&format!("shard/{shard}"));
    }
    // A group part SIGKILLed after two checkpoints resumes from its last.
    let env = cluster.env(&[("KFLOW_KINESIS_LIMIT", "5")]);
    let mut command = cluster.dir.job_command(&["--part", "group/1"]);
    command.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    let child = Watched::spawn(&mut command);
    kflow_tests::job::wait_until(TIMEOUT, "two checkpoints of group 1", || {
        cluster.checkpoints_of("group-0001") >= 2
    });
    child.kill();
    let mut duplicates = 0;
    for group in 0..KEY_GROUPS {
        let stderr = cluster.run_part(&format!("group/{group}"));
        duplicates += stderr
            .lines()
            .find(|l| l.trim_start().starts_with("duplicates"))
            .and_then(|l| l.split_whitespace().nth(1))
            .map_or(0, |n| n.replace(',', "").parse::<u64>().unwrap());
    }
    assert!(duplicates > 0, "no repeated record reached a group");
    assert_rows_equal(&file_reference(&cluster.lines), &cluster.union());
}

/// Workers in folders of their own (their own state), over a shared lease
/// table, shuffle stream, checkpoint store and output folder.
struct Workers {
    _kinesis: Emulator,
    s3: S3Emulator,
    dynamo: DynamoEmulator,
    lines: String,
    out: tempfile::TempDir,
    job: String,
    folders: Vec<JobDir>,
}

impl Workers {
    /// `n` events in a 4-shard stream; 16 key groups over 4 shuffle shards.
    fn new(name: &str, n: u64, seed: u64) -> Workers {
        let em = Emulator::start(EmulatorKind::Kinesalite);
        let s3 = S3Emulator::start();
        let dynamo = DynamoEmulator::start();
        let client = em.client();
        let stream = client.create_fresh_stream(name, 4);
        let lines = events(n, 60, seed);
        fixtures::produce(&em, &stream, &lines);
        let out = tempfile::tempdir().unwrap();
        let windows = fixtures::click_windows().replace(
            "path = \"out/result.jsonl\"",
            &format!("path = \"{}/result.jsonl\"", out.path().display()),
        );
        assert!(windows.contains(&out.path().display().to_string()));
        let job = format!(
            "{}checkpoint_store = \"s3://{BUCKET}/store\"\n\
             [job.cluster]\nleases = \"dynamodb://{name}-leases\"\nkey_groups = 16\n\
             shuffle_stream = \"{name}-shuffle\"\nshuffle_shards = 4\nfailover_timeout = \"2s\"\n{}{}",
            fixtures::header(name, "300ms"),
            kinesis_source(
                &stream,
                &em.endpoint(),
                "start_at = \"trim_horizon\"\nstop_at = \"latest\""
            ),
            windows
        );
        Workers {
            _kinesis: em,
            s3,
            dynamo,
            lines,
            out,
            job,
            folders: Vec::new(),
        }
    }

    /// Starts worker `id` in a folder of its own.
    fn start(&mut self, id: &str, extra: &[(&'static str, &'static str)]) -> Watched {
        let dir = JobDir::new(&self.job);
        let mut env = self.dynamo.env();
        env.extend(self.s3.env());
        env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        let mut command = dir.kflow(&["run", "job.toml", "--worker-id", id], &[]);
        command.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        self.folders.push(dir);
        Watched::spawn(&mut command)
    }

    /// Every key group's rows, concatenated.
    fn union(&self) -> String {
        (0..16)
            .map(|g| {
                let path = self.out.path().join(format!("result.group-{g:04}.jsonl"));
                std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            })
            .collect()
    }
}

/// The leases a worker's log says it took.
fn took(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| l.split(": took ").nth(1))
        .map(|key| key.trim().to_string())
        .collect()
}

/// Waits for a worker to exit 0.
fn finishes(worker: Watched, id: &str) -> String {
    let (status, log) = worker.wait(TIMEOUT).unwrap();
    assert!(status.success(), "worker {id} failed ({status}):\n{log}");
    log
}

#[test]
fn three_workers_equal_one_process() {
    let mut workers = Workers::new("workers", 4000, 51);
    let started: Vec<(String, Watched)> = ["w1", "w2", "w3"]
        .iter()
        .map(|id| (id.to_string(), workers.start(id, &[])))
        .collect();
    let mut finished_parts = 0;
    let mut spread = Vec::new();
    for (id, worker) in started {
        let log = finishes(worker, &id);
        let line = log
            .lines()
            .find(|l| l.contains("done:"))
            .unwrap_or_default();
        let finished: u64 = line
            .split(", ")
            .find(|p| p.ends_with("finished"))
            .and_then(|p| p.split_whitespace().next())
            .map_or(0, |n| n.parse().unwrap());
        finished_parts += finished;
        spread.push(finished);
    }
    // 4 shards and 16 key groups, each finished once, spread over all.
    assert_eq!(finished_parts, 20);
    assert!(
        spread.iter().all(|n| *n > 0),
        "parts per worker: {spread:?}"
    );
    assert_rows_equal(&file_reference(&workers.lines), &workers.union());
}

#[test]
fn a_sigkilled_worker_fails_over_and_a_joining_worker_takes_a_share() {
    let mut workers = Workers::new("failover", 4000, 53);
    // Slow reads, so that the run lasts past the kill and the join.
    let slow = [("KFLOW_KINESIS_LIMIT", "20")];
    let w1 = workers.start("w1", &slow);
    let w2 = workers.start("w2", &slow);
    let w3 = workers.start("w3", &slow);
    // w3 holds parts and their checkpoints are in the store: kill it.
    kflow_tests::job::wait_until(TIMEOUT, "checkpoints of some parts", || {
        workers.s3.list("store/parts/").len() > 10
    });
    let w3_log = w3.log();
    w3.kill();
    let held = took(&w3_log);
    assert!(!held.is_empty(), "w3 held no lease:\n{w3_log}");
    let w4 = workers.start("w4", &slow);
    let mut taken = Vec::new();
    for (id, worker) in [("w1", w1), ("w2", w2), ("w4", w4)] {
        let log = finishes(worker, id);
        let mine = took(&log);
        assert!(id != "w4" || !mine.is_empty(), "w4 took no lease:\n{log}");
        taken.extend(mine);
    }
    // Whatever w3 held and had not finished, another worker took over.
    for key in held {
        let finished = w3_log.contains(&format!("{key} finished"));
        assert!(
            finished || taken.contains(&key),
            "nobody took {key} over from w3"
        );
    }
    assert_rows_equal(&file_reference(&workers.lines), &workers.union());
}
