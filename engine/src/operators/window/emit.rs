//! Writing a fired window's result rows and routing them downstream.
//!
//! A result row is written once as JSON text (what sinks store) and, only
//! when something downstream reads the window, also as values that filters
//! and windows of windows can evaluate.

use kflow_jobs::{AggregatePlan, Value};

use super::aggregate::Partial;
use super::key;
use crate::error::EngineError;
use crate::json;
use crate::metrics::LocalCounts;
use crate::runtime::route::{Position, Router};
use crate::runtime::row::{MappedRow, SlotMap};

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
        ResultEmitter {
            name,
            key_names,
            aggregates,
            router,
            columns,
            line: Vec::new(),
        }
    }

    pub(super) fn emit(
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
            let row = MappedRow {
                values: &values,
                map: &self.columns,
            };
            let position = Position::Window { window: &self.name };
            let line = std::mem::take(&mut self.line);
            let routed = self
                .router
                .route(&row, end - 1, watermark, &line, position, counts);
            self.line = line;
            routed?;
        }
        Ok(())
    }
}
