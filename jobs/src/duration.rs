//! Durations as job files write them: a whole number and a unit, `250ms`,
//! `10s`, `5m`, `1h`, `1d`. Nothing else (no fractions, no spaces, no
//! compound `1h30m`), so a value reads the same to everyone.

use std::time::Duration;

/// The units, longest suffix first so `ms` is tried before `m` and `s`.
const UNITS: [(&str, u64); 5] = [
    ("ms", 1),
    ("s", 1_000),
    ("m", 60_000),
    ("h", 3_600_000),
    ("d", 86_400_000),
];

/// The largest duration accepted: what fits in `i64` milliseconds.
const MAX_MS: u64 = i64::MAX as u64;

/// Parses a duration like `10s`.
///
/// # Errors
///
/// A message (lowercase, no period) saying what is wrong with `text`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    const HINT: &str =
        "expected a whole number and a unit (`ms`, `s`, `m`, `h` or `d`), like `10s`";
    if text.is_empty() {
        return Err(format!("empty duration: {HINT}"));
    }
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    if digits.is_empty() {
        return Err(format!("invalid duration `{text}`: {HINT}"));
    }
    if unit.is_empty() {
        return Err(format!("duration `{text}` has no unit: {HINT}"));
    }
    if unit.starts_with('.') {
        return Err(format!(
            "invalid duration `{text}`: use a whole number of a smaller unit, like `1500ms` for 1.5s"
        ));
    }
    let Some(&(_, unit_ms)) = UNITS.iter().find(|(name, _)| *name == unit) else {
        return Err(format!(
            "invalid duration `{text}`: unknown unit `{unit}`, expected one of `ms`, `s`, `m`, `h`, `d`"
        ));
    };
    let too_large = || format!("duration `{text}` is too large");
    let count: u64 = digits.parse().map_err(|_| too_large())?;
    let ms = count
        .checked_mul(unit_ms)
        .filter(|ms| *ms <= MAX_MS)
        .ok_or_else(too_large)?;
    Ok(Duration::from_millis(ms))
}

/// A duration in whole milliseconds as `i64`; [`parse_duration`] never
/// returns more than fits.
pub fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Writes `ms` back in the job file's notation, in its largest whole unit:
/// `60000` -> `1m`, `250` -> `250ms` (the inverse of [`parse_duration`]).
pub fn format_duration(ms: i64) -> String {
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if ms != 0 && ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_every_unit() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects_everything_else_with_a_reason() {
        for (text, reason) in [
            ("", "empty duration"),
            ("10", "has no unit"),
            ("s", "expected a whole number"),
            ("-1s", "expected a whole number"),
            ("1.5s", "whole number of a smaller unit"),
            ("10x", "unknown unit `x`"),
            ("10 s", "unknown unit ` s`"),
            ("1h30m", "unknown unit `h30m`"),
            ("99999999999999999999d", "too large"),
            ("9999999999999999d", "too large"),
        ] {
            let message = parse_duration(text).expect_err(text);
            assert!(message.contains(reason), "{text}: {message}");
        }
    }

    proptest! {
        #[test]
        fn round_trips_whole_milliseconds(ms in 0u64..1_000_000_000_000) {
            prop_assert_eq!(parse_duration(&format!("{ms}ms")), Ok(Duration::from_millis(ms)));
        }

        #[test]
        fn never_panics(text in "\\PC{0,12}") {
            let _ = parse_duration(&text);
        }
    }

    #[test]
    fn formatting_uses_the_largest_whole_unit() {
        assert_eq!(format_duration(60_000), "1m");
        assert_eq!(format_duration(250), "250ms");
        assert_eq!(format_duration(0), "0ms");
        assert_eq!(format_duration(90_000), "90s");
        assert_eq!(format_duration(86_400_000), "1d");
    }
}
