//! Scale-out (issue 16), the workers' pipeline: a cluster job's parts run
//! as separate processes, against real Kinesis and S3 APIs (kinesalite,
//! s3rver). Source shard parts decode, filter and put each record into the
//! shuffle stream by key group; key-group parts read the shuffle, drop
//! repeats, run the windows and write their own sink files. The union of
//! the groups' files equals the one-process run of the same job, also when
//! a shard part or a group part is SIGKILLed mid-run and started again.
//! Workers (`kflow run` on the cluster job, leases in dynalite) run those
//! parts: three of them give the one-process result, also when one is
//! SIGKILLed and another joins mid-run, or a source shard splits mid-run.
//! No lease is ever run by two part processes at once (sampled from
//! `/proc`), and the lease table's history shows every change of hands
//! happened when the lease was free or its owner long silent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use kflow::cluster::{Change, Lease, LeaseTable, Part};
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
    // `plan --against` the worker's state and the store: part by part
    // (issue 20).
    let env = cluster.env(&[]);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let parts = cluster.shards.len() + KEY_GROUPS as usize;
    for target in [".kflow/shuffle".to_string(), format!("s3://{BUCKET}/store")] {
        let out = cluster
            .dir
            .run(&["plan", "job.toml", "--against", &target], &env);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{target}: {}{}",
            out.stdout,
            out.stderr
        );
        assert!(
            out.stdout
                .contains(&format!("{parts} part(s) with checkpoints")),
            "{target}: {}",
            out.stdout
        );
        assert!(
            out.stdout.contains("part group/0003: job `shuffle`"),
            "{}",
            out.stdout
        );
        assert!(
            out.stdout.contains("verdict for the job: compatible"),
            "{}",
            out.stdout
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
    kinesis: Emulator,
    s3: S3Emulator,
    dynamo: DynamoEmulator,
    name: String,
    stream: String,
    lines: String,
    out: tempfile::TempDir,
    job: String,
    folders: Vec<JobDir>,
}

/// The jobs' `failover_timeout`: a worker taking 20 leases at once on a
/// loaded 2-core machine needs more than 2 s of fence to start all their
/// parts before the first renewal.
const FAILOVER_MS: i64 = 4000;

impl Workers {
    /// `n` events in a 4-shard stream, all produced before the workers
    /// start; 16 key groups over 4 shuffle shards.
    fn new(name: &str, n: u64, seed: u64) -> Workers {
        let workers = Workers::unproduced(name, n, seed, "latest");
        fixtures::produce(&workers.kinesis, &workers.stream, &workers.lines);
        workers
    }

