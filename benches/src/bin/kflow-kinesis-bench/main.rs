//! `kflow-kinesis-bench`: how close `kflow run` over a Kinesis stream comes
//! to the fastest possible reader of the same stream.
//!
//! Starts kinesalite (the fast emulator, pinned in `package.json`) on a free
//! loopback port, puts N W1 click events into a stream with `kflow produce`,
//! then in the same invocation reads the whole stream twice: with a plain
//! GetRecords loop (one task per shard, 10,000 records per call, no pacing,
//! no decoding: the emulator's own speed) and with `kflow run` of the W1
//! job (decode, filter, tumbling windows, RocksDB checkpoints every 10 s,
//! file sink; process start to exit), once decoding on the source's thread
//! and once on a pool of `--decode-threads N` (default 2) threads. Prints
//! records/s and CPU seconds of each and kflow's ratio to the loop.
//!
//! With `--readers`, it compares instead the two ways kflow reads a stream,
//! polling and enhanced fan-out, on kinesis-mock (the emulator that serves
//! SubscribeToShard; slow past a few thousand records per shard, so the
//! streams are small): the W1 job over a backlog (trim horizon to the tips
//! as of the start; records/s, best of 2, a fresh stream per reader), then
//! both jobs side by side over one stream written at a steady rate while
//! they read it (each record's delay from its arrival in the stream to
//! kflow, and the window results' end-to-end latency, from each run's
//! summary).
//!
//! ```text
//! npm ci && cargo build --release -p kflow -p kflow-benches
//! target/release/kflow-kinesis-bench [--events 200000] [--shards 2] [--decode-threads 2]
//! target/release/kflow-kinesis-bench --readers [--events 8000] [--shards 4] [--rate 400]
//! ```

