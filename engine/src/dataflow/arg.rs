//! Aggregate argument values: what an emitter extracts from a record for
//! each aggregate of the window it feeds, so the window task never sees the
//! record itself, or a partial that stands for several records.

/// One aggregate's input for one record, prepared by the source task.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Arg {
    /// No value: `count()`, or a null/missing field.
    None,
    /// A number.
    Num(f64),
    /// The stable hash of a value (for `count_distinct`).
    Hash(u64),
    /// A candidate for `max_by`, `min_by`, `first`, `last`: the number that
    /// ranks it (the `value` field, or the event time) and its value,
    /// key-encoded at `values[start..start + len]` of its batch.
    Pick {
        /// What ranks the record.
        order: f64,
        /// Where its value starts in the batch's values.
        start: u32,
        /// The value's length.
        len: u32,
    },
    /// Several records' partial aggregate for this aggregate, combined by
    /// the emitter (see [`crate::dataflow::route::Combine`]) and encoded
    /// at `values[start..start + len]` of its batch: merged, not updated.
    Merge {
        /// Where the encoded partial starts in the batch's values.
        start: u32,
        /// Its length.
        len: u32,
    },
}
