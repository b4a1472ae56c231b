//! Dropping repeats in a block-parallel file source: the decoders send each
//! block's ids ahead ([`Probe`]), and the source thread checks them against
//! its seen-id set in file order ([`Checks`]), with the watermark one
//! thread reading every line would have had before each record, and
//! answers which records repeat. The decoders then route the rest.
//!
//! The checks run ahead of what the source has handed on, so a checkpoint
//! must store only the ids of the blocks handed on: each block's
//! [`Mark`] is kept until its hand-off and set as the limit of the next
//! snapshot ([`Dedup::save_through`]).

use std::collections::BTreeMap;
use std::sync::mpsc;

use crate::sources::core::watermark_of;
use crate::sources::dedup::{Dedup, Mark, TOUCH_AHEAD};

/// The decoded records of one block, for the source thread to check.
pub(super) struct Probe {
    /// The block's place in file order.
    pub index: u64,
    /// Per record that decoded with an event time, in file order: the hash
    /// of its id (`None`: it has none) and its event time.
    pub ids: Vec<(Option<u64>, i64)>,
    /// An empty list for the verdicts (the decoder's, kept from block to
    /// block).
    pub verdicts: Vec<bool>,
    /// Where the answer goes.
    pub reply: mpsc::SyncSender<Answer>,
}

/// The source thread's answer to a [`Probe`]: per entry of its `ids`,
/// whether it repeats, and the `ids` list back for the decoder to fill
/// again (a list freed on another thread is handed back to the OS and
/// faulted in again for the next block).
pub(super) struct Answer {
    pub repeats: Vec<bool>,
    pub ids: Vec<(Option<u64>, i64)>,
}

/// The source thread's side: probes waiting for their turn, and the marks
/// of blocks checked but not handed on yet.
pub(super) struct Checks {
    /// The next block to check.
    next: u64,
    /// Probes that arrived before their turn.
    waiting: BTreeMap<u64, Probe>,
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
            max_time,
            max_out_of_orderness_ms,
            marks: BTreeMap::new(),
        }
    }

    /// Takes `probe` and checks every probe whose turn has come, in order.
    /// A decoder that went away is not waited for: the source learns of it
    /// from its result.
    pub fn offer(&mut self, probe: Probe, dedup: &mut Dedup) {
        self.waiting.insert(probe.index, probe);
        while let Some(probe) = self.waiting.remove(&self.next) {
            let Probe {
                ids,
                verdicts: mut repeats,
                reply,
                ..
            } = probe;
            repeats.clear();
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
                repeats.push(repeat);
            }
            self.marks.insert(self.next, dedup.mark());
            self.next += 1;
            let _ = reply.send(Answer { repeats, ids });
        }
    }

    /// Block `index` is handed on: the next snapshot of `dedup` stores the
    /// ids up to its end.
    pub fn handed_on(&mut self, index: u64, dedup: &mut Dedup) {
        if let Some(mark) = self.marks.remove(&index) {
            dedup.save_through(mark);
        }
    }
}
