//! Result rows on their way to a sink, not yet written as text.
//!
//! A window that feeds only sinks hands them each row as its key bytes and
//! its final aggregate values ([`Cell`]s); the sink's thread writes the
//! JSON line. Writing numbers is most of the cost of a result row, and the
//! window's thread is the busiest of a job with many result rows (W2 of
//! the benchmarks writes 5M), while its sink's thread only moves bytes.
//! The text is the same either way: a window whose rows are also read by
//! filters or windows writes them with the same [`RowFormat`].
//!
//! An emptied batch goes back to its emitter over a small channel to be
//! filled again, so a steady stream of rows allocates nothing.

use std::sync::Arc;
use std::time::Instant;

use async_channel::Sender;
use kflow_jobs::Value;

use crate::dataflow::json;
use crate::dataflow::key;
use crate::dataflow::message::Lines;
use crate::dataflow::round::write_rounded;

/// How a window's result rows are written as JSON text.
#[derive(Debug)]
pub struct RowFormat {
    /// `,"name":` of each key column, then of each aggregate.
    labels: Vec<Vec<u8>>,
    /// How many of `labels` are key columns.
    keys: usize,
}

impl RowFormat {
    /// The format of rows with key columns `key_names` and aggregates
    /// `aggregate_names`, in that order.
    pub fn new<'a>(
        key_names: impl IntoIterator<Item = &'a str>,
        aggregate_names: impl IntoIterator<Item = &'a str>,
    ) -> RowFormat {
        let label = |name: &str| {
            let mut label = vec![b','];
            json::write_str(&mut label, name);
            label.push(b':');
            label
        };
        let mut labels: Vec<Vec<u8>> = key_names.into_iter().map(label).collect();
        let keys = labels.len();
        labels.extend(aggregate_names.into_iter().map(label));
        RowFormat { labels, keys }
    }

    /// Writes the start of every row of window `[start, end)`:
    /// `{"window_start":"…","window_end":"…"`.
    pub fn write_prefix(out: &mut Vec<u8>, start: i64, end: i64) {
        out.extend_from_slice(b"{\"window_start\":");
        json::write_time(out, start);
        out.extend_from_slice(b",\"window_end\":");
        json::write_time(out, end);
    }

    /// Writes one row: `prefix` (see [`RowFormat::write_prefix`]), the key
    /// columns decoded from `key`, then `cells` (whose JSON text, if any, is
    /// in `text`).
    pub fn write(
        &self,
        line: &mut Vec<u8>,
        prefix: &[u8],
        key: &[u8],
        cells: &[Cell],
        text: &[u8],
    ) {
        line.extend_from_slice(prefix);
        let (key_labels, aggregate_labels) = self.labels.split_at(self.keys);
        let mut rest = key;
        for label in key_labels {
            // Corrupt key bytes (never written by kflow) leave the column out.
            let Some(value) = key::next_value(&mut rest) else {
                break;
            };
            line.extend_from_slice(label);
            json::write_value(line, &value);
        }
        for (label, cell) in aggregate_labels.iter().zip(cells) {
            line.extend_from_slice(label);
            cell.write(line, text);
        }
        line.push(b'}');
    }

    /// How many aggregate columns a row has.
    pub fn aggregates(&self) -> usize {
        self.labels.len() - self.keys
    }
}

/// One aggregate's final value, as a row carries it to its sink.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell {
    /// A number, written as `json::write_value` writes `Value::Num`.
    Num(f64),
    /// A sum or mean, written rounded to the 15 significant digits an f64
    /// sum holds ([`write_rounded`]).
    Rounded(f64),
    /// Anything else, already JSON: `text[start..end]` of its batch.
    Json(u32, u32),
}

impl Cell {
    /// Writes the cell as JSON; `text` holds the text of [`Cell::Json`]
    /// cells.
    pub fn write(&self, out: &mut Vec<u8>, text: &[u8]) {
        match *self {
            Cell::Num(v) => json::write_value(out, &Value::Num(v)),
            Cell::Rounded(v) => write_rounded(out, v),
            Cell::Json(start, end) => {
                out.extend_from_slice(text.get(start as usize..end as usize).unwrap_or(b"null"));
            }
        }
    }

    /// A [`Cell::Json`] of what `write` appends to `text`.
    pub fn json(text: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) -> Cell {
        let start = text.len() as u32;
        write(text);
        Cell::Json(start, text.len() as u32)
    }
}

/// Rows of one window in a run: `rows` rows of window `[start, end)`.
#[derive(Debug, Clone, Copy)]
struct Run {
    start: i64,
    end: i64,
    rows: u32,
}

/// A batch of result rows for one sink, in the order they fired.
#[derive(Debug)]
pub struct Rows {
    /// How they are written.
    pub format: Arc<RowFormat>,
    /// Whether the sink wants each line's partition key (its key columns).
    pub keyed: bool,
    /// When the input that fired the oldest row was read.
    pub origin: Option<Instant>,
    runs: Vec<Run>,
    /// Encoded keys, concatenated; `key_ends[i]` ends row `i`'s.
    keys: Vec<u8>,
    key_ends: Vec<u32>,
    /// [`RowFormat::aggregates`] cells per row.
    cells: Vec<Cell>,
    /// The text of the [`Cell::Json`] cells.
    text: Vec<u8>,
    /// Where the batch goes once written, to be filled again.
    spare: Option<Sender<Rows>>,
}

impl Rows {
    /// An empty batch that goes back to `spare` once written.
    pub fn new(format: Arc<RowFormat>, keyed: bool, spare: Option<Sender<Rows>>) -> Rows {
        Rows {
            format,
            keyed,
            origin: None,
            runs: Vec::new(),
            keys: Vec::new(),
            key_ends: Vec::new(),
            cells: Vec::new(),
            text: Vec::new(),
            spare,
        }
    }

