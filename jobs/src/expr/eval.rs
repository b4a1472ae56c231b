//! The compiled expression tree and its evaluation over a [`Row`].
//!
//! The null rules (a team decision, shared with the golden tests'
//! reference implementation): a missing field is null; a comparison
//! (`== != < <= > >=`, `in`, the string tests) with a null operand, or
//! with operands of different types, is `false`, a real boolean that `!`
//! turns into `true`; arithmetic on null or a non-number is null, and so is
//! a division by zero. `!`, `&&` and `||` on a non-boolean is an *error*:
//! `false && error` is false and `true || error` is true, as in CEL, and any
//! other use of an error is an error. Null and errors share one
//! representation ([`Val::Unknown`]): they only differ in where they come
//! from. A record passes a filter only when the result is `true`.
//!
//! Nothing here allocates: literals were converted when compiling, strings
//! are borrowed from the row or the tree.

use std::cmp::Ordering;

use crate::value::{FieldId, Row, Value};

/// A node of a compiled expression.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    /// A field of the record (null when missing).
    Field(FieldId),
    /// A literal.
    Literal(Literal),
    /// `has(field)`: the field is present and not null.
    Has(FieldId),
    /// `!x`.
    Not(Box<Node>),
    /// `a && b`.
    And(Box<(Node, Node)>),
    /// `a || b`.
    Or(Box<(Node, Node)>),
    /// `a < b` and friends.
    Compare(Comparison, Box<(Node, Node)>),
    /// `a + b` and friends.
    Arithmetic(Arithmetic, Box<(Node, Node)>),
    /// `-x`.
    Negate(Box<Node>),
    /// `x in [literals]`.
    In(Box<Node>, Box<ListLiteral>),
    /// `s.startsWith(t)` and friends.
    Text(TextTest, Box<(Node, Node)>),
}

/// A literal value, converted at compile time.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Literal {
    Null,
    Bool(bool),
    /// Every number is an `f64`, as JSON numbers are.
    Num(f64),
    Str(Box<str>),
}

/// `==`, `!=`, `<`, `<=`, `>`, `>=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Comparison {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Comparison {
    fn holds(self, ordering: Ordering) -> bool {
        match self {
            Comparison::Eq => ordering == Ordering::Equal,
            Comparison::Ne => ordering != Ordering::Equal,
            Comparison::Lt => ordering == Ordering::Less,
            Comparison::Le => ordering != Ordering::Greater,
            Comparison::Gt => ordering == Ordering::Greater,
            Comparison::Ge => ordering != Ordering::Less,
        }
    }
}

/// `+`, `-`, `*`, `/`, `%` on numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arithmetic {
    Add,
    Subtract,
    Multiply,
    Divide,
    Remainder,
}

/// String tests: `startsWith`, `endsWith`, `contains`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TextTest {
    StartsWith,
    EndsWith,
    Contains,
}

/// The literals of an `in [..]` list, by type, sorted for binary search.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ListLiteral {
    numbers: Vec<f64>,
    strings: Vec<Box<str>>,
    /// Whether `false` / `true` is in the list.
    bools: [bool; 2],
}

impl ListLiteral {
    /// A list of these literals (nulls never match and are dropped).
    pub(crate) fn new(literals: Vec<Literal>) -> ListLiteral {
        let mut list = ListLiteral::default();
        for literal in literals {
            match literal {
                Literal::Null => {}
                Literal::Bool(b) => list.bools[usize::from(b)] = true,
                // `+ 0.0` turns -0 into 0, so both find each other.
                Literal::Num(n) => list.numbers.push(n + 0.0),
                Literal::Str(s) => list.strings.push(s),
            }
        }
        list.numbers.sort_by(f64::total_cmp);
        list.numbers.dedup();
        list.strings.sort();
        list.strings.dedup();
        list
    }

