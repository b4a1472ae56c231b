//! `kflow top`: a terminal view of a running job, read from its `/status`
//! endpoint once a second: per node records/s in and out, watermark, lag
//! and state, the shards' shares, the heaviest keys, and per window what
//! holds its watermark back and why.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

use crate::dataflow::metrics::group;
use crate::runtime::observe::report::StatusReport;

/// Why `kflow top` could not read the job.
#[derive(Debug, thiserror::Error)]
pub enum TopError {
    /// Nothing listens at the address.
    #[error("cannot reach the job at {addr} (is it running with `[job] metrics` set?)")]
    Connect {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The HTTP exchange failed.
    #[error("reading from http://{addr}")]
    Http {
        /// The address.
        addr: SocketAddr,
        /// What failed.
        source: hyper::Error,
    },
    /// The endpoint answered with an error status.
    #[error("http://{addr}/status answered {status}")]
    Status {
        /// The address.
        addr: SocketAddr,
        /// The HTTP status.
        status: u16,
    },
    /// The answer was not a status document.
    #[error("http://{addr}/status sent an unexpected document")]
    Json {
        /// The address.
        addr: SocketAddr,
        /// The parse error.
        source: serde_json::Error,
    },
    /// The path is not a valid request target.
    #[error("invalid request path `{0}`")]
    Path(String),
    /// The runtime for the request could not start.
    #[error("starting the HTTP client")]
    Runtime(#[source] std::io::Error),
}

/// Reads one status snapshot from the job at `addr`.
///
/// # Errors
/// See [`TopError`].
pub fn fetch(addr: SocketAddr) -> Result<StatusReport, TopError> {
    let (status, body) = get(addr, "/status")?;
    if !(200..300).contains(&status) {
        return Err(TopError::Status { addr, status });
    }
    serde_json::from_slice(&body).map_err(|source| TopError::Json { addr, source })
}

/// `GET path` from `addr`: the status code and the body.
///
/// # Errors
/// See [`TopError`].
pub fn get(addr: SocketAddr, path: &str) -> Result<(u16, Vec<u8>), TopError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(TopError::Runtime)?;
    runtime.block_on(get_async(addr, path))
}

async fn get_async(addr: SocketAddr, path: &str) -> Result<(u16, Vec<u8>), TopError> {
    let connect = tokio::net::TcpStream::connect(addr);
    let stream = tokio::time::timeout(Duration::from_secs(5), connect)
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
        .map_err(|source| TopError::Connect { addr, source })?;
    let http = |source| TopError::Http { addr, source };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(http)?;
    tokio::spawn(connection);
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())
        .map_err(|_| TopError::Path(path.to_string()))?;
    let response = sender.send_request(request).await.map_err(http)?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(http)?
        .to_bytes();
    Ok((status, body.to_vec()))
}

