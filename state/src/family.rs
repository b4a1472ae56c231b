//! The column families of a kflow state directory: the lowest piece of the
//! crate, shared by the batch log ([`crate::batch`]) and the store.

/// The column families of a kflow state directory. The discriminant is the
/// family's byte in a [`StateBatch`] log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Family {
    /// Window partial aggregates: `operator | window_end | key` -> partial.
    Windows = 0,
    /// Seen dedup ids: `source | id` -> expiry.
    Dedup = 1,
    /// Checkpoint metadata, the format marker and the job fingerprint.
    Meta = 2,
    /// Packed window partials: `operator | time | bucket` -> partials
    /// (see [`crate::pack`]).
    Packs = 3,
}

impl Family {
    pub(crate) const ALL: [Family; 4] =
        [Family::Windows, Family::Dedup, Family::Meta, Family::Packs];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Family::Windows => "windows",
            Family::Dedup => "dedup",
            Family::Meta => "meta",
            Family::Packs => "packs",
        }
    }

    pub(crate) fn from_byte(byte: u8) -> Option<Family> {
        Family::ALL.into_iter().find(|f| *f as u8 == byte)
    }
}

/// Whether a write waits until it is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// The write is durable when it returns (checkpoints).
    Synced,
    /// The write may sit in the OS cache (scratch state, tests).
    Buffered,
}
