//! Measuring one benchmark run: wall time, CPU of the process and its
//! children, and peak resident memory (sampled from /proc).

use std::fs;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::resource::{getrusage, UsageWho};

/// CPU seconds of this process's finished children.
pub fn children_cpu() -> f64 {
    getrusage(UsageWho::RUSAGE_CHILDREN).map_or(0.0, |u| {
        let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
        t(u.user_time()) + t(u.system_time())
    })
}

/// The peak resident set of process `pid`, kB.
pub fn vm_hwm_kb(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Reads a child's pipe to its end on a thread of its own.
pub fn read_all<R: std::io::Read + Send + 'static>(
    pipe: Option<R>,
) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    })
}

/// One run's wall seconds, CPU seconds, peak RSS in MB, stdout and stderr.
pub type Run = (f64, f64, f64, String, String);

/// Runs `command()` `repeat` times (after `before_each()`) and returns the
/// median run by wall time.
pub fn measure_median(
    repeat: usize,
    mut before_each: impl FnMut() -> Result<(), String>,
    mut command: impl FnMut() -> Command,
) -> Result<Run, String> {
    let mut runs = Vec::with_capacity(repeat);
    for _ in 0..repeat {
        before_each()?;
        runs.push(measure(command())?);
    }
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let median = runs.len() / 2;
    Ok(runs.swap_remove(median))
}

/// Runs a command to completion, measuring wall time, CPU (of it and its
/// children) and peak RSS (the kernel's high-water mark, sampled).
pub fn measure(mut command: Command) -> Result<Run, String> {
    let described = format!("{command:?}");
    let cpu_before = children_cpu();
    let started = Instant::now();
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{described}: {e}"))?;
    let pid = child.id();
    let stdout = read_all(child.stdout.take());
    let stderr = read_all(child.stderr.take());
    // A thread waits for the exit, so the wall time ends when the run
    // does, not at the next of the peak's samples (20 ms apart).
    let (exited, exit) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let status = child.wait();
        let _ = exited.send(Instant::now());
        status
    });
    let mut peak = 0;
    let ended = loop {
        if let Some(kb) = vm_hwm_kb(pid) {
            peak = peak.max(kb);
        }
        match exit.recv_timeout(Duration::from_millis(20)) {
            Ok(at) => break at,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break Instant::now(),
        }
    };
    let status = waiter
        .join()
        .map_err(|_| format!("{described}: the waiting thread panicked"))?
        .map_err(|e| format!("{described}: {e}"))?;
    let seconds = ended.duration_since(started).as_secs_f64();
    let cpu = children_cpu() - cpu_before;
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    if !status.success() {
        return Err(format!("{described} failed ({status}):\n{stderr}"));
    }
    Ok((seconds, cpu, peak as f64 / 1024.0, stdout, stderr))
}