    fn contains(&self, value: Val<'_>) -> Val<'static> {
        match value {
            // Null, an error, an object: like a failed comparison.
            Val::Unknown | Val::Other => Val::Bool(false),
            Val::Num(n) => Val::Bool(
                self.numbers
                    .binary_search_by(|probe| probe.total_cmp(&(n + 0.0)))
                    .is_ok(),
            ),
            Val::Str(s) => Val::Bool(
                self.strings
                    .binary_search_by(|probe| (**probe).cmp(s))
                    .is_ok(),
            ),
            Val::Bool(b) => Val::Bool(self.bools[usize::from(b)]),
        }
    }
}

/// An intermediate value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Val<'a> {
    /// Null (a missing field, arithmetic that has no result) or an error
    /// (`!` on a non-boolean).
    Unknown,
    Bool(bool),
    Num(f64),
    Str(&'a str),
    /// An object or array field.
    Other,
}

/// Evaluates a node over a row.
pub(crate) fn eval<'a, R: Row + ?Sized>(node: &'a Node, row: &'a R) -> Val<'a> {
    match node {
        Node::Field(id) => field_val(row.field(*id)),
        Node::Literal(literal) => literal_val(literal),
        Node::Has(id) => Val::Bool(!row.field(*id).is_null()),
        Node::Not(inner) => match eval(inner, row) {
            Val::Bool(b) => Val::Bool(!b),
            _ => Val::Unknown,
        },
        Node::And(pair) => {
            let left = eval(&pair.0, row);
            if left == Val::Bool(false) {
                return Val::Bool(false);
            }
            match (left, eval(&pair.1, row)) {
                (_, Val::Bool(false)) => Val::Bool(false),
                (Val::Bool(true), Val::Bool(true)) => Val::Bool(true),
                _ => Val::Unknown,
            }
        }
        Node::Or(pair) => {
            let left = eval(&pair.0, row);
            if left == Val::Bool(true) {
                return Val::Bool(true);
            }
            match (left, eval(&pair.1, row)) {
                (_, Val::Bool(true)) => Val::Bool(true),
                (Val::Bool(false), Val::Bool(false)) => Val::Bool(false),
                _ => Val::Unknown,
            }
        }
        Node::Compare(comparison, pair) => {
            let (left, right) = match (&pair.0, &pair.1) {
                // The common shape, a field against a literal (`type !=
                // 'view'`, `amount > 10`), read without evaluating either
                // side as a node of its own.
                (Node::Field(id), Node::Literal(literal)) => {
                    (field_val(row.field(*id)), literal_val(literal))
                }
                (left, right) => (eval(left, row), eval(right, row)),
            };
            Val::Bool(compare(*comparison, left, right))
        }
        Node::Arithmetic(op, pair) => match (eval(&pair.0, row), eval(&pair.1, row)) {
            (Val::Num(a), Val::Num(b)) => match op {
                Arithmetic::Add => Val::Num(a + b),
                Arithmetic::Subtract => Val::Num(a - b),
                Arithmetic::Multiply => Val::Num(a * b),
                Arithmetic::Divide if b == 0.0 => Val::Unknown,
                Arithmetic::Divide => Val::Num(a / b),
                Arithmetic::Remainder if b == 0.0 => Val::Unknown,
                Arithmetic::Remainder => Val::Num(a % b),
            },
            _ => Val::Unknown,
        },
        Node::Negate(inner) => match eval(inner, row) {
            Val::Num(n) => Val::Num(-n),
            _ => Val::Unknown,
        },
        Node::In(needle, list) => list.contains(eval(needle, row)),
        Node::Text(test, pair) => Val::Bool(match (eval(&pair.0, row), eval(&pair.1, row)) {
            (Val::Str(text), Val::Str(part)) => match test {
                TextTest::StartsWith => text.starts_with(part),
                TextTest::EndsWith => text.ends_with(part),
                TextTest::Contains => text.contains(part),
            },
            // Like a comparison: false on null or a non-string.
            _ => false,
        }),
    }
}

/// A field's value as an intermediate value.
#[inline]
fn field_val<'a>(value: &'a Value<'_>) -> Val<'a> {
    match value {
        Value::Null => Val::Unknown,
        Value::Bool(b) => Val::Bool(*b),
        Value::Num(n) => Val::Num(*n),
        Value::Str(s) => Val::Str(s),
        Value::Other => Val::Other,
    }
}

/// A literal as an intermediate value.
#[inline]
fn literal_val(literal: &Literal) -> Val<'_> {
    match literal {
        Literal::Null => Val::Unknown,
        Literal::Bool(b) => Val::Bool(*b),
        Literal::Num(n) => Val::Num(*n),
        Literal::Str(s) => Val::Str(s),
    }
}

/// `left <comparison> right`: null, mismatched types and NaN are false,
/// whatever the operator.
#[inline]
fn compare(comparison: Comparison, left: Val<'_>, right: Val<'_>) -> bool {
    let ordering = match (left, right) {
        // Equality of strings needs no order: their lengths decide most
        // pairs without reading a byte (`type != 'view'`).
        (Val::Str(a), Val::Str(b)) if matches!(comparison, Comparison::Eq | Comparison::Ne) => {
            return (a == b) == matches!(comparison, Comparison::Eq);
        }
        (Val::Num(a), Val::Num(b)) => a.partial_cmp(&b),
        (Val::Str(a), Val::Str(b)) => Some(a.cmp(b)),
        (Val::Bool(a), Val::Bool(b)) => Some(a.cmp(&b)),
        _ => None,
    };
    ordering.is_some_and(|o| comparison.holds(o))
}
