//! Writing a fired window's result rows and routing them downstream.
//!
//! A result row is written as JSON text only when something downstream
//! stores text (a sink, a window keeping late rows), and as values only
//! when something evaluates them (a filter, a window of windows). Neither
//! allocates per row. A window whose rows all go straight to sinks hands
//! them over unwritten, as keys and cells ([`crate::dataflow::rows`]), and
//! the sinks write the text on their own threads.

use std::sync::Arc;

use kflow_jobs::{AggregatePlan, Value};

use super::aggregate::Partial;
use crate::dataflow::json;
use crate::dataflow::key;
use crate::dataflow::metrics::LocalCounts;
use crate::dataflow::position::{Position, RawRecord, Stamp};
use crate::dataflow::route::Router;
use crate::dataflow::row::{MappedRow, SlotMap};
use crate::dataflow::rows::{Cell, RowFormat};
use crate::error::EngineError;

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
    text: RowText,
    /// The window's start and end as RFC 3339 text, for rows that go on
    /// to filters and windows (formatted once per window, not per row).
    times: (String, String),
    times_of: Option<(i64, i64)>,
    line: Vec<u8>,
    /// The row's partition key (its key columns, `|`-separated), written
    /// only when a sink on a route partitions its rows.
    partition_key: Vec<u8>,
    /// The allocation each row's values are built in.
    values: Vec<Value<'static>>,
}

/// How a result row is written as JSON text here, for routes that read
/// text other than straight to a sink (those write it themselves).
struct RowText {
    format: Arc<RowFormat>,
    /// `{"window_start":"…","window_end":"…"` of the window being fired.
    prefix: Vec<u8>,
    prefix_of: Option<(i64, i64)>,
    /// The row's cells, and the text of those that are JSON already.
    cells: Vec<Cell>,
    cell_text: Vec<u8>,
}

impl RowText {
    /// Makes rows of window `[start, end)` next.
    fn set_window(&mut self, start: i64, end: i64) {
        if self.prefix_of != Some((start, end)) {
            self.prefix.clear();
            RowFormat::write_prefix(&mut self.prefix, start, end);
            self.prefix_of = Some((start, end));
        }
    }

    /// Writes the row of `key` and `partial` to `line`.
    fn write(
        &mut self,
        line: &mut Vec<u8>,
        key: &[u8],
        aggregates: &[AggregatePlan],
        partial: &Partial,
    ) {
        self.cells.clear();
        self.cell_text.clear();
        push_cells(&mut self.cells, &mut self.cell_text, aggregates, partial);
        self.format
            .write(line, &self.prefix, key, &self.cells, &self.cell_text);
    }
}

/// Pushes the cells of `partial`'s aggregates.
fn push_cells(
    cells: &mut Vec<Cell>,
    text: &mut Vec<u8>,
    aggregates: &[AggregatePlan],
    partial: &Partial,
) {
    cells.extend(
        aggregates
            .iter()
            .zip(partial.0.iter())
            .map(|(a, acc)| acc.cell(a.function, text)),
    );
}

/// An empty vector with `values`' allocation, for values of another
/// lifetime (the in-place `collect` of an empty iterator keeps it).
fn recycle<'a, 'b>(mut values: Vec<Value<'a>>) -> Vec<Value<'b>> {
    values.clear();
    values.into_iter().map(|_| Value::Null).collect()
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
        let format = RowFormat::new(
            key_names.iter().map(String::as_str),
            aggregates.iter().map(|a| a.name.as_str()),
        );
        let text = RowText {
            format: Arc::new(format),
            prefix: Vec::new(),
            prefix_of: None,
            cells: Vec::new(),
            cell_text: Vec::new(),
        };
        ResultEmitter {
            name,
            key_names,
            aggregates,
            router,
            columns,
            text,
            times: (String::new(), String::new()),
            times_of: None,
            line: Vec::new(),
            partition_key: Vec::new(),
            values: Vec::new(),
        }
    }

    /// Writes one result row and routes it: its text only when a route
    /// stores text, its values only when a route reads them.
    pub(super) fn emit(
        &mut self,
        start: i64,
        end: i64,
        key: &[u8],
        partial: &Partial,
        watermark: i64,
        counts: &mut LocalCounts,
    ) -> Result<(), EngineError> {
        counts.rows_emitted += 1;
        if !self.router.has_routes() {
            return Ok(());
        }
        if self.router.sinks_only() {
            // The sinks write the text on their own threads.
            let aggregates = &self.aggregates;
            return self.router.push_rows(
                &self.text.format,
                (start, end),
                key,
                &mut |cells, text| push_cells(cells, text, aggregates, partial),
            );
        }
        self.text.set_window(start, end);
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        if self.router.reads_text() {
            self.text.write(&mut line, key, &self.aggregates, partial);
        }
        let position = Position::Window { window: &self.name };
        let wants_key = self.router.wants_keys();
        if wants_key {
            self.partition_key.clear();
            key::write_partition_key(key, &mut self.partition_key);
        }
        let mut values: Vec<Value<'_>> = recycle(std::mem::take(&mut self.values));
        let no_columns = SlotMap::default();
        let map = if self.router.reads_rows() {
            if self.times_of != Some((start, end)) {
                self.times = (json::format_time(start), json::format_time(end));
                self.times_of = Some((start, end));
            }
            values.push(Value::Str(self.times.0.as_str().into()));
            values.push(Value::Str(self.times.1.as_str().into()));
            let mut rest = key;
            while let Some(value) = key::next_value(&mut rest) {
                values.push(value);
            }
            values.extend(
                self.aggregates
                    .iter()
                    .zip(partial.0.iter())
                    .map(|(a, acc)| acc.value(a.function)),
            );
            &self.columns
        } else {
            &no_columns
        };
        let row = MappedRow {
            values: &values,
            map,
        };
        let record = RawRecord {
            text: &line,
            position,
            key: wants_key.then_some(&self.partition_key[..]),
        };
        let stamp = Stamp {
            time: end - 1,
            watermark,
        };
        let (text, aggregates) = (&mut self.text, &self.aggregates);
        let routed = self
            .router
            .route_untexted(&row, record, stamp, counts, &mut |out| {
                text.write(out, key, aggregates, partial)
            });
        self.values = recycle(values);
        self.line = line;
        routed
    }
}
