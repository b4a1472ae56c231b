//! Finding and running the `kflow` binary.
//!
//! The tests run the binary `cargo test --workspace` builds, the one a user
//! runs, rather than calling the engine as a library: exit codes, argument
//! parsing and file handling are part of what is tested.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Set to use another `kflow` binary (e.g. a release build) than the one
/// next to the test executable.
pub const KFLOW_BIN_ENV: &str = "KFLOW_BIN";

/// The `kflow` binary built alongside the running test executable, or the
/// one named by `$KFLOW_BIN`.
///
/// A test executable lives in `target/<profile>/deps/`; `cargo test
/// --workspace` puts `kflow` in `target/<profile>/`.
///
/// # Panics
///
/// When the binary is missing: a missing binary is a broken build, never a
/// reason to skip.
pub fn kflow_bin() -> PathBuf {
    if let Some(path) = std::env::var_os(KFLOW_BIN_ENV) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "${KFLOW_BIN_ENV} = {} is not a file",
            path.display()
        );
        return path;
    }
    let exe = std::env::current_exe().expect("the test executable has a path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test executable is in target/<profile>/deps/");
    let bin = profile_dir.join(format!("kflow{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "the kflow binary is not at {}: run the end-to-end tests with \
         `cargo test --workspace` (or `cargo build -p kflow` first), or set ${KFLOW_BIN_ENV}",
        bin.display()
    );
    bin
}

/// What a finished run of a process left behind.
#[derive(Debug)]
pub struct RunOutput {
    /// How it exited.
    pub status: ExitStatus,
    /// Everything it wrote to stdout (lossy UTF-8).
    pub stdout: String,
    /// Everything it wrote to stderr (lossy UTF-8).
    pub stderr: String,
}

/// Runs a command to completion with stdout and stderr captured, killing it
/// if it is still running after `timeout` (a hang is a failure, with the
/// output so far).
///
/// # Errors
///
/// A message when the command cannot start or does not finish in time.
pub fn run_with_timeout(mut command: Command, timeout: Duration) -> Result<RunOutput, String> {
    let described = format!("{command:?}");
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| format!("cannot start {described}: {error}"))?;
    wait_with_timeout(child, timeout).map_err(|problem| format!("{described}: {problem}"))
}

/// Waits for a spawned child (its stderr piped, or not) to finish, killing
/// it after `timeout`; what it wrote to stderr comes back with its status.
///
/// # Errors
///
/// A message, with its stderr, when it does not finish in time.
pub fn wait_with_timeout(mut child: Child, timeout: Duration) -> Result<RunOutput, String> {
    let stderr = drain(child.stderr.take());
    let stdout = drain(child.stdout.take());
    let waited = wait_until(&mut child, Instant::now() + timeout);
    let (stdout, stderr) = (join(stdout), join(stderr));
    match waited {
        Ok(status) => Ok(RunOutput {
            status,
            stdout,
            stderr,
        }),
        Err(problem) => Err(format!(
            "{problem}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
        )),
    }
}

/// A running child whose stderr lines are collected as they come, so a
/// test can wait for what it logs (with `KFLOW_LOG=debug`, every committed
/// checkpoint) instead of sleeping.
pub struct Watched {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<thread::JoinHandle<()>>,
}

impl Watched {
    /// Starts `command` with stderr collected and stdout discarded.
    ///
    /// # Panics
    ///
    /// When the command cannot start.
    pub fn spawn(command: &mut Command) -> Watched {
        Watched::spawn_to(command, Stdio::null())
    }

    /// Starts `command` with stderr collected and stdout to `stdout`.
    ///
    /// # Panics
    ///
    /// When the command cannot start.
    pub fn spawn_to(command: &mut Command, stdout: Stdio) -> Watched {
        let mut child = command
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let reader = child.stderr.take().map(|pipe| {
            let lines = lines.clone();
            thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if let Ok(mut lines) = lines.lock() {
                        lines.push(line);
                    }
                }
            })
        });
        Watched {
            child,
            lines,
            reader,
        }
    }

    /// How many lines so far contain `text`.
    pub fn count(&self, text: &str) -> usize {
        self.lines
            .lock()
            .map(|lines| lines.iter().filter(|l| l.contains(text)).count())
            .unwrap_or(0)
    }

    /// Waits until `count` lines contain `text`; panics (with the log) if
    /// the process exits first or `timeout` passes.
    pub fn wait_for(&mut self, text: &str, count: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.count(text) < count {
            let exited = self.child.try_wait().ok().flatten();
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "waited for {count} lines with `{text}` in vain ({}):\n{}",
                exited.map_or("timed out".to_string(), |s| s.to_string()),
                self.log()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything logged so far.
    pub fn log(&self) -> String {
        self.lines.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends signal `signal` (`STOP`, `CONT`, `TERM`, ...).
    ///
    /// # Panics
    ///
    /// When `kill` cannot run or fails.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args(["-s", signal, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -s {signal} failed: {status}");
    }

    /// Sends SIGTERM (a graceful stop), as systemd or Kubernetes would.
    ///
    /// # Panics
    ///
    /// When `kill` cannot run.
    pub fn terminate(&self) {
        self.signal("TERM");
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }

    /// Waits for the process to exit (killing it after `timeout`); its
    /// status and log.
    ///
    /// # Errors
    ///
    /// A message with the log when it does not exit in time.
    pub fn wait(mut self, timeout: Duration) -> Result<(ExitStatus, String), String> {
        let waited = wait_until(&mut self.child, Instant::now() + timeout);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        waited
            .map(|status| (status, self.log()))
            .map_err(|problem| format!("{problem}\n{}", self.log()))
    }
}

/// Waits for the child, killing it at the deadline.
fn wait_until(child: &mut Child, deadline: Instant) -> Result<ExitStatus, String> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) if Instant::now() >= deadline => {
                // Ignore a failed kill: it means the process just exited.
                let _ = child.kill();
                let _ = child.wait();
                return Err("still running at the deadline, killed".to_string());
            }
            Ok(None) => thread::sleep(Duration::from_millis(10)),
            Err(error) => return Err(format!("cannot wait for it: {error}")),
        }
    }
}

/// Reads a pipe to its end on a thread, so a chatty child never blocks on a
/// full pipe while we wait for it.
fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> Option<thread::JoinHandle<String>> {
    pipe.map(|mut pipe| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            // A read error only truncates what we show.
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    })
}

fn join(reader: Option<thread::JoinHandle<String>>) -> String {
    reader
        .map(|handle| {
            handle
                .join()
                .unwrap_or_else(|_| "<reader panicked>".to_string())
        })
        .unwrap_or_default()
}
