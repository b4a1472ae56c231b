//! The [`Row`] view filters and window encoders read: decoded values in
//! emitter-local slots, found by job-wide [`FieldId`] through a small map.

use kflow_jobs::{FieldId, Row, Value};

static NULL: Value<'static> = Value::Null;

/// Maps job-wide field ids to an emitter's slots.
#[derive(Debug, Clone, Default)]
pub struct SlotMap(Vec<Option<u16>>);

impl SlotMap {
    /// A map with `slot_of(field) = i` for the `i`-th of `fields`.
    pub fn new(total_fields: usize, fields: impl IntoIterator<Item = FieldId>) -> SlotMap {
        let mut map = vec![None; total_fields];
        for (slot, field) in fields.into_iter().enumerate() {
            if let Some(entry) = map.get_mut(field.index()) {
                *entry = Some(slot as u16);
            }
        }
        SlotMap(map)
    }

    /// A map from explicit `(field, slot)` pairs.
    pub fn from_pairs(
        total_fields: usize,
        pairs: impl IntoIterator<Item = (FieldId, usize)>,
    ) -> SlotMap {
        let mut map = vec![None; total_fields];
        for (field, slot) in pairs {
            if let Some(entry) = map.get_mut(field.index()) {
                *entry = Some(slot as u16);
            }
        }
        SlotMap(map)
    }

    /// The slot of `field`, if this emitter has it.
    pub fn slot(&self, field: FieldId) -> Option<usize> {
        self.0
            .get(field.index())
            .copied()
            .flatten()
            .map(usize::from)
    }
}

/// Values in slots plus the map that finds them.
pub struct MappedRow<'r, 'v> {
    /// The values.
    pub values: &'r [Value<'v>],
    /// The map.
    pub map: &'r SlotMap,
}

impl Row for MappedRow<'_, '_> {
    fn field(&self, id: FieldId) -> &Value<'_> {
        match self.map.slot(id) {
            Some(slot) => &self.values[slot],
            None => &NULL,
        }
    }
}
