//! How a [`Partial`] is stored: one tag byte per accumulator, then its
//! fields little-endian; variable-size parts (distinct hashes, exact
//! percentile values, histogram buckets, sketch registers, a picked value)
//! with their length first. Decoding checks every length against the bytes
//! left, so corrupt state is an error, never a panic.

use hashbrown::HashSet;
use kflow_state::codec::Reader;
use kflow_state::{StateError, StateValue};
use smallvec::SmallVec;

use super::{hll, pick, topk, Acc, Moments, Partial, Percentiles, SignedHistograms};

impl StateValue for Partial {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.0.len() as u8);
        for acc in self.0.iter() {
            encode_acc(acc, out);
        }
    }

    fn decode(bytes: &[u8]) -> Result<Partial, StateError> {
        let mut r = Reader::new(bytes, "partial aggregate");
        let n = r.u8()? as usize;
        let accs = (0..n)
            .map(|_| decode_acc(&mut r))
            .collect::<Result<SmallVec<[Acc; 2]>, _>>()?;
        if !r.is_done() {
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

impl Acc {
    /// Appends the accumulator's stored form (as within a [`Partial`]).
    pub fn encode(&self, out: &mut Vec<u8>) {
        encode_acc(self, out);
    }

    /// Reads an accumulator written by [`Acc::encode`].
    ///
    /// # Errors
    /// Bytes that are not exactly one accumulator.
    pub fn decode(bytes: &[u8]) -> Result<Acc, StateError> {
        let mut r = Reader::new(bytes, "aggregate");
        let acc = decode_acc(&mut r)?;
        if !r.is_done() {
            return Err(StateError::Corrupt(
                "trailing bytes after an aggregate".into(),
            ));
        }
        Ok(acc)
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
        Acc::TopK(top) => {
            out.push(12);
            out.push(u8::from(top.pruned));
            out.extend_from_slice(&(top.counts.len() as u32).to_le_bytes());
            for (value, count) in &top.counts {
                out.extend_from_slice(&(value.len() as u32).to_le_bytes());
                out.extend_from_slice(value);
                out.extend_from_slice(&count.to_le_bytes());
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
        12 => {
            let mut top = topk::TopK {
                pruned: r.u8()? != 0,
                ..topk::TopK::default()
            };
            // Each entry is at least a length and a count.
            let n = r.len(12)?;
            top.counts.reserve(n);
            for _ in 0..n {
                let len = r.len(1)?;
                let value: Box<[u8]> = r.bytes(len)?.into();
                top.counts.insert(value, r.u64()?);
            }
            Acc::TopK(Box::new(top))
        }
        tag => return Err(StateError::Corrupt(format!("unknown aggregate tag {tag}"))),
    })
}
