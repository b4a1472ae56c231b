//! Criterion micro-benchmarks of kflow's hot parts: decoding the projected
//! fields of a JSON line (flat and nested), parsing an event time (with and
//! without the remembered date), evaluating a filter, updating a window
//! partial in the cache (hit), reading an evicted partial back from RocksDB
//! (miss), a new key in an evicted window with and without the cache's
//! filter of written keys, writing a checkpoint batch, and comparing the
//! empty keys of a window without a key.
//!
//! `cargo bench -p kflow-benches --bench micro`

use std::path::Path;

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use kflow::operators::window::aggregate::{Arg, Partial};
use kflow::sources::decode::Projection;
use kflow::sources::time::{parse_rfc3339, Dates};
use kflow_jobs::{AggregateFunction, AggregatePlan, FieldId, FieldPath, NodeKind, Value};
use kflow_state::{StateBatch, StateStore, WindowCache};

const LINE: &str = r#"{"event_id":"1b4e28ba-2fa1-41d2-883f-0016d3cca427","user_id":"u42817","type":"add_to_cart","amount":87.25,"ts":"2026-11-25T10:31:12.345Z"}"#;

/// A wide nested record of W4 (`kflow_benches::bids`).
const BID: &str = r#"{"Bid":{"auction":1760,"bidder":527839,"price":9704766,"channel":"channel-5","url":"https://www.nexmark.com/q19mM0NbdxsfYxd6qDi8/item.htm?query=1&channel_id=8IPL0K1WW1bsuJ4TdJIXUqnee074Kz","date_time":1795600800000,"extra":"75ccTHyr6PipOX1EB1jdur1OuUcPyju8UpsSsRYaHrncbK91bTZvwtKQ3dTE6J0HbZFXLfxl0DMKaabnnr"}}"#;

fn decode(c: &mut Criterion) {
    let paths: Vec<FieldPath> = ["amount", "ts", "type", "user_id"]
        .iter()
        .map(|p| FieldPath::parse(p))
        .collect();
    let mut projection = Projection::new(&paths);
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(1));
    group.bench_function("projected 4 of 5 fields", |b| {
        let mut slots = vec![Value::Null; projection.slots()];
        b.iter(|| {
            projection
                .decode(black_box(LINE.as_bytes()), &mut slots)
                .ok();
            black_box(&slots);
        })
    });
    let bid_paths: Vec<FieldPath> = ["Bid.auction", "Bid.price", "Bid.date_time"]
        .iter()
        .map(|p| FieldPath::parse(p))
        .collect();
    let mut bid = Projection::new(&bid_paths);
    group.bench_function("nested bid, 3 of 8 fields", |b| {
        let mut slots = vec![Value::Null; bid.slots()];
        b.iter(|| {
            bid.decode(black_box(BID.as_bytes()), &mut slots).ok();
            black_box(&slots);
        })
    });
    let ts = "2026-11-25T10:31:12.345Z";
    group.bench_function("event time, RFC 3339, parsed whole", |b| {
        b.iter(|| black_box(parse_rfc3339(black_box(ts))))
    });
    group.bench_function("event time, RFC 3339, date remembered", |b| {
        let mut dates = Dates::default();
        b.iter(|| black_box(dates.parse(black_box(ts))))
    });
    group.bench_function("serde_json::Value (baseline)", |b| {
        b.iter(|| black_box(serde_json::from_str::<serde_json::Value>(black_box(LINE)).ok()))
    });
    group.finish();
}

