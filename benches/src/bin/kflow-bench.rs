//! `kflow-bench`: the end-to-end benchmark runner.
//!
//! Generates the workloads' input (deterministic, seeded), runs kflow on
//! each with RocksDB state and checkpoints every 10 s and every 1 s (and
//! with periodic checkpoints off, to show their cost), runs the peers that
//! are installed (DuckDB, PyFlink with heap and RocksDB state; see
//! `benches/peers/`) on the same file, checks every system's rows against
//! kflow's, and prints one table with kflow's ratio to each.
//!
//! ```text
//! cargo build --release -p kflow -p kflow-benches
//! target/release/kflow-bench [--events 5000000] [--workloads W1,W2,W3,W5,W6] [--peers all|none|duckdb,...]
//!     [--intervals 10s,1s,off] [--repeat N] [--metrics-cost] [--decode-threads N]
//! ```
//!
//! `--metrics-cost` adds, per workload, runs with the metrics endpoint off
//! and on (scraped every second, `/metrics` and `/status`), alternated
//! `--repeat` times, and prints the throughput ratio. `--store-cost` does
//! the same with checkpoints kept locally only and also uploaded to a
//! checkpoint store (s3rver from `node_modules`, on loopback), and prints
//! the bytes uploaded per checkpoint against the database's size.
//!
//! W5 is W1 over an input with producer retries (1% of events repeated with
//! the same `event_id`) and `dedup = { field = "event_id", within = "10m" }`
//! on the source; the peers do not run it (they would count the repeats).
//!
//! W4 and W4S read wide nested bid records (`kflow_benches::bids`, about
//! 330 bytes, the read fields inside a `Bid` object beside long strings
//! nobody reads): W4 is the top price per 10 s tumbling window (no key),
//! W4S the bids per auction in 10 s windows sliding by 2 s, then a window
//! over those rows giving, per sliding window, the auctions bid on and the
//! top count. DuckDB runs both (Flink peers do not).
//!
//! W6 is W1's input and query in session windows (`gap = "30s"` per user)
//! instead of 1-minute tumbling ones; DuckDB computes the same sessions
//! with window functions (Flink peers do not run it). The runner prints
//! W6's events/s as a ratio of W1's.
//!
//! With `--repeat N` every system runs N times in turn and the table shows
//! each one's median run (by wall time; its CPU, RSS and latency too): on a
//! shared machine single runs vary by 10-20%.

use std::fmt::Write as _;
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use kflow_benches::jobs::{ClickJob, ClickSource};
use kflow_benches::measure::{measure, measure_median, Run};
use kflow_benches::scrape::{free_addr, Scraper};
use kflow_benches::workload::{write_events, Workload};

struct Args {
    events: u64,
    workloads: Vec<String>,
    peers: Vec<String>,
    kflow: PathBuf,
    out: PathBuf,
    intervals: Vec<String>,
    repeat: usize,
    metrics_cost: bool,
    store_cost: bool,
    /// `kflow run --decode-threads`, when given.
    decode_threads: Option<String>,
}

/// `kflow run` with the options every kflow run of the bench shares.
fn kflow_run(args: &Args) -> Command {
    let mut command = Command::new(&args.kflow);
    command.arg("run");
    if let Some(n) = &args.decode_threads {
        command.arg("--decode-threads").arg(n);
    }
    command
}

