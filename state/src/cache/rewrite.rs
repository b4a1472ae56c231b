//! Rewriting a cache's stored values in place before it loads any: how a
//! compatible job change that extends values (aggregates appended to a
//! window) reaches the state written under the old definition.

use super::WindowCache;
use crate::family::{Family, WriteMode};
use crate::pack;
use crate::store::StateStore;
use crate::{StateBatch, StateError, StateValue};

/// Rewritten values are written in batches of about this many bytes, as
/// the scan goes (the last one synced); a rewrite cut short is redone on
/// the next start, and changing a value twice changes nothing.
const WRITE_EVERY: usize = 16 << 20;

impl<V: StateValue> WindowCache<V> {
    /// Calls `change` on every value stored for this cache's instance, key
    /// by key and in packs, and writes back those it changed (`change`
    /// returns whether it did). `change` must be idempotent. Returns how
    /// many values changed.
    ///
    /// # Errors
    /// [`StateError`] when a scan, a decode or a write fails.
    pub fn rewrite_stored(
        &self,
        store: &StateStore,
        mut change: impl FnMut(&mut V) -> bool,
    ) -> Result<u64, StateError> {
        let prefix = self.instance.to_be_bytes();
        let mut batch = StateBatch::new();
        let mut changed = 0u64;
        let mut failed: Option<StateError> = None;
        for family in [Family::Windows, Family::Packs] {
            store.for_each_prefix(family, &prefix, |key, bytes| {
                let rewritten = match family {
                    Family::Packs => repack(bytes, &mut change),
                    _ => rewrite(bytes, &mut change),
                };
                let written = match rewritten {
                    Ok(Some((n, value))) => {
                        changed += n;
                        batch.put(family, key, &value);
                        if batch.bytes() < WRITE_EVERY {
                            Ok(())
                        } else {
                            store.write(std::mem::take(&mut batch), WriteMode::Buffered)
                        }
                    }
                    Ok(None) => Ok(()),
                    Err(e) => Err(e),
                };
                match written {
                    Ok(()) => true,
                    Err(e) => {
                        failed = Some(e);
                        false
                    }
                }
            })?;
            if let Some(e) = failed.take() {
                return Err(e);
            }
        }
        store.write(batch, WriteMode::Synced)?;
        Ok(changed)
    }
}

/// One stored value with `change` applied: `(1, its new bytes)`, or `None`
/// when `change` left it as it was.
fn rewrite<V: StateValue>(
    bytes: &[u8],
    change: &mut impl FnMut(&mut V) -> bool,
) -> Result<Option<(u64, Vec<u8>)>, StateError> {
    let mut value = V::decode(bytes)?;
    if !change(&mut value) {
        return Ok(None);
    }
    let mut encoded = Vec::with_capacity(bytes.len());
    value.encode(&mut encoded);
    Ok(Some((1, encoded)))
}

/// A pack with `change` applied to each value: how many changed and the
/// pack's new bytes, or `None` when none did.
fn repack<V: StateValue>(
    bytes: &[u8],
    change: &mut impl FnMut(&mut V) -> bool,
) -> Result<Option<(u64, Vec<u8>)>, StateError> {
    let mut rebuilt = Vec::with_capacity(bytes.len());
    let mut changed = 0;
    for entry in pack::entries(bytes) {
        let (key, value) = entry?;
        let mut value = V::decode(value)?;
        if change(&mut value) {
            changed += 1;
        }
        pack::push(&mut rebuilt, key, |out| value.encode(out));
    }
    Ok((changed > 0).then_some((changed, rebuilt)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;

    /// A value that is a list of bytes; `change` pads it to three.
    #[derive(Debug, Clone, PartialEq)]
    struct Bytes(Vec<u8>);

    impl StateValue for Bytes {
        fn encode(&self, out: &mut Vec<u8>) {
            out.extend_from_slice(&self.0);
        }
        fn decode(bytes: &[u8]) -> Result<Bytes, StateError> {
            Ok(Bytes(bytes.to_vec()))
        }
        fn heap_bytes(&self) -> usize {
            self.0.capacity()
        }
    }

    fn pad(v: &mut Bytes) -> bool {
        let short = v.0.len() < 3;
        v.0.resize(v.0.len().max(3), 0);
        short
    }

    #[test]
    fn stored_and_packed_values_of_one_instance_are_rewritten_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        let (mine, other) = (codec::instance(3, 1), codec::instance(3, 2));
        let mut batch = StateBatch::new();
        let mut key = Vec::new();
        codec::encode_key(mine, 10, b"a", &mut key);
        batch.put(Family::Windows, &key, &[7]);
        key.clear();
        codec::encode_key(other, 10, b"a", &mut key);
        batch.put(Family::Windows, &key, &[7]);
        let mut packed = Vec::new();
        pack::push(&mut packed, b"b", |out| out.push(8));
        pack::push(&mut packed, b"c", |out| out.extend_from_slice(&[9, 9, 9]));
        key.clear();
        pack::key(mine, 20, 0, &mut key);
        batch.put(Family::Packs, &key, &packed);
        store.write(batch, WriteMode::Synced).unwrap();

        let cache: WindowCache<Bytes> = WindowCache::new(mine, 1 << 20);
        assert_eq!(cache.rewrite_stored(&store, pad).unwrap(), 2);
        // Idempotent: nothing left to change.
        assert_eq!(cache.rewrite_stored(&store, pad).unwrap(), 0);

        let mut key = Vec::new();
        codec::encode_key(mine, 10, b"a", &mut key);
        assert_eq!(
            store.get(Family::Windows, &key).unwrap(),
            Some(vec![7, 0, 0])
        );
        key.clear();
        codec::encode_key(other, 10, b"a", &mut key);
        assert_eq!(store.get(Family::Windows, &key).unwrap(), Some(vec![7]));
        key.clear();
        pack::key(mine, 20, 0, &mut key);
        let pack = store.get(Family::Packs, &key).unwrap().unwrap();
        let entries: Vec<(Vec<u8>, Vec<u8>)> = pack::entries(&pack)
            .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
            .collect();
        assert_eq!(
            entries,
            vec![
                (b"b".to_vec(), vec![8, 0, 0]),
                (b"c".to_vec(), vec![9, 9, 9])
            ]
        );
    }
}
