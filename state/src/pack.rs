//! Packed snapshots: the partials of a time that is wholly in memory,
//! stored as a few large values instead of one RocksDB key per partial.
//!
//! A time whose entries are all rewritten between checkpoints (a
//! sliding window's panes, a short tumbling window) would otherwise cost
//! one memtable insert, one write-ahead-log record and, later, one flushed
//! key per partial at every checkpoint. Packed, its partials are split by
//! hash into [`BUCKETS`] buckets and each bucket that holds a changed
//! partial is rewritten as one value: a checkpoint becomes a few hundred
//! large puts, which RocksDB takes at the speed of a copy.
//!
//! Layout, family [`crate::Family::Packs`]: `instance | time | bucket (u8)`
//! -> a run of `key length (u32 LE) | key | value length (u32 LE) | value`.
//! The key prefix is [`crate::codec::prefix`], so a time's packs are one
//! range, like its keyed partials in [`crate::Family::Windows`].

use crate::codec;
use crate::StateError;

/// Buckets per time.
pub const BUCKETS: usize = 256;

/// The bucket of a key with hash `hash`: bits 24..32, independent of the
/// bits that pick a key's partition (32 and up) and its cache shard
/// (40..44), so every partition and shard spreads over all buckets.
pub fn bucket(hash: u64) -> usize {
    usize::from((hash >> 24) as u8)
}

/// Appends the key of bucket `bucket` of `time` to `out`.
pub fn key(instance: u32, time: i64, bucket: usize, out: &mut Vec<u8>) {
    out.extend_from_slice(&codec::prefix(instance, time));
    out.push(bucket as u8);
}

/// Appends one partial to a pack: its key, then the value `encode` writes.
pub fn push(pack: &mut Vec<u8>, key: &[u8], encode: impl FnOnce(&mut Vec<u8>)) {
    debug_assert!(key.len() <= u32::MAX as usize);
    pack.extend_from_slice(&(key.len() as u32).to_le_bytes());
    pack.extend_from_slice(key);
    let at = pack.len();
    pack.extend_from_slice(&[0; 4]);
    encode(pack);
    debug_assert!(pack.len() - at - 4 <= u32::MAX as usize);
    let len = (pack.len() - at - 4) as u32;
    pack[at..at + 4].copy_from_slice(&len.to_le_bytes());
}

/// The `(key, value)` partials of a pack, in the order they were pushed.
pub fn entries(pack: &[u8]) -> impl Iterator<Item = Result<(&[u8], &[u8]), StateError>> {
    let mut rest = pack;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let entry = field(&mut rest).and_then(|key| Ok((key, field(&mut rest)?)));
        if entry.is_err() {
            rest = &[];
        }
        Some(entry)
    })
}

fn field<'a>(rest: &mut &'a [u8]) -> Result<&'a [u8], StateError> {
    let corrupt = || StateError::Corrupt("a packed partial is cut short".into());
    let (len, tail) = rest.split_first_chunk::<4>().ok_or_else(corrupt)?;
    let len = u32::from_le_bytes(*len) as usize;
    let bytes = tail.get(..len).ok_or_else(corrupt)?;
    *rest = &tail[len..];
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn a_pack_reads_back_what_was_pushed(
            parts in proptest::collection::vec(
                (proptest::collection::vec(any::<u8>(), 0..40),
                 proptest::collection::vec(any::<u8>(), 0..40)),
                0..20,
            )
        ) {
            let mut pack = Vec::new();
            for (k, v) in &parts {
                push(&mut pack, k, |out| out.extend_from_slice(v));
            }
            let back: Vec<(Vec<u8>, Vec<u8>)> = entries(&pack)
                .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())))
                .collect::<Result<_, _>>()
                .unwrap();
            prop_assert_eq!(back, parts);
        }
    }

    #[test]
    fn a_cut_pack_is_an_error_not_a_short_read() {
        let mut pack = Vec::new();
        push(&mut pack, b"user1", |out| {
            out.extend_from_slice(b"12345678")
        });
        for cut in 1..pack.len() {
            let read: Vec<_> = entries(&pack[..cut]).collect();
            assert!(read.last().unwrap().is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn pack_keys_sort_by_time_then_bucket() {
        let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
        key(3, 60_000, 255, &mut a);
        key(3, 120_000, 0, &mut b);
        key(3, 120_000, 7, &mut c);
        assert!(a < b && b < c);
        assert!(a.starts_with(&codec::prefix(3, 60_000)));
    }
}
