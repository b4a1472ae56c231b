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

/// What a block's first [`Probe`] part brings besides its ids.
pub(super) struct Start {
    /// An empty list for the verdicts and one for the parts' id lists (the
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

/// The block whose parts are being checked.
struct Answering {
    repeats: Vec<bool>,
    parts: Vec<Ids>,
    reply: mpsc::SyncSender<Answer>,
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
    answering: Option<Answering>,
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
        if let Some(Start {
            mut verdicts,
            mut parts,
            reply,
        }) = start
        {
            verdicts.clear();
            parts.clear();
            self.answering = Some(Answering {
                repeats: verdicts,
                parts,
                reply,
            });
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
            answering.repeats.push(repeat);
        }
        answering.parts.push(ids);
        if !last {
            return false;
        }
        self.marks.insert(self.next, dedup.mark());
        self.next += 1;
        if let Some(Answering {
            repeats,
            parts,
            reply,
        }) = self.answering.take()
        {
            let _ = reply.send(Answer { repeats, parts });
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
