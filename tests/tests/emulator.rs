//! Smoke tests of the Kinesis emulator harness (`kflow_tests::kinesis`):
//! each emulator starts, creates a 2-shard stream, takes 100 records and
//! gives them all back in per-key order, splits a shard (parent closed, two
//! children) and merges the children; kinesis-mock also scales with
//! UpdateShardCount, kinesalite also keeps everything across a restart.
//!
//! What the emulators support, as found (versions pinned in package.json):
//!
//! - kinesis-mock (`kinesis-local` 0.6.2: `node main.js` with
//!   KINESIS_MOCK_PLAIN_PORT, KINESIS_MOCK_TLS_PORT, KINESIS_MOCK_CERT_PATH,
//!   *_DURATION=10ms): answers after about 1.3 s; split, merge,
//!   UpdateShardCount, a real MillisBehindLatest; also serves TLS on a second
//!   port; binds 0.0.0.0. PutRecords slows down as a shard fills (about 4 s
//!   per 500 records into a shard holding 5,000). Saves state only by
//!   rewriting one JSON file in place every PERSIST_INTERVAL (not on
//!   shutdown; a truncated file stops it from starting), so the harness
//!   runs it without: it restarts empty.
//! - kinesalite (3.3.3: `node cli.js --port N --path DIR --createStreamMs 10
//!   ...`): answers after about 0.25 s; split and merge, no UpdateShardCount
//!   (nor stream modes, consumers, encryption); MillisBehindLatest is always
//!   0; binds every interface; the LevelDB in --path keeps all acknowledged
//!   records across kill -9.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Instant;

use kflow_tests::kinesis::{
    compare_sequence_numbers, fresh_stream_name, Emulator, EmulatorKind, Kinesis,
};

const RECORDS: usize = 100;
const KEYS: usize = 7;

/// `RECORDS` records over `KEYS` keys; the data names the key and the
/// record's index, so order per key can be checked.
fn records() -> Vec<(String, String)> {
    (0..RECORDS)
        .map(|i| {
            let key = format!("key-{}", i % KEYS);
            (key.clone(), format!("{key}/{i}"))
        })
        .collect()
}

/// Every record put is read back once, records of a key come from one shard
/// in put order with increasing sequence numbers.
fn check_read_back(kinesis: &Kinesis, stream: &str, put: &[(String, String)]) {
    let read = kinesis.read_all(stream);
    let mut got: Vec<String> = read
        .iter()
        .map(|(_, _, _, data)| String::from_utf8(data.clone()).expect("UTF-8 data"))
        .collect();
    got.sort();
    let mut want: Vec<String> = put.iter().map(|(_, data)| data.clone()).collect();
    want.sort();
    assert_eq!(got, want, "records read back from {stream}");

    let mut per_key: BTreeMap<&str, Vec<(&str, &str, usize)>> = BTreeMap::new();
    for (shard, sequence, key, data) in &read {
        let data = std::str::from_utf8(data).expect("UTF-8 data");
        let (data_key, index) = data.split_once('/').expect("data is KEY/INDEX");
        assert_eq!(key, data_key, "partition key of record {data}");
        let index: usize = index.parse().expect("an index");
        per_key
            .entry(key.as_str())
            .or_default()
            .push((shard, sequence, index));
    }
    for (key, records) in per_key {
        for pair in records.windows(2) {
            let ((shard_a, sequence_a, index_a), (shard_b, sequence_b, index_b)) =
                (pair[0], pair[1]);
            assert_eq!(shard_a, shard_b, "key {key} is on two shards");
            assert!(
                compare_sequence_numbers(sequence_a, sequence_b).is_lt(),
                "key {key}: sequence {sequence_a} (record {index_a}) before {sequence_b} (record {index_b})"
            );
            assert!(
                index_a < index_b,
                "key {key}: record {index_a} read before record {index_b}"
            );
        }
    }
}

/// Starts the emulator, creates a 2-shard stream, puts `records()` and reads
/// them back.
fn round_trip(kind: EmulatorKind) -> (Emulator, Kinesis, String) {
    let emulator = Emulator::start(kind);
    eprintln!(
        "{}: answered after {:?}",
        kind.name(),
        emulator.last_start()
    );
    let kinesis = emulator.client();
    let stream = fresh_stream_name(&format!("smoke-{}", kind.name()));
    let started = Instant::now();
    kinesis.create_stream(&stream, 2);
    eprintln!("{}: created in {:?}", kind.name(), started.elapsed());
    let shards = kinesis.list_shards(&stream);
    assert_eq!(shards.len(), 2, "{shards:?}");
    assert!(shards
        .iter()
        .all(|shard| shard.open && shard.parent.is_none()));
    assert_eq!(shards[0].hash_key_range.0, 0);
    assert_eq!(shards[0].hash_key_range.1 + 1, shards[1].hash_key_range.0);
    assert_eq!(shards[1].hash_key_range.1, u128::MAX);

    let put = records();
    let started = Instant::now();
    let placed = kinesis.put_records(&stream, &put);
    eprintln!("{}: put in {:?}", kind.name(), started.elapsed());
    assert_eq!(placed.len(), RECORDS);
    let started = Instant::now();
    check_read_back(&kinesis, &stream, &put);
    eprintln!("{}: read back in {:?}", kind.name(), started.elapsed());
    (emulator, kinesis, stream)
}

