//! Lowering the CEL syntax tree into kflow's evaluation tree: resolving
//! field paths to ids, converting literals, and refusing, with a location,
//! whatever CEL construct kflow does not support.

use std::ops::Range;

use cel::common::ast::{operators, CallExpr, Expr, IdedExpr, LiteralValue, SourceInfo};

use super::eval::{Arithmetic, Comparison, ListLiteral, Literal, Node, TextTest};
use super::syntax::Parsed;
use super::{ExprError, FieldRef};
use crate::value::FieldId;

/// Deepest tree accepted (the text was size-checked already; this keeps the
/// recursion here and in evaluation bounded whatever the parser returns).
const MAX_DEPTH: usize = 200;

/// Lowers a parsed expression; `resolve` interns field paths.
pub(crate) fn lower(
    text: &str,
    parsed: &Parsed,
    resolve: &mut dyn FnMut(&str) -> FieldId,
) -> Result<(Node, Vec<FieldRef>), Vec<ExprError>> {
    let mut lowering = Lowering {
        text,
        info: &parsed.info,
        resolve,
        errors: Vec::new(),
        field_refs: Vec::new(),
    };
    let root = lowering.node(&parsed.expr, 0);
    if let Some(root) = &root {
        if !can_be_bool(root) {
            lowering.error(
                0..text.len(),
                "a filter must be a condition (true or false), not a number or a string",
            );
        }
    }
    match root {
        Some(root) if lowering.errors.is_empty() => Ok((root, lowering.field_refs)),
        _ => {
            let mut errors = lowering.errors;
            errors.sort_by_key(|e| (e.span.start, e.span.end));
            Err(errors)
        }
    }
}

/// Whether a node may evaluate to a boolean.
fn can_be_bool(node: &Node) -> bool {
    !matches!(
        node,
        Node::Literal(Literal::Num(_) | Literal::Str(_) | Literal::Null)
            | Node::Arithmetic(..)
            | Node::Negate(_)
    )
}

struct Lowering<'a> {
    text: &'a str,
    info: &'a SourceInfo,
    resolve: &'a mut dyn FnMut(&str) -> FieldId,
    errors: Vec<ExprError>,
    field_refs: Vec<FieldRef>,
}

