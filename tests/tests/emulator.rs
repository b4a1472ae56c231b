//! Smoke tests of the Kinesis emulator harness (`kflow_tests::kinesis`):
//! each emulator starts, creates a 2-shard stream, takes 100 records and
//! gives them all back in per-key order; kinesis-mock also splits a shard.
//!
//! What the emulators support, as found (versions pinned in package.json):
//!
//! - kinesis-mock (`kinesis-local` 0.6.2, node main.js; env
//!   KINESIS_MOCK_PLAIN_PORT/TLS_PORT/CERT_PATH, *_DURATION=10ms): answers
//!   in about 1 s; split, merge, UpdateShardCount, ListShards, a real
//!   MillisBehindLatest; always serves TLS on a second port; binds
//!   0.0.0.0; persists to a JSON file every PERSIST_INTERVAL and on SIGTERM.
//! - kinesalite (3.3.3, node cli.js --port N --path DIR --createStreamMs
//!   ...): answers in about 0.3 s; split and merge, no UpdateShardCount
//!   (nor stream modes, consumers, encryption); MillisBehindLatest is always
//!   0; binds every interface; LevelDB in --path survives kill -9.

use std::collections::BTreeMap;

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

/// Start, create, put, read back; then restart and read the same again.
fn round_trip(kind: EmulatorKind) -> (Emulator, String) {
    let mut emulator = Emulator::start(kind);
    eprintln!("{} answered after {:?}", kind.name(), emulator.last_start());
    let kinesis = emulator.client();
    let stream = fresh_stream_name(&format!("smoke-{}", kind.name()));
    let t = std::time::Instant::now();
    kinesis.create_stream(&stream, 2);
    eprintln!("TIMING {} create {:?}", kind.name(), t.elapsed());
    let shards = kinesis.list_shards(&stream);
    assert_eq!(shards.len(), 2, "{shards:?}");
    assert!(shards
        .iter()
        .all(|shard| shard.open && shard.parent.is_none()));
    assert_eq!(shards[0].hash_key_range.0, 0);
    assert_eq!(shards[1].hash_key_range.1, u128::MAX);
    assert_eq!(shards[0].hash_key_range.1 + 1, shards[1].hash_key_range.0);

    let put = records();
    let t = std::time::Instant::now();
    let placed = kinesis.put_records(&stream, &put);
    eprintln!("TIMING {} put {:?}", kind.name(), t.elapsed());
    assert_eq!(placed.len(), RECORDS);
    let t = std::time::Instant::now();
    check_read_back(&kinesis, &stream, &put);
    eprintln!("TIMING {} read {:?}", kind.name(), t.elapsed());

    // The streams and records survive a restart on the same port.
    let t = std::time::Instant::now();
    emulator.stop();
    eprintln!("TIMING {} stop {:?}", kind.name(), t.elapsed());
    emulator.restart();
    eprintln!("{} restarted in {:?}", kind.name(), emulator.last_start());
    assert!(kinesis.list_streams().contains(&stream));
    check_read_back(&kinesis, &stream, &put);
    (emulator, stream)
}

#[test]
fn kinesis_mock_round_trip_and_split() {
    let (emulator, stream) = round_trip(EmulatorKind::KinesisMock);
    let kinesis = emulator.client();
    let parent = kinesis.list_shards(&stream)[0].id.clone();
    let t = std::time::Instant::now();
    kinesis.split_shard(&stream, &parent);
    eprintln!("TIMING split {:?}", t.elapsed());
    let shards = kinesis.list_shards(&stream);
    assert_eq!(shards.len(), 4, "{shards:?}");
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
    check_read_back(&kinesis, &stream, &records());
    let t = std::time::Instant::now();
    kinesis.delete_stream(&stream);
    eprintln!("TIMING delete {:?}", t.elapsed());
    assert!(!kinesis.list_streams().contains(&stream));
}

#[test]
fn kinesalite_round_trip() {
    let (emulator, stream) = round_trip(EmulatorKind::Kinesalite);
    emulator.client().delete_stream(&stream);
}
