//! `kflow test`'s turns: the sources of a test run read in step, so the
//! order a case's steps give across sources is the order their records
//! meet at a window.
//!
//! Each step of a case is a turn. A source takes its part of turn `t`
//! (an `advance` of its watermark, an `idle` spell, its records), flushes,
//! and tells the [`Sequencer`] it is done; once every source is done, the
//! sequencer asks for a checkpoint and waits until it is committed. Its
//! barrier went out behind each source's records of the turn, so by then
//! every window has taken them all in, and turn `t + 1` starts. A source
//! that waits answers barriers meanwhile. After the last turn the sources
//! wait once more, so none ends (and stops holding a watermark back)
//! before the others have read everything. Quiet spells only come from
//! `idle` steps: the wall clock makes no source of a test run idle.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use kflow_jobs::Turn;

use super::Progress;
use crate::dataflow::checkpoint::CheckpointCtx;
use crate::error::EngineError;
use crate::sources::core::SourceCore;

/// How often a waiting source looks at the sequencer again.
const WAIT: Duration = Duration::from_millis(1);

/// The turn every source of a test run is in, shared by them.
#[derive(Debug)]
pub struct Sequencer {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// How many sources take turns (0: not known yet).
    sources: usize,
    /// The turns each source had finished when it started (restored).
    joined: Vec<u64>,
    /// The turn running, once every source has joined.
    turn: Option<u64>,
    /// How many sources are done with each turn.
    done: BTreeMap<u64, usize>,
    /// The checkpoint whose commit ends the running turn.
    awaiting: Option<u64>,
}

impl Sequencer {
    /// A sequencer; its sources join as their [`Script`]s are made.
    pub fn new() -> Arc<Sequencer> {
        Arc::new(Sequencer {
            state: Mutex::new(State::default()),
        })
    }

