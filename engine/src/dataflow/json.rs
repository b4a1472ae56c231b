//! Writing JSON output rows by hand, straight into a byte buffer.
//!
//! Output rows are flat objects of strings and numbers; writing them
//! directly avoids building a `serde_json::Value` per row. Numbers that are
//! integral (and exactly representable) are written without a fraction, so
//! a key `123` in the input comes out as `123`, not `123.0`.

use chrono::{DateTime, SecondsFormat};
use kflow_jobs::Value;

/// Writes an unsigned integer.
pub fn write_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Writes a number: integral values below 2^53 as integers, non-finite
/// values as `null`, everything else in the shortest form that round-trips.
pub fn write_f64(out: &mut Vec<u8>, v: f64) {
    if !v.is_finite() {
        out.extend_from_slice(b"null");
    } else if is_whole(v) && v.abs() < 9_007_199_254_740_992.0 {
        out.extend_from_slice(itoa::Buffer::new().format(v as i64).as_bytes());
    } else {
        // Shortest round-trip form, with the printer serde_json uses.
        out.extend_from_slice(zmij::Buffer::new().format_finite(v).as_bytes());
    }
}

/// Whether finite `v` has no fraction: `v.fract() == 0.0` without the
/// call to `trunc` it compiles to on baseline x86-64 (3% of a sink writing
/// sums), by a round trip through an integer. Every f64 from 2^52 up is
/// whole.
pub fn is_whole(v: f64) -> bool {
    v.abs() >= 4_503_599_627_370_496.0 || (v as i64) as f64 == v
}

/// The length of the run of string bytes that need no attention: up to the
/// first `"`, `\\` or control character (or the end). Bytes are tested
/// eight at a time in a register (a byte of a word is flagged when it is
/// below 0x20 or equal to one of the two markers: the classic "has zero
/// byte" trick on the word XOR the marker), two words per step; the short
/// strings of records (keys, ids, times, URLs) end within a few steps, where
/// a vector search's setup cost more than the search.
pub fn plain_run(bytes: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let flagged = |word: u64| {
        let zero_in = |w: u64| w.wrapping_sub(ONES) & !w & HIGHS;
        let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
        zero_in(word ^ (ONES * u64::from(b'"')))
            | zero_in(word ^ (ONES * u64::from(b'\\')))
            | below_space
    };
    let word = |bytes: &[u8], at: usize| {
        let mut word = [0; 8];
        word.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(word)
    };
    // The lowest flagged byte of a word is exact (borrows only run upwards).
    let first = |hits: u64| (hits.trailing_zeros() / 8) as usize;
    let len = bytes.len();
    let mut at = 0;
    while at + 16 <= len {
        let (low, high) = (flagged(word(bytes, at)), flagged(word(bytes, at + 8)));
        if low | high != 0 {
            return at
                + if low != 0 {
                    first(low)
                } else {
                    8 + first(high)
                };
        }
        at += 16;
    }
    if at + 8 <= len {
        let hits = flagged(word(bytes, at));
        if hits != 0 {
            return at + first(hits);
        }
        at += 8;
    }
    if at == len {
        return len;
    }
    // The last bytes as one word: the 8 ending the run when it has them
    // (the bytes before `at` in it are plain, so they flag nothing), else
    // the run padded with a plain byte. Both are loads of whole words: a
    // copy of a short tail into a padded word was a `memcpy` call and a
    // stalled load after it, a fifth of a decoder's time in W1.
    let (from, word) = if len >= 8 {
        (len - 8, word(bytes, len - 8))
    } else {
        (0, short_word(bytes))
    };
    let hits = flagged(word);
    if hits != 0 {
        from + first(hits)
    } else {
        len
    }
}

/// `bytes` (fewer than 8) as a little-endian word, padded with `a`s, from
/// two overlapping loads.
fn short_word(bytes: &[u8]) -> u64 {
    let n = bytes.len();
    let loaded = if n >= 4 {
        let mut low = [0; 4];
        let mut high = [0; 4];
        low.copy_from_slice(&bytes[..4]);
        high.copy_from_slice(&bytes[n - 4..]);
        u64::from(u32::from_le_bytes(low)) | u64::from(u32::from_le_bytes(high)) << ((n - 4) * 8)
    } else if n > 0 {
        u64::from(bytes[0])
            | u64::from(bytes[n / 2]) << (n / 2 * 8)
            | u64::from(bytes[n - 1]) << ((n - 1) * 8)
    } else {
        0
    };
    let kept = (1u64 << (n * 8)) - 1;
    loaded & kept | 0x6161_6161_6161_6161 & !kept
}

