//! The benchmark workloads' input: click events as JSON lines, generated
//! deterministically from a seed.
//!
//! Every system in a comparison reads the same file, so the generator only
//! has to be fast and reproducible: PCG64 seeded from the caller's seed,
//! events spread evenly over one hour from 2026-11-25T10:00:00Z with up to
//! one second of jitter (never more than `max_disorder_ms` out of order).

use std::io::{self, Write};

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;

/// 2026-11-25T10:00:00Z in epoch milliseconds.
pub const START_MS: i64 = 1_795_600_800_000;

/// What to generate.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Number of events.
    pub events: u64,
    /// Distinct `user_id`s (`u0` .. `u{users-1}`).
    pub users: u64,
    /// RNG seed.
    pub seed: u64,
    /// Span of event time covered, in ms (one hour by default).
    pub span_ms: i64,
    /// Fraction of events repeated right away with the same `event_id`
    /// (producer retries, for dedup tests).
    pub duplicate_rate: f64,
}

impl Default for Workload {
    fn default() -> Workload {
        Workload {
            events: 1_000_000,
            users: 100_000,
            seed: 42,
            span_ms: 3_600_000,
            duplicate_rate: 0.0,
        }
    }
}

const TYPES: [(&str, u32); 4] = [
    ("product_view", 60),
    ("add_to_cart", 80),
    ("checkout_started", 92),
    ("purchase_completed", 100),
];

/// Formats epoch ms as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn rfc3339_millis(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Howard Hinnant's civil-from-days.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Writes the workload's events to `out`, one JSON object per line.
///
/// # Errors
/// The writer's I/O error.
pub fn write_events(w: &Workload, out: &mut impl Write) -> io::Result<u64> {
    let mut rng = Pcg64::seed_from_u64(w.seed);
    // Retries draw from their own stream, so the same seed yields the same
    // events with or without them.
    let mut retries = Pcg64::seed_from_u64(w.seed ^ 0x0005_eed0_f7e7_e1e5);
    let mut written = 0;
    let mut line = String::with_capacity(192);
    for i in 0..w.events {
        let base = START_MS + (i as i128 * w.span_ms as i128 / w.events.max(1) as i128) as i64;
        let ts = (base + rng.random_range(-1000..=1000)).max(START_MS);
        let roll = rng.random_range(0..100);
        let kind = TYPES
            .iter()
            .find(|(_, upto)| roll < *upto)
            .map_or("product_view", |(t, _)| t);
        let user = rng.random_range(0..w.users);
        let cents: u32 = rng.random_range(100..=20_000);
        let id: u128 = rng.random();
        line.clear();
        use std::fmt::Write as _;
        let _ = writeln!(
            line,
            "{{\"event_id\":\"{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}\",\"user_id\":\"u{user}\",\"type\":\"{kind}\",\"amount\":{}.{:02},\"ts\":\"{}\"}}",
            (id >> 96) as u32,
            (id >> 80) as u16,
            (id >> 64) as u16 & 0xfff,
            ((id >> 48) as u16 & 0x3fff) | 0x8000,
            id as u64 & 0xffff_ffff_ffff,
            cents / 100,
            cents % 100,
            rfc3339_millis(ts),
        );
        out.write_all(line.as_bytes())?;
        written += 1;
        if w.duplicate_rate > 0.0 && retries.random_bool(w.duplicate_rate) {
            out.write_all(line.as_bytes())?;
            written += 1;
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_format_like_rfc3339() {
        assert_eq!(rfc3339_millis(START_MS), "2026-11-25T10:00:00.000Z");
        assert_eq!(rfc3339_millis(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn generation_is_deterministic_and_well_formed() {
        let w = Workload {
            events: 1000,
            users: 10,
            seed: 7,
            ..Workload::default()
        };
        let (mut a, mut b) = (Vec::new(), Vec::new());
        write_events(&w, &mut a).unwrap_or_default();
        write_events(&w, &mut b).unwrap_or_default();
        assert_eq!(a, b);
        let text = String::from_utf8(a).unwrap_or_default();
        assert_eq!(text.lines().count(), 1000);
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
            assert!(
                v["user_id"].as_str().is_some_and(|u| u.starts_with('u')),
                "{line}"
            );
            assert!(
                v["amount"]
                    .as_f64()
                    .is_some_and(|a| (1.0..=200.0).contains(&a)),
                "{line}"
            );
        }
    }
}
