//! How a checkpoint stores seen ids: per expiry bucket, *blobs* of ids
//! with their expiries.
//!
//! A blob's key is `source \0 | bucket | sequence | 2`; its value is, per
//! id, the id hash (8 bytes, little-endian) and the expiry's difference
//! from the blob's previous one (the first from 0), zigzag-encoded as a
//! varint. Ids are written in the order they came, so neighbours expire
//! milliseconds apart and most differences take one or two bytes: ~10
//! bytes an id against 16 for a pair of words. Blobs of the earlier form
//! (key `source \0 | bucket | sequence`, value `(hash, expiry)` as two
//! little-endian words) are still read.

/// Length of a stored hash, bucket or sequence number.
pub(super) const WORD: usize = 8;

/// The last byte of a blob key of the current form.
const DELTAS: u8 = 2;

/// A blob key's parts after the source's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct BlobKey {
    pub bucket: i64,
    pub sequence: u64,
    /// Whether its value holds pairs of words (the earlier form).
    pub pairs: bool,
}

/// Appends the key of a blob of the current form to `prefix`.
pub(super) fn key(mut prefix: Vec<u8>, bucket: i64, sequence: u64) -> Vec<u8> {
    prefix.extend_from_slice(&order(bucket));
    prefix.extend_from_slice(&sequence.to_be_bytes());
    prefix.push(DELTAS);
    prefix
}

/// The first key of `bucket`'s blobs (of either form), to bound a range.
pub(super) fn bucket_start(mut prefix: Vec<u8>, bucket: i64) -> Vec<u8> {
    prefix.extend_from_slice(&order(bucket));
    prefix.extend_from_slice(&0u64.to_be_bytes());
    prefix
}

/// Reads a blob key after the source's prefix; `None` when it is not one.
pub(super) fn parse_key(rest: &[u8]) -> Option<BlobKey> {
    let (bucket, rest) = rest.split_first_chunk::<WORD>()?;
    let (sequence, rest) = rest.split_first_chunk::<WORD>()?;
    let pairs = match rest {
        [] => true,
        [DELTAS] => false,
        _ => return None,
    };
    Some(BlobKey {
        bucket: unorder(*bucket),
        sequence: u64::from_be_bytes(*sequence),
        pairs,
    })
}

/// The blobs one snapshot writes, filled id by id.
#[derive(Debug, Default)]
pub(super) struct Blobs {
    open: Vec<Open>,
    /// The blob the last id went to: ids come in the order they arrived,
    /// so most fall in the bucket of the one before.
    last: usize,
}

#[derive(Debug)]
struct Open {
    bucket: i64,
    value: Vec<u8>,
    /// The expiry of the value's last id.
    previous: i64,
}

impl Blobs {
    /// Adds id `hash` with `expiry` to the blob of `bucket`.
    pub(super) fn push(&mut self, bucket: i64, hash: u64, expiry: i64) {
        if self.open.get(self.last).is_none_or(|b| b.bucket != bucket) {
            self.last = match self.open.iter().position(|b| b.bucket == bucket) {
                Some(found) => found,
                None => {
                    self.open.push(Open {
                        bucket,
                        value: Vec::new(),
                        previous: 0,
                    });
                    self.open.len() - 1
                }
            };
        }
        if let Some(blob) = self.open.get_mut(self.last) {
            push(&mut blob.value, &mut blob.previous, hash, expiry);
        }
    }

    /// The blobs, `(bucket, value)`, in bucket order.
    pub(super) fn into_sorted(mut self) -> impl Iterator<Item = (i64, Vec<u8>)> {
        self.open.sort_unstable_by_key(|b| b.bucket);
        self.open.into_iter().map(|b| (b.bucket, b.value))
    }
}

/// Appends id `hash` with `expiry` to a blob whose previous expiry was
/// `previous` (0 for an empty blob), and makes `expiry` the previous one.
fn push(blob: &mut Vec<u8>, previous: &mut i64, hash: u64, expiry: i64) {
    blob.extend_from_slice(&hash.to_le_bytes());
    let step = expiry.wrapping_sub(*previous);
    prost::encoding::encode_varint(((step << 1) ^ (step >> 63)) as u64, blob);
    *previous = expiry;
}

