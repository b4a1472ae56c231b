//! Mergeable partial aggregates.
//!
//! Every aggregate kflow offers is kept as a partial that can absorb one
//! value ([`Partial::update`]) and merge another partial of the same window
//! definition ([`Partial::merge`]): that is what lets sliding windows be
//! computed from panes and state be spilled and reloaded. `avg` is kept as
//! sum + count, `count_distinct` as the set of 64-bit hashes of the values,
//! and `percentile` exactly while a group holds at most [`EXACT_LIMIT`]
//! values, then as HdrHistograms (3 significant digits, values scaled to
//! thousandths) so that big groups stay small. `variance` and `stddev` keep
//! the count, mean and sum of squared deviations (Welford's update, Chan's
//! merge); `count_distinct_approx` a HyperLogLog sketch ([`hll`]);
//! `max_by`, `min_by`, `first` and `last` the best candidate so far
//! ([`pick`]); `top_k` a mergeable Misra-Gries summary ([`topk`]).

mod codec;
pub mod hll;
pub mod pick;
pub mod topk;

use hashbrown::HashSet;
use hdrhistogram::Histogram;
use kflow_jobs::{AggregateFunction, AggregatePlan, Value};
use smallvec::SmallVec;

pub use crate::dataflow::arg::Arg;
use crate::dataflow::json;
use crate::dataflow::round::round_15;
use crate::dataflow::rows::Cell;

/// Largest group whose percentile is computed exactly.
pub const EXACT_LIMIT: usize = 128;

/// Percentile values are recorded in histograms as integers of 1/SCALE.
const SCALE: f64 = 1000.0;

/// The running state of one aggregate.
#[derive(Debug, Clone, PartialEq)]
pub enum Acc {
    /// `count()`.
    Count(u64),
    /// `sum` and `avg`: the sum and how many numbers were added.
    Sum {
        /// Sum of the values.
        sum: f64,
        /// Number of values.
        n: u64,
    },
    /// `min`.
    Min(Option<f64>),
    /// `max`.
    Max(Option<f64>),
    /// `count_distinct`: hashes of the values seen.
    Distinct(Box<HashSet<u64>>),
    /// `percentile`.
    Percentile(Box<Percentiles>),
    /// `variance` and `stddev` (boxed: the common accumulators stay
    /// small).
    Moments(Box<Moments>),
    /// `count_distinct_approx`.
    Sketch(Box<hll::Hll>),
    /// `max_by` and `last`: the candidate ranked highest.
    PickMax(Option<Box<pick::Picked>>),
    /// `min_by` and `first`: the candidate ranked lowest.
    PickMin(Option<Box<pick::Picked>>),
    /// `top_k`.
    TopK(Box<topk::TopK>),
}

/// Count, mean, and the sum of squared deviations from the mean.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Moments {
    /// Number of values.
    pub n: u64,
    /// Their mean.
    pub mean: f64,
    /// Sum of squared deviations from `mean`.
    pub m2: f64,
}

impl Moments {
    fn push(&mut self, v: f64) {
        self.n += 1;
        let delta = v - self.mean;
        self.mean += delta / self.n as f64;
        self.m2 += delta * (v - self.mean);
    }

    fn merge(&mut self, other: &Moments) {
        if other.n == 0 {
            return;
        }
        let total = self.n + other.n;
        let delta = other.mean - self.mean;
        let (a, b) = (self.n as f64, other.n as f64);
        self.mean += delta * b / total as f64;
        self.m2 += other.m2 + delta * delta * a * b / total as f64;
        self.n = total;
    }

    /// The population variance, `None` without values.
    fn variance(&self) -> Option<f64> {
        (self.n > 0).then(|| self.m2.max(0.0) / self.n as f64)
    }
}

/// Values for a percentile: exact while small, histograms once large.
#[derive(Debug, Clone, PartialEq)]
pub enum Percentiles {
    /// All values, unsorted.
    Exact(Vec<f64>),
    /// Histograms of the magnitudes of positive and negative values.
    Histograms(Box<SignedHistograms>),
}

/// Two histograms, for values `>= 0` and for the magnitudes of values `< 0`.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedHistograms {
    positive: Histogram<u64>,
    negative: Histogram<u64>,
}

impl SignedHistograms {
    fn new() -> SignedHistograms {
        SignedHistograms {
            positive: new_histogram(),
            negative: new_histogram(),
        }
    }

