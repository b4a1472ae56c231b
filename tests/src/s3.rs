//! An S3 emulator for the checkpoint-store and S3-sink tests: `s3rver`,
//! pinned in `package.json` like the Kinesis emulators, started on a free
//! loopback port with one bucket, and stopped (or killed and restarted on
//! the same port and data) by the test.
//!
//! s3rver, because it installs from npm beside the Kinesis emulators (no
//! Python or JVM), starts in about a second, keeps its objects in a plain
//! folder, and serves every call kflow makes (Put/Get/Delete/ListObjectsV2)
//! with real SigV4 parsing.

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kflow::aws::s3::S3;
use kflow::aws::RetryPolicy;

use crate::job::wait_until;
use crate::kinesis::{free_ports, repo_root, WATCHDOG_JS};

/// The bucket every test uses.
pub const BUCKET: &str = "kflow-test";

/// A running s3rver.
pub struct S3Emulator {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Drop for S3Emulator {
    fn drop(&mut self) {
        self.stop();
    }
}

impl S3Emulator {
    /// Starts s3rver with bucket [`BUCKET`] and waits until it answers.
    ///
    /// # Panics
    ///
    /// When s3rver is not installed (`npm ci`) or does not answer in 60 s.
    pub fn start() -> S3Emulator {
        let dir = tempfile::Builder::new()
            .prefix("kflow-s3rver-")
            .tempdir()
            .expect("cannot create a folder for s3rver");
        fs::write(dir.path().join("watchdog.js"), WATCHDOG_JS).expect("cannot write the watchdog");
        let [port] = free_ports::<1>();
        let mut emulator = S3Emulator {
            port,
            dir,
            child: None,
        };
        emulator.launch();
        emulator
    }

    fn entry() -> PathBuf {
        let entry = repo_root().join("node_modules/s3rver/bin/s3rver.js");
        assert!(
            entry.is_file(),
            "s3rver is not installed ({} is missing): run `npm ci` at the repository root",
            entry.display()
        );
        entry
    }

    fn launch(&mut self) {
        let data = self.dir.path().join("data");
        fs::create_dir_all(&data).expect("cannot create the s3rver data folder");
        let log = fs::File::create(self.dir.path().join("s3rver.log")).expect("s3rver log");
        let child = Command::new("node")
            .arg("--require")
            .arg(self.dir.path().join("watchdog.js"))
            .arg(S3Emulator::entry())
            .args(["-d", &data.display().to_string(), "-a", "127.0.0.1"])
            .args(["-p", &self.port.to_string(), "--silent"])
            .args([
                "--configure-bucket",
                BUCKET,
                "--allow-mismatched-signatures",
            ])
            .stdin(Stdio::piped())
            .stdout(log.try_clone().expect("s3rver log"))
            .stderr(log)
            .spawn()
            .expect("cannot start node (is Node.js installed?)");
        self.child = Some(child);
        let port = self.port;
        wait_until(Duration::from_secs(60), "s3rver answers", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    }

    /// Stops the emulator (its objects stay on disk).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and data.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// The endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment a `kflow` process needs to reach it.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL_S3", self.endpoint()),
            ("AWS_ACCESS_KEY_ID", "S3RVER".into()),
            ("AWS_SECRET_ACCESS_KEY", "S3RVER".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }

    /// A client for the test's own checks.
    pub fn client(&self) -> S3 {
        S3::connect_to(&self.endpoint(), ("S3RVER", "S3RVER"), RetryPolicy::BOUNDED)
            .expect("an S3 client")
    }

    /// Keys and sizes under `prefix`.
    pub fn list(&self, prefix: &str) -> Vec<(String, u64)> {
        self.client()
            .list(BUCKET, prefix)
            .expect("listing the bucket")
    }

    /// An object's bytes.
    pub fn get(&self, key: &str) -> Vec<u8> {
        self.client()
            .get(BUCKET, key)
            .expect("reading an object")
            .unwrap_or_else(|| panic!("{key} is missing"))
    }
}
