//! Routing an emitter's records through fused filters to its consumers.
//!
//! Sources and window partitions are *emitters*. Filters never run as tasks
//! of their own: each emitter evaluates the filter chains between itself and
//! every window or sink it feeds, memoising each filter once per record, and
//! appends the record to per-destination batches. For windows the record is
//! encoded right here (key bytes, key hash, aggregate arguments), so what
//! crosses the channel is compact and already partitioned by key hash.
//!
//! A router can also be *collecting* ([`Router::collector`]): a copy that
//! keeps what it would send, so that several threads can route blocks of
//! one source's records at once and the source hands each block's output
//! on in order ([`Router::send_collected`]).

mod sink;
mod window;

pub use sink::{Keys, SinkOut};
pub use window::{
    partition_of, ArgSpec, Combine, Partitions, RemotePartitions, WindowInput, WindowOut,
};

use async_channel::{Receiver, Sender};
use kflow_jobs::expr::CompiledExpr;
use kflow_jobs::Row;
use std::sync::Arc;
use std::time::Instant;

use crate::dataflow::json;
use crate::dataflow::message::{Lines, SinkMsg, WindowBatch};
use crate::dataflow::metrics::LocalCounts;
use crate::dataflow::position::{RawRecord, Stamp};
use crate::dataflow::rows::{Cell, RowFormat};
use crate::error::EngineError;
use sink::SinkTo;

/// One path from the emitter through filters to a destination.
#[derive(Debug, Clone)]
pub struct Route {
    /// Indices into [`Router::filters`], all of which must pass.
    pub chain: Vec<usize>,
    /// The destination.
    pub target: Target,
}

/// A route's destination.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// Index into [`Router::windows`].
    Window(usize),
    /// Index into [`Router::sinks`].
    Sink(usize),
}

/// Everything one emitter sends, with its fused filters.
#[derive(Debug, Default)]
pub struct Router {
    /// The emitter's node name (for error rows).
    pub name: String,
    /// Filters on the emitter's routes.
    pub filters: Vec<CompiledExpr>,
    /// Routes, in plan order.
    pub routes: Vec<Route>,
    /// Window destinations.
    pub windows: Vec<WindowOut>,
    /// Sink destinations.
    pub sinks: Vec<SinkOut>,
    /// Where this emitter's bad records go (`.errors` sinks, or the
    /// dead-letter file).
    pub errors: Vec<SinkOut>,
    /// Whether `errors` is the dead-letter file.
    pub errors_to_dead_letter: bool,
    /// For a window's results: when the input that fires them was read
    /// (rows routed to sinks carry it to measure end-to-end latency).
    pub origin: Option<Instant>,
    memo: Vec<Option<bool>>,
    error_line: Vec<u8>,
}

impl Router {
    /// An emitter with no destinations yet.
    pub fn new(name: String) -> Router {
        Router {
            name,
            ..Router::default()
        }
    }

    /// Whether a sink on a route wants each row's partition key.
    pub fn wants_keys(&self) -> bool {
        self.sinks.iter().any(SinkOut::wants_keys)
    }

    /// Whether a consumer's channel is full: the emitter is (about to be)
    /// held back by a slower consumer.
    pub fn backpressured(&self) -> bool {
        self.windows.iter().any(WindowOut::is_full) || self.sinks.iter().any(SinkOut::is_full)
    }

    /// Whether anything consumes this emitter's main output.
    pub fn has_routes(&self) -> bool {
        !self.routes.is_empty()
    }

    /// Whether any route reads the record's values (through a filter or a
    /// window's key and arguments) rather than only its text.
    pub fn reads_rows(&self) -> bool {
        self.routes
            .iter()
            .any(|r| !r.chain.is_empty() || matches!(r.target, Target::Window(_)))
    }

