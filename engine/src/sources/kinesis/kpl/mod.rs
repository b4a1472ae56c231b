//! De-aggregation of Kinesis Producer Library (KPL) aggregated records.
//!
//! A KPL producer packs many user records into one Kinesis record whose data
//! is the magic `F3 89 9A C2`, a protobuf `AggregatedRecord`, and the 16-byte
//! MD5 digest of the protobuf bytes (AWS's "KPL aggregation format").
//! [`deaggregate`] turns one Kinesis record's data into its user records, each
//! with its partition key, explicit hash key and subsequence number (its index
//! in the aggregate, numbered from 0 as the KCL does).
//!
//! As in the KCL, data that lacks the magic, is too short for magic and
//! digest, or whose digest does not match is not an aggregate: it passes
//! through whole as one user record. Data that verifies but does not decode
//! (malformed protobuf, invalid UTF-8 in a string, a missing required field,
//! a key index outside its table) is a [`KplError`], for the caller to
//! dead-letter. Tags are decoded, checked and dropped, as the KCL does.
//!
//! The protobuf messages are declared by hand with `prost` derives (no
//! codegen). Their required fields are declared optional, which is the same on
//! the wire, so that a missing one is reported instead of read as zero.

use md5::{Digest, Md5};
use prost::bytes::Bytes;
use prost::Message;

/// The 4 bytes that open every KPL aggregated record.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];

/// Length of the MD5 digest that closes every KPL aggregated record.
const DIGEST_LEN: usize = 16;

/// One user record inside a Kinesis record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// The partition key the producer gave this user record (not the
    /// enclosing Kinesis record's key, which is only the first one's).
    pub partition_key: String,
    /// The explicit hash key (a decimal 128-bit integer), if the producer set one.
    pub explicit_hash_key: Option<String>,
    /// The payload. All user records of one aggregate share one buffer (one
    /// copy of the protobuf bytes); each `data` is a slice of it.
    pub data: Bytes,
    /// Position in the aggregate's record list, from 0 (KCL's subsequence number).
    pub subsequence: u64,
}

/// What one Kinesis record's data holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Records<'a> {
    /// Not an aggregate: the whole data is one user record, under the Kinesis
    /// record's own partition key and with no subsequence number.
    Single(&'a [u8]),
    /// A verified aggregate's user records in order; may be empty.
    Aggregated(Vec<UserRecord>),
}

/// An aggregate whose MD5 digest matches but whose content is unusable.
#[derive(Debug, thiserror::Error)]
pub enum KplError {
    /// The protobuf bytes do not decode as an `AggregatedRecord`.
    #[error("KPL aggregated record (MD5 matches): protobuf does not decode: {0}")]
    Protobuf(#[source] prost::DecodeError),
    /// A required protobuf field is absent.
    #[error("KPL aggregated record: user record {record} has no {field}")]
    MissingField {
        /// Index of the user record in the aggregate.
        record: usize,
        /// The absent field, as the format names it.
        field: &'static str,
    },
    /// A user record's `partition_key_index` is past the end of `partition_key_table`.
    #[error(
        "KPL aggregated record: user record {record} has partition_key_index {index}, \
         but the partition key table has {len} entries"
    )]
    PartitionKeyIndex {
        /// Index of the user record in the aggregate.
        record: usize,
        /// The out-of-range index.
        index: u64,
        /// Length of the partition key table.
        len: usize,
    },
    /// A user record's `explicit_hash_key_index` is past the end of `explicit_hash_key_table`.
    #[error(
        "KPL aggregated record: user record {record} has explicit_hash_key_index {index}, \
         but the explicit hash key table has {len} entries"
    )]
    ExplicitHashKeyIndex {
        /// Index of the user record in the aggregate.
        record: usize,
        /// The out-of-range index.
        index: u64,
        /// Length of the explicit hash key table.
        len: usize,
    },
}

/// `message AggregatedRecord`.
#[derive(Clone, PartialEq, Message)]
struct AggregatedRecord {
    #[prost(string, repeated, tag = "1")]
    partition_key_table: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    explicit_hash_key_table: Vec<String>,
    #[prost(message, repeated, tag = "3")]
    records: Vec<Record>,
}

/// `message Record`; fields 1 and 3 are `required` in the format.
#[derive(Clone, PartialEq, Message)]
struct Record {
    #[prost(uint64, optional, tag = "1")]
    partition_key_index: Option<u64>,
    #[prost(uint64, optional, tag = "2")]
    explicit_hash_key_index: Option<u64>,
    #[prost(bytes = "bytes", optional, tag = "3")]
    data: Option<Bytes>,
    #[prost(message, repeated, tag = "4")]
    tags: Vec<Tag>,
}

/// `message Tag`; field 1 is `required` in the format.
#[derive(Clone, PartialEq, Message)]
struct Tag {
    #[prost(string, optional, tag = "1")]
    key: Option<String>,
    #[prost(string, optional, tag = "2")]
    value: Option<String>,
}

/// Splits one Kinesis record's data into its user records.
///
/// Returns [`Records::Single`] with the whole of `data` unless it is a KPL
/// aggregate (magic, then protobuf, then a matching MD5 of the protobuf), and
/// [`Records::Aggregated`] with every user record of the aggregate otherwise.
/// Errors only for an aggregate whose digest matches but whose content does
/// not decode or refers outside its key tables. Copies the protobuf bytes
/// once; user records' `data` share that copy.
pub fn deaggregate(data: &[u8]) -> Result<Records<'_>, KplError> {
    let Some(body) = data.strip_prefix(&MAGIC[..]) else {
        return Ok(Records::Single(data));
    };
    let Some(protobuf_len) = body.len().checked_sub(DIGEST_LEN) else {
        return Ok(Records::Single(data));
    };
    let (protobuf, digest) = body.split_at(protobuf_len);
    if Md5::digest(protobuf).as_slice() != digest {
        return Ok(Records::Single(data));
    }
    // Decoding from `Bytes` makes each `data` field a slice of this one copy.
    let aggregate =
        AggregatedRecord::decode(Bytes::copy_from_slice(protobuf)).map_err(KplError::Protobuf)?;
    let AggregatedRecord {
        partition_key_table,
        explicit_hash_key_table,
        records,
    } = aggregate;
    let mut out = Vec::with_capacity(records.len());
    for (i, record) in records.into_iter().enumerate() {
        let missing = |field| KplError::MissingField { record: i, field };
        let index = record
            .partition_key_index
            .ok_or_else(|| missing("partition_key_index"))?;
        let partition_key = lookup(&partition_key_table, index)
            .ok_or(KplError::PartitionKeyIndex {
                record: i,
                index,
                len: partition_key_table.len(),
            })?
            .clone();
        let explicit_hash_key = match record.explicit_hash_key_index {
            None => None,
            Some(index) => Some(
                lookup(&explicit_hash_key_table, index)
                    .ok_or(KplError::ExplicitHashKeyIndex {
                        record: i,
                        index,
                        len: explicit_hash_key_table.len(),
                    })?
                    .clone(),
            ),
        };
        let data = record.data.ok_or_else(|| missing("data"))?;
        if record.tags.iter().any(|tag| tag.key.is_none()) {
            return Err(missing("tag key"));
        }
        out.push(UserRecord {
            partition_key,
            explicit_hash_key,
            data,
            subsequence: i as u64,
        });
    }
    Ok(Records::Aggregated(out))
}

/// `table[index]`, if `index` is in range.
fn lookup(table: &[String], index: u64) -> Option<&String> {
    usize::try_from(index).ok().and_then(|i| table.get(i))
}

#[cfg(test)]
mod tests;
