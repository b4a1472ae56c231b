//! The keyed event-time window operator: one task per partition of a window.
//!
//! Each record updates the partial aggregate of its (pane, key) in the
//! write-back cache. The operator's watermark is the minimum over its live
//! inputs; when it passes `end + allowed_lateness` the window fires: its
//! panes' partials are merged per key, one row per key is emitted, and panes
//! no later window needs are dropped. A record whose every window has fired
//! is late: it goes to the `.late` output or is dropped and counted. Results
//! only ever carry windows at or behind the input frontier (timely's rule:
//! no output without the capability to send it).

pub mod aggregate;
pub mod assign;
pub mod combine;
mod emit;
mod fire;
mod memory;
pub mod session;
pub mod state;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use async_channel::Receiver;
use kflow_state::keys::same;
use kflow_state::{StateBatch, StateStore, StateValue, WindowCache};

use crate::dataflow::checkpoint::{CheckpointCtx, Part, PartKind};
use crate::dataflow::key;
use crate::dataflow::message::{InputId, WindowBatch, WindowMsg};
use crate::dataflow::metrics::parts::HOT_KEYS;
use crate::dataflow::metrics::sketch::{HeavyHitters, SAMPLE};
use crate::dataflow::metrics::{InputMetrics, LocalCounts, Metrics, NodeMetrics};
use crate::dataflow::route::SinkOut;
use crate::dataflow::task::{run_aligned, AlignedTask};
use crate::error::EngineError;
use aggregate::Partial;
use assign::Panes;
pub use emit::ResultEmitter;
use session::{Placed, SessionStore};
pub use state::WindowState;

/// Watermark state of one input.
#[derive(Debug, Clone)]
struct InputState {
    id: InputId,
    name: String,
    watermark: i64,
    idle: bool,
    ended: bool,
}

/// Everything a window partition needs besides its channel.
pub struct WindowTaskCtx {
    /// State id of this partition (see `kflow_state::codec::instance`).
    pub instance: u32,
    /// `window/partition`, its name in checkpoints.
    pub task: String,
    /// Pane geometry (tumbling and sliding windows).
    pub panes: Panes,
    /// A session window's gap and `max_duration`, in ms.
    pub sessions: Option<(i64, Option<i64>)>,
    /// `allowed_lateness` in ms.
    pub lateness: i64,
    /// The emitters feeding it, with their names.
    pub inputs: Vec<(InputId, String)>,
    /// The state store.
    pub store: Arc<StateStore>,
    /// Memory budget of its cache.
    pub budget: usize,
    /// Late-record sinks.
    pub late: Vec<SinkOut>,
    /// Shared counters.
    pub metrics: Arc<Metrics>,
    /// Checkpoint coordination.
    pub checkpoints: CheckpointCtx,
    /// State to resume from.
    pub restore: Option<WindowState>,
    /// Aggregates were appended since the checkpoint: extend the stored
    /// partials before running.
    pub extend_state: bool,
}

/// One partition of a window operator.
pub struct WindowTask {
    task: String,
    panes: Panes,
    lateness: i64,
    receiver: Receiver<WindowMsg>,
    inputs: Vec<InputState>,
    store: Arc<StateStore>,
    cache: WindowCache<Partial>,
    out: ResultEmitter,
    late: Vec<SinkOut>,
    metrics: Arc<Metrics>,
    checkpoints: CheckpointCtx,
    counts: LocalCounts,
    /// The operator watermark (minimum over live inputs).
    watermark: i64,
    /// Every window ending at or before this has fired.
    fired_through: i64,
    /// Snapshot whose commit allows evicting clean entries.
    evict_after: Option<u64>,
    early_requested: bool,
    grows: bool,
    /// A session window's sessions (its panes cache then stays empty).
    sessions: Option<Box<SessionStore>>,
    /// A sliding window's fire merges a key's panes here, one shard at a
    /// time, and keeps the allocations from fire to fire (see
    /// [`fire::Merge`]).
    merge: fire::Merge,
    /// Restored packed times, loaded when the task starts running.
    packed: Vec<i64>,
    /// Extend the stored partials for appended aggregates first.
    extend_state: bool,
    /// Restored session times, loaded when the task starts running.
    restore_sessions: Option<session::SessionTimes>,
    /// `(record, pane)` updates of evicted keys gathered from a batch
    /// (kept for its capacity between batches).
    spilled_updates: Vec<(usize, i64)>,
    /// A late record's partition key, for a `.late` sink that partitions.
    late_key: Vec<u8>,
    /// This partition's own metrics.
    own: Arc<NodeMetrics>,
    /// The heaviest window keys.
    hot_keys: HeavyHitters,
    /// Records taken in since the last publication.
    records_in: u64,
    /// Whether a fire moved the frontier or emitted rows that are not
    /// flushed yet (done once per message: see [`WindowTask::flush_results`]).
    flush_due: bool,
    /// When the gauges were last published.
    published: std::time::Instant,
}

