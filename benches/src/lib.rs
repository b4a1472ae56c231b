//! kflow benchmarks: the deterministic workload generator and the
//! clickstream job shared by the criterion benches, the end-to-end runner
//! and the end-to-end tests.

pub mod jobs;
pub mod workload;
