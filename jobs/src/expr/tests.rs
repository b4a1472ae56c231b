#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::borrow::Cow;

use proptest::prelude::*;

use super::*;
use crate::value::Value;

/// Compiles `text`, interning fields in order of appearance.
fn compile_with_names(text: &str) -> Result<(CompiledExpr, Vec<String>), Vec<ExprError>> {
    let mut names: Vec<String> = Vec::new();
    let compiled = compile(text, &mut |path| {
        let index = names.iter().position(|n| n == path).unwrap_or_else(|| {
            names.push(path.to_string());
            names.len() - 1
        });
        FieldId(index as u32)
    })?;
    Ok((compiled.expr, names))
}

/// Evaluates `text` over a record given as `(field, value)` pairs.
fn eval_on(text: &str, record: &[(&str, Value<'static>)]) -> bool {
    let (expr, names) = compile_with_names(text).unwrap_or_else(|e| panic!("{text}: {e:?}"));
    let row: Vec<Value<'static>> = names
        .iter()
        .map(|name| {
            record
                .iter()
                .find(|(n, _)| n == name)
                .map_or(Value::Null, |(_, v)| v.clone())
        })
        .collect();
    expr.matches(row.as_slice())
}

fn s(text: &'static str) -> Value<'static> {
    Value::Str(Cow::Borrowed(text))
}

/// The first error's message and the text it points at.
fn error_of(text: &str) -> (String, String) {
    let errors = compile_with_names(text)
        .err()
        .unwrap_or_else(|| panic!("{text} compiled"));
    let first = &errors[0];
    (first.message.clone(), text[first.span.clone()].to_string())
}

#[test]
fn compares_numbers_strings_and_bools() {
    let record = [
        ("amount", Value::Num(5.0)),
        ("type", s("checkout")),
        ("ok", Value::Bool(true)),
    ];
    assert!(eval_on("amount > 4", &record));
    assert!(eval_on("amount >= 5.0", &record));
    assert!(!eval_on("amount < 5", &record));
    assert!(eval_on("amount == 5", &record));
    assert!(eval_on("type == 'checkout'", &record));
    assert!(eval_on("type != \"view\"", &record));
    // Same length, other bytes; and the same string.
    assert!(!eval_on("type == 'checkouX'", &record));
    assert!(eval_on("type != 'checkouX'", &record));
    assert!(!eval_on("type != 'checkout'", &record));
    assert!(eval_on("type < 'd'", &record));
    assert!(eval_on("ok == true", &record));
    assert!(eval_on("ok", &record));
    assert!(eval_on("type != 'product_view' && amount > 0", &record));
}

#[test]
fn comparisons_with_null_or_mismatched_types_are_false() {
    let record = [("amount", s("12"))];
    assert!(!eval_on("missing == 'a'", &record));
    assert!(!eval_on("missing != 'a'", &record));
    assert!(!eval_on("missing in ['a']", &record));
    assert!(!eval_on("missing.startsWith('a')", &record));
    assert!(!eval_on("amount > 1", &record));
    assert!(!eval_on("amount <= 1", &record));
    assert!(!eval_on("amount != 12", &record));
    assert!(!eval_on("missing", &record));
    assert!(!eval_on("!missing", &record));
    assert!(!eval_on("missing + 1 > 0", &record));
    assert!(!eval_on("missing + 1 <= 0", &record));
    // A failed comparison is a real false, which `!` turns into true.
    assert!(eval_on("!(missing == 'a')", &record));
    assert!(eval_on("!(amount > 1)", &record));
    assert!(eval_on("!(missing + 1 > 0)", &record));
}

#[test]
fn and_or_short_circuit_around_errors() {
    let record = [("x", Value::Num(1.0)), ("t", s("text"))];
    // `!t` and `x / 0` are errors; `false && error` and `true || error` are not.
    assert!(!eval_on("!t && x == 1", &record));
    assert!(!eval_on("!(!t && x == 1)", &record));
    assert!(eval_on("!(!t && x == 2)", &record));
    assert!(eval_on("!t || x == 1", &record));
    assert!(eval_on("x == 1 || !t", &record));
    assert!(!eval_on("!(!t || x == 2)", &record));
    assert!(!eval_on("missing > 1 && x == 1", &record));
    assert!(eval_on("missing > 1 || x == 1", &record));
    assert!(eval_on("x == 1 || missing > 1", &record));
    assert!(!eval_on("x == 2 && missing > 1", &record));
    assert!(!eval_on("x == 1 && missing > 1", &record));
    assert!(!eval_on("missing > 1 || x == 2", &record));
    assert!(eval_on("!(x == 2)", &record));
}

#[test]
fn in_lists_has_and_string_tests() {
    let record = [
        ("country", s("fr")),
        ("code", Value::Num(404.0)),
        ("user", Value::Other),
        ("path", s("/api/v1/items")),
        ("zero", Value::Num(-0.0)),
    ];
    assert!(eval_on("country in ['de', 'fr']", &record));
    assert!(!eval_on("country in ['de', 'es']", &record));
    assert!(eval_on("code in [400, 404.0, 'x']", &record));
    assert!(!eval_on("code in ['404']", &record));
    assert!(!eval_on("missing in ['a']", &record));
    assert!(eval_on("zero in [0]", &record));
    assert!(eval_on("has(user)", &record));
    assert!(eval_on("!has(user.id)", &record));
    assert!(eval_on("has(country) && !has(missing)", &record));
    assert!(eval_on("path.startsWith('/api/')", &record));
    assert!(eval_on("path.endsWith('items')", &record));
    assert!(eval_on("path.contains('v1')", &record));
    assert!(!eval_on("code.startsWith('4')", &record));
    assert!(eval_on("!code.startsWith('4')", &record));
}

#[test]
fn arithmetic_on_numbers() {
    let record = [
        ("a", Value::Num(7.0)),
        ("b", Value::Num(2.0)),
        ("t", s("x")),
    ];
    assert!(eval_on("a + b == 9", &record));
    assert!(eval_on("a - b * 2 == 3", &record));
    assert!(eval_on("a / b == 3.5", &record));
    assert!(eval_on("a % b == 1", &record));
    assert!(eval_on("-a < 0", &record));
    assert!(eval_on("(a + 1) * 2 == 16", &record));
    // A division by zero is null, and so fails every comparison.
    assert!(!eval_on("a / 0 > 0", &record));
    assert!(!eval_on("a / 0 <= 0", &record));
    assert!(!eval_on("a % 0 == 0", &record));
    assert!(eval_on("!(a / 0 > 0)", &record));
    assert!(!eval_on("t + 1 > 0", &record));
    assert!(eval_on("a > -1.5e1", &record));
}

#[test]
fn dotted_paths_are_single_fields() {
    let (expr, names) = compile_with_names("device.id == 'x' && device . os == 'y'").unwrap();
    assert_eq!(names, ["device.id", "device.os"]);
    assert_eq!(expr.fields(), [FieldId(0), FieldId(1)]);
    let compiled = compile("a.b.c > 1 && a.b.c < 3", &mut |_| FieldId(0)).unwrap();
    assert_eq!(compiled.expr.fields(), [FieldId(0)]);
    let spans: Vec<_> = compiled.field_refs.iter().map(|r| r.span.clone()).collect();
    assert_eq!(spans, [0..5, 13..18]);
}

#[test]
fn field_spans_count_bytes_after_multibyte_text() {
    let text = "'é' == x.y && z > 1";
    let compiled = compile(text, &mut |_| FieldId(0)).unwrap();
    let found: Vec<_> = compiled
        .field_refs
        .iter()
        .map(|r| &text[r.span.clone()])
        .collect();
    assert_eq!(found, ["x.y", "z"]);
}

#[test]
fn syntax_errors_point_at_the_column() {
    assert_eq!(
        error_of("a == 1 &&"),
        (
            "invalid expression: unexpected end of expression".into(),
            "".into()
        )
    );
    assert_eq!(
        error_of("a = 1"),
        (
            "invalid expression: unexpected `=` (use `==` to compare)".into(),
            "=".into()
        )
    );
    assert_eq!(
        error_of("(a == 1"),
        (
            "invalid expression: missing `)` at the end".into(),
            "".into()
        )
    );
    assert_eq!(
        error_of("a == 1 b"),
        ("invalid expression: unexpected `b`".into(), "b".into())
    );
    assert_eq!(
        error_of("x == 'é' &&& y"),
        (
            "invalid expression: unexpected `&` (use `&&` for and)".into(),
            "&".into()
        )
    );
    assert_eq!(
        error_of("x == 'abc").0,
        "invalid expression: unterminated string"
    );
    assert_eq!(error_of("   ").0, "empty expression");
}

#[test]
fn unsupported_constructs_are_located() {
    assert_eq!(
        error_of("items.all(i, i > 1)"),
        (
            "the `all` macro is not supported in filters".into(),
            "all".into()
        )
    );
    assert_eq!(
        error_of("size(x) > 1"),
        ("unsupported function `size`".into(), "size".into())
    );
    assert_eq!(error_of("x.matches('a')").1, "matches");
    assert_eq!(error_of("a[0] == 1").1, "[");
    assert_eq!(
        error_of("{'a': 1} == x").0,
        "maps are not supported in filters"
    );
    assert_eq!(error_of("a ? b : c").1, "?");
    assert_eq!(error_of("x in y").1, "y");
    assert_eq!(error_of("x in [y]").1, "y");
    assert_eq!(error_of("x == b'ab'").1, "b'ab'");
    assert_eq!(error_of("has(1)").1, "has");
    assert_eq!(error_of("x == null").1, "null");
    assert_eq!(error_of("x.startsWith()").1, "startsWith");
    assert_eq!(
        error_of("amount + 1").0,
        "a filter must be a condition (true or false), not a number or a string"
    );
    let (message, _) = error_of(&"(".repeat(40));
    assert!(message.contains("nests too deeply"), "{message}");
    let (message, _) = error_of(&format!("a{}", " + a".repeat(2000)));
    assert!(message.contains("too long"), "{message}");
}

#[test]
fn every_error_of_an_expression_is_reported() {
    let errors = compile_with_names("size(a) > 1 && b.exists(x, x) && c[1] == 2").unwrap_err();
    assert_eq!(errors.len(), 3);
}

#[test]
fn compiled_expressions_are_send_sync_clone() {
    fn check<T: Send + Sync + Clone + std::fmt::Debug>() {}
    check::<CompiledExpr>();
}

fn value_strategy() -> impl Strategy<Value = Value<'static>> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-3i8..3).prop_map(|n| Value::Num(f64::from(n))),
        prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(-0.0)].prop_map(Value::Num),
        "[ab]{0,2}".prop_map(|s| Value::Str(Cow::Owned(s))),
        Just(Value::Other),
    ]
}

