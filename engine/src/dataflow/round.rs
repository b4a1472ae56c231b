//! Sums and means printed with the digits an f64 sum holds: rounded to 15
//! significant digits, and written as JSON without printing them twice.

use crate::dataflow::json;

/// Rounds a computed sum or mean to 15 significant digits, all that an f64
/// sum reliably holds: `801.6300000000001` becomes `801.63`, and sums of the
/// same values added in a different order (a union's interleaving, a
/// replay) print the same.
///
/// A value whose shortest round-trip form has at most 15 significant digits
/// is already its own rounding (it is within half an ulp of that decimal,
/// far less than half a step of the 15-digit grid), so only longer ones are
/// rounded.
pub fn round_15(v: f64) -> f64 {
    if !v.is_finite() || v == 0.0 {
        return v;
    }
    let mut shortest = zmij::Buffer::new();
    let text = shortest.format_finite(v);
    if significant_digits(text) <= 15 {
        return v;
    }
    round_long(v, round_decimal(text))
}

/// Writes `round_15(v)` as `json::write_f64` would. A whole number below
/// 10^15 and a fraction whose shortest form has at most 15 significant
/// digits are their own rounding and are printed straight away; only the
/// rest are rounded.
pub fn write_rounded(out: &mut Vec<u8>, v: f64) {
    if v.is_finite() && !json::is_whole(v) {
        if write_cents(out, v) {
            return;
        }
        let mut shortest = zmij::Buffer::new();
        let text = shortest.format_finite(v);
        if significant_digits(text) <= 15 {
            out.extend_from_slice(text.as_bytes());
        } else {
            let rounded = round_decimal(text);
            if !rounded.is_some_and(|r| r.write_plain(out)) {
                json::write_f64(out, round_long(v, rounded));
            }
        }
        return;
    } else if v.abs() < 1e15 {
        // Whole (or -0.0): at most 15 digits, printed as an integer.
        out.extend_from_slice(itoa::Buffer::new().format(v as i64).as_bytes());
        return;
    }
    json::write_f64(out, round_15(v));
}

/// Writes `v` when it is within float noise of a decimal with one or two
/// fraction digits, below 10^13 (a sum of prices: `309.85000000000002`),
/// from the integer number of cents instead of through the float printer
/// (which was a third of a sink writing sums). Returns whether it wrote.
///
/// Why the text is `write_rounded`'s: a step of the 15th significant digit
/// of `m = |v|` is more than `m * 10^-15`, so a decimal within `m * 5e-16`
/// of `m` is its rounding to 15 digits. The test below allows `3.5e-16` of
/// the scaled value, plus at most `1.2e-16` for the scaling's own rounding:
/// within (a value one ulp off its cents passes, two ulps may not). The
/// decimal has at most 15 digits, and two such decimals are more than four
/// ulps apart, so it is also the shortest form of the f64 nearest to it,
/// which `json::write_f64` prints plainly in this range.
fn write_cents(out: &mut Vec<u8>, v: f64) -> bool {
    let magnitude = v.abs();
    if !(0.01..1e13).contains(&magnitude) {
        return false;
    }
    let scaled = magnitude * 100.0;
    let rounded = scaled.round();
    if (scaled - rounded).abs() > scaled * 3.5e-16 {
        return false;
    }
    let cents = rounded as u64;
    let fraction = cents % 100;
    if fraction == 0 {
        // Whole once rounded: the slow route prints it as an integer.
        return false;
    }
    if v < 0.0 {
        out.push(b'-');
    }
    out.extend_from_slice(itoa::Buffer::new().format(cents / 100).as_bytes());
    out.push(b'.');
    out.push(b'0' + (fraction / 10) as u8);
    if !fraction.is_multiple_of(10) {
        out.push(b'0' + (fraction % 10) as u8);
    }
    true
}

/// `v` rounded to 15 significant digits, given its shortest round-trip
/// form (16 or 17 digits) rounded by [`round_decimal`].
///
/// The digits past the 15th decide the rounding as the exact value's would:
/// unless `text` is exactly halfway between two 15-digit neighbours, it lies
/// on the same side of that midpoint as `v` (were the midpoint between them,
/// it would be a 16-digit decimal nearer to `v` than `text`, which is the
/// nearest of the shortest ones). The rounded decimal, at most 10^15 times a
/// power of ten up to 10^22, becomes the nearest f64 with one exact
/// multiplication or division. Halfway cases and other exponents take the
/// exact route: formatting with 15 digits and parsing back.
fn round_long(v: f64, rounded: Option<Rounded>) -> f64 {
    if let Some(rounded) = rounded.and_then(Rounded::value) {
        return rounded;
    }
    let mut exact = StackText::default();
    if std::fmt::Write::write_fmt(&mut exact, format_args!("{v:.14e}")).is_err() {
        return v;
    }
    exact.as_str().parse().unwrap_or(v)
}

/// Powers of ten that are exact as f64.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// A shortest form of 16 or 17 digits rounded to 15: `kept * 10^scale`.
#[derive(Debug, Clone, Copy)]
struct Rounded {
    negative: bool,
    /// At most 10^15.
    kept: u64,
    scale: i32,
    /// Whether the text was in exponent form.
    exponent: bool,
}

