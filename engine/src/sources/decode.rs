//! Decoding JSON records into only the fields a job reads.
//!
//! A [`Projection`] is a small trie of the field paths a source must decode
//! (computed once by the job compiler). Decoding walks the JSON text once with
//! serde_json, stores referenced scalars into their slots, borrowing strings
//! from the line when they have no escapes, and skips everything else without
//! building it. The whole line is still validated as JSON.

use std::borrow::Cow;
use std::fmt;

use kflow_jobs::{FieldPath, Value};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Why a line could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Default)]
struct Node {
    slot: Option<usize>,
    children: Vec<(Box<str>, Node)>,
}

impl Node {
    fn child(&self, name: &str) -> Option<&Node> {
        self.children
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, c)| c)
    }
}

/// The field paths one source decodes; slot `i` holds `paths[i]`.
#[derive(Debug)]
pub struct Projection {
    root: Node,
    slots: usize,
}

impl Projection {
    /// A projection decoding `paths` into slots `0..paths.len()`.
    pub fn new<'a>(paths: impl IntoIterator<Item = &'a FieldPath>) -> Projection {
        let mut root = Node::default();
        let mut slots = 0;
        for path in paths {
            let mut node = &mut root;
            for segment in &path.segments {
                let at = match node.children.iter().position(|(n, _)| **n == **segment) {
                    Some(i) => i,
                    None => {
                        node.children
                            .push((segment.as_str().into(), Node::default()));
                        node.children.len() - 1
                    }
                };
                node = &mut node.children[at].1;
            }
            node.slot = Some(slots);
            slots += 1;
        }
        Projection { root, slots }
    }

    /// Number of slots.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Decodes `line` (one JSON object) into `slots`, which must have
    /// [`Projection::slots`] entries; fields the line lacks become null.
    ///
    /// # Errors
    /// [`DecodeError`] when the line is not a single JSON object in UTF-8.
    pub fn decode<'a>(&self, line: &'a [u8], slots: &mut [Value<'a>]) -> Result<(), DecodeError> {
        for slot in slots.iter_mut() {
            *slot = Value::Null;
        }
        let mut de = serde_json::Deserializer::from_slice(line);
        FieldSeed {
            node: &self.root,
            slots,
            top: true,
        }
        .deserialize(&mut de)
        .and_then(|()| de.end())
        .map_err(|e| DecodeError(format!("invalid JSON: {e}")))
    }
}

struct FieldSeed<'p, 's, 'a> {
    node: &'p Node,
    slots: &'s mut [Value<'a>],
    top: bool,
}

impl<'de> DeserializeSeed<'de> for FieldSeed<'_, '_, 'de> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

macro_rules! store_scalar {
    ($self:ident, $value:expr) => {{
        if $self.top {
            return Err(de::Error::custom("a record must be a JSON object"));
        }
        if let Some(slot) = $self.node.slot {
            $self.slots[slot] = $value;
        }
        Ok(())
    }};
}

impl<'de> Visitor<'de> for FieldSeed<'_, '_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        store_scalar!(self, Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        store_scalar!(self, Value::Num(v as f64))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        store_scalar!(self, Value::Num(v as f64))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        store_scalar!(self, Value::Num(v))
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<(), E> {
        store_scalar!(self, Value::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        store_scalar!(self, Value::Str(Cow::Owned(v.to_string())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<(), E> {
        store_scalar!(self, Value::Str(Cow::Owned(v)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        store_scalar!(self, Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if self.top {
            return Err(de::Error::custom("a record must be a JSON object"));
        }
        if let Some(slot) = self.node.slot {
            self.slots[slot] = Value::Other;
        }
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        if let Some(slot) = self.node.slot {
            self.slots[slot] = Value::Other;
        }
        while let Some(child) = map.next_key_seed(KeySeed(self.node))? {
            match child {
                Some(node) => map.next_value_seed(FieldSeed {
                    node,
                    slots: &mut *self.slots,
                    top: false,
                })?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// Reads a key and finds the projection child it names, if any.
struct KeySeed<'p>(&'p Node);

impl<'de, 'p> DeserializeSeed<'de> for KeySeed<'p> {
    type Value = Option<&'p Node>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de, 'p> Visitor<'de> for KeySeed<'p> {
    type Value = Option<&'p Node>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.0.child(v))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn decode(paths: &[&str], line: &str) -> Result<Vec<Value<'static>>, DecodeError> {
        let paths: Vec<FieldPath> = paths.iter().map(|p| FieldPath::parse(p)).collect();
        let projection = Projection::new(&paths);
        let mut slots = vec![Value::Null; projection.slots()];
        projection.decode(line.as_bytes(), &mut slots)?;
        Ok(slots.into_iter().map(Value::into_owned).collect())
    }

    #[test]
    fn decodes_only_projected_fields() {
        let got = decode(
            &["user_id", "amount", "device.os", "device", "missing"],
            r#"{"user_id":"u1","skip":{"a":[1,2,{"b":3}]},"amount":12.5,"device":{"os":"ios","v":2}}"#,
        )
        .unwrap();
        assert_eq!(
            got,
            vec![
                Value::Str("u1".into()),
                Value::Num(12.5),
                Value::Str("ios".into()),
                Value::Other,
                Value::Null
            ]
        );
    }

    #[test]
    fn escaped_strings_and_keys() {
        let got = decode(&["na\"me"], r#"{"na\"me":"a\nb"}"#).unwrap();
        assert_eq!(got, vec![Value::Str("a\nb".into())]);
    }

    #[test]
    fn rejects_non_objects_and_bad_json() {
        assert!(decode(&["a"], "[1,2]").is_err());
        assert!(decode(&["a"], "42").is_err());
        assert!(decode(&["a"], r#"{"a":1"#).is_err());
        assert!(decode(&["a"], r#"{"a":1} x"#).is_err());
        assert!(decode(&["a"], r#"{"b": tru}"#).is_err());
    }
}
