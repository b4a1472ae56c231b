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
//! ([`pick`]).

pub mod hll;
pub mod pick;

use hashbrown::HashSet;
use hdrhistogram::Histogram;
use kflow_jobs::{AggregateFunction, AggregatePlan, Value};
use kflow_state::{StateError, StateValue};
use smallvec::SmallVec;

use super::round::{round_15, write_rounded};
pub use crate::dataflow::arg::Arg;
use crate::dataflow::json;

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
            _ => {}
        }
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
            _ => {}
        }
    }

    /// The final value: an integer count, a number, or null when a numeric
    /// aggregate saw no numbers.
    pub fn value(&self, function: AggregateFunction) -> Value<'static> {
        if let Acc::PickMax(best) | Acc::PickMin(best) = self {
            return best.as_ref().map_or(Value::Null, |b| b.result());
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
            (Acc::PickMax(_) | Acc::PickMin(_), _) => None,
        };
        number.map_or(Value::Null, Value::Num)
    }

    /// Writes the final value as JSON: the text of
    /// `json::write_value(out, &self.value(function))`, with a sum or mean
    /// printed once instead of printed to count its digits and again to
    /// write it.
    pub fn write_json(&self, function: AggregateFunction, out: &mut Vec<u8>) {
        match (self, function) {
            (Acc::Sum { sum, n }, AggregateFunction::Avg) if *n > 0 => {
                write_rounded(out, sum / *n as f64);
            }
            (Acc::Sum { sum, n }, AggregateFunction::Sum) if *n > 0 => write_rounded(out, *sum),
            _ => json::write_value(out, &self.value(function)),
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Acc::Distinct(set) => std::mem::size_of::<HashSet<u64>>() + set.capacity() * 9,
            Acc::Sketch(sketch) => std::mem::size_of::<hll::Hll>() + sketch.heap_bytes(),
            Acc::Moments(_) => std::mem::size_of::<Moments>(),
            Acc::PickMax(Some(best)) | Acc::PickMin(Some(best)) => best.heap_bytes(),
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

impl StateValue for Partial {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.0.len() as u8);
        for acc in self.0.iter() {
            encode_acc(acc, out);
        }
    }

    fn decode(bytes: &[u8]) -> Result<Partial, StateError> {
        let mut r = Reader { bytes, at: 0 };
        let n = r.u8()? as usize;
        let accs = (0..n)
            .map(|_| decode_acc(&mut r))
            .collect::<Result<SmallVec<[Acc; 2]>, _>>()?;
        if r.at != bytes.len() {
            return Err(StateError::Corrupt(
                "trailing bytes after a partial aggregate".into(),
            ));
        }
        Ok(Partial(accs))
    }

    fn heap_bytes(&self) -> usize {
        // Up to two accumulators live inline (counted with the cache slot).
        let outside = if self.0.spilled() {
            self.0.capacity() * std::mem::size_of::<Acc>()
        } else {
            0
        };
        outside + self.0.iter().map(Acc::heap_bytes).sum::<usize>()
    }
}

fn encode_acc(acc: &Acc, out: &mut Vec<u8>) {
    match acc {
        Acc::Count(n) => {
            out.push(0);
            out.extend_from_slice(&n.to_le_bytes());
        }
        Acc::Sum { sum, n } => {
            out.push(1);
            out.extend_from_slice(&sum.to_le_bytes());
            out.extend_from_slice(&n.to_le_bytes());
        }
        Acc::Min(v) | Acc::Max(v) => {
            out.push(if matches!(acc, Acc::Min(_)) { 2 } else { 3 });
            match v {
                Some(v) => {
                    out.push(1);
                    out.extend_from_slice(&v.to_le_bytes());
                }
                None => out.push(0),
            }
        }
        Acc::Distinct(set) => {
            out.push(4);
            out.extend_from_slice(&(set.len() as u32).to_le_bytes());
            for h in set.iter() {
                out.extend_from_slice(&h.to_le_bytes());
            }
        }
        Acc::Percentile(p) => encode_percentiles(p, out),
        Acc::Moments(m) => {
            out.push(7);
            out.extend_from_slice(&m.n.to_le_bytes());
            out.extend_from_slice(&m.mean.to_le_bytes());
            out.extend_from_slice(&m.m2.to_le_bytes());
        }
        Acc::PickMax(best) | Acc::PickMin(best) => {
            out.push(if matches!(acc, Acc::PickMax(_)) {
                10
            } else {
                11
            });
            match best {
                None => out.push(0),
                Some(best) => {
                    out.push(1);
                    out.extend_from_slice(&best.order.to_le_bytes());
                    out.extend_from_slice(&(best.value.len() as u32).to_le_bytes());
                    out.extend_from_slice(&best.value);
                }
            }
        }
        Acc::Sketch(sketch) => match &**sketch {
            hll::Hll::Exact(set) => {
                out.push(8);
                out.extend_from_slice(&(set.len() as u32).to_le_bytes());
                for h in set {
                    out.extend_from_slice(&h.to_le_bytes());
                }
            }
            hll::Hll::Registers(registers) => {
                out.push(9);
                out.extend_from_slice(registers);
            }
        },
    }
}

