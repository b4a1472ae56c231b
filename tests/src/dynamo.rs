//! A DynamoDB emulator for the cluster tests: `dynalite`, pinned in
//! `package.json` like the Kinesis and S3 emulators, started on a free
//! loopback port (tables in memory) and stopped with the test.
//!
//! dynalite, because it installs from npm beside kinesalite (same author
//! and family: no Python or JVM), starts in well under a second, and
//! implements the calls a lease table needs (CreateTable, DescribeTable,
//! consistent Scan, UpdateItem with condition expressions and
//! `ReturnValues`), with DynamoDB's validation of expressions.

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::job::wait_until;
use crate::kinesis::{free_ports, log_tail, repo_root, WATCHDOG_JS};

/// A running dynalite.
pub struct DynamoEmulator {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Drop for DynamoEmulator {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A failing test shows what dynalite said (an exit, an error).
            if std::thread::panicking() {
                let exited = child.try_wait().ok().flatten();
                eprintln!(
                    "dynalite on port {} ({}); its log:\n{}",
                    self.port,
                    exited.map_or("still running".to_string(), |s| format!("exited: {s}")),
                    log_tail(&self.dir.path().join("dynalite.log"), 4096)
                );
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl DynamoEmulator {
    /// Starts dynalite and waits until it answers.
    ///
    /// # Panics
    ///
    /// When dynalite is not installed (`npm ci`) or does not answer in 60 s.
    pub fn start() -> DynamoEmulator {
        let dir = tempfile::Builder::new()
            .prefix("kflow-dynalite-")
            .tempdir()
            .expect("cannot create a folder for dynalite");
        fs::write(dir.path().join("watchdog.js"), WATCHDOG_JS).expect("cannot write the watchdog");
        let entry = repo_root().join("node_modules/dynalite/cli.js");
        assert!(
            entry.is_file(),
            "dynalite is not installed ({} is missing): run `npm ci` at the repository root",
            entry.display()
        );
        let [port] = free_ports::<1>();
        let log = fs::File::create(dir.path().join("dynalite.log")).expect("dynalite log");
        let child = Command::new("node")
            .arg("--require")
            .arg(dir.path().join("watchdog.js"))
            .arg(entry)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            // Tables are active at once: lease tables are created per test.
            .args(["--createTableMs", "0"])
            .stdin(Stdio::piped())
            .stdout(log.try_clone().expect("dynalite log"))
            .stderr(log)
            .spawn()
            .expect("cannot start node (is Node.js installed?)");
        let mut emulator = DynamoEmulator {
            port,
            dir,
            child: Some(child),
        };
        wait_until(Duration::from_secs(60), "dynalite answers", || {
            // A dynalite that exited (its port taken) must not pass for
            // ready because something else listens there.
            if let Some(Ok(Some(status))) = emulator.child.as_mut().map(Child::try_wait) {
                panic!("dynalite exited during start-up ({status})");
            }
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        emulator
    }

    /// The endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment a `kflow` process needs to reach it.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL_DYNAMODB", self.endpoint()),
            ("AWS_ACCESS_KEY_ID", "kflow-local".into()),
            ("AWS_SECRET_ACCESS_KEY", "kflow-local".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }

    /// Where its log is (for failure messages).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("dynalite.log")
    }
}
