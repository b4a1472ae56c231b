//! Dropping repeats in a block-parallel file source: the decoders send each
//! block's ids ahead in parts as they decode it ([`Probe`], [`PART`] ids
//! each), and the source thread checks them against its seen-id set in
//! file order ([`Checks`]), with the watermark one thread reading every
//! line would have had before each record, and answers which records
//! repeat once it checked the block's last part. The decoders then route
//! the rest. Sent in parts, a block's ids are mostly checked while its
//! decoder still decodes the block's later lines, so the decoder waits for
//! the check of its last part rather than of the whole block.
//!
//! The checks run ahead of what the source has handed on, so a checkpoint
//! must store only the ids of the blocks handed on: each block's
//! [`Mark`] is kept until its hand-off and set as the limit of the next
//! snapshot ([`Dedup::save_through`]).

use std::collections::BTreeMap;
use std::sync::mpsc;

use crate::sources::core::watermark_of;
use crate::sources::dedup::{Dedup, Mark, TOUCH_AHEAD};

/// Ids per part of a block's probe (a block holds ~1,900 of W5's records).
pub(super) const PART: usize = 256;

/// A block's decoded ids, or a part of them.
pub(super) type Ids = Vec<(Option<u64>, i64)>;

/// One part of a block's ids, for the source thread to check.
pub(super) struct Probe {
    /// The block's place in file order.
    pub index: u64,
    /// Per record that decoded with an event time, in file order after the
    /// block's earlier parts: the hash of its id (`None`: it has none) and
    /// its event time.
    pub ids: Ids,
    /// Whether this part is the block's last.
    pub last: bool,
    /// With the block's first part: where the answer goes.
    pub start: Option<Start>,
}

/// What a block's first [`Probe`] part brings besides its ids; the source
/// thread then fills its lists until the block's last part.
pub(super) struct Start {
    /// A list for the verdicts and one for the parts' id lists (the
    /// decoder's, kept from block to block).
    pub verdicts: Vec<bool>,
    pub parts: Vec<Ids>,
    /// Where the answer goes.
    pub reply: mpsc::SyncSender<Answer>,
}

/// The source thread's answer to a block's probe: per id of its parts,
/// whether it repeats, and the parts' lists back for the decoder to fill
/// again (a list freed on another thread is handed back to the OS and
/// faulted in again for the next block).
pub(super) struct Answer {
    pub repeats: Vec<bool>,
    pub parts: Vec<Ids>,
}

/// The source thread's side: probe parts waiting for their turn, and the
/// marks of blocks checked but not handed on yet.
pub(super) struct Checks {
    /// The next block to check.
    next: u64,
    /// The parts of later blocks that arrived before their turn, in the
    /// order they came (a block's parts come in order from its decoder).
    waiting: BTreeMap<u64, Vec<Probe>>,
    /// The block `next`, once its first part was checked.
    answering: Option<Start>,
    /// The largest event time of the records checked and kept.
    max_time: i64,
    max_out_of_orderness_ms: i64,
    /// Where each block checked and not handed on ends in the seen ids.
    marks: BTreeMap<u64, Mark>,
}

impl Checks {
    /// Checks for blocks from the reader's position, whose largest event
    /// time is `max_time`.
    pub fn new(max_time: i64, max_out_of_orderness_ms: i64) -> Checks {
        Checks {
            next: 0,
            waiting: BTreeMap::new(),
            answering: None,
            max_time,
            max_out_of_orderness_ms,
            marks: BTreeMap::new(),
        }
    }

    /// Takes `probe` and checks every part whose turn has come, in order.
    /// A decoder that went away is not waited for: the source learns of it
    /// from its result.
    pub fn offer(&mut self, probe: Probe, dedup: &mut Dedup) {
        if probe.index != self.next {
            self.waiting.entry(probe.index).or_default().push(probe);
            return;
        }
        let mut finished = self.check(probe, dedup);
        while finished {
            let Some(parts) = self.waiting.remove(&self.next) else {
                break;
            };
            finished = false;
            for part in parts {
                finished = self.check(part, dedup);
            }
        }
    }

