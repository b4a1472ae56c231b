//! Filter expressions: CEL source text compiled once into a small tree
//! that is evaluated over a decoded [`Row`](crate::Row).
//!
//! The text is parsed by the `cel` crate (the CEL grammar, with the source
//! offset of every node), then lowered into kflow's own tree: fields become
//! [`FieldId`]s and literals are converted up front, so evaluating a record
//! neither looks a name up nor allocates. Only a subset of CEL is kept (see
//! [`CompiledExpr`]); anything else is a compile error pointing at it.

mod eval;
mod lower;
mod syntax;

use std::ops::Range;

use crate::value::{FieldId, Row};

use eval::{Node, Val};

/// A compiled filter expression.
///
/// Supported: field paths (`a.b`), literals (integers, doubles, strings,
/// `true`, `false`, `null`), `== != < <= > >=`, `&& || !`, `x in [..]`
/// with a list of literals, `has(a.b)`, the string tests `s.startsWith(t)`,
/// `s.endsWith(t)`, `s.contains(t)`, arithmetic `+ - * / %` and unary `-`
/// on numbers, and parentheses.
///
/// Semantics, chosen so that bad or partial records are simply filtered
/// out rather than failing the job:
/// - A missing field is null. `has(f)` is true when `f` is present and not
///   null.
/// - Numbers are JSON numbers: integer and double literals mix freely and
///   compare as `f64`; `/` is a floating-point division.
/// - A comparison (`==`, `!=`, `<`, ..., `in`, `startsWith`, ...) involving
///   null, or values of different types (`"5" < 6`), is `false`. `!=` too:
///   `x != 'a'` with `x` missing is false. It is a real `false`, so
///   `!(x == 'a')` with `x` missing is true.
/// - Arithmetic on null (or on a non-number) is null, and so is a division
///   by zero. `!`, `&&` and `||` on something that is not a boolean is an
///   error.
/// - `false && e` is false and `true || e` is true whatever `e` is, even an
///   error (on either side); otherwise an error spreads.
/// - A record passes only when the whole expression is `true` (null, errors
///   and non-booleans do not pass).
#[derive(Debug, Clone)]
pub struct CompiledExpr {
    root: Node,
    fields: Vec<FieldId>,
}

impl CompiledExpr {
    /// Whether the record passes: true only when the expression evaluates to
    /// `true` (null, errors and non-bool results are false).
    pub fn matches<R: Row + ?Sized>(&self, row: &R) -> bool {
        eval::eval(&self.root, row) == Val::Bool(true)
    }

    /// Every field the expression reads, sorted, without duplicates.
    pub fn fields(&self) -> &[FieldId] {
        &self.fields
    }
}

/// A problem in an expression, located in its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    /// Byte offsets in the expression text.
    pub span: Range<usize>,
    /// What is wrong: lowercase, no trailing period.
    pub message: String,
}

/// A field an expression reads, where it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRef {
    /// The dotted path, e.g. `device.id`.
    pub path: String,
    /// Byte offsets of the path in the expression text.
    pub span: Range<usize>,
    /// Its id, from the resolver.
    pub id: FieldId,
}

/// A compiled expression and the fields it references, with positions.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The expression.
    pub expr: CompiledExpr,
    /// Each field reference in the text, in order.
    pub field_refs: Vec<FieldRef>,
}

/// Compiles CEL text. `resolve` maps a dotted field path to its id (the
/// caller interns paths in the job's field table).
///
/// # Errors
///
/// Every problem found, located in `text`: a syntax error (only the first,
/// later ones are usually its echoes), unsupported constructs, a constant
/// result that cannot be a boolean.
pub fn compile(
    text: &str,
    resolve: &mut dyn FnMut(&str) -> FieldId,
) -> Result<Compiled, Vec<ExprError>> {
    let parsed = syntax::parse(text).map_err(|error| vec![error])?;
    let (root, field_refs) = lower::lower(text, &parsed, resolve)?;
    let mut fields: Vec<FieldId> = field_refs.iter().map(|r| r.id).collect();
    fields.sort();
    fields.dedup();
    Ok(Compiled {
        expr: CompiledExpr { root, fields },
        field_refs,
    })
}

#[cfg(test)]
mod tests;
