//! The one run loop of every task with inputs (window partitions and
//! sinks): read messages, align barriers over the inputs, and call the
//! task's hooks.
//!
//! A task implements [`AlignedTask`]: `on_data` for its records,
//! `on_input_end` when one emitter is done, `on_barrier` once barrier N has
//! arrived on every live input (snapshot, report, forward), `on_end` when
//! every input has ended. The loop owns alignment ([`Aligner`]): messages
//! of an input that is ahead are held back until the snapshot, so a task
//! never sees checkpoint N+1's records before it has snapshotted N.

use async_channel::Receiver;

use crate::dataflow::align::Aligner;
use crate::dataflow::message::{Envelope, InputId, Signal};
use crate::error::EngineError;

/// A task driven by [`run_aligned`].
pub trait AlignedTask {
    /// What arrives on its channel.
    type Msg: Envelope;

    /// Its name (for errors when an input vanishes).
    fn name(&self) -> &str;

    /// A data message ([`Signal::Data`]).
    ///
    /// # Errors
    /// The task's failure, which ends the run.
    fn on_data(&mut self, msg: Self::Msg) -> Result<(), EngineError>;

    /// `input` ended; alignment is checked right after.
    ///
    /// # Errors
    /// The task's failure, which ends the run.
    fn on_input_end(&mut self, input: InputId) -> Result<(), EngineError> {
        let _ = input;
        Ok(())
    }

    /// Barrier `checkpoint` arrived on every live input: snapshot, report
    /// and forward it.
    ///
    /// # Errors
    /// The task's failure, which ends the run.
    fn on_barrier(&mut self, checkpoint: u64) -> Result<(), EngineError>;

    /// After every message (publish counters).
    fn after_message(&mut self) {}

    /// Every input has ended: finish and report the final part.
    ///
    /// # Errors
    /// The task's failure, which ends the run.
    fn on_end(&mut self) -> Result<(), EngineError>;
}

/// Runs `task` over `receiver` until each of `inputs` has ended.
///
/// # Errors
/// The task's own errors, or [`EngineError::Disconnected`] when every
/// sender vanished before all inputs ended (a peer failed: its own error
/// is the cause).
pub fn run_aligned<T: AlignedTask>(
    task: &mut T,
    inputs: &[InputId],
    receiver: &Receiver<T::Msg>,
) -> Result<(), EngineError> {
    let mut aligner: Aligner<T::Msg> = Aligner::new(inputs);
    while !aligner.all_ended() {
        let msg = aligner
            .next(receiver)
            .ok_or_else(|| EngineError::Disconnected(task.name().to_string()))?;
        let input = msg.input();
        let snapshot = match msg.signal() {
            Signal::Data => {
                task.on_data(msg)?;
                None
            }
            Signal::Barrier(id) => aligner.barrier(input, id),
            Signal::End => {
                task.on_input_end(input)?;
                aligner.end(input)
            }
        };
        if let Some(checkpoint) = snapshot {
            task.on_barrier(checkpoint)?;
            aligner.release();
        }
        task.after_message();
    }
    task.on_end()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::dataflow::message::{Lines, SinkMsg};

    /// Records every hook call.
    struct Recorder(Vec<String>);

    impl AlignedTask for Recorder {
        type Msg = SinkMsg;
        fn name(&self) -> &str {
            "recorder"
        }
        fn on_data(&mut self, msg: SinkMsg) -> Result<(), EngineError> {
            if let SinkMsg::Lines(i, l) = msg {
                self.0
                    .push(format!("{i}:{}", String::from_utf8_lossy(&l.text)));
            }
            Ok(())
        }
        fn on_input_end(&mut self, input: InputId) -> Result<(), EngineError> {
            self.0.push(format!("{input}:end"));
            Ok(())
        }
        fn on_barrier(&mut self, checkpoint: u64) -> Result<(), EngineError> {
            self.0.push(format!("snapshot{checkpoint}"));
            Ok(())
        }
        fn on_end(&mut self) -> Result<(), EngineError> {
            self.0.push("done".into());
            Ok(())
        }
    }

    #[test]
    fn hooks_run_in_aligned_order() {
        let (tx, rx) = async_channel::unbounded();
        for m in [
            SinkMsg::Lines(0, Lines::plain(b"a1".to_vec())),
            SinkMsg::Barrier(0, 1),
            SinkMsg::Lines(0, Lines::plain(b"a2".to_vec())),
            SinkMsg::Lines(1, Lines::plain(b"b1".to_vec())),
            SinkMsg::Barrier(1, 1),
            SinkMsg::End(0),
            SinkMsg::End(1),
        ] {
            tx.send_blocking(m).unwrap();
        }
        let mut task = Recorder(Vec::new());
        run_aligned(&mut task, &[0, 1], &rx).unwrap();
        assert_eq!(
            task.0,
            [
                "0:a1",
                "1:b1",
                "snapshot1",
                "0:a2",
                "0:end",
                "1:end",
                "done"
            ]
        );
    }

    #[test]
    fn a_vanished_input_is_a_lost_peer() {
        let (tx, rx) = async_channel::unbounded::<SinkMsg>();
        tx.send_blocking(SinkMsg::End(0)).unwrap();
        drop(tx);
        let mut task = Recorder(Vec::new());
        let err = run_aligned(&mut task, &[0, 1], &rx).unwrap_err();
        assert!(matches!(err, EngineError::Disconnected(name) if name == "recorder"));
    }
}