fn parse_args() -> Result<Args, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut args = Args {
        events: 5_000_000,
        workloads: vec!["W1".into(), "W2".into(), "W3".into()],
        peers: vec!["duckdb".into(), "flink-heap".into(), "flink-rocksdb".into()],
        kflow: root.join("target/release/kflow"),
        out: root.join("target/bench"),
        intervals: vec!["10s".into(), "1s".into(), "off".into()],
        repeat: 1,
        metrics_cost: false,
        store_cost: false,
        decode_threads: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--events" => args.events = value()?.parse().map_err(|e| format!("--events: {e}"))?,
            "--workloads" => args.workloads = value()?.split(',').map(str::to_string).collect(),
            "--peers" => {
                let v = value()?;
                args.peers = match v.as_str() {
                    "none" => Vec::new(),
                    "all" => args.peers.clone(),
                    _ => v.split(',').map(str::to_string).collect(),
                }
            }
            "--kflow" => args.kflow = PathBuf::from(value()?),
            "--out" => args.out = PathBuf::from(value()?),
            "--intervals" => args.intervals = value()?.split(',').map(str::to_string).collect(),
            "--metrics-cost" => args.metrics_cost = true,
            "--decode-threads" => args.decode_threads = Some(value()?),
            "--store-cost" => args.store_cost = true,
            "--repeat" => {
                args.repeat = value()?.parse().map_err(|e| format!("--repeat: {e}"))?;
                if args.repeat == 0 {
                    return Err("--repeat must be at least 1".into());
                }
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

/// One measured run.
struct Measured {
    system: String,
    seconds: f64,
    cpu: f64,
    peak_rss_mb: f64,
    checkpoints: Option<u64>,
    /// kflow's `latency` summary line: `p50 / p99 / max` in ms.
    latency: Option<String>,
    rows: usize,
    agrees: Option<bool>,
}

/// The W4 and W4S jobs over the bid records at `input`.
fn bids_job(workload: &str, interval_dir: &Path, input: &Path) -> String {
    let windows = if workload == "W4" {
        r#"
[windows.top]
input = "bids"
tumbling = "10s"
aggregates = { top_price = "max(Bid.price)" }
"#
    } else {
        r#"
[windows.hot]
input = "bids"
key = ["Bid.auction"]
sliding = { size = "10s", slide = "2s" }
aggregates = { bids = "count()" }

[windows.top]
input = "hot"
tumbling = "2s"
aggregates = { auctions = "count()", top = "max(bids)" }
"#
    };
    format!(
        r#"[job]
name = "bench-{}"
state_dir = "{}"

[sources.bids]
type = "file"
path = "{}"
event_time = {{ field = "Bid.date_time" }}
watermark = {{ max_out_of_orderness = "1s" }}
{windows}
[sinks.result]
input = "top"
type = "file"
path = "{}"
"#,
        workload.to_lowercase(),
        interval_dir.join("state").display(),
        input.display(),
        interval_dir.join("kflow.jsonl").display()
    )
}

fn job(workload: &str, interval_dir: &Path, input: &Path) -> String {
    if workload.starts_with("W4") {
        return bids_job(workload, interval_dir, input);
    }
    let mut job = ClickJob::new(
        &format!("bench-{}", workload.to_lowercase()),
        ClickSource::File {
            path: input.display().to_string(),
        },
    );
    if workload == "W2" {
        job.window = r#"sliding = { size = "5m", slide = "1m" }"#.into();
    }
    if workload == "W6" {
        job.window = r#"session = { gap = "30s" }"#.into();
    }
    if workload == "W3" {
        job.state_memory = Some("64MB".into());
    }
    job.state_dir = Some(interval_dir.join("state").display().to_string());
    job.aggregates = r#"events = "count()", revenue = "sum(amount)""#.into();
    job.sink_path = interval_dir.join("kflow.jsonl").display().to_string();
    if workload == "W5" {
        let time = "event_time = { field = \"ts\" }";
        return job.toml().replacen(
            time,
            &format!("{time}\ndedup = {{ field = \"event_id\", within = \"10m\" }}"),
            1,
        );
    }
    job.toml()
}

/// Runs kflow on `workload` with the metrics endpoint off and on (scraped
/// every second), alternating, `--repeat` times each; the median runs, the
/// scrapes of the median "on" run, and the median over the back-to-back
/// pairs of throughput on / off (steadier on a shared machine).
fn metrics_cost(
    args: &Args,
    workload: &str,
    input: &Path,
) -> Result<(Measured, Measured, u64, f64), String> {
    let interval = args.intervals.first().map_or("10s", String::as_str);
    let mut runs: [Vec<Run>; 2] = [Vec::new(), Vec::new()];
    let mut scrapes = Vec::new();
    for _ in 0..args.repeat {
        for (on, runs) in runs.iter_mut().enumerate() {
            let dir = args.out.join(format!("{workload}-kflow-metrics-{on}"));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            let job_path = dir.join("job.toml");
            fs::write(&job_path, job(workload, &dir, input)).map_err(|e| e.to_string())?;
            let mut command = kflow_run(args);
            command
                .arg(&job_path)
                .arg("--checkpoint-interval")
                .arg(interval);
            eprintln!(
                "{workload}: kflow, metrics {} ...",
                if on == 1 { "on" } else { "off" }
            );
            let scraper = if on == 1 {
                let addr = free_addr().map_err(|e| e.to_string())?;
                command.arg("--metrics").arg(addr.to_string());
                Some(Scraper::start(addr, Duration::from_secs(1)))
            } else {
                None
            };
            let run = measure(command);
            if let Some(scraper) = scraper {
                scrapes.push(scraper.stop());
            }
            runs.push(run?);
        }
    }
    scrapes.sort_unstable();
    let scrapes = scrapes.get(scrapes.len() / 2).copied().unwrap_or(0);
    let (off, on, paired) = medians(runs)?;
    Ok((
        variant(interval, "metrics off", &off),
        variant(interval, "metrics scraped 1/s", &on),
        scrapes,
        paired,
    ))
}

/// The median run of each variant (by wall time), and the median over the
/// back-to-back pairs of variant 0's time / variant 1's (steadier on a
/// shared machine).
fn medians(runs: [Vec<Run>; 2]) -> Result<(Run, Run, f64), String> {
    let mut paired: Vec<f64> = runs[0]
        .iter()
        .zip(&runs[1])
        .map(|(a, b)| a.0 / b.0)
        .collect();
    paired.sort_by(f64::total_cmp);
    let paired = paired.get(paired.len() / 2).copied().unwrap_or(f64::NAN);
    let mut medians = runs.into_iter().map(|mut r| {
        r.sort_by(|a, b| a.0.total_cmp(&b.0));
        let median = r.len() / 2;
        (median < r.len()).then(|| r.swap_remove(median))
    });
    match (medians.next().flatten(), medians.next().flatten()) {
        (Some(a), Some(b)) => Ok((a, b, paired)),
        _ => Err("no runs".into()),
    }
}

/// A row of the table for one variant of kflow's run.
fn variant(interval: &str, what: &str, run: &Run) -> Measured {
    Measured {
        system: format!("kflow (checkpoints {interval}, {what})"),
        seconds: run.0,
        cpu: run.1,
        peak_rss_mb: run.2,
        checkpoints: None,
        latency: None,
        rows: 0,
        agrees: None,
    }
}

/// s3rver on a free loopback port with bucket `bench`, killed on drop.
struct S3rver(std::process::Child, String, PathBuf);

impl S3rver {
    fn start(out: &Path) -> Result<S3rver, String> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let entry = root.join("node_modules/s3rver/bin/s3rver.js");
        if !entry.is_file() {
            return Err(format!("{} missing: run `npm ci`", entry.display()));
        }
        let data = out.join("s3rver");
        let _ = fs::remove_dir_all(&data);
        fs::create_dir_all(&data).map_err(|e| e.to_string())?;
        let port = free_addr().map_err(|e| e.to_string())?.port();
        let child = Command::new("node")
            .arg(entry)
            .args([
                "-d",
                &data.display().to_string(),
                "-a",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .args([
                "--silent",
                "--configure-bucket",
                "bench",
                "--allow-mismatched-signatures",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("node: {e}"))?;
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(S3rver(child, format!("http://127.0.0.1:{port}"), data));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err("s3rver did not start".into())
    }
}

impl Drop for S3rver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = fs::remove_dir_all(&self.2);
    }
}

/// The number next to `label` in the run summary's `uploads` line: the
/// one before it, or after it when `after`.
fn upload_figure(stderr: &str, label: &str, after: bool) -> u64 {
    let Some(line) = stderr
        .lines()
        .find(|l| l.trim_start().starts_with("uploads"))
    else {
        return 0;
    };
    let Some(at) = line.find(label) else {
        return 0;
    };
    let number = |w: &&str| w.chars().any(|c| c.is_ascii_digit());
    let word = if after {
        line[at + label.len()..].split_whitespace().find(number)
    } else {
        line[..at].split_whitespace().rev().find(number)
    };
    word.map(|w| w.chars().filter(char::is_ascii_digit).collect::<String>())
        .and_then(|d| d.parse().ok())
        .unwrap_or(0)
}

/// Runs kflow on `workload` with checkpoints local only and also uploaded
/// to a checkpoint store, alternating, `--repeat` times each: the median
/// runs and a line with the throughput ratio and the upload sizes.
fn store_cost(
    args: &Args,
    workload: &str,
    input: &Path,
) -> Result<(Measured, Measured, String), String> {
    let s3 = S3rver::start(&args.out)?;
    let interval = args.intervals.first().map_or("10s", String::as_str);
    let mut runs: [Vec<Run>; 2] = [Vec::new(), Vec::new()];
    for round in 0..args.repeat {
        for (stored, runs) in runs.iter_mut().enumerate() {
            let dir = args.out.join(format!("{workload}-kflow-store-{stored}"));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            let job_path = dir.join("job.toml");
            let mut text = job(workload, &dir, input);
            if stored == 1 {
                text = text.replacen(
                    "[job]\n",
                    &format!("[job]\ncheckpoint_store = \"s3://bench/{workload}-{round}\"\n"),
                    1,
                );
            }
            fs::write(&job_path, text).map_err(|e| e.to_string())?;
            let mut command = kflow_run(args);
            command
                .arg(&job_path)
                .arg("--checkpoint-interval")
                .arg(interval)
                .env("AWS_ENDPOINT_URL_S3", &s3.1)
                .env("AWS_ACCESS_KEY_ID", "S3RVER")
                .env("AWS_SECRET_ACCESS_KEY", "S3RVER")
                .env("AWS_REGION", "us-east-1");
            eprintln!(
                "{workload}: kflow, checkpoints {} ...",
                if stored == 1 { "to S3" } else { "local" }
            );
            runs.push(measure(command)?);
        }
    }
    let (local, stored, paired) = medians(runs)?;
    let uploads = upload_figure(&stored.4, "(durable", false);
    let sent = upload_figure(&stored.4, "bytes sent", false);
    let per = upload_figure(&stored.4, "per upload", false);
    let database = upload_figure(&stored.4, "database", true);
    let snapshots = upload_figure(&stored.4, "snapshots", true);
    let line = format!(
        "{workload}: throughput with checkpoints ({interval}) uploaded to S3 / local only: \
         {:.3}x of the medians, {paired:.3}x median of {} back-to-back pairs; \
         {uploads} uploads sent {sent} bytes ({per} per upload) of {snapshots} bytes in their \
         snapshots; database {database} bytes at the end",
        local.0 / stored.0,
        args.repeat
    );
    Ok((
        variant(interval, "local only", &local),
        variant(interval, "uploaded to S3", &stored),
        line,
    ))
}

fn main() {
    if let Err(e) = run() {
        eprintln!("kflow-bench: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    if !args.kflow.is_file() {
        return Err(format!(
            "{} not found: build it with `cargo build --release -p kflow -p kflow-benches`",
            args.kflow.display()
        ));
    }
    fs::create_dir_all(&args.out).map_err(|e| e.to_string())?;
    let peers_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers");
    let python = peers_dir.join(".venv/bin/python");
    let peers: Vec<String> = if python.is_file() {
        args.peers.clone()
    } else {
        if !args.peers.is_empty() {
            eprintln!("kflow-bench: peers not installed (run `bash benches/peers/setup.sh`): running kflow only");
        }
        Vec::new()
    };
    let mut table = String::new();
    let mut first_seconds: Vec<(String, f64)> = Vec::new();
    let mut costs: Vec<String> = Vec::new();
    let _ = writeln!(
        table,
        "| workload | system | events/s | seconds | CPU s | peak RSS MB | checkpoints | latency p50 / p99 / max ms | rows | rows agree | kflow (10 s) speed-up |"
    );
    let _ = writeln!(
        table,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|"
    );
    for workload in &args.workloads {
        let users = if workload == "W3" { 5_000_000 } else { 100_000 };
        let retries = if workload == "W5" { 0.01 } else { 0.0 };
        let suffix = if workload == "W5" { "-retries" } else { "" };
        let bids = workload.starts_with("W4");
        let input = if bids {
            args.out.join(format!("bids-{}.jsonl", args.events))
        } else {
            args.out
                .join(format!("events-{}-{users}{suffix}.jsonl", args.events))
        };
        if bids && !input.is_file() {
            eprintln!("generating {} ...", input.display());
            let mut file = BufWriter::with_capacity(
                1 << 20,
                fs::File::create(&input).map_err(|e| e.to_string())?,
            );
            kflow_benches::bids::write_bids(args.events, 42, &mut file)
                .map_err(|e| e.to_string())?;
            file.flush().map_err(|e| e.to_string())?;
        }
        if !input.is_file() {
            eprintln!("generating {} ...", input.display());
            let w = Workload {
                events: args.events,
                users,
                seed: 42,
                duplicate_rate: retries,
                ..Workload::default()
            };
            let mut file = BufWriter::with_capacity(
                1 << 20,
                fs::File::create(&input).map_err(|e| e.to_string())?,
            );
            write_events(&w, &mut file).map_err(|e| e.to_string())?;
            file.flush().map_err(|e| e.to_string())?;
        }
        let mut results: Vec<Measured> = Vec::new();
        let mut reference: Option<PathBuf> = None;
        for interval in &args.intervals {
            let dir = args.out.join(format!("{workload}-kflow-{interval}"));
            let job_path = dir.join("job.toml");
            eprintln!("{workload}: kflow, checkpoints {interval} ...");
            let fresh = || {
                let _ = fs::remove_dir_all(&dir);
                fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
                fs::write(&job_path, job(workload, &dir, &input)).map_err(|e| e.to_string())
            };
            let command = || {
                let mut command = kflow_run(&args);
                command
                    .arg(&job_path)
                    .arg("--checkpoint-interval")
                    .arg(interval);
                command
            };
            let (seconds, cpu, rss, _, stderr) = measure_median(args.repeat, fresh, command)?;
            let checkpoints = stderr
                .lines()
                .find(|l| l.trim_start().starts_with("checkpoints"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.replace(',', "").parse().ok());
            // "latency  p50 1.2 ms, p99 3.4 ms, max 5.6 ms (...)"
            let latency = stderr
                .lines()
                .find(|l| l.trim_start().starts_with("latency"))
                .map(|l| {
                    l.split_whitespace()
                        .filter_map(|w| w.trim_end_matches(',').parse::<f64>().ok())
                        .map(|v| format!("{v:.1}"))
                        .collect::<Vec<_>>()
                        .join(" / ")
                });
            let output = dir.join("kflow.jsonl");
            let rows = fs::read_to_string(&output).map_or(0, |t| t.lines().count());
            results.push(Measured {
                system: format!("kflow (checkpoints {interval})"),
                seconds,
                cpu,
                peak_rss_mb: rss,
                checkpoints,
                latency,
                rows,
                agrees: None,
            });
            reference.get_or_insert(output);
        }
        if args.metrics_cost {
            let (off, on, scrapes, paired) = metrics_cost(&args, workload, &input)?;
            let ratio = off.seconds / on.seconds;
            costs.push(format!(
                "{workload}: throughput with the metrics endpoint scraped every second \
                 ({scrapes} scrapes) / without: {ratio:.3}x of the medians, {paired:.3}x \
                 median of {} back-to-back pairs",
                args.repeat
            ));
            results.push(off);
            results.push(on);
        }
        if args.store_cost {
            let (local, stored, line) = store_cost(&args, workload, &input)?;
            costs.push(line);
            results.push(local);
            results.push(stored);
        }
        // Flink peers run the tumbling and sliding workloads; DuckDB also
        // the sessions; nobody the dedup one.
        let runs_it = |peer: &String| match workload.as_str() {
            "W5" => false,
            "W4" | "W4S" | "W6" => peer == "duckdb",
            _ => true,
        };
        for peer in peers.iter().filter(|p| runs_it(p)) {
            let out = args.out.join(format!("{workload}-{peer}.jsonl"));
            if !matches!(peer.as_str(), "duckdb" | "flink-heap" | "flink-rocksdb") {
                return Err(format!("unknown peer {peer}"));
            }
            let command = || {
                let mut command = Command::new(&python);
                if peer == "duckdb" {
                    command.arg(peers_dir.join("duckdb_run.py"));
                } else {
                    command
                        .arg(peers_dir.join("flink_run.py"))
                        .arg("--state")
                        .arg(peer.trim_start_matches("flink-"))
                        .arg("--checkpoint-interval")
                        .arg("10s");
                }
                command
                    .arg("--workload")
                    .arg(workload)
                    .arg("--input")
                    .arg(&input)
                    .arg("--output")
                    .arg(&out);
                command
            };
            eprintln!("{workload}: {peer} ...");
            let (seconds, cpu, rss, _, _) = measure_median(args.repeat, || Ok(()), command)?;
            let rows = fs::read_to_string(&out).map_or(0, |t| t.lines().count());
            let agrees = reference.as_ref().map(|r| {
                Command::new(&python)
                    .arg(peers_dir.join("compare.py"))
                    .arg(r)
                    .arg(&out)
                    .stdout(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            });
            results.push(Measured {
                system: peer.clone(),
                seconds,
                cpu,
                peak_rss_mb: rss,
                checkpoints: None,
                latency: None,
                rows,
                agrees,
            });
        }
        let base = results.first().map_or(1.0, |m| m.seconds);
        first_seconds.push((workload.clone(), base));
        for m in &results {
            let _ = writeln!(
                table,
                "| {workload} | {} | {:.0} | {:.2} | {:.2} | {:.0} | {} | {} | {} | {} | {:.2}x |",
                m.system,
                args.events as f64 / m.seconds,
                m.seconds,
                m.cpu,
                m.peak_rss_mb,
                m.checkpoints.map_or("-".to_string(), |c| c.to_string()),
                m.latency.as_deref().unwrap_or("-"),
                m.rows,
                m.agrees.map_or("(reference)".to_string(), |a| if a {
                    "yes".into()
                } else {
                    "NO".into()
                }),
                m.seconds / base,
            );
        }
    }
    println!("{table}");
    for cost in &costs {
        println!("{cost}");
    }
    let seconds_of = |w: &str| first_seconds.iter().find(|(n, _)| n == w).map(|(_, s)| *s);
    if let (Some(w1), Some(w2)) = (seconds_of("W1"), seconds_of("W2")) {
        println!(
            "W2 / W1 time (kflow, checkpoints {}): {:.2}x",
            args.intervals.first().map_or("-", String::as_str),
            w2 / w1
        );
    }
    if let (Some(w1), Some(w5)) = (seconds_of("W1"), seconds_of("W5")) {
        println!(
            "W5 (dedup) / W1 time (kflow, checkpoints {}): {:.2}x",
            args.intervals.first().map_or("-", String::as_str),
            w5 / w1
        );
    }
    if let (Some(w1), Some(w6)) = (seconds_of("W1"), seconds_of("W6")) {
        println!(
            "W6 (sessions, gap 30 s) events/s / W1 (tumbling 1 m) events/s (kflow, checkpoints {}): {:.2}x",
            args.intervals.first().map_or("-", String::as_str),
            w1 / w6
        );
    }
    if args.repeat > 1 {
        println!(
            "(each row: the run with the median wall time of {} runs)",
            args.repeat
        );
    }
    Ok(())
}