    /// Checks one part of block `next`; answers the block after its last
    /// part and returns `true` then.
    fn check(&mut self, probe: Probe, dedup: &mut Dedup) -> bool {
        let Probe {
            ids, last, start, ..
        } = probe;
        if let Some(mut start) = start {
            start.verdicts.clear();
            start.parts.clear();
            self.answering = Some(start);
        }
        // Every block's first part starts it: `None` only after a decoder
        // broke that, which its own error reports.
        let Some(answering) = &mut self.answering else {
            return false;
        };
        dedup.touch(ids.iter().take(TOUCH_AHEAD).filter_map(|&(id, _)| id));
        for (i, &(id, time)) in ids.iter().enumerate() {
            if let Some(&(Some(ahead), _)) = ids.get(i + TOUCH_AHEAD) {
                dedup.touch([ahead]);
            }
            let watermark = watermark_of(self.max_time, self.max_out_of_orderness_ms);
            let repeat = dedup.check(id, time, watermark);
            if !repeat {
                self.max_time = self.max_time.max(time);
            }
            answering.verdicts.push(repeat);
        }
        answering.parts.push(ids);
        if !last {
            return false;
        }
        self.marks.insert(self.next, dedup.mark());
        self.next += 1;
        if let Some(Start {
            verdicts,
            parts,
            reply,
        }) = self.answering.take()
        {
            let _ = reply.send(Answer {
                repeats: verdicts,
                parts,
            });
        }
        true
    }

    /// Block `index` is handed on: the next snapshot of `dedup` stores the
    /// ids up to its end.
    pub fn handed_on(&mut self, index: u64, dedup: &mut Dedup) {
        if let Some(mark) = self.marks.remove(&index) {
            dedup.save_through(mark);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Probe parts of `block` for `ids`, [`PART`] at a time, the first
    /// with a fresh reply channel; and that channel's end.
    fn parts_of(block: u64, ids: &[(Option<u64>, i64)]) -> (Vec<Probe>, mpsc::Receiver<Answer>) {
        let (reply, answer) = mpsc::sync_channel(1);
        let mut start = Some(Start {
            verdicts: Vec::new(),
            parts: Vec::new(),
            reply,
        });
        let chunks: Vec<&[(Option<u64>, i64)]> = ids.chunks(PART).collect();
        let last = chunks.len().saturating_sub(1);
        let mut probes: Vec<Probe> = chunks
            .iter()
            .enumerate()
            .map(|(i, chunk)| Probe {
                index: block,
                ids: chunk.to_vec(),
                last: i == last,
                start: start.take(),
            })
            .collect();
        if probes.is_empty() {
            probes.push(Probe {
                index: block,
                ids: Vec::new(),
                last: true,
                start: start.take(),
            });
        }
        (probes, answer)
    }

    #[test]
    fn parts_arriving_interleaved_are_checked_in_file_order() {
        // Three blocks of 600, 0 and 700 records, ids repeating across
        // blocks, times rising with a jitter.
        let sizes = [600usize, 0, 700];
        let mut rng = 0x2545_f491_4f6c_dd1d_u64;
        let mut t = 0;
        let blocks: Vec<Vec<(Option<u64>, i64)>> = sizes
            .iter()
            .map(|&n| {
                (0..n)
                    .map(|_| {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        t += 3;
                        (
                            (!rng.is_multiple_of(5)).then_some(rng % 400),
                            t + (rng % 50) as i64,
                        )
                    })
                    .collect()
            })
            .collect();
        // One thread checking every record in order.
        let mut reference = Dedup::new("s", 500);
        let mut max_time = i64::MIN;
        let expected: Vec<Vec<bool>> = blocks
            .iter()
            .map(|ids| {
                ids.iter()
                    .map(|&(id, time)| {
                        let repeat = reference.check(id, time, watermark_of(max_time, 100));
                        if !repeat {
                            max_time = max_time.max(time);
                        }
                        repeat
                    })
                    .collect()
            })
            .collect();
        assert!(expected.iter().flatten().filter(|&&r| r).count() > 100);

        let mut dedup = Dedup::new("s", 500);
        let mut checks = Checks::new(i64::MIN, 100);
        let (mut p0, a0) = parts_of(0, &blocks[0]);
        let (p1, a1) = parts_of(1, &blocks[1]);
        let (p2, a2) = parts_of(2, &blocks[2]);
        assert_eq!((p0.len(), p1.len(), p2.len()), (3, 1, 3));
        // Block 0's first two parts, then all of blocks 2 and 1 (waiting
        // for their turn), then block 0's last part.
        let last0 = p0.pop().unwrap();
        for probe in p0.into_iter().chain(p2).chain(p1) {
            checks.offer(probe, &mut dedup);
        }
        assert!(a0.try_recv().is_err(), "answered before its last part");
        checks.offer(last0, &mut dedup);
        for (answer, expected) in [a0, a1, a2].iter().zip(&expected) {
            let answer = answer.try_recv().unwrap();
            assert_eq!(&answer.repeats, expected);
            let ids: usize = answer.parts.iter().map(Vec::len).sum();
            assert_eq!(ids, expected.len());
        }
    }
}
