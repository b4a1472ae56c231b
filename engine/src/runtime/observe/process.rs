//! The process's own resource use (resident memory, CPU time), read from
//! `/proc/self` on Linux; absent elsewhere.

/// Resident memory and CPU time of this process.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessUsage {
    /// Resident set size, bytes.
    pub rss_bytes: Option<u64>,
    /// User plus system CPU time, seconds.
    pub cpu_seconds: Option<f64>,
}

/// Reads the current usage.
pub fn usage() -> ProcessUsage {
    ProcessUsage {
        rss_bytes: rss_bytes(),
        cpu_seconds: cpu_seconds(),
    }
}

/// Clock ticks per second of `/proc/self/stat` (USER_HZ, 100 on every
/// Linux architecture kflow builds for).
const TICKS_PER_SECOND: f64 = 100.0;

/// Memory pages of `/proc/self/statm`.
const PAGE_SIZE: u64 = 4096;

fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * PAGE_SIZE)
}

fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces: count fields after it.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    // Fields 14 and 15 (utime, stime) are the 12th and 13th after the name.
    let utime: f64 = fields.nth(11)?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SECOND)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn a_running_process_has_memory_and_cpu_time() {
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        let u = usage();
        assert!(u.rss_bytes.is_some_and(|b| b > 1 << 20), "{u:?}");
        assert!(u.cpu_seconds.is_some(), "{u:?}");
    }
}