/// Renders a snapshot; `before` (a second or so earlier) gives the rates.
pub fn render(now: &StatusReport, before: Option<&StatusReport>) -> String {
    let mut out = String::new();
    let secs = before.map(|b| ((now.now_ms - b.now_ms) as f64 / 1e3).max(1e-3));
    let rate = |now: u64, then: Option<u64>| match (secs, then) {
        (Some(s), Some(t)) => group((now.saturating_sub(t) as f64 / s) as u64),
        _ => "-".into(),
    };
    header(&mut out, now);
    let _ = writeln!(
        out,
        "\n{:<24} {:<8} {:>10} {:>14} {:>20} {:>8}  STATE",
        "SOURCE", "KIND", "READ/S", "READ", "WATERMARK", "LAG"
    );
    for s in &now.sources {
        let then = before.and_then(|b| b.sources.iter().find(|x| x.name == s.name));
        let state = if s.idle {
            "idle"
        } else if s.backpressured {
            "backpressured"
        } else {
            "reading"
        };
        let _ = writeln!(
            out,
            "{:<24} {:<8} {:>10} {:>14} {:>20} {:>8}  {state}",
            s.name,
            s.kind,
            rate(s.read, then.map(|t| t.read)),
            group(s.read),
            time(s.watermark_ms),
            lag(now.now_ms, s.watermark_ms),
        );
        let total: u64 = s.shards.iter().map(|x| x.records).sum();
        for shard in &s.shards {
            let share = if total > 0 {
                format!("{:.0}%", shard.records as f64 * 100.0 / total as f64)
            } else {
                "-".into()
            };
            let behind = shard
                .behind_ms
                .map_or("-".into(), |b| format!("{:.1}s", b as f64 / 1e3));
            let _ = writeln!(
                out,
                "  {:<22} {:<8} {:>10} {:>14} {:>20} {:>8}  share {share}, behind tip {behind}",
                shard.id,
                shard.state,
                "",
                group(shard.records),
                time(shard.watermark_ms),
                lag(now.now_ms, shard.watermark_ms),
            );
        }
        hot_keys(&mut out, "partition keys", &s.hot_keys);
    }
    let _ = writeln!(
        out,
        "\n{:<24} {:>10} {:>10} {:>20} {:>8} {:>8} {:>18}",
        "WINDOW", "IN/S", "OUT/S", "WATERMARK", "LAG", "OPEN", "STATE/BUDGET"
    );
    for w in &now.windows {
        let then = before.and_then(|b| b.windows.iter().find(|x| x.name == w.name));
        let _ = writeln!(
            out,
            "{:<24} {:>10} {:>10} {:>20} {:>8} {:>8} {:>18}",
            w.name,
            rate(w.records_in, then.map(|t| t.records_in)),
            rate(w.rows_emitted, then.map(|t| t.rows_emitted)),
            time(w.watermark_ms),
            lag(now.now_ms, w.watermark_ms),
            group(w.open_windows),
            format!("{}/{}", mib(w.state_bytes), mib(w.budget_bytes)),
        );
        match &w.holder {
            Some(h) => {
                let _ = writeln!(out, "  watermark held by {}", h.describe());
            }
            None => {
                let _ = writeln!(out, "  watermark: every input is idle or ended");
            }
        }
        hot_keys(&mut out, "window keys", &w.hot_keys);
    }
    let _ = writeln!(
        out,
        "\n{:<24} {:>10} {:>14} {:>12}",
        "SINK", "ROWS/S", "ROWS", "BYTES"
    );
    for s in &now.sinks {
        let then = before.and_then(|b| b.sinks.iter().find(|x| x.name == s.name));
        let _ = writeln!(
            out,
            "{:<24} {:>10} {:>14} {:>12}",
            s.name,
            rate(s.rows, then.map(|t| t.rows)),
            group(s.rows),
            mib(s.bytes)
        );
    }
    out
}

fn header(out: &mut String, now: &StatusReport) {
    let ready = match &now.not_ready {
        None => "ready".to_string(),
        Some(why) => format!("NOT READY ({why})"),
    };
    let c = &now.checkpoints;
    let _ = write!(
        out,
        "kflow top · job {} · up {} · {ready} · checkpoint {} ({:.0}s ago, took {:.2}s)",
        now.job,
        kflow_jobs::duration::format_duration((now.uptime_s * 1e3) as i64),
        c.last_id,
        c.age_s,
        c.last_duration_s,
    );
    if let Some(rss) = now.rss_bytes {
        let _ = write!(out, " · rss {}", mib(rss));
    }
    if let Some((p50, p99, max)) = now.latency_ms {
        let _ = write!(
            out,
            " · latency p50 {p50:.0}ms p99 {p99:.0}ms max {max:.0}ms"
        );
    }
    let _ = writeln!(out);
}

fn hot_keys(out: &mut String, what: &str, keys: &[(String, u64)]) {
    if keys.is_empty() {
        return;
    }
    let list: Vec<String> = keys
        .iter()
        .take(5)
        .map(|(k, n)| format!("{k} (~{})", group(*n)))
        .collect();
    let _ = writeln!(out, "  hot {what}: {}", list.join(", "));
}

fn time(ms: Option<i64>) -> String {
    ms.and_then(chrono::DateTime::from_timestamp_millis)
        .map_or("-".into(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

fn lag(now_ms: i64, ms: Option<i64>) -> String {
    ms.map_or("-".into(), |w| format!("{:.1}s", (now_ms - w) as f64 / 1e3))
}

fn mib(bytes: u64) -> String {
    format!("{:.1}MiB", bytes as f64 / (1 << 20) as f64)
}