fn encode_percentiles(p: &Percentiles, out: &mut Vec<u8>) {
    match p {
        Percentiles::Exact(values) => {
            out.push(5);
            out.extend_from_slice(&(values.len() as u32).to_le_bytes());
            for v in values {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        Percentiles::Histograms(h) => {
            out.push(6);
            for hist in [&h.positive, &h.negative] {
                let recorded: Vec<(u64, u64)> = hist
                    .iter_recorded()
                    .map(|v| (v.value_iterated_to(), v.count_at_value()))
                    .collect();
                out.extend_from_slice(&(recorded.len() as u32).to_le_bytes());
                for (value, count) in recorded {
                    out.extend_from_slice(&value.to_le_bytes());
                    out.extend_from_slice(&count.to_le_bytes());
                }
            }
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], StateError> {
        let end = self.at + N;
        let slice = self
            .bytes
            .get(self.at..end)
            .ok_or_else(|| StateError::Corrupt("partial aggregate is truncated".into()))?;
        self.at = end;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, StateError> {
        Ok(self.take::<1>()?[0])
    }
    fn u32(&mut self) -> Result<u32, StateError> {
        Ok(u32::from_le_bytes(self.take()?))
    }
    fn u64(&mut self) -> Result<u64, StateError> {
        Ok(u64::from_le_bytes(self.take()?))
    }
    fn f64(&mut self) -> Result<f64, StateError> {
        Ok(f64::from_le_bytes(self.take()?))
    }
    fn bytes(&mut self, n: usize) -> Result<&[u8], StateError> {
        let slice = self
            .bytes
            .get(self.at..self.at + n)
            .ok_or_else(|| StateError::Corrupt("partial aggregate is truncated".into()))?;
        self.at += n;
        Ok(slice)
    }
    fn len(&mut self, item: usize) -> Result<usize, StateError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(item) > self.bytes.len() - self.at {
            return Err(StateError::Corrupt(
                "partial aggregate length is out of range".into(),
            ));
        }
        Ok(n)
    }
}

fn decode_acc(r: &mut Reader<'_>) -> Result<Acc, StateError> {
    Ok(match r.u8()? {
        0 => Acc::Count(r.u64()?),
        1 => Acc::Sum {
            sum: r.f64()?,
            n: r.u64()?,
        },
        tag @ (2 | 3) => {
            let v = match r.u8()? {
                0 => None,
                _ => Some(r.f64()?),
            };
            if tag == 2 {
                Acc::Min(v)
            } else {
                Acc::Max(v)
            }
        }
        4 => {
            let n = r.len(8)?;
            let mut set = HashSet::with_capacity(n);
            for _ in 0..n {
                set.insert(r.u64()?);
            }
            Acc::Distinct(Box::new(set))
        }
        5 => {
            let n = r.len(8)?;
            Acc::Percentile(Box::new(Percentiles::Exact(
                (0..n).map(|_| r.f64()).collect::<Result<_, _>>()?,
            )))
        }
        6 => {
            let mut h = SignedHistograms::new();
            for negative in [false, true] {
                let n = r.len(16)?;
                let hist = if negative {
                    &mut h.negative
                } else {
                    &mut h.positive
                };
                for _ in 0..n {
                    let (value, count) = (r.u64()?, r.u64()?);
                    hist.record_n(value, count)
                        .map_err(|e| StateError::Corrupt(format!("percentile histogram: {e:?}")))?;
                }
            }
            Acc::Percentile(Box::new(Percentiles::Histograms(Box::new(h))))
        }
        7 => Acc::Moments(Box::new(Moments {
            n: r.u64()?,
            mean: r.f64()?,
            m2: r.f64()?,
        })),
        8 => {
            let n = r.len(8)?;
            let mut set = HashSet::with_capacity(n);
            for _ in 0..n {
                set.insert(r.u64()?);
            }
            Acc::Sketch(Box::new(hll::Hll::Exact(set)))
        }
        9 => {
            let registers = r.bytes(hll::REGISTERS)?;
            Acc::Sketch(Box::new(hll::Hll::Registers(registers.into())))
        }
        tag @ (10 | 11) => {
            let best = match r.u8()? {
                0 => None,
                _ => {
                    let order = r.f64()?;
                    let n = r.len(1)?;
                    let value = r.bytes(n)?.to_vec();
                    Some(Box::new(pick::Picked { order, value }))
                }
            };
            if tag == 10 {
                Acc::PickMax(best)
            } else {
                Acc::PickMin(best)
            }
        }
        tag => return Err(StateError::Corrupt(format!("unknown aggregate tag {tag}"))),
    })
}

#[cfg(test)]
mod tests;
