//! A real Prometheus server scraping a kflow run on loopback, queried over
//! its HTTP API, and the helpers to find a run's metrics endpoint.
//!
//! The server is Debian's `prometheus` package (which brings `promtool`
//! too), installed by `scripts/setup`. A missing binary fails the test:
//! it is never a reason to skip.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::job::wait_until;
use crate::kinesis::free_ports;
use crate::process::Watched;

/// What `kflow run` logs once its endpoint listens.
const LISTENING: &str = "metrics, health and status on http://";

/// One series of a query result: its labels and value.
pub type Sample = (BTreeMap<String, String>, f64);

/// The address a run's metrics endpoint listens on (started with
/// `--metrics 127.0.0.1:0`, the port is read from its log).
pub fn metrics_addr(run: &mut Watched) -> SocketAddr {
    run.wait_for(LISTENING, 1, crate::job::TIMEOUT);
    let log = run.log();
    let line = log
        .lines()
        .find(|l| l.contains(LISTENING))
        .expect("the endpoint line was logged");
    let start = line.find(LISTENING).unwrap_or(0) + LISTENING.len();
    let rest = &line[start..];
    let end = rest.find('/').unwrap_or(rest.len());
    rest[..end]
        .parse()
        .unwrap_or_else(|e| panic!("no address in `{line}`: {e}"))
}

/// `GET path` from `addr`: status and body.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let (status, body) =
        kflow::cli::top::get(addr, path).unwrap_or_else(|e| panic!("GET http://{addr}{path}: {e}"));
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A binary on `$PATH`.
///
/// # Panics
///
/// When it is not installed.
pub fn installed(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("`{name}` is not installed: run scripts/setup (Debian package `prometheus`)")
        })
}

/// Runs `promtool check metrics` on an exposition; its complaints, if any.
pub fn promtool_check(exposition: &str) -> Result<(), String> {
    use std::io::Write;
    let mut child = Command::new(installed("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start promtool");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(exposition.as_bytes())
        .expect("cannot feed promtool");
    let out = child.wait_with_output().expect("promtool runs");
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A Prometheus server scraping one target every second.
pub struct Prometheus {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts a server scraping `target` (with `honor_labels`, so kflow's
    /// own `job` label stays) and waits until it is ready.
    ///
    /// # Panics
    ///
    /// When Prometheus is not installed or not ready within 60 s.
    pub fn start(target: SocketAddr) -> Prometheus {
        let dir = tempfile::Builder::new()
            .prefix("kflow-prometheus-")
            .tempdir()
            .expect("cannot create a folder for Prometheus");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: kflow\n    honor_labels: true\n    \
                 static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("cannot write the Prometheus config");
        let [port] = free_ports::<1>();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let child = Command::new(installed("prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start prometheus");
        let server = Prometheus {
            child,
            addr,
            _dir: dir,
        };
        wait_until(Duration::from_secs(60), "Prometheus is ready", || {
            kflow::cli::top::get(addr, "/-/ready").is_ok_and(|(status, _)| status == 200)
        });
        server
    }

    /// Evaluates an instant query.
    pub fn query(&self, expr: &str) -> Vec<Sample> {
        let (status, body) = http_get(self.addr, &format!("/api/v1/query?query={}", encode(expr)));
        assert_eq!(status, 200, "query `{expr}`: {body}");
        let json: serde_json::Value = serde_json::from_str(&body).expect("the API answers JSON");
        json["data"]["result"]
            .as_array()
            .map(|series| {
                series
                    .iter()
                    .map(|s| {
                        let labels = s["metric"]
                            .as_object()
                            .map(|m| {
                                m.iter()
                                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                                    .collect()
                            })
                            .unwrap_or_default();
                        let value = s["value"][1]
                            .as_str()
                            .unwrap_or("NaN")
                            .parse()
                            .unwrap_or(f64::NAN);
                        (labels, value)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Queries until `done` accepts the result (or panics after `timeout`
    /// with the last result).
    pub fn wait_for(
        &self,
        expr: &str,
        timeout: Duration,
        done: impl Fn(&[Sample]) -> bool,
    ) -> Vec<Sample> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let result = self.query(expr);
            if done(&result) {
                return result;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "`{expr}` never gave what was expected; last: {result:?}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// Percent-encodes a query parameter.
fn encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
