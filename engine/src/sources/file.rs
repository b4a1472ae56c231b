//! The file source: JSON lines read in large blocks, decoded, time-stamped
//! and routed.
//!
//! The file is read in blocks of a few MiB; every complete line of a block is
//! decoded in place (strings borrow from the block), so the per-record path
//! allocates nothing. With `follow = false` the end of the file ends the
//! source (its watermark jumps to +infinity downstream); with `follow = true`
//! the source keeps polling for appended lines.

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kflow_jobs::{FieldId, Value};

use crate::error::EngineError;
use crate::metrics::{LocalCounts, Metrics};
use crate::runtime::route::{Position, Router};
use crate::runtime::row::{MappedRow, SlotMap};
use crate::sources::decode::Projection;
use crate::sources::time::{event_time, TimeError};

const BLOCK: usize = 4 << 20;
const PUBLISH_EVERY: u64 = 1024;
const POLL: Duration = Duration::from_millis(50);

/// One file source task.
pub struct FileSourceTask {
    /// Source name.
    pub name: String,
    /// Resolved path to read.
    pub path: PathBuf,
    /// The path as the job file names it (for error positions).
    pub display_path: String,
    /// Tail the file instead of ending at its end.
    pub follow: bool,
    /// Fields to decode.
    pub projection: Projection,
    /// Field id -> slot.
    pub slots: SlotMap,
    /// The event-time field and its name, or `None` for arrival time.
    pub event_time: Option<(FieldId, String)>,
    /// Watermark lag behind the maximum event time.
    pub max_out_of_orderness_ms: i64,
    /// When to declare the source idle while following.
    pub idle_timeout: Option<Duration>,
    /// Where records go.
    pub router: Router,
    /// Shared counters.
    pub metrics: Arc<Metrics>,
}

struct Clock {
    max_time: i64,
    lag: i64,
}

impl Clock {
    fn watermark(&self) -> i64 {
        if self.max_time == i64::MIN {
            i64::MIN
        } else {
            self.max_time.saturating_sub(self.lag)
        }
    }
}

impl FileSourceTask {
    fn io(&self, source: std::io::Error) -> EngineError {
        EngineError::SourceIo { name: self.name.clone(), path: self.path.clone(), source }
    }

    /// Reads the file to its end (or forever when following).
    ///
    /// # Errors
    /// I/O errors reading the file, or a lost downstream task.
    pub fn run(mut self) -> Result<(), EngineError> {
        let mut file = File::open(&self.path).map_err(|e| self.io(e))?;
        let mut buf: Vec<u8> = Vec::with_capacity(BLOCK);
        let mut clock = Clock { max_time: i64::MIN, lag: self.max_out_of_orderness_ms };
        let mut counts = LocalCounts::default();
        let mut line_no: u64 = 0;
        let mut last_data = Instant::now();
        let mut idle = false;
        loop {
            let filled = buf.len();
            buf.resize(filled.max(BLOCK / 2) + BLOCK / 2, 0);
            let n = file.read(&mut buf[filled..]).map_err(|e| self.io(e))?;
            buf.truncate(filled + n);
            if n == 0 {
                if self.follow {
                    self.router.flush(clock.watermark())?;
                    counts.publish(&self.metrics);
                    if let Some(timeout) = self.idle_timeout {
                        if !idle && last_data.elapsed() >= timeout {
                            self.router.idle(clock.watermark())?;
                            idle = true;
                        }
                    }
                    std::thread::sleep(POLL);
                    continue;
                }
                // The last line may lack its newline.
                if !buf.is_empty() {
                    buf.push(b'\n');
                    self.process(&buf, &mut line_no, &mut clock, &mut counts)?;
                }
                break;
            }
            last_data = Instant::now();
            idle = false;
            let Some(last_newline) = buf.iter().rposition(|&b| b == b'\n') else {
                continue;
            };
            self.process(&buf[..=last_newline], &mut line_no, &mut clock, &mut counts)?;
            buf.drain(..=last_newline);
        }
        self.router.end(i64::MAX)?;
        counts.publish(&self.metrics);
        Ok(())
    }

    /// Decodes and routes every line of `block` (which ends with `\n`).
    fn process(
        &mut self,
        block: &[u8],
        line_no: &mut u64,
        clock: &mut Clock,
        counts: &mut LocalCounts,
    ) -> Result<(), EngineError> {
        let mut values: Vec<Value<'_>> = vec![Value::Null; self.projection.slots()];
        for line in block.split(|&b| b == b'\n') {
            *line_no += 1;
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            counts.read += 1;
            let position = Position::File { file: &self.display_path, line: *line_no };
            if let Err(e) = self.projection.decode(line, &mut values) {
                self.router.error(&e.0, position, line, counts)?;
                continue;
            }
            let row = MappedRow { values: &values, map: &self.slots };
            let time = match &self.event_time {
                None => arrival_time(),
                Some((field, name)) => match event_time(kflow_jobs::Row::field(&row, *field)) {
                    Ok(t) => t,
                    Err(e) => {
                        let reason = time_reason(e, name);
                        self.router.error(&reason, position, line, counts)?;
                        continue;
                    }
                },
            };
            counts.decoded += 1;
            self.router.route(&row, time, clock.watermark(), line, position, counts)?;
            clock.max_time = clock.max_time.max(time);
            if counts.read >= PUBLISH_EVERY {
                self.router.flush(clock.watermark())?;
                counts.publish(&self.metrics);
            }
        }
        // The split above yields one empty piece after the final newline.
        *line_no -= 1;
        Ok(())
    }
}

fn time_reason(e: TimeError, field: &str) -> String {
    match e {
        TimeError::Missing => format!("missing event time field `{field}`"),
        TimeError::BadString => format!("event time field `{field}` is not an RFC 3339 time"),
        TimeError::WrongType(t) => {
            format!("event time field `{field}` is a {t}, expected an RFC 3339 string or epoch milliseconds")
        }
    }
}

fn arrival_time() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
