//! Sources: tasks that read records, decode the projected fields, stamp
//! event time and watermarks, drop duplicates, and route records to their
//! consumers.

pub mod decode;
pub mod dedup;
pub mod file;
pub mod time;