/// How many records ahead an update reads what its check for a stored
/// partial will need (see [`WindowCache::touch`]).
const TOUCH_AHEAD: usize = 8;

/// How often a partition publishes its gauges and hot keys.
const GAUGES_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

impl WindowTask {
    /// A partition task reading `receiver`.
    pub fn new(
        ctx: WindowTaskCtx,
        receiver: Receiver<WindowMsg>,
        out: ResultEmitter,
    ) -> WindowTask {
        let grows = out.aggregates.iter().any(|a| {
            matches!(
                a.function,
                kflow_jobs::AggregateFunction::CountDistinct
                    | kflow_jobs::AggregateFunction::CountDistinctApprox
                    | kflow_jobs::AggregateFunction::Percentile(_)
            ) || a.function.carries_a_value()
        });
        let mut restore = ctx.restore.unwrap_or(WindowState {
            fired_through: i64::MIN,
            watermark: i64::MIN,
            ..WindowState::default()
        });
        let inputs = ctx
            .inputs
            .into_iter()
            .map(|(id, name)| InputState {
                id,
                watermark: restore.inputs.get(&name).copied().unwrap_or(i64::MIN),
                name,
                idle: false,
                ended: false,
            })
            .collect();
        let mut cache = WindowCache::new(ctx.instance, ctx.budget);
        cache.add_spilled(restore.stored_times.iter().copied());
        let sessions = ctx.sessions.map(|(gap, max_duration)| {
            Box::new(SessionStore::new(
                out.aggregates.clone(),
                ctx.instance,
                gap,
                max_duration,
                ctx.budget,
                restore.sessions.as_ref(),
            ))
        });
        let restore_sessions = restore.sessions.take();
        let packed = std::mem::take(&mut restore.packed_times);
        let (node, partition) = ctx.task.rsplit_once('/').unwrap_or((&ctx.task, "0"));
        let own = ctx.metrics.nodes.add(NodeMetrics::new(
            node,
            partition.parse().unwrap_or(0),
            ctx.budget,
        ));
        WindowTask {
            task: ctx.task,
            panes: ctx.panes,
            lateness: ctx.lateness,
            receiver,
            inputs,
            store: ctx.store,
            cache,
            out,
            late: ctx.late,
            metrics: ctx.metrics,
            checkpoints: ctx.checkpoints,
            counts: LocalCounts::default(),
            watermark: restore.watermark,
            fired_through: restore.fired_through,
            evict_after: None,
            early_requested: false,
            grows,
            merge: fire::Merge::default(),
            packed,
            restore_sessions,
            sessions,
            extend_state: ctx.extend_state,
            spilled_updates: Vec::new(),
            late_key: Vec::new(),
            own,
            hot_keys: HeavyHitters::default(),
            records_in: 0,
            flush_due: false,
            published: std::time::Instant::now(),
        }
    }

    /// Offers a sample of the batch's keys to the hot-keys sketch: as many
    /// random records as one in [`SAMPLE`] of the batch would be.
    fn sample_keys(&mut self, batch: &WindowBatch) {
        let n = batch.len();
        for _ in 0..n.div_ceil(SAMPLE as usize) {
            let pick = (self.hot_keys.random() % n as u64) as usize;
            self.late_key.clear();
            key::write_partition_key(batch.key(pick), &mut self.late_key);
            self.hot_keys.offer(&self.late_key);
        }
    }