/// Writes a JSON string literal with escapes.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    if plain_run(s.as_bytes()) == s.len() {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// Writes a decoded field value.
pub fn write_value(out: &mut Vec<u8>, v: &Value<'_>) {
    match v {
        Value::Null | Value::Other => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Num(n) => write_f64(out, *n),
        Value::Str(s) => write_str(out, s),
    }
}

/// Formats epoch milliseconds as RFC 3339 UTC (`2026-11-25T10:00:00Z`, with
/// `.250` only when the milliseconds are not zero).
pub fn format_time(millis: i64) -> String {
    let mut out = Vec::with_capacity(24);
    write_time_text(&mut out, millis);
    String::from_utf8(out).unwrap_or_else(|_| chrono_time(millis))
}

/// [`format_time`] by chrono: the reference, and the way for years outside
/// 0 to 9999.
fn chrono_time(millis: i64) -> String {
    match DateTime::from_timestamp_millis(millis) {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        None => millis.to_string(),
    }
}

/// Writes epoch milliseconds as an RFC 3339 string literal, as
/// [`format_time`] would.
pub fn write_time(out: &mut Vec<u8>, millis: i64) {
    out.push(b'"');
    write_time_text(out, millis);
    out.push(b'"');
}

/// The text of [`format_time`] without allocating: digits straight into
/// `out` for years 0 to 9999 (session windows write two per row), chrono
/// for the rest.
fn write_time_text(out: &mut Vec<u8>, millis: i64) {
    let days = millis.div_euclid(86_400_000);
    let in_day = millis.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    if (0..=9999).contains(&year) {
        let (secs, ms) = (in_day / 1000, in_day % 1000);
        let digits = |out: &mut Vec<u8>, v: i64, n: u32| {
            for i in (0..n).rev() {
                out.push(b'0' + ((v / 10_i64.pow(i)) % 10) as u8);
            }
        };
        digits(out, year, 4);
        out.push(b'-');
        digits(out, month, 2);
        out.push(b'-');
        digits(out, day, 2);
        out.push(b'T');
        digits(out, secs / 3600, 2);
        out.push(b':');
        digits(out, secs / 60 % 60, 2);
        out.push(b':');
        digits(out, secs % 60, 2);
        if ms != 0 {
            out.push(b'.');
            digits(out, ms, 3);
        }
        out.push(b'Z');
    } else {
        out.extend_from_slice(chrono_time(millis).as_bytes());
    }
}

/// The proleptic Gregorian `(year, month, day)` of a day number since
/// 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn plain_run_stops_at_the_first_special_byte(bytes in proptest::collection::vec(
            prop_oneof![16 => 0x20u8..0x7f, 1 => any::<u8>()], 0..100)) {
            let naive = bytes.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20).unwrap_or(bytes.len());
            prop_assert_eq!(plain_run(&bytes), naive);
        }

        // The digit-by-digit writer prints what chrono prints, across
        // years 0 to 9999, whole seconds and not, before and after 1970.
        #[test]
        fn write_time_equals_chrono(millis in -62_167_219_200_000i64..253_402_300_800_000, whole in any::<bool>()) {
            let millis = if whole { millis - millis.rem_euclid(1000) } else { millis };
            let mut out = Vec::new();
            write_time(&mut out, millis);
            prop_assert_eq!(String::from_utf8(out).unwrap_or_default(), format!("\"{}\"", chrono_time(millis)));
            prop_assert_eq!(format_time(millis), chrono_time(millis));
        }

    }

    #[test]
    fn times_outside_years_0_to_9999_are_chrono_s() {
        for millis in [-62_167_219_200_001, 253_402_300_800_000, i64::MIN, i64::MAX] {
            assert_eq!(format_time(millis), chrono_time(millis));
        }
        assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_time(-1), "1969-12-31T23:59:59.999Z");
    }

    fn num(v: f64) -> String {
        let mut out = Vec::new();
        write_f64(&mut out, v);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn numbers() {
        assert_eq!(num(37.0), "37");
        assert_eq!(num(-3.0), "-3");
        assert_eq!(num(37.02), "37.02");
        assert_eq!(num(f64::NAN), "null");
        assert_eq!(num(1e300), "1e+300");
        assert_eq!(num(1.5e-7), "1.5e-7");
    }

    #[test]
    fn strings() {
        let text = |s: &str| {
            let mut out = Vec::new();
            write_str(&mut out, s);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(text("u1 é"), "\"u1 é\"");
        assert_eq!(text("a\"b\\c\nd\u{1}"), r#""a\"b\\c\nd\u0001""#);
    }

    #[test]
    fn times() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_time(-250), "1969-12-31T23:59:59.750Z");
        assert_eq!(format_time(1_764_064_800_000), "2025-11-25T10:00:00Z");
    }
}
