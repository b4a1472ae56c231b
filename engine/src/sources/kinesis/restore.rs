//! Where a Kinesis source starts. A first run pins its start and stop
//! positions (and asks for a checkpoint that stores them at once); a later
//! run restores every shard's position and checks it against the stream:
//! a recreated stream, or a position past the stream's retention, fails
//! the run unless the job says `on_expired = "trim_horizon"`.

use std::collections::{BTreeMap, BTreeSet};

use kflow_jobs::{OnExpired, StartAt, StopAt};

use super::discovery::{list_shards, oldest_sequence, stream_created_ms, ShardInfo};
use super::position::{ShardPosition, StreamPosition};
use super::{kinesis_error, KinesisSourceTask, Reading, Slot};
use crate::dataflow::json::format_time;
use crate::error::EngineError;
use crate::sources::ingest::now_ms;

/// Checkpointed positions the stream no longer holds.
#[derive(Debug, Default)]
struct Expired {
    /// One line per problem, for the error or the warnings.
    details: Vec<String>,
    /// The shards whose positions are void.
    shards: Vec<String>,
    /// The whole stream was deleted and recreated.
    recreated: bool,
}

impl KinesisSourceTask {
    /// Resolves the start and stop positions, restores shard positions and
    /// checks them against the stream's retention.
    pub(super) fn open(&mut self, r: &mut Reading) -> Result<(), EngineError> {
        let name = self.core.name.clone();
        let stream = self.settings.stream.clone();
        let created = r
            .runtime
            .block_on(stream_created_ms(&r.client, &stream))
            .map_err(|e| kinesis_error(&name, e))?;
        let listing = r
            .runtime
            .block_on(list_shards(&r.client, &stream))
            .map_err(|e| kinesis_error(&name, e))?;
        let Some(restored) = self.restore.as_ref().map(|p| p.stream.clone()) else {
            self.start_fresh(r, created, &listing);
            return Ok(());
        };
        r.stream = StreamPosition {
            shards: BTreeMap::new(),
            ..restored.clone()
        };
        r.slots = restored
            .shards
            .into_iter()
            .map(|(id, state)| {
                let slot = Slot {
                    state,
                    ..Slot::default()
                };
                (id, slot)
            })
            .collect();
        let expired = self.find_expired(r, restored.stream_created_ms, created, &listing)?;
        if expired.details.is_empty() {
            return Ok(());
        }
        match self.settings.on_expired {
            OnExpired::Fail => Err(EngineError::KinesisExpired {
                name,
                details: expired.details,
            }),
            OnExpired::TrimHorizon => {
                for line in &expired.details {
                    tracing::warn!(
                        "source `{name}`: {line}; reading from the trim horizon (on_expired)"
                    );
                }
                reset_expired(r, expired, created, &listing);
                Ok(())
            }
        }
    }

    /// A first run: pins `start_at` and `stop_at` to times.
    fn start_fresh(&mut self, r: &mut Reading, created: Option<i64>, listing: &[ShardInfo]) {
        let now = now_ms();
        r.stream = StreamPosition {
            stream_created_ms: created,
            start_ms: match self.settings.start_at {
                StartAt::Latest => Some(now),
                StartAt::TrimHorizon => None,
                StartAt::Timestamp(t) => Some(t),
            },
            stop_ms: match self.settings.stop_at {
                Some(StopAt::Latest) => Some(now),
                Some(StopAt::Timestamp(t)) => Some(t),
                None => None,
            },
            shards: BTreeMap::new(),
        };
        if r.stream.start_ms.is_some() || r.stream.stop_ms.is_some() {
            // Pin the resolved start and stop in a checkpoint right away.
            self.core.checkpoints.request_early();
        }
        if self.settings.start_at == StartAt::Latest {
            // Closed shards hold nothing newer than now.
            for shard in listing.iter().filter(|s| s.closed) {
                let slot = Slot {
                    state: ShardPosition {
                        finished: true,
                        ..ShardPosition::default()
                    },
                    ..Slot::default()
                };
                r.slots.insert(shard.id.clone(), slot);
            }
        }
    }

    /// Which restored positions the stream no longer holds.
    fn find_expired(
        &self,
        r: &mut Reading,
        checkpointed_created: Option<i64>,
        created: Option<i64>,
        listing: &[ShardInfo],
    ) -> Result<Expired, EngineError> {
        let mut expired = Expired::default();
        if let (Some(was), Some(is)) = (checkpointed_created, created) {
            if was != is {
                expired.recreated = true;
                expired.details.push(format!(
                    "stream `{}` was created at {} but the checkpoint belongs to the stream created at {}: it was deleted and recreated",
                    self.settings.stream,
                    format_time(is),
                    format_time(was),
                ));
                return Ok(expired);
            }
        }
        let listed: BTreeSet<&str> = listing.iter().map(|s| s.id.as_str()).collect();
        for (id, slot) in &r.slots {
            let Some(sequence) = slot.state.sequence.as_ref() else {
                continue;
            };
            if slot.state.finished {
                continue;
            }
            if !listed.contains(id.as_str()) {
                expired.details.push(format!(
                    "shard {id}: no longer listed (past the stream's retention); checkpointed at sequence {sequence}"
                ));
                expired.shards.push(id.clone());
                continue;
            }
            let oldest = r
                .runtime
                .block_on(oldest_sequence(&r.client, &self.settings.stream, id))
                .map_err(|e| kinesis_error(&self.core.name, e))?;
            if let Some(oldest) = oldest.filter(|oldest| oldest > sequence) {
                expired.details.push(format!(
                    "shard {id}: checkpointed at sequence {sequence}, but its oldest retained record is {oldest}"
                ));
                expired.shards.push(id.clone());
            }
        }
        Ok(expired)
    }
}

/// `on_expired = "trim_horizon"`: void positions start over from the
/// oldest record (a recreated stream: every position).
fn reset_expired(r: &mut Reading, expired: Expired, created: Option<i64>, listing: &[ShardInfo]) {
    if expired.recreated {
        r.slots.clear();
        r.stream.stream_created_ms = created;
        r.stream.start_ms = None;
        return;
    }
    for id in expired.shards {
        if let Some(slot) = r.slots.get_mut(&id) {
            slot.state.sequence = None;
            slot.state.subsequence = None;
            slot.from_trim_horizon = true;
            // A shard that is gone cannot be read: its children may start.
            if !listing.iter().any(|s| s.id == id) {
                slot.state.finished = true;
            }
        }
    }
}
