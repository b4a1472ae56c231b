//! Aggregate argument values: what an emitter extracts from a record for
//! each aggregate of the window it feeds, so the window task never sees the
//! record itself.

/// One aggregate's input for one record, prepared by the source task.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Arg {
    /// No value: `count()`, or a null/missing field.
    None,
    /// A number.
    Num(f64),
    /// The stable hash of a value (for `count_distinct`).
    Hash(u64),
}