    fn record(&mut self, value: f64, count: u64) {
        let scaled = (value.abs() * SCALE).round().min(u64::MAX as f64 / 4.0) as u64;
        let hist = if value < 0.0 {
            &mut self.negative
        } else {
            &mut self.positive
        };
        // An auto-resizing histogram accepts every value; the error case is
        // unreachable, and losing a sample is better than failing the job.
        let _ = hist.record_n(scaled, count);
    }

    fn merge(&mut self, other: &SignedHistograms) {
        let _ = self.positive.add(&other.positive);
        let _ = self.negative.add(&other.negative);
    }

    /// The `rank`-th smallest value (1-based).
    fn value_at_rank(&self, rank: u64) -> f64 {
        let neg = self.negative.len();
        if rank <= neg {
            // The rank-th smallest negative is the (neg - rank + 1)-th
            // smallest magnitude.
            -nth_recorded(&self.negative, neg - rank + 1)
        } else {
            nth_recorded(&self.positive, rank - neg)
        }
    }

    fn len(&self) -> u64 {
        self.positive.len() + self.negative.len()
    }

    fn heap_bytes(&self) -> usize {
        (self.positive.distinct_values() + self.negative.distinct_values()) * 8
    }
}

fn new_histogram() -> Histogram<u64> {
    // Three significant digits is a valid precision: construction cannot fail.
    Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits is in range"))
}

/// The `n`-th smallest recorded value of `hist` (1-based), unscaled.
fn nth_recorded(hist: &Histogram<u64>, n: u64) -> f64 {
    let mut seen = 0;
    for v in hist.iter_recorded() {
        seen += v.count_at_value();
        if seen >= n {
            return hist.median_equivalent(v.value_iterated_to()) as f64 / SCALE;
        }
    }
    hist.max() as f64 / SCALE
}

impl Percentiles {
    fn push(&mut self, value: f64) {
        match self {
            Percentiles::Exact(values) if values.len() < EXACT_LIMIT => values.push(value),
            Percentiles::Exact(values) => {
                let mut hist = SignedHistograms::new();
                for v in values.iter() {
                    hist.record(*v, 1);
                }
                hist.record(value, 1);
                *self = Percentiles::Histograms(Box::new(hist));
            }
            Percentiles::Histograms(hist) => hist.record(value, 1),
        }
    }

    fn merge(&mut self, other: &Percentiles) {
        match other {
            Percentiles::Exact(values) => {
                for v in values {
                    self.push(*v);
                }
            }
            Percentiles::Histograms(theirs) => match self {
                Percentiles::Histograms(ours) => ours.merge(theirs),
                Percentiles::Exact(values) => {
                    let mut hist = (**theirs).clone();
                    for v in values.iter() {
                        hist.record(*v, 1);
                    }
                    *self = Percentiles::Histograms(Box::new(hist));
                }
            },
        }
    }

    /// Nearest-rank percentile: the value at rank `ceil(q * n)`.
    fn value(&self, q: f64) -> Option<f64> {
        let n = match self {
            Percentiles::Exact(values) => values.len() as u64,
            Percentiles::Histograms(hist) => hist.len(),
        };
        if n == 0 {
            return None;
        }
        let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
        Some(match self {
            Percentiles::Exact(values) => {
                let mut sorted = values.clone();
                sorted.sort_by(f64::total_cmp);
                sorted[(rank - 1) as usize]
            }
            Percentiles::Histograms(hist) => hist.value_at_rank(rank),
        })
    }
}

impl Acc {
    /// The empty state for `function`.
    pub fn new(function: AggregateFunction) -> Acc {
        match function {
            AggregateFunction::Count => Acc::Count(0),
            AggregateFunction::Sum | AggregateFunction::Avg => Acc::Sum { sum: 0.0, n: 0 },
            AggregateFunction::Min => Acc::Min(None),
            AggregateFunction::Max => Acc::Max(None),
            AggregateFunction::CountDistinct => Acc::Distinct(Box::default()),
            AggregateFunction::Percentile(_) => {
                Acc::Percentile(Box::new(Percentiles::Exact(Vec::new())))
            }
            AggregateFunction::Variance | AggregateFunction::Stddev => Acc::Moments(Box::default()),
            AggregateFunction::CountDistinctApprox => Acc::Sketch(Box::default()),
            AggregateFunction::MaxBy | AggregateFunction::Last => Acc::PickMax(None),
            AggregateFunction::MinBy | AggregateFunction::First => Acc::PickMin(None),
            AggregateFunction::TopK(_) => Acc::TopK(Box::default()),
        }
    }

