//! Combining a window's result rows on their way to a window over it.
//!
//! One fire emits a row per key, all of one event time (the window's end
//! minus one) and one watermark. A window over those rows keyed more
//! coarsely (keyless, say) would absorb them one by one; instead the
//! emitting window folds the rows bound for the same downstream key, time
//! and watermark into one partial aggregate of the downstream window, and
//! sends that partial as one record ([`Arg::Merge`]) weighing as many rows.
//! The downstream window merges it where it would have absorbed each row:
//! same panes, same lateness (the rows shared their stamp), same results,
//! but for the rounding of floating-point sums taken in another order, as
//! with any merge of panes.

use hashbrown::hash_table::{Entry, HashTable};
use kflow_jobs::AggregateFunction;
use kflow_state::keys::same;
use std::time::Instant;

use super::aggregate::{Acc, Partial};
use crate::dataflow::arg::Arg;
use crate::dataflow::message::WindowBatch;
use crate::dataflow::position::Stamp;
use crate::dataflow::route::{partition_of, Combine};

/// The records combined so far, in the order their first rows came.
#[derive(Debug)]
pub struct Combiner {
    /// An empty partial of the downstream window's aggregates.
    empty: Partial,
    /// Index into `groups` by key hash.
    index: HashTable<usize>,
    groups: Vec<Group>,
    /// The groups' keys, concatenated.
    keys: Vec<u8>,
}

/// One combined record.
#[derive(Debug)]
struct Group {
    hash: u64,
    key: (usize, usize),
    stamp: Stamp,
    rows: u32,
    partial: Partial,
}

impl Combiner {
    /// A combiner for a window with aggregates `functions`, or `None` when
    /// one of them does not merge exactly ([`Acc::merges_exactly`]).
    pub fn new(functions: &[AggregateFunction]) -> Option<Combiner> {
        functions
            .iter()
            .all(|f| Acc::merges_exactly(*f))
            .then(|| Combiner {
                empty: Partial(functions.iter().map(|f| Acc::new(*f)).collect()),
                index: HashTable::new(),
                groups: Vec::new(),
                keys: Vec::new(),
            })
    }
}

impl Combine for Combiner {
    fn add(&mut self, hash: u64, key: &[u8], stamp: Stamp, args: &[Arg], values: &[u8]) {
        let (groups, keys) = (&mut self.groups, &mut self.keys);
        let found = self.index.entry(
            hash,
            |&g| {
                let group = &groups[g];
                group.hash == hash
                    && group.stamp.time == stamp.time
                    && group.stamp.watermark == stamp.watermark
                    && same(&keys[group.key.0..group.key.1], key)
            },
            |&g| groups[g].hash,
        );
        let g = match found {
            Entry::Occupied(slot) => *slot.get(),
            Entry::Vacant(slot) => {
                let start = keys.len();
                keys.extend_from_slice(key);
                groups.push(Group {
                    hash,
                    key: (start, keys.len()),
                    stamp,
                    rows: 0,
                    partial: self.empty.clone(),
                });
                slot.insert(groups.len() - 1);
                groups.len() - 1
            }
        };
        let group = &mut groups[g];
        group.rows = group.rows.saturating_add(1);
        group.partial.update_with(args, values);
    }

    fn len(&self) -> usize {
        self.groups.len()
    }

    fn drain(&mut self, batches: &mut [WindowBatch]) {
        for group in self.groups.drain(..) {
            let batch = &mut batches[partition_of(group.hash, batches.len())];
            if batch.times.is_empty() {
                batch.origin = Some(Instant::now());
            }
            batch.times.push(group.stamp.time);
            batch.watermarks.push(group.stamp.watermark);
            batch.hashes.push(group.hash);
            batch
                .keys
                .extend_from_slice(&self.keys[group.key.0..group.key.1]);
            batch.key_ends.push(batch.keys.len() as u32);
            for acc in group.partial.0.iter() {
                let start = batch.values.len();
                acc.encode(&mut batch.values);
                batch.args.push(Arg::Merge {
                    start: start as u32,
                    len: (batch.values.len() - start) as u32,
                });
            }
            batch.weights.push(group.rows);
        }
        self.index.clear();
        self.keys.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kflow_jobs::AggregateFunction as F;

    fn stamp(time: i64) -> Stamp {
        Stamp { time, watermark: 0 }
    }

    /// Applies `batch`'s records to partials, one per (key, time), as the
    /// window task does.
    fn apply(batch: &WindowBatch, empty: &Partial) -> Vec<(Vec<u8>, i64, Partial)> {
        let n = empty.0.len();
        let mut out: Vec<(Vec<u8>, i64, Partial)> = Vec::new();
        for i in 0..batch.len() {
            let (key, time) = (batch.key(i).to_vec(), batch.times[i]);
            let at = match out.iter().position(|(k, t, _)| *k == key && *t == time) {
                Some(at) => at,
                None => {
                    out.push((key, time, empty.clone()));
                    out.len() - 1
                }
            };
            out[at]
                .2
                .update_with(&batch.args[i * n..(i + 1) * n], &batch.values);
        }
        out
    }

    #[test]
    fn combined_records_merge_to_what_each_row_gives() {
        let functions = [F::Count, F::Max, F::Sum, F::CountDistinct, F::Last];
        let mut combiner = Combiner::new(&functions).expect("all merge exactly");
        let mut plain = WindowBatch::default();
        let rows: Vec<(&[u8], i64, f64)> = vec![
            (b"a", 9, 1.0),
            (b"b", 9, 5.0),
            (b"a", 9, 3.0),
            (b"a", 19, 2.0),
            (b"a", 9, 3.0),
        ];
        for (key, time, v) in &rows {
            let mut values = Vec::new();
            crate::dataflow::key::encode_value(&kflow_jobs::Value::Num(*v), &mut values);
            let args = [
                Arg::None,
                Arg::Num(*v),
                Arg::Num(*v),
                Arg::Hash(v.to_bits()),
                Arg::Pick {
                    order: *time as f64,
                    start: 0,
                    len: values.len() as u32,
                },
            ];
            let hash = crate::dataflow::key::hash(key);
            combiner.add(hash, key, stamp(*time), &args, &values);
            plain.times.push(*time);
            plain.keys.extend_from_slice(key);
            plain.key_ends.push(plain.keys.len() as u32);
            let base = plain.values.len() as u32;
            plain.values.extend_from_slice(&values);
            plain.args.extend(args.iter().map(|a| match *a {
                Arg::Pick { order, len, .. } => Arg::Pick {
                    order,
                    start: base,
                    len,
                },
                other => other,
            }));
        }
        assert_eq!(combiner.len(), 3, "(a, 9), (b, 9), (a, 19)");
        let mut batches = vec![WindowBatch::default()];
        combiner.drain(&mut batches);
        assert_eq!(combiner.len(), 0);
        let combined = &batches[0];
        assert_eq!(combined.len(), 3);
        assert_eq!(combined.weights, vec![3, 1, 1]);
        assert_eq!(combined.total_rows(), 5);
        let empty = Partial(functions.iter().map(|f| Acc::new(*f)).collect());
        assert_eq!(apply(combined, &empty), apply(&plain, &empty));
        let (_, _, a9) = &apply(combined, &empty)[0];
        assert_eq!(a9.0[0], Acc::Count(3));
        assert_eq!(a9.0[1], Acc::Max(Some(3.0)));
    }

    #[test]
    fn top_k_is_not_combined() {
        assert!(Combiner::new(&[F::Count, F::TopK(3)]).is_none());
        assert!(Combiner::new(&[F::Count, F::Percentile(0.5)]).is_some());
    }
}
