//! `kflow produce`: JSON lines from a file into a Kinesis stream, the way a
//! careful producer writes them.
//!
//! Each line is one record; its partition key is a field of the line (a
//! dotted path; strings as they are, numbers and booleans as JSON text).
//! Records go out in PutRecords batches of up to 500 records / 5 MiB with
//! per-key order kept and partial failures retried (see
//! [`crate::aws::put`]); `--rate` paces them. Lines that are not JSON
//! objects or lack the key field are skipped, counted and reported with
//! their line numbers.

use std::io::{BufRead, BufReader, IsTerminal};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::aws::kinesis::ensure_stream;
use crate::aws::put::{PutEntry, PutStats, Putter};
use crate::aws::{connect, Endpoint};
use crate::aws::{AwsError, StreamId};
use crate::dataflow::metrics::group;

/// What to produce, and where.
#[derive(Debug, Clone)]
pub struct ProduceOptions {
    /// Stream name (or ARN).
    pub stream: String,
    /// The field holding the partition key (dotted path).
    pub partition_key: String,
    /// The JSON-lines file.
    pub file: PathBuf,
    /// Region and endpoint.
    pub endpoint: Endpoint,
    /// Records per second, at most.
    pub rate: Option<f64>,
    /// Show a progress line on stderr (when it is a terminal).
    pub progress: bool,
    /// Create the stream with this many shards when it does not exist.
    pub create_shards: Option<i32>,
}

/// What a produce run did.
#[derive(Debug, Clone, Copy)]
pub struct ProduceSummary {
    /// Calls, records, bytes, retries, throttles.
    pub put: PutStats,
    /// Lines skipped (not a JSON object, or no key field).
    pub skipped: u64,
    /// Wall time.
    pub elapsed: Duration,
}

impl ProduceSummary {
    /// The closing summary block.
    pub fn render(&self, stream: &str) -> String {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        format!(
            "kflow: produced {} records ({} bytes) to `{stream}` in {:.2} s ({} records/s)\n  \
             PutRecords calls {}, entries retried {}, throttled {}, lines skipped {}\n",
            group(self.put.records),
            group(self.put.bytes),
            secs,
            group((self.put.records as f64 / secs) as u64),
            group(self.put.calls),
            group(self.put.retries),
            group(self.put.throttles),
            group(self.skipped),
        )
    }
}

/// Why producing stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    /// The input file could not be read.
    #[error("{path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The service refused the records.
    #[error("putting records")]
    Put(#[from] AwsError),
    /// The stream could not be created (or did not become ACTIVE).
    #[error("creating stream `{stream}`")]
    CreateRefused {
        /// The stream.
        stream: String,
        /// The service's error.
        source: crate::aws::BoxError,
    },
}

/// The partition key of one line, or why it has none.
fn key_of(line: &[u8], path: &[&str]) -> Result<String, String> {
    let value: serde_json::Value =
        serde_json::from_slice(line).map_err(|e| format!("not JSON: {e}"))?;
    if !value.is_object() {
        return Err("not a JSON object".into());
    }
    let mut at = &value;
    for part in path {
        at = at
            .get(part)
            .ok_or_else(|| format!("no field `{}`", path.join(".")))?;
    }
    match at {
        serde_json::Value::String(s) => Ok(s.clone()),
        serde_json::Value::Number(_) | serde_json::Value::Bool(_) => Ok(at.to_string()),
        other => Err(format!(
            "field `{}` is {}, not a string or number",
            path.join("."),
            if other.is_null() {
                "null"
            } else {
                "a structure"
            }
        )),
    }
}

/// Puts every line of the file into the stream.
///
/// # Errors
/// The file cannot be read, or the service refuses the records for good.
pub fn produce(options: &ProduceOptions) -> Result<ProduceSummary, ProduceError> {
    let io = |source| ProduceError::Io {
        path: options.file.clone(),
        source,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io)?;
    let file = std::fs::File::open(&options.file).map_err(io)?;
    let client = runtime.block_on(connect(&options.endpoint));
    if let Some(shards) = options.create_shards {
        runtime
            .block_on(ensure_stream(&client, &options.stream, shards))
            .map_err(|e| ProduceError::CreateRefused {
                stream: options.stream.clone(),
                source: e.into(),
            })?;
    }
    let mut putter = Putter::new(client, StreamId::parse(&options.stream));
    let path: Vec<&str> = options.partition_key.split('.').collect();
    let progress = options.progress && std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut last_progress = Instant::now();
    let mut skipped = 0u64;
    let mut queued = 0u64;
    let reader = BufReader::with_capacity(1 << 20, file);
    for (index, line) in reader.split(b'\n').enumerate() {
        let mut line = line.map_err(io)?;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let key = match key_of(&line, &path) {
            Ok(key) => key,
            Err(reason) => {
                skipped += 1;
                if skipped <= 10 {
                    tracing::warn!(
                        "{}:{}: skipped: {reason}",
                        options.file.display(),
                        index + 1
                    );
                }
                continue;
            }
        };
        if let Err(e) = putter.push(PutEntry {
            key,
            explicit_hash_key: None,
            data: line,
        }) {
            skipped += 1;
            tracing::warn!("{}:{}: skipped: {e}", options.file.display(), index + 1);
            continue;
        }
        queued += 1;
        if let Some(rate) = options.rate.filter(|r| *r > 0.0) {
            let due = started + Duration::from_secs_f64(queued as f64 / rate);
            while Instant::now() < due {
                if putter.pending() > 0 {
                    runtime.block_on(putter.send_batch())?;
                } else {
                    std::thread::sleep(due - Instant::now());
                }
            }
        }
        while putter.batch_ready() {
            runtime.block_on(putter.send_batch())?;
        }
        if progress && last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            let s = putter.stats();
            eprint!(
                "\r\x1b[2K[{:>5.0}s] produced {}  ({}/s)  retried {}  throttled {}",
                started.elapsed().as_secs_f64(),
                group(s.records),
                group((s.records as f64 / started.elapsed().as_secs_f64()) as u64),
                group(s.retries),
                group(s.throttles)
            );
        }
    }
    runtime.block_on(putter.flush())?;
    if progress {
        eprint!("\r\x1b[2K");
    }
    Ok(ProduceSummary {
        put: putter.stats(),
        skipped,
        elapsed: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_keys_come_from_the_named_field() {
        assert_eq!(key_of(br#"{"user":"u1"}"#, &["user"]).unwrap(), "u1");
        assert_eq!(key_of(br#"{"a":{"b":7}}"#, &["a", "b"]).unwrap(), "7");
        assert!(key_of(br#"{"user":null}"#, &["user"]).is_err());
        assert!(key_of(br#"{"x":1}"#, &["user"]).is_err());
        assert!(key_of(b"[1]", &["user"]).is_err());
        assert!(key_of(b"nope", &["user"]).is_err());
    }
}
