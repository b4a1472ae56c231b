//! Scale-out (issue 16), the lease layer: worker lease keepers over a real
//! DynamoDB API (dynalite) spread 4 shard leases and 16 key-group leases
//! evenly, take over a killed worker's leases after the failover timeout,
//! rebalance when a worker joins (by claim and hand-back, never by
//! stealing), lease a child shard only after its parent ended, and never
//! let two workers hold one lease at once, checked from the history of
//! every take, loss and hand-back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kflow::cluster::{Event, Lease, LeaseKeeper, LeaseKind, LeaseTable};
use kflow_tests::dynamo::DynamoEmulator;
use kflow_tests::job::wait_until;

const FAILOVER: Duration = Duration::from_secs(2);
const HEARTBEAT: Duration = Duration::from_millis(250);

/// One worker's holding of one lease: `(key, worker, from, until)`.
type Span = (String, String, Instant, Option<Instant>);

/// Who held which lease when.
#[derive(Default)]
struct History(Mutex<Vec<Span>>);

impl History {
    fn gained(&self, key: &str, worker: &str, at: Instant) {
        let mut h = self.0.lock().unwrap();
        h.push((key.to_string(), worker.to_string(), at, None));
    }

    fn ended(&self, key: &str, worker: &str, until: Instant) {
        let mut h = self.0.lock().unwrap();
        let open = h
            .iter_mut()
            .rev()
            .find(|(k, w, _, end)| k == key && w == worker && end.is_none())
            .unwrap_or_else(|| panic!("{worker} ended {key} without holding it"));
        open.3 = Some(until);
    }

    /// Panics if two workers' holdings of one lease overlap.
    fn assert_exclusive(&self) -> usize {
        let h = self.0.lock().unwrap();
        let mut by_key: BTreeMap<&str, Vec<(Instant, Instant, &str)>> = BTreeMap::new();
        for (key, worker, from, until) in h.iter() {
            let until = until.unwrap_or_else(|| panic!("{worker} still holds {key}"));
            by_key.entry(key).or_default().push((*from, until, worker));
        }
        for (key, mut spans) in by_key {
            spans.sort();
            for pair in spans.windows(2) {
                assert!(
                    pair[1].0 >= pair[0].1,
                    "{key} held by {} and {} at once",
                    pair[0].2,
                    pair[1].2
                );
            }
        }
        h.len()
    }
}

/// A worker thread: a keeper's heartbeat that hands back claimed leases
/// (as the engine does after checkpointing them) and ends shards on
/// request.
struct Worker {
    id: String,
    stop: Arc<AtomicBool>,
    /// Stop without handing anything back (a SIGKILLed process).
    kill: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    fn start(
        id: &str,
        endpoint: &str,
        table: &str,
        history: &Arc<History>,
        to_end: &Arc<Mutex<Vec<String>>>,
    ) -> Worker {
        let keeper_table = LeaseTable::open(table, Some(endpoint)).expect("the lease table");
        let mut keeper = LeaseKeeper::new(keeper_table, id, FAILOVER);
        let (stop, kill) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let (history, to_end) = (Arc::clone(history), Arc::clone(to_end));
        let (s, k, me) = (Arc::clone(&stop), Arc::clone(&kill), id.to_string());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let status = HashMap::from([(String::from("group/0000"), format!("{me} ok"))]);
                for event in keeper.tick(&status).expect("a heartbeat") {
                    match event {
                        Event::Gained { key, at } => history.gained(&key, &me, at),
                        Event::Lost { key, until } => history.ended(&key, &me, until),
                        Event::Wanted { key } => {
                            let at = keeper.release(&key, false).unwrap().unwrap();
                            history.ended(&key, &me, at);
                        }
                    }
                }
                let ending: Vec<String> = to_end.lock().unwrap().clone();
                for key in ending {
                    if keeper.holds(&key) {
                        let at = keeper.release(&key, true).unwrap().unwrap();
                        history.ended(&key, &me, at);
                        to_end.lock().unwrap().retain(|k| *k != key);
                    }
                }
                std::thread::sleep(HEARTBEAT);
            }
            let held: Vec<(String, Instant)> = keeper
                .held()
                .map(|h| (h.lease.key.clone(), h.valid_until))
                .collect();
            for (key, valid_until) in held {
                if k.load(Ordering::SeqCst) {
                    // Killed: the lease stays in the table, valid until it lapses.
                    history.ended(&key, &me, valid_until);
                } else {
                    let at = keeper.release(&key, false).unwrap().unwrap();
                    history.ended(&key, &me, at);
                }
            }
        });
        Worker {
            id: id.to_string(),
            stop,
            kill,
            thread: Some(thread),
        }
    }

    fn halt(mut self, killed: bool) {
        self.kill.store(killed, Ordering::SeqCst);
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap();
    }
}