/// Rounds the digits of `text` (a shortest form) to 15 significant ones;
/// `None` for a halfway case, other digit counts, or text it does not
/// expect (see [`round_long`] for why the digits decide as the exact value
/// would).
fn round_decimal(text: &str) -> Option<Rounded> {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent, exponent_form) = match rest.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().ok()?, true),
        None => (rest, 0, false),
    };
    // The significant digits as an integer, and the power of ten of its
    // last digit.
    let mut digits: u64 = 0;
    let mut count = 0u32;
    let mut scale = exponent;
    let mut after_point = false;
    for b in mantissa.bytes() {
        match b {
            b'.' => after_point = true,
            b'0'..=b'9' => {
                if digits != 0 || b != b'0' {
                    digits = digits.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
                    count += 1;
                }
                if after_point {
                    scale -= 1;
                }
            }
            _ => return None,
        }
    }
    let drop = count.checked_sub(15).filter(|d| (1..=2).contains(d))?;
    let unit = 10u64.pow(drop);
    let (mut kept, tail) = (digits / unit, digits % unit);
    let half = unit / 2;
    if tail == half {
        return None;
    }
    if tail > half {
        kept += 1;
    }
    Some(Rounded {
        negative,
        kept,
        scale: scale + drop as i32,
        exponent: exponent_form,
    })
}

impl Rounded {
    /// The fast route of [`round_long`]: the nearest f64, `None` for an
    /// exponent out of range.
    fn value(self) -> Option<f64> {
        let kept = self.kept as f64; // at most 10^15: exact
        let magnitude = if self.scale >= 0 {
            kept * *POW10.get(usize::try_from(self.scale).ok()?)?
        } else {
            kept / *POW10.get(usize::try_from(-self.scale).ok()?)?
        };
        Some(if self.negative { -magnitude } else { magnitude })
    }

    /// Writes the rounded number as [`json::write_f64`] writes the f64
    /// nearest to it, straight from its digits, when the shortest form was
    /// plain decimal and the value is a fraction: at most 15 significant
    /// digits round-trip through an f64, so that f64's shortest form is
    /// these digits, trailing zeros dropped. `false` (nothing written) for
    /// the other cases.
    fn write_plain(self, out: &mut Vec<u8>) -> bool {
        let Rounded {
            negative,
            mut kept,
            scale,
            exponent,
        } = self;
        if exponent || scale >= 0 || kept == 0 {
            return false;
        }
        let mut fraction = scale.unsigned_abs();
        while kept % 10 == 0 && fraction > 0 {
            kept /= 10;
            fraction -= 1;
        }
        // A whole number (a carry, `246.99999999999997`) is written as one.
        let Some(unit) = 10u64.checked_pow(fraction).filter(|_| fraction > 0) else {
            return false;
        };
        let (whole, part) = (kept / unit, kept % unit);
        if negative {
            out.push(b'-');
        }
        let mut digits = itoa::Buffer::new();
        out.extend_from_slice(digits.format(whole).as_bytes());
        out.push(b'.');
        let part = digits.format(part);
        let zeros = (fraction as usize).saturating_sub(part.len());
        out.extend(std::iter::repeat_n(b'0', zeros));
        out.extend_from_slice(part.as_bytes());
        true
    }
}

/// Digits from the first to the last non-zero one of a number's mantissa.
fn significant_digits(text: &str) -> usize {
    let mantissa = text.split(['e', 'E']).next().unwrap_or(text);
    let digits = mantissa.bytes().filter(u8::is_ascii_digit);
    let mut count = 0;
    let mut pending_zeros = 0;
    let mut started = false;
    for d in digits {
        if d == b'0' {
            if started {
                pending_zeros += 1;
            }
        } else {
            started = true;
            count += pending_zeros + 1;
            pending_zeros = 0;
        }
    }
    count
}

/// A small formatting buffer on the stack (`{:.14e}` of an f64 is at most
/// 24 bytes).
#[derive(Default)]
struct StackText {
    bytes: [u8; 32],
    len: usize,
}

impl StackText {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }
}

