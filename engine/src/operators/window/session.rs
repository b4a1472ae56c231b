//! Session windows: per key, maximal runs of records whose event times are
//! less than `gap` apart, each reported as `[first, last + gap)`.
//!
//! Two write-back caches hold the state, so sessions spill to RocksDB and
//! survive restarts like any window state:
//!
//! - **sessions**: per key, its open sessions (first, last, partial), under
//!   the time of their *frame*. Without `max_duration` every session is in
//!   one frame ([`NO_FRAME`]); with it, frames are the multiples of
//!   `max_duration` since the epoch and a session never crosses one, so
//!   none is longer and the cut does not depend on arrival order.
//! - **timers**: `(bucket, key) -> frames`, a reminder that the key may
//!   have a session ending in the bucket (`[b - BUCKET, b)` rounded to
//!   whole [`BUCKET`]s). A timer is set when a session starts; a session that
//!   grows keeps its (now early) timer, which re-arms at the session's real
//!   end when it comes due. So the common record, one that extends its
//!   key's current session, costs one probe, as a tumbling window's does.
//!
//! A record within `gap` of one open session extends it; within `gap` of
//! two (a late record bridging them) merges them, partials and all. A
//! session whose end is at or before the fired-through time is closed even
//! while it waits for its bucket to fire: nothing joins it. Rows go out
//! when the bucket holding a session's end is wholly fired through, so a
//! row waits at most [`BUCKET`] of event time past `end + allowed_lateness`,
//! and the frontier told downstream stays behind every row still to come.

use kflow_jobs::AggregatePlan;
use kflow_state::codec::Reader;
use kflow_state::{StateError, StateStore, StateValue, WindowCache};
use smallvec::SmallVec;

use super::aggregate::Partial;

/// The frame of every session when sessions have no `max_duration`.
pub const NO_FRAME: i64 = i64::MAX;

/// Timer granularity, in ms (at most the gap).
pub const BUCKET: i64 = 1_000;

/// One open session of a key.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// Event time of its first record.
    pub first: i64,
    /// Event time of its last record.
    pub last: i64,
    /// Its aggregates so far.
    pub partial: Partial,
}

/// The open sessions of one key in one frame, ordered by `first`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SessionSet(pub SmallVec<[Session; 1]>);

/// The frames a timer reminds of.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Frames(pub SmallVec<[i64; 1]>);

/// What happened to a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    /// It joined (or started) a session.
    Open,
    /// Its session would already have closed: it is late.
    Late,
}

/// The session state of one window partition.
pub struct SessionStore {
    gap: i64,
    max_duration: Option<i64>,
    bucket: i64,
    sessions: WindowCache<SessionSet>,
    timers: WindowCache<Frames>,
    /// A new session's partial, before its first record.
    empty: Partial,
    /// The bucket being fired: `(hash, key's end in due_keys, frames)`,
    /// the keys back to back in `due_keys` (reused, no allocation per key).
    due: Vec<(u64, usize, Frames)>,
    due_keys: Vec<u8>,
}

/// Where a session store's caches keep their times in RocksDB.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SessionTimes {
    /// Frames of the sessions cache stored key by key.
    pub stored: Vec<i64>,
    /// Frames of the sessions cache stored as packs.
    pub packed: Vec<i64>,
    /// Buckets of the timers cache stored key by key.
    pub timers_stored: Vec<i64>,
    /// Buckets of the timers cache stored as packs.
    pub timers_packed: Vec<i64>,
}

impl SessionStore {
    /// A store for partition state `instance` (its timers use
    /// [`timers_instance`]) within `budget` bytes.
    pub fn new(
        aggregates: Vec<AggregatePlan>,
        instance: u32,
        gap: i64,
        max_duration: Option<i64>,
        budget: usize,
        restore: Option<&SessionTimes>,
    ) -> SessionStore {
        let mut sessions = WindowCache::new(instance, budget / 4 * 3);
        let mut timers = WindowCache::new(timers_instance(instance), budget / 4);
        if let Some(times) = restore {
            sessions.add_spilled(times.stored.iter().copied());
            timers.add_spilled(times.timers_stored.iter().copied());
        }
        SessionStore {
            gap: gap.max(1),
            max_duration: max_duration.map(|d| d.max(1)),
            bucket: BUCKET.min(gap.max(1)),
            sessions,
            timers,
            empty: Partial::new(&aggregates),
            due: Vec::new(),
            due_keys: Vec::new(),
        }
    }

