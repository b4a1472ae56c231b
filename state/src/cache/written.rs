//! Which keys of a time were ever written to RocksDB key by key: a
//! growable, blocked Bloom filter over the cache's key hashes.
//!
//! An update of a key that is not in memory, for a time with evicted
//! entries, has to ask RocksDB for the stored partial. When every record
//! brings a new key (sessions, devices, orders seen once) the answer is
//! almost always "nothing", and asking was a fifth of the window thread
//! (a multi-get through the Bloom filters and indexes of every level).
//! [`WrittenKeys`] answers "never written" from memory for all but a few
//! keys in a hundred (about one per stage, see below).
//!
//! A filter only exists for a time whose every keyed write went through it
//! (times that moved to keys during this run); a time restored from a
//! checkpoint has none and is always asked. The filter never forgets a key
//! (no false negative), so a "no" is exact. The cache drops filters that
//! grow past a share of its budget (a time without one is always read).
//!
//! Layout: 512-bit blocks aligned to cache lines; a key sets [`PROBES`]
//! bits of one block, so a query costs one memory access per stage. The
//! filter grows by stages, each twice the capacity of the one before; a key
//! not yet recorded is added to the newest stage, and looked for in all.

use crate::hint::prefetch;

/// Bits per key at a stage's capacity: with 7 probes in one 512-bit block,
/// about one false "maybe" in a hundred.
const BITS_PER_KEY: usize = 10;
/// Bits set per key.
const PROBES: u32 = 7;
/// Keys the first stage holds at least.
const SMALLEST_STAGE: usize = 512;

/// 512 bits, one cache line.
#[derive(Clone, Copy, Default)]
#[repr(align(64))]
struct Block([u64; 8]);

/// One fixed-size blocked Bloom filter.
struct Stage {
    blocks: Vec<Block>,
    capacity: usize,
    len: usize,
}

impl Stage {
    fn new(capacity: usize) -> Stage {
        let blocks = (capacity * BITS_PER_KEY).div_ceil(512).max(1);
        Stage {
            blocks: vec![Block::default(); blocks],
            capacity,
            len: 0,
        }
    }

    /// The block of `hash` and its bits, as (word, mask) pairs.
    fn probes(&self, hash: u64) -> (usize, impl Iterator<Item = (usize, u64)>) {
        // The cache's hash already uses its low bits (hashbrown buckets)
        // and some middle ones (shards, pack buckets): mix them all into
        // the block choice and the bits.
        let mixed = hash.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let block = ((mixed >> 32) * self.blocks.len() as u64) >> 32;
        let bits = (hash ^ (hash >> 31)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        let probes = (0..PROBES).map(move |i| {
            let bit = (bits >> (9 * i)) & 511;
            ((bit / 64) as usize, 1u64 << (bit % 64))
        });
        (block as usize, probes)
    }

    fn insert(&mut self, hash: u64) {
        let (block, probes) = self.probes(hash);
        if let Some(Block(words)) = self.blocks.get_mut(block) {
            for (word, mask) in probes {
                words[word] |= mask;
            }
        }
        self.len += 1;
    }

    /// Prefetches `hash`'s block (see [`WrittenKeys::touch`]).
    fn prefetch(&self, hash: u64) {
        let (block, _) = self.probes(hash);
        if let Some(block) = self.blocks.get(block) {
            prefetch(block);
        }
    }

    fn may_contain(&self, hash: u64) -> bool {
        let (block, mut probes) = self.probes(hash);
        self.blocks
            .get(block)
            .is_some_and(|Block(words)| probes.all(|(word, mask)| words[word] & mask != 0))
    }
}

/// The keys one time has written to RocksDB (see the module docs).
pub(super) struct WrittenKeys {
    stages: Vec<Stage>,
    /// The first stage's capacity.
    first: usize,
}

impl WrittenKeys {
    /// An empty filter whose first stage holds `keys` keys (the time's
    /// entries when it moves to keys), so a time that never grows never
    /// holds a larger filter than it needs.
    pub(super) fn expecting(keys: usize) -> WrittenKeys {
        WrittenKeys {
            stages: Vec::new(),
            first: keys.max(SMALLEST_STAGE),
        }
    }

    /// Records that the key with `hash` is stored. A key already recorded
    /// (or a false "maybe") adds nothing, so the filter grows with the
    /// distinct keys written, not with how often they are rewritten.
    pub(super) fn insert(&mut self, hash: u64) {
        if self.may_contain(hash) {
            return;
        }
        let full = self.stages.last().is_none_or(|s| s.len >= s.capacity);
        if full {
            let capacity = self.stages.last().map_or(self.first, |s| s.capacity * 2);
            self.stages.push(Stage::new(capacity));
        }
        if let Some(stage) = self.stages.last_mut() {
            stage.insert(hash);
        }
    }

    /// `false` only when no key with `hash` was ever recorded.
    pub(super) fn may_contain(&self, hash: u64) -> bool {
        self.stages.iter().any(|s| s.may_contain(hash))
    }

    /// Prefetches the blocks `hash` would be looked for in, one cache
    /// line per stage, so that a [`WrittenKeys::may_contain`] soon after
    /// finds them in the CPU cache: each stage is far larger than the
    /// cache, and the misses of reads asked for ahead are served together
    /// rather than one after another. Only a hint.
    pub(super) fn touch(&self, hash: u64) {
        for stage in &self.stages {
            stage.prefetch(hash);
        }
    }

    /// Memory held.
    pub(super) fn bytes(&self) -> usize {
        self.stages.iter().map(|s| s.blocks.len() * 64).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(i: u64) -> u64 {
        xxhash_rust::xxh3::xxh3_64(format!("key-{i}").as_bytes())
    }

    #[test]
    fn never_forgets_and_rarely_says_maybe() {
        let mut written = WrittenKeys::expecting(16 << 10);
        assert!(!written.may_contain(hash(0)));
        let n = 300_000;
        for i in 0..n {
            written.insert(hash(i));
        }
        assert!(
            (0..n).all(|i| written.may_contain(hash(i))),
            "a written key was forgotten"
        );
        // Reading ahead reads only: the answers stay as they were.
        let before: Vec<bool> = (n..n + 1000)
            .map(|i| written.may_contain(hash(i)))
            .collect();
        for i in 0..2 * n {
            written.touch(hash(i));
        }
        let after: Vec<bool> = (n..n + 1000)
            .map(|i| written.may_contain(hash(i)))
            .collect();
        assert_eq!(before, after);
        let false_maybes = (n..2 * n).filter(|&i| written.may_contain(hash(i))).count();
        // Four full stages (16k to 128k keys) at about 1% each and a fifth
        // filling: measured 3.9%.
        assert!(
            false_maybes < n as usize * 8 / 100,
            "{false_maybes} of {n} unwritten keys looked written"
        );
        assert_eq!(written.stages.len(), 5);
        assert!(written.bytes() < 2 * n as usize * BITS_PER_KEY / 8 + 64 * 5);
        // Rewriting the same keys (every checkpoint of a long window) does
        // not grow it.
        let bytes = written.bytes();
        for _ in 0..10 {
            for i in 0..n {
                written.insert(hash(i));
            }
        }
        assert_eq!(written.bytes(), bytes);
    }
}
