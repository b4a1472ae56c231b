//! The `kflow` command line: `run`, `validate`, `plan` and `checkpoints`
//! over job files, and `produce` to put JSON lines into a Kinesis stream.
//!
//! Exit codes: 0 success, 1 runtime failure, 2 invalid job file or usage.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use kflow::cli::{checkpoints, consumers, plan as explain, produce, top};

mod args;
use args::{
    Cli, ClusterCommand, Command, ConsumersCommand, Interval, PlanFormat, ProduceArgs, RunArgs,
    TopArgs,
};
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
/// larger than memory"). And mimalloc asks for no transparent huge pages:
/// with the kernel's usual `defrag=madvise`, a fault on a huge page mimalloc
/// asked for compacts memory synchronously to find 2 MB, which stalled some
/// runs by a third and more (W2 median 2.06 -> 1.85 s, peak RSS 140 -> 83
/// MB; docs/performance/runtime.md, "No transparent huge pages"). A value
/// the user set wins.
const ALLOCATOR_ENV: [(&str, &str); 3] = [
    ("MIMALLOC_PURGE_DELAY", "0"),
    ("MIMALLOC_ALLOW_THP", "0"),
    ("MALLOC_ARENA_MAX", "2"),
];

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
