//! Aggregate calls as windows write them: `count()`, `sum(amount)`,
//! `percentile(latency.ms, 0.99)`. A tiny hand-written parser, so every
//! error has a column inside the string.

use std::ops::Range;

use crate::plan::AggregateFunction;

/// A parsed aggregate call.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AggregateCall {
    pub(crate) function: AggregateFunction,
    /// The argument field and its span in the call text (`None` for `count()`).
    pub(crate) field: Option<(String, Range<usize>)>,
    /// `max_by`/`min_by`: the numeric field that picks the record.
    pub(crate) by: Option<(String, Range<usize>)>,
}

/// An error in a call, with its span in the call text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CallError {
    pub(crate) span: Range<usize>,
    pub(crate) message: String,
}

fn error<T>(span: Range<usize>, message: impl Into<String>) -> Result<T, CallError> {
    Err(CallError {
        span,
        message: message.into(),
    })
}

const FUNCTIONS: &str = "`count`, `sum`, `min`, `max`, `avg`, `variance`, `stddev`, \
     `count_distinct`, `count_distinct_approx`, `percentile`, `max_by`, `min_by`, `first`, `last`, `top_k`";

#[derive(Debug)]
enum Arg {
    Field(String, Range<usize>),
    Number(f64, Range<usize>),
}

impl Arg {
    fn span(&self) -> Range<usize> {
        match self {
            Arg::Field(_, span) | Arg::Number(_, span) => span.clone(),
        }
    }
}

