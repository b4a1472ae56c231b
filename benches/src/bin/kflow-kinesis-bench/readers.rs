//! `--readers`: polling against enhanced fan-out, same emulator, same run.
//!
//! kinesis-mock serves SubscribeToShard (kinesalite does not); it pushes a
//! subscription's events once a second and gets slow past a few thousand
//! records per shard, so the figures say how kflow's two readers compare on
//! one machine, not what AWS would give (there, a subscription pushes
//! within about 70 ms of a record's arrival, and polling waits up to its
//! 200 ms call interval, or longer when five pollers share a shard).

use std::fs;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kflow_benches::jobs::{ClickJob, ClickSource};
use kflow_benches::workload::{rfc3339_millis, write_events, Workload};

use super::{produce, run_kflow, Args, Emulator};

/// The two readers, as the source's `reader` line gives them.
const READERS: [(&str, &str); 2] = [("polling", ""), ("efo", "reader = \"efo\"")];

fn start_kinesis_mock(root: &Path, dir: &Path) -> Result<(Emulator, String), String> {
    let package = root.join("node_modules/kinesis-local");
    let main = package.join("main.js");
    if !main.exists() {
        return Err(format!("{} is missing: run `npm ci` first", main.display()));
    }
    let port = |_| {
        TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| e.to_string())
    };
    let (plain, tls) = (port(0)?, port(1)?);
    let mut command = Command::new("node");
    command
        .arg(&main)
        .current_dir(dir)
        .env("KINESIS_MOCK_PLAIN_PORT", plain.to_string())
        .env("KINESIS_MOCK_TLS_PORT", tls.to_string())
        .env("KINESIS_MOCK_CERT_PATH", package.join("server.json"))
        .env("AWS_REGION", "us-east-1")
        .env("SHARD_LIMIT", "1000")
        .env("SHOULD_PERSIST_DATA", "false")
        .env("LOAD_DATA_IF_EXISTS", "false")
        .env("LOG_LEVEL", "WARN");
    for setting in [
        "CREATE_STREAM_DURATION",
        "REGISTER_STREAM_CONSUMER_DURATION",
        "DEREGISTER_STREAM_CONSUMER_DURATION",
    ] {
        command.env(setting, "10ms");
    }
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start node: {e}"))?;
    let emulator = Emulator(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", plain)).is_err() {
        if Instant::now() > deadline {
            return Err("kinesis-mock did not start".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((emulator, format!("http://127.0.0.1:{plain}")))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The W1 job named `name` in `dir/name/`, reading `stream` by `reader`.
fn write_job(
    dir: &Path,
    name: &str,
    stream: &str,
    endpoint: &str,
    settings: String,
) -> Result<(), String> {
    let mut job = ClickJob::new(
        name,
        ClickSource::Kinesis {
            stream: stream.to_string(),
            endpoint: endpoint.to_string(),
            settings,
        },
    );
    job.checkpoint_interval = Some("10s".into());
    job.aggregates = r#"events = "count()", revenue = "sum(amount)""#.into();
    let folder = dir.join(name);
    fs::create_dir_all(&folder).map_err(|e| e.to_string())?;
    fs::write(folder.join("job.toml"), job.toml()).map_err(|e| e.to_string())
}

/// The text after `label` on the summary line that starts with it, up to
/// its parenthesis.
fn summary_field(summary: &str, label: &str) -> String {
    summary
        .lines()
        .find(|l| l.trim_start().starts_with(label))
        .map(|l| {
            l.trim_start()[label.len()..]
                .split('(')
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_else(|| "-".to_string())
}

fn records_read(summary: &str) -> Option<u64> {
    summary
        .lines()
        .find(|l| l.contains("records read"))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|n| n.replace(',', "").parse().ok())
}

/// Backlog, then live, for both readers.
pub fn compare(args: &Args) -> Result<(), String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = args.out.join(format!("kinesis-readers-{}", args.events));
    fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let workload = Workload {
        events: args.events,
        ..Workload::default()
    };
    let mut file = std::io::BufWriter::new(
        fs::File::create(dir.join("events.jsonl")).map_err(|e| e.to_string())?,
    );
    write_events(&workload, &mut file).map_err(|e| e.to_string())?;
    std::io::Write::flush(&mut file).map_err(|e| e.to_string())?;
    drop(file);
    let (_emulator, endpoint) = start_kinesis_mock(&root, &dir)?;

    // A backlog per reader: a fresh stream holding every event.
    println!(
        "backlog: {} W1 events in {} shards of kinesis-mock, trim horizon to the tips, best of 2",
        args.events, args.shards
    );
    println!("  {:<10}{:>10}{:>14}", "reader", "seconds", "records/s");
    let mut backlog = Vec::new();
    for (reader, line) in READERS {
        let stream = format!("backlog-{reader}");
        produce(args, &dir, &endpoint, &stream, "events.jsonl", None)?;
        let name = format!("backlog-{reader}");
        let settings = format!("start_at = \"trim_horizon\"\nstop_at = \"latest\"\n{line}");
        write_job(&dir, &name, &stream, &endpoint, settings)?;
        let mut best = f64::MAX;
        for _ in 0..2 {
            let (seconds, summary) = run_kflow(
                &args.kflow,
                &["run", "--reset", "job.toml"],
                &dir.join(&name),
            )?;
            if records_read(&summary) != Some(args.events) {
                return Err(format!("{reader} read the wrong count:\n{summary}"));
            }
            best = best.min(seconds);
        }
        println!(
            "  {reader:<10}{best:>10.2}{:>14.0}",
            args.events as f64 / best
        );
        backlog.push(best);
    }
    println!(
        "  efo / polling: {:.2}x the records/s",
        backlog[0] / backlog[1]
    );

    // Live: both jobs at once over one stream written at a steady rate.
    let stream = "live";
    fs::write(dir.join("none.jsonl"), "").map_err(|e| e.to_string())?;
    produce(args, &dir, &endpoint, stream, "none.jsonl", None)?;
    let writing = Duration::from_secs_f64(args.events as f64 / args.rate as f64);
    let stop_ms = now_ms() + writing.as_millis() as i64 + 15_000;
    let mut runs: Vec<(&str, Child)> = Vec::new();
    for (reader, line) in READERS {
        let name = format!("live-{reader}");
        let settings = format!(
            "start_at = \"trim_horizon\"\nstop_at = \"{}\"\n{line}",
            rfc3339_millis(stop_ms)
        );
        write_job(&dir, &name, stream, &endpoint, settings)?;
        let child = Command::new(&args.kflow)
            .args(["run", "--reset", "job.toml"])
            .current_dir(dir.join(&name))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        runs.push((reader, child));
    }
    produce(
        args,
        &dir,
        &endpoint,
        stream,
        "events.jsonl",
        Some(args.rate),
    )?;
    println!(
        "\nlive: {} events written at {}/s into {} shards while both jobs read them",
        args.events, args.rate, args.shards
    );
    println!(
        "  {:<10}{:<40}window rows: input read -> written",
        "reader", "arrival in the stream -> read"
    );
    for (reader, child) in runs {
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        let summary = String::from_utf8_lossy(&out.stderr).into_owned();
        if !out.status.success() || records_read(&summary) != Some(args.events) {
            return Err(format!(
                "live {reader} run failed or missed records:\n{summary}"
            ));
        }
        println!(
            "  {reader:<10}{:<40}{}",
            summary_field(&summary, "kinesis delay"),
            summary_field(&summary, "latency")
        );
    }
    Ok(())
}