/// Calls `id(expiry, hash)` for each id of a blob's value, in order;
/// `None` when the value is malformed.
pub(super) fn read(mut value: &[u8], pairs: bool, mut id: impl FnMut(i64, u64)) -> Option<()> {
    if pairs {
        if !value.len().is_multiple_of(2 * WORD) {
            return None;
        }
        for pair in value.chunks_exact(2 * WORD) {
            let (hash, expiry) = pair.split_first_chunk::<WORD>()?;
            let expiry = <[u8; WORD]>::try_from(expiry).ok()?;
            id(i64::from_le_bytes(expiry), u64::from_le_bytes(*hash));
        }
        return Some(());
    }
    let mut previous = 0i64;
    while let Some((hash, rest)) = value.split_first_chunk::<WORD>() {
        value = rest;
        let zigzag = prost::encoding::decode_varint(&mut value).ok()?;
        let step = ((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64);
        previous = previous.wrapping_add(step);
        id(previous, u64::from_le_bytes(*hash));
    }
    value.is_empty().then_some(())
}

/// A signed bucket as bytes that sort in its order.
fn order(bucket: i64) -> [u8; WORD] {
    ((bucket as u64) ^ (1 << 63)).to_be_bytes()
}

fn unorder(bytes: [u8; WORD]) -> i64 {
    (u64::from_be_bytes(bytes) ^ (1 << 63)) as i64
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use proptest::prelude::*;

    use super::*;

    fn decoded(value: &[u8], pairs: bool) -> Option<Vec<(i64, u64)>> {
        let mut ids = Vec::new();
        read(value, pairs, |expiry, hash| ids.push((expiry, hash)))?;
        Some(ids)
    }

    proptest! {
        #[test]
        fn ids_read_back_as_written(
            ids in proptest::collection::vec(
                (any::<u64>(), prop_oneof![any::<i64>(), 1_700_000_000_000..1_700_000_100_000i64]),
                0..200,
            ),
        ) {
            let mut blob = Vec::new();
            let mut previous = 0;
            for &(hash, expiry) in &ids {
                push(&mut blob, &mut previous, hash, expiry);
            }
            let back: Vec<(u64, i64)> =
                decoded(&blob, false).unwrap().into_iter().map(|(e, h)| (h, e)).collect();
            prop_assert_eq!(back, ids);
        }

        #[test]
        fn blob_keys_sort_by_bucket_then_sequence(
            a in (any::<i64>(), any::<u64>()),
            b in (any::<i64>(), any::<u64>()),
        ) {
            let (ka, kb) = (key(vec![7], a.0, a.1), key(vec![7], b.0, b.1));
            prop_assert_eq!(ka.cmp(&kb), a.cmp(&b));
            let parsed = parse_key(&ka[1..]).unwrap();
            prop_assert_eq!((parsed.bucket, parsed.sequence, parsed.pairs), (a.0, a.1, false));
            // Every blob of a bucket sorts between its start and the next's.
            prop_assert!(bucket_start(vec![7], a.0) <= ka);
            if a.0 < i64::MAX {
                prop_assert!(ka < bucket_start(vec![7], a.0 + 1));
            }
        }
    }

    #[test]
    fn interleaved_buckets_fill_their_own_blobs_in_bucket_order() {
        let mut blobs = Blobs::default();
        for (bucket, hash, expiry) in [(5, 1, 5_010), (4, 2, 4_990), (5, 3, 5_020), (4, 4, 4_999)] {
            blobs.push(bucket, hash, expiry);
        }
        let read_back: Vec<(i64, Vec<(i64, u64)>)> = blobs
            .into_sorted()
            .map(|(bucket, value)| (bucket, decoded(&value, false).unwrap()))
            .collect();
        assert_eq!(
            read_back,
            [
                (4, vec![(4_990, 2), (4_999, 4)]),
                (5, vec![(5_010, 1), (5_020, 3)])
            ]
        );
    }

    #[test]
    fn ids_in_arrival_order_take_about_ten_bytes() {
        let mut blob = Vec::new();
        let mut previous = 0;
        let base = 1_764_064_800_000_i64;
        for i in 0..1_000_i64 {
            // ~1.4 records a millisecond, a few seconds out of order.
            let expiry = base + i * 7 / 10 + (i * 7919 % 4_000) - 2_000;
            push(&mut blob, &mut previous, i as u64 * 0x9e37_79b9, expiry);
        }
        assert!(blob.len() < 11_000, "{} bytes", blob.len());
    }

    #[test]
    fn blobs_of_the_earlier_form_are_read() {
        let mut value = Vec::new();
        for (hash, expiry) in [(1u64, 5_000i64), (2, -3)] {
            value.extend_from_slice(&hash.to_le_bytes());
            value.extend_from_slice(&expiry.to_le_bytes());
        }
        assert_eq!(decoded(&value, true), Some(vec![(5_000, 1), (-3, 2)]));
        assert_eq!(decoded(&value[..20], true), None);
        let mut rest = order(-4).to_vec();
        rest.extend_from_slice(&9u64.to_be_bytes());
        let parsed = parse_key(&rest).unwrap();
        assert_eq!(
            (parsed.bucket, parsed.sequence, parsed.pairs),
            (-4, 9, true)
        );
    }

    #[test]
    fn a_cut_or_overlong_blob_is_malformed() {
        let mut blob = Vec::new();
        let mut previous = 0;
        push(&mut blob, &mut previous, 1, 1_764_064_800_000);
        assert_eq!(decoded(&blob[..blob.len() - 1], false), None);
        assert_eq!(decoded(&blob[..5], false), None);
        assert_eq!(decoded(&[], false), Some(vec![]));
        assert!(parse_key(&[0; 18]).is_none());
        assert!(parse_key(&[0; 12]).is_none());
    }
}
