//! kflow: windowed stream processing from a job file, with keyed state in
//! RocksDB.
//!
//! The `kflow` binary (`main.rs`) is a thin CLI over this library:
//! [`kflow_jobs`] compiles a job file into a plan, [`runtime::run`] builds
//! the plan's tasks and runs them. Data flows source -> (fused filters) ->
//! window partitions -> sinks in batches over bounded channels, with
//! watermarks in-band.
//!
//! Layers, each importing only those below it:
//!
//! ```text
//! cli, main.rs          commands
//! runtime               the assembler: topology, run, coordinator
//! sources  operators  sinks  cluster (leases)
//! dataflow  aws         what every task shares; AWS clients
//! kflow-jobs  kflow-state
//! ```

pub mod aws;
pub mod cli;
pub mod cluster;
pub mod dataflow;
pub mod error;
pub mod operators;
pub mod runtime;
pub mod shuffle;
pub mod sinks;
pub mod sources;

pub use error::EngineError;
pub use runtime::summary::RunSummary;
pub use runtime::{run, RunOptions};
