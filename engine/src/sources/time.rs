//! Reading event times: RFC 3339 strings and epoch-millisecond numbers.
//!
//! RFC 3339 is parsed by hand on the hot path (a fixed layout, no
//! allocation, civil-date arithmetic from Howard Hinnant's algorithm); it is
//! checked against chrono's parser by a property test. A source's records
//! mostly share their date, so [`Dates`] keeps the last one's day number
//! and parses only the time of day while the date repeats.

use kflow_jobs::Value;

/// Why a record has no usable event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeError {
    /// The field is absent or null.
    Missing,
    /// The field is a string that is not an RFC 3339 time.
    BadString,
    /// The field is neither a string nor a number.
    WrongType(&'static str),
}

/// The last date parsed and its day number: times of one source mostly
/// share their date, and a repeated date is compared instead of parsed.
#[derive(Debug, Clone, Default)]
pub struct Dates {
    /// `YYYY-MM-DD` of the last valid time and its days since 1970-01-01.
    last: Option<([u8; 10], i64)>,
}

impl Dates {
    /// The event time of `value` in epoch milliseconds.
    ///
    /// # Errors
    /// [`TimeError`] saying what is wrong with the field.
    pub fn event_time(&mut self, value: &Value<'_>) -> Result<i64, TimeError> {
        match value {
            Value::Num(n) if n.is_finite() && n.abs() < 9.0e15 => Ok(n.floor() as i64),
            Value::Str(s) => self.parse(s).ok_or(TimeError::BadString),
            Value::Null => Err(TimeError::Missing),
            other => Err(TimeError::WrongType(other.type_name())),
        }
    }

    /// [`parse_rfc3339`], remembering the date.
    pub fn parse(&mut self, s: &str) -> Option<i64> {
        parse_with(s.as_bytes(), |date| match self.last {
            Some((last, days)) if last == date => Some(days),
            _ => {
                let days = civil_days(&date)?;
                self.last = Some((date, days));
                Some(days)
            }
        })
    }
}

fn digits(b: &[u8]) -> Option<i64> {
    let mut n = 0i64;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n * 10 + i64::from(c - b'0');
    }
    Some(n)
}

/// Days from 1970-01-01 to the given proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)` (`t`, `z` and a
/// space separator accepted) into epoch milliseconds; fractions beyond
/// milliseconds are truncated.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    parse_with(s.as_bytes(), |date| civil_days(&date))
}

/// Days since 1970-01-01 of `YYYY-MM-DD` (separators already checked), or
/// `None` for a date that does not exist.
fn civil_days(date: &[u8; 10]) -> Option<i64> {
    let (year, month, day) = (
        digits(&date[0..4])?,
        digits(&date[5..7])?,
        digits(&date[8..10])?,
    );
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    Some(days_from_civil(year, month, day))
}

/// [`parse_rfc3339`] with the date's day number from `days_of`.
fn parse_with(b: &[u8], days_of: impl FnOnce([u8; 10]) -> Option<i64>) -> Option<i64> {
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let mut date = [0u8; 10];
    date.copy_from_slice(&b[..10]);
    let days = days_of(date)?;
    let (hour, minute, second) = (
        digits(&b[11..13])?,
        digits(&b[14..16])?,
        digits(&b[17..19])?,
    );
    // RFC 3339 allows a leap second (60); like chrono we fold it into :59.
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut at = 19;
    let mut millis = 0;
    if b[at] == b'.' {
        at += 1;
        let start = at;
        while at < b.len() && b[at].is_ascii_digit() {
            if at - start < 3 {
                millis = millis * 10 + i64::from(b[at] - b'0');
            }
            at += 1;
        }
        let n = at - start;
        if n == 0 {
            return None;
        }
        for _ in n..3 {
            millis *= 10;
        }
    }
    let offset_minutes = match b.get(at..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let h = digits(&[*h1, *h2])?;
            let m = digits(&[*m1, *m2])?;
            if h > 23 || m > 59 {
                return None;
            }
            let off = h * 60 + m;
            if *sign == b'-' {
                -off
            } else {
                off
            }
        }
        _ => return None,
    };
    let second = second.min(59);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Some(secs * 1000 + millis)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chrono::{DateTime, SecondsFormat};
    use proptest::prelude::*;

    #[test]
    fn known_times() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        let chrono_ms = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis();
        assert_eq!(
            parse_rfc3339("2026-11-25T10:00:00.5Z"),
            Some(chrono_ms("2026-11-25T10:00:00.500Z"))
        );
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59.750Z"), Some(-250));
        assert_eq!(
            parse_rfc3339("2026-11-25T11:00:00+01:00"),
            parse_rfc3339("2026-11-25T10:00:00Z")
        );
        assert_eq!(parse_rfc3339("2026-02-29T00:00:00Z"), None);
        assert_eq!(
            parse_rfc3339("2026-11-25 10:00:00Z"),
            parse_rfc3339("2026-11-25T10:00:00Z")
        );
        assert_eq!(parse_rfc3339("2026-11-25T10:00:00"), None);
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(Dates::default().event_time(&Value::Num(1500.0)), Ok(1500));
        assert_eq!(
            Dates::default().event_time(&Value::Null),
            Err(TimeError::Missing)
        );
        assert_eq!(
            Dates::default().event_time(&Value::Bool(true)),
            Err(TimeError::WrongType("bool"))
        );
    }

    proptest! {
        #[test]
        fn agrees_with_chrono(millis in -62_000_000_000_000i64..250_000_000_000_000, offset in -1439i32..1440) {
            let t = DateTime::from_timestamp_millis(millis).unwrap();
            let zone = chrono::FixedOffset::east_opt(offset * 60).unwrap();
            for fmt in [SecondsFormat::Millis, SecondsFormat::Secs, SecondsFormat::Nanos] {
                let text = t.with_timezone(&zone).to_rfc3339_opts(fmt, true);
                let expected = DateTime::parse_from_rfc3339(&text).unwrap().timestamp_millis();
                prop_assert_eq!(parse_rfc3339(&text), Some(expected), "{}", text);
            }
        }

        #[test]
        fn never_panics(s in ".{0,40}") {
            let _ = parse_rfc3339(&s);
            let _ = Dates::default().parse(&s);
        }

        // The remembered date never changes a result: one `Dates` over a
        // run of times, valid and not, dates repeating and not, parses
        // each as `parse_rfc3339` does alone.
        #[test]
        fn remembered_dates_parse_as_fresh_ones(times in proptest::collection::vec((0usize..7, 0usize..6), 0..30)) {
            const DATES: [&str; 7] = ["2026-11-25", "2026-11-26", "2026-02-29", "2024-02-29", "2026-13-01", "2026-1x-01", "1969-12-31"];
            const TIMES: [&str; 6] = ["T10:00:00Z", "T23:59:60.5+01:00", "t00:00:00.123456z", "T24:00:00Z", "X10:00:00Z", "T10:00:00"];
            let mut dates = Dates::default();
            for (d, t) in times {
                let text = format!("{}{}", DATES[d], TIMES[t]);
                prop_assert_eq!(dates.parse(&text), parse_rfc3339(&text), "{}", text);
            }
        }
    }
}