    /// Publishes counters always and, every [`GAUGES_EVERY`], the gauges:
    /// watermarks, state size and hot keys.
    fn publish(&mut self, force: bool) {
        let own = &self.own;
        self.counts.publish(&self.metrics, &own.counts);
        own.records_in
            .fetch_add(std::mem::take(&mut self.records_in), Ordering::Relaxed);
        if !force && self.published.elapsed() < GAUGES_EVERY {
            return;
        }
        self.published = std::time::Instant::now();
        own.watermark.store(self.watermark, Ordering::Relaxed);
        own.set_inputs(
            self.inputs
                .iter()
                .map(|i| InputMetrics {
                    name: i.name.clone(),
                    watermark: i.watermark,
                    idle: i.idle,
                    ended: i.ended,
                })
                .collect(),
        );
        let (open, partials, bytes, stats) = match &self.sessions {
            Some(s) => (s.open_times(), s.len(), s.bytes(), s.stats()),
            None => (
                self.cache.open_times(),
                self.cache.len(),
                self.cache.bytes(),
                self.cache.stats(),
            ),
        };
        own.open_windows.store(open as u64, Ordering::Relaxed);
        own.partials.store(partials as u64, Ordering::Relaxed);
        own.state_bytes.store(bytes as u64, Ordering::Relaxed);
        own.over_budget.store(self.over_budget(), Ordering::Relaxed);
        own.evictions.store(stats.evictions, Ordering::Relaxed);
        own.spilled_reads
            .store(stats.spilled_reads, Ordering::Relaxed);
        own.set_hot_keys(self.hot_keys.publish(HOT_KEYS));
    }

    /// Processes messages until every input has ended, then fires every
    /// remaining window and reports its final state.
    ///
    /// # Errors
    /// State failures, or a lost peer task.
    pub fn run(mut self) -> Result<(), EngineError> {
        if self.extend_state {
            let aggregates = &self.out.aggregates;
            let extended = match &self.sessions {
                Some(sessions) => sessions.extend_stored(&self.store, aggregates)?,
                None => self
                    .cache
                    .rewrite_stored(&self.store, |p: &mut Partial| p.extend_to(aggregates))?,
            };
            tracing::info!(
                "window `{}`: {extended} stored partials extended for appended aggregates",
                self.task
            );
        }
        let packed = std::mem::take(&mut self.packed);
        self.cache.load_packed(&self.store, packed)?;
        if let (Some(sessions), Some(times)) = (&mut self.sessions, self.restore_sessions.take()) {
            sessions.load_packed(&self.store, &times)?;
        }
        let inputs: Vec<InputId> = self.inputs.iter().map(|i| i.id).collect();
        let receiver = self.receiver.clone();
        run_aligned(&mut self, &inputs, &receiver)
    }

    /// `window/partition`.
    pub fn task_name(&self) -> &str {
        &self.task
    }

    fn input_index(&self, id: InputId) -> Option<usize> {
        self.inputs.iter().position(|i| i.id == id)
    }

    /// Reports this partition's state for `checkpoint` (`None`: final) and
    /// forwards the barrier downstream.
    fn snapshot(&mut self, checkpoint: Option<u64>) -> Result<(), EngineError> {
        // Eviction follows the commit if the cache is full: the snapshot
        // then stores every time key by key, so any entry can be dropped.
        let evicting = checkpoint.is_some() && self.should_spill();
        let mut batch = StateBatch::new();
        self.cache.snapshot(&mut batch, evicting);
        if let Some(sessions) = &mut self.sessions {
            sessions.snapshot(&mut batch, evicting);
        }
        let state = WindowState {
            fired_through: self.fired_through,
            watermark: self.watermark,
            inputs: self
                .inputs
                .iter()
                .map(|i| (i.name.clone(), i.watermark))
                .collect::<BTreeMap<_, _>>(),
            stored_times: self.cache.stored_times(),
            packed_times: self.cache.packed_times(),
            entries: self.cache.len() as u64,
            ended: checkpoint.is_none(),
            sessions: self.sessions.as_ref().map(|s| s.times()),
        };
        if let Some(id) = checkpoint {
            let frontier = self.frontier();
            self.out.router.barrier(id, frontier)?;
            for sink in &mut self.late {
                sink.barrier(id)?;
            }
            // An eviction still waiting for an earlier commit must wait for
            // this one too: this snapshot marked entries clean that only
            // this checkpoint stores.
            if evicting || self.evict_after.is_some() {
                self.evict_after = Some(id);
            }
            // This checkpoint answers any early request: if the cache still
            // needs to spill it evicts after it, and if a fire shrank the
            // cache meanwhile, a later growth must be able to ask again.
            self.early_requested = false;
        }
        self.checkpoints.report(Part::new(
            &self.task,
            checkpoint,
            PartKind::Window,
            &state,
            batch,
        )?)
    }