impl std::fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let slot = self.bytes.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        slot.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sums_print_the_digits_they_hold() {
        assert_eq!(round_15(801.6300000000001), 801.63);
        assert_eq!(round_15(246.99999999999997), 247.0);
        assert_eq!(round_15(0.1 + 0.2), 0.3);
        assert_eq!(round_15(-1e-300), -1e-300);
        let forward: f64 = [0.1, 0.2, 0.3, 1e3, 7.77].iter().sum();
        let backward: f64 = [7.77, 1e3, 0.3, 0.2, 0.1].iter().sum();
        assert_eq!(round_15(forward), round_15(backward));
        assert_eq!(significant_digits("1230000.0"), 3);
        assert_eq!(significant_digits("0.000120"), 2);
        assert_eq!(significant_digits("1.0000000000000002e-7"), 17);
        // The fast route, and its refusals.
        let round_digits = |text| round_decimal(text).and_then(Rounded::value);
        assert_eq!(round_digits("801.6300000000001"), Some(801.63));
        assert_eq!(round_digits("-246.99999999999997"), Some(-247.0));
        assert_eq!(round_digits("1.0000000000000002e-7"), Some(1e-7));
        assert_eq!(round_digits("1000000000000005.0"), None, "halfway");
        assert_eq!(round_digits("1.2345678901234567e-30"), None, "exponent");
        assert_eq!(round_15(1000000000000005.0), 1000000000000000.0);
        // A carry into the next power of ten, large and small exponents,
        // negatives at the ends of the fast route, a subnormal.
        for text in [
            "999999999999999.9",
            "9.999999999999999e22",
            "-9.999999999999999e22",
            "-1.2345678901234567e-22",
            "1.2345678901234567e-23",
            "1.2345678901234567e-300",
            "5e-324",
            "1.7976931348623157e308",
        ] {
            let v: f64 = text.parse().unwrap();
            let slow: f64 = format!("{v:.14e}").parse().unwrap();
            assert_eq!(round_15(v).to_bits(), slow.to_bits(), "{v}");
        }
        assert_eq!(round_15(999999999999999.9), 1e15);
        // Cents written from an integer; the rest left to the float route.
        let cents = |v: f64| {
            let mut out = Vec::new();
            write_cents(&mut out, v).then(|| String::from_utf8(out).unwrap())
        };
        let ulp_off = f64::from_bits(309.85f64.to_bits() + 1);
        assert_eq!(ulp_off.to_string(), "309.8500000000001");
        assert_eq!(cents(ulp_off).as_deref(), Some("309.85"));
        assert_eq!(cents(0.1 + 0.2).as_deref(), Some("0.3"));
        assert_eq!(cents(-0.05).as_deref(), Some("-0.05"));
        assert_eq!(
            cents(9_999_999_999_999.99).as_deref(),
            Some("9999999999999.99")
        );
        assert_eq!(cents(12_345_678_901_234.5), None, "past 10^13");
        assert_eq!(cents(246.99999999999997), None, "whole once rounded");
        assert_eq!(cents(0.125), None, "three fraction digits");
        assert_eq!(cents(0.005), None, "below a cent");
    }

    proptest! {
        #[test]
        fn is_whole_agrees_with_fract(bits in any::<u64>(), n in -1_000_000i64..1_000_000) {
            for v in [f64::from_bits(bits), n as f64, n as f64 / 8.0, n as f64 * 1e12] {
                if v.is_finite() {
                    prop_assert_eq!(json::is_whole(v), v.fract() == 0.0, "{}", v);
                }
            }
        }

        // The shortcut for values already short agrees with rounding every
        // value through its 15-digit text.
        #[test]
        fn round_15_equals_rounding_through_text(bits in any::<u64>(), cents in -10_000_000i64..10_000_000) {
            let near = |v: f64, ulps: i64| f64::from_bits((v.to_bits() as i64 + ulps) as u64);
            for v in [
                f64::from_bits(bits),
                cents as f64 / 100.0,
                (cents as f64 / 100.0) * 3.0 + 0.1,
                near(cents as f64 / 100.0, 1),
                near(cents as f64 / 100.0, -2),
                near(cents as f64 / 100.0, 3),
                near(cents as f64 / 10.0 + 0.05, 1),
                cents as f64 * 1e5 + 0.07,
            ] {
                if v.is_finite() && v != 0.0 {
                    let slow: f64 = format!("{v:.14e}").parse().unwrap();
                    prop_assert_eq!(round_15(v).to_bits(), slow.to_bits(), "{}", v);
                    let mut text = Vec::new();
                    write_rounded(&mut text, v);
                    let mut expected = Vec::new();
                    json::write_f64(&mut expected, slow);
                    prop_assert_eq!(text, expected, "{}", v);
                }
            }
        }

        // Values with 16 and 17 digits, halfway cases among them (whole
        // numbers past 10^15 ending in 5), and sums of cents: the fast
        // route agrees with formatting and parsing, and so does the text.
        #[test]
        fn long_values_round_as_through_text(
            whole in 1_000_000_000_000_000u64..100_000_000_000_000_000,
            cents in proptest::collection::vec(-1_000_000i64..1_000_000, 1..40),
            shift in -30i32..30,
        ) {
            let sum: f64 = cents.iter().map(|c| *c as f64 / 100.0).sum();
            let halfway = (whole / 10 * 10 + 5) as f64;
            for v in [whole as f64, halfway, sum, sum * 10f64.powi(shift)] {
                if v.is_finite() && v != 0.0 {
                    let slow: f64 = format!("{v:.14e}").parse().unwrap();
                    prop_assert_eq!(round_15(v).to_bits(), slow.to_bits(), "{}", v);
                    let mut text = Vec::new();
                    write_rounded(&mut text, v);
                    let mut expected = Vec::new();
                    json::write_f64(&mut expected, slow);
                    prop_assert_eq!(text, expected, "{}", v);
                }
            }
        }
    }
}