proptest! {
    // A field against a literal (evaluated by its own short path) decides
    // exactly as the mirrored comparison, a literal against a field
    // (evaluated node by node), for every value and literal kind.
    #[test]
    fn a_field_against_a_literal_decides_as_the_mirrored_comparison(
        a in value_strategy(),
        literal in prop::sample::select(vec![
            "true", "false", "0", "-1", "2", "0.5", "''", "'a'", "'ab'", "'b'",
        ]),
    ) {
        let row = [a];
        let check = |text: &str| {
            let expr = compile(text, &mut |_| FieldId(0)).unwrap().expr;
            expr.matches(row.as_slice())
        };
        for (op, mirrored) in [("==", "=="), ("!=", "!="), ("<", ">"), ("<=", ">="), (">", "<"), (">=", "<=")] {
            prop_assert_eq!(
                check(&format!("a {op} {literal}")),
                check(&format!("{literal} {mirrored} a")),
                "a {} {} on {:?}", op, literal, row[0]
            );
        }
    }

    #[test]
    fn a_comparison_and_its_opposite_never_both_pass(a in value_strategy(), b in value_strategy()) {
        let row = [a, b];
        let check = |text: &str| {
            let expr = compile(text, &mut |path| FieldId(u32::from(path == "b"))).unwrap().expr;
            expr.matches(row.as_slice())
        };
        prop_assert!(!(check("a < b") && check("a >= b")));
        prop_assert!(!(check("a > b") && check("a <= b")));
        prop_assert!(!(check("a == b") && check("a != b")));
        prop_assert!(!(check("a == b") && check("!(a == b)")));
        // Whenever the values are comparable, exactly one of each pair holds.
        if check("a < b") || check("a >= b") {
            prop_assert!(check("a == b") ^ check("a != b"));
        }
    }

    #[test]
    fn compiling_never_panics_and_errors_are_in_bounds(text in "\\PC{0,40}") {
        if let Err(errors) = compile(&text, &mut |_| FieldId(0)) {
            prop_assert!(!errors.is_empty());
            for error in errors {
                prop_assert!(error.span.start <= error.span.end);
                prop_assert!(error.span.end <= text.len());
                prop_assert!(text.is_char_boundary(error.span.start));
                prop_assert!(text.is_char_boundary(error.span.end));
            }
        }
    }

    #[test]
    fn compiling_cel_like_text_never_panics(
        parts in proptest::collection::vec(
            prop_oneof![
                Just("a"), Just("b.c"), Just("1"), Just("'x'"), Just("=="), Just("<"), Just("&&"),
                Just("||"), Just("!"), Just("("), Just(")"), Just("["), Just("]"), Just(","),
                Just("in"), Just("has("), Just(".startsWith("), Just("-"), Just("+"), Just("null"),
                Just("true"), Just("{"), Just("}"), Just(":"), Just("?"), Just("."), Just(" "),
            ],
            0..24,
        )
    ) {
        let text = parts.concat();
        if let Ok(compiled) = compile(&text, &mut |_| FieldId(0)) {
            let row = [Value::Num(1.0)];
            let _ = compiled.expr.matches(row.as_slice());
        }
    }
}
