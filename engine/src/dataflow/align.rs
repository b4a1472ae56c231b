//! Barrier alignment for tasks with several inputs.
//!
//! When barrier N arrives on one input, that input is *blocked*: whatever it
//! sends next belongs to checkpoint N+1 and is buffered, while the other
//! inputs are still read until their barrier N arrives (or they end). Once
//! every input is blocked or ended the task snapshots, then releases the
//! buffered messages in the order they came. Only one checkpoint is ever in
//! flight, so one buffer suffices.

use std::collections::VecDeque;

use async_channel::Receiver;

use crate::dataflow::message::{Envelope, InputId};

#[derive(Debug, Clone, Copy)]
struct Slot {
    id: InputId,
    blocked: bool,
    ended: bool,
}

/// Alignment state of one task.
#[derive(Debug)]
pub struct Aligner<M> {
    slots: Vec<Slot>,
    buffered: VecDeque<M>,
    replay: VecDeque<M>,
    pending: Option<u64>,
}

impl<M: Envelope> Aligner<M> {
    /// Alignment over `inputs`.
    pub fn new(inputs: &[InputId]) -> Aligner<M> {
        Aligner {
            slots: inputs
                .iter()
                .map(|&id| Slot {
                    id,
                    blocked: false,
                    ended: false,
                })
                .collect(),
            buffered: VecDeque::new(),
            replay: VecDeque::new(),
            pending: None,
        }
    }

    /// Whether every input has ended.
    pub fn all_ended(&self) -> bool {
        self.slots.iter().all(|s| s.ended)
    }

    /// The next message to process: released messages first, then the
    /// channel; messages of blocked inputs are set aside. `None` when the
    /// channel closed (every sender is gone).
    pub fn next(&mut self, receiver: &Receiver<M>) -> Option<M> {
        loop {
            let msg = match self.replay.pop_front() {
                Some(m) => m,
                None => receiver.recv_blocking().ok()?,
            };
            let input = msg.input();
            if self.slots.iter().any(|s| s.id == input && s.blocked) {
                self.buffered.push_back(msg);
                continue;
            }
            return Some(msg);
        }
    }

    /// Barrier `id` arrived on `input`; returns the checkpoint to snapshot
    /// when the task is now aligned.
    pub fn barrier(&mut self, input: InputId, id: u64) -> Option<u64> {
        if let Some(slot) = self.slots.iter_mut().find(|s| s.id == input) {
            slot.blocked = true;
        }
        self.pending = Some(id);
        self.aligned()
    }

    /// `input` ended; returns the checkpoint to snapshot when that completed
    /// an alignment.
    pub fn end(&mut self, input: InputId) -> Option<u64> {
        if let Some(slot) = self.slots.iter_mut().find(|s| s.id == input) {
            slot.ended = true;
        }
        self.aligned()
    }

    fn aligned(&self) -> Option<u64> {
        let id = self.pending?;
        self.slots
            .iter()
            .all(|s| s.blocked || s.ended)
            .then_some(id)
    }

    /// After the snapshot: unblocks every input and releases what was set
    /// aside.
    pub fn release(&mut self) {
        for slot in &mut self.slots {
            slot.blocked = false;
        }
        self.pending = None;
        let mut buffered = std::mem::take(&mut self.buffered);
        buffered.append(&mut self.replay);
        self.replay = buffered;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::dataflow::message::{Lines, SinkMsg};

    fn lines(input: InputId, text: &str) -> SinkMsg {
        SinkMsg::Lines(input, Lines::plain(text.as_bytes().to_vec()))
    }

    fn text(msg: &SinkMsg) -> String {
        match msg {
            SinkMsg::Lines(i, l) => format!("{i}:{}", String::from_utf8_lossy(&l.text)),
            SinkMsg::Rows(i, rows) => format!("{i}:{} rows", rows.len()),
            SinkMsg::Barrier(i, n) => format!("{i}:barrier{n}"),
            SinkMsg::End(i) => format!("{i}:end"),
        }
    }

    #[test]
    fn input_ahead_is_held_back_until_every_input_has_its_barrier() {
        let (tx, rx) = async_channel::unbounded();
        for m in [
            lines(0, "a1"),
            SinkMsg::Barrier(0, 1),
            lines(0, "a2"),
            lines(1, "b1"),
            SinkMsg::Barrier(1, 1),
            lines(1, "b2"),
            SinkMsg::End(0),
        ] {
            tx.send_blocking(m).unwrap();
        }
        drop(tx);
        let mut aligner = Aligner::new(&[0, 1]);
        let mut seen = Vec::new();
        while let Some(msg) = aligner.next(&rx) {
            seen.push(text(&msg));
            let snapshot = match msg {
                SinkMsg::Barrier(i, n) => aligner.barrier(i, n),
                SinkMsg::End(i) => aligner.end(i),
                SinkMsg::Lines(..) | SinkMsg::Rows(..) => None,
            };
            if let Some(n) = snapshot {
                seen.push(format!("snapshot{n}"));
                aligner.release();
            }
        }
        assert_eq!(
            seen,
            [
                "0:a1",
                "0:barrier1",
                "1:b1",
                "1:barrier1",
                "snapshot1",
                "0:a2",
                "1:b2",
                "0:end"
            ]
        );
    }

    #[test]
    fn an_ended_input_does_not_hold_a_barrier_back() {
        let mut aligner: Aligner<SinkMsg> = Aligner::new(&[0, 1]);
        assert_eq!(aligner.end(0), None);
        assert_eq!(aligner.barrier(1, 7), Some(7));
    }
}