    /// Every source has joined: the sequence may start.
    pub fn close(&self) {
        let mut state = self.state();
        state.sources = state.joined.len();
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A source starts, having finished `finished` turns (restored from a
    /// checkpoint, or 0).
    fn join(&self, finished: u64) {
        self.state().joined.push(finished);
    }

    /// A source is done with `turn`.
    fn done(&self, turn: u64) {
        *self.state().done.entry(turn).or_default() += 1;
    }

    /// Whether `turn` has started; moves the sequence on when the running
    /// turn is done everywhere (asking for the checkpoint that ends it).
    fn reached(&self, turn: u64, checkpoints: &CheckpointCtx) -> bool {
        let mut state = self.state();
        if state.sources == 0 {
            return false;
        }
        let State {
            sources,
            joined,
            turn: running,
            done,
            awaiting,
        } = &mut *state;
        let running = running.get_or_insert_with(|| {
            // Restored sources may have finished different turns: the
            // sequence starts at the earliest, the others count as done.
            let first = joined.iter().copied().min().unwrap_or(0);
            for &finished in joined.iter() {
                for t in first..finished {
                    *done.entry(t).or_default() += 1;
                }
            }
            first
        });
        loop {
            if *running >= turn {
                return true;
            }
            if done.get(running).copied().unwrap_or(0) < *sources {
                return false;
            }
            match *awaiting {
                None => {
                    // A checkpoint asked for from now on has its barrier
                    // behind every record of the turn.
                    *awaiting = Some(checkpoints.requested() + 1);
                    checkpoints.request_early();
                    return false;
                }
                Some(id) if checkpoints.committed() >= id => {
                    *running += 1;
                    *awaiting = None;
                }
                Some(_) => return false,
            }
        }
    }
}

/// One source's turns and where it is in them.
#[derive(Debug)]
pub struct Script {
    turns: Vec<Turn>,
    /// Turns this source has finished.
    finished: u64,
    /// Whether the turn after those has started here.
    started: bool,
    /// Whether the sequence is over (every turn done everywhere).
    over: bool,
    sequencer: Arc<Sequencer>,
}

impl Script {
    /// A source's `turns`, of which it has finished `finished` (restored
    /// from a checkpoint).
    pub fn new(turns: Vec<Turn>, finished: u64, sequencer: Arc<Sequencer>) -> Script {
        sequencer.join(finished);
        Script {
            turns,
            finished,
            started: false,
            over: false,
            sequencer,
        }
    }

    /// Before the source reads its next line (or, `at_end`, once its file
    /// is read): finishes each turn whose lines are all read and waits for
    /// the next to start, answering barriers; at the end, waits until the
    /// sequence is over.
    ///
    /// # Errors
    /// A lost downstream task or coordinator.
    pub(super) fn step(
        &mut self,
        core: &mut SourceCore,
        p: &mut Progress,
        at_end: bool,
    ) -> Result<(), EngineError> {
        loop {
            let Some(&turn) = self.turns.get(self.finished as usize) else {
                if at_end && !self.over {
                    self.wait(self.turns.len() as u64, core, p)?;
                    self.over = true;
                }
                return Ok(());
            };
            if !self.started {
                self.wait(self.finished, core, p)?;
                start(&turn, core, p)?;
                self.started = true;
            }
            if p.line < turn.lines && !at_end {
                return Ok(());
            }
            self.finished += 1;
            self.started = false;
            p.turns = self.finished;
            let watermark = core.watermark_of(p.max_time);
            core.chores(watermark, || p.position(false))?;
            self.sequencer.done(self.finished - 1);
        }
    }

    /// Waits until `turn` has started, answering barriers meanwhile.
    fn wait(&self, turn: u64, core: &mut SourceCore, p: &Progress) -> Result<(), EngineError> {
        let watermark = core.watermark_of(p.max_time);
        core.chores(watermark, || p.position(false))?;
        while !self.sequencer.reached(turn, &core.checkpoints) {
            core.maybe_checkpoint(watermark, || p.position(false))?;
            std::thread::sleep(WAIT);
        }
        Ok(())
    }
}

/// The start of a turn: its `advance` raises the source's clock, its
/// `idle` spell makes the source idle when it reaches `idle_timeout`.
fn start(turn: &Turn, core: &mut SourceCore, p: &mut Progress) -> Result<(), EngineError> {
    if let Some(watermark) = turn.advance {
        // The watermark is the largest time less the lag.
        let time = watermark.saturating_add(core.max_out_of_orderness_ms);
        p.max_time = p.max_time.max(time);
    }
    match turn.quiet_ms {
        Some(quiet) => {
            let timeout = core.idle_timeout.map(|t| t.as_millis() as i64);
            if timeout.is_some_and(|t| quiet >= t) {
                let watermark = core.watermark_of(p.max_time);
                core.set_idle(watermark)?;
            }
        }
        // Records come in this turn: a quiet spell is announced again.
        None if turn.lines > p.line => core.set_busy(),
        None => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> CheckpointCtx {
        let (parts, _) = std::sync::mpsc::channel();
        CheckpointCtx::new(0, parts)
    }

    #[test]
    fn a_turn_starts_once_every_source_is_done_and_a_checkpoint_committed() {
        let (sequencer, checkpoints) = (Sequencer::new(), ctx());
        sequencer.join(0);
        sequencer.join(0);
        assert!(!sequencer.reached(0, &checkpoints), "not closed yet");
        sequencer.close();
        assert!(sequencer.reached(0, &checkpoints));
        sequencer.done(0);
        assert!(!sequencer.reached(1, &checkpoints));
        assert!(!checkpoints.early_pending(), "one source is still reading");
        sequencer.done(0);
        assert!(!sequencer.reached(1, &checkpoints));
        assert!(
            checkpoints.take_early(),
            "the turn's checkpoint is asked for"
        );
        checkpoints.request(1);
        assert!(
            !sequencer.reached(1, &checkpoints),
            "requested, not committed"
        );
        checkpoints.set_committed(1);
        assert!(sequencer.reached(1, &checkpoints));
    }

    #[test]
    fn a_checkpoint_under_way_when_the_turn_ends_does_not_end_it() {
        let (sequencer, checkpoints) = (Sequencer::new(), ctx());
        sequencer.join(0);
        sequencer.close();
        checkpoints.request(1);
        sequencer.done(0);
        assert!(!sequencer.reached(1, &checkpoints));
        checkpoints.set_committed(1);
        assert!(
            !sequencer.reached(1, &checkpoints),
            "checkpoint 1 may have been taken before the turn's records"
        );
        checkpoints.request(2);
        checkpoints.set_committed(2);
        assert!(sequencer.reached(1, &checkpoints));
    }

    #[test]
    fn restored_sources_start_at_the_earliest_turn_any_had_finished() {
        let (sequencer, checkpoints) = (Sequencer::new(), ctx());
        sequencer.join(3);
        sequencer.join(2);
        sequencer.close();
        assert!(sequencer.reached(2, &checkpoints));
        assert!(!sequencer.reached(3, &checkpoints));
        // The source that had finished turn 2 counts as done with it.
        sequencer.done(2);
        assert!(!sequencer.reached(3, &checkpoints));
        checkpoints.request(1);
        checkpoints.set_committed(1);
        assert!(sequencer.reached(3, &checkpoints));
    }
}
