//! What the Kinesis source, the Kinesis sink and `kflow produce` share: a
//! client built from the standard AWS chain (or loopback settings for
//! emulators), the classification of failed calls into retry/renew/fail,
//! backoff with jitter, and a PutRecords writer that keeps per-key order.

pub mod client;
pub mod put;

pub use client::{classify, connect, Backoff, Endpoint, Fault};
pub use put::{PutStats, Putter};
