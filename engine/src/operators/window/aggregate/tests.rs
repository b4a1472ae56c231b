//! Tests of [`super`]: merge laws, encodings and rounding of partial aggregates.

#![allow(clippy::unwrap_used)]
use super::*;
use kflow_state::StateValue;
use proptest::prelude::*;

const FUNCTIONS: [AggregateFunction; 10] = [
    AggregateFunction::Count,
    AggregateFunction::Sum,
    AggregateFunction::Min,
    AggregateFunction::Max,
    AggregateFunction::Avg,
    AggregateFunction::CountDistinct,
    AggregateFunction::Percentile(0.9),
    AggregateFunction::Variance,
    AggregateFunction::Stddev,
    AggregateFunction::CountDistinctApprox,
];

fn arg_for(f: AggregateFunction, v: Option<i32>) -> Arg {
    match (f, v) {
        (_, None) => Arg::None,
        (AggregateFunction::Count, _) => Arg::None,
        (AggregateFunction::CountDistinct, Some(v)) => Arg::Hash(v as u64),
        (AggregateFunction::CountDistinctApprox, Some(v)) => {
            Arg::Hash(xxhash_rust::xxh3::xxh3_64(&v.to_le_bytes()))
        }
        (_, Some(v)) => Arg::Num(f64::from(v) / 4.0),
    }
}

fn fold(f: AggregateFunction, values: &[Option<i32>]) -> Acc {
    let mut acc = Acc::new(f);
    for v in values {
        acc.update(arg_for(f, *v));
    }
    acc
}

fn result(f: AggregateFunction, acc: &Acc) -> String {
    let mut out = Vec::new();
    crate::dataflow::json::write_value(&mut out, &acc.value(f));
    String::from_utf8(out).unwrap()
}

/// Whether two results agree: exactly, or for the floating-point moments
/// (whose merges round differently from a fold) within 1e-12.
fn agree(f: AggregateFunction, a: &str, b: &str) -> bool {
    match f {
        AggregateFunction::Variance | AggregateFunction::Stddev => {
            match (a.parse::<f64>(), b.parse::<f64>()) {
                (Ok(x), Ok(y)) => (x - y).abs() <= 1e-12 * x.abs().max(y.abs()).max(1.0),
                _ => a == b,
            }
        }
        _ => a == b,
    }
}

fn values() -> impl Strategy<Value = Vec<Option<i32>>> {
    proptest::collection::vec(proptest::option::weighted(0.9, -500i32..500), 0..300)
}

proptest! {
    // Merging partials of any split equals folding everything at once
    // (sums are of quarters, so exact in f64 and order-independent).
    #[test]
    fn merge_of_split_equals_whole(a in values(), b in values(), c in values()) {
        for f in FUNCTIONS {
            let whole: Vec<_> = a.iter().chain(&b).chain(&c).copied().collect();
            let mut left = fold(f, &a);
            let mut bc = fold(f, &b);
            bc.merge(&fold(f, &c));
            left.merge(&bc);
            let mut right = fold(f, &a);
            right.merge(&fold(f, &b));
            right.merge(&fold(f, &c));
            let folded = result(f, &fold(f, &whole));
            prop_assert!(agree(f, &result(f, &left), &folded), "{:?} assoc", f);
            prop_assert!(agree(f, &result(f, &right), &folded), "{:?}", f);
            let mut ba = fold(f, &b);
            ba.merge(&fold(f, &a));
            let mut ab = fold(f, &a);
            ab.merge(&fold(f, &b));
            prop_assert!(agree(f, &result(f, &ab), &result(f, &ba)), "{:?} commutes", f);
        }
    }

    #[test]
    fn encoding_round_trips(a in values()) {
        for f in FUNCTIONS {
            let p = Partial(smallvec::smallvec![fold(f, &a)]);
            let mut bytes = Vec::new();
            p.encode(&mut bytes);
            let back = Partial::decode(&bytes).unwrap();
            prop_assert_eq!(result(f, &back.0[0]), result(f, &p.0[0]));
        }
    }

    #[test]
    fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = Partial::decode(&bytes);
    }

    #[test]
    fn large_percentiles_are_close(values in proptest::collection::vec(-100_000i32..100_000, 200..2000), q in 0.0f64..=1.0) {
        let f = AggregateFunction::Percentile(q);
        let acc = fold(f, &values.iter().map(|v| Some(*v)).collect::<Vec<_>>());
        let mut sorted: Vec<f64> = values.iter().map(|v| f64::from(*v) / 4.0).collect();
        sorted.sort_by(f64::total_cmp);
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        let exact = sorted[rank - 1];
        let Acc::Percentile(p) = &acc else { unreachable!() };
        let got = p.value(q).unwrap();
        prop_assert!((got - exact).abs() <= exact.abs() * 0.002 + 0.001, "{got} vs {exact}");
    }
}

