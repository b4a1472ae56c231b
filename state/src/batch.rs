//! [`StateBatch`]: a set of writes that [`crate::StateStore::write`]
//! applies atomically, kept as a compact log in chunks until then.

use crate::family::Family;
use crate::StateError;

/// A set of writes applied atomically by [`crate::StateStore::write`].
///
/// The writes are kept as a compact log (`op, family, length-prefixed key
/// and value`), not one allocation per key and value, in chunks of about
/// [`CHUNK`] bytes: a snapshot of a large cache grows without copying
/// itself, batches are appended by moving their chunks, and
/// [`crate::StateStore::write`] frees each chunk as soon as RocksDB's batch holds
/// its writes, so a snapshot is not held twice over.
#[derive(Debug, Default)]
pub struct StateBatch {
    pub(crate) chunks: Vec<Vec<u8>>,
    ops: usize,
    bytes: usize,
}

/// Size a log chunk grows to before the next one starts.
const CHUNK: usize = 1 << 20;

const PUT: u8 = 0;
const DELETE: u8 = 1;
const DELETE_RANGE: u8 = 2;

/// One write read back from a [`StateBatch`] log.
pub(crate) enum Op<'a> {
    Put(Family, &'a [u8], &'a [u8]),
    Delete(Family, &'a [u8]),
    DeleteRange(Family, &'a [u8], &'a [u8]),
}

impl StateBatch {
    /// An empty batch.
    pub fn new() -> StateBatch {
        StateBatch::default()
    }

    /// Starts a write with fields `fields`, each made of its parts, in the
    /// current chunk. A chunk grows in place up to [`CHUNK`] bytes of
    /// capacity (a small batch stays one small chunk); past that, a write
    /// that does not fit starts the next chunk, so a large snapshot never
    /// copies a full chunk to grow it.
    fn write_op(&mut self, op: u8, family: Family, fields: &[&[&[u8]]]) {
        let need = 2 + fields
            .iter()
            .map(|f| 4 + f.iter().map(|p| p.len()).sum::<usize>())
            .sum::<usize>();
        let log = match self.chunks.last_mut() {
            Some(chunk) if chunk.len() + need <= chunk.capacity() || chunk.capacity() < CHUNK => {
                chunk
            }
            _ => {
                let capacity = if self.chunks.is_empty() {
                    need
                } else {
                    CHUNK.max(need)
                };
                self.chunks.push(Vec::with_capacity(capacity));
                let last = self.chunks.len() - 1;
                &mut self.chunks[last]
            }
        };
        log.push(op);
        log.push(family as u8);
        for field in fields {
            let len: usize = field.iter().map(|p| p.len()).sum();
            log.extend_from_slice(&(len as u32).to_le_bytes());
            for part in *field {
                log.extend_from_slice(part);
            }
            self.bytes += len;
        }
        self.ops += 1;
    }

    /// Stores `value` under `key`.
    pub fn put(&mut self, family: Family, key: &[u8], value: &[u8]) {
        self.write_op(PUT, family, &[&[key], &[value]]);
    }

    /// Stores `value` under the key `prefix` followed by `key`.
    pub fn put_prefixed(&mut self, family: Family, prefix: &[u8], key: &[u8], value: &[u8]) {
        self.write_op(PUT, family, &[&[prefix, key], &[value]]);
    }

    /// Removes `key`.
    pub fn delete(&mut self, family: Family, key: &[u8]) {
        self.write_op(DELETE, family, &[&[key]]);
    }

    /// Removes the key `prefix` followed by `key`.
    pub fn delete_prefixed(&mut self, family: Family, prefix: &[u8], key: &[u8]) {
        self.write_op(DELETE, family, &[&[prefix, key]]);
    }

    /// Removes every key in `[from, to)`.
    pub fn delete_range(&mut self, family: Family, from: &[u8], to: &[u8]) {
        self.write_op(DELETE_RANGE, family, &[&[from], &[to]]);
    }

    /// Appends all of `other`'s writes after this batch's (moving its
    /// chunks, not copying them).
    pub fn append(&mut self, other: StateBatch) {
        self.ops += other.ops;
        self.bytes += other.bytes;
        self.chunks.extend(other.chunks);
    }

    /// Number of writes.
    pub fn len(&self) -> usize {
        self.ops
    }

    /// Whether the batch holds no writes.
    pub fn is_empty(&self) -> bool {
        self.ops == 0
    }

    /// Total bytes of keys and values.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The writes of one log chunk, in order.
    pub(crate) fn ops_of(chunk: &[u8]) -> impl Iterator<Item = Result<Op<'_>, StateError>> {
        let mut rest = chunk;
        std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            let op = read_op(&mut rest);
            if op.is_err() {
                rest = &[];
            }
            Some(op)
        })
    }
}