    /// Extends every stored session's partial with empty accumulators for
    /// the aggregates appended since it was stored; how many keys changed.
    ///
    /// # Errors
    /// [`StateError`] when the state cannot be read or written.
    pub fn extend_stored(
        &self,
        store: &StateStore,
        aggregates: &[AggregatePlan],
    ) -> Result<u64, StateError> {
        self.sessions.rewrite_stored(store, |set: &mut SessionSet| {
            let mut changed = false;
            for session in set.0.iter_mut() {
                changed |= session.partial.extend_to(aggregates);
            }
            changed
        })
    }

    /// Loads the packed times of a restored state.
    ///
    /// # Errors
    /// [`StateError`] when a pack is missing or does not decode.
    pub fn load_packed(
        &mut self,
        store: &StateStore,
        times: &SessionTimes,
    ) -> Result<(), StateError> {
        self.sessions
            .load_packed(store, times.packed.iter().copied())?;
        self.timers
            .load_packed(store, times.timers_packed.iter().copied())
    }

    /// The frame end of a record at `time`.
    fn frame_of(&self, time: i64) -> i64 {
        match self.max_duration {
            Some(d) => time.saturating_sub(time.rem_euclid(d)).saturating_add(d),
            None => NO_FRAME,
        }
    }

    /// The bucket a session ending at `end` is reminded in: the smallest
    /// multiple of the bucket at or after `end`.
    fn bucket_of(&self, end: i64) -> i64 {
        let before = end.saturating_sub(1);
        before
            .saturating_sub(before.rem_euclid(self.bucket))
            .saturating_add(self.bucket)
    }

    /// Places a record of `key` at `time`: it extends, merges or starts a
    /// session, and `apply` adds it to that session's partial. Sessions
    /// ending at or before `fired_through` are closed.
    ///
    /// # Errors
    /// [`StateError`] when reading spilled state fails.
    pub fn place(
        &mut self,
        store: &StateStore,
        time: i64,
        hash: u64,
        key: &[u8],
        fired_through: i64,
        apply: impl FnOnce(&mut Partial),
    ) -> Result<Placed, StateError> {
        let frame = self.frame_of(time);
        let gap = self.gap;
        let end_of = |s: &Session| s.last.saturating_add(gap).min(frame);
        let set = self
            .sessions
            .get_mut(store, frame, hash, key, SessionSet::default)?;
        let before = set.heap_bytes();
        let mut joined: SmallVec<[usize; 2]> = SmallVec::new();
        for (i, s) in set.0.iter().enumerate() {
            let open = end_of(s) > fired_through;
            if open && s.first.saturating_sub(gap) < time && time < s.last.saturating_add(gap) {
                joined.push(i);
            }
        }
        let mut timer = None;
        match joined.as_slice() {
            [] => {
                let end = time.saturating_add(gap).min(frame);
                if end <= fired_through {
                    if set.0.is_empty() {
                        self.sessions.discard(frame, hash, key);
                    }
                    return Ok(Placed::Late);
                }
                // Every session of the set has a timer at or before its
                // end, or before an earlier session's end (whose firing
                // re-arms for the rest): only a new earliest end needs one.
                if !set.0.iter().any(|s| end_of(s) <= end) {
                    timer = Some(end);
                }
                let mut partial = self.empty.clone();
                apply(&mut partial);
                let at = set.0.partition_point(|s| s.first <= time);
                set.0.insert(
                    at,
                    Session {
                        first: time,
                        last: time,
                        partial,
                    },
                );
            }
            [one, rest @ ..] => {
                // Merge every joined session into the first (the earliest:
                // the set is ordered by `first`), newest removed first.
                for &i in rest.iter().rev() {
                    let other = set.0.remove(i);
                    let into = &mut set.0[*one];
                    into.partial.merge(&other.partial);
                    into.last = into.last.max(other.last);
                }
                let s = &mut set.0[*one];
                s.first = s.first.min(time);
                s.last = s.last.max(time);
                apply(&mut s.partial);
            }
        }
        let after = set.heap_bytes();
        self.sessions.resize(before, after);
        if let Some(end) = timer {
            self.remind(store, end, hash, key, frame)?;
        }
        Ok(Placed::Open)
    }

