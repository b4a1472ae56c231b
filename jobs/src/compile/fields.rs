//! The job's field table: every field path referenced anywhere, interned
//! once, so that rows, filters, keys and aggregates share [`FieldId`]s.

use std::collections::HashMap;

use crate::value::{FieldId, FieldPath};

/// Interns dotted field paths in order of first use.
#[derive(Debug, Default)]
pub(crate) struct FieldTable {
    paths: Vec<FieldPath>,
    ids: HashMap<String, FieldId>,
}

impl FieldTable {
    /// The id of a dotted path, added if new.
    pub(crate) fn intern(&mut self, dotted: &str) -> FieldId {
        if let Some(id) = self.ids.get(dotted) {
            return *id;
        }
        let id = FieldId(u32::try_from(self.paths.len()).unwrap_or(u32::MAX));
        self.paths.push(FieldPath::parse(dotted));
        self.ids.insert(dotted.to_string(), id);
        id
    }

    /// The table, indexed by [`FieldId`].
    pub(crate) fn into_paths(self) -> Vec<FieldPath> {
        self.paths
    }
}

/// Checks a field path written in a string (`key`, `event_time.field`, an
/// aggregate's argument): dot-separated, non-empty segments, no spaces.
pub(crate) fn check_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("empty field name".to_string());
    }
    if path.split('.').any(str::is_empty) || path.chars().any(char::is_whitespace) {
        return Err(format!(
            "invalid field path `{path}`: expected names separated by dots, like `device.id`"
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn interns_once_in_order() {
        let mut table = FieldTable::default();
        assert_eq!(table.intern("a"), FieldId(0));
        assert_eq!(table.intern("b.c"), FieldId(1));
        assert_eq!(table.intern("a"), FieldId(0));
        let paths = table.into_paths();
        assert_eq!(paths[1].segments, ["b", "c"]);
    }

    #[test]
    fn checks_paths() {
        assert!(check_path("a.b_c").is_ok());
        for bad in ["", ".a", "a.", "a..b", "a b"] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
    }
}
