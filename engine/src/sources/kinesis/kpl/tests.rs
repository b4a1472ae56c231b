//! Tests of [`super`]: de-aggregation against an independent hand-written encoder.

#![allow(clippy::unwrap_used)]

use super::*;
use proptest::prelude::*;

// A test encoder written from the published format, byte by byte, so the
// prost-derived decoder is checked against an independent implementation.

/// Protobuf base-128 varint, low group first.
fn varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let group = (v & 0x7F) as u8;
        v >>= 7;
        if v == 0 {
            out.push(group);
            return;
        }
        out.push(group | 0x80);
    }
}

/// Field key: field number << 3 | wire type.
fn key(out: &mut Vec<u8>, field: u64, wire_type: u64) {
    varint(out, (field << 3) | wire_type);
}

/// Wire type 0 field.
fn uint_field(out: &mut Vec<u8>, field: u64, v: u64) {
    key(out, field, 0);
    varint(out, v);
}

/// Wire type 2 field.
fn bytes_field(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    key(out, field, 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A `Record` as the test encoder writes it.
#[derive(Debug, Clone)]
struct TestRecord {
    pk: u64,
    ehk: Option<u64>,
    data: Vec<u8>,
    tags: Vec<(String, Option<String>)>,
}

fn rec(pk: u64, ehk: Option<u64>, data: &[u8]) -> TestRecord {
    TestRecord {
        pk,
        ehk,
        data: data.to_vec(),
        tags: Vec::new(),
    }
}

/// `Record` bytes; `reverse` writes the fields in descending number order.
fn encode_record(r: &TestRecord, reverse: bool) -> Vec<u8> {
    let mut fields: Vec<Vec<u8>> = Vec::new();
    let mut f = Vec::new();
    uint_field(&mut f, 1, r.pk);
    fields.push(f);
    if let Some(ehk) = r.ehk {
        let mut f = Vec::new();
        uint_field(&mut f, 2, ehk);
        fields.push(f);
    }
    let mut f = Vec::new();
    bytes_field(&mut f, 3, &r.data);
    fields.push(f);
    for (k, v) in &r.tags {
        let mut tag = Vec::new();
        bytes_field(&mut tag, 1, k.as_bytes());
        if let Some(v) = v {
            bytes_field(&mut tag, 2, v.as_bytes());
        }
        let mut f = Vec::new();
        bytes_field(&mut f, 4, &tag);
        fields.push(f);
    }
    if reverse {
        fields.reverse();
    }
    fields.concat()
}

/// `AggregatedRecord` bytes; `reverse` also puts records before the tables.
fn encode_aggregate(pks: &[&str], ehks: &[&str], records: &[TestRecord], reverse: bool) -> Vec<u8> {
    let mut tables = Vec::new();
    for pk in pks {
        bytes_field(&mut tables, 1, pk.as_bytes());
    }
    for ehk in ehks {
        bytes_field(&mut tables, 2, ehk.as_bytes());
    }
    let mut recs = Vec::new();
    for r in records {
        bytes_field(&mut recs, 3, &encode_record(r, reverse));
    }
    if reverse {
        [recs, tables].concat()
    } else {
        [tables, recs].concat()
    }
}

/// Magic, protobuf, MD5 of the protobuf.
fn frame(protobuf: &[u8]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(protobuf);
    out.extend_from_slice(&Md5::digest(protobuf));
    out
}

fn aggregated(data: &[u8]) -> Vec<UserRecord> {
    match deaggregate(data).unwrap() {
        Records::Aggregated(records) => records,
        Records::Single(_) => panic!("not recognised as an aggregate"),
    }
}

fn user(pk: &str, ehk: Option<&str>, data: &[u8], subsequence: u64) -> UserRecord {
    UserRecord {
        partition_key: pk.to_owned(),
        explicit_hash_key: ehk.map(str::to_owned),
        data: Bytes::copy_from_slice(data),
        subsequence,
    }
}

#[test]
fn encoder_matches_protobuf_docs() {
    // The protobuf encoding guide's examples: 150 and 300.
    let mut out = Vec::new();
    uint_field(&mut out, 1, 150);
    assert_eq!(out, [0x08, 0x96, 0x01]);
    let mut out = Vec::new();
    varint(&mut out, 300);
    assert_eq!(out, [0xAC, 0x02]);
}

#[test]
fn literal_aggregate() {
    // partition_key_table = ["pk"], records = [{ partition_key_index: 0, data: "hi" }];
    // digest from `md5sum`.
    let protobuf = [
        0x0A, 0x02, b'p', b'k', 0x1A, 0x06, 0x08, 0x00, 0x1A, 0x02, b'h', b'i',
    ];
    let digest = [
        0x5c, 0x65, 0x99, 0x19, 0x0e, 0xc7, 0x1b, 0x18, 0xcb, 0x2e, 0x1a, 0xd0, 0xc4, 0xe3, 0xba,
        0x19,
    ];
    let data = [&MAGIC[..], &protobuf, &digest].concat();
    assert_eq!(data, frame(&protobuf));
    assert_eq!(aggregated(&data), vec![user("pk", None, b"hi", 0)]);
}

#[test]
fn several_user_records() {
    let records = [
        rec(0, None, b"one"),
        rec(1, None, b""),
        rec(2, None, b"\x00three\xff"),
    ];
    let data = frame(&encode_aggregate(&["a", "b", "c"], &[], &records, false));
    assert_eq!(
        aggregated(&data),
        vec![
            user("a", None, b"one", 0),
            user("b", None, b"", 1),
            user("c", None, b"\x00three\xff", 2),
        ]
    );
}

#[test]
fn shared_partition_keys() {
    let records = [
        rec(0, None, b"1"),
        rec(1, None, b"2"),
        rec(0, None, b"3"),
        rec(0, None, b"4"),
    ];
    let data = frame(&encode_aggregate(
        &["shared", "other"],
        &[],
        &records,
        false,
    ));
    let keys: Vec<_> = aggregated(&data)
        .into_iter()
        .map(|r| (r.partition_key, r.data, r.subsequence))
        .collect();
    assert_eq!(
        keys,
        vec![
            ("shared".to_owned(), Bytes::from_static(b"1"), 0),
            ("other".to_owned(), Bytes::from_static(b"2"), 1),
            ("shared".to_owned(), Bytes::from_static(b"3"), 2),
            ("shared".to_owned(), Bytes::from_static(b"4"), 3),
        ]
    );
}

#[test]
fn explicit_hash_keys() {
    let ehks = ["0", "340282366920938463463374607431768211455"];
    let records = [
        rec(0, Some(1), b"x"),
        rec(1, None, b"y"),
        rec(0, Some(0), b"z"),
    ];
    let data = frame(&encode_aggregate(&["p", "q"], &ehks, &records, false));
    assert_eq!(
        aggregated(&data),
        vec![
            user("p", Some(ehks[1]), b"x", 0),
            user("q", None, b"y", 1),
            user("p", Some(ehks[0]), b"z", 2),
        ]
    );
}

#[test]
fn tags_are_dropped() {
    let mut r = rec(0, None, b"d");
    r.tags = vec![("k".into(), Some("v".into())), ("bare".into(), None)];
    let data = frame(&encode_aggregate(&["p"], &[], &[r], false));
    assert_eq!(aggregated(&data), vec![user("p", None, b"d", 0)]);
}

#[test]
fn non_aggregated_passes_through() {
    for data in [
        &b""[..],
        b"plain json {\"a\":1}",
        &MAGIC[..3],
        &MAGIC,
        // Magic plus 15 bytes: too short for a digest.
        &[
            0xF3, 0x89, 0x9A, 0xC2, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
        ],
    ] {
        assert_eq!(deaggregate(data).unwrap(), Records::Single(data));
    }
    // A real aggregate with one magic byte changed.
    let mut data = frame(&encode_aggregate(&["p"], &[], &[rec(0, None, b"d")], false));
    data[0] ^= 1;
    assert_eq!(deaggregate(&data).unwrap(), Records::Single(&data[..]));
}

#[test]
fn bad_md5_passes_through() {
    let good = frame(&encode_aggregate(&["p"], &[], &[rec(0, None, b"d")], false));
    // Flip a digest byte, then a protobuf byte.
    for at in [good.len() - 1, MAGIC.len() + 1] {
        let mut data = good.clone();
        data[at] ^= 0x40;
        assert_eq!(deaggregate(&data).unwrap(), Records::Single(&data[..]));
    }
    // Digest missing altogether.
    let data = &good[..good.len() - DIGEST_LEN];
    assert_eq!(deaggregate(data).unwrap(), Records::Single(data));
}

#[test]
fn corrupt_protobuf_is_an_error() {
    let mut bad_utf8 = Vec::new();
    bytes_field(&mut bad_utf8, 1, &[0xFF, 0xFE]);
    for protobuf in [
        // records field claims 5 bytes, has 1.
        vec![0x1A, 0x05, 0x08],
        // Wire type 7 does not exist.
        vec![0x0F],
        // Field number 0 is invalid.
        vec![0x00, 0x00],
        // Varint never ends.
        vec![0x08, 0xFF, 0xFF],
        // Partition key table entry is not UTF-8.
        bad_utf8,
    ] {
        let err = deaggregate(&frame(&protobuf)).unwrap_err();
        assert!(
            matches!(err, KplError::Protobuf(_)),
            "{protobuf:?}: {err:?}"
        );
    }
}

#[test]
fn key_index_out_of_range_is_an_error() {
    let records = [rec(0, None, b"ok"), rec(2, None, b"bad")];
    let err =
        deaggregate(&frame(&encode_aggregate(&["a", "b"], &[], &records, false))).unwrap_err();
    assert!(
        matches!(
            err,
            KplError::PartitionKeyIndex {
                record: 1,
                index: 2,
                len: 2
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "KPL aggregated record: user record 1 has partition_key_index 2, \
         but the partition key table has 2 entries"
    );

    let records = [rec(0, Some(u64::MAX), b"bad")];
    let err = deaggregate(&frame(&encode_aggregate(&["a"], &["1"], &records, false))).unwrap_err();
    assert!(
        matches!(
            err,
            KplError::ExplicitHashKeyIndex {
                record: 0,
                index: u64::MAX,
                len: 1
            }
        ),
        "{err:?}"
    );

    // No explicit hash key table at all.
    let records = [rec(0, Some(0), b"bad")];
    let err = deaggregate(&frame(&encode_aggregate(&["a"], &[], &records, false))).unwrap_err();
    assert!(
        matches!(err, KplError::ExplicitHashKeyIndex { len: 0, .. }),
        "{err:?}"
    );
}

#[test]
fn missing_required_fields_are_errors() {
    let mut no_pk = Vec::new();
    bytes_field(&mut no_pk, 3, b"d");
    let mut no_data = Vec::new();
    uint_field(&mut no_data, 1, 0);
    let mut keyless_tag = Vec::new();
    uint_field(&mut keyless_tag, 1, 0);
    bytes_field(&mut keyless_tag, 3, b"d");
    let mut tag = Vec::new();
    bytes_field(&mut tag, 2, b"value");
    bytes_field(&mut keyless_tag, 4, &tag);
    for (record, field) in [
        (no_pk, "partition_key_index"),
        (no_data, "data"),
        (keyless_tag, "tag key"),
    ] {
        let mut protobuf = Vec::new();
        bytes_field(&mut protobuf, 1, b"p");
        bytes_field(&mut protobuf, 3, &record);
        let err = deaggregate(&frame(&protobuf)).unwrap_err();
        assert!(
            matches!(err, KplError::MissingField { record: 0, field: f } if f == field),
            "{err:?}"
        );
    }
}

#[test]
fn empty_records_list() {
    assert_eq!(aggregated(&frame(&[])), vec![]);
    let data = frame(&encode_aggregate(&["unused"], &["1"], &[], false));
    assert_eq!(aggregated(&data), vec![]);
}

/// Key tables, explicit hash key tables and records that index into them.
fn aggregate_parts() -> impl Strategy<Value = (Vec<String>, Vec<String>, Vec<TestRecord>, bool)> {
    (
        proptest::collection::vec(".{0,12}", 1..5),
        proptest::collection::vec("[0-9]{1,39}", 0..3),
    )
        .prop_flat_map(|(pks, ehks)| {
            let ehk_index = if ehks.is_empty() {
                Just(None).boxed()
            } else {
                proptest::option::of(0..ehks.len() as u64).boxed()
            };
            let record = (
                0..pks.len() as u64,
                ehk_index,
                proptest::collection::vec(any::<u8>(), 0..64),
                proptest::collection::vec((".{0,6}", proptest::option::of(".{0,6}")), 0..3),
            )
                .prop_map(|(pk, ehk, data, tags)| TestRecord {
                    pk,
                    ehk,
                    data,
                    tags,
                });
            (
                Just(pks),
                Just(ehks),
                proptest::collection::vec(record, 0..10),
                any::<bool>(),
            )
        })
}

proptest! {
    #[test]
    fn round_trips((pks, ehks, records, reverse) in aggregate_parts()) {
        let pk_refs: Vec<&str> = pks.iter().map(String::as_str).collect();
        let ehk_refs: Vec<&str> = ehks.iter().map(String::as_str).collect();
        let data = frame(&encode_aggregate(&pk_refs, &ehk_refs, &records, reverse));
        let expected: Vec<UserRecord> = records
            .iter()
            .enumerate()
            .map(|(i, r)| UserRecord {
                partition_key: pks[r.pk as usize].clone(),
                explicit_hash_key: r.ehk.map(|e| ehks[e as usize].clone()),
                data: Bytes::from(r.data.clone()),
                subsequence: i as u64,
            })
            .collect();
        prop_assert_eq!(deaggregate(&data).unwrap(), Records::Aggregated(expected));
    }

    #[test]
    fn garbage_never_panics(body in proptest::collection::vec(any::<u8>(), 0..64)) {
        // With a valid digest, so the protobuf decoder sees the garbage.
        let _ = deaggregate(&frame(&body));
        // Without the magic, anything passes through.
        if !body.starts_with(&MAGIC) {
            prop_assert_eq!(deaggregate(&body).unwrap(), Records::Single(&body[..]));
        }
    }
}
