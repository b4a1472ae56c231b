//! W4's input: wide, nested bid records (Nexmark's `Bid` shape), about 330
//! bytes each, generated deterministically from a seed.
//!
//! ```json
//! {"Bid":{"auction":1042,"bidder":80331,"price":5123,"channel":"channel-7",
//!  "url":"https://www.nexmark.com/…/item.htm?query=1&channel_id=…",
//!  "date_time":1795600800123,"extra":"…"}}
//! ```
//!
//! The fields a job reads (`auction`, `price`, `date_time`, epoch ms) sit
//! inside the nested object beside long strings it never reads (`url`, 80+
//! characters; `extra`, 70+): the common shape of what producers emit.
//! Auctions are skewed (a tenth of them get half the bids); event time
//! advances 2 ms per record with up to 500 ms of jitter, so 5 million
//! records cover about 2.8 hours.

use std::fmt::Write as _;
use std::io::{self, Write};

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;

use crate::workload::START_MS;

/// Distinct auctions.
pub const AUCTIONS: u64 = 10_000;

/// Event-time step between records, in ms.
const STEP_MS: i64 = 2;

/// Writes `n` bid records to `out`, one JSON object per line.
///
/// # Errors
/// The writer's I/O error.
pub fn write_bids(n: u64, seed: u64, out: &mut impl Write) -> io::Result<u64> {
    let mut rng = Pcg64::seed_from_u64(seed);
    let mut line = String::with_capacity(400);
    const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let filler = |rng: &mut Pcg64, len: usize, line: &mut String| {
        for _ in 0..len {
            line.push(LETTERS[rng.random_range(0..LETTERS.len())] as char);
        }
    };
    for i in 0..n {
        let base = START_MS + i as i64 * STEP_MS;
        let time = (base + rng.random_range(-500..=500)).max(START_MS);
        let auction = if rng.random_bool(0.5) {
            1000 + rng.random_range(0..AUCTIONS / 10)
        } else {
            1000 + rng.random_range(0..AUCTIONS)
        };
        let bidder = rng.random_range(0..1_000_000u64);
        let price = rng.random_range(100..10_000_000u64);
        let channel = rng.random_range(0..10u32);
        line.clear();
        let _ = write!(
            line,
            "{{\"Bid\":{{\"auction\":{auction},\"bidder\":{bidder},\"price\":{price},\"channel\":\"channel-{channel}\",\"url\":\"https://www.nexmark.com/"
        );
        filler(&mut rng, 20, &mut line);
        line.push_str("/item.htm?query=1&channel_id=");
        filler(&mut rng, 30, &mut line);
        let _ = write!(line, "\",\"date_time\":{time},\"extra\":\"");
        let extra = 70 + rng.random_range(0..20);
        filler(&mut rng, extra, &mut line);
        line.push_str("\"}}\n");
        out.write_all(line.as_bytes())?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bids_are_wide_nested_deterministic_json() {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        write_bids(200, 3, &mut a).unwrap();
        write_bids(200, 3, &mut b).unwrap();
        assert_eq!(a, b);
        let text = String::from_utf8(a).unwrap();
        let mut bytes = 0;
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let bid = &v["Bid"];
            assert!(bid["auction"].as_u64().unwrap() >= 1000);
            assert!(bid["date_time"].as_i64().unwrap() >= START_MS);
            assert!(bid["url"].as_str().unwrap().len() >= 80);
            assert!(bid["extra"].as_str().unwrap().len() >= 70);
            bytes += line.len() + 1;
        }
        let average = bytes / 200;
        assert!((300..=360).contains(&average), "{average} bytes a record");
    }
}
