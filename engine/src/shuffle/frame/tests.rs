use proptest::prelude::*;

use super::*;

fn route() -> Route {
    Route {
        window: 3,
        group: 11,
        shard: "shardId-000000000002".into(),
    }
}

/// A batch of `n` records with every kind of argument, `carry` saying
/// whether they carry their text.
fn batch(n: usize, carry: bool, key_len: usize) -> WindowBatch {
    let mut b = WindowBatch {
        final_watermark: 9_000,
        ..WindowBatch::default()
    };
    for i in 0..n {
        b.times.push(1_000 + i as i64);
        b.watermarks.push(500 + i as i64);
        b.hashes.push(i as u64 * 7919);
        b.keys
            .extend(std::iter::repeat_n(b'a' + (i % 26) as u8, key_len));
        b.key_ends.push(b.keys.len() as u32);
        // Two records per Kinesis record: the second repeats the sequence.
        b.sequences
            .extend_from_slice(format!("4959{:020}", i / 2).as_bytes());
        b.sequence_ends.push(b.sequences.len() as u32);
        b.subsequences
            .push(if i % 3 == 0 { NO_SUBSEQUENCE } else { i as u64 });
        let start = b.values.len() as u32;
        b.values.extend_from_slice(format!("v{i}").as_bytes());
        b.args.extend([
            Arg::None,
            Arg::Num(i as f64 * 0.5),
            Arg::Hash(i as u64),
            Arg::Pick {
                order: -(i as f64),
                start,
                len: b.values.len() as u32 - start,
            },
        ]);
        if carry {
            b.raw.extend_from_slice(format!("{{\"n\":{i}}}").as_bytes());
            b.raw_ends.push(b.raw.len() as u32);
        }
    }
    b
}

/// One record as a window task reads it: position, times, hash, key,
/// arguments, text.
type Record = (
    Vec<u8>,
    u64,
    i64,
    i64,
    u64,
    Vec<u8>,
    Vec<String>,
    Option<Vec<u8>>,
);

/// What a window task reads of a batch, record by record.
fn records(b: &WindowBatch) -> Vec<Record> {
    (0..b.len())
        .map(|i| {
            let args = b.args[i * 4..(i + 1) * 4]
                .iter()
                .map(|a| match *a {
                    Arg::Pick { order, start, len } => format!(
                        "pick {order} {}",
                        String::from_utf8_lossy(&b.values[start as usize..(start + len) as usize])
                    ),
                    other => format!("{other:?}"),
                })
                .collect();
            (
                b.sequence(i).to_vec(),
                b.subsequences[i],
                b.times[i],
                b.watermarks[i],
                b.hashes[i],
                b.key(i).to_vec(),
                args,
                b.raw(i).map(<[u8]>::to_vec),
            )
        })
        .collect()
}

fn decode_all(frames: &[Vec<u8>]) -> (WindowBatch, Vec<i64>) {
    let mut all = Vec::new();
    let mut watermarks = Vec::new();
    for bytes in frames {
        match decode(bytes).expect("decodes") {
            Frame::Batch { route: r, batch } => {
                assert_eq!(r, route());
                watermarks.push(batch.final_watermark);
                all.push(batch);
            }
            other => panic!("not a batch: {other:?}"),
        }
    }
    // Concatenate through the record view.
    let mut merged = WindowBatch::default();
    for b in all {
        for i in 0..b.len() {
            merged.times.push(b.times[i]);
            merged.watermarks.push(b.watermarks[i]);
            merged.hashes.push(b.hashes[i]);
            merged.keys.extend_from_slice(b.key(i));
            merged.key_ends.push(merged.keys.len() as u32);
            merged.sequences.extend_from_slice(b.sequence(i));
            merged.sequence_ends.push(merged.sequences.len() as u32);
            merged.subsequences.push(b.subsequences[i]);
            for arg in &b.args[i * 4..(i + 1) * 4] {
                merged.args.push(match *arg {
                    Arg::Pick { order, start, len } => {
                        let at = merged.values.len() as u32;
                        merged
                            .values
                            .extend_from_slice(&b.values[start as usize..(start + len) as usize]);
                        Arg::Pick {
                            order,
                            start: at,
                            len,
                        }
                    }
                    other => other,
                });
            }
            if let Some(raw) = b.raw(i) {
                merged.raw.extend_from_slice(raw);
                merged.raw_ends.push(merged.raw.len() as u32);
            }
        }
    }
    (merged, watermarks)
}