    /// Whether a route stores records' text: a sink, or a window whose
    /// late records are kept for its `.late` output. When none does, an
    /// emitter may route a record without writing its text (see
    /// [`Router::route_untexted`]).
    pub fn reads_text(&self) -> bool {
        self.routes.iter().any(|r| match r.target {
            Target::Sink(_) => true,
            Target::Window(w) => self.windows[w].spec.carry_raw,
        })
    }

    /// Whether every route goes straight to a sink, through no filter: the
    /// emitter may then hand its result rows over unwritten
    /// ([`Router::push_rows`]).
    pub fn sinks_only(&self) -> bool {
        !self.routes.is_empty()
            && self
                .routes
                .iter()
                .all(|r| r.chain.is_empty() && matches!(r.target, Target::Sink(_)))
    }

    /// Hands one result row of `key` in window `(start, end)` to every
    /// route's sink, to be written as `format` says on the sink's thread;
    /// `cells` pushes its aggregate values. Only for a router whose
    /// routes are [`Router::sinks_only`].
    pub fn push_rows(
        &mut self,
        format: &Arc<RowFormat>,
        window: (i64, i64),
        key: &[u8],
        cells: &mut dyn FnMut(&mut Vec<Cell>, &mut Vec<u8>),
    ) -> Result<(), EngineError> {
        for route in &self.routes {
            if let Target::Sink(s) = route.target {
                self.sinks[s].push_row(format, window, key, self.origin, cells)?;
            }
        }
        Ok(())
    }

    /// Sends one record down every route whose filters pass.
    pub fn route<R: Row + ?Sized>(
        &mut self,
        row: &R,
        record: RawRecord<'_>,
        stamp: Stamp,
        counts: &mut LocalCounts,
    ) -> Result<(), EngineError> {
        self.route_untexted(row, record, stamp, counts, &mut |_| {})
    }

    /// [`Router::route`] for a record whose text was left unwritten
    /// (empty) because no route [`Router::reads_text`]: `render` writes it
    /// should a window reject the record, for its error row.
    pub fn route_untexted<R: Row + ?Sized>(
        &mut self,
        row: &R,
        record: RawRecord<'_>,
        stamp: Stamp,
        counts: &mut LocalCounts,
        render: &mut dyn FnMut(&mut Vec<u8>),
    ) -> Result<(), EngineError> {
        self.memo.clear();
        self.memo.resize(self.filters.len(), None);
        let mut delivered = false;
        for r in 0..self.routes.len() {
            let passes = self.routes[r]
                .chain
                .iter()
                .all(|&f| *self.memo[f].get_or_insert_with(|| self.filters[f].matches(row)));
            if !passes {
                continue;
            }
            delivered = true;
            match self.routes[r].target {
                Target::Sink(s) => self.sinks[s].push(record.text, record.key, self.origin)?,
                Target::Window(w) => {
                    if let Err(reason) = self.windows[w].push(row, stamp, &record)? {
                        if record.text.is_empty() {
                            let mut text = Vec::new();
                            render(&mut text);
                            self.error(
                                &reason,
                                RawRecord {
                                    text: &text,
                                    ..record
                                },
                                counts,
                            )?;
                        } else {
                            self.error(&reason, record, counts)?;
                        }
                    }
                }
            }
        }
        if !delivered && !self.routes.is_empty() {
            counts.filtered_out += 1;
        }
        Ok(())
    }

    /// Reports a record this emitter could not use.
    pub fn error(
        &mut self,
        reason: &str,
        record: RawRecord<'_>,
        counts: &mut LocalCounts,
    ) -> Result<(), EngineError> {
        counts.errors += 1;
        if self.errors_to_dead_letter {
            counts.dead_letters += 1;
        }
        let line = &mut self.error_line;
        line.clear();
        line.extend_from_slice(b"{\"source\":");
        json::write_str(line, &self.name);
        line.extend_from_slice(b",\"reason\":");
        json::write_str(line, reason);
        line.extend_from_slice(b",\"position\":");
        record.position.write_json(line);
        line.extend_from_slice(b",\"record\":");
        json::write_str(line, &String::from_utf8_lossy(record.text));
        line.push(b'}');
        for sink in &mut self.errors {
            sink.push_line(&self.error_line)?;
        }
        Ok(())
    }

