//! The commands besides `kflow run`: `produce` (a file into a Kinesis
//! stream), `plan` (the compiled DAG) and `checkpoints` (what a state
//! directory holds).

pub mod checkpoints;
pub mod plan;
pub mod produce;
