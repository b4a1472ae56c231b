//! Values of decoded record fields, and the `Row` view that filters read.
//!
//! Sources decode only the fields a job references (its projection) into
//! [`Value`]s that borrow from the input line where they can; compiled
//! expressions read them through the [`Row`] trait by [`FieldId`], so an
//! expression never looks a field up by name at run time.

use std::borrow::Cow;

/// Index of a field path in [`crate::JobPlan::fields`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FieldId(pub u32);

impl FieldId {
    /// The index as a `usize`, for slicing.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// A dotted field path (`a.b.c`) split into its segments.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldPath {
    /// The path as written in the job file, e.g. `device.id`.
    pub dotted: String,
    /// The path's segments, e.g. `["device", "id"]`.
    pub segments: Vec<String>,
}

impl FieldPath {
    /// Splits a dotted path into segments.
    pub fn parse(dotted: &str) -> FieldPath {
        FieldPath {
            dotted: dotted.to_string(),
            segments: dotted.split('.').map(str::to_string).collect(),
        }
    }
}

/// One decoded field value. JSON numbers are `f64`; objects and arrays are
/// not decoded (only scalars are referenced) and show as [`Value::Other`].
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value<'a> {
    /// Absent field or JSON `null`.
    #[default]
    Null,
    /// JSON `true` / `false`.
    Bool(bool),
    /// Any JSON number.
    Num(f64),
    /// A JSON string, borrowed from the input where it had no escapes.
    Str(Cow<'a, str>),
    /// A present object or array (only `has()` can look at it).
    Other,
}

impl Value<'_> {
    /// Whether the field is absent or null.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The number, if this is one.
    pub fn as_num(&self) -> Option<f64> {
        match self {
            Value::Num(n) => Some(*n),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A copy that owns its data.
    pub fn into_owned(self) -> Value<'static> {
        match self {
            Value::Null => Value::Null,
            Value::Bool(b) => Value::Bool(b),
            Value::Num(n) => Value::Num(n),
            Value::Str(s) => Value::Str(Cow::Owned(s.into_owned())),
            Value::Other => Value::Other,
        }
    }

    /// The JSON type name, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Num(_) => "number",
            Value::Str(_) => "string",
            Value::Other => "object or array",
        }
    }
}

/// A decoded record as compiled expressions see it.
pub trait Row {
    /// The value of a field; [`Value::Null`] when the record lacks it.
    fn field(&self, id: FieldId) -> &Value<'_>;
}

/// The simplest [`Row`]: one slot per field id of the job (tests, tools).
impl Row for [Value<'_>] {
    fn field(&self, id: FieldId) -> &Value<'_> {
        self.get(id.index()).unwrap_or(&Value::Null)
    }
}
