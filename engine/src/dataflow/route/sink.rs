//! A router's sink destinations: lines buffered per sink (with their
//! partition keys when the sink wants them) and sent in batches.

use async_channel::Sender;
use std::sync::Arc;
use std::time::Instant;

use super::Spares;
use crate::dataflow::message::{InputId, Lines, SinkMsg};
use crate::dataflow::rows::{Cell, RowFormat, Rows};
use crate::error::EngineError;

/// Bytes buffered per sink before they are sent.
const SINK_BATCH: usize = 64 * 1024;

/// Emptied row batches an emitter keeps per sink to fill again: about as
/// many as one window fire sends at once (W2's fires send ~10), so that a
/// fire finds its batches ready instead of growing new ones.
const SPARE_ROWS: usize = 16;

/// Whether a sink partitions its rows by a key the emitter gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keys {
    /// Text only (files, stdout).
    None,
    /// Each line with its partition key (Kinesis).
    PerLine,
}

/// Where a sink destination's lines go.
#[derive(Debug)]
pub(super) enum SinkTo {
    /// The sink task's channel.
    Channel(Sender<SinkMsg>),
    /// Kept, in order, for [`Router::send_collected`].
    Collect(Vec<Lines>),
}

/// A sink destination: buffered JSON lines (and their partition keys).
#[derive(Debug)]
pub struct SinkOut {
    pub(super) input: InputId,
    pub(super) to: SinkTo,
    pub(super) buf: Lines,
    pub(super) keys: Keys,
    pub(super) name: String,
    /// Length of the last batch sent (what the next one reserves).
    pub(super) last_len: usize,
    /// Result rows buffered for the sink to write ([`SinkOut::push_row`]).
    rows: Option<Rows>,
    /// Where the sink hands emptied row batches back.
    spares: Option<Spares<Rows>>,
}

impl SinkOut {
    /// A destination sending to `sender` as input `input`.
    pub fn new(name: String, input: InputId, sender: Sender<SinkMsg>, keys: Keys) -> SinkOut {
        SinkOut {
            input,
            to: SinkTo::Channel(sender),
            buf: Lines::default(),
            keys,
            name,
            last_len: 0,
            rows: None,
            spares: None,
        }
    }

    /// A collecting copy.
    pub(super) fn collector(&self) -> SinkOut {
        SinkOut {
            input: self.input,
            to: SinkTo::Collect(Vec::new()),
            buf: Lines::default(),
            keys: self.keys,
            name: self.name.clone(),
            last_len: 0,
            rows: None,
            spares: None,
        }
    }

    /// Sends `msg` (a collecting copy keeps line batches only).
    pub(super) fn send(&mut self, msg: SinkMsg) -> Result<(), EngineError> {
        match &mut self.to {
            SinkTo::Channel(sender) => sender
                .send_blocking(msg)
                .map_err(|_| EngineError::Disconnected(self.name.clone())),
            SinkTo::Collect(kept) => {
                match msg {
                    SinkMsg::Lines(_, lines) => kept.push(lines),
                    SinkMsg::Rows(_, rows) => {
                        let mut lines = Lines::default();
                        rows.render(&mut lines);
                        kept.push(lines);
                    }
                    SinkMsg::Barrier(..) | SinkMsg::End(_) => {}
                }
                Ok(())
            }
        }
    }

    /// Whether this destination wants each line's partition key.
    pub fn wants_keys(&self) -> bool {
        self.keys == Keys::PerLine
    }

    /// Whether the sink's channel is full.
    pub fn is_full(&self) -> bool {
        match &self.to {
            SinkTo::Channel(sender) => sender.is_full(),
            SinkTo::Collect(_) => false,
        }
    }

    /// Appends one line (without its newline).
    pub fn push_line(&mut self, line: &[u8]) -> Result<(), EngineError> {
        self.push(line, None, None)
    }

    /// Appends one line, with its partition key (`None`: the sink picks
    /// one), that measures latency from `origin`.
    pub fn push(
        &mut self,
        line: &[u8],
        key: Option<&[u8]>,
        origin: Option<Instant>,
    ) -> Result<(), EngineError> {
        if self.rows.is_some() {
            self.flush_rows()?;
        }
        let buf = &mut self.buf;
        if buf.text.is_empty() {
            buf.origin = origin;
            // Sized like the previous batch: growing each batch by doubling
            // copied it four more times on the way to SINK_BATCH, while a
            // trickle of small flushes keeps small buffers.
            buf.text.reserve(self.last_len.max(line.len() + 1));
        }
        buf.text.extend_from_slice(line);
        buf.text.push(b'\n');
        if self.keys == Keys::PerLine {
            buf.keys.extend_from_slice(key.unwrap_or_default());
            buf.key_ends.push(buf.keys.len() as u32);
        }
        if buf.text.len() >= SINK_BATCH {
            self.flush()?;
        }
        Ok(())
    }

    /// Appends one result row of `key` in window `[start, end)`, written
    /// as `format` says by the sink's thread; `cells` pushes its aggregate
    /// values. `origin` measures its latency.
    pub fn push_row(
        &mut self,
        format: &Arc<RowFormat>,
        (start, end): (i64, i64),
        key: &[u8],
        origin: Option<Instant>,
        cells: &mut dyn FnMut(&mut Vec<Cell>, &mut Vec<u8>),
    ) -> Result<(), EngineError> {
        if !self.buf.text.is_empty() {
            self.flush_text()?;
        }
        let rows = match &mut self.rows {
            Some(rows) => rows,
            None => {
                let spares = self.spares.get_or_insert_with(|| Spares::new(SPARE_ROWS));
                let mut rows = spares.take().unwrap_or_else(|| {
                    Rows::new(
                        format.clone(),
                        self.keys == Keys::PerLine,
                        Some(spares.back.clone()),
                    )
                });
                if !Arc::ptr_eq(&rows.format, format) {
                    rows.format = format.clone();
                }
                rows.origin = origin;
                self.rows.insert(rows)
            }
        };
        rows.push(start, end, key, cells);
        if rows.size() >= SINK_BATCH {
            self.flush_rows()?;
        }
        Ok(())
    }

    /// Sends what is buffered.
    pub fn flush(&mut self) -> Result<(), EngineError> {
        self.flush_text()?;
        self.flush_rows()
    }

    /// Sends the buffered result rows.
    fn flush_rows(&mut self) -> Result<(), EngineError> {
        match self.rows.take() {
            Some(rows) if !rows.is_empty() => self.send(SinkMsg::Rows(self.input, rows)),
            _ => Ok(()),
        }
    }

    /// Sends the buffered lines.
    fn flush_text(&mut self) -> Result<(), EngineError> {
        if self.buf.text.is_empty() {
            return Ok(());
        }
        let lines = std::mem::take(&mut self.buf);
        // Room for a full batch and its last line, no more.
        self.last_len = lines.text.len().min(SINK_BATCH + SINK_BATCH / 4);
        self.send(SinkMsg::Lines(self.input, lines))
    }

    /// Flushes and sends checkpoint barrier `id`.
    pub fn barrier(&mut self, id: u64) -> Result<(), EngineError> {
        self.flush()?;
        self.send(SinkMsg::Barrier(self.input, id))
    }

    /// Flushes and says this input is done.
    pub fn end(&mut self) -> Result<(), EngineError> {
        self.flush()?;
        self.send(SinkMsg::End(self.input))
    }
}
