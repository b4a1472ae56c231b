//! kflow: windowed stream processing from a job file, with keyed state in
//! RocksDB.
//!
//! The `kflow` binary (`main.rs`) is a thin CLI over this library:
//! [`kflow_jobs`] compiles a job file into a plan, [`runtime::run`] builds
//! the plan's tasks and runs them. Data flows source -> (fused filters) ->
//! window partitions -> sinks in batches over bounded channels, with
//! watermarks in-band.

pub mod error;
pub mod explain;
pub mod inspect;
pub mod json;
pub mod kinesis;
pub mod metrics;
pub mod operators;
pub mod produce;
pub mod runtime;
pub mod sinks;
pub mod sources;

pub use error::EngineError;
pub use metrics::RunSummary;
pub use runtime::{run, RunOptions};
