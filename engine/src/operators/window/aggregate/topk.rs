//! `top_k(field, k)`: the most frequent values of a group with their counts.
//!
//! A Misra-Gries summary in its mergeable form (Agarwal et al., "Mergeable
//! Summaries", 2012): exact counts per value until the group has seen more
//! than `2 * CAPACITY` distinct values; then the summary is *pruned*: the
//! `(CAPACITY + 1)`-th largest count is subtracted from every count and the
//! values left at zero or below go. Merging adds the counts and prunes the
//! same way, so panes, spilled partials and merged sessions combine.
//!
//! Guarantee, for a group of `n` records: every value occurring more than
//! `n / (CAPACITY + 1)` times is in the summary, and every count is low by
//! at most that much (exact, and independent of arrival order, as long as
//! no prune happened: at most `2 * CAPACITY` distinct values). The result
//! lists the `k` largest counts, ties broken by the smaller value in
//! kflow's total order of values (`pick::compare_values`).

use std::cmp::Ordering;

use hashbrown::HashMap;

use super::pick;
use crate::dataflow::json;
use crate::dataflow::key;

/// Counters kept after a prune (and half the most kept between prunes).
pub const CAPACITY: usize = 1024;

/// The summary: key-encoded value -> count.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TopK {
    /// Counts (lower bounds once pruned).
    pub counts: HashMap<Box<[u8]>, u64>,
    /// Whether a prune ever happened (counts are then lower bounds).
    pub pruned: bool,
}

impl TopK {
    /// Counts one occurrence of the key-encoded `value`.
    pub fn insert(&mut self, value: &[u8]) {
        if let Some(count) = self.counts.get_mut(value) {
            *count += 1;
            return;
        }
        self.counts.insert(value.into(), 1);
        self.prune_if_full();
    }

    /// Adds another summary's counts.
    pub fn merge(&mut self, other: &TopK) {
        for (value, count) in &other.counts {
            *self.counts.entry_ref(&**value).or_insert(0) += count;
        }
        self.pruned |= other.pruned;
        self.prune_if_full();
    }

    fn prune_if_full(&mut self) {
        if self.counts.len() <= 2 * CAPACITY {
            return;
        }
        let mut counts: Vec<u64> = self.counts.values().copied().collect();
        // The (CAPACITY + 1)-th largest count.
        let (_, cut, _) = counts.select_nth_unstable_by(CAPACITY, |a, b| b.cmp(a));
        let cut = *cut;
        self.counts.retain(|_, count| {
            *count = count.saturating_sub(cut);
            *count > 0
        });
        self.pruned = true;
    }

    /// The `k` most frequent values, most frequent first, ties by value.
    pub fn top(&self, k: usize) -> Vec<(&[u8], u64)> {
        let mut all: Vec<(&[u8], u64)> = self.counts.iter().map(|(v, c)| (&**v, *c)).collect();
        let order = |a: &(&[u8], u64), b: &(&[u8], u64)| -> Ordering {
            b.1.cmp(&a.1).then_with(|| pick::compare_values(a.0, b.0))
        };
        if all.len() > k && k > 0 {
            all.select_nth_unstable_by(k - 1, order);
            all.truncate(k);
        }
        all.sort_unstable_by(order);
        all.truncate(k);
        all
    }

    /// Writes the top `k` as a JSON array of `{"value":..,"count":..}`.
    pub fn write_json(&self, k: usize, out: &mut Vec<u8>) {
        out.push(b'[');
        for (i, (value, count)) in self.top(k).into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"value\":");
            let mut rest = value;
            match key::next_value(&mut rest) {
                Some(v) => json::write_value(out, &v),
                None => out.extend_from_slice(b"null"),
            }
            out.extend_from_slice(b",\"count\":");
            out.extend_from_slice(itoa::Buffer::new().format(count).as_bytes());
            out.push(b'}');
        }
        out.push(b']');
    }

    /// Heap bytes held (table slots and values).
    pub fn heap_bytes(&self) -> usize {
        let slot = std::mem::size_of::<(Box<[u8]>, u64)>() + 1;
        self.counts.capacity() * slot + self.counts.keys().map(|v| v.len()).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn encoded(s: &str) -> Vec<u8> {
        let mut out = Vec::new();
        key::encode_value(&kflow_jobs::Value::Str(s.into()), &mut out).unwrap();
        out
    }

    fn text(t: &TopK, k: usize) -> String {
        let mut out = Vec::new();
        t.write_json(k, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn small_groups_are_exact_and_ties_go_to_the_smaller_value() {
        let mut t = TopK::default();
        for s in ["b", "a", "c", "b", "a", "d"] {
            t.insert(&encoded(s));
        }
        assert_eq!(
            text(&t, 3),
            r#"[{"value":"a","count":2},{"value":"b","count":2},{"value":"c","count":1}]"#
        );
        assert_eq!(text(&TopK::default(), 3), "[]");
    }

    proptest! {
        // Merge laws, and the summary guarantee against exact counts, on
        // skewed streams far past the exact limit.
        #[test]
        fn merged_summaries_keep_the_heavy_hitters(
            parts in proptest::collection::vec(
                proptest::collection::vec((0u32..6_000, 0u32..100), 0..3_000), 1..4),
        ) {
            let mut exact: std::collections::HashMap<Vec<u8>, u64> = Default::default();
            let mut merged = TopK::default();
            let mut reversed = TopK::default();
            let mut summaries = Vec::new();
            for part in &parts {
                let mut t = TopK::default();
                for &(wide, skew) in part {
                    // Half the records hit 10 hot values.
                    let v = if skew < 50 { format!("hot{}", skew % 10) } else { format!("v{wide}") };
                    let e = encoded(&v);
                    t.insert(&e);
                    *exact.entry(e).or_default() += 1;
                }
                summaries.push(t);
            }
            for t in &summaries {
                merged.merge(t);
            }
            for t in summaries.iter().rev() {
                reversed.merge(t);
            }
            let n: u64 = exact.values().sum();
            let bound = n / (CAPACITY as u64 + 1);
            for (value, &count) in &exact {
                let got = merged.counts.get(&value[..]).copied().unwrap_or(0);
                prop_assert!(got <= count);
                prop_assert!(count - got <= bound);
            }
            if !merged.pruned {
                prop_assert_eq!(merged.counts.len(), exact.len());
                prop_assert_eq!(&merged, &reversed);
            }
        }
    }
}