    /// How many rows the batch holds.
    pub fn len(&self) -> usize {
        self.key_ends.len()
    }

    /// Whether the batch holds no rows.
    pub fn is_empty(&self) -> bool {
        self.key_ends.is_empty()
    }

    /// About as many bytes as the batch's rows take as text: what it is
    /// sent at, like a batch of lines.
    pub fn size(&self) -> usize {
        // A row's window times, labels and punctuation take ~64 bytes, a
        // number ~8.
        self.keys.len() + self.text.len() + self.len() * 64 + self.cells.len() * 8
    }

    /// Appends the row of `key` in window `[start, end)`, its cells pushed
    /// by `cells` (with the text of any [`Cell::Json`]).
    pub fn push(
        &mut self,
        start: i64,
        end: i64,
        key: &[u8],
        cells: &mut dyn FnMut(&mut Vec<Cell>, &mut Vec<u8>),
    ) {
        match self.runs.last_mut() {
            Some(run) if run.start == start && run.end == end => run.rows += 1,
            _ => self.runs.push(Run {
                start,
                end,
                rows: 1,
            }),
        }
        self.keys.extend_from_slice(key);
        self.key_ends.push(self.keys.len() as u32);
        let before = self.cells.len();
        cells(&mut self.cells, &mut self.text);
        // Exactly one cell per aggregate, whatever `cells` pushed (a
        // missing one is written `null`).
        self.cells
            .resize(before + self.format.aggregates(), Cell::Num(f64::NAN));
    }

    /// Appends the rows to `lines` as JSON lines (with their partition
    /// keys when the sink wants them).
    pub fn render(&self, lines: &mut Lines) {
        let width = self.format.aggregates();
        let mut prefix = Vec::new();
        let mut row = 0;
        let mut key_start = 0;
        for run in &self.runs {
            prefix.clear();
            RowFormat::write_prefix(&mut prefix, run.start, run.end);
            for _ in 0..run.rows {
                let key_end = self.key_ends[row] as usize;
                let key = &self.keys[key_start..key_end];
                let cells = &self.cells[row * width..(row + 1) * width];
                self.format
                    .write(&mut lines.text, &prefix, key, cells, &self.text);
                lines.text.push(b'\n');
                if self.keyed {
                    key::write_partition_key(key, &mut lines.keys);
                    lines.key_ends.push(lines.keys.len() as u32);
                }
                key_start = key_end;
                row += 1;
            }
        }
        if lines.origin.is_none() {
            lines.origin = self.origin;
        }
    }

    /// Empties the batch and hands it back to its emitter (dropped when
    /// the emitter has spares enough, or is gone).
    pub fn recycle(mut self) {
        self.origin = None;
        self.runs.clear();
        self.keys.clear();
        self.key_ends.clear();
        self.cells.clear();
        self.text.clear();
        if let Some(spare) = self.spare.clone() {
            let _ = spare.try_send(self);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn key_of(values: &[Value<'_>]) -> Vec<u8> {
        let mut out = Vec::new();
        for v in values {
            key::encode_value(v, &mut out).unwrap();
        }
        out
    }

    #[test]
    fn renders_rows_as_the_window_would_write_them() {
        let format = Arc::new(RowFormat::new(["user"], ["events", "revenue", "top"]));
        let (spare_tx, spare_rx) = async_channel::bounded(1);
        let mut rows = Rows::new(format.clone(), true, Some(spare_tx));
        let (ann, bob) = (
            key_of(&[Value::Str("ann".into())]),
            key_of(&[Value::Str("bob".into())]),
        );
        rows.push(0, 60_000, &ann, &mut |cells, text| {
            cells.push(Cell::Num(2.0));
            cells.push(Cell::Rounded(0.1 + 0.2));
            cells.push(Cell::json(text, |t| t.extend_from_slice(b"[\"a\"]")));
        });
        rows.push(60_000, 120_000, &bob, &mut |cells, _| {
            cells.push(Cell::Num(1.5));
            cells.push(Cell::Rounded(7.0));
            // One cell short: the row still has three.
        });
        assert_eq!(rows.len(), 2);
        let mut lines = Lines::default();
        rows.render(&mut lines);
        let text = String::from_utf8(lines.text.clone()).unwrap();
        assert_eq!(
            text,
            "{\"window_start\":\"1970-01-01T00:00:00Z\",\"window_end\":\"1970-01-01T00:01:00Z\",\
             \"user\":\"ann\",\"events\":2,\"revenue\":0.3,\"top\":[\"a\"]}\n\
             {\"window_start\":\"1970-01-01T00:01:00Z\",\"window_end\":\"1970-01-01T00:02:00Z\",\
             \"user\":\"bob\",\"events\":1.5,\"revenue\":7,\"top\":null}\n"
        );
        let keys: Vec<_> = lines.rows().filter_map(|(_, k)| k).collect();
        assert_eq!(keys, [b"ann".as_slice(), b"bob".as_slice()]);
        // The text of one row is what `RowFormat::write` gives on its own.
        let mut one = Vec::new();
        let mut prefix = Vec::new();
        RowFormat::write_prefix(&mut prefix, 0, 60_000);
        let mut cells_text = Vec::new();
        let cells = [
            Cell::Num(2.0),
            Cell::Rounded(0.1 + 0.2),
            Cell::json(&mut cells_text, |t| t.extend_from_slice(b"[\"a\"]")),
        ];
        format.write(&mut one, &prefix, &ann, &cells, &cells_text);
        assert_eq!(one, text.lines().next().unwrap().as_bytes());
        rows.recycle();
        let again = spare_rx.try_recv().unwrap();
        assert!(again.is_empty() && again.text.is_empty() && again.runs.is_empty());
    }
}
