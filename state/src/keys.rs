//! Comparing encoded keys, the one byte-string comparison on every
//! record's path.
//!
//! A window without a key has empty keys, and an empty slice's pointer
//! may be dangling (an empty `Vec`'s is). `<[u8]>::eq` hands even a
//! zero-length compare to the C library, whose vector `memcmp` then reads
//! that address under an all-zero mask; on this project's machine that
//! costs a fault-suppression assist of ~77 ns per call against ~2 ns
//! (docs/performance/windows.md, "Empty keys"). [`same`] settles lengths
//! and empty keys itself, and compares keys of 8 to 16 bytes (a number, a
//! string of up to 11 bytes) as two overlapping 8-byte words, without a
//! call.

/// Whether two encoded keys are equal.
#[inline]
pub fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    if a.len() <= 16 {
        let words = (
            a.first_chunk::<8>(),
            a.last_chunk::<8>(),
            b.first_chunk::<8>(),
            b.last_chunk::<8>(),
        );
        if let (Some(a_head), Some(a_tail), Some(b_head), Some(b_tail)) = words {
            return a_head == b_head && a_tail == b_tail;
        }
    }
    a.is_empty() || a == b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_equal_byte_for_byte() {
        let (empty, allocated) = (Vec::new(), Vec::with_capacity(4));
        assert!(same(&empty, &allocated));
        assert!(same(b"u1", b"u1"));
        assert!(!same(b"u1", b"u2"));
        assert!(!same(b"u1", b"u12"));
        assert!(!same(b"", b"u"));
        assert!(!same(b"\x04\x06\0\0\0u76083", b"\x04\x06\0\0\0u76084"));
        assert!(!same(b"\x04\x06\0\0\0u76083", b"\x05\x06\0\0\0u76083"));
    }

    proptest::proptest! {
        #[test]
        fn agrees_with_slice_equality(
            a in proptest::collection::vec(0..4u8, 0..40),
            flip in proptest::option::of((0..40usize, 1..4u8)),
        ) {
            // Equal keys, or keys of one length differing in one byte.
            let mut b = a.clone();
            if let Some((at, by)) = flip {
                if let Some(byte) = b.get_mut(at) {
                    *byte = (*byte + by) % 4;
                }
            }
            proptest::prop_assert_eq!(same(&a, &b), a == b);
            // A shorter key is another key (but for two empty ones).
            proptest::prop_assert_eq!(same(&a, &b[..b.len().saturating_sub(1)]), a.is_empty());
        }
    }
}