impl Lowering<'_> {
    fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.errors.push(ExprError {
            span,
            message: message.into(),
        });
    }

    /// The text span of a node's own token (a `Select`'s is its dot, a
    /// call's its opening parenthesis, an operator's the operator).
    fn span(&self, id: u64) -> Range<usize> {
        let Some((start, stop)) = self.info.offset_for(id) else {
            return 0..0;
        };
        let clamp = |offset: usize| {
            let mut offset = offset.min(self.text.len());
            while !self.text.is_char_boundary(offset) {
                offset += 1;
            }
            offset
        };
        let start = clamp(start as usize);
        start..clamp(stop as usize + 1).max(start)
    }

    /// The span of a call's function name, found before its `(`.
    fn name_span(&self, call_id: u64, name: &str) -> Range<usize> {
        let paren = self.span(call_id).start;
        let before = self.text[..paren].trim_end();
        if before.ends_with(name) {
            before.len() - name.len()..before.len()
        } else {
            paren..paren + 1
        }
    }

    fn node(&mut self, expr: &IdedExpr, depth: usize) -> Option<Node> {
        if depth > MAX_DEPTH {
            self.error(self.span(expr.id), "expression nests too deeply");
            return None;
        }
        match &expr.expr {
            Expr::Ident(_) | Expr::Select(_) => self.field(expr).map(Node::Field),
            Expr::Literal(literal) => self.literal(expr.id, literal).map(Node::Literal),
            Expr::Call(call) => self.call(expr.id, call, depth),
            Expr::List(_) => {
                self.error(
                    self.span(expr.id),
                    "a list can only appear after `in`, like `x in ['a', 'b']`",
                );
                None
            }
            Expr::Map(_) => {
                self.error(self.span(expr.id), "maps are not supported in filters");
                None
            }
            Expr::Struct(_) => {
                self.error(
                    self.span(expr.id),
                    "message literals are not supported in filters",
                );
                None
            }
            Expr::Comprehension(_) | Expr::Unspecified => {
                self.error(self.span(expr.id), "unsupported expression");
                None
            }
        }
    }

    /// A field path (`a`, `a.b.c`): its id, recorded with its span.
    fn field(&mut self, expr: &IdedExpr) -> Option<FieldId> {
        let mut segments = Vec::new();
        let mut current = expr;
        let mut end = None;
        loop {
            match &current.expr {
                Expr::Ident(name) => {
                    segments.push(name.as_str());
                    break;
                }
                Expr::Select(select) if !select.test => {
                    if end.is_none() {
                        // The outermost `.field`: from its dot to the name's end.
                        let dot = self.span(current.id).start;
                        let after = &self.text[(dot + 1).min(self.text.len())..];
                        let spaces = after.len() - after.trim_start().len();
                        end = Some((dot + 1 + spaces + select.field.len()).min(self.text.len()));
                    }
                    segments.push(select.field.as_str());
                    current = &select.operand;
                }
                _ => {
                    let span = self.span(expr.id);
                    self.error(
                        span,
                        "only fields have fields: `.` must follow a field path, like `a.b`",
                    );
                    return None;
                }
            }
        }
        segments.reverse();
        let path = segments.join(".");
        let start = self.span(current.id).start;
        let end = end.unwrap_or_else(|| self.span(current.id).end).max(start);
        let id = (self.resolve)(&path);
        self.field_refs.push(FieldRef {
            path,
            span: start..end,
            id,
        });
        Some(id)
    }

    fn literal(&mut self, id: u64, literal: &LiteralValue) -> Option<Literal> {
        Some(match literal {
            LiteralValue::Null => Literal::Null,
            LiteralValue::Boolean(b) => Literal::Bool(*b.inner()),
            LiteralValue::Int(i) => Literal::Num(*i.inner() as f64),
            LiteralValue::UInt(u) => Literal::Num(*u.inner() as f64),
            LiteralValue::Double(d) => Literal::Num(*d.inner()),
            LiteralValue::String(s) => Literal::Str(s.inner().into()),
            LiteralValue::Bytes(_) => {
                self.error(self.span(id), "bytes literals are not supported in filters");
                return None;
            }
        })
    }

    /// Lowers two operands, reporting errors in both.
    fn pair(&mut self, args: &[IdedExpr], depth: usize) -> Option<Box<(Node, Node)>> {
        let [left, right] = args else {
            return None;
        };
        let left = self.node(left, depth + 1);
        let right = self.node(right, depth + 1);
        Some(Box::new((left?, right?)))
    }

    fn call(&mut self, id: u64, call: &CallExpr, depth: usize) -> Option<Node> {
        let name = call.func_name.as_str();
        let args = call.args.as_slice();
        if let Some(target) = &call.target {
            return self.method(id, name, target, args, depth);
        }
        let comparison = match name {
            operators::EQUALS => Some(Comparison::Eq),
            operators::NOT_EQUALS => Some(Comparison::Ne),
            operators::LESS => Some(Comparison::Lt),
            operators::LESS_EQUALS => Some(Comparison::Le),
            operators::GREATER => Some(Comparison::Gt),
            operators::GREATER_EQUALS => Some(Comparison::Ge),
            _ => None,
        };
        if let Some(comparison) = comparison {
            for arg in args {
                if matches!(arg.expr, Expr::Literal(LiteralValue::Null)) {
                    self.error(
                        self.span(arg.id),
                        "a comparison with `null` is never true (a missing field is null); use `has(field)` or `!has(field)`",
                    );
                }
            }
            return self
                .pair(args, depth)
                .map(|pair| Node::Compare(comparison, pair));
        }
        let arithmetic = match name {
            operators::ADD => Some(Arithmetic::Add),
            operators::SUBSTRACT => Some(Arithmetic::Subtract),
            operators::MULTIPLY => Some(Arithmetic::Multiply),
            operators::DIVIDE => Some(Arithmetic::Divide),
            operators::MODULO => Some(Arithmetic::Remainder),
            _ => None,
        };
        if let Some(arithmetic) = arithmetic {
            return self
                .pair(args, depth)
                .map(|pair| Node::Arithmetic(arithmetic, pair));
        }
        match (name, args) {
            (operators::LOGICAL_AND, _) => self.pair(args, depth).map(Node::And),
            (operators::LOGICAL_OR, _) => self.pair(args, depth).map(Node::Or),
            (operators::LOGICAL_NOT, [inner]) => {
                self.node(inner, depth + 1).map(|n| Node::Not(Box::new(n)))
            }
            (operators::NEGATE, [inner]) => self
                .node(inner, depth + 1)
                .map(|n| Node::Negate(Box::new(n))),
            (operators::IN, [needle, list]) => {
                let needle = self.node(needle, depth + 1);
                let list = self.list(list);
                Some(Node::In(Box::new(needle?), Box::new(list?)))
            }
            (operators::INDEX | operators::OPT_INDEX, _) => {
                self.error(
                    self.span(id),
                    "indexing with `[]` is not supported in filters",
                );
                None
            }
            (operators::CONDITIONAL, _) => {
                self.error(
                    self.span(id),
                    "the conditional operator `? :` is not supported in filters",
                );
                None
            }
            (operators::OPT_SELECT, _) => {
                self.error(
                    self.span(id),
                    "optional selection `?.` is not supported in filters",
                );
                None
            }
            (operators::HAS, [arg]) if matches!(arg.expr, Expr::Ident(_) | Expr::Select(_)) => {
                self.field(arg).map(Node::Has)
            }
            (operators::HAS, _) => {
                self.error(
                    self.name_span(id, name),
                    "`has()` takes one field path, like `has(user.id)`",
                );
                None
            }
            _ => {
                self.error(
                    self.name_span(id, name),
                    format!("unsupported function `{name}`"),
                );
                None
            }
        }
    }

    fn method(
        &mut self,
        id: u64,
        name: &str,
        target: &IdedExpr,
        args: &[IdedExpr],
        depth: usize,
    ) -> Option<Node> {
        let test = match name {
            "startsWith" => TextTest::StartsWith,
            "endsWith" => TextTest::EndsWith,
            "contains" => TextTest::Contains,
            operators::ALL
            | operators::EXISTS
            | operators::EXISTS_ONE
            | operators::MAP
            | operators::FILTER => {
                self.error(
                    self.name_span(id, name),
                    format!("the `{name}` macro is not supported in filters"),
                );
                return None;
            }
            _ => {
                self.error(
                    self.name_span(id, name),
                    format!(
                        "unsupported method `{name}`, expected `startsWith`, `endsWith` or `contains`"
                    ),
                );
                return None;
            }
        };
        let [arg] = args else {
            self.error(
                self.name_span(id, name),
                format!("`{name}` takes one argument, like `s.{name}('x')`"),
            );
            return None;
        };
        let target = self.node(target, depth + 1);
        let arg = self.node(arg, depth + 1);
        Some(Node::Text(test, Box::new((target?, arg?))))
    }

    /// The right side of `in`: a list of literals.
    fn list(&mut self, expr: &IdedExpr) -> Option<ListLiteral> {
        let Expr::List(list) = &expr.expr else {
            self.error(
                self.span(expr.id),
                "`in` needs a list of literals on its right, like `x in ['a', 'b']`",
            );
            return None;
        };
        let mut literals = Vec::with_capacity(list.elements.len());
        let mut ok = true;
        for element in &list.elements {
            match &element.expr {
                Expr::Literal(literal) => match self.literal(element.id, literal) {
                    Some(literal) => literals.push(literal),
                    None => ok = false,
                },
                _ => {
                    self.error(
                        self.span(element.id),
                        "`in` lists can only hold literals (strings, numbers, booleans)",
                    );
                    ok = false;
                }
            }
        }
        ok.then(|| ListLiteral::new(literals))
    }
}
