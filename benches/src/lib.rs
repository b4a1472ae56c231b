//! kflow benchmarks: shared helpers for the criterion benches and the end-to-end runner.