/// Leases per owner and kind (`None`: free).
fn owners(table: &LeaseTable) -> BTreeMap<(Option<String>, LeaseKind), usize> {
    let mut out = BTreeMap::new();
    for lease in table.leases().unwrap().iter().filter(|l| !l.ended) {
        *out.entry((lease.owner.clone(), lease.kind())).or_default() += 1;
    }
    out
}

/// Whether `workers` hold every live lease, each within one of the others'
/// count per kind.
fn balanced(table: &LeaseTable, workers: &[&str]) -> bool {
    let owned = owners(table);
    [LeaseKind::Shard, LeaseKind::Group].iter().all(|kind| {
        let free = owned.get(&(None, *kind)).copied().unwrap_or(0);
        let counts: Vec<usize> = workers
            .iter()
            .map(|w| {
                owned
                    .get(&(Some(w.to_string()), *kind))
                    .copied()
                    .unwrap_or(0)
            })
            .collect();
        let total: usize = owned
            .iter()
            .filter(|((_, k), _)| k == kind)
            .map(|(_, n)| n)
            .sum();
        free == 0
            && counts.iter().sum::<usize>() == total
            && counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1
    })
}

#[test]
fn issue_16_leases_spread_fail_over_rebalance_and_are_never_held_twice() {
    let dynamo = DynamoEmulator::start();
    let endpoint = dynamo.endpoint();
    let name = "kflow-leases";
    let table = LeaseTable::open(name, Some(&endpoint)).unwrap();
    for shard in 0..4 {
        table
            .create(&Lease::shard_key(&format!("s{shard}")), &[])
            .unwrap();
    }
    for group in 0..16 {
        table.create(&Lease::group_key(group), &[]).unwrap();
    }
    assert!(
        table.create(&Lease::group_key(0), &[]).unwrap().is_none(),
        "a lease is created once"
    );
    let history = Arc::new(History::default());
    let to_end = Arc::new(Mutex::new(Vec::new()));
    let start = |id: &str| Worker::start(id, &endpoint, name, &history, &to_end);
    let mut workers: Vec<Worker> = ["w1", "w2", "w3"].into_iter().map(start).collect();

    wait_until(
        Duration::from_secs(60),
        "3 workers share the leases",
        || balanced(&table, &["w1", "w2", "w3"]),
    );
    let status = table.leases().unwrap();
    let group0 = status.iter().find(|l| l.key == "group/0000").unwrap();
    assert!(
        group0.status.as_deref().is_some_and(|s| s.ends_with(" ok")),
        "renewals carry the progress: {group0:?}"
    );

    // A worker dies: the others take its leases once they lapse.
    let killed = workers.remove(1);
    assert_eq!(killed.id, "w2");
    let died = Instant::now();
    killed.halt(true);
    wait_until(Duration::from_secs(60), "the survivors take over", || {
        balanced(&table, &["w1", "w3"])
    });
    let took = died.elapsed();
    assert!(
        took >= FAILOVER / 2 && took < FAILOVER * 4,
        "failover took {took:?} (timeout {FAILOVER:?})"
    );

    // A worker joins: it claims leases from the busiest until balanced.
    workers.push(start("w4"));
    wait_until(
        Duration::from_secs(60),
        "the newcomer gets its share",
        || balanced(&table, &["w1", "w3", "w4"]),
    );

    // A shard splits: the child waits for its parent to end.
    table
        .create(&Lease::shard_key("s4"), &["s0".to_string()])
        .unwrap();
    std::thread::sleep(HEARTBEAT * 6);
    let child = |t: &LeaseTable| {
        t.leases()
            .unwrap()
            .into_iter()
            .find(|l| l.key == "shard/s4")
            .unwrap()
    };
    assert!(
        child(&table).owner.is_none(),
        "a child leased before its parent ended"
    );
    to_end.lock().unwrap().push("shard/s0".to_string());
    wait_until(Duration::from_secs(60), "the child is leased", || {
        child(&table).owner.is_some()
    });

    for worker in workers {
        worker.halt(false);
    }
    let leases = table.leases().unwrap();
    assert!(
        leases.iter().all(|l| l.owner.is_none()),
        "a graceful stop hands every lease back: {leases:?}"
    );
    let s0 = leases.iter().find(|l| l.key == "shard/s0").unwrap();
    assert!(s0.ended);
    let spans = history.assert_exclusive();
    assert!(spans > 20, "only {spans} holdings recorded");
}