/// Parses an aggregate call.
pub(crate) fn parse_aggregate(text: &str) -> Result<AggregateCall, CallError> {
    let mut scanner = Scanner { text, at: 0 };
    scanner.skip_spaces();
    if scanner.at == text.len() {
        return error(
            0..text.len(),
            "empty aggregate, expected a call like `sum(amount)`",
        );
    }
    let name_span = scanner.take_while(|c| c.is_ascii_alphanumeric() || c == '_');
    let name = &text[name_span.clone()];
    if name.is_empty() {
        return error(
            scanner.here(),
            "expected an aggregate function, like `sum(amount)`",
        );
    }
    let function = match name {
        "count" => AggregateFunction::Count,
        "sum" => AggregateFunction::Sum,
        "min" => AggregateFunction::Min,
        "max" => AggregateFunction::Max,
        "avg" => AggregateFunction::Avg,
        "count_distinct" => AggregateFunction::CountDistinct,
        "count_distinct_approx" => AggregateFunction::CountDistinctApprox,
        "variance" => AggregateFunction::Variance,
        "stddev" => AggregateFunction::Stddev,
        "max_by" => AggregateFunction::MaxBy,
        "min_by" => AggregateFunction::MinBy,
        "first" => AggregateFunction::First,
        "last" => AggregateFunction::Last,
        "percentile" => AggregateFunction::Percentile(0.0),
        "top_k" => AggregateFunction::TopK(0),
        _ => {
            return error(
                name_span,
                format!("unknown aggregate function `{name}`, expected one of {FUNCTIONS}"),
            )
        }
    };
    scanner.skip_spaces();
    if !scanner.eat('(') {
        return error(scanner.here(), format!("expected `(` after `{name}`"));
    }
    let open = scanner.at - 1;
    let mut args = Vec::new();
    scanner.skip_spaces();
    if !scanner.eat(')') {
        loop {
            scanner.skip_spaces();
            args.push(scanner.arg()?);
            scanner.skip_spaces();
            if scanner.eat(')') {
                break;
            }
            if !scanner.eat(',') {
                return if scanner.at == text.len() {
                    error(scanner.here(), "missing `)`")
                } else {
                    error(scanner.here(), "expected `,` or `)`")
                };
            }
        }
    }
    let parens = open..scanner.at;
    scanner.skip_spaces();
    if scanner.at < text.len() {
        return error(scanner.at..text.len(), "unexpected text after the call");
    }

    let one_field = |args: &[Arg]| -> Result<(String, Range<usize>), CallError> {
        match args {
            [Arg::Field(field, span)] => Ok((field.clone(), span.clone())),
            [Arg::Number(_, span)] => error(span.clone(), "expected a field name, not a number"),
            _ => error(
                parens.clone(),
                format!("`{name}` takes one field, like `{name}(amount)`"),
            ),
        }
    };
    match function {
        AggregateFunction::Count => {
            if !args.is_empty() {
                return error(
                    parens,
                    "`count()` takes no arguments: it counts records (`count_distinct(field)` counts distinct values)",
                );
            }
            Ok(AggregateCall {
                function,
                field: None,
                by: None,
            })
        }
        AggregateFunction::MaxBy | AggregateFunction::MinBy => match args.as_slice() {
            [Arg::Field(by, by_span), Arg::Field(field, span)] => Ok(AggregateCall {
                function,
                field: Some((field.clone(), span.clone())),
                by: Some((by.clone(), by_span.clone())),
            }),
            [Arg::Number(_, span), _] | [_, Arg::Number(_, span)] => {
                error(span.clone(), "expected a field name, not a number")
            }
            _ => error(
                parens,
                format!(
                    "`{name}` takes a numeric field and the field to return, like `{name}(price, auction)`"
                ),
            ),
        },
        AggregateFunction::Percentile(_) => match args.as_slice() {
            [Arg::Field(field, span), Arg::Number(q, q_span)] => {
                if !(0.0..=1.0).contains(q) {
                    return error(
                        q_span.clone(),
                        format!(
                            "quantile `{}` is not between 0 and 1",
                            &text[q_span.clone()]
                        ),
                    );
                }
                Ok(AggregateCall {
                    function: AggregateFunction::Percentile(*q),
                    field: Some((field.clone(), span.clone())),
                    by: None,
                })
            }
            [Arg::Number(_, span), _] => error(span.clone(), "expected a field name, not a number"),
            [Arg::Field(..), q] => {
                error(q.span(), "expected a quantile between 0 and 1, like `0.99`")
            }
            _ => error(
                parens,
                "`percentile` takes a field and a quantile, like `percentile(amount, 0.99)`",
            ),
        },
        AggregateFunction::TopK(_) => match args.as_slice() {
            [Arg::Field(field, span), Arg::Number(k, k_span)] => {
                if k.fract() != 0.0 || !(1.0..=f64::from(MAX_TOP_K)).contains(k) {
                    return error(
                        k_span.clone(),
                        format!(
                            "`top_k` lists 1 to {MAX_TOP_K} values, not `{}`",
                            &text[k_span.clone()]
                        ),
                    );
                }
                Ok(AggregateCall {
                    function: AggregateFunction::TopK(*k as u32),
                    field: Some((field.clone(), span.clone())),
                    by: None,
                })
            }
            [Arg::Number(_, span), _] => error(span.clone(), "expected a field name, not a number"),
            [Arg::Field(..), k] => error(
                k.span(),
                "expected how many values to list, like `top_k(page, 10)`",
            ),
            _ => error(
                parens,
                "`top_k` takes a field and how many values to list, like `top_k(page, 10)`",
            ),
        },
        _ => Ok(AggregateCall {
            function,
            field: Some(one_field(&args)?),
            by: None,
        }),
    }
}

/// The longest list `top_k` gives.
const MAX_TOP_K: u32 = 1000;