/// Reads the write at the start of `rest` and moves past it.
fn read_op<'a>(rest: &mut &'a [u8]) -> Result<Op<'a>, StateError> {
    let (&[op, family], tail) = rest.split_first_chunk::<2>().ok_or_else(corrupt_log)?;
    *rest = tail;
    let family = Family::from_byte(family).ok_or_else(corrupt_log)?;
    Ok(match op {
        PUT => Op::Put(family, read_field(rest)?, read_field(rest)?),
        DELETE => Op::Delete(family, read_field(rest)?),
        DELETE_RANGE => Op::DeleteRange(family, read_field(rest)?, read_field(rest)?),
        _ => return Err(corrupt_log()),
    })
}

/// Reads one length-prefixed field and moves past it.
fn read_field<'a>(rest: &mut &'a [u8]) -> Result<&'a [u8], StateError> {
    let (len, tail) = rest.split_first_chunk::<4>().ok_or_else(corrupt_log)?;
    let len = u32::from_le_bytes(*len) as usize;
    let bytes = tail.get(..len).ok_or_else(corrupt_log)?;
    *rest = &tail[len..];
    Ok(bytes)
}

fn corrupt_log() -> StateError {
    StateError::Corrupt("malformed write batch".into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::StateStore;

    #[test]
    fn batches_over_many_chunks_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        // Three chunks' worth of puts, then a part appended after them that
        // deletes a range and overwrites one key: later writes win.
        let value = vec![7u8; 1000];
        let mut batch = StateBatch::new();
        for i in 0..3 * CHUNK / 1000 {
            batch.put(Family::Windows, format!("k{i:06}").as_bytes(), &value);
        }
        assert!(batch.chunks.len() >= 3, "{} chunks", batch.chunks.len());
        let mut part = StateBatch::new();
        part.delete_range(Family::Windows, b"k000010", b"k000020");
        part.put(Family::Windows, b"k000000", b"new");
        part.put(Family::Meta, b"m", b"meta");
        let ops = batch.len() + part.len();
        batch.append(part);
        assert_eq!(batch.len(), ops);
        store.write(batch, crate::WriteMode::Buffered).unwrap();
        assert!(
            store.memory() >= 3 * CHUNK as u64,
            "the memtables hold the batch"
        );
        let found = store.scan_prefix(Family::Windows, b"k").unwrap();
        assert_eq!(found.len(), 3 * CHUNK / 1000 - 10);
        assert_eq!(&*found[0].1, b"new");
        assert_eq!(&*found[1].1, &value[..]);
        assert!(store.get(Family::Windows, b"k000015").unwrap().is_none());
        assert_eq!(store.get(Family::Meta, b"m").unwrap().unwrap(), b"meta");
    }

    #[test]
    fn prefixed_writes_are_whole_keys_and_full_chunks_are_not_regrown() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        let mut batch = StateBatch::new();
        let value = vec![3u8; 700];
        for i in 0..4 * CHUNK / 700 {
            batch.put_prefixed(Family::Windows, b"p/", format!("{i:06}").as_bytes(), &value);
        }
        batch.delete_prefixed(Family::Windows, b"p/", b"000001");
        // Past the first, every chunk was made at its final size: a write
        // that did not fit started the next one instead of copying it.
        for chunk in &batch.chunks[1..] {
            assert_eq!(chunk.capacity(), CHUNK);
            assert!(chunk.len() <= CHUNK);
        }
        store.write(batch, crate::WriteMode::Buffered).unwrap();
        assert_eq!(
            store.get(Family::Windows, b"p/000000").unwrap().unwrap(),
            value
        );
        assert!(store.get(Family::Windows, b"p/000001").unwrap().is_none());
        let found = store.scan_prefix(Family::Windows, b"p/").unwrap();
        assert_eq!(found.len(), 4 * CHUNK / 700 - 1);
    }

    #[test]
    fn a_malformed_log_is_reported_not_applied() {
        // A batch whose second write is cut short: nothing of it is applied.
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        let mut batch = StateBatch::new();
        batch.put(Family::Windows, b"k", b"v");
        batch.chunks[0].extend_from_slice(&[PUT, Family::Windows as u8, 9, 0, 0, 0, b'x']);
        assert!(matches!(
            store.write(batch, crate::WriteMode::Buffered),
            Err(StateError::Corrupt(_))
        ));
        assert!(store.get(Family::Windows, b"k").unwrap().is_none());

        let mut rest: &[u8] = &[PUT, 9, 0, 0, 0, 0];
        assert!(matches!(read_op(&mut rest), Err(StateError::Corrupt(_))));
        let mut rest: &[u8] = &[PUT, Family::Meta as u8, 5, 0, 0, 0, b'a'];
        assert!(matches!(read_op(&mut rest), Err(StateError::Corrupt(_))));
        let mut rest: &[u8] = &[DELETE, Family::Meta as u8, 1, 0, 0, 0, b'a'];
        assert!(matches!(
            read_op(&mut rest),
            Ok(Op::Delete(Family::Meta, b"a"))
        ));
        assert!(rest.is_empty());
    }
}
