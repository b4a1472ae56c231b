//! kflow benchmarks: the deterministic workload generator shared by the
//! criterion benches, the end-to-end runner and the crash tests.

pub mod workload;
