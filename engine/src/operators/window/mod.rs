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
pub mod key;

use std::sync::Arc;

use async_channel::Receiver;
use hashbrown::HashMap;
use kflow_jobs::{AggregatePlan, Value};
use kflow_state::{StateBatch, StateStore, StateValue, WindowCache};

use crate::error::EngineError;
use crate::json;
use crate::metrics::{LocalCounts, Metrics};
use crate::runtime::message::{InputId, WindowBatch, WindowMsg};
use crate::runtime::route::{Position, Router, SinkOut};
use crate::runtime::row::{MappedRow, SlotMap};
use aggregate::Partial;
use assign::Panes;

/// Watermark state of one input.
#[derive(Debug, Clone, Copy)]
struct InputState {
    id: InputId,
    watermark: i64,
    idle: bool,
    ended: bool,
}

/// Writes result rows and routes them downstream.
pub struct ResultEmitter {
    /// The window's name.
    pub name: String,
    /// Key column names.
    pub key_names: Vec<String>,
    /// The aggregates.
    pub aggregates: Vec<AggregatePlan>,
    /// Downstream consumers of the window's results.
    pub router: Router,
    /// Field id -> result column (for downstream filters and windows).
    pub columns: SlotMap,
    line: Vec<u8>,
}

impl ResultEmitter {
    /// An emitter for window `name`.
    pub fn new(
        name: String,
        key_names: Vec<String>,
        aggregates: Vec<AggregatePlan>,
        router: Router,
        columns: SlotMap,
    ) -> ResultEmitter {
        ResultEmitter { name, key_names, aggregates, router, columns, line: Vec::new() }
    }

    fn emit(
        &mut self,
        start: i64,
        end: i64,
        key: &[u8],
        partial: &Partial,
        watermark: i64,
        counts: &mut LocalCounts,
    ) -> Result<(), EngineError> {
        let keys = key::decode_values(key).unwrap_or_default();
        let results: Vec<Value<'static>> = self
            .aggregates
            .iter()
            .zip(partial.0.iter())
            .map(|(a, acc)| acc.value(a.function))
            .collect();
        let line = &mut self.line;
        line.clear();
        line.extend_from_slice(b"{\"window_start\":");
        json::write_time(line, start);
        line.extend_from_slice(b",\"window_end\":");
        json::write_time(line, end);
        for (name, value) in self.key_names.iter().zip(&keys) {
            line.push(b',');
            json::write_str(line, name);
            line.push(b':');
            json::write_value(line, value);
        }
        for (a, value) in self.aggregates.iter().zip(&results) {
            line.push(b',');
            json::write_str(line, &a.name);
            line.push(b':');
            json::write_value(line, value);
        }
        line.push(b'}');
        counts.rows_emitted += 1;
        if self.router.has_routes() {
            let mut values: Vec<Value<'_>> = Vec::with_capacity(2 + keys.len() + results.len());
            values.push(Value::Str(json::format_time(start).into()));
            values.push(Value::Str(json::format_time(end).into()));
            values.extend(keys.iter().cloned());
            values.extend(results);
            let row = MappedRow { values: &values, map: &self.columns };
            let position = Position::Window { window: &self.name };
            let line = std::mem::take(&mut self.line);
            let routed = self.router.route(&row, end - 1, watermark, &line, position, counts);
            self.line = line;
            routed?;
        }
        Ok(())
    }
}

/// One partition of a window operator.
pub struct WindowTask {
    /// Persistent id of the operator (its node index).
    pub operator: u16,
    /// Pane geometry.
    pub panes: Panes,
    /// `allowed_lateness` in ms.
    pub lateness: i64,
    /// Incoming records and watermarks.
    pub receiver: Receiver<WindowMsg>,
    inputs: Vec<InputState>,
    store: Arc<StateStore>,
    cache: WindowCache<Partial>,
    out: ResultEmitter,
    late: Vec<SinkOut>,
    metrics: Arc<Metrics>,
    counts: LocalCounts,
    /// The operator watermark (minimum over live inputs).
    watermark: i64,
    /// Every window ending at or before this has fired.
    fired_through: i64,
    grows: bool,
}