    /// The same, none of the events produced yet, the source stopping at
    /// `stop_at`.
    fn unproduced(name: &str, n: u64, seed: u64, stop_at: &str) -> Workers {
        let em = Emulator::start(EmulatorKind::Kinesalite);
        let s3 = S3Emulator::start();
        let dynamo = DynamoEmulator::start();
        let stream = em.client().create_fresh_stream(name, 4);
        let lines = events(n, 60, seed);
        let out = tempfile::tempdir().unwrap();
        let windows = fixtures::click_windows().replace(
            "path = \"out/result.jsonl\"",
            &format!("path = \"{}/result.jsonl\"", out.path().display()),
        );
        assert!(windows.contains(&out.path().display().to_string()));
        let job = format!(
            "{}checkpoint_store = \"s3://{BUCKET}/store\"\n\
             [job.cluster]\nleases = \"dynamodb://{name}-leases\"\nkey_groups = 16\n\
             shuffle_stream = \"{name}-shuffle\"\nshuffle_shards = 4\n\
             failover_timeout = \"{FAILOVER_MS}ms\"\n{}{}",
            fixtures::header(name, "300ms"),
            kinesis_source(
                &stream,
                &em.endpoint(),
                &format!("start_at = \"trim_horizon\"\nstop_at = \"{stop_at}\"")
            ),
            windows
        );
        Workers {
            kinesis: em,
            s3,
            dynamo,
            name: name.to_string(),
            stream,
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

    /// `kflow cluster status` from the first worker's folder.
    fn status(&self) -> String {
        let env = self.dynamo.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.folders[0]
            .run_ok(&["cluster", "status", "job.toml"], &env)
            .stdout
    }

    /// Every lease as the table holds it now.
    fn leases(&self) -> Vec<Lease> {
        let table = format!("{}-leases", self.name);
        LeaseTable::open(&table, Some(&self.dynamo.endpoint()))
            .unwrap()
            .leases()
            .unwrap()
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

    /// Stops `watch` and checks the run: never two processes of a lease at
    /// once, the union of the groups' rows equal to one process's, and
    /// every change of hands in the lease history clean.
    fn assert_exact(&self, watch: PartWatch) {
        watch.assert_never_twice();
        assert_rows_equal(&file_reference(&self.lines), &self.union());
        assert_history_exclusive(&self.leases());
    }

    /// Watches this test's part processes (every process whose environment
    /// names this test's DynamoDB endpoint).
    fn watch_parts(&self) -> PartWatch {
        PartWatch::start(format!(
            "AWS_ENDPOINT_URL_DYNAMODB={}",
            self.dynamo.endpoint()
        ))
    }
}

/// Samples the running part processes every 20 ms and remembers every
/// lease seen run by two processes at once.
struct PartWatch {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<(u64, BTreeSet<String>)>,
}

impl PartWatch {
    fn start(marker: String) -> PartWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            let (mut samples, mut twice) = (0, BTreeSet::new());
            while !flag.load(Ordering::Relaxed) {
                let mut seen: BTreeMap<String, u32> = BTreeMap::new();
                for lease in running_parts(&marker) {
                    *seen.entry(lease).or_default() += 1;
                }
                twice.extend(seen.into_iter().filter(|(_, n)| *n > 1).map(|(l, _)| l));
                samples += 1;
                thread::sleep(Duration::from_millis(20));
            }
            (samples, twice)
        });
        PartWatch { stop, thread }
    }

    /// Stops watching; asserts it watched and no lease ran twice at once.
    fn assert_never_twice(self) {
        self.stop.store(true, Ordering::Relaxed);
        let (samples, twice) = self.thread.join().unwrap();
        assert!(samples > 10, "the watch took {samples} samples");
        assert!(
            twice.is_empty(),
            "leases run by two parts at once: {twice:?}"
        );
    }
}

/// The lease of every live `kflow run ... --part LEASE` process whose
/// environment holds `marker`.
fn running_parts(marker: &str) -> Vec<String> {
    parts_where(|_, environ| {
        environ
            .split(|b| *b == 0)
            .any(|var| var == marker.as_bytes())
    })
}

/// The leases of the live part processes whose parent is `pid`.
fn parts_of(pid: u32) -> Vec<String> {
    let parent = format!("PPid:\t{pid}\n");
    parts_where(|status, _| status.contains(&parent))
}

/// The lease of every live part process for which `keep(status, environ)`
/// holds (`/proc/PID/status` and `/proc/PID/environ`).
fn parts_where(keep: impl Fn(&str, &[u8]) -> bool) -> Vec<String> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut leases = Vec::new();
    for entry in procs.flatten() {
        let dir = entry.path();
        // A zombie (exited, not yet reaped) has an empty command line.
        let Ok(cmdline) = std::fs::read(dir.join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let Some(at) = args.iter().position(|a| *a == b"--part") else {
            continue;
        };
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        let environ = std::fs::read(dir.join("environ")).unwrap_or_default();
        if let (true, Some(lease)) = (keep(&status, &environ), args.get(at + 1)) {
            leases.push(String::from_utf8_lossy(lease).into_owned());
        }
    }
    leases
}