#[test]
fn common_accumulators_fit_a_cache_entry() {
    // Rare aggregates are boxed so the common ones stay small enough
    // to live inline in the cache's hash-table entries.
    assert!(std::mem::size_of::<Acc>() <= 24);
}

proptest! {
    // Sums and means are written exactly as their rounded value would be.
    #[test]
    fn write_json_equals_writing_the_value(bits in any::<u64>(), cents in -10_000_000i64..10_000_000, n in 1u64..1000) {
        let whole = cents as f64 * 1e8;
        for sum in [f64::from_bits(bits), cents as f64 / 100.0, (cents as f64 / 100.0) * 3.0 + 0.1, whole, -0.0] {
            for f in [AggregateFunction::Sum, AggregateFunction::Avg] {
                let acc = Acc::Sum { sum, n };
                let mut fast = Vec::new();
                write_json(&acc, f, &mut fast);
                prop_assert_eq!(String::from_utf8(fast).unwrap(), result(f, &acc), "{} / {}", sum, n);
            }
        }
    }
}

#[test]
fn small_groups_are_exact_and_empty_numeric_aggregates_are_null() {
    let f = AggregateFunction::Percentile(0.5);
    let acc = fold(f, &[Some(4), Some(8), Some(12), None]);
    assert_eq!(result(f, &acc), "2"); // values are v/4: 1, 2, 3 -> median 2
    let sum = fold(AggregateFunction::Sum, &[None, None]);
    assert_eq!(result(AggregateFunction::Sum, &sum), "null");
    let count = fold(AggregateFunction::Count, &[None, Some(1)]);
    assert_eq!(result(AggregateFunction::Count, &count), "2");
}

#[test]
fn variance_and_stddev_are_of_the_population() {
    // Values v/4: 0.5, 1, 1.5, 2, 2.5 -> mean 1.5, squared deviations
    // 1, 0.25, 0, 0.25, 1 -> variance 2.5 / 5 = 0.5.
    let values = [Some(2), Some(4), Some(6), Some(8), Some(10), None];
    let variance = fold(AggregateFunction::Variance, &values);
    assert_eq!(result(AggregateFunction::Variance, &variance), "0.5");
    let stddev = fold(AggregateFunction::Stddev, &values);
    assert_eq!(
        result(AggregateFunction::Stddev, &stddev),
        format!("{}", round_15(0.5_f64.sqrt()))
    );
    let one = fold(AggregateFunction::Variance, &[Some(7)]);
    assert_eq!(result(AggregateFunction::Variance, &one), "0");
    let none = fold(AggregateFunction::Stddev, &[None]);
    assert_eq!(result(AggregateFunction::Stddev, &none), "null");
    // A large mean does not cancel the small spread away (Welford).
    let mut acc = Acc::new(AggregateFunction::Variance);
    for v in [1e9 + 4.0, 1e9 + 7.0, 1e9 + 13.0, 1e9 + 16.0] {
        acc.update(Arg::Num(v));
    }
    assert_eq!(result(AggregateFunction::Variance, &acc), "22.5");
}

#[test]
fn approximate_distinct_counts_are_exact_while_small() {
    let f = AggregateFunction::CountDistinctApprox;
    let values: Vec<Option<i32>> = (0..400).chain(0..400).map(Some).collect();
    assert_eq!(result(f, &fold(f, &values)), "400");
    let many: Vec<Option<i32>> = (0..20_000).map(Some).collect();
    let got: f64 = result(f, &fold(f, &many)).parse().unwrap();
    assert!((got - 20_000.0).abs() < 20_000.0 * 0.033, "{got}");
}

