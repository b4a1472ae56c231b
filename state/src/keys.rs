//! Comparing encoded keys, the one byte-string comparison on every
//! record's path.
//!
//! A window without a key has empty keys, and an empty slice's pointer
//! may be dangling (an empty `Vec`'s is). `<[u8]>::eq` hands even a
//! zero-length compare to the C library, whose vector `memcmp` then reads
//! that address under an all-zero mask; on this project's machine that
//! costs a fault-suppression assist of ~77 ns per call against ~2 ns
//! (docs/performance.md, "Empty keys"). [`same`] settles lengths and empty
//! keys itself.

/// Whether two encoded keys are equal.
#[inline]
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && (a.is_empty() || a == b)
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
    }
}