    /// Absorbs one record's argument.
    pub fn update(&mut self, arg: Arg) {
        self.update_with(arg, &[]);
    }

    /// Absorbs one record's argument, whose picked value (if any) is in
    /// `values`.
    pub fn update_with(&mut self, arg: Arg, values: &[u8]) {
        match (self, arg) {
            (acc, Arg::Merge { start, len }) => {
                // Written by a combining emitter of this same window
                // definition; bytes that do not decode (never written by
                // kflow) are ignored like an argument of the wrong type.
                if let Ok(other) = Acc::decode(pick::slice(values, start, len)) {
                    acc.merge(&other);
                }
            }
            (Acc::Count(n), _) => *n += 1,
            (Acc::Sum { sum, n }, Arg::Num(v)) => {
                *sum += v;
                *n += 1;
            }
            (Acc::Min(m), Arg::Num(v)) => *m = Some(m.map_or(v, |m| m.min(v))),
            (Acc::Max(m), Arg::Num(v)) => *m = Some(m.map_or(v, |m| m.max(v))),
            (Acc::Distinct(set), Arg::Hash(h)) => {
                set.insert(h);
            }
            (Acc::Percentile(p), Arg::Num(v)) => p.push(v),
            (Acc::Moments(m), Arg::Num(v)) => m.push(v),
            (Acc::Sketch(sketch), Arg::Hash(h)) => sketch.insert(h),
            (Acc::PickMax(best), Arg::Pick { order, start, len }) => {
                pick::offer(best, order, pick::slice(values, start, len), true);
            }
            (Acc::PickMin(best), Arg::Pick { order, start, len }) => {
                pick::offer(best, order, pick::slice(values, start, len), false);
            }
            (Acc::TopK(top), Arg::Pick { start, len, .. }) => {
                top.insert(pick::slice(values, start, len));
            }
            _ => {}
        }
    }

    /// Whether merging partials gives what updating with each record would
    /// (up to the rounding of a floating-point sum taken in another
    /// order): every aggregate but `top_k`, whose merged summary may keep
    /// other candidates than one built record by record.
    pub fn merges_exactly(function: AggregateFunction) -> bool {
        !matches!(function, AggregateFunction::TopK(_))
    }

    /// Absorbs another partial of the same aggregate.
    pub fn merge(&mut self, other: &Acc) {
        match (self, other) {
            (Acc::Count(a), Acc::Count(b)) => *a += b,
            (Acc::Sum { sum, n }, Acc::Sum { sum: s2, n: n2 }) => {
                *sum += s2;
                *n += n2;
            }
            (Acc::Min(a), Acc::Min(b)) => *a = min_opt(*a, *b, f64::min),
            (Acc::Max(a), Acc::Max(b)) => *a = min_opt(*a, *b, f64::max),
            (Acc::Distinct(a), Acc::Distinct(b)) => a.extend(b.iter().copied()),
            (Acc::Percentile(a), Acc::Percentile(b)) => a.merge(b),
            (Acc::Moments(a), Acc::Moments(b)) => a.merge(b),
            (Acc::Sketch(a), Acc::Sketch(b)) => a.merge(b),
            (Acc::PickMax(a), Acc::PickMax(Some(b))) => pick::offer(a, b.order, &b.value, true),
            (Acc::PickMin(a), Acc::PickMin(Some(b))) => pick::offer(a, b.order, &b.value, false),
            (Acc::TopK(a), Acc::TopK(b)) => a.merge(b),
            _ => {}
        }
    }

