//! kflow's end-to-end test helpers: run the real `kflow` binary on a job in
//! a scratch folder and compare what it wrote with golden files.
//!
//! The one idea: a golden case is data, not code. `tests/golden/<case>/`
//! holds a `job.toml`, its inputs and the expected outputs, computed by an
//! independent Python reference (`tests/golden/reference.py`), never by
//! kflow. [`run_case`] copies a case to a temporary folder, runs
//! `kflow run job.toml` there and checks every output with
//! [`compare_jsonl`]: rows as a multiset, numbers within a relative
//! tolerance. Crash tests reuse the same pieces ([`golden::StagedCase`],
//! [`process::run_with_timeout`]) to kill and restart kflow mid-run.
//! Kinesis tests run against emulators started by [`kinesis::Emulator`];
//! both drive jobs in scratch folders through [`job::JobDir`] and build
//! their job files from [`fixtures`]. Observability tests scrape kflow with
//! a real Prometheus server ([`prometheus::Prometheus`]).
//!
//! Test-only code: panicking with a message is how it reports.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod compare;
pub mod dynamo;
pub mod fixtures;
pub mod golden;
pub mod job;
pub mod kinesis;
pub mod kpl;
pub mod process;
pub mod prometheus;
pub mod proxy;
pub mod s3;

pub use compare::{compare_jsonl, Mismatch, RowKind};
pub use golden::{run_case, Case, RunMode, StagedCase};
pub use job::JobDir;
pub use process::kflow_bin;
