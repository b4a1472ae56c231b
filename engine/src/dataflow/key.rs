//! The byte encoding of window keys (and of `count_distinct` values).
//!
//! A key is the concatenation of its fields' values, each tagged with its
//! type, so `"1"` and `1` are different keys and the original JSON value can
//! be written back into the output row. The bytes are hashed with xxh3 (a
//! stable hash: it picks the partition and must agree across runs).

use std::borrow::Cow;

use kflow_jobs::Value;

const NULL: u8 = 0;
const FALSE: u8 = 1;
const TRUE: u8 = 2;
const NUM: u8 = 3;
const STR: u8 = 4;

/// Appends the encoding of one value; `None` for objects and arrays, which
/// cannot be keys.
pub fn encode_value(value: &Value<'_>, out: &mut Vec<u8>) -> Option<()> {
    match value {
        Value::Null => out.push(NULL),
        Value::Bool(false) => out.push(FALSE),
        Value::Bool(true) => out.push(TRUE),
        Value::Num(n) => {
            out.push(NUM);
            // -0.0 and 0.0 are the same key.
            let n = if *n == 0.0 { 0.0 } else { *n };
            out.extend_from_slice(&n.to_bits().to_be_bytes());
        }
        Value::Str(s) => {
            out.push(STR);
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        Value::Other => return None,
    }
    Some(())
}

/// Decodes a key written by [`encode_value`] calls back into its values.
/// Returns `None` when the bytes are not a valid encoding (corrupt state).
pub fn decode_values(mut bytes: &[u8]) -> Option<Vec<Value<'_>>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        out.push(next_value(&mut bytes)?);
    }
    Some(out)
}

/// Decodes the first value of `bytes` and advances past it. Returns `None`
/// at the end or when the bytes are not a valid encoding.
pub fn next_value<'a>(bytes: &mut &'a [u8]) -> Option<Value<'a>> {
    let (&tag, rest) = bytes.split_first()?;
    let (value, rest) = match tag {
        NULL => (Value::Null, rest),
        FALSE => (Value::Bool(false), rest),
        TRUE => (Value::Bool(true), rest),
        NUM => {
            let (n, rest) = rest.split_first_chunk::<8>()?;
            (Value::Num(f64::from_bits(u64::from_be_bytes(*n))), rest)
        }
        STR => {
            let (len, rest) = rest.split_first_chunk::<4>()?;
            let len = u32::from_le_bytes(*len) as usize;
            let s = rest.get(..len)?;
            (
                Value::Str(Cow::Borrowed(std::str::from_utf8(s).ok()?)),
                &rest[len..],
            )
        }
        _ => return None,
    };
    *bytes = rest;
    Some(value)
}

/// The stable hash of encoded bytes.
pub fn hash(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

/// Writes an encoded key as a partition key for a sink that partitions
/// its rows (Kinesis): each value's text (a string as it is, other values
/// as JSON), joined with `|`. Corrupt bytes (never written by kflow) end
/// the key where they start.
pub fn write_partition_key(mut encoded: &[u8], out: &mut Vec<u8>) {
    let mut first = true;
    while let Some(value) = next_value(&mut encoded) {
        if !first {
            out.push(b'|');
        }
        first = false;
        match &value {
            Value::Str(s) => out.extend_from_slice(s.as_bytes()),
            other => crate::dataflow::json::write_value(out, other),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = Value<'static>> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<f64>()
                .prop_filter("not nan", |f| !f.is_nan())
                .prop_map(Value::Num),
            ".{0,12}".prop_map(|s| Value::Str(Cow::Owned(s))),
        ]
    }

    proptest! {
        #[test]
        fn keys_round_trip(values in proptest::collection::vec(value(), 0..4)) {
            let mut bytes = Vec::new();
            for v in &values {
                encode_value(v, &mut bytes).unwrap();
            }
            let back = decode_values(&bytes).unwrap();
            let norm = |v: &Value<'_>| match v { Value::Num(n) if *n == 0.0 => Value::Num(0.0), v => v.clone().into_owned() };
            prop_assert_eq!(back.iter().map(norm).collect::<Vec<_>>(), values.iter().map(norm).collect::<Vec<_>>());
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..32)) {
            let _ = decode_values(&bytes);
        }
    }

    #[test]
    fn string_and_number_keys_differ() {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        encode_value(&Value::Str("1".into()), &mut a).unwrap();
        encode_value(&Value::Num(1.0), &mut b).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn partition_keys_are_the_values_joined() {
        let mut encoded = Vec::new();
        for v in [Value::Str("eu".into()), Value::Num(5.0), Value::Bool(true)] {
            encode_value(&v, &mut encoded).unwrap();
        }
        let mut out = Vec::new();
        write_partition_key(&encoded, &mut out);
        assert_eq!(out, b"eu|5|true");
        out.clear();
        write_partition_key(&[], &mut out);
        assert!(out.is_empty());
    }
}
