//! The `kflow` command line: `run`, `validate`, `plan` and `checkpoints`
//! over job files, and `produce` to put JSON lines into a Kinesis stream.
//!
//! Exit codes: 0 success, 1 runtime failure, 2 invalid job file or usage.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use kflow::cli::{checkpoints, consumers, plan as explain, produce, top};
use kflow::error::causes;
use kflow::RunOptions;
use kflow_jobs::JobError;
use signal_hook::consts::{SIGINT, SIGTERM};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// mimalloc returns freed memory to the OS and keeps no per-thread arenas
/// of it: a window cache that evicts after each checkpoint shrinks for real.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Allocator settings for a long-running job, given as the allocators' own
/// environment variables (they are read once, as the process starts):
/// mimalloc hands freed pages back to the OS at once instead of a second
/// later, and glibc malloc, which RocksDB's C++ allocates with, keeps two
/// arenas instead of eight per core. A job whose state spills frees tens of
/// megabytes at every early checkpoint; with these its peak RSS is about a
/// third lower at no measured cost in speed (docs/performance.md, "State
/// larger than memory"). A value the user set wins.
const ALLOCATOR_ENV: [(&str, &str); 2] = [("MIMALLOC_PURGE_DELAY", "0"), ("MALLOC_ARENA_MAX", "2")];

/// Runs this program again, same arguments and pid, with every
/// [`ALLOCATOR_ENV`] variable that is not set yet (once set, this returns
/// at once, so there is one re-exec at most). If the re-exec fails, kflow
/// goes on with the allocators' defaults.
fn tune_allocators() {
    let missing: Vec<(&str, &str)> = ALLOCATOR_ENV
        .into_iter()
        .filter(|(name, _)| std::env::var_os(name).is_none())
        .collect();
    if missing.is_empty() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let mut again = std::process::Command::new(exe);
    if let Some(arg0) = args.next() {
        again.arg0(arg0);
    }
    again.args(args).envs(missing);
    // Returns only when the exec failed.
    let _failed = again.exec();
}

/// Windowed stream processing from a job file, exactly once.
#[derive(Debug, Parser)]
#[command(name = "kflow", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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
enum ConsumersCommand {
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
struct StreamArgs {
    /// Stream name (or ARN).
    #[arg(long)]
    stream: String,
    /// Endpoint URL (an emulator); default: the AWS chain.
    #[arg(long)]
    endpoint: Option<String>,
    /// Region; default: the AWS chain.
    #[arg(long)]
    region: Option<String>,
}

impl StreamArgs {
    fn parts(&self) -> (kflow::aws::StreamId, kflow::aws::Endpoint) {
        let endpoint = kflow::aws::Endpoint {
            region: self.region.clone(),
            url: self.endpoint.clone(),
        };
        (kflow::aws::StreamId::parse(&self.stream), endpoint)
    }
}

/// `kflow cluster`.
#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// Workers, the shards and key groups each holds, hand-overs under
    /// way, and each lease's last reported progress.
    Status {
        /// The job file.
        job: PathBuf,
    },
}

/// `kflow run`.
#[derive(Debug, Args)]
struct RunArgs {
    /// The job file.
    job: PathBuf,
    /// Partitions per window operator (default: half the cores, at least 1).
    #[arg(short, long)]
    parallelism: Option<usize>,
    /// Threads decoding each bounded file source without `dedup`, in
    /// blocks handed on in order (1: the source's own thread; default: the
    /// cores but one, when that is 2 or more).
    #[arg(long, value_name = "N")]
    decode_threads: Option<usize>,
    /// Print nothing but errors (no status line, no summary).
    #[arg(short, long)]
    quiet: bool,
    /// Discard the job's checkpoint and state, and start from empty state.
    #[arg(long)]
    reset: bool,
    /// Override the job's checkpoint_interval (`1s`, `10s`, ...; `off`:
    /// only the memory budget takes checkpoints).
    #[arg(long, value_name = "DURATION|off", value_parser = parse_interval)]
    checkpoint_interval: Option<Interval>,
    /// After SIGTERM or SIGINT, how long the final checkpoint may take
    /// before kflow exits without it (as after a crash: still exact).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = kflow_jobs::duration::parse_duration)]
    shutdown_timeout: std::time::Duration,
    /// Serve /metrics, /healthz, /readyz and /status here (overrides the
    /// job's `metrics`; like `127.0.0.1:9464`).
    #[arg(long, value_name = "IP:PORT")]
    metrics: Option<std::net::SocketAddr>,
    /// Restore checkpoint N from the job's checkpoint_store, replacing the
    /// local state (a rollback; `kflow checkpoints` lists them).
    #[arg(long, value_name = "N")]
    from_checkpoint: Option<u64>,
    /// Run one part of a cluster job: `shard/ID` (read one source shard
    /// into the shuffle) or `group/N` (own one key group). A worker runs
    /// its leases' parts this way.
    #[arg(long, value_name = "LEASE", hide = true)]
    part: Option<String>,
    /// This worker's id in a cluster job's lease table, one word (default:
    /// host name and process id).
    #[arg(long, value_name = "ID")]
    worker_id: Option<String>,
}