struct Scanner<'a> {
    text: &'a str,
    at: usize,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<char> {
        self.text[self.at..].chars().next()
    }

    /// The span of the character here (empty at the end).
    fn here(&self) -> Range<usize> {
        self.at..self.at + self.peek().map_or(0, char::len_utf8)
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.at += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn skip_spaces(&mut self) {
        self.take_while(char::is_whitespace);
    }

    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> Range<usize> {
        let start = self.at;
        while let Some(c) = self.peek().filter(|c| keep(*c)) {
            self.at += c.len_utf8();
        }
        start..self.at
    }

    /// A field path or a number.
    fn arg(&mut self) -> Result<Arg, CallError> {
        match self.peek() {
            Some(c) if c.is_ascii_digit() || c == '.' || c == '-' || c == '+' => {
                let span = self
                    .take_while(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E'));
                match self.text[span.clone()].parse::<f64>() {
                    Ok(number) if number.is_finite() => Ok(Arg::Number(number, span)),
                    _ => error(span, "invalid number"),
                }
            }
            Some(c) if c.is_alphanumeric() || c == '_' => {
                let span = self.take_while(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'));
                let path = &self.text[span.clone()];
                if path.split('.').any(str::is_empty) {
                    return error(span, format!("invalid field path `{path}`"));
                }
                Ok(Arg::Field(path.to_string(), span))
            }
            Some(_) => error(self.here(), "expected a field name"),
            None => error(self.here(), "missing `)`"),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn field(text: &str) -> (AggregateFunction, Option<String>) {
        let call = parse_aggregate(text).unwrap();
        (call.function, call.field.map(|(f, _)| f))
    }

    fn fails(text: &str) -> (String, String) {
        let e = parse_aggregate(text).unwrap_err();
        (text[e.span.clone()].to_string(), e.message)
    }

    #[test]
    fn parses_every_function() {
        assert_eq!(field("count()"), (AggregateFunction::Count, None));
        assert_eq!(field(" count ( ) "), (AggregateFunction::Count, None));
        assert_eq!(
            field("sum(amount)"),
            (AggregateFunction::Sum, Some("amount".into()))
        );
        assert_eq!(
            field("avg( device.temp )"),
            (AggregateFunction::Avg, Some("device.temp".into()))
        );
        assert_eq!(field("min(x)").0, AggregateFunction::Min);
        assert_eq!(field("max(x)").0, AggregateFunction::Max);
        assert_eq!(
            field("count_distinct(user_id)").0,
            AggregateFunction::CountDistinct
        );
        assert_eq!(field("variance(x)").0, AggregateFunction::Variance);
        assert_eq!(field("stddev(x)").0, AggregateFunction::Stddev);
        assert_eq!(field("first(page)").0, AggregateFunction::First);
        assert_eq!(field("last(page)").0, AggregateFunction::Last);
        let call = parse_aggregate("max_by(price, auction)").unwrap();
        assert_eq!(call.function, AggregateFunction::MaxBy);
        assert_eq!(call.field.unwrap().0, "auction");
        assert_eq!(call.by.unwrap(), ("price".to_string(), 7..12));
        assert_eq!(fails("min_by(price)").0, "(price)");
        assert_eq!(fails("min_by(price, 3)").0, "3");
        assert_eq!(
            field("count_distinct_approx(user_id)"),
            (
                AggregateFunction::CountDistinctApprox,
                Some("user_id".into())
            )
        );
        assert_eq!(
            field("percentile(amount, 0.99)"),
            (AggregateFunction::Percentile(0.99), Some("amount".into()))
        );
        assert_eq!(
            field("percentile(a,1)").0,
            AggregateFunction::Percentile(1.0)
        );
        let call = parse_aggregate("sum( amount )").unwrap();
        assert_eq!(call.field.unwrap().1, 5..11);
    }

    #[test]
    fn locates_every_error() {
        assert_eq!(fails("median(x)").0, "median");
        assert!(fails("median(x)")
            .1
            .starts_with("unknown aggregate function `median`"));
        assert_eq!(
            fails("sum()"),
            (
                "()".into(),
                "`sum` takes one field, like `sum(amount)`".into()
            )
        );
        assert_eq!(fails("count(x)").0, "(x)");
        assert_eq!(fails("percentile(x)").0, "(x)");
        assert_eq!(
            fails("percentile(x, 1.5)"),
            ("1.5".into(), "quantile `1.5` is not between 0 and 1".into())
        );
        assert_eq!(fails("percentile(x, y)").0, "y");
        assert_eq!(fails("sum(1)").0, "1");
        assert_eq!(fails("sum amount").0, "a");
        assert_eq!(fails("sum(amount").1, "missing `)`");
        assert_eq!(fails("sum(a b)").0, "b");
        assert_eq!(fails("sum(a) x").0, "x");
        assert_eq!(fails("sum(a..b)").0, "a..b");
        assert_eq!(
            fails("").1,
            "empty aggregate, expected a call like `sum(amount)`"
        );
        assert_eq!(fails("(x)").0, "(");
    }

    proptest! {
        #[test]
        fn never_panics_and_spans_are_in_bounds(text in "\\PC{0,20}") {
            if let Err(e) = parse_aggregate(&text) {
                prop_assert!(e.span.start <= e.span.end && e.span.end <= text.len());
                prop_assert!(text.is_char_boundary(e.span.start) && text.is_char_boundary(e.span.end));
            }
        }
    }
}
