//! Byte sizes as job files write them: `256MB`, `1GiB`. Decimal units
//! (`KB`, `MB`, `GB`: powers of 1000) and binary ones (`KiB`, `MiB`, `GiB`:
//! powers of 1024), a whole number before them, and a plain `B` for bytes.

const UNITS: [(&str, u64); 7] = [
    ("B", 1),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
];

/// Parses a size like `256MB` into bytes.
///
/// # Errors
///
/// A message (lowercase, no period) saying what is wrong with `text`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    const HINT: &str =
        "expected a whole number and a unit (`KB`, `MB`, `GB`, `KiB`, `MiB` or `GiB`), like `256MB`";
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    if digits.is_empty() {
        return Err(format!("invalid size `{text}`: {HINT}"));
    }
    if unit.is_empty() {
        return Err(format!("size `{text}` has no unit: {HINT}"));
    }
    let Some(&(_, scale)) = UNITS.iter().find(|(name, _)| *name == unit) else {
        return Err(format!(
            "invalid size `{text}`: unknown unit `{unit}`, {HINT}"
        ));
    };
    let too_large = || format!("size `{text}` is too large");
    let count: u64 = digits.parse().map_err(|_| too_large())?;
    count.checked_mul(scale).ok_or_else(too_large)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_decimal_and_binary_units() {
        assert_eq!(parse_size("256MB"), Ok(256_000_000));
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("2KB"), Ok(2000));
        assert_eq!(parse_size("512B"), Ok(512));
    }

    #[test]
    fn rejects_everything_else() {
        for text in [
            "",
            "MB",
            "256",
            "256mb",
            "1.5GB",
            "256 MB",
            "99999999999999999999GB",
        ] {
            assert!(parse_size(text).is_err(), "{text}");
        }
    }
}