fn filter(c: &mut Criterion) {
    let job = r#"
[job]
name = "bench"
[sources.s]
type = "file"
path = "x.jsonl"
[filters.f]
input = "s"
where = "type != 'product_view' && amount > 10"
[sinks.o]
input = "f"
type = "stdout"
"#;
    let plan = match kflow_jobs::compile_str(job, Path::new("bench.toml")) {
        Ok(plan) => plan,
        Err(e) => panic!("{}", e.render()),
    };
    let expr = plan
        .nodes
        .iter()
        .find_map(|n| match &n.kind {
            NodeKind::Filter(f) => Some(f.expr.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("the job has a filter"));
    let mut row = vec![Value::Null; plan.fields.len()];
    for (i, f) in plan.fields.iter().enumerate() {
        row[i] = match f.dotted.as_str() {
            "type" => Value::Str("add_to_cart".into()),
            "amount" => Value::Num(87.25),
            _ => Value::Null,
        };
    }
    let mut group = c.benchmark_group("filter");
    group.throughput(Throughput::Elements(1));
    group.bench_function("type != 'product_view' && amount > 10", |b| {
        b.iter(|| black_box(expr.matches(black_box(&row[..]))))
    });
    group.finish();
}

fn aggregates() -> Vec<AggregatePlan> {
    vec![
        AggregatePlan {
            name: "events".into(),
            function: AggregateFunction::Count,
            field: None,
            by: None,
        },
        AggregatePlan {
            name: "revenue".into(),
            function: AggregateFunction::Sum,
            field: Some(FieldId(0)),
            by: None,
        },
    ]
}

fn keys(n: usize) -> Vec<(u64, Vec<u8>)> {
    keys_from(0, n)
}

/// `n` keys `u{from}`, `u{from + 1}`, ... with their hashes.
fn keys_from(from: usize, n: usize) -> Vec<(u64, Vec<u8>)> {
    (from..from + n)
        .map(|i| {
            let key = format!("u{i}").into_bytes();
            (xxhash_rust_hash(&key), key)
        })
        .collect()
}

fn xxhash_rust_hash(bytes: &[u8]) -> u64 {
    kflow::dataflow::key::hash(bytes)
}

fn window_state(c: &mut Criterion) {
    let dir = tempfile_dir();
    let store = match StateStore::open(&dir) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    let aggs = aggregates();
    let keys = keys(100_000);
    let args = [Arg::None, Arg::Num(12.5)];
    let mut group = c.benchmark_group("window");
    group.throughput(Throughput::Elements(1));
    group.bench_function("update partial, cache hit (100k keys)", |b| {
        let mut cache: WindowCache<Partial> = WindowCache::new(1, usize::MAX);
        let mut i = 0;
        b.iter(|| {
            let (hash, key) = &keys[i % keys.len()];
            i += 1;
            if let Ok(p) = cache.get_mut(&store, 60_000, *hash, key, || Partial::new(&aggs)) {
                p.update(&args);
            }
        })
    });
    group.bench_function("update partial, cache miss (read from RocksDB)", |b| {
        let mut cache: WindowCache<Partial> = WindowCache::new(2, usize::MAX);
        update_all(&mut cache, &store, 60_000, &keys, &aggs, &args);
        spill(&mut cache, &store);
        let mut i = 0;
        b.iter(|| {
            let (hash, key) = &keys[i % keys.len()];
            i += 1;
            if let Ok(p) = cache.get_mut(&store, 60_000, *hash, key, || Partial::new(&aggs)) {
                p.update(&args);
            }
            if i % keys.len() == 0 {
                spill(&mut cache, &store);
            }
        })
    });
    group.finish();

    // New keys in a time with evicted entries (millions of keys each seen
    // once): the cache that wrote the time knows from its filter of written
    // keys that they are not stored; a cache restored from a checkpoint has
    // to ask RocksDB. 100k new keys into a time that evicted 100k.
    let mut group = c.benchmark_group("window, new keys in a spilled time");
    group.throughput(Throughput::Elements(100_000));
    group.sample_size(20);
    let mut next = 1_000_000;
    for (name, restored) in [
        ("known unwritten, no read", false),
        ("restored, read", true),
    ] {
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    let mut cache: WindowCache<Partial> = WindowCache::new(4, usize::MAX);
                    update_all(&mut cache, &store, 60_000, &keys, &aggs, &args);
                    spill(&mut cache, &store);
                    if restored {
                        cache = WindowCache::new(4, usize::MAX);
                        cache.add_spilled([60_000]);
                    }
                    next += 100_000;
                    (cache, keys_from(next, 100_000))
                },
                |(mut cache, fresh)| {
                    update_all(&mut cache, &store, 60_000, &fresh, &aggs, &args);
                    (cache, fresh)
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();

    let mut group = c.benchmark_group("checkpoint");
    group.throughput(Throughput::Elements(10_000));
    // `evicting` stores the time key by key (as before an eviction);
    // otherwise it is packed (a time wholly in memory, all of it dirty).
    for (name, evicting) in [("packed", false), ("key by key", true)] {
        let id = format!("snapshot + synced write of 10k dirty partials, {name}");
        group.bench_function(id, |b| {
            b.iter_batched(
                || {
                    let mut cache: WindowCache<Partial> = WindowCache::new(3, usize::MAX);
                    update_all(&mut cache, &store, 120_000, &keys[..10_000], &aggs, &args);
                    cache
                },
                |mut cache| {
                    let mut batch = StateBatch::new();
                    cache.snapshot(&mut batch, evicting);
                    if let Err(e) = store.write(batch, kflow_state::WriteMode::Synced) {
                        panic!("{e}");
                    }
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

/// Updates the partial of every key in `keys` at `time` once.
fn update_all(
    cache: &mut WindowCache<Partial>,
    store: &StateStore,
    time: i64,
    keys: &[(u64, Vec<u8>)],
    aggs: &[AggregatePlan],
    args: &[Arg],
) {
    for (hash, key) in keys {
        if let Ok(p) = cache.get_mut(store, time, *hash, key, || Partial::new(aggs)) {
            p.update(args);
        }
    }
}

/// Stores every entry of `cache` key by key and evicts them all, as an
/// early checkpoint does when the cache is full.
fn spill(cache: &mut WindowCache<Partial>, store: &StateStore) {
    let mut batch = StateBatch::new();
    cache.snapshot(&mut batch, true);
    if let Err(e) = store.write(batch, kflow_state::WriteMode::Buffered) {
        panic!("{e}");
    }
    cache.evict();
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("kflow-micro-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Each aggregate's cost per record: one update of a warm partial.
fn aggregate_updates(c: &mut Criterion) {
    let mut group = c.benchmark_group("aggregate update");
    group.throughput(Throughput::Elements(1));
    let numbers: Vec<f64> = (0..4096).map(|i| f64::from(i % 977) * 0.25).collect();
    let hashes: Vec<u64> = (0..4096_u64)
        .map(|i| xxhash_rust_hash(&(i % 3000).to_le_bytes()))
        .collect();
    for (name, function) in [
        ("count", AggregateFunction::Count),
        ("sum", AggregateFunction::Sum),
        ("max", AggregateFunction::Max),
        ("variance", AggregateFunction::Variance),
        ("stddev", AggregateFunction::Stddev),
        (
            "count_distinct (3,000 values)",
            AggregateFunction::CountDistinct,
        ),
        (
            "count_distinct_approx (3,000 values: sketch)",
            AggregateFunction::CountDistinctApprox,
        ),
        ("percentile 0.99", AggregateFunction::Percentile(0.99)),
    ] {
        let plan = [AggregatePlan {
            name: name.into(),
            function,
            field: Some(FieldId(0)),
            by: None,
        }];
        let hashed = matches!(
            function,
            AggregateFunction::CountDistinct | AggregateFunction::CountDistinctApprox
        );
        group.bench_function(name, |b| {
            let mut partial = Partial::new(&plan);
            let mut i = 0;
            b.iter(|| {
                let arg = if hashed {
                    Arg::Hash(hashes[i % hashes.len()])
                } else {
                    Arg::Num(numbers[i % numbers.len()])
                };
                i += 1;
                partial.update(black_box(&[arg]));
            })
        });
    }
    // The picks: candidates whose values (8-character strings) sit in the
    // batch's value buffer; ranks rise and fall, so some replace the best.
    let mut values = Vec::new();
    let picks: Vec<Arg> = (0..4096_u32)
        .map(|i| {
            let start = values.len() as u32;
            let text = format!("item{:04}", i % 977);
            let _ = kflow::dataflow::key::encode_value(
                &kflow_jobs::Value::Str(text.into()),
                &mut values,
            );
            Arg::Pick {
                order: f64::from((i * 7919) % 4096),
                start,
                len: values.len() as u32 - start,
            }
        })
        .collect();
    for (name, function) in [
        ("max_by", AggregateFunction::MaxBy),
        ("first", AggregateFunction::First),
        ("top_k 10 (977 values)", AggregateFunction::TopK(10)),
    ] {
        let plan = [AggregatePlan {
            name: name.into(),
            function,
            field: Some(FieldId(0)),
            by: None,
        }];
        group.bench_function(name, |b| {
            let mut partial = Partial::new(&plan);
            let mut i = 0;
            b.iter(|| {
                let arg = picks[i % picks.len()];
                i += 1;
                partial.update_with(black_box(&[arg]), &values);
            })
        });
    }
    group.finish();
}

/// The empty key of a window without a key, as an empty `Vec` holds it
/// (a dangling pointer): `==` against `kflow_state::keys::same`, and the
/// cache's update of a keyless window's partial.
fn empty_keys(c: &mut Criterion) {
    let (a, b): (Vec<u8>, Vec<u8>) = (Vec::new(), Vec::new());
    let mut group = c.benchmark_group("empty keys");
    group.throughput(Throughput::Elements(1));
    group.bench_function("<[u8]>::eq", |bench| {
        bench.iter(|| black_box(black_box(&a[..]) == black_box(&b[..])))
    });
    group.bench_function("keys::same", |bench| {
        bench.iter(|| black_box(kflow_state::keys::same(black_box(&a), black_box(&b))))
    });
    let dir = tempfile_dir();
    let store = match StateStore::open(&dir) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    let aggs = aggregates();
    let args = [Arg::None, Arg::Num(12.5)];
    let hash = kflow::dataflow::key::hash(&a);
    group.bench_function("update a keyless window's partial, cache hit", |bench| {
        let mut cache: WindowCache<Partial> = WindowCache::new(1, usize::MAX);
        bench.iter(|| {
            if let Ok(p) =
                cache.get_mut(&store, 60_000, hash, black_box(&a), || Partial::new(&aggs))
            {
                p.update(&args);
            }
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    decode,
    filter,
    window_state,
    aggregate_updates,
    empty_keys
);
criterion_main!(benches);