use std::fs;
use std::io::{BufWriter, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::types::ShardIteratorType;
use kflow::aws::{connect, Endpoint};
use kflow_benches::jobs::{ClickJob, ClickSource};
use kflow_benches::workload::{write_events, Workload};

mod readers;

struct Args {
    events: u64,
    shards: i32,
    kflow: PathBuf,
    out: PathBuf,
    /// Compare polling with enhanced fan-out (on kinesis-mock).
    readers: bool,
    /// Records/s written during the side-by-side run.
    rate: u64,
    /// Decoding threads of the second `kflow run`.
    decode_threads: u32,
}

fn parse_args() -> Result<Args, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut args = Args {
        events: 200_000,
        shards: 2,
        kflow: root.join("target/release/kflow"),
        out: root.join("target/bench"),
        readers: false,
        rate: 400,
        decode_threads: 2,
    };
    let mut events = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--events" => events = Some(value()?.parse().map_err(|e| format!("--events: {e}"))?),
            "--rate" => args.rate = value()?.parse().map_err(|e| format!("--rate: {e}"))?,
            "--readers" => args.readers = true,
            "--shards" => args.shards = value()?.parse().map_err(|e| format!("--shards: {e}"))?,
            "--decode-threads" => {
                args.decode_threads = value()?
                    .parse()
                    .map_err(|e| format!("--decode-threads: {e}"))?;
            }
            "--kflow" => args.kflow = PathBuf::from(value()?),
            "--out" => args.out = PathBuf::from(value()?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    args.events = events.unwrap_or(if args.readers { 8_000 } else { 200_000 });
    Ok(args)
}

/// An emulator process; killed on drop.
struct Emulator(Child);

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_kinesalite(root: &Path) -> Result<(Emulator, String), String> {
    let cli = root.join("node_modules/kinesalite/cli.js");
    if !cli.exists() {
        return Err(format!("{} is missing: run `npm ci` first", cli.display()));
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let child = Command::new("node")
        .arg(&cli)
        .args(["--port", &port.to_string(), "--createStreamMs", "10"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start node: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err("kinesalite did not start".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((Emulator(child), format!("http://127.0.0.1:{port}")))
}

/// Reads every shard from its trim horizon to its tip; returns records.
async fn plain_loop(endpoint: &str, stream: &str) -> Result<u64, String> {
    let client = connect(&Endpoint {
        region: None,
        url: Some(endpoint.to_string()),
    })
    .await;
    let shards = client
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .map_err(|e| format!("ListShards: {e:?}"))?;
    let mut tasks = Vec::new();
    for shard in shards.shards() {
        let client = client.clone();
        let (stream, shard) = (stream.to_string(), shard.shard_id().to_string());
        tasks.push(tokio::spawn(async move {
            let out = client
                .get_shard_iterator()
                .stream_name(&stream)
                .shard_id(&shard)
                .shard_iterator_type(ShardIteratorType::TrimHorizon)
                .send()
                .await
                .map_err(|e| format!("GetShardIterator: {e:?}"))?;
            let mut iterator = out.shard_iterator().map(str::to_string);
            let mut records = 0u64;
            while let Some(it) = iterator {
                let out = client
                    .get_records()
                    .shard_iterator(it)
                    .limit(10_000)
                    .send()
                    .await
                    .map_err(|e| format!("GetRecords: {e:?}"))?;
                records += out.records().len() as u64;
                if out.records().is_empty() && out.millis_behind_latest().unwrap_or(0) == 0 {
                    break;
                }
                iterator = out.next_shard_iterator().map(str::to_string);
            }
            Ok::<u64, String>(records)
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.map_err(|e| e.to_string())??;
    }
    Ok(total)
}

fn run_kflow(kflow: &Path, args: &[&str], dir: &Path) -> Result<(f64, String), String> {
    let started = Instant::now();
    let out = Command::new(kflow)
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("{}: {e}", kflow.display()))?;
    let seconds = started.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        return Err(format!("kflow {args:?} failed:\n{stderr}"));
    }
    Ok((seconds, stderr))
}

/// `kflow produce` of `file` (in `dir`) into `stream`, created if new.
fn produce(
    args: &Args,
    dir: &Path,
    endpoint: &str,
    stream: &str,
    file: &str,
    rate: Option<u64>,
) -> Result<f64, String> {
    let shards = args.shards.to_string();
    let rate = rate.map(|r| r.to_string());
    let mut argv = vec![
        "produce",
        "--quiet",
        "--endpoint",
        endpoint,
        "--stream",
        stream,
        "--create-shards",
        &shards,
        "--partition-key",
        "user_id",
    ];
    if let Some(rate) = &rate {
        argv.extend(["--rate", rate.as_str()]);
    }
    argv.push(file);
    Ok(run_kflow(&args.kflow, &argv, dir)?.0)
}

fn main() {
    if let Err(e) = bench() {
        eprintln!("kflow-kinesis-bench: {e}");
        std::process::exit(1);
    }
}

fn bench() -> Result<(), String> {
    let args = parse_args()?;
    if args.readers {
        return readers::compare(&args);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = args.out.join(format!("kinesis-{}", args.events));
    fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let input = dir.join("events.jsonl");
    {
        let workload = Workload {
            events: args.events,
            ..Workload::default()
        };
        let mut file = BufWriter::new(fs::File::create(&input).map_err(|e| e.to_string())?);
        write_events(&workload, &mut file).map_err(|e| e.to_string())?;
        file.flush().map_err(|e| e.to_string())?;
    }
    let (_emulator, endpoint) = start_kinesalite(&root)?;
    let stream = "bench";
    let put_seconds = produce(&args, &dir, &endpoint, stream, "events.jsonl", None)?;
    println!(
        "produced {} events into {} shards in {put_seconds:.2} s ({:.0} records/s)",
        args.events,
        args.shards,
        args.events as f64 / put_seconds
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let mut loop_best = f64::MAX;
    for _ in 0..2 {
        let started = Instant::now();
        let read = runtime.block_on(plain_loop(&endpoint, stream))?;
        let seconds = started.elapsed().as_secs_f64();
        if read != args.events {
            return Err(format!(
                "the plain loop read {read} records, expected {}",
                args.events
            ));
        }
        loop_best = loop_best.min(seconds);
    }

    let mut job = ClickJob::new(
        "kinesis-bench",
        ClickSource::Kinesis {
            stream: stream.to_string(),
            endpoint: endpoint.to_string(),
            settings: "start_at = \"trim_horizon\"\nstop_at = \"latest\"".into(),
        },
    );
    job.checkpoint_interval = Some("10s".into());
    job.aggregates = r#"events = "count()", revenue = "sum(amount)""#.into();
    let job = job.toml();
    fs::write(dir.join("job.toml"), job).map_err(|e| e.to_string())?;
    let pool = args.decode_threads.to_string();
    let variants = [
        ("kflow run, decoding on 1 thread", "1"),
        ("kflow run, a pool of N decoders", pool.as_str()),
    ];
    // Best of 2 each, alternating: (seconds, CPU seconds).
    let mut best = [(f64::MAX, 0.0); 2];
    for _ in 0..2 {
        for (i, (_, threads)) in variants.iter().enumerate() {
            let cpu = kflow_benches::measure::children_cpu();
            let argv = ["run", "--reset", "job.toml", "--decode-threads", threads];
            let (seconds, stderr) = run_kflow(&args.kflow, &argv, &dir)?;
            let cpu = kflow_benches::measure::children_cpu() - cpu;
            let read = stderr
                .lines()
                .find(|l| l.contains("records read"))
                .and_then(|l| l.split_whitespace().nth(2))
                .map(|n| n.replace(',', ""))
                .and_then(|n| n.parse::<u64>().ok());
            if read != Some(args.events) {
                return Err(format!(
                    "kflow read {read:?} records, expected {}:\n{stderr}",
                    args.events
                ));
            }
            if seconds < best[i].0 {
                best[i] = (seconds, cpu);
            }
        }
    }
    let rate = |s: f64| args.events as f64 / s;
    println!(
        "\nreading {} records from kinesalite ({} shards), best of 2:",
        args.events, args.shards
    );
    println!(
        "  {:<40}{:>9}{:>14}{:>8}{:>12}",
        "reader", "seconds", "records/s", "CPU s", "/ loop"
    );
    println!(
        "  {:<40}{:>9.2}{:>14.0}{:>8}{:>12}",
        "plain GetRecords loop",
        loop_best,
        rate(loop_best),
        "-",
        "-"
    );
    for ((name, _), (seconds, cpu)) in variants.iter().zip(best) {
        let name = name.replace('N', &pool);
        println!(
            "  {name:<40}{seconds:>9.2}{:>14.0}{cpu:>8.2}{:>11.1}%",
            rate(seconds),
            100.0 * loop_best / seconds
        );
    }
    Ok(())
}
