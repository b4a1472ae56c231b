//! The command line: every subcommand and its options (clap), and the
//! parsers of option values. `main.rs` dispatches on them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Windowed stream processing from a job file, exactly once.
#[derive(Debug, Parser)]
#[command(name = "kflow", version, about, long_about = None)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run a job until its sources end (or forever, when a source follows).
    Run(RunArgs),
    /// Check a job file and report every error with its line and column.
    Validate {
        /// The job file.
        job: PathBuf,
    },
    /// Show the last checkpoint: positions, watermarks, open windows, sinks.
    Checkpoints {
        /// The job file.
        job: PathBuf,
    },
    /// Put the JSON lines of a file into a Kinesis stream (PutRecords
    /// batches, per-key order, partial failures retried).
    Produce(ProduceArgs),
    /// Watch a running job: rates, watermarks, lag, state, hot keys, and
    /// what holds each window's watermark back (reads its metrics endpoint).
    Top(TopArgs),
    /// A stream's enhanced fan-out consumers (`reader = "efo"` registers
    /// one per job and never removes it).
    Consumers {
        #[command(subcommand)]
        command: ConsumersCommand,
    },
    /// A cluster job's workers and leases (reads its lease table).
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Run a job's test cases: `JOB_STEM.test.toml` (and
    /// `JOB_STEM.*.test.toml`) next to the job, or the files named. Exit 0
    /// when every case passes, 1 when one fails, 2 for an invalid job or
    /// test file.
    Test {
        /// The job file.
        job: PathBuf,
        /// Test files (default: found next to the job).
        tests: Vec<PathBuf>,
        /// Partitions per window (the result must not depend on it).
        #[arg(short, long, default_value_t = 1)]
        parallelism: usize,
        /// Internal: run phase K (up to restart K) of case N of the test
        /// file in the scratch folder, until killed (`restart` steps).
        #[arg(long, hide = true, num_args = 4, value_names = ["FILE", "N", "K", "DIR"])]
        phase: Option<Vec<String>>,
    },
    /// Print the compiled operator DAG.
    Plan {
        /// The job file.
        job: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
        format: PlanFormat,
        /// Instead of the DAG: whether the job can resume from the last
        /// checkpoint in this state directory or `s3://` checkpoint store,
        /// node by node (exit 0 compatible, 1 incompatible, 3 when the
        /// checkpoint cannot be read).
        #[arg(long, value_name = "STATE_DIR|s3://STORE")]
        against: Option<String>,
    },
}

/// `kflow consumers`.
#[derive(Debug, Subcommand)]
pub(crate) enum ConsumersCommand {
    /// Every consumer registered on the stream: name, status, ARN.
    List(StreamArgs),
    /// Remove a consumer (its subscriptions end; a job reading with it
    /// registers it again on its next start).
    Deregister {
        #[command(flatten)]
        stream: StreamArgs,
        /// The consumer's name.
        #[arg(long)]
        name: String,
    },
}

/// A stream and where to reach it.
#[derive(Debug, Args)]
pub(crate) struct StreamArgs {
    /// Stream name (or ARN).
    #[arg(long)]
    pub(crate) stream: String,
    /// Endpoint URL (an emulator); default: the AWS chain.
    #[arg(long)]
    pub(crate) endpoint: Option<String>,
    /// Region; default: the AWS chain.
    #[arg(long)]
    pub(crate) region: Option<String>,
}

impl StreamArgs {
    /// The stream and its endpoint.
    pub(crate) fn parts(&self) -> (kflow::aws::StreamId, kflow::aws::Endpoint) {
        let endpoint = kflow::aws::Endpoint {
            region: self.region.clone(),
            url: self.endpoint.clone(),
        };
        (kflow::aws::StreamId::parse(&self.stream), endpoint)
    }
}

/// `kflow cluster`.
#[derive(Debug, Subcommand)]
pub(crate) enum ClusterCommand {
    /// Workers, the shards and key groups each holds, hand-overs under
    /// way, and each lease's last reported progress.
    Status {
        /// The job file.
        job: PathBuf,
    },
}

