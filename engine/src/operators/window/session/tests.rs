//! Tests of the session store: extend, bridge, close, frames, persistence.

#![allow(clippy::unwrap_used)]

use super::*;
use kflow_jobs::AggregateFunction;

fn count_plan() -> Vec<AggregatePlan> {
    vec![AggregatePlan {
        name: "n".into(),
        function: AggregateFunction::Count,
        field: None,
        by: None,
    }]
}

/// Places a count record of `key` at `time`.
fn put(s: &mut SessionStore, store: &StateStore, key: &str, time: i64, fired: i64) -> Placed {
    let hash = xxhash_rust::xxh3::xxh3_64(key.as_bytes());
    s.place(store, time, hash, key.as_bytes(), fired, |p| {
        p.update(&[crate::dataflow::arg::Arg::None])
    })
    .unwrap()
}

/// Fires through `target`: `(key, start, end, count)` rows, sorted.
fn fire(s: &mut SessionStore, store: &StateStore, target: i64) -> Vec<(String, i64, i64, u64)> {
    let mut rows = Vec::new();
    s.fire::<StateError>(store, target, |start, end, key, p| {
        let super::super::aggregate::Acc::Count(n) = p.0[0] else {
            panic!("not a count");
        };
        rows.push((String::from_utf8(key.to_vec()).unwrap(), start, end, n));
        Ok(())
    })
    .unwrap();
    rows.sort();
    rows
}

fn open() -> (tempfile::TempDir, StateStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path()).unwrap();
    (dir, store)
}

#[test]
fn records_within_the_gap_extend_and_a_bridge_merges() {
    let (_dir, store) = open();
    let mut s = SessionStore::new(count_plan(), 1, 10_000, None, usize::MAX, None);
    for t in [0, 5_000, 30_000, 36_000] {
        assert_eq!(put(&mut s, &store, "a", t, i64::MIN), Placed::Open);
    }
    put(&mut s, &store, "b", 1_000, i64::MIN);
    // b's session [1 s, 11 s) fires once its bucket (11 s) is fired
    // through; a's [0, 15 s) and [30 s, 46 s) are still open.
    assert_eq!(fire(&mut s, &store, 10_999), vec![]);
    assert_eq!(
        fire(&mut s, &store, 11_000),
        vec![("b".into(), 1_000, 11_000, 1)]
    );
    // Out of order: 22 s is within the gap of [30 s, 36 s] only, and
    // extends it backwards.
    assert_eq!(put(&mut s, &store, "a", 22_000, 11_000), Placed::Open);
    // 13 s is within the gap of both [0, 5 s] and [22 s, 36 s]: it bridges
    // them into one session.
    assert_eq!(put(&mut s, &store, "a", 13_000, 11_000), Placed::Open);
    assert_eq!(fire(&mut s, &store, 45_999), vec![]);
    assert_eq!(
        fire(&mut s, &store, 46_000),
        vec![("a".into(), 0, 46_000, 6)]
    );
    assert_eq!(s.emitted_through(46_000), 46_000);
    assert!(s.first_bucket().is_none());
}

#[test]
fn a_closed_session_is_not_joined_and_a_new_one_behind_the_frontier_is_late() {
    let (_dir, store) = open();
    let mut s = SessionStore::new(count_plan(), 1, 10_000, None, usize::MAX, None);
    put(&mut s, &store, "a", 0, i64::MIN);
    // Fired through 10.5 s: the session [0, 10 s) closed. A record at
    // 0.5 s would have joined it, and its own session would end by 10.5 s:
    // it is late.
    assert_eq!(
        fire(&mut s, &store, 10_500),
        vec![("a".into(), 0, 10_000, 1)]
    );
    assert_eq!(put(&mut s, &store, "a", 500, 10_500), Placed::Late);
    // One at 2 s ends 12 s > 10.5 s: a new session.
    assert_eq!(put(&mut s, &store, "a", 2_000, 10_500), Placed::Open);
    assert_eq!(
        fire(&mut s, &store, 20_000),
        vec![("a".into(), 2_000, 12_000, 1)]
    );
}

#[test]
fn a_grown_session_re_arms_its_timer_and_the_frontier_stays_behind_it() {
    let (_dir, store) = open();
    let mut s = SessionStore::new(count_plan(), 1, 3_000, None, usize::MAX, None);
    for t in (0..20_000).step_by(1_000) {
        put(&mut s, &store, "k", t, i64::MIN);
    }
    // Its timer was set at 3 s; the session ends at 22 s.
    assert_eq!(fire(&mut s, &store, 10_000), vec![]);
    assert_eq!(s.emitted_through(10_000), 10_000);
    assert_eq!(s.first_bucket(), Some(22_000));
    assert_eq!(
        fire(&mut s, &store, 22_000),
        vec![("k".into(), 0, 22_000, 20)]
    );
}

#[test]
fn max_duration_cuts_sessions_at_frame_boundaries() {
    let (_dir, store) = open();
    let mut s = SessionStore::new(count_plan(), 1, 5_000, Some(60_000), usize::MAX, None);
    for t in (50_000..70_000).step_by(2_000) {
        put(&mut s, &store, "k", t, i64::MIN);
    }
    assert_eq!(
        fire(&mut s, &store, i64::MAX),
        vec![
            ("k".into(), 50_000, 60_000, 5),
            ("k".into(), 60_000, 73_000, 5)
        ]
    );
    assert!(s.is_empty());
}

#[test]
fn sessions_survive_a_snapshot_eviction_and_restart() {
    let (dir, store) = open();
    let mut s = SessionStore::new(count_plan(), 3, 10_000, None, usize::MAX, None);
    for i in 0..500 {
        put(&mut s, &store, &format!("u{i}"), i * 10, i64::MIN);
    }
    let mut batch = kflow_state::StateBatch::new();
    s.snapshot(&mut batch, true);
    store
        .write(batch, kflow_state::WriteMode::Buffered)
        .unwrap();
    s.evict();
    assert_eq!(s.len(), 0, "all clean entries left memory");
    // Evicted keys are read back; new ones start.
    put(&mut s, &store, "u1", 5_000, i64::MIN);
    put(&mut s, &store, "new", 5_000, i64::MIN);
    let mut batch = kflow_state::StateBatch::new();
    s.snapshot(&mut batch, false);
    store
        .write(batch, kflow_state::WriteMode::Buffered)
        .unwrap();
    let times = s.times();
    drop(s);
    drop(store);
    let store = StateStore::open(dir.path()).unwrap();
    let mut r = SessionStore::new(count_plan(), 3, 10_000, None, usize::MAX, Some(&times));
    r.load_packed(&store, &times).unwrap();
    let rows = fire(&mut r, &store, i64::MAX);
    assert_eq!(rows.len(), 501);
    assert!(rows.contains(&("u1".into(), 10, 15_000, 2)));
    assert!(rows.contains(&("new".into(), 5_000, 15_000, 1)));
    assert!(rows.contains(&("u499".into(), 4_990, 14_990, 1)));
}
