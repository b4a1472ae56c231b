//! Where a record came from: a file line, a Kinesis record (and its user
//! record inside a KPL aggregate), or a window's result. Error rows and the
//! dead-letter file carry it, so a bad record can be found at its source.

use crate::dataflow::json;

/// Where a record came from, for error reports.
#[derive(Debug, Clone, Copy)]
pub enum Position<'a> {
    /// Line `line` (1-based) of `file` (as the job names it).
    File {
        /// The path as written in the job file.
        file: &'a str,
        /// 1-based line number.
        line: u64,
    },
    /// A record of a Kinesis shard (`subsequence` inside a KPL aggregate).
    Shard {
        /// Shard id.
        shard: &'a str,
        /// Sequence number.
        sequence: &'a str,
        /// Subsequence number, for de-aggregated user records.
        subsequence: Option<u64>,
    },
    /// A result row of a window.
    Window {
        /// The window's name.
        window: &'a str,
    },
}

impl Position<'_> {
    /// Writes the position as a JSON object (the `position` of an error row).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            Position::File { file, line } => {
                out.extend_from_slice(b"{\"file\":");
                json::write_str(out, file);
                out.extend_from_slice(b",\"line\":");
                json::write_u64(out, *line);
                out.push(b'}');
            }
            Position::Shard {
                shard,
                sequence,
                subsequence,
            } => {
                out.extend_from_slice(b"{\"shard\":");
                json::write_str(out, shard);
                out.extend_from_slice(b",\"sequence\":");
                json::write_str(out, sequence);
                if let Some(sub) = subsequence {
                    out.extend_from_slice(b",\"subsequence\":");
                    json::write_u64(out, *sub);
                }
                out.push(b'}');
            }
            Position::Window { window } => {
                out.extend_from_slice(b"{\"window\":");
                json::write_str(out, window);
                out.push(b'}');
            }
        }
    }
}

/// A record as an emitter handles it: its original text and where it came
/// from (what an error row reports).
#[derive(Debug, Clone, Copy)]
pub struct RawRecord<'a> {
    /// The record's text (a JSON line, a Kinesis user record, a result row).
    pub text: &'a [u8],
    /// Where it came from.
    pub position: Position<'a>,
    /// Its partition key for a sink that partitions (a result row's window
    /// key); `None`: the sink picks one.
    pub key: Option<&'a [u8]>,
}

/// A record's place in event time: its time and the emitter's watermark
/// before it.
#[derive(Debug, Clone, Copy)]
pub struct Stamp {
    /// Event time, epoch ms (a source without an event-time field gives
    /// the arrival time).
    pub time: i64,
    /// The emitter's watermark before this record.
    pub watermark: i64,
}
