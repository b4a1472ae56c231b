//! Tests of [`super`]: the projected scanner against serde_json, and its error reasons.

#![allow(clippy::unwrap_used)]
use super::*;
use proptest::prelude::*;

fn decode(paths: &[&str], line: &str) -> Result<Vec<Value<'static>>, DecodeError> {
    decode_bytes(paths, line.as_bytes())
}

fn decode_bytes(paths: &[&str], line: &[u8]) -> Result<Vec<Value<'static>>, DecodeError> {
    let paths: Vec<FieldPath> = paths.iter().map(|p| FieldPath::parse(p)).collect();
    let mut projection = Projection::new(&paths);
    let mut slots = vec![Value::Null; projection.slots()];
    projection.decode(line, &mut slots)?;
    Ok(slots.into_iter().map(Value::into_owned).collect())
}

#[test]
fn decodes_only_projected_fields() {
    let got = decode(
        &["user_id", "amount", "device.os", "device", "missing"],
        r#"{"user_id":"u1","skip":{"a":[1,2,{"b":3}]},"amount":12.5,"device":{"os":"ios","v":2}}"#,
    )
    .unwrap();
    assert_eq!(
        got,
        vec![
            Value::Str("u1".into()),
            Value::Num(12.5),
            Value::Str("ios".into()),
            Value::Other,
            Value::Null
        ]
    );
}

