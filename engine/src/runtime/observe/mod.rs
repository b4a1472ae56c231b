//! Watching a running job over HTTP: `/metrics` (Prometheus text format),
//! `/healthz` (the process serves), `/readyz` (restored, sources open,
//! checkpoints on time, not stopping) and `/status` (a JSON snapshot for
//! `kflow top`). A cluster part also writes a one-line [`progress`]
//! report for its worker.
//!
//! The server is hyper's HTTP/1 on a current-thread tokio runtime of its
//! own thread, so a scrape never competes with the Kinesis readers'
//! runtime, and it reads only atomics and short locks of the tasks.

pub mod exposition;
pub mod process;
pub mod progress;
pub mod report;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus::Registry;
use tokio::sync::oneshot;

use crate::dataflow::metrics::Metrics;
use crate::error::EngineError;

/// A running endpoint; dropping it stops it.
pub struct Server {
    /// The address it listens on (the port the OS chose for port 0).
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What the handlers read.
struct Served {
    registry: Registry,
    metrics: Arc<Metrics>,
    job: String,
    started: Instant,
}

/// Listens on `addr` and serves the run's metrics until the returned
/// [`Server`] is dropped.
///
/// # Errors
/// [`EngineError::Serve`] when the address cannot be bound (in use, not
/// local, no permission).
pub fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    job: &str,
    started: Instant,
) -> Result<Server, EngineError> {
    let fail = |source| EngineError::Serve { addr, source };
    let listener = std::net::TcpListener::bind(addr).map_err(fail)?;
    listener.set_nonblocking(true).map_err(fail)?;
    let local = listener.local_addr().map_err(fail)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(fail)?;
    let registry = exposition::registry(metrics.clone(), job, started)
        .map_err(|e| fail(std::io::Error::other(e.to_string())))?;
    let served = Arc::new(Served {
        registry,
        metrics,
        job: job.to_string(),
        started,
    });
    let (shutdown, stop) = oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || runtime.block_on(accept(listener, served, stop)))
        .map_err(fail)?;
    tracing::info!("metrics, health and status on http://{local}/metrics");
    Ok(Server {
        addr: local,
        shutdown: Some(shutdown),
        thread: Some(thread),
    })
}

async fn accept(
    listener: std::net::TcpListener,
    served: Arc<Served>,
    mut stop: oneshot::Receiver<()>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!("metrics endpoint stopped: {e}");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let served = served.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let response = respond(&served, &request);
                        async move { Ok::<_, Infallible>(response) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }
    }
}

fn respond(served: &Served, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    if request.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".into());
    }
    let now_ms = chrono::Utc::now().timestamp_millis();
    match request.uri().path() {
        "/metrics" => match exposition::encode(&served.registry) {
            Ok(body) => with_type(StatusCode::OK, exposition::CONTENT_TYPE, body),
            Err(_) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "encoding failed\n".into(),
            ),
        },
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => match report::readiness(&served.metrics, served.started.elapsed(), now_ms) {
            Ok(()) => text(StatusCode::OK, "ready\n".into()),
            Err(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {why}\n"),
            ),
        },
        "/status" => {
            let report = report::build(
                &served.metrics,
                &served.job,
                served.started.elapsed(),
                now_ms,
            );
            match serde_json::to_string(&report) {
                Ok(body) => with_type(StatusCode::OK, "application/json", body.into_bytes()),
                Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
            }
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "kflow serves /metrics, /healthz, /readyz and /status\n".into(),
        ),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    with_type(status, "text/plain; charset=utf-8", body.into_bytes())
}

fn with_type(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}