    /// Sets a timer for `key`'s session in `frame` ending at `end`.
    fn remind(
        &mut self,
        store: &StateStore,
        end: i64,
        hash: u64,
        key: &[u8],
        frame: i64,
    ) -> Result<(), StateError> {
        let bucket = self.bucket_of(end);
        let frames = self
            .timers
            .get_mut(store, bucket, hash, key, Frames::default)?;
        if !frames.0.contains(&frame) {
            let before = frames.heap_bytes();
            frames.0.push(frame);
            let after = frames.heap_bytes();
            self.timers.resize(before, after);
        }
        Ok(())
    }

    /// The earliest bucket with timers, if any.
    fn first_bucket(&self) -> Option<i64> {
        self.timers.first_time_from(i64::MIN)
    }

    /// Every session end at or before this has been emitted: what the
    /// frontier downstream may advance to once sessions are fired through
    /// `fired_through`.
    pub fn emitted_through(&self, fired_through: i64) -> i64 {
        match self.first_bucket() {
            Some(b) => fired_through.min(b.saturating_sub(self.bucket)),
            None => fired_through,
        }
    }

    /// Emits every session ending at or before `target` whose bucket is
    /// wholly at or before `target` (and any other session of those keys
    /// that ended by then), oldest bucket first; re-arms the timers of
    /// sessions that grew past their bucket; drops frames wholly emitted.
    ///
    /// # Errors
    /// The first error of reading state or of `emit`.
    pub fn fire<E: From<StateError>>(
        &mut self,
        store: &StateStore,
        target: i64,
        mut emit: impl FnMut(i64, i64, &[u8], &Partial) -> Result<(), E>,
    ) -> Result<(), E> {
        let gap = self.gap;
        let mut due = std::mem::take(&mut self.due);
        let mut keys = std::mem::take(&mut self.due_keys);
        while let Some(bucket) = self.first_bucket().filter(|b| *b <= target) {
            due.clear();
            keys.clear();
            self.timers
                .drain::<StateError>(store, bucket, |key, frames| {
                    let hash = xxhash_rust::xxh3::xxh3_64(key);
                    keys.extend_from_slice(key);
                    due.push((hash, keys.len(), frames.clone()));
                    Ok(())
                })?;
            let mut start = 0;
            for (hash, end, frames) in &due {
                let key = &keys[start..*end];
                start = *end;
                for &frame in &frames.0 {
                    let end_of = |s: &Session| s.last.saturating_add(gap).min(frame);
                    let set =
                        self.sessions
                            .get_mut(store, frame, *hash, key, SessionSet::default)?;
                    let before = set.heap_bytes();
                    let mut next = None::<i64>;
                    let mut failed = None;
                    set.0.retain(|s| {
                        let end = end_of(s);
                        if end > target {
                            next = Some(next.map_or(end, |n: i64| n.min(end)));
                            return true;
                        }
                        if failed.is_none() {
                            if let Err(e) = emit(s.first, end, key, &s.partial) {
                                failed = Some(e);
                            }
                        }
                        false
                    });
                    let after = set.heap_bytes();
                    let emptied = set.0.is_empty();
                    self.sessions.resize(before, after);
                    if emptied {
                        self.sessions.discard(frame, *hash, key);
                    }
                    if let Some(e) = failed {
                        self.due = due;
                        self.due_keys = keys;
                        return Err(e);
                    }
                    if let Some(end) = next {
                        self.remind(store, end, *hash, key, frame)?;
                    }
                }
            }
        }
        self.due = due;
        self.due_keys = keys;
        if self.max_duration.is_some() {
            let through = self.emitted_through(target);
            while let Some(frame) = self
                .sessions
                .first_time_from(i64::MIN)
                .filter(|f| *f <= through)
            {
                self.sessions.remove(frame);
            }
        }
        Ok(())
    }

