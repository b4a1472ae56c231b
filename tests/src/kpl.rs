//! KPL aggregated records written by hand (the KPL's published format),
//! for the tests of their de-aggregation.

/// Protobuf varint.
fn varint(mut n: u64, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Length-delimited protobuf field.
fn field(tag: u8, bytes: &[u8], out: &mut Vec<u8>) {
    out.push(tag);
    varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// A KPL aggregated record (published format: magic, AggregatedRecord
/// protobuf, MD5 of the protobuf) holding `records` under one key table.
pub fn kpl_aggregate(keys: &[&str], records: &[(u64, &str)]) -> Vec<u8> {
    use md5::{Digest, Md5};
    let mut pb = Vec::new();
    for key in keys {
        field(0x0A, key.as_bytes(), &mut pb); // partition_key_table = 1
    }
    for (key_index, data) in records {
        let mut record = Vec::new();
        record.push(0x08); // partition_key_index = 1
        varint(*key_index, &mut record);
        field(0x1A, data.as_bytes(), &mut record); // data = 3
        field(0x1A, &record, &mut pb); // records = 3
    }
    let mut out = vec![0xF3, 0x89, 0x9A, 0xC2];
    out.extend_from_slice(&pb);
    out.extend_from_slice(&Md5::digest(&pb));
    out
}