#[test]
fn escaped_strings_and_keys() {
    let got = decode(&["na\"me"], r#"{"na\"me":"a\nb"}"#).unwrap();
    assert_eq!(got, vec![Value::Str("a\nb".into())]);
    let got = decode(&["k"], r#"{"\u006b":"\ud83d\ude00 \u00e9\/"}"#).unwrap();
    assert_eq!(got, vec![Value::Str("😀 é/".into())]);
}

#[test]
fn numbers_and_literals() {
    let got = decode(
        &["a", "b", "c", "d", "e", "f", "g"],
        r#"{"a":-0,"b":12345678901234567890,"c":1.5e3,"d":-2E-2,"e":true,"f":false,"g":null}"#,
    )
    .unwrap();
    assert_eq!(
        got,
        vec![
            Value::Num(0.0),
            Value::Num(12345678901234567890.0),
            Value::Num(1500.0),
            Value::Num(-0.02),
            Value::Bool(true),
            Value::Bool(false),
            Value::Null
        ]
    );
}

#[test]
fn rejects_non_objects_and_bad_json() {
    for bad in [
        "[1,2]",
        "42",
        "",
        r#"{"a":1"#,
        r#"{"a":1} x"#,
        r#"{"b": tru}"#,
        r#"{"a":01}"#,
        r#"{"a":1.}"#,
        r#"{"a":-}"#,
        r#"{"a":1,}"#,
        r#"{"a" 1}"#,
        r#"{a:1}"#,
        r#"{"a":"\x"}"#,
        r#"{"a":"\ud800"}"#,
        "{\"a\":\"tab\there\"}",
        r#"{"a":[1,]}"#,
        r#"{"a":1e}"#,
    ] {
        assert!(decode(&["a"], bad).is_err(), "{bad}");
    }
    assert!(decode_bytes(&["a"], b"{\"a\":\"\xff\"}").is_err());
    let deep = format!("{{\"a\":{}1{}}}", "[".repeat(200), "]".repeat(200));
    assert!(decode(&["a"], &deep).is_err());
}

#[test]
fn errors_say_where() {
    let e = decode(&["a"], r#"{"a":1} x"#).unwrap_err();
    assert_eq!(e.0, "invalid JSON: trailing characters at column 9");
    let e = decode(&["a"], "this line is not JSON").unwrap_err();
    assert_eq!(e.0, "invalid JSON: expected value at column 1");
    let e = decode(&["a"], " [1]").unwrap_err();
    assert_eq!(
        e.0,
        "invalid JSON: a record must be a JSON object at column 2"
    );
    let e = decode(&["a"], r#"{"a":[1,}"#).unwrap_err();
    assert_eq!(e.0, "invalid JSON: expected value at column 9");
}

/// A random JSON value, as text.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        (-1e6f64..1e6).prop_map(|n| serde_json::json!(n)),
        "[a-z\"\\\\\u{e9}\u{1F600}\n\t]{0,8}".prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            proptest::collection::btree_map("[a-c]{1,2}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A record as text, with the value it was written from (whose numbers
/// are exact: serde_json's own parser may be an ulp off, kflow's is not).
fn record() -> impl Strategy<Value = (String, serde_json::Value)> {
    proptest::collection::btree_map("[a-c]{1,2}", json_value(), 0..5).prop_map(|m| {
        let value = serde_json::Value::Object(m.into_iter().collect());
        (value.to_string(), value)
    })
}

/// What serde_json makes of a projected path, as a slot value.
fn expected(root: &serde_json::Value, path: &str) -> Value<'static> {
    let mut v = root;
    for segment in path.split('.') {
        match v.get(segment) {
            Some(next) => v = next,
            None => return Value::Null,
        }
    }
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => Value::Num(n.as_f64().unwrap()),
        serde_json::Value::String(s) => Value::Str(s.clone().into()),
        _ => Value::Other,
    }
}

const PATHS: [&str; 5] = ["a", "b", "a.b", "c.a.c", "bc"];

/// Field names that share their first 7 or 8 bytes or differ only past
/// the 8th.
const LONG_NAMES: [&str; 8] = [
    "date_tim",
    "date_time",
    "date_timf",
    "date_ti",
    "date_time_ms",
    "date_time_mt",
    "d",
    "e",
];

proptest! {
    // Decimal text decodes to exactly the f64 Rust's own parser gives
    // (the short-mantissa fast path and the fallback alike).
    #[test]
    fn decimals_match_the_standard_parser(
        negative in any::<bool>(),
        int in "0|[1-9][0-9]{0,17}",
        frac in proptest::option::of("[0-9]{1,20}"),
    ) {
        let text = format!(
            "{}{}{}",
            if negative { "-" } else { "" },
            int,
            frac.map(|f| format!(".{f}")).unwrap_or_default()
        );
        let got = decode(&["n"], &format!(r#"{{"n":{text}}}"#)).unwrap();
        let want: f64 = text.parse().unwrap();
        prop_assert_eq!(got, vec![Value::Num(want)]);
    }

    // Valid records decode to the values they were written from.
    #[test]
    fn decodes_valid_records_to_the_values_written((line, parsed) in record()) {
        let got = decode(&PATHS, &line).unwrap();
        let want: Vec<Value<'static>> = PATHS.iter().map(|p| expected(&parsed, p)).collect();
        prop_assert_eq!(got, want);
    }

    // Names that share 7 or 8 bytes, or differ only past the 8th, find
    // their own fields, at a line's end too.
    #[test]
    fn similar_names_decode_to_their_own_fields(
        fields in proptest::collection::btree_map(prop::sample::select(LONG_NAMES.to_vec()), json_value(), 0..6),
    ) {
        let value = serde_json::Value::Object(fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect());
        let line = value.to_string();
        let got = decode(&LONG_NAMES, &line).unwrap();
        let want: Vec<Value<'static>> = LONG_NAMES.iter().map(|p| expected(&value, p)).collect();
        prop_assert_eq!(got, want, "{}", line);
    }

    // Any byte changed, inserted or removed: accepted exactly when
    // serde_json accepts the result as an object.
    #[test]
    fn accepts_exactly_what_serde_json_accepts(
        (line, _) in record(),
        at in any::<prop::sample::Index>(),
        byte in prop_oneof![any::<u8>(), prop::sample::select(b"{}[]\",:\\ 0-.eE".to_vec())],
        how in 0..3u8,
    ) {
        let mut bytes = line.into_bytes();
        let i = at.index(bytes.len() + 1);
        match how {
            0 if i < bytes.len() => bytes[i] = byte,
            1 => bytes.insert(i, byte),
            _ if i < bytes.len() => { bytes.remove(i); }
            _ => {}
        }
        let serde = serde_json::from_slice::<serde_json::Value>(&bytes);
        let serde_ok = match &serde {
            Ok(v) => v.is_object(),
            Err(e) if e.to_string().contains("number out of range") => return Ok(()),
            Err(_) => false,
        };
        let ours = decode_bytes(&PATHS, &bytes);
        prop_assert_eq!(ours.is_ok(), serde_ok, "{:?}: {:?}", String::from_utf8_lossy(&bytes), ours);
    }
}

/// Paths for the tests of remembered keys: top-level names that share
/// bytes (one longer than the 16 bytes compared as words), a nested path
/// and an object that is both a slot and a parent.
const SHAPE_PATHS: [&str; 6] = [
    "a",
    "b",
    "date_time",
    "c.a",
    "c.a.c",
    "date_time_of_the_bid",
];

/// A record's text built from keys as written (some escaped, some sharing
/// a prefix with a projected name), whitespace around their colons, and
/// values (some nested objects whose keys are remembered too), with at
/// most one byte changed, inserted or removed.
fn shaped_line() -> impl Strategy<Value = Vec<u8>> {
    let key = prop::sample::select(vec![
        "a",
        "b",
        r"\u0062",
        "date_time",
        "date_tim",
        "date_time_ms",
        "date_time_of_the_bid",
        "date_time_of_the_bik",
        "c",
        r#"a\""#,
        "x",
    ]);
    let value = prop::sample::select(vec![
        "1",
        r#""s""#,
        r#"{"a":2,"c":{"a":{"c":3}}}"#,
        r#"{"a":{"c":4,"b":5},"x":6}"#,
        r#"{"\u0061":7}"#,
        "null",
        "[1,2]",
    ]);
    // Whitespace around the colon: a remembered key ends with what the
    // last record had there, which the next may have more or less of.
    let space = || prop::sample::select(vec!["", "", " ", "  ", "\t"]);
    let fields = proptest::collection::vec((key, space(), space(), value), 0..5);
    (fields, any::<prop::sample::Index>(), any::<u8>(), 0..6u8).prop_map(
        |(fields, at, byte, how)| {
            let inner: Vec<String> = fields
                .iter()
                .map(|(k, before, after, v)| format!(r#""{k}"{before}:{after}{v}"#))
                .collect();
            let mut bytes = format!("{{{}}}", inner.join(",")).into_bytes();
            let i = at.index(bytes.len() + 1);
            match how {
                0 if i < bytes.len() => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                2 if i < bytes.len() => {
                    bytes.remove(i);
                }
                _ => {}
            }
            bytes
        },
    )
}

proptest! {
    // One projection decoding record after record, guessing each key from
    // the record before, decodes every record as a fresh projection does:
    // the same values and the same errors.
    #[test]
    fn remembered_keys_change_no_result(lines in proptest::collection::vec(shaped_line(), 1..16)) {
        let paths: Vec<FieldPath> = SHAPE_PATHS.iter().map(|p| FieldPath::parse(p)).collect();
        let mut reused = Projection::new(&paths);
        for line in &lines {
            let mut slots = vec![Value::Null; reused.slots()];
            let got = reused
                .decode(line, &mut slots)
                .map(|()| slots.into_iter().map(Value::into_owned).collect::<Vec<_>>());
            let want = decode_bytes(&SHAPE_PATHS, line);
            prop_assert_eq!(got, want, "{}", String::from_utf8_lossy(line));
        }
    }
}

#[test]
fn a_record_like_the_last_decodes_from_its_guesses() {
    let paths: Vec<FieldPath> = ["user_id", "amount"]
        .iter()
        .map(|p| FieldPath::parse(p))
        .collect();
    let mut projection = Projection::new(&paths);
    let mut slots = vec![Value::Null; projection.slots()];
    let lines = [
        r#"{"event_id":"e1","user_id":"u1","amount":1.5}"#,
        r#"{"event_id":"e2","user_id":"u2","amount":2}"#,
        // Same place, other keys: a prefix of the guess, and one longer.
        r#"{"event_id":"e3","user_i":"u3","amount_x":3}"#,
        r#"{"event_id":"e4","amount":4,"user_id":"u4"}"#,
        r#"{"event_id":"e5","amount":5,"user_id":"u5"}"#,
    ];
    let mut got = Vec::new();
    for line in lines {
        projection.decode(line.as_bytes(), &mut slots).unwrap();
        got.push(format!("{:?}", slots));
    }
    assert_eq!(
        got,
        [
            r#"[Str("u1"), Num(1.5)]"#,
            r#"[Str("u2"), Num(2.0)]"#,
            "[Null, Null]",
            r#"[Str("u4"), Num(4.0)]"#,
            r#"[Str("u5"), Num(5.0)]"#,
        ]
    );
    let shape: Vec<&[u8]> = projection.shapes[0]
        .keys
        .iter()
        .map(|g| &g.text[..])
        .collect();
    assert_eq!(shape, [&b"event_id\":"[..], b"amount\":", b"user_id\":"]);
}