/// `kflow top`.
#[derive(Debug, Args)]
struct TopArgs {
    /// The job file (its `[job] metrics` address is read).
    job: PathBuf,
    /// The job's metrics address, when the job file does not name it.
    #[arg(long, value_name = "IP:PORT")]
    metrics: Option<std::net::SocketAddr>,
    /// Print one snapshot (rates over one second) and exit.
    #[arg(long)]
    once: bool,
}

/// `kflow produce`.
#[derive(Debug, Args)]
struct ProduceArgs {
    /// Stream name (or ARN).
    #[arg(long)]
    stream: String,
    /// The field holding each record's partition key (dotted path).
    #[arg(long)]
    partition_key: String,
    /// Endpoint URL (an emulator); default: the AWS chain.
    #[arg(long)]
    endpoint: Option<String>,
    /// Region; default: the AWS chain.
    #[arg(long)]
    region: Option<String>,
    /// Records per second, at most (`500` or `500/s`).
    #[arg(long, value_name = "N/s", value_parser = parse_rate)]
    rate: Option<f64>,
    /// Create the stream with this many shards if it does not exist.
    #[arg(long, value_name = "SHARDS")]
    create_shards: Option<i32>,
    /// Print nothing but errors.
    #[arg(short, long)]
    quiet: bool,
    /// The JSON-lines file.
    file: PathBuf,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum PlanFormat {
    /// Indented text.
    Text,
    /// Graphviz dot.
    Dot,
}

/// Loads a job, printing its errors and returning exit code 2 when invalid.
fn load(path: &std::path::Path) -> Result<kflow_jobs::JobPlan, ExitCode> {
    match kflow_jobs::load(path) {
        Ok(plan) => Ok(plan),
        Err(e @ JobError::Invalid { .. }) => {
            eprint!("{}", e.render());
            Err(ExitCode::from(2))
        }
        Err(e) => {
            eprintln!("kflow: {}", causes(&e));
            Err(ExitCode::from(2))
        }
    }
}

/// Prints a report command's text (exit 0), or its error (exit 1).
fn print_report(report: Result<String, kflow::EngineError>) -> ExitCode {
    match report {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kflow: {}", causes(&e));
            ExitCode::from(1)
        }
    }
}

