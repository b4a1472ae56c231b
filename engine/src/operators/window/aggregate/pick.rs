//! `max_by`, `min_by`, `first` and `last`: the value of the record ranked
//! highest or lowest, by a numeric field or by event time.
//!
//! A candidate is `(order, value)`: the number that ranks it and its value,
//! key-encoded (`dataflow::key`). Of two candidates with the same order the
//! one with the smaller value wins, in one total order of values: `null` <
//! `false` < `true` < numbers (by value) < strings (by their UTF-8 bytes).
//! So the result depends only on the set of candidates, never on the order
//! records arrived in, which differs between replays (shards are read
//! concurrently, partitions interleave): merging is associative and
//! commutative, and a replay after a crash picks the same value.

use std::borrow::Cow;
use std::cmp::Ordering;

use kflow_jobs::Value;

use crate::dataflow::key;

/// The best candidate so far.
#[derive(Debug, Clone, PartialEq)]
pub struct Picked {
    /// What ranks it (a number, or an event time in ms).
    pub order: f64,
    /// Its value, key-encoded.
    pub value: Vec<u8>,
}

impl Picked {
    /// The value as a result column.
    pub fn result(&self) -> Value<'static> {
        match decoded(&self.value) {
            Some(Value::Str(s)) => Value::Str(Cow::Owned(s.into_owned())),
            Some(Value::Num(n)) => Value::Num(n),
            Some(Value::Bool(b)) => Value::Bool(b),
            _ => Value::Null,
        }
    }

    /// Bytes held outside the accumulator.
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of::<Picked>() + self.value.capacity()
    }
}

/// `values[start..start + len]`, or nothing if out of range (never, for
/// arguments built by the emitter).
pub fn slice(values: &[u8], start: u32, len: u32) -> &[u8] {
    let start = start as usize;
    values.get(start..start + len as usize).unwrap_or_default()
}

/// Keeps `(order, value)` in `best` if it beats what is there: a higher
/// order when `highest`, a lower one otherwise; on a tie, a smaller value.
pub fn offer(best: &mut Option<Box<Picked>>, order: f64, value: &[u8], highest: bool) {
    // -0 and 0 rank alike.
    let order = if order == 0.0 { 0.0 } else { order };
    let wins = match best.as_deref() {
        None => true,
        Some(current) => {
            let by_order = order.total_cmp(&current.order);
            let by_order = if highest {
                by_order
            } else {
                by_order.reverse()
            };
            match by_order {
                Ordering::Greater => true,
                Ordering::Less => false,
                Ordering::Equal => compare_values(value, &current.value) == Ordering::Less,
            }
        }
    };
    if !wins {
        return;
    }
    match best {
        Some(current) => {
            current.order = order;
            current.value.clear();
            current.value.extend_from_slice(value);
        }
        None => {
            *best = Some(Box::new(Picked {
                order,
                value: value.to_vec(),
            }))
        }
    }
}

fn decoded(encoded: &[u8]) -> Option<Value<'_>> {
    key::decode_values(encoded)?.into_iter().next()
}

/// The total order of values that breaks ties.
pub fn compare_values(a: &[u8], b: &[u8]) -> Ordering {
    fn rank(v: &Value<'_>) -> u8 {
        match v {
            Value::Null | Value::Other => 0,
            Value::Bool(_) => 1,
            Value::Num(_) => 2,
            Value::Str(_) => 3,
        }
    }
    match (decoded(a), decoded(b)) {
        (Some(x), Some(y)) => rank(&x).cmp(&rank(&y)).then_with(|| match (&x, &y) {
            (Value::Bool(p), Value::Bool(q)) => p.cmp(q),
            (Value::Num(p), Value::Num(q)) => p.total_cmp(q),
            (Value::Str(p), Value::Str(q)) => p.as_bytes().cmp(q.as_bytes()),
            _ => Ordering::Equal,
        }),
        _ => a.cmp(b),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn enc(v: Value<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        key::encode_value(&v, &mut out).unwrap();
        out
    }

    fn s(text: &str) -> Vec<u8> {
        enc(Value::Str(text.to_string().into()))
    }

    #[test]
    fn values_have_one_total_order() {
        let ordered = [
            enc(Value::Null),
            enc(Value::Bool(false)),
            enc(Value::Bool(true)),
            enc(Value::Num(-2.0)),
            enc(Value::Num(10.0)),
            s("B"),
            s("a"),
            s("ab"),
            s("b"),
        ];
        for (i, a) in ordered.iter().enumerate() {
            for (j, b) in ordered.iter().enumerate() {
                assert_eq!(compare_values(a, b), i.cmp(&j), "{i} vs {j}");
            }
        }
    }

    #[test]
    fn the_highest_wins_and_ties_go_to_the_smallest_value_in_any_order() {
        let candidates = [(3.0, s("x")), (5.0, s("m")), (5.0, s("c")), (1.0, s("a"))];
        let orders = [[0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1], [1, 3, 0, 2]];
        for order in orders {
            let mut best = None;
            let mut lowest = None;
            for i in order {
                let (rank, value) = &candidates[i];
                offer(&mut best, *rank, value, true);
                offer(&mut lowest, *rank, value, false);
            }
            let best = best.unwrap();
            assert_eq!((best.order, best.value.clone()), (5.0, s("c")));
            assert_eq!(lowest.unwrap().value, s("a"));
        }
    }
}
