//! kflow keyed state: RocksDB is the one durable store of a job.
//!
//! - [`StateStore`] opens the job's RocksDB with one column family per kind of
//!   data (window partials, dedup ids, checkpoint metadata) and applies
//!   [`StateBatch`]es atomically.
//! - [`codec`] lays keys out big-endian (`operator | time | key`) so that
//!   firing windows in time order is a range scan.
//! - [`WindowCache`] is the in-memory write-back cache in front of it: hot
//!   window partials are updated in place and only written to RocksDB when a
//!   snapshot is taken or the memory budget is exceeded. Times wholly in
//!   memory are snapshotted as [`pack`]s (a few large values per time),
//!   the others key by key.
//! - [`ingest`] writes a checkpoint's large run of window partials as a
//!   table file RocksDB ingests, instead of through its log and memtable.
//! - [`scan`] reads a prefix scan ahead of its caller on a thread of its
//!   own (firing a window of millions of stored partials).
//! - [`keys::same`] compares encoded keys, empty ones without a call.
//! - [`hint::prefetch`] reads a cache line ahead of a lookup.

pub mod batch;
pub mod cache;
pub mod codec;
mod error;
pub mod family;
pub mod hint;
pub mod ingest;
pub mod keys;
pub mod pack;
pub mod scan;
pub mod store;

pub use batch::StateBatch;
pub use cache::{StateValue, WindowCache};
pub use error::StateError;
pub use family::{Family, WriteMode};
pub use ingest::PendingRun;
pub use store::StateStore;