    /// The final value: an integer count, a number, or null when a numeric
    /// aggregate saw no numbers.
    pub fn value(&self, function: AggregateFunction) -> Value<'static> {
        if let Acc::PickMax(best) | Acc::PickMin(best) = self {
            return best.as_ref().map_or(Value::Null, |b| b.result());
        }
        if let Acc::TopK(_) = self {
            // An array: rows downstream can only test it with `has()`.
            return Value::Other;
        }
        let number = match (self, function) {
            (Acc::Count(n), _) => Some(*n as f64),
            (Acc::Distinct(set), _) => Some(set.len() as f64),
            (Acc::Sum { sum, n }, AggregateFunction::Avg) => {
                (*n > 0).then(|| round_15(sum / *n as f64))
            }
            (Acc::Sum { sum, n }, _) => (*n > 0).then(|| round_15(*sum)),
            (Acc::Min(v) | Acc::Max(v), _) => *v,
            (Acc::Percentile(p), AggregateFunction::Percentile(q)) => p.value(q),
            (Acc::Percentile(_), _) => None,
            (Acc::Moments(m), AggregateFunction::Stddev) => {
                m.variance().map(|v| round_15(v.sqrt()))
            }
            (Acc::Moments(m), _) => m.variance().map(round_15),
            (Acc::Sketch(sketch), _) => Some(sketch.count() as f64),
            (Acc::PickMax(_) | Acc::PickMin(_) | Acc::TopK(_), _) => None,
        };
        number.map_or(Value::Null, Value::Num)
    }

    /// The final value as a result row carries it to its sink: a number,
    /// a sum or mean to be rounded as it is written (printed once instead
    /// of printed to count its digits and again to write it), or anything
    /// else written as JSON to `text` right away.
    pub fn cell(&self, function: AggregateFunction, text: &mut Vec<u8>) -> Cell {
        match (self, function) {
            (Acc::Sum { sum, n }, AggregateFunction::Avg) if *n > 0 => {
                Cell::Rounded(sum / *n as f64)
            }
            (Acc::Sum { sum, n }, AggregateFunction::Sum) if *n > 0 => Cell::Rounded(*sum),
            (Acc::Count(n), _) => Cell::Num(*n as f64),
            (Acc::TopK(top), AggregateFunction::TopK(k)) => {
                Cell::json(text, |t| top.write_json(k as usize, t))
            }
            _ => match self.value(function) {
                Value::Num(v) => Cell::Num(v),
                other => Cell::json(text, |t| json::write_value(t, &other)),
            },
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Acc::Distinct(set) => std::mem::size_of::<HashSet<u64>>() + set.capacity() * 9,
            Acc::Sketch(sketch) => std::mem::size_of::<hll::Hll>() + sketch.heap_bytes(),
            Acc::Moments(_) => std::mem::size_of::<Moments>(),
            Acc::PickMax(Some(best)) | Acc::PickMin(Some(best)) => best.heap_bytes(),
            Acc::TopK(top) => std::mem::size_of::<topk::TopK>() + top.heap_bytes(),
            Acc::Percentile(p) => {
                std::mem::size_of::<Percentiles>()
                    + match &**p {
                        Percentiles::Exact(v) => v.capacity() * 8,
                        Percentiles::Histograms(h) => h.heap_bytes(),
                    }
            }
            _ => 0,
        }
    }
}

fn min_opt(a: Option<f64>, b: Option<f64>, pick: fn(f64, f64) -> f64) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(pick(a, b)),
        (a, b) => a.or(b),
    }
}

/// The partial aggregates of one (window or pane, key): one [`Acc`] per
/// aggregate of the window, in the job file's order.
#[derive(Debug, Clone, PartialEq)]
pub struct Partial(pub SmallVec<[Acc; 2]>);

impl Partial {
    /// Empty partials for `aggregates`.
    pub fn new(aggregates: &[AggregatePlan]) -> Partial {
        Partial(aggregates.iter().map(|a| Acc::new(a.function)).collect())
    }

    /// Appends empty accumulators for the aggregates past this partial's
    /// (aggregates appended to the window since it was stored); whether it
    /// was short.
    pub fn extend_to(&mut self, aggregates: &[AggregatePlan]) -> bool {
        let have = self.0.len();
        for a in aggregates.iter().skip(have) {
            self.0.push(Acc::new(a.function));
        }
        have < aggregates.len()
    }

    /// Absorbs one record; `args[i]` belongs to aggregate `i`.
    pub fn update(&mut self, args: &[Arg]) {
        self.update_with(args, &[]);
    }

    /// Absorbs one record whose picked values are in `values` (its batch's
    /// [`crate::dataflow::message::WindowBatch::values`]).
    pub fn update_with(&mut self, args: &[Arg], values: &[u8]) {
        for (acc, arg) in self.0.iter_mut().zip(args) {
            acc.update_with(*arg, values);
        }
    }

    /// Absorbs another partial of the same window definition.
    pub fn merge(&mut self, other: &Partial) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            a.merge(b);
        }
    }
}

#[cfg(test)]
mod tests;