#[test]
fn a_batch_comes_back_record_for_record() {
    for carry in [false, true] {
        let b = batch(50, carry, 12);
        let frames = encode_batch(&route(), &b, 4);
        assert_eq!(frames.len(), 1);
        let (back, watermarks) = decode_all(&frames);
        assert_eq!(records(&back), records(&b));
        assert_eq!(watermarks, vec![9_000]);
    }
}

#[test]
fn a_large_batch_is_cut_into_frames_that_say_the_next_watermark() {
    let b = batch(300, true, 4_000);
    let frames = encode_batch(&route(), &b, 4);
    assert!(frames.len() > 3, "{} frames", frames.len());
    assert!(frames
        .iter()
        .all(|f| f.len() < crate::aws::put::MAX_RECORD_BYTES));
    let (back, watermarks) = decode_all(&frames);
    assert_eq!(records(&back), records(&b));
    // Each frame but the last ends with the watermark before the next
    // frame's first record; the last with the batch's.
    let mut next_first = Vec::new();
    let mut seen = 0;
    for f in &frames {
        let Frame::Batch { batch, .. } = decode(f).expect("decodes") else {
            unreachable!()
        };
        seen += batch.len();
        next_first.push(b.watermarks.get(seen).copied().unwrap_or(9_000));
    }
    assert_eq!(watermarks, next_first);
}

#[test]
fn an_empty_batch_carries_its_watermark() {
    let b = WindowBatch {
        final_watermark: 42,
        ..WindowBatch::default()
    };
    let frames = encode_batch(&route(), &b, 4);
    assert_eq!(frames.len(), 1);
    let Frame::Batch { batch, .. } = decode(&frames[0]).expect("decodes") else {
        panic!("not a batch")
    };
    assert!(batch.is_empty());
    assert_eq!(batch.final_watermark, 42);
}

#[test]
fn control_frames_come_back() {
    match decode(&encode_idle(&route(), 77)).expect("decodes") {
        Frame::Idle {
            route: r,
            watermark,
        } => {
            assert_eq!(r, route());
            assert_eq!(watermark, 77);
        }
        other => panic!("{other:?}"),
    }
    match decode(&encode_end(&route())).expect("decodes") {
        Frame::End { route: r } => assert_eq!(r, route()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_addressee_is_read_from_the_header() {
    let frames = encode_batch(&route(), &batch(3, false, 3), 4);
    assert_eq!(addressee(&frames[0]), Some((3, 11)));
    assert_eq!(addressee(&encode_end(&route())), Some((3, 11)));
    assert_eq!(addressee(b"{\"user\":1}"), None);
    assert_eq!(addressee(&frames[0][..5]), None);
}

#[test]
fn foreign_or_cut_bytes_are_refused() {
    assert!(decode(b"{\"user\":1}").is_err());
    let frames = encode_batch(&route(), &batch(5, false, 3), 4);
    let whole = &frames[0];
    for cut in [1, 10, whole.len() / 2, whole.len() - 1] {
        assert!(decode(&whole[..cut]).is_err(), "cut at {cut}");
    }
    let mut longer = whole.clone();
    longer.push(0);
    assert!(decode(&longer).is_err());
}

proptest! {
    #[test]
    fn any_batch_round_trips(n in 0usize..40, carry: bool, key_len in 0usize..64) {
        let b = batch(n, carry, key_len);
        let (back, _) = decode_all(&encode_batch(&route(), &b, 4));
        prop_assert_eq!(records(&back), records(&b));
    }
}
