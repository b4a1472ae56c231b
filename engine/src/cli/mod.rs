//! The commands besides `kflow run`: `produce` (a file into a Kinesis
//! stream), `plan` (the compiled DAG; with `--against`, whether
//! the job can resume from a checkpoint), `checkpoints` (what a state
//! directory holds), `top` (a running job's live view), `test` (a job's
//! test cases), `consumers` (a stream's enhanced fan-out consumers) and
//! `cluster status` (a cluster job's workers and leases).

pub mod against;
pub mod checkpoints;
pub mod cluster;
pub mod consumers;
pub mod plan;
pub mod produce;
pub mod test;
pub mod top;
