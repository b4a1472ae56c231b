//! Parsing CEL text with the `cel` crate, and turning its syntax errors
//! (ANTLR's wording and line/column positions) into located, readable
//! messages.
//!
//! Two guards run first. The parser and the tree built from it recurse, so
//! text that nests very deeply or chains thousands of operators could
//! overflow a thread's stack (which aborts the process, it is not a panic):
//! such text is refused up front. And a panic inside the parser, should
//! one exist, is caught and reported as an error in the expression.

use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};

use cel::common::ast::{IdedExpr, SourceInfo};

use super::ExprError;

/// Deepest bracket nesting accepted.
const MAX_NESTING: usize = 32;
/// Most operator characters (and dots) accepted: bounds the depth of
/// left-leaning chains like `a + b + c + ...`, which nesting does not see.
const MAX_OPERATORS: usize = 1000;
/// The parser's own limit on grammar rule recursion.
const MAX_RECURSION: u16 = 64;

/// A parsed expression and its node offsets.
pub(crate) struct Parsed {
    pub(crate) expr: IdedExpr,
    pub(crate) info: SourceInfo,
}

/// Parses CEL text.
pub(crate) fn parse(text: &str) -> Result<Parsed, ExprError> {
    check_size(text)?;
    if text.trim().is_empty() {
        return Err(ExprError {
            span: 0..text.len(),
            message: "empty expression".to_string(),
        });
    }
    // No macros: `has(a.b)` stays a call (so `has(a)` works too), and
    // `all`/`exists`/`map`/`filter` stay calls that are refused by name.
    let result = catch_unwind(AssertUnwindSafe(|| {
        cel::Env::default()
            .parser()
            .max_recursion_depth(MAX_RECURSION)
            .parse_with_source_info(text)
    }));
    match result {
        Ok(Ok((expr, info))) => Ok(Parsed { expr, info }),
        Ok(Err(errors)) => {
            // Only the first error: the ones after it are mostly echoes.
            let Some(first) = errors.errors.first() else {
                return Err(ExprError {
                    span: 0..0,
                    message: "invalid expression".to_string(),
                });
            };
            let at = position_offset(text, first.pos);
            let message = describe(&first.msg, text, at);
            Err(ExprError {
                span: token_span(text, at, &message),
                message: format!("invalid expression: {message}"),
            })
        }
        Err(_) => Err(ExprError {
            span: 0..text.len(),
            message: "invalid expression: the CEL parser failed on it (please report this)"
                .to_string(),
        }),
    }
}

/// Refuses text that nests or chains deeper than the parser can take.
fn check_size(text: &str) -> Result<(), ExprError> {
    let mut depth = 0usize;
    let mut operators = 0usize;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (at, c) in text.char_indices() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' => quote = Some(c),
            '(' | '[' | '{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(ExprError {
                        span: at..at + 1,
                        message: format!(
                            "expression nests too deeply (more than {MAX_NESTING} levels)"
                        ),
                    });
                }
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            '+' | '-' | '*' | '/' | '%' | '<' | '>' | '=' | '!' | '&' | '|' | '.' | '?' => {
                operators += 1;
                if operators > MAX_OPERATORS {
                    return Err(ExprError {
                        span: at..at + 1,
                        message: format!(
                            "expression is too long (more than {MAX_OPERATORS} operators)"
                        ),
                    });
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The byte offset of a 1-based (line, column-in-characters) position.
fn position_offset(text: &str, (line, column): (isize, isize)) -> usize {
    let line = usize::try_from(line).unwrap_or(1).max(1);
    let column = usize::try_from(column).unwrap_or(1).max(1);
    let mut line_start = 0;
    for _ in 1..line {
        match text[line_start..].find('\n') {
            Some(newline) => line_start += newline + 1,
            None => return text.len(),
        }
    }
    text[line_start..]
        .char_indices()
        .nth(column - 1)
        .map_or(text.len(), |(at, _)| line_start + at)
}

/// The span of the token a message names (`unexpected `==``) when the text
/// at `at` is that token, else of the character there.
fn token_span(text: &str, at: usize, message: &str) -> Range<usize> {
    let named = message
        .rsplit_once("found `")
        .or_else(|| message.split_once("unexpected `"))
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(token, _)| token);
    match named {
        Some(token)
            if !token.is_empty() && text.get(at..).is_some_and(|rest| rest.starts_with(token)) =>
        {
            at..at + token.len()
        }
        _ => char_span(text, at),
    }
}

/// The span of the character at `at` (empty at the end).
fn char_span(text: &str, at: usize) -> Range<usize> {
    let len = text
        .get(at..)
        .and_then(|rest| rest.chars().next())
        .map_or(0, char::len_utf8);
    at..at + len
}

/// ANTLR's message, said the way a user would: `mismatched input '<EOF>'
/// expecting {...30 tokens...}` becomes `unexpected end of expression`.
fn describe(message: &str, text: &str, at: usize) -> String {
    let message = message.strip_prefix("Syntax error: ").unwrap_or(message);
    let quoted = |m: &str, prefix: &str| -> Option<String> {
        let rest = m.strip_prefix(prefix)?;
        let end = rest.rfind('\'')?;
        Some(rest.get(..end)?.to_string())
    };
    if let Some(input) = message
        .strip_prefix("mismatched input '")
        .or_else(|| message.strip_prefix("extraneous input '"))
    {
        let token = input.split("' expecting").next().unwrap_or(input);
        if token == "<EOF>" {
            return "unexpected end of expression".to_string();
        }
        if let Some(expected) = input.split("' expecting ").nth(1) {
            if expected.starts_with('\'') && !expected.contains(',') {
                return format!(
                    "expected `{}`, found `{token}`",
                    expected.trim_matches('\'')
                );
            }
        }
        return format!("unexpected `{token}`");
    }
    if let Some(rest) = message.strip_prefix("missing '") {
        let mut parts = rest.splitn(2, "' at '");
        let missing = parts.next().unwrap_or_default();
        let before = parts.next().unwrap_or_default().trim_end_matches('\'');
        return if before == "<EOF>" {
            format!("missing `{missing}` at the end")
        } else {
            format!("missing `{missing}` before `{before}`")
        };
    }
    if let Some(bad) = quoted(message, "token recognition error at: '") {
        let c = bad.chars().next().unwrap_or(' ');
        return match c {
            '\'' | '"' => "unterminated string".to_string(),
            '=' => "unexpected `=` (use `==` to compare)".to_string(),
            '&' => "unexpected `&` (use `&&` for and)".to_string(),
            '|' => "unexpected `|` (use `||` for or)".to_string(),
            c => format!("unexpected character `{c}`"),
        };
    }
    if message.starts_with("no viable alternative") {
        return match text
            .get(at..)
            .and_then(|rest| rest.split_whitespace().next())
        {
            Some(token) => format!("unexpected `{token}`"),
            None => "unexpected end of expression".to_string(),
        };
    }
    if message.contains("recursion") {
        return "expression nests too deeply".to_string();
    }
    if message.contains("'`'") {
        return "backquoted field names are not supported".to_string();
    }
    // The crate's own messages: keep them, in this crate's style.
    let mut message = message.trim_end_matches('.').to_string();
    if let Some(first) = message.get(..1) {
        let lower = first.to_lowercase();
        message.replace_range(..1, &lower);
    }
    message
}
