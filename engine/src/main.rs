//! The `kflow` command line: `run`, `validate` and `plan` over job files.
//!
//! Exit codes: 0 success, 1 runtime failure, 2 invalid job file or usage.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use kflow::{explain, RunOptions};
use kflow_jobs::JobError;

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
    Run {
        /// The job file.
        job: PathBuf,
        /// Partitions per window operator (default: half the cores, at least 1).
        #[arg(short, long)]
        parallelism: Option<usize>,
        /// Print nothing but errors (no status line, no summary).
        #[arg(short, long)]
        quiet: bool,
    },
    /// Check a job file and report every error with its line and column.
    Validate {
        /// The job file.
        job: PathBuf,
    },
    /// Print the compiled operator DAG.
    Plan {
        /// The job file.
        job: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
        format: PlanFormat,
    },
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
            eprintln!("kflow: {e}");
            Err(ExitCode::from(2))
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate { job } => match load(&job) {
            Ok(plan) => {
                println!("{}: ok ({} nodes)", job.display(), plan.nodes.len());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Plan { job, format } => match load(&job) {
            Ok(plan) => {
                match format {
                    PlanFormat::Text => print!("{}", explain::text(&plan)),
                    PlanFormat::Dot => print!("{}", explain::dot(&plan)),
                }
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Run { job, parallelism, quiet } => {
            let plan = match load(&job) {
                Ok(plan) => plan,
                Err(code) => return code,
            };
            let mut options = RunOptions::default();
            if let Some(p) = parallelism {
                options.parallelism = p;
            }
            options.status = !quiet;
            match run(&plan, &options, quiet) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("kflow: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

fn run(plan: &kflow_jobs::JobPlan, options: &RunOptions, quiet: bool) -> anyhow::Result<()> {
    let summary = kflow::run(plan, options).with_context(|| format!("job `{}` failed", plan.name))?;
    if !quiet {
        eprint!("{}", summary.render());
    }
    Ok(())
}