#[test]
fn issue_16_cluster_status_shows_workers_leases_and_progress() {
    let dynamo = DynamoEmulator::start();
    let endpoint = dynamo.endpoint();
    let job = format!(
        "[job]\nname = \"clustered\"\ncheckpoint_store = \"s3://kflow-test/store\"\n\
         \n[job.cluster]\nleases = \"dynamodb://status-leases\"\nkey_groups = 2\n\
         shuffle_stream = \"clicks-shuffle\"\nendpoint = \"{endpoint}\"\n\
         {}{}",
        kflow_tests::fixtures::kinesis_source("clicks", "http://127.0.0.1:9", ""),
        kflow_tests::fixtures::click_windows()
    );
    let dir = kflow_tests::job::JobDir::new(&job);
    dir.run_ok(&["validate", "job.toml"], &[]);
    // `kflow run` is a worker; with Kinesis unreachable it fails clearly
    // before it takes any lease.
    let failed = dir.run(&["run", "job.toml"], &[]);
    assert_eq!(failed.status.code(), Some(1), "{}", failed.stderr);
    assert!(
        failed.stderr.contains("shuffle stream `clicks-shuffle`"),
        "{}",
        failed.stderr
    );

    let table = LeaseTable::open("status-leases", Some(&endpoint)).unwrap();
    let mut keeper = LeaseKeeper::new(table, "worker-a", FAILOVER);
    keeper
        .create(&[
            (Lease::shard_key("shardId-0"), vec![]),
            (Lease::group_key(0), vec![]),
            (Lease::group_key(1), vec![]),
        ])
        .unwrap();
    let progress = HashMap::from([(Lease::group_key(1), "behind 2.5 s".to_string())]);
    let gained = keeper.tick(&progress).unwrap();
    assert_eq!(gained.len(), 3, "{gained:?}");
    keeper.tick(&progress).unwrap();

    let out = dir.run_ok(&["cluster", "status", "job.toml"], &[]);
    let text = out.stdout;
    assert!(
        text.contains("1 shard lease(s) (0 ended), 2 key group(s) of 2"),
        "{text}"
    );
    let worker = text
        .lines()
        .find(|l| l.starts_with("worker-a"))
        .unwrap_or_else(|| panic!("{text}"));
    let columns: Vec<&str> = worker.split_whitespace().collect();
    assert_eq!(&columns[..3], ["worker-a", "1", "2"], "{text}");
    let group1 = text
        .lines()
        .find(|l| l.starts_with("group/0001"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        group1.contains("worker-a") && group1.ends_with("behind 2.5 s"),
        "{text}"
    );

    let single = kflow_tests::job::JobDir::new(&format!(
        "[job]\nname = \"single\"\n{}{}",
        kflow_tests::fixtures::file_source("clicks.jsonl", "5s"),
        kflow_tests::fixtures::click_windows()
    ));
    let out = single.run(&["cluster", "status", "job.toml"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("has no [job.cluster] table"),
        "{}",
        out.stderr
    );
}
