//! The Kinesis sink: each row becomes one Kinesis record, partitioned by
//! the row's window key, carrying a deterministic `result_id`.
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
    key_columns: Vec<String>,
}

impl KinesisWriter {
    /// A writer for sink `name` putting to `stream`, keyed by
    /// `key_columns` (the window key; none: the result id).
    ///
    /// # Errors
    /// [`EngineError::Kinesis`] when the runtime cannot start.
    pub fn new(
        name: String,
        stream: String,
        endpoint: &Endpoint,
        key_columns: Vec<String>,
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
            key_columns,
        })
    }

    fn error(&self, source: AwsError) -> EngineError {
        EngineError::Kinesis {
            what: "sink",
            name: self.name.clone(),
            source,
        }
    }

    fn entry(&self, line: &[u8]) -> PutEntry {
        let id = xxhash_rust::xxh3::xxh3_128(line);
        let mut result_id = String::with_capacity(32);
        let _ = write!(result_id, "{id:032x}");
        let key = match serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(line) {
            Ok(row) if !self.key_columns.is_empty() => {
                let parts: Vec<String> = self
                    .key_columns
                    .iter()
                    .map(|c| match row.get(c) {
                        Some(serde_json::Value::String(s)) => s.clone(),
                        Some(v) => v.to_string(),
                        None => String::new(),
                    })
                    .collect();
                parts.join("|")
            }
            _ => result_id.clone(),
        };
        let key = if key.is_empty() || key.chars().count() > 256 {
            result_id.clone()
        } else {
            key
        };
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
        PutEntry { key, data }
    }
}

impl LineWriter for KinesisWriter {
    fn write(&mut self, lines: &[u8]) -> Result<(), EngineError> {
        for line in lines.split(|&b| b == b'\n') {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let entry = self.entry(line);
            self.putter.push(entry).map_err(|e| self.error(e))?;
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
        let endpoint = Endpoint {
            region: Some("us-east-1".into()),
            url: Some("http://127.0.0.1:9".into()),
        };
        let w = KinesisWriter::new("s".into(), "stream".into(), &endpoint, vec!["user".into()])
            .unwrap();
        let line = br#"{"window_start":"a","window_end":"b","user":"u1","n":3}"#;
        let a = w.entry(line);
        let b = w.entry(line);
        assert_eq!(a.key, "u1");
        assert_eq!(a.data, b.data);
        let row: serde_json::Value = serde_json::from_slice(&a.data).unwrap();
        assert_eq!(row["n"], 3);
        assert_eq!(row["result_id"].as_str().unwrap().len(), 32);
        let other = w.entry(br#"{"window_start":"a","window_end":"b","user":"u1","n":4}"#);
        assert_ne!(other.data, a.data);
    }
}
