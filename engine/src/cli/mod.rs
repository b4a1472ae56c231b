//! The commands besides `kflow run`: `produce` (a file into a Kinesis
//! stream), `plan` (the compiled DAG), `checkpoints` (what a state
//! directory holds) and `top` (a running job's live view).

pub mod checkpoints;
pub mod plan;
pub mod produce;
pub mod top;