    /// Calls `window` on every window destination, then `sink` on every
    /// sink and error destination: the order every control message keeps.
    fn each(
        &mut self,
        mut window: impl FnMut(&mut WindowOut) -> Result<(), EngineError>,
        mut sink: impl FnMut(&mut SinkOut) -> Result<(), EngineError>,
    ) -> Result<(), EngineError> {
        self.windows.iter_mut().try_for_each(&mut window)?;
        self.sinks
            .iter_mut()
            .chain(self.errors.iter_mut())
            .try_for_each(&mut sink)
    }

    /// Sends all buffered records, with the emitter's watermark.
    pub fn flush(&mut self, watermark: i64) -> Result<(), EngineError> {
        self.each(|w| w.flush(watermark), SinkOut::flush)
    }

    /// Marks the emitter idle for its window consumers.
    pub fn idle(&mut self, watermark: i64) -> Result<(), EngineError> {
        self.windows.iter_mut().try_for_each(|w| w.idle(watermark))
    }

    /// Flushes and sends checkpoint barrier `id` to every destination.
    pub fn barrier(&mut self, id: u64, watermark: i64) -> Result<(), EngineError> {
        self.each(|w| w.barrier(id, watermark), |s| s.barrier(id))
    }

    /// Flushes and ends every destination.
    pub fn end(&mut self, watermark: i64) -> Result<(), EngineError> {
        self.each(|w| w.end(watermark), SinkOut::end)
    }

    /// A collecting copy: the same filters, routes and encodings, keeping
    /// what it would send for [`Router::take_collected`].
    pub fn collector(&self) -> Router {
        Router {
            name: self.name.clone(),
            filters: self.filters.clone(),
            routes: self.routes.clone(),
            windows: self.windows.iter().map(WindowOut::collector).collect(),
            sinks: self.sinks.iter().map(SinkOut::collector).collect(),
            errors: self.errors.iter().map(SinkOut::collector).collect(),
            errors_to_dead_letter: self.errors_to_dead_letter,
            origin: None,
            memo: Vec::new(),
            error_line: Vec::new(),
        }
    }

    /// A collecting router's output since the last call, after a flush at
    /// `watermark` (every partition gets a batch, possibly empty, that
    /// carries it).
    ///
    /// # Errors
    /// None in practice: a collecting router sends nowhere.
    pub fn take_collected(&mut self, watermark: i64) -> Result<Collected, EngineError> {
        self.flush(watermark)?;
        let windows = self
            .windows
            .iter_mut()
            .map(|w| match &mut w.partitions {
                Partitions::Collect(_, kept) => std::mem::take(kept),
                _ => Vec::new(),
            })
            .collect();
        let take = |sinks: &mut Vec<SinkOut>| -> Vec<Vec<Lines>> {
            sinks
                .iter_mut()
                .map(|s| match &mut s.to {
                    SinkTo::Collect(kept) => std::mem::take(kept),
                    SinkTo::Channel(_) => Vec::new(),
                })
                .collect()
        };
        Ok(Collected {
            windows,
            sinks: take(&mut self.sinks),
            errors: take(&mut self.errors),
        })
    }

    /// Sends what a [`Router::collector`] of this router collected, in its
    /// order per destination. Its records were stamped with watermarks of
    /// their block alone; `entering` is this emitter's watermark before the
    /// block, so each becomes what one thread routing every record in
    /// order would have stamped: the larger of the two.
    ///
    /// # Errors
    /// A lost consumer.
    pub fn send_collected(
        &mut self,
        collected: Collected,
        entering: i64,
    ) -> Result<(), EngineError> {
        self.send_collected_with(collected, |w| w.max(entering))
    }