#[test]
fn picks_merge_in_any_order_and_survive_encoding() {
    let mut values = Vec::new();
    let mut args = Vec::new();
    for (order, text) in [(3.0, "x"), (5.0, "m"), (5.0, "c"), (1.0, "a")] {
        let start = values.len() as u32;
        crate::dataflow::key::encode_value(&Value::Str(text.into()), &mut values).unwrap();
        let len = values.len() as u32 - start;
        args.push(Arg::Pick { order, start, len });
    }
    for f in [AggregateFunction::MaxBy, AggregateFunction::First] {
        let mut whole = Acc::new(f);
        args.iter().for_each(|a| whole.update_with(*a, &values));
        let (mut left, mut right) = (Acc::new(f), Acc::new(f));
        args[..2].iter().for_each(|a| left.update_with(*a, &values));
        args[2..]
            .iter()
            .rev()
            .for_each(|a| right.update_with(*a, &values));
        let mut rl = right.clone();
        rl.merge(&left);
        left.merge(&right);
        assert_eq!(left, whole, "{f:?}");
        assert_eq!(rl, whole, "{f:?}");
        let p = Partial(smallvec::smallvec![whole.clone(), Acc::new(f)]);
        let mut bytes = Vec::new();
        p.encode(&mut bytes);
        assert_eq!(Partial::decode(&bytes).unwrap(), p);
    }
    let mut max_by = Acc::new(AggregateFunction::MaxBy);
    args.iter().for_each(|a| max_by.update_with(*a, &values));
    assert_eq!(result(AggregateFunction::MaxBy, &max_by), "\"c\"");
    let mut first = Acc::new(AggregateFunction::First);
    args.iter().for_each(|a| first.update_with(*a, &values));
    assert_eq!(result(AggregateFunction::First, &first), "\"a\"");
    assert_eq!(
        result(AggregateFunction::Last, &Acc::new(AggregateFunction::Last)),
        "null"
    );
}

/// Folds `values` (as key-encoded strings) into a `top_k` accumulator the
/// way a window does: each record's value in its batch's value bytes.
fn fold_top(values: &[u16]) -> Acc {
    let mut acc = Acc::new(AggregateFunction::TopK(5));
    let mut batch = Vec::new();
    for v in values {
        let start = batch.len() as u32;
        crate::dataflow::key::encode_value(&Value::Str(format!("p{}", v % 40).into()), &mut batch)
            .unwrap();
        let len = batch.len() as u32 - start;
        acc.update_with(
            Arg::Pick {
                order: 0.0,
                start,
                len,
            },
            &batch,
        );
    }
    acc
}

/// The final value as a result row's text holds it: its cell, written.
fn write_json(acc: &Acc, function: AggregateFunction, out: &mut Vec<u8>) {
    let cell = acc.cell(function, out);
    if !matches!(cell, Cell::Json(..)) {
        cell.write(out, &[]);
    }
}

fn top_json(acc: &Acc) -> String {
    let mut out = Vec::new();
    write_json(acc, AggregateFunction::TopK(5), &mut out);
    String::from_utf8(out).unwrap()
}

proptest! {
    // Exact below its limit: merging parts in any order equals folding the
    // whole, and the stored form reads back to the same result.
    #[test]
    fn top_k_merges_like_a_fold_and_round_trips(
        a in proptest::collection::vec(any::<u16>(), 0..200),
        b in proptest::collection::vec(any::<u16>(), 0..200),
    ) {
        let whole: Vec<u16> = a.iter().chain(&b).copied().collect();
        let mut ab = fold_top(&a);
        ab.merge(&fold_top(&b));
        let mut ba = fold_top(&b);
        ba.merge(&fold_top(&a));
        let expected = top_json(&fold_top(&whole));
        prop_assert_eq!(top_json(&ab), expected.clone());
        prop_assert_eq!(top_json(&ba), expected.clone());
        let p = Partial(smallvec::smallvec![ab]);
        let mut bytes = Vec::new();
        p.encode(&mut bytes);
        let back = Partial::decode(&bytes).unwrap();
        prop_assert_eq!(top_json(&back.0[0]), expected);
    }
}

#[test]
fn top_k_lists_counts_most_frequent_first() {
    let acc = fold_top(&[1, 2, 2, 3, 3, 3, 41]);
    assert_eq!(
        top_json(&acc),
        r#"[{"value":"p3","count":3},{"value":"p1","count":2},{"value":"p2","count":2}]"#
    );
}
