//! Running one job on several processes: the lease table in DynamoDB that
//! says which worker reads which source shard and owns which key group.
//!
//! - [`table`]: the lease items and the conditional writes on them.
//! - [`plan`]: which leases a worker takes or claims (pure policy).
//! - [`keeper`]: one worker's heartbeat over the table, and the rule that
//!   keeps a lease on one worker at a time.
//! - [`fence`]: how a part stops by itself once its lease may have moved.
//! - [`part`]: what a lease's holder runs: the job narrowed to one source
//!   shard or one key group.
//!
//! See docs/architecture.md, "Scale-out", for the whole design and what of
//! it is built.

pub mod fence;
pub mod keeper;
pub mod part;
pub mod plan;
pub mod table;

pub use keeper::{Event, Held, LeaseKeeper};
pub use part::Part;
pub use table::{Change, Lease, LeaseKind, LeaseTable};