/// Splits the stream's first shard and checks the listing: the parent
/// closed, two open children covering its range. Returns the children.
fn split_first_shard(kinesis: &Kinesis, stream: &str) -> (String, String) {
    let shards_before = kinesis.list_shards(stream).len();
    let parent = kinesis.list_shards(stream)[0].id.clone();
    let started = Instant::now();
    kinesis.split_shard(stream, &parent);
    eprintln!("split in {:?}", started.elapsed());
    let shards = kinesis.list_shards(stream);
    assert_eq!(shards.len(), shards_before + 2, "{shards:?}");
    let closed = shards
        .iter()
        .find(|shard| shard.id == parent)
        .expect("the parent is still listed");
    assert!(!closed.open, "the split parent is closed: {closed:?}");
    let children: Vec<_> = shards
        .iter()
        .filter(|shard| shard.parent.as_deref() == Some(parent.as_str()))
        .collect();
    assert_eq!(children.len(), 2, "{shards:?}");
    assert!(children.iter().all(|child| child.open));
    assert_eq!(children[0].hash_key_range.0, closed.hash_key_range.0);
    assert_eq!(
        children[0].hash_key_range.1 + 1,
        children[1].hash_key_range.0
    );
    assert_eq!(children[1].hash_key_range.1, closed.hash_key_range.1);
    // The records put before the split are still read once each.
    check_read_back(kinesis, stream, &records());
    (children[0].id.clone(), children[1].id.clone())
}

/// Merges two adjacent shards and checks the listing.
fn merge(kinesis: &Kinesis, stream: &str, a: &str, b: &str) {
    let started = Instant::now();
    kinesis.merge_shards(stream, a, b);
    eprintln!("merged in {:?}", started.elapsed());
    let shards = kinesis.list_shards(stream);
    let closed = |id: &str| shards.iter().any(|shard| shard.id == id && !shard.open);
    assert!(
        closed(a) && closed(b),
        "the merged shards are closed: {shards:?}"
    );
    let merged: Vec<_> = shards
        .iter()
        .filter(|shard| shard.parent.as_deref() == Some(a))
        .collect();
    assert_eq!(merged.len(), 1, "{shards:?}");
    assert!(merged[0].open);
    assert_eq!(merged[0].adjacent_parent.as_deref(), Some(b));
    check_read_back(kinesis, stream, &records());
}

#[test]
fn kinesis_mock_round_trip_and_reshard() {
    let (mut emulator, kinesis, stream) = round_trip(EmulatorKind::KinesisMock);
    let (left, right) = split_first_shard(&kinesis, &stream);
    merge(&kinesis, &stream, &left, &right);
    let started = Instant::now();
    kinesis.update_shard_count(&stream, 4);
    eprintln!(
        "kinesis-mock: scaled to 4 shards in {:?}",
        started.elapsed()
    );
    assert_eq!(kinesis.open_shards(&stream).len(), 4);
    check_read_back(&kinesis, &stream, &records());

    kinesis.delete_stream(&stream);
    assert!(!kinesis.list_streams().contains(&stream));

    // A restart answers on the same port, empty (kinesis-mock keeps no
    // state; see the harness docs).
    kinesis.create_stream(&stream, 1);
    emulator.restart();
    eprintln!("kinesis-mock: restarted in {:?}", emulator.last_start());
    assert_eq!(kinesis.list_streams(), Vec::<String>::new());
}

#[test]
fn kinesalite_round_trip_reshard_and_restart() {
    let (mut emulator, kinesis, stream) = round_trip(EmulatorKind::Kinesalite);
    let (left, right) = split_first_shard(&kinesis, &stream);
    merge(&kinesis, &stream, &left, &right);
    // Killed and restarted on the same port, it still has every record.
    emulator.restart();
    eprintln!("kinesalite: restarted in {:?}", emulator.last_start());
    assert!(kinesis.list_streams().contains(&stream));
    check_read_back(&kinesis, &stream, &records());
    kinesis.delete_stream(&stream);
}
