//! Writing a fired window's result rows and routing them downstream.
//!
//! A result row is written once as JSON text (what sinks store) and, only
//! when something downstream reads the window, also as values that filters
//! and windows of windows can evaluate.

use kflow_jobs::{AggregatePlan, Value};

use super::aggregate::Partial;
use crate::dataflow::json;
use crate::dataflow::key;
use crate::dataflow::metrics::LocalCounts;
use crate::dataflow::position::{Position, RawRecord, Stamp};
use crate::dataflow::route::Router;
use crate::dataflow::row::{MappedRow, SlotMap};
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
    /// `,"name":` of each key column, then of each aggregate.
    labels: Vec<Vec<u8>>,
    /// `{"window_start":"…","window_end":"…"` of the window being fired.
    prefix: Vec<u8>,
    prefix_of: Option<(i64, i64)>,
    /// The window's start and end as RFC 3339 text, for rows that go on
    /// to filters and windows (formatted once per window, not per row).
    times: (String, String),
    times_of: Option<(i64, i64)>,
    line: Vec<u8>,
    /// The row's partition key (its key columns, `|`-separated), written
    /// only when a sink on a route partitions its rows.
    partition_key: Vec<u8>,
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
        let labels = key_names
            .iter()
            .chain(aggregates.iter().map(|a| &a.name))
            .map(|name| {
                let mut label = vec![b','];
                json::write_str(&mut label, name);
                label.push(b':');
                label
            })
            .collect();
        ResultEmitter {
            name,
            key_names,
            aggregates,
            router,
            columns,
            labels,
            prefix: Vec::new(),
            prefix_of: None,
            times: (String::new(), String::new()),
            times_of: None,
            line: Vec::new(),
            partition_key: Vec::new(),
        }
    }

    /// Writes one result row and routes it. The row's text is written
    /// straight from the key bytes and the partial; values for downstream
    /// filters and windows are built only when a route reads them.
    pub(super) fn emit(
        &mut self,
        start: i64,
        end: i64,
        key: &[u8],
        partial: &Partial,
        watermark: i64,
        counts: &mut LocalCounts,
    ) -> Result<(), EngineError> {
        if self.prefix_of != Some((start, end)) {
            self.prefix.clear();
            self.prefix.extend_from_slice(b"{\"window_start\":");
            json::write_time(&mut self.prefix, start);
            self.prefix.extend_from_slice(b",\"window_end\":");
            json::write_time(&mut self.prefix, end);
            self.prefix_of = Some((start, end));
        }
        let line = &mut self.line;
        line.clear();
        line.extend_from_slice(&self.prefix);
        let (key_labels, aggregate_labels) = self.labels.split_at(self.key_names.len());
        let mut rest = key;
        for label in key_labels {
            // Corrupt key bytes (never written by kflow) leave the column out.
            let Some(value) = key::next_value(&mut rest) else {
                break;
            };
            line.extend_from_slice(label);
            json::write_value(line, &value);
        }
        for ((label, a), acc) in aggregate_labels
            .iter()
            .zip(&self.aggregates)
            .zip(partial.0.iter())
        {
            line.extend_from_slice(label);
            acc.write_json(a.function, line);
        }
        line.push(b'}');
        counts.rows_emitted += 1;
        if !self.router.has_routes() {
            return Ok(());
        }
        let position = Position::Window { window: &self.name };
        let wants_key = self.router.wants_keys();
        if wants_key {
            self.partition_key.clear();
            key::write_partition_key(key, &mut self.partition_key);
        }
        let line = std::mem::take(&mut self.line);
        // Only filters and windows read values; a sink takes the text.
        let mut values: Vec<Value<'_>> = Vec::new();
        let no_columns = SlotMap::default();
        let map = if self.router.reads_rows() {
            if self.times_of != Some((start, end)) {
                self.times = (json::format_time(start), json::format_time(end));
                self.times_of = Some((start, end));
            }
            values.reserve(2 + self.key_names.len() + self.aggregates.len());
            values.push(Value::Str(self.times.0.as_str().into()));
            values.push(Value::Str(self.times.1.as_str().into()));
            values.extend(key::decode_values(key).unwrap_or_default());
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
        let routed = self.router.route(&row, record, stamp, counts);
        self.line = line;
        routed
    }
}