    fn on_batch(&mut self, batch: &WindowBatch) -> Result<(), EngineError> {
        let Some(input) = self.input_index(batch.input) else {
            return Ok(());
        };
        // Records, or a watermark that moved, end a quiet spell; the empty
        // flushes of an idle emitter do not.
        if !batch.is_empty() || batch.final_watermark > self.inputs[input].watermark {
            self.inputs[input].idle = false;
        }
        self.records_in += batch.total_rows();
        // A window without a key has one (empty) key: nothing to rank.
        if !batch.is_empty() && !self.out.key_names.is_empty() {
            self.sample_keys(batch);
        }
        let n_args = self.out.aggregates.len();
        // Updates of keys evicted to RocksDB wait here and are applied
        // together, in order, after one batched read (see
        // `WindowCache::update_spilled`), before anything fires.
        let touch = self.sessions.is_none() && self.cache.has_spilled();
        let mut next = 0;
        while next < batch.len() {
            let i = next;
            next += 1;
            if touch && i + TOUCH_AHEAD < batch.len() {
                let ahead = i + TOUCH_AHEAD;
                let pane = self.panes.pane_end(batch.times[ahead]);
                self.cache.touch(pane, batch.hashes[ahead]);
            }
            if batch.watermarks[i] > self.inputs[input].watermark {
                self.inputs[input].watermark = batch.watermarks[i];
                if !self.spilled_updates.is_empty() && self.would_fire() {
                    self.update_spilled(batch)?;
                }
                self.recompute_watermark()?;
            }
            if let Some(sessions) = &mut self.sessions {
                let args = &batch.args[i * n_args..(i + 1) * n_args];
                let placed = sessions.place(
                    &self.store,
                    batch.times[i],
                    batch.hashes[i],
                    batch.key(i),
                    self.fired_through,
                    |partial| partial.update_with(args, &batch.values),
                )?;
                if placed == Placed::Late {
                    self.send_late(batch, i)?;
                }
                continue;
            }
            let pane = self.panes.pane_end(batch.times[i]);
            if self.panes.last_window_end(pane) <= self.fired_through {
                self.send_late(batch, i)?;
                continue;
            }
            let aggregates = &self.out.aggregates;
            let in_memory =
                self.cache
                    .get_mut_in_memory(pane, batch.hashes[i], batch.key(i), || {
                        Partial::new(aggregates)
                    });
            let Some(partial) = in_memory else {
                self.spilled_updates.push((i, pane));
                continue;
            };
            let before = if self.grows { partial.heap_bytes() } else { 0 };
            partial.update_with(&batch.args[i * n_args..(i + 1) * n_args], &batch.values);
            // The records after it on the same key and pane, under the same
            // watermark, update the same partial without another lookup (a
            // window without a key, or a key's burst, takes one per run).
            let (hash, key) = (batch.hashes[i], batch.key(i));
            while next < batch.len()
                && batch.hashes[next] == hash
                && batch.watermarks[next] <= self.inputs[input].watermark
                && self.panes.pane_end(batch.times[next]) == pane
                && same(batch.key(next), key)
            {
                let args = &batch.args[next * n_args..(next + 1) * n_args];
                partial.update_with(args, &batch.values);
                next += 1;
            }
            if self.grows {
                let after = partial.heap_bytes();
                self.cache.account(after.saturating_sub(before));
            }
        }
        self.update_spilled(batch)?;
        if batch.final_watermark > self.inputs[input].watermark {
            self.inputs[input].watermark = batch.final_watermark;
            self.recompute_watermark()?;
        }
        self.manage_memory();
        Ok(())
    }