/// `kflow run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The job file.
    pub(crate) job: PathBuf,
    /// Partitions per window operator (default: half the cores, at least 1).
    #[arg(short, long)]
    pub(crate) parallelism: Option<usize>,
    /// Threads decoding each bounded file source, in blocks handed on in
    /// order (1: the source's own thread; default: one per core on two
    /// cores or more).
    #[arg(long, value_name = "N")]
    pub(crate) decode_threads: Option<usize>,
    /// Print nothing but errors (no status line, no summary).
    #[arg(short, long)]
    pub(crate) quiet: bool,
    /// Discard the job's checkpoint and state, and start from empty state.
    #[arg(long)]
    pub(crate) reset: bool,
    /// Override the job's checkpoint_interval (`1s`, `10s`, ...; `off`:
    /// only the memory budget takes checkpoints).
    #[arg(long, value_name = "DURATION|off", value_parser = parse_interval)]
    pub(crate) checkpoint_interval: Option<Interval>,
    /// After SIGTERM or SIGINT, how long the final checkpoint may take
    /// before kflow exits without it (as after a crash: still exact).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = kflow_jobs::duration::parse_duration)]
    pub(crate) shutdown_timeout: std::time::Duration,
    /// Serve /metrics, /healthz, /readyz and /status here (overrides the
    /// job's `metrics`; like `127.0.0.1:9464`).
    #[arg(long, value_name = "IP:PORT")]
    pub(crate) metrics: Option<std::net::SocketAddr>,
    /// Restore checkpoint N from the job's checkpoint_store, replacing the
    /// local state (a rollback; `kflow checkpoints` lists them).
    #[arg(long, value_name = "N")]
    pub(crate) from_checkpoint: Option<u64>,
    /// Run one part of a cluster job: `shard/ID` (read one source shard
    /// into the shuffle) or `group/N` (own one key group). A worker runs
    /// its leases' parts this way.
    #[arg(long, value_name = "LEASE", hide = true)]
    pub(crate) part: Option<String>,
    /// This worker's id in a cluster job's lease table, one word (default:
    /// host name and process id).
    #[arg(long, value_name = "ID")]
    pub(crate) worker_id: Option<String>,
}

/// `kflow top`.
#[derive(Debug, Args)]
pub(crate) struct TopArgs {
    /// The job file (its `[job] metrics` address is read).
    pub(crate) job: PathBuf,
    /// The job's metrics address, when the job file does not name it.
    #[arg(long, value_name = "IP:PORT")]
    pub(crate) metrics: Option<std::net::SocketAddr>,
    /// Print one snapshot (rates over one second) and exit.
    #[arg(long)]
    pub(crate) once: bool,
}

/// `kflow produce`.
#[derive(Debug, Args)]
pub(crate) struct ProduceArgs {
    /// Stream name (or ARN).
    #[arg(long)]
    pub(crate) stream: String,
    /// The field holding each record's partition key (dotted path).
    #[arg(long)]
    pub(crate) partition_key: String,
    /// Endpoint URL (an emulator); default: the AWS chain.
    #[arg(long)]
    pub(crate) endpoint: Option<String>,
    /// Region; default: the AWS chain.
    #[arg(long)]
    pub(crate) region: Option<String>,
    /// Records per second, at most (`500` or `500/s`).
    #[arg(long, value_name = "N/s", value_parser = parse_rate)]
    pub(crate) rate: Option<f64>,
    /// Create the stream with this many shards if it does not exist.
    #[arg(long, value_name = "SHARDS")]
    pub(crate) create_shards: Option<i32>,
    /// Print nothing but errors.
    #[arg(short, long)]
    pub(crate) quiet: bool,
    /// The JSON-lines file.
    pub(crate) file: PathBuf,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum PlanFormat {
    /// Indented text.
    Text,
    /// Graphviz dot.
    Dot,
}

/// `--checkpoint-interval`: a duration, or `off`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Interval {
    /// Only the memory budget takes checkpoints.
    Off,
    /// Every this long.
    Every(std::time::Duration),
}

pub(crate) fn parse_interval(text: &str) -> Result<Interval, String> {
    match text {
        "off" => Ok(Interval::Off),
        _ => kflow_jobs::duration::parse_duration(text).map(Interval::Every),
    }
}

/// `--rate`: `500` or `500/s`, more than zero.
pub(crate) fn parse_rate(text: &str) -> Result<f64, String> {
    match text.trim_end_matches("/s").parse::<f64>() {
        Ok(r) if r > 0.0 && r.is_finite() => Ok(r),
        _ => Err("expected a positive number of records per second, like 500/s".into()),
    }
}
