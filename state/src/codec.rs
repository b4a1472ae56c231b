//! Order-preserving byte layout of state keys.
//!
//! A window partial is stored under `instance (u32 BE) | time (i64, sign bit
//! flipped, BE) | key bytes`, where the instance names one partition of one
//! operator. Flipping the sign bit makes the unsigned
//! big-endian order of the bytes equal the signed order of the times, so a
//! RocksDB range scan returns windows oldest first, negative times included.

use crate::StateError;

/// Length of the `operator | time` prefix.
pub const PREFIX_LEN: usize = 12;

/// Encodes a time so that byte order equals numeric order.
pub fn encode_time(time: i64) -> [u8; 8] {
    ((time as u64) ^ (1 << 63)).to_be_bytes()
}

/// Inverse of [`encode_time`].
pub fn decode_time(bytes: [u8; 8]) -> i64 {
    (u64::from_be_bytes(bytes) ^ (1 << 63)) as i64
}

/// The `operator | time` prefix of a state key.
pub fn prefix(instance: u32, time: i64) -> [u8; PREFIX_LEN] {
    let mut out = [0u8; PREFIX_LEN];
    out[..4].copy_from_slice(&instance.to_be_bytes());
    out[4..].copy_from_slice(&encode_time(time));
    out
}

/// The id under which partition `partition` of operator `operator` keeps
/// its state.
pub fn instance(operator: u16, partition: u16) -> u32 {
    (u32::from(operator) << 16) | u32::from(partition)
}

/// Appends the full state key for `(operator, time, key)` to `out`.
pub fn encode_key(operator: u32, time: i64, key: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&prefix(operator, time));
    out.extend_from_slice(key);
}

/// Splits a state key into `(operator, time, key)`.
///
/// # Errors
/// [`StateError::Corrupt`] when the key is shorter than its prefix.
pub fn decode_key(bytes: &[u8]) -> Result<(u32, i64, &[u8]), StateError> {
    if bytes.len() < PREFIX_LEN {
        return Err(StateError::Corrupt(format!(
            "state key of {} bytes is shorter than its {PREFIX_LEN}-byte prefix",
            bytes.len()
        )));
    }
    let operator = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let mut time = [0u8; 8];
    time.copy_from_slice(&bytes[4..PREFIX_LEN]);
    Ok((operator, decode_time(time), &bytes[PREFIX_LEN..]))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn time_order_is_byte_order(a in any::<i64>(), b in any::<i64>()) {
            prop_assert_eq!(a.cmp(&b), encode_time(a).cmp(&encode_time(b)));
            prop_assert_eq!(decode_time(encode_time(a)), a);
        }

        #[test]
        fn key_order_is_operator_then_time_then_key(
            op1 in 0u32..4, t1 in any::<i64>(), k1 in proptest::collection::vec(any::<u8>(), 0..8),
            op2 in 0u32..4, t2 in any::<i64>(), k2 in proptest::collection::vec(any::<u8>(), 0..8),
        ) {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            encode_key(op1, t1, &k1, &mut a);
            encode_key(op2, t2, &k2, &mut b);
            let expected = (op1, t1, &k1).cmp(&(op2, t2, &k2));
            prop_assert_eq!(a.cmp(&b), expected);
            let (op, t, k) = decode_key(&a).unwrap();
            prop_assert_eq!((op, t, k), (op1, t1, &k1[..]));
        }
    }

    #[test]
    fn short_key_is_corrupt() {
        assert!(matches!(
            decode_key(&[1, 2, 3]),
            Err(StateError::Corrupt(_))
        ));
    }
}

/// Reads the little-endian values of a serialised state value or message,
/// front to back; every read past the end is [`StateError::Corrupt`],
/// naming `what` was being read.
#[derive(Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `bytes`, which hold a `what`.
    pub fn new(bytes: &'a [u8], what: &'static str) -> Reader<'a> {
        Reader { bytes, at: 0, what }
    }

    fn truncated(&self) -> StateError {
        StateError::Corrupt(format!("{} is truncated", self.what))
    }

    /// The next `n` bytes.
    ///
    /// # Errors
    /// [`StateError::Corrupt`] past the end.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], StateError> {
        let end = self.at.checked_add(n).ok_or_else(|| self.truncated())?;
        let slice = self
            .bytes
            .get(self.at..end)
            .ok_or_else(|| self.truncated())?;
        self.at = end;
        Ok(slice)
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], StateError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    /// The next byte.
    ///
    /// # Errors
    /// [`StateError::Corrupt`] past the end.
    pub fn u8(&mut self) -> Result<u8, StateError> {
        Ok(self.take::<1>()?[0])
    }

    /// The next `u16`.
    ///
    /// # Errors
    /// [`StateError::Corrupt`] past the end.
    pub fn u16(&mut self) -> Result<u16, StateError> {
        Ok(u16::from_le_bytes(self.take()?))
    }

    /// The next `u32`.
    ///
    /// # Errors
    /// [`StateError::Corrupt`] past the end.
    pub fn u32(&mut self) -> Result<u32, StateError> {
        Ok(u32::from_le_bytes(self.take()?))
    }

    /// The next `u64`.
    ///
    /// # Errors
    /// [`StateError::Corrupt`] past the end.
    pub fn u64(&mut self) -> Result<u64, StateError> {
        Ok(u64::from_le_bytes(self.take()?))
    }

    /// The next `i64`.
    ///
    /// # Errors
    /// [`StateError::Corrupt`] past the end.
    pub fn i64(&mut self) -> Result<i64, StateError> {
        Ok(i64::from_le_bytes(self.take()?))
    }

    /// The next `f64`.
    ///
    /// # Errors
    /// [`StateError::Corrupt`] past the end.
    pub fn f64(&mut self) -> Result<f64, StateError> {
        Ok(f64::from_le_bytes(self.take()?))
    }

    /// A `u32` count of items of at least `item` bytes each, checked
    /// against the bytes left (a corrupt count must not allocate).
    ///
    /// # Errors
    /// [`StateError::Corrupt`] past the end or for a count out of range.
    pub fn len(&mut self, item: usize) -> Result<usize, StateError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(item) > self.bytes.len() - self.at {
            return Err(StateError::Corrupt(format!(
                "{} has a length out of range",
                self.what
            )));
        }
        Ok(n)
    }

    /// A `u32`-length-prefixed byte string.
    ///
    /// # Errors
    /// [`StateError::Corrupt`] past the end.
    pub fn prefixed(&mut self) -> Result<&'a [u8], StateError> {
        let n = self.len(1)?;
        self.bytes(n)
    }

    /// Whether every byte was read.
    pub fn is_done(&self) -> bool {
        self.at == self.bytes.len()
    }
}
