//! A part's fence: the part stops by itself when its lease may no longer
//! be its worker's, whatever the worker does.
//!
//! The keeper's rule ([`super::keeper`]) ends a lease's validity before
//! any other worker may take it. But a part is a process of its own: a
//! worker that stalls (stopped, swapped out, starved) stops renewing and
//! stops killing its parts too, and without a fence its parts would go on
//! after the lease moved. So the worker writes, beside each part's state
//! directory, a *deadline* (on `CLOCK_MONOTONIC`, which every process of
//! the machine shares) after every renewal: a quarter of
//! `failover_timeout` before the lease's validity ends ([`deadline`]), so
//! that a part checking every 100 ms, even on a starved machine, is gone
//! before the lease may move. The part kills itself (SIGKILL: no
//! checkpoint, no teardown that could hang) when the deadline passed or
//! its worker is gone.
//!
//! A part started by hand (`kflow run job.toml --part ...` without a
//! worker) has no fence file and is not fenced.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::time::{clock_gettime, ClockId};

/// How often a part looks at its fence and its worker.
const CHECK_EVERY: Duration = Duration::from_millis(100);

/// Now on `CLOCK_MONOTONIC`, nanoseconds.
fn monotonic_ns() -> Option<i128> {
    let now = clock_gettime(ClockId::CLOCK_MONOTONIC).ok()?;
    Some(i128::from(now.tv_sec()) * 1_000_000_000 + i128::from(now.tv_nsec()))
}

/// The fence's deadline for a lease valid until `valid_until` under
/// `failover_timeout` `failover`.
pub fn deadline(valid_until: Instant, failover: Duration) -> Instant {
    valid_until.checked_sub(failover / 4).unwrap_or(valid_until)
}

/// Writes `deadline` to the fence at `path` (write and rename: a part
/// never reads half a file).
///
/// # Errors
/// The file cannot be written.
pub fn write(path: &Path, deadline: Instant) -> std::io::Result<()> {
    let now = monotonic_ns().ok_or_else(|| std::io::Error::other("no monotonic clock"))?;
    let left = deadline.saturating_duration_since(Instant::now());
    let until = now + i128::try_from(left.as_nanos()).unwrap_or(i128::MAX);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("lease.tmp");
    std::fs::write(&tmp, until.to_string())?;
    std::fs::rename(&tmp, path)
}

/// Whether the fence at `path` still lets the part run: `None` when there
/// is no fence, else whether its instant is still ahead.
pub fn open(path: &Path) -> Option<bool> {
    let text = std::fs::read_to_string(path).ok()?;
    // A fence that cannot be read as an instant has lapsed.
    let until: i128 = text.trim().parse().unwrap_or(i128::MIN);
    Some(monotonic_ns().is_some_and(|now| now < until))
}

/// Starts the part's watch: the process kills itself when its worker is
/// gone or the fence at `path` lapsed.
///
/// The first look is made before this returns, so a part started on a
/// fence that lapsed already (its worker stalled between writing it and
/// starting the part) stops before it does anything.
pub fn watch(path: PathBuf) {
    let parent = std::os::unix::process::parent_id();
    check(&path, parent);
    let spawned = std::thread::Builder::new()
        .name("fence".into())
        .spawn(move || loop {
            std::thread::sleep(CHECK_EVERY);
            check(&path, parent);
        });
    if let Err(e) = spawned {
        eprintln!("kflow: cannot watch the part's lease: {e}");
        std::process::exit(1);
    }
}

/// Stops the part if its worker `parent` is gone or the fence at `path`
/// lapsed.
fn check(path: &Path, parent: u32) {
    if std::os::unix::process::parent_id() != parent {
        die(&format!("its worker (pid {parent}) is gone"));
    }
    if open(path) == Some(false) {
        die(&format!("its lease lapsed ({})", path.display()));
    }
}

/// Stops the part now, as a kill would. The reason is written on a
/// thread of its own: stderr is the worker's, and a write to it may fail
/// (the worker is gone, the pipe closed) or block (its reader stalled),
/// neither of which may keep the part alive.
fn die(why: &str) {
    let line = format!("kflow: stopping the part: {why}\n");
    let _ = std::thread::Builder::new()
        .name("fence-why".into())
        .spawn(move || {
            use std::io::Write;
            let _ = std::io::stderr().write_all(line.as_bytes());
        });
    std::thread::sleep(Duration::from_millis(20));
    let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::Signal::SIGKILL);
    std::process::exit(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fence_is_open_until_its_instant() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("parts/group-0001.lease");
        assert_eq!(open(&path), None, "no fence, not fenced");
        write(&path, Instant::now() + Duration::from_secs(60)).unwrap();
        assert_eq!(open(&path), Some(true));
        write(&path, Instant::now()).unwrap();
        assert_eq!(open(&path), Some(false));
        std::fs::write(&path, "garbage").unwrap();
        assert_eq!(open(&path), Some(false), "unreadable fences lapsed");
        let now = Instant::now();
        let failover = Duration::from_secs(2);
        assert_eq!(deadline(now + failover, failover), now + failover * 3 / 4);
    }
}