impl WindowTask {
    /// A partition task reading `receiver`, fed by `inputs`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        operator: u16,
        panes: Panes,
        lateness: i64,
        receiver: Receiver<WindowMsg>,
        inputs: &[InputId],
        store: Arc<StateStore>,
        budget: usize,
        out: ResultEmitter,
        late: Vec<SinkOut>,
        metrics: Arc<Metrics>,
    ) -> WindowTask {
        let grows = out.aggregates.iter().any(|a| {
            matches!(
                a.function,
                kflow_jobs::AggregateFunction::CountDistinct | kflow_jobs::AggregateFunction::Percentile(_)
            )
        });
        WindowTask {
            operator,
            panes,
            lateness,
            receiver,
            inputs: inputs
                .iter()
                .map(|&id| InputState { id, watermark: i64::MIN, idle: false, ended: false })
                .collect(),
            store,
            cache: WindowCache::new(operator, budget),
            out,
            late,
            metrics,
            counts: LocalCounts::default(),
            watermark: i64::MIN,
            fired_through: i64::MIN,
            grows,
        }
    }

    /// Processes messages until every input has ended, then fires every
    /// remaining window.
    ///
    /// # Errors
    /// State failures, or a lost peer task.
    pub fn run(mut self) -> Result<(), EngineError> {
        while self.inputs.iter().any(|i| !i.ended) {
            let msg = self
                .receiver
                .recv_blocking()
                .map_err(|_| EngineError::Disconnected(self.out.name.clone()))?;
            match msg {
                WindowMsg::Batch(batch) => self.on_batch(batch)?,
                WindowMsg::Idle(id) => {
                    if let Some(i) = self.input_index(id) {
                        self.inputs[i].idle = true;
                        self.recompute_watermark()?;
                    }
                }
                WindowMsg::End(id) => {
                    if let Some(i) = self.input_index(id) {
                        self.inputs[i].ended = true;
                        self.recompute_watermark()?;
                    }
                }
            }
            self.counts.publish(&self.metrics);
        }
        self.advance(i64::MAX)?;
        self.out.router.end(i64::MAX)?;
        for sink in &mut self.late {
            sink.end()?;
        }
        self.counts.publish(&self.metrics);
        Ok(())
    }

    fn input_index(&self, id: InputId) -> Option<usize> {
        self.inputs.iter().position(|i| i.id == id)
    }

    fn on_batch(&mut self, batch: WindowBatch) -> Result<(), EngineError> {
        let Some(input) = self.input_index(batch.input) else {
            return Ok(());
        };
        self.inputs[input].idle = false;
        let n_args = self.out.aggregates.len();
        for i in 0..batch.len() {
            if batch.watermarks[i] > self.inputs[input].watermark {
                self.inputs[input].watermark = batch.watermarks[i];
                self.recompute_watermark()?;
            }
            let pane = self.panes.pane_end(batch.times[i]);
            if self.panes.last_window_end(pane) <= self.fired_through {
                self.counts.late += 1;
                if self.late.is_empty() {
                    self.counts.late_dropped += 1;
                }
                if let Some(raw) = batch.raw(i) {
                    for sink in &mut self.late {
                        sink.push_line(raw)?;
                    }
                }
                continue;
            }
            let aggregates = &self.out.aggregates;
            let partial = self.cache.get_mut(&self.store, pane, batch.hashes[i], batch.key(i), || {
                Partial::new(aggregates)
            })?;
            let args = &batch.args[i * n_args..(i + 1) * n_args];
            if self.grows {
                let before = partial.heap_bytes();
                partial.update(args);
                let after = partial.heap_bytes();
                self.cache.account(after.saturating_sub(before));
            } else {
                partial.update(args);
            }
        }
        if batch.final_watermark > self.inputs[input].watermark {
            self.inputs[input].watermark = batch.final_watermark;
            self.recompute_watermark()?;
        }
        if self.cache.over_budget() {
            self.spill()?;
        }
        Ok(())
    }

    /// Writes every dirty partial to RocksDB and drops them from memory.
    fn spill(&mut self) -> Result<(), EngineError> {
        let mut batch = StateBatch::new();
        self.cache.snapshot(&mut batch);
        self.store.write(batch, false)?;
        self.cache.evict();
        Ok(())
    }

    fn recompute_watermark(&mut self) -> Result<(), EngineError> {
        let live = self.inputs.iter().filter(|i| !i.ended && !i.idle);
        let watermark = match live.map(|i| i.watermark).min() {
            Some(w) => w,
            // Every input ended: +infinity. Every live input idle: hold.
            None if self.inputs.iter().all(|i| i.ended) => i64::MAX,
            None => return Ok(()),
        };
        if watermark > self.watermark {
            self.watermark = watermark;
            let target = if watermark == i64::MAX {
                i64::MAX
            } else {
                watermark.saturating_sub(self.lateness)
            };
            self.advance(target)?;
        }
        Ok(())
    }

    /// Fires every window ending at or before `target`, oldest first.
    fn advance(&mut self, target: i64) -> Result<(), EngineError> {
        if target <= self.fired_through {
            return Ok(());
        }
        let before = self.fired_through;
        while let Some(first) = self.cache.first_time_from(i64::MIN) {
            let end = first.max(self.panes.next_window_end_after(self.fired_through));
            if end > target {
                break;
            }
            self.fire(end, before)?;
            self.fired_through = end;
        }
        self.fired_through = target;
        if self.out.router.has_routes() {
            // Results carry event time end - 1 >= the new frontier.
            self.out.router.flush(self.fired_through)?;
        }
        for sink in &mut self.late {
            sink.flush()?;
        }
        Ok(())
    }

    /// Emits the window ending at `end` and drops panes no later window uses.
    fn fire(&mut self, end: i64, watermark: i64) -> Result<(), EngineError> {
        let start = end.saturating_sub(self.panes.size());
        if self.panes.is_tumbling() {
            self.cache.load(&self.store, end)?;
            for (key, partial) in self.cache.entries(end) {
                self.out.emit(start, end, key, partial, watermark, &mut self.counts)?;
            }
            self.cache.remove(end);
            return Ok(());
        }
        let mut merged: HashMap<Box<[u8]>, Partial> = HashMap::new();
        for pane in self.panes.panes_of_window(end) {
            self.cache.load(&self.store, pane)?;
            for (key, partial) in self.cache.entries(pane) {
                match merged.get_mut(key) {
                    Some(m) => m.merge(partial),
                    None => {
                        merged.insert(key.into(), partial.clone());
                    }
                }
            }
        }
        for (key, partial) in &merged {
            self.out.emit(start, end, key, partial, watermark, &mut self.counts)?;
        }
        let obsolete = start.saturating_add(self.panes.slide());
        while let Some(pane) = self.cache.first_time_from(i64::MIN).filter(|p| *p <= obsolete) {
            self.cache.remove(pane);
        }
        Ok(())
    }
}
