//! kflow benches: the deterministic workload generator and the
//! clickstream job shared by the criterion benches, the end-to-end runner
//! and the end-to-end tests, and a scraper to measure what watching a job
//! costs.

pub mod bids;
pub mod jobs;
pub mod measure;
pub mod scrape;
pub mod workload;