    /// Writes what changed into `batch` (see [`WindowCache::snapshot`]).
    pub fn snapshot(&mut self, batch: &mut kflow_state::StateBatch, evicting: bool) {
        self.sessions.snapshot(batch, evicting);
        self.timers.snapshot(batch, evicting);
    }

    /// Where the caches keep their times, for the partition's checkpoint.
    pub fn times(&self) -> SessionTimes {
        SessionTimes {
            stored: self.sessions.stored_times(),
            packed: self.sessions.packed_times(),
            timers_stored: self.timers.stored_times(),
            timers_packed: self.timers.packed_times(),
        }
    }

    /// Drops clean entries (after the snapshot was committed).
    pub fn evict(&mut self) {
        self.sessions.evict();
        self.timers.evict();
    }

    /// Whether either cache should spill.
    pub fn should_spill(&self) -> bool {
        self.sessions.should_spill() || self.timers.should_spill()
    }

    /// Whether either cache is over its budget.
    pub fn over_budget(&self) -> bool {
        self.sessions.over_budget() || self.timers.over_budget()
    }

    /// Bytes held in memory.
    pub fn bytes(&self) -> usize {
        self.sessions.bytes() + self.timers.bytes()
    }

    /// Keys with open sessions in memory.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether no session is in memory or spilled.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Timer buckets pending.
    pub fn open_times(&self) -> usize {
        self.timers.open_times()
    }

    /// Evictions and reads back, of both caches.
    pub fn stats(&self) -> kflow_state::cache::CacheStats {
        let (a, b) = (self.sessions.stats(), self.timers.stats());
        kflow_state::cache::CacheStats {
            evictions: a.evictions.max(b.evictions),
            spilled_reads: a.spilled_reads + b.spilled_reads,
        }
    }
}

/// The state instance of a partition's session timers: its own with the
/// partition's top bit set (partitions number far fewer than 2^15).
pub fn timers_instance(instance: u32) -> u32 {
    instance | 0x8000
}

impl StateValue for SessionSet {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.0.len() as u32).to_le_bytes());
        let mut partial = Vec::new();
        for s in &self.0 {
            out.extend_from_slice(&s.first.to_le_bytes());
            out.extend_from_slice(&s.last.to_le_bytes());
            partial.clear();
            s.partial.encode(&mut partial);
            out.extend_from_slice(&(partial.len() as u32).to_le_bytes());
            out.extend_from_slice(&partial);
        }
    }

    fn decode(bytes: &[u8]) -> Result<SessionSet, StateError> {
        let mut r = Reader::new(bytes, "a key's sessions");
        let n = r.len(20)?;
        let mut set = SmallVec::new();
        for _ in 0..n {
            let first = r.i64()?;
            let last = r.i64()?;
            let partial = Partial::decode(r.prefixed()?)?;
            set.push(Session {
                first,
                last,
                partial,
            });
        }
        if !r.is_done() {
            return Err(corrupt("trailing bytes after a key's sessions"));
        }
        Ok(SessionSet(set))
    }

    fn heap_bytes(&self) -> usize {
        let outside = if self.0.spilled() {
            self.0.capacity() * std::mem::size_of::<Session>()
        } else {
            0
        };
        outside + self.0.iter().map(|s| s.partial.heap_bytes()).sum::<usize>()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl StateValue for Frames {
    fn encode(&self, out: &mut Vec<u8>) {
        for frame in &self.0 {
            out.extend_from_slice(&frame.to_le_bytes());
        }
    }

    fn decode(bytes: &[u8]) -> Result<Frames, StateError> {
        if !bytes.len().is_multiple_of(8) {
            return Err(corrupt("a session timer is not a list of frames"));
        }
        let mut r = Reader::new(bytes, "a session timer");
        let mut frames = SmallVec::new();
        while !r.is_done() {
            frames.push(r.i64()?);
        }
        Ok(Frames(frames))
    }

    fn heap_bytes(&self) -> usize {
        if self.0.spilled() {
            self.0.capacity() * 8
        } else {
            0
        }
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn corrupt(what: &str) -> StateError {
    StateError::Corrupt(what.to_string())
}

#[cfg(test)]
mod tests;