/// Checks every lease's history: a lease changed hands only when free, or
/// when its owner had been silent for `failover_timeout`; a child shard was
/// first taken only after its parents were read to their ends.
fn assert_history_exclusive(leases: &[Lease]) {
    let mut ended_at: BTreeMap<String, i64> = BTreeMap::new();
    let mut first_take: BTreeMap<String, i64> = BTreeMap::new();
    for lease in leases {
        assert!(!lease.history.is_empty(), "{} has no history", lease.key);
        let mut holder: Option<String> = None;
        for text in &lease.history {
            let change = Change::parse(text)
                .unwrap_or_else(|| panic!("{}: unreadable history {text:?}", lease.key));
            match change {
                Change::Taken {
                    at_ms,
                    by,
                    from,
                    from_renewed_ms,
                    ..
                } => {
                    assert_eq!(
                        from, holder,
                        "{}: taken by {by} from {from:?}, but {holder:?} held it: {:?}",
                        lease.key, lease.history
                    );
                    if from.is_some() {
                        let silent = at_ms - from_renewed_ms.unwrap();
                        assert!(
                            silent >= FAILOVER_MS,
                            "{}: taken by {by} after {silent} ms of silence: {:?}",
                            lease.key,
                            lease.history
                        );
                    }
                    first_take.entry(lease.key.clone()).or_insert(at_ms);
                    holder = Some(by);
                }
                Change::Released { at_ms, by, ended } => {
                    assert_eq!(
                        holder.as_deref(),
                        Some(by.as_str()),
                        "{}: released by {by}: {:?}",
                        lease.key,
                        lease.history
                    );
                    if ended {
                        ended_at.insert(lease.key.clone(), at_ms);
                    }
                    holder = None;
                }
            }
        }
        assert!(
            lease.ended,
            "{} did not end: {:?}",
            lease.key, lease.history
        );
    }
    for lease in leases {
        for parent in &lease.parents {
            let parent_ended = ended_at[&format!("shard/{parent}")];
            assert!(
                first_take[&lease.key] >= parent_ended,
                "{} was taken before its parent {parent} ended",
                lease.key
            );
        }
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
    let watch = workers.watch_parts();
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
    workers.assert_exact(watch);
    // 4 shards and 16 key groups, each finished once, spread over all.
    assert_eq!(finished_parts, 20);
    assert!(
        spread.iter().all(|n| *n > 0),
        "parts per worker: {spread:?}"
    );
}

#[test]
fn a_sigkilled_worker_fails_over_and_a_joining_worker_takes_a_share() {
    let mut workers = Workers::new("failover", 4000, 53);
    let watch = workers.watch_parts();
    // Slow reads, so that the run lasts past the kill and the join.
    let slow = [("KFLOW_KINESIS_LIMIT", "20")];
    let w1 = workers.start("w1", &slow);
    let w2 = workers.start("w2", &slow);
    let mut w3 = workers.start("w3", &slow);
    // `cluster status` shows each part's lag, reported by the part, and
    // w3 once it holds or claims a lease.
    kflow_tests::job::wait_until(TIMEOUT, "lag and every worker in the status", || {
        let status = workers.status();
        let lag = |prefix: &str, what: &str| {
            status
                .lines()
                .any(|l| l.starts_with(prefix) && l.contains(what))
        };
        lag("shard/", "behind the stream")
            && lag("group/", "watermark")
            && ["w1", "w2", "w3"].iter().all(|w| status.contains(w))
    });
    // w3 holds parts and their checkpoints are in the store: kill it. A
    // worker that joins after the others took every lease gets its share
    // by claims, each handed back after a final checkpoint, so it may hold
    // nothing for a few heartbeats.
    w3.wait_for(": took ", 1, TIMEOUT);
    let first = Part::from_lease(&took(&w3.log())[0]).unwrap().dir_name();
    kflow_tests::job::wait_until(TIMEOUT, "a checkpoint of a part of w3", || {
        !workers.s3.list(&format!("store/parts/{first}/")).is_empty()
    });
    let w3_log = w3.log();
    let killed_ms = kflow_tests::job::now_ms();
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
    workers.assert_exact(watch);
    // Whatever w3 held and had not finished, another worker took over.
    for key in held {
        let finished = w3_log.contains(&format!("{key} finished"));
        assert!(
            finished || taken.contains(&key),
            "nobody took {key} over from w3"
        );
    }
    let leases = workers.leases();
    // The table's history shows w3's leases taken from it after it fell
    // silent: each within the failover timeout plus two heartbeats (the
    // others read the table, and act, once per heartbeat) of the kill.
    let taken_after: Vec<i64> = leases
        .iter()
        .flat_map(|l| l.history.iter().filter_map(|t| Change::parse(t)))
        .filter_map(|c| match c {
            Change::Taken {
                at_ms,
                from: Some(from),
                ..
            } if from == "w3" => Some(at_ms - killed_ms),
            _ => None,
        })
        .collect();
    assert!(
        !taken_after.is_empty(),
        "no lease taken from w3: {leases:?}"
    );
    let latest = taken_after.iter().max().copied().unwrap_or_default();
    eprintln!("w3's leases taken {taken_after:?} ms after the kill");
    assert!(
        latest <= FAILOVER_MS + 2 * FAILOVER_MS / 3 + 500,
        "w3's leases taken {taken_after:?} ms after the kill"
    );
}

#[test]
fn a_source_split_during_a_cluster_run_keeps_per_key_order() {
    // The run stops at a time after all producing is done.
    let stop_ms = kflow_tests::job::now_ms() + 25_000;
    let stop_at = kflow_benches::workload::rfc3339_millis(stop_ms);
    let mut workers = Workers::unproduced("split", 3000, 57, &stop_at);
    let watch = workers.watch_parts();
    let w1 = workers.start("w1", &[]);
    let w2 = workers.start("w2", &[]);
    let lines: Vec<&str> = workers.lines.lines().collect();
    let halves: Vec<String> = lines.chunks(1500).map(|c| c.join("\n") + "\n").collect();
    fixtures::produce(&workers.kinesis, &workers.stream, &halves[0]);
    // Split a shard while the workers read: its children are leased only
    // after it was read to its end, and the key groups take them in after
    // it, so each user's records keep their order (a child read early
    // would make its parent's later-read records late, and the rows differ).
    let client = workers.kinesis.client();
    let parent = client.open_shards(&workers.stream)[0].id.clone();
    client.split_shard(&workers.stream, &parent);
    fixtures::produce(&workers.kinesis, &workers.stream, &halves[1]);
    assert!(
        kflow_tests::job::now_ms() < stop_ms - 3000,
        "producing took too long for the run's stop time"
    );
    finishes(w1, "w1");
    finishes(w2, "w2");
    workers.assert_exact(watch);
    let leases = workers.leases();
    let children: Vec<&Lease> = leases
        .iter()
        .filter(|l| l.parents.contains(&parent))
        .collect();
    assert_eq!(children.len(), 2, "{leases:?}");
}

#[test]
fn a_part_started_on_a_lapsed_fence_stops_before_it_does_anything() {
    // Its worker stalled between writing the fence and starting the part
    // (a stop signal at that moment): the lease may be another worker's.
    let cluster = Cluster::new("lapsed", 300, 67);
    let parts = cluster.dir.path().join(".kflow/lapsed/parts");
    std::fs::create_dir_all(&parts).unwrap();
    std::fs::write(parts.join("group-0001.lease"), "0").unwrap();
    let started = std::time::Instant::now();
    let (ok, log) = cluster.run_part_with("group/0001", &[]);
    assert!(!ok, "a part ran on a lapsed fence:\n{log}");
    assert!(log.contains("its lease lapsed"), "{log}");
    assert!(started.elapsed() < Duration::from_secs(10), "{log}");
    assert!(
        !parts.join("group-0001").exists() && !parts.join("group-0001.progress").exists(),
        "the part opened its state before it stopped"
    );
    assert!(
        cluster.s3.list("store/").is_empty(),
        "the part wrote to the store"
    );
}

#[test]
fn a_stalled_workers_parts_stop_when_its_leases_lapse() {
    let mut workers = Workers::new("stalled", 3000, 59);
    let watch = workers.watch_parts();
    let slow = [("KFLOW_KINESIS_LIMIT", "20")];
    let w1 = workers.start("w1", &slow);
    let w2 = workers.start("w2", &slow);
    kflow_tests::job::wait_until(TIMEOUT, "parts on both workers", || {
        !parts_of(w1.pid()).is_empty() && !parts_of(w2.pid()).is_empty()
    });
    // w2 stalls: it neither renews its leases nor stops its parts. Its
    // parts see their fences lapse and stop by themselves, before w1 may
    // take the leases over.
    w2.signal("STOP");
    let stalled_at = std::time::Instant::now();
    kflow_tests::job::wait_until(TIMEOUT, "w2's parts to stop", || {
        parts_of(w2.pid()).is_empty()
    });
    let stopped_after = stalled_at.elapsed();
    assert!(
        stopped_after <= Duration::from_millis(FAILOVER_MS as u64 + 1000),
        "w2's parts ran {stopped_after:?} after it stalled"
    );
    kflow_tests::job::wait_until(TIMEOUT, "w1 to take w2's leases", || {
        workers
            .leases()
            .iter()
            .any(|l| l.history.iter().any(|t| t.contains(" from w2 ")))
    });
    // w2 wakes up, finds its leases gone, and carries on as a worker.
    w2.signal("CONT");
    // Both logs on a failure: one worker's hang is often the other's doing.
    let first = w1.wait(TIMEOUT);
    let second = w2.wait(if first.is_ok() {
        TIMEOUT
    } else {
        Duration::from_secs(5)
    });
    let ok = |r: &Result<(ExitStatus, String), String>| r.as_ref().is_ok_and(|(s, _)| s.success());
    let show = |r: Result<(ExitStatus, String), String>| {
        r.map_or_else(|e| e, |(s, log)| format!("{s}\n{log}"))
    };
    if !ok(&first) || !ok(&second) {
        panic!(
            "a worker failed:\nw1: {}\nw2: {}",
            show(first),
            show(second)
        );
    }
    workers.assert_exact(watch);
}

#[test]
fn a_sigtermed_worker_hands_its_leases_back_after_final_checkpoints() {
    let mut workers = Workers::new("handback", 3000, 61);
    let watch = workers.watch_parts();
    let slow = [("KFLOW_KINESIS_LIMIT", "20")];
    let w1 = workers.start("w1", &slow);
    let w2 = workers.start("w2", &slow);
    kflow_tests::job::wait_until(TIMEOUT, "checkpoints of w2's parts", || {
        !parts_of(w2.pid()).is_empty() && workers.s3.list("store/parts/").len() > 10
    });
    // A graceful stop: w2's parts checkpoint, its leases go back free
    // (none waits for the failover timeout), and w2 exits 0.
    w2.terminate();
    let (status, log) = w2.wait(TIMEOUT).unwrap();
    assert!(status.success(), "w2 failed ({status}):\n{log}");
    let handed: u64 = log
        .lines()
        .find(|l| l.contains("done:"))
        .and_then(|l| l.split(", ").find(|p| p.ends_with("handed back")))
        .and_then(|p| p.split_whitespace().next())
        .map_or(0, |n| n.parse().unwrap());
    assert!(handed > 0, "w2 handed nothing back:\n{log}");
    finishes(w1, "w1");
    workers.assert_exact(watch);
    let leases = workers.leases();
    // Handed back, not taken from a silent owner.
    let released_by_w2 = leases
        .iter()
        .flat_map(|l| l.history.iter())
        .filter(|t| t.contains(" release w2 free"))
        .count();
    assert!(released_by_w2 > 0, "{leases:?}");
    assert!(
        leases
            .iter()
            .flat_map(|l| l.history.iter())
            .all(|t| !t.contains(" from w2 ")),
        "{leases:?}"
    );
}
