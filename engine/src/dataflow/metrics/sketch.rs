//! Heavy hitters: the keys that occur most often, estimated in fixed
//! memory by the Space-Saving algorithm over a sample of the records.
//!
//! A task offers a random sample of its keys (one in [`SAMPLE`]), so the
//! sketch costs a few nanoseconds per record on average. Counts are scaled
//! back by the sample rate. Two generations are kept: the current one and
//! the one before it, rotated every [`GENERATION`] (by
//! [`HeavyHitters::publish`]), so the list covers the last 30 to 60 seconds
//! and a key that stopped being hot drops out.

use std::time::{Duration, Instant};

use hashbrown::HashMap;

/// One key in [`SAMPLE`] is offered to the sketch.
pub const SAMPLE: u64 = 16;

/// Keys tracked per generation.
const CAPACITY: usize = 64;

/// How long a generation lasts.
pub const GENERATION: Duration = Duration::from_secs(30);

/// A heavy-hitters sketch over byte-string keys.
#[derive(Debug)]
pub struct HeavyHitters {
    current: HashMap<Box<[u8]>, u64>,
    previous: HashMap<Box<[u8]>, u64>,
    rng: u64,
    rotated: Instant,
}

impl Default for HeavyHitters {
    fn default() -> HeavyHitters {
        HeavyHitters {
            current: HashMap::with_capacity(CAPACITY),
            previous: HashMap::new(),
            rng: 0x9E37_79B9_7F4A_7C15,
            rotated: Instant::now(),
        }
    }
}

impl HeavyHitters {
    /// Whether the next record is in the sample.
    #[inline]
    pub fn sampled(&mut self) -> bool {
        self.random().is_multiple_of(SAMPLE)
    }

    /// A pseudo-random number (xorshift64: cheap, and unlike "every n-th
    /// record" not fooled by keys that repeat with a period).
    #[inline]
    pub fn random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// Counts one sampled occurrence of `key`.
    pub fn offer(&mut self, key: &[u8]) {
        if let Some(count) = self.current.get_mut(key) {
            *count += 1;
            return;
        }
        if self.current.len() < CAPACITY {
            self.current.insert(key.into(), 1);
            return;
        }
        // Space-Saving: the new key takes the place of the rarest one and
        // inherits its count (an overestimate by at most that count).
        let Some((rarest, min)) = self
            .current
            .iter()
            .min_by_key(|(_, c)| **c)
            .map(|(k, c)| (k.clone(), *c))
        else {
            return;
        };
        self.current.remove(&rarest);
        self.current.insert(key.into(), min + 1);
    }

    /// Starts a new generation; the oldest one is dropped.
    pub fn rotate(&mut self) {
        self.previous = std::mem::replace(&mut self.current, HashMap::with_capacity(CAPACITY));
    }

    /// The `n` heaviest keys as text, for a task's published list; starts
    /// a new generation once the current one is [`GENERATION`] old.
    pub fn publish(&mut self, n: usize) -> Vec<(String, u64)> {
        let top = self
            .top(n)
            .into_iter()
            .map(|(k, c)| (String::from_utf8_lossy(&k).into_owned(), c))
            .collect();
        if self.rotated.elapsed() >= GENERATION {
            self.rotated = Instant::now();
            self.rotate();
        }
        top
    }

    /// The `n` heaviest keys with their estimated record counts over both
    /// generations, heaviest first.
    pub fn top(&self, n: usize) -> Vec<(Vec<u8>, u64)> {
        let mut merged: HashMap<&[u8], u64> = HashMap::new();
        for (key, count) in self.previous.iter().chain(&self.current) {
            *merged.entry(&key[..]).or_default() += count;
        }
        let mut all: Vec<(Vec<u8>, u64)> = merged
            .into_iter()
            .map(|(k, c)| (k.to_vec(), c * SAMPLE))
            .collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        all.truncate(n);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hot_key_among_many_cold_ones_comes_first() {
        let mut sketch = HeavyHitters::default();
        for i in 0..200_000u64 {
            let key = if i % 4 == 0 {
                b"hot".to_vec()
            } else {
                format!("cold-{}", i % 5000).into_bytes()
            };
            if sketch.sampled() {
                sketch.offer(&key);
            }
        }
        let top = sketch.top(3);
        assert_eq!(top[0].0, b"hot");
        // About 50,000 occurrences, estimated from a 1-in-16 sample.
        assert!((35_000..70_000).contains(&top[0].1), "{top:?}");
    }

    #[test]
    fn keys_that_stopped_drop_out_after_two_rotations() {
        let mut sketch = HeavyHitters::default();
        sketch.offer(b"old");
        sketch.rotate();
        assert_eq!(sketch.top(1)[0].0, b"old");
        sketch.rotate();
        assert!(sketch.top(1).is_empty());
    }
}