fn main() -> ExitCode {
    tune_allocators();
    let cli = Cli::parse();
    let quiet = match &cli.command {
        Command::Run(args) => args.quiet,
        Command::Produce(args) => args.quiet,
        // Each case's run would log its start: only warnings and errors.
        Command::Test { .. } => true,
        _ => false,
    };
    init_logging(quiet);
    match cli.command {
        Command::Validate { job } => match load(&job) {
            Ok(plan) => {
                println!("{}: ok ({} nodes)", job.display(), plan.nodes.len());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Checkpoints { job } => match load(&job) {
            Ok(plan) => print_report(
                checkpoints::checkpoints(&plan)
                    .and_then(|local| Ok(local + &checkpoints::store_report(&plan)?)),
            ),
            Err(code) => code,
        },
        Command::Cluster {
            command: ClusterCommand::Status { job },
        } => match load(&job) {
            Ok(plan) => print_report(kflow::cli::cluster::status(&plan)),
            Err(code) => code,
        },
        Command::Plan {
            job,
            format: _,
            against: Some(target),
        } => match load(&job) {
            Ok(plan) => against_command(&plan, &target, &|| kflow_jobs::load(&job).ok()),
            Err(code) => code,
        },
        Command::Plan { job, format, .. } => match load(&job) {
            Ok(plan) => {
                match format {
                    PlanFormat::Text => print!("{}", explain::text(&plan)),
                    PlanFormat::Dot => print!("{}", explain::dot(&plan)),
                }
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Test {
            job,
            parallelism,
            phase: Some(phase),
            ..
        } => match load(&job) {
            Ok(plan) => phase_command(&job, &plan, &phase, parallelism),
            Err(code) => code,
        },
        Command::Test {
            job,
            tests,
            parallelism,
            phase: None,
        } => match load(&job) {
            Ok(plan) => test_command(&job, &plan, &tests, parallelism),
            Err(code) => code,
        },
        Command::Consumers { command } => consumers_command(command),
        Command::Produce(args) => produce_command(args),
        Command::Top(args) => top_command(args),
        Command::Run(args) => run_command(args),
    }
}

/// Logs to stderr, filtered by `KFLOW_LOG` (default: info, warn when
/// quiet); `KFLOW_LOG_FORMAT=json` writes one JSON object per event, for
/// log collectors.
fn init_logging(quiet: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KFLOW_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(if quiet { "warn" } else { "info" })
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("KFLOW_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().with_current_span(false).init();
    } else {
        builder
            .with_target(false)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .without_time()
            .init();
    }
}

/// `kflow plan --against`: prints the verdicts; exit 0 when `run` would
/// resume, 1 when it would refuse, 3 when the checkpoint cannot be read.
fn against_command(
    plan: &kflow_jobs::JobPlan,
    target: &str,
    reload: &dyn Fn() -> Option<kflow_jobs::JobPlan>,
) -> ExitCode {
    let target = kflow::cli::against::Target::parse(target);
    match kflow::cli::against::against(plan, &target, reload) {
        Ok(report) => {
            print!("{}", report.text);
            if report.compatible {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("kflow: {}", causes(&e));
            ExitCode::from(3)
        }
    }
}

/// `kflow test`: exit 0 when every case passes, 1 when one fails or
/// cannot run, 2 for an invalid test file or none found.
fn test_command(
    job: &std::path::Path,
    plan: &kflow_jobs::JobPlan,
    named: &[PathBuf],
    parallelism: usize,
) -> ExitCode {
    use kflow::cli::test;
    let files = test::test_files(job, named);
    if files.is_empty() {
        eprintln!(
            "kflow: no test files for {}: write {} next to it, or name the files",
            job.display(),
            job.with_extension("test.toml").display()
        );
        return ExitCode::from(2);
    }
    let files = match test::read_files(plan, &files) {
        Ok(files) => files,
        Err(e) => {
            eprint!("{}", e.render());
            return ExitCode::from(2);
        }
    };
    // A case's runs before its restarts are this program again, killed.
    let phase = |file: &std::path::Path, case: usize, k: usize, dir: &std::path::Path| {
        let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("kflow"));
        let mut command = std::process::Command::new(exe);
        command
            .arg("test")
            .arg(job)
            .arg("--parallelism")
            .arg(parallelism.to_string())
            .arg("--phase")
            .arg(file)
            .arg(case.to_string())
            .arg(k.to_string())
            .arg(dir);
        command
    };
    let printed = test::run_all(job, &files, parallelism, &phase, |text| {
        print!("{text}");
        let _ = std::io::Write::flush(&mut std::io::stdout());
    });
    match printed {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("kflow: {}", causes(&e));
            ExitCode::from(1)
        }
    }
}

/// `kflow test --phase FILE N K DIR`: one phase of a case with restarts,
/// run until its parent kills it.
fn phase_command(
    job: &std::path::Path,
    plan: &kflow_jobs::JobPlan,
    args: &[String],
    parallelism: usize,
) -> ExitCode {
    let [file, case, k, dir] = args else {
        return ExitCode::from(2);
    };
    let (Ok(case), Ok(k)) = (case.parse::<usize>(), k.parse::<usize>()) else {
        return ExitCode::from(2);
    };
    let read = kflow_jobs::testfile::read(std::path::Path::new(file), plan);
    let Some(case) = read.ok().and_then(|f| f.cases.into_iter().nth(case)) else {
        eprintln!("kflow: no case {case} in {file}");
        return ExitCode::from(2);
    };
    let dir = std::path::Path::new(dir);
    match kflow::cli::test::run_phase(job, &case, k, dir, parallelism) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kflow: {}", causes(&e));
            ExitCode::from(1)
        }
    }
}

fn top_command(args: TopArgs) -> ExitCode {
    let plan = match load(&args.job) {
        Ok(plan) => plan,
        Err(code) => return code,
    };
    let Some(addr) = args.metrics.or(plan.metrics) else {
        eprintln!(
            "kflow: top: job `{}` serves no metrics: set `[job] metrics = \"127.0.0.1:9464\"` or pass --metrics",
            plan.name
        );
        return ExitCode::from(2);
    };
    let mut before = None;
    loop {
        let now = match top::fetch(addr) {
            Ok(report) => report,
            Err(e) => {
                eprintln!("kflow: top: {}", causes(&e));
                return ExitCode::from(1);
            }
        };
        if args.once && before.is_none() {
            // Rates need a second snapshot.
            before = Some(now);
            std::thread::sleep(std::time::Duration::from_secs(1));
            continue;
        }
        let screen = top::render(&now, before.as_ref());
        if args.once {
            print!("{screen}");
            return ExitCode::SUCCESS;
        }
        print!("\x1b[H\x1b[2J{screen}");
        before = Some(now);
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

fn consumers_command(command: ConsumersCommand) -> ExitCode {
    let report = match &command {
        ConsumersCommand::List(args) => {
            let (stream, endpoint) = args.parts();
            consumers::list(&stream, &endpoint)
        }
        ConsumersCommand::Deregister { stream, name } => {
            let (stream, endpoint) = stream.parts();
            consumers::deregister(&stream, &endpoint, name)
        }
    };
    match report {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kflow: consumers: {}", causes(&e));
            ExitCode::from(1)
        }
    }
}

fn produce_command(args: ProduceArgs) -> ExitCode {
    let options = produce::ProduceOptions {
        stream: args.stream,
        partition_key: args.partition_key,
        file: args.file,
        endpoint: kflow::aws::Endpoint {
            region: args.region,
            url: args.endpoint,
        },
        rate: args.rate,
        progress: !args.quiet,
        create_shards: args.create_shards,
    };
    match produce::produce(&options) {
        Ok(summary) => {
            if !args.quiet {
                eprint!("{}", summary.render(&options.stream));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kflow: produce: {}", causes(&e));
            ExitCode::from(1)
        }
    }
}

fn run_command(args: RunArgs) -> ExitCode {
    let plan = match load(&args.job) {
        Ok(plan) => plan,
        Err(code) => return code,
    };
    let part = match (&plan.cluster, &args.part) {
        (Some(_), None) => return run_worker(&plan, &args),
        (None, Some(_)) => {
            eprintln!(
                "kflow: {}: --part needs a job with [job.cluster]",
                args.job.display()
            );
            return ExitCode::from(2);
        }
        (Some(_), Some(lease)) => match kflow::cluster::Part::from_lease(lease) {
            Some(part) => Some(part),
            None => {
                eprintln!("kflow: --part {lease}: expected shard/ID or group/N");
                return ExitCode::from(2);
            }
        },
        (None, None) => None,
    };
    let mut options = RunOptions::default();
    let plan = match &part {
        Some(part) => {
            // A part stops when its worker is gone or its lease lapsed.
            kflow::cluster::fence::watch(part.fence_path(&plan.state_dir));
            options.progress = Some(part.progress_path(&plan.state_dir));
            part.plan(plan)
        }
        None => plan,
    };
    if let Some(p) = args.parallelism {
        options.parallelism = p;
    }
    if let Some(n) = args.decode_threads {
        options.decode_threads = n;
    }
    options.status = !args.quiet;
    options.reset = args.reset;
    options.metrics = args.metrics;
    options.from_checkpoint = args.from_checkpoint;
    options.part = part;
    options.checkpoint_interval = args.checkpoint_interval.map(|i| match i {
        Interval::Off => None,
        Interval::Every(d) => Some(d),
    });
    match stop_on_signals(args.shutdown_timeout) {
        Ok(stop) => options.stop = Some(stop),
        Err(e) => {
            eprintln!("kflow: cannot handle SIGTERM and SIGINT: {e}");
            return ExitCode::from(1);
        }
    }
    match run(&plan, &options, args.quiet) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kflow: {}", causes(e.as_ref()));
            ExitCode::from(1)
        }
    }
}

/// `kflow run` on a cluster job: a worker that leases parts and runs them.
fn run_worker(plan: &kflow_jobs::JobPlan, args: &RunArgs) -> ExitCode {
    let stop = match stop_on_signals(args.shutdown_timeout) {
        Ok(stop) => stop,
        Err(e) => {
            eprintln!("kflow: cannot handle SIGTERM and SIGINT: {e}");
            return ExitCode::from(1);
        }
    };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("kflow: cannot find this program to run a job's parts: {e}");
            return ExitCode::from(1);
        }
    };
    let id = args
        .worker_id
        .clone()
        .unwrap_or_else(kflow::runtime::worker::default_worker_id);
    if id.is_empty() || id.contains(char::is_whitespace) {
        eprintln!("kflow: --worker-id {id:?}: a worker id is one word, without spaces");
        return ExitCode::from(2);
    }
    let options = kflow::runtime::worker::WorkerOptions {
        exe,
        job: args.job.clone(),
        id,
        stop,
    };
    match kflow::runtime::worker::run_worker(plan, &options) {
        Ok(summary) => {
            if !args.quiet {
                eprintln!(
                    "kflow: worker {} done: {} parts started, {} finished, {} handed back, {} lost",
                    options.id,
                    summary.started,
                    summary.finished,
                    summary.handed_back,
                    summary.lost
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kflow: worker {}: {}", options.id, causes(&e));
            ExitCode::from(1)
        }
    }
}

fn run(plan: &kflow_jobs::JobPlan, options: &RunOptions, quiet: bool) -> anyhow::Result<()> {
    let summary =
        kflow::run(plan, options).with_context(|| format!("job `{}` failed", plan.name))?;
    if !quiet {
        eprint!("{}", summary.render());
    }
    Ok(())
}

/// The first SIGTERM or SIGINT asks the run to stop gracefully (a final
/// checkpoint, then exit 0); a second one, or `timeout` passing without
/// that checkpoint, exits at once with status 1, as a crash would: the
/// last checkpoint is still exact.
fn stop_on_signals(timeout: std::time::Duration) -> std::io::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [SIGTERM, SIGINT] {
        // Registered first: it sees the flag as the previous signal left it.
        signal_hook::flag::register_conditional_shutdown(signal, 1, stop.clone())?;
        signal_hook::flag::register(signal, stop.clone())?;
    }
    let watched = stop.clone();
    std::thread::Builder::new()
        .name("shutdown timeout".into())
        .spawn(move || {
            while !watched.load(Ordering::Acquire) {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            std::thread::sleep(timeout);
            eprintln!(
                "kflow: no final checkpoint within {} of the stop signal: exiting without one \
                 (a restart resumes from the last checkpoint)",
                kflow_jobs::duration::format_duration(timeout.as_millis() as i64)
            );
            std::process::exit(1);
        })?;
    Ok(stop)
}

/// `--checkpoint-interval`: a duration, or `off`.
#[derive(Debug, Clone, Copy)]
enum Interval {
    /// Only the memory budget takes checkpoints.
    Off,
    /// Every this long.
    Every(std::time::Duration),
}

fn parse_interval(text: &str) -> Result<Interval, String> {
    match text {
        "off" => Ok(Interval::Off),
        _ => kflow_jobs::duration::parse_duration(text).map(Interval::Every),
    }
}

/// `--rate`: `500` or `500/s`, more than zero.
fn parse_rate(text: &str) -> Result<f64, String> {
    match text.trim_end_matches("/s").parse::<f64>() {
        Ok(r) if r > 0.0 && r.is_finite() => Ok(r),
        _ => Err("expected a positive number of records per second, like 500/s".into()),
    }
}
