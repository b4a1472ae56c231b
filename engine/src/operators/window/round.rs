//! Sums and means printed with the digits an f64 sum holds: rounded to 15
//! significant digits, and written as JSON without printing them twice.

use crate::json;

/// Rounds a computed sum or mean to 15 significant digits, all that an f64
/// sum reliably holds: `801.6300000000001` becomes `801.63`, and sums of the
/// same values added in a different order (a union's interleaving, a
/// replay) print the same.
///
/// A value whose shortest round-trip form has at most 15 significant digits
/// is already its own rounding (it is within half an ulp of that decimal,
/// far less than half a step of the 15-digit grid), so only longer ones are
/// rounded, on the stack.
pub fn round_15(v: f64) -> f64 {
    if !v.is_finite() || v == 0.0 {
        return v;
    }
    let mut shortest = zmij::Buffer::new();
    if significant_digits(shortest.format_finite(v)) <= 15 {
        return v;
    }
    let mut text = StackText::default();
    if std::fmt::Write::write_fmt(&mut text, format_args!("{v:.14e}")).is_err() {
        return v;
    }
    text.as_str().parse().unwrap_or(v)
}

/// Writes `round_15(v)` as `json::write_f64` would. A whole number below
/// 10^15 and a fraction whose shortest form has at most 15 significant
/// digits are their own rounding and are printed straight away; only the
/// rest take the round trip.
pub fn write_rounded(out: &mut Vec<u8>, v: f64) {
    if v.is_finite() && v.fract() != 0.0 {
        let mut shortest = zmij::Buffer::new();
        let text = shortest.format_finite(v);
        if significant_digits(text) <= 15 {
            out.extend_from_slice(text.as_bytes());
            return;
        }
    } else if v.abs() < 1e15 {
        // Whole (or -0.0): at most 15 digits, printed as an integer.
        out.extend_from_slice(itoa::Buffer::new().format(v as i64).as_bytes());
        return;
    }
    json::write_f64(out, round_15(v));
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
    }

    proptest! {
        // The shortcut for values already short agrees with rounding every
        // value through its 15-digit text.
        #[test]
        fn round_15_equals_rounding_through_text(bits in any::<u64>(), cents in -10_000_000i64..10_000_000) {
            for v in [f64::from_bits(bits), cents as f64 / 100.0, (cents as f64 / 100.0) * 3.0 + 0.1] {
                if v.is_finite() && v != 0.0 {
                    let slow: f64 = format!("{v:.14e}").parse().unwrap();
                    prop_assert_eq!(round_15(v).to_bits(), slow.to_bits(), "{}", v);
                }
            }
        }
    }
}