    /// Counts record `i` of `batch` as late and sends it to the `.late`
    /// outputs.
    fn send_late(&mut self, batch: &WindowBatch, i: usize) -> Result<(), EngineError> {
        let rows = batch.rows(i);
        self.counts.late += rows;
        if self.late.is_empty() {
            self.counts.late_dropped += rows;
        }
        if let Some(raw) = batch.raw(i) {
            let key = if self.late.iter().any(SinkOut::wants_keys) {
                self.late_key.clear();
                key::write_partition_key(batch.key(i), &mut self.late_key);
                Some(&self.late_key[..])
            } else {
                None
            };
            for sink in &mut self.late {
                sink.push(raw, key, None)?;
            }
        }
        Ok(())
    }

    /// Every result at or before this time has been emitted: the frontier
    /// told downstream. Sessions emit by timer bucket, a little behind.
    fn frontier(&self) -> i64 {
        match &self.sessions {
            Some(s) => s.emitted_through(self.fired_through),
            None => self.fired_through,
        }
    }

    /// The operator watermark the inputs now give, if it moved, and the
    /// window end it fires through.
    fn watermark_target(&self) -> Option<(i64, i64)> {
        let live = self.inputs.iter().filter(|i| !i.ended && !i.idle);
        let watermark = match live.map(|i| i.watermark).min() {
            Some(w) => w,
            // Every input ended: +infinity. Every live input idle: hold.
            None if self.inputs.iter().all(|i| i.ended) => i64::MAX,
            None => return None,
        };
        if watermark <= self.watermark {
            return None;
        }
        let target = if watermark == i64::MAX {
            i64::MAX
        } else {
            watermark.saturating_sub(self.lateness)
        };
        Some((watermark, target))
    }

    fn recompute_watermark(&mut self) -> Result<(), EngineError> {
        if let Some((watermark, target)) = self.watermark_target() {
            self.watermark = watermark;
            self.advance(target)?;
        }
        Ok(())
    }
}

impl AlignedTask for WindowTask {
    type Msg = WindowMsg;

    fn name(&self) -> &str {
        &self.task
    }

    fn on_data(&mut self, msg: WindowMsg) -> Result<(), EngineError> {
        match msg {
            WindowMsg::Batch(batch) => {
                // Rows this batch fires measure their latency from when its
                // input was read.
                self.out.router.origin = batch.origin;
                self.on_batch(&batch)?;
                batch.recycle();
            }
            WindowMsg::Idle(id) => {
                self.out.router.origin = Some(std::time::Instant::now());
                if let Some(i) = self.input_index(id) {
                    self.inputs[i].idle = true;
                    self.recompute_watermark()?;
                }
            }
            WindowMsg::Barrier(..) | WindowMsg::End(_) => {}
        }
        self.flush_results()
    }

    fn on_input_end(&mut self, input: InputId) -> Result<(), EngineError> {
        self.out.router.origin = Some(std::time::Instant::now());
        if let Some(i) = self.input_index(input) {
            self.inputs[i].ended = true;
            self.recompute_watermark()?;
        }
        self.flush_results()
    }

    fn on_barrier(&mut self, checkpoint: u64) -> Result<(), EngineError> {
        self.snapshot(Some(checkpoint))
    }

    fn after_message(&mut self) {
        self.publish(false);
    }

    fn on_end(&mut self) -> Result<(), EngineError> {
        self.out.router.origin = Some(std::time::Instant::now());
        self.advance(i64::MAX)?;
        self.out.router.end(i64::MAX)?;
        for sink in &mut self.late {
            sink.end()?;
        }
        self.publish(true);
        self.snapshot(None)
    }
}