    /// [`Router::send_collected`] with each record's stamp (and each
    /// batch's final watermark) mapped by `stamp`: for a source whose
    /// watermark is not one running maximum (a Kinesis source's minimum
    /// over shards).
    ///
    /// # Errors
    /// A lost downstream task.
    pub fn send_collected_with(
        &mut self,
        collected: Collected,
        stamp: impl Fn(i64) -> i64,
    ) -> Result<(), EngineError> {
        for (window, batches) in self.windows.iter_mut().zip(collected.windows) {
            for (partition, mut batch) in batches {
                for w in &mut batch.watermarks {
                    *w = stamp(*w);
                }
                batch.final_watermark = stamp(batch.final_watermark);
                window.send_batch(partition, batch)?;
            }
        }
        for (sink, batches) in self
            .sinks
            .iter_mut()
            .chain(self.errors.iter_mut())
            .zip(collected.sinks.into_iter().chain(collected.errors))
        {
            for lines in batches {
                sink.send(SinkMsg::Lines(sink.input, lines))?;
            }
        }
        Ok(())
    }

    /// Whether a window destination is reached through a cluster's
    /// shuffle (a collecting copy would not carry the records' positions
    /// that the shuffle needs).
    pub fn sends_remote(&self) -> bool {
        self.windows
            .iter()
            .any(|w| matches!(w.partitions, Partitions::Remote(_)))
    }
}

/// Emptied batches handed back to an emitter to be filled again: each
/// batch carries a sender of its emitter's channel and goes back once taken
/// in. The last holder of the queue (the emitter or one of its collecting
/// copies) closes it and drops the batches queued: each holds a sender,
/// and a channel whose queue holds its own senders would never be freed.
/// Batches handed back after that are dropped. (Two last holders dropped
/// at the same instant may each see the other and leave up to a queue's
/// batches behind, once, as a source ends.)
#[derive(Debug)]
pub(super) struct Spares<T> {
    pub(super) back: Sender<T>,
    queued: Receiver<T>,
}

impl<T> Spares<T> {
    /// Room for `capacity` spare batches.
    pub(super) fn new(capacity: usize) -> Spares<T> {
        let (back, queued) = async_channel::bounded(capacity);
        Spares { back, queued }
    }

    /// A spare batch, if one came back.
    pub(super) fn take(&self) -> Option<T> {
        self.queued.try_recv().ok()
    }
}

impl<T> Clone for Spares<T> {
    fn clone(&self) -> Spares<T> {
        Spares {
            back: self.back.clone(),
            queued: self.queued.clone(),
        }
    }
}

impl<T> Drop for Spares<T> {
    fn drop(&mut self) {
        if self.queued.receiver_count() == 1 {
            self.queued.close();
            while self.queued.try_recv().is_ok() {}
        }
    }
}

/// What a collecting router kept, per destination in the router's order.
#[derive(Debug, Default)]
pub struct Collected {
    /// Per window destination: (partition, batch), in order.
    pub windows: Vec<Vec<(usize, WindowBatch)>>,
    /// Per sink destination: line batches, in order.
    pub sinks: Vec<Vec<Lines>>,
    /// Per error destination: line batches, in order.
    pub errors: Vec<Vec<Lines>>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A batch that holds a sender of its own queue, as batches do.
    struct Batch {
        _back: Sender<Batch>,
    }

    #[test]
    fn the_last_holder_of_spares_empties_and_closes_them() {
        let spares: Spares<Batch> = Spares::new(4);
        let copy = spares.clone();
        let back = spares.back.clone();
        back.try_send(Batch {
            _back: back.clone(),
        })
        .unwrap();
        drop(spares);
        assert!(!back.is_closed(), "a copy still takes spares");
        assert!(copy.take().is_some());
        back.try_send(Batch {
            _back: back.clone(),
        })
        .unwrap();
        drop(copy);
        assert!(back.is_closed() && back.is_empty());
        assert!(back
            .try_send(Batch {
                _back: back.clone()
            })
            .is_err());
    }
}
