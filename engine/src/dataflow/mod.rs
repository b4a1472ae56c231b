//! The dataflow layer: what every task shares, and nothing above it.
//!
//! Sources, operators and sinks are built on these pieces; the runtime
//! assembles them. Nothing here imports a source, operator, sink or the
//! runtime.
//!
//! - [`message`]: the batches, barriers, idle and end markers on channels;
//! - [`task`]: the one aligned run loop of every task with inputs;
//! - [`align`]: barrier alignment over several inputs;
//! - [`route`]: fused filters and per-destination batches of an emitter;
//! - [`row`], [`key`], [`arg`]: decoded values, the key codec and aggregate
//!   arguments as emitters hand them to windows;
//! - [`position`]: where a record came from, for error rows;
//! - [`checkpoint`]: the task side of checkpoints;
//! - [`rows`]: result rows on their way to a sink, written as JSON text on
//!   the sink's thread;
//! - [`metrics`], [`json`], [`round`]: run counters, JSON text helpers and
//!   the rounding of sums and means;
//! - [`reuse`]: buffers kept across borrows of different lifetimes.

pub mod align;
pub mod arg;
pub mod checkpoint;
pub mod json;
pub mod key;
pub mod message;
pub mod metrics;
pub mod position;
pub mod reuse;
pub mod round;
pub mod route;
pub mod row;
pub mod rows;
pub mod task;
