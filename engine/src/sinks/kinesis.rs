//! The Kinesis sink: each row becomes one Kinesis record, partitioned by
//! the key its emitter hands over with it (a window row's key columns,
//! `|`-separated), carrying a deterministic `result_id`. Rows without a key
//! (a source's records, a window without key columns) are partitioned by
//! their `result_id`.
//!
//! A Kinesis stream cannot take records back, so this sink is at-least-once:
//! rows written after the last checkpoint are written again after a crash.
//! Every row gets `"result_id"`, a 128-bit hash of the row as emitted (the
//! window, its bounds, the key and the values), so a consumer can drop the
//! repeats. At each checkpoint the sink waits until every queued row is
//! written (partial failures retried, per-key order kept; see
//! [`crate::aws::put`]).

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::{Committed, LineWriter};
use crate::aws::put::{PutEntry, Putter};
use crate::aws::{connect, AwsError, Endpoint, StreamId};
use crate::dataflow::message::Lines;
use crate::error::EngineError;

/// What a Kinesis sink has put (informational: a stream cannot take
/// records back).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KinesisSinkPosition {
    /// Rows put and acknowledged.
    #[serde(alias = "length")]
    pub rows: u64,
}

/// Writes rows to a Kinesis stream.
pub struct KinesisWriter {
    name: String,
    runtime: tokio::runtime::Runtime,
    putter: Putter,
}

impl KinesisWriter {
    /// A writer for sink `name` putting to `stream`.
    ///
    /// # Errors
    /// [`EngineError::Kinesis`] when the runtime cannot start.
    pub fn new(
        name: String,
        stream: String,
        endpoint: &Endpoint,
    ) -> Result<KinesisWriter, EngineError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| EngineError::Kinesis {
                what: "sink",
                name: name.clone(),
                source: AwsError::Runtime(e),
            })?;
        let client = runtime.block_on(connect(endpoint));
        Ok(KinesisWriter {
            name,
            runtime,
            putter: Putter::new(client, StreamId::parse(&stream)),
        })
    }

    fn error(&self, source: AwsError) -> EngineError {
        EngineError::Kinesis {
            what: "sink",
            name: self.name.clone(),
            source,
        }
    }

    /// The record for one row: the row with its `result_id`, under the
    /// emitter's partition key (the result id when there is none, or when
    /// it is not a valid Kinesis key of 1 to 256 characters).
    fn entry(line: &[u8], key: Option<&[u8]>) -> PutEntry {
        let id = xxhash_rust::xxh3::xxh3_128(line);
        let mut result_id = String::with_capacity(32);
        let _ = write!(result_id, "{id:032x}");
        let key = key
            .map(String::from_utf8_lossy)
            .filter(|k| !k.is_empty() && k.chars().count() <= 256)
            .map_or_else(|| result_id.clone(), |k| k.into_owned());
        let mut data = Vec::with_capacity(line.len() + 48);
        match line.iter().rposition(|&b| b == b'}') {
            Some(close) => {
                data.extend_from_slice(&line[..close]);
                let empty = line[..close]
                    .iter()
                    .all(|b| b.is_ascii_whitespace() || *b == b'{');
                if !empty {
                    data.push(b',');
                }
                data.extend_from_slice(b"\"result_id\":\"");
                data.extend_from_slice(result_id.as_bytes());
                data.extend_from_slice(b"\"}");
            }
            None => data.extend_from_slice(line),
        }
        PutEntry {
            key,
            explicit_hash_key: None,
            data,
        }
    }
}

impl LineWriter for KinesisWriter {
    fn write(&mut self, lines: &Lines) -> Result<(), EngineError> {
        for (line, key) in lines.rows() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            self.putter
                .push(Self::entry(line, key))
                .map_err(|e| self.error(e))?;
            while self.putter.batch_ready() {
                let result = self.runtime.block_on(self.putter.send_batch());
                result.map_err(|e| self.error(e))?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), EngineError> {
        Ok(())
    }

    fn retries(&self) -> (u64, u64) {
        let stats = self.putter.stats();
        (stats.throttles, stats.retries)
    }

    fn commit(&mut self) -> Result<Committed, EngineError> {
        let result = self.runtime.block_on(self.putter.flush());
        result.map_err(|e| self.error(e))?;
        let position = KinesisSinkPosition {
            rows: self.putter.stats().records,
        };
        Committed::new(&self.name, &position, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_get_a_deterministic_result_id_and_their_key() {
        let line = br#"{"window_start":"a","window_end":"b","user":"u1","n":3}"#;
        let a = KinesisWriter::entry(line, Some(b"u1"));
        let b = KinesisWriter::entry(line, Some(b"u1"));
        assert_eq!(a.key, "u1");
        assert_eq!(a.data, b.data);
        let row: serde_json::Value = serde_json::from_slice(&a.data).unwrap();
        assert_eq!(row["n"], 3);
        let id = row["result_id"].as_str().unwrap();
        assert_eq!(id.len(), 32);
        let other = KinesisWriter::entry(
            br#"{"window_start":"a","window_end":"b","user":"u1","n":4}"#,
            None,
        );
        assert_ne!(other.data, a.data);
        // No key: the result id partitions the row.
        let row: serde_json::Value = serde_json::from_slice(&other.data).unwrap();
        assert_eq!(other.key, row["result_id"].as_str().unwrap());
        // An empty or over-long key falls back to the result id too.
        assert_eq!(KinesisWriter::entry(line, Some(b"")).key, id);
        assert_eq!(KinesisWriter::entry(line, Some(&[b'k'; 257])).key, id);
    }

    #[test]
    fn lines_pair_each_row_with_its_key() {
        let lines = Lines {
            text: b"{\"a\":1}\n{\"a\":2}\n".to_vec(),
            keys: b"k1k22".to_vec(),
            key_ends: vec![2, 5],
            origin: None,
        };
        let pairs: Vec<(&[u8], Option<&[u8]>)> = lines.rows().collect();
        assert_eq!(
            pairs,
            [
                (&b"{\"a\":1}"[..], Some(&b"k1"[..])),
                (&b"{\"a\":2}"[..], Some(&b"k22"[..])),
                (&b""[..], None),
            ]
        );
        let plain = Lines::plain(b"x\n".to_vec());
        let plain: Vec<_> = plain.rows().collect();
        assert_eq!(plain, [(&b"x"[..], None), (&b""[..], None)]);
    }
}
