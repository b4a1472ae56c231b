//! Kinesis emulators for the end-to-end tests, and a small blocking client
//! to drive them.
//!
//! [`Emulator::start`] runs one of two emulators, both installed from npm
//! into `<repo>/node_modules` (pinned in `package.json` and
//! `package-lock.json`; `scripts/test` runs `npm ci` when they are missing):
//!
//! - [`EmulatorKind::KinesisMock`]: `kinesis-local`, kinesis-mock compiled to
//!   JavaScript. Closest to the real service: resharding (split, merge,
//!   `UpdateShardCount`), `ListShards` filters, a real `MillisBehindLatest`.
//! - [`EmulatorKind::Kinesalite`]: `kinesalite`, an older, independent
//!   implementation: split and merge but no `UpdateShardCount`, and
//!   `MillisBehindLatest` is always 0.
//!
//! kinesis-mock gets slow as a shard fills: a 500-record `PutRecords` into
//! one shard already holding 5,000 records takes about 4 s. Keep its streams
//! to a few thousand records per shard; kinesalite stays fast (thousands of
//! records per second, whatever the size).
//!
//! Each emulator listens on a free port (plain HTTP; both bind every
//! interface, neither can be told otherwise) and writes its output to a log
//! file in a private temporary folder, whose tail is in every panic message.
//! The emulator dies with the [`Emulator`] value, and also when the test
//! process itself dies (a watchdog preloaded into node exits when its stdin,
//! a pipe from the test process, closes), so no run leaves one behind.
//!
//! Fault tests: [`Emulator::stop`] kills the emulator (SIGKILL, as a crash)
//! and [`Emulator::restart`] starts it again on the same port. kinesalite
//! keeps its streams and every acknowledged record across a restart (LevelDB
//! in the temporary folder). kinesis-mock comes back **empty**: it can only
//! save its state by rewriting one JSON file of everything at a fixed
//! interval (most of a core at 100 ms with 5,000 records), in place (a kill
//! during a write leaves a truncated file it then refuses to start from), and
//! not on shutdown; so the harness does not turn that on. Use kinesalite for
//! tests that need the data to survive a restart.
//!
//! [`Kinesis`] wraps the AWS SDK in a synchronous facade (a current-thread
//! tokio runtime inside) with the operations the tests need: create, reshard
//! and delete streams, waiting until they are `ACTIVE` again, put records
//! (retrying failed entries) and read a whole stream back.
//!
//! Test-only code: a missing emulator or a failed call panics with a
//! message, it never skips.

use std::cmp::Ordering;
use std::fs::{self, File, OpenOptions};
use std::future::Future;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_kinesis::config::retry::RetryConfig;
use aws_sdk_kinesis::config::timeout::TimeoutConfig;
use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kinesis::error::DisplayErrorContext;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType, StreamStatus};
use aws_sdk_kinesis::Client;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

/// How long an emulator may take to answer its first `ListStreams`.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a stream may take to become `ACTIVE`, and a whole stream to be
/// written or read back.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(60);
/// How long an emulator keeps a stream in `CREATING`, `DELETING` or
/// `UPDATING`: short, so tests wait milliseconds, not the default 500 ms.
const TRANSITION_MS: u32 = 10;
/// The region every client and emulator uses.
pub const REGION: &str = "us-east-1";
/// The access key and secret every client uses (the emulators accept any).
pub const ACCESS_KEY: &str = "test";

/// The preloaded watchdog: exits at once when stdin, a pipe held by the test
/// process, closes, which happens when the test process dies without
/// dropping its [`Emulator`] (killed, or aborted).
pub const WATCHDOG_JS: &str = "\
// kflow tests: exit when the test process that started us goes away.
const exit = () => process.exit(0);
process.stdin.on('end', exit);
process.stdin.on('error', exit);
process.stdin.resume();
";

/// Which Kinesis emulator to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EmulatorKind {
    /// kinesis-mock (npm `kinesis-local`), the fuller emulator.
    KinesisMock,
    /// kinesalite (npm `kinesalite`): no `UpdateShardCount`, no real
    /// `MillisBehindLatest`.
    Kinesalite,
}

impl EmulatorKind {
    /// Both emulators, for tests that run against each.
    pub const ALL: [EmulatorKind; 2] = [EmulatorKind::KinesisMock, EmulatorKind::Kinesalite];

    /// A short name for messages and file names.
    pub fn name(self) -> &'static str {
        match self {
            EmulatorKind::KinesisMock => "kinesis-mock",
            EmulatorKind::Kinesalite => "kinesalite",
        }
    }

    /// The npm package.
    pub fn package(self) -> &'static str {
        match self {
            EmulatorKind::KinesisMock => "kinesis-local",
            EmulatorKind::Kinesalite => "kinesalite",
        }
    }

    /// The script node runs, relative to the package folder (the package's
    /// `bin`).
    fn entry(self) -> &'static str {
        match self {
            EmulatorKind::KinesisMock => "main.js",
            EmulatorKind::Kinesalite => "cli.js",
        }
    }
}

/// The repository's root: the tests crate's parent folder.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is inside the repository")
        .to_path_buf()
}

/// A running Kinesis emulator on a loopback port; killed on drop.
#[derive(Debug)]
pub struct Emulator {
    kind: EmulatorKind,
    port: u16,
    /// kinesis-mock always serves TLS too, on a second port nobody uses.
    tls_port: Option<u16>,
    entry: PathBuf,
    /// Holds the log, the watchdog and the emulator's data; removed on drop.
    dir: tempfile::TempDir,
    child: Option<Child>,
    last_start: Duration,
    /// kinesis-mock only: save its state to `data/kinesis-data.json` every
    /// [`PERSIST_INTERVAL`] and load it on a restart.
    persistent: bool,
}

/// How often a persistent kinesis-mock saves its state.
const PERSIST_INTERVAL: &str = "300ms";

impl Emulator {
    /// Starts an emulator on a free loopback port and waits until it answers
    /// `ListStreams`.
    ///
    /// # Panics
    ///
    /// When the emulator is not installed (run `npm ci` at the repository
    /// root), node is missing, or it does not answer within 60 s (with the
    /// tail of its log).
    pub fn start(kind: EmulatorKind) -> Emulator {
        let package = repo_root().join("node_modules").join(kind.package());
        let entry = package.join(kind.entry());
        assert!(
            entry.is_file(),
            "the {} emulator is not installed ({} is missing): run `npm ci` in {} \
             (scripts/test does it) to install the Kinesis emulators pinned in package.json",
            kind.name(),
            entry.display(),
            repo_root().display(),
        );
        let dir = tempfile::Builder::new()
            .prefix(&format!("kflow-{}-", kind.name()))
            .tempdir()
            .expect("cannot create a temporary folder for the emulator");
        fs::write(dir.path().join("watchdog.js"), WATCHDOG_JS)
            .expect("cannot write the emulator watchdog");
        let (port, tls_port) = match kind {
            EmulatorKind::KinesisMock => {
                let [plain, tls] = free_ports::<2>();
                (plain, Some(tls))
            }
            EmulatorKind::Kinesalite => (free_ports::<1>()[0], None),
        };
        let mut emulator = Emulator {
            kind,
            port,
            tls_port,
            entry,
            dir,
            child: None,
            last_start: Duration::ZERO,
            persistent: false,
        };
        emulator.launch();
        emulator
    }

    /// A kinesis-mock that saves its state every 300 ms and loads it when
    /// restarted, for restart tests of what only kinesis-mock serves
    /// (enhanced fan-out). Stop it with [`Emulator::kill_after_save`], never
    /// [`Emulator::kill`]: a save cut short leaves a file it cannot load.
    pub fn start_persistent() -> Emulator {
        let mut emulator = Emulator::start(EmulatorKind::KinesisMock);
        emulator.stop();
        emulator.persistent = true;
        emulator.launch();
        emulator
    }

    /// The file a persistent kinesis-mock saves to.
    fn saved_state(&self) -> PathBuf {
        self.dir.path().join("data").join("kinesis-data.json")
    }

    /// Waits until a persistent kinesis-mock has saved a whole state that
    /// contains `text` (the last sequence number written, say), kills it
    /// (SIGKILL) and puts that save back in place, so that
    /// [`Emulator::restart`] comes back with everything up to `text`.
    ///
    /// # Panics
    ///
    /// When the emulator is not persistent or no such save appears within
    /// 60 s.
    pub fn kill_after_save(&mut self, text: &str) {
        assert!(self.persistent, "kill_after_save needs start_persistent");
        let deadline = Instant::now() + OPERATION_TIMEOUT;
        let saved = loop {
            let whole = fs::read_to_string(self.saved_state())
                .ok()
                .filter(|t| t.contains(text))
                .filter(|t| serde_json::from_str::<serde_json::Value>(t).is_ok());
            if let Some(saved) = whole {
                break saved;
            }
            assert!(
                Instant::now() < deadline,
                "kinesis-mock saved no state with `{text}` within {OPERATION_TIMEOUT:?}"
            );
            thread::sleep(Duration::from_millis(50));
        };
        self.stop();
        fs::write(self.saved_state(), saved).expect("cannot put the saved state back");
    }

    /// Which emulator this is.
    pub fn kind(&self) -> EmulatorKind {
        self.kind
    }

    /// The port it listens on (plain HTTP).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The endpoint URL: `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A new blocking client for this emulator. It stays valid across
    /// [`Emulator::restart`] (same endpoint).
    pub fn client(&self) -> Kinesis {
        Kinesis::new(&self.endpoint())
    }

    /// Environment variables that point an AWS SDK process (such as `kflow`)
    /// at this emulator with dummy credentials.
    pub fn aws_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ENDPOINT_URL_KINESIS", self.endpoint()),
            ("AWS_REGION", REGION.to_string()),
            ("AWS_DEFAULT_REGION", REGION.to_string()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", ACCESS_KEY.to_string()),
        ]
    }

    /// The file the emulator's stdout and stderr go to (appended to across
    /// restarts).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("emulator.log")
    }

    /// The last few kilobytes of the emulator's log.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log_path(), 4096)
    }

    /// How long the last start (or restart) took until the emulator answered.
    pub fn last_start(&self) -> Duration {
        self.last_start
    }

    /// Whether the emulator process is running (it may have died on its own).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Stops the emulator by killing it (SIGKILL, as a crash would; a clean
    /// shutdown gains nothing, and kinesis-mock's waits for idle client
    /// connections). Does nothing when it is not running. kinesalite's data
    /// stays for [`Emulator::restart`]; kinesis-mock's is gone (see the
    /// module docs).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Ignore a failed kill: it means the process already exited.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The same as [`Emulator::stop`], named for crash tests.
    pub fn kill(&mut self) {
        self.stop();
    }

    /// Stops the emulator if it runs and starts it again on the same port,
    /// waiting until it answers: kinesalite with all its streams and records,
    /// kinesis-mock empty (see the module docs).
    ///
    /// # Panics
    ///
    /// As [`Emulator::start`].
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Spawns the emulator and waits until it answers.
    fn launch(&mut self) {
        let log_path = self.log_path();
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("cannot open the emulator log");
        let mut command = Command::new("node");
        command
            .arg("--require")
            .arg(self.dir.path().join("watchdog.js"))
            .arg(&self.entry)
            .current_dir(self.dir.path())
            .env_clear()
            .stdin(Stdio::piped());
        for name in ["PATH", "HOME", "TMPDIR", "LANG"] {
            if let Some(value) = std::env::var_os(name) {
                command.env(name, value);
            }
        }
        match self.kind {
            EmulatorKind::KinesisMock => {
                let cert = self
                    .entry
                    .parent()
                    .expect("the entry script is in its package")
                    .join("server.json");
                let transition = format!("{TRANSITION_MS}ms");
                command
                    .env("KINESIS_MOCK_PLAIN_PORT", self.port.to_string())
                    .env(
                        "KINESIS_MOCK_TLS_PORT",
                        self.tls_port
                            .expect("kinesis-mock has a TLS port")
                            .to_string(),
                    )
                    .env("KINESIS_MOCK_CERT_PATH", cert)
                    .env("AWS_REGION", REGION)
                    .env("SHARD_LIMIT", "1000")
                    // Save and load `data/kinesis-data.json` in the working
                    // folder only when asked (see `start_persistent`).
                    .env("SHOULD_PERSIST_DATA", self.persistent.to_string())
                    .env("LOAD_DATA_IF_EXISTS", self.persistent.to_string())
                    .env("PERSIST_PATH", "data")
                    .env("PERSIST_INTERVAL", PERSIST_INTERVAL)
                    .env("LOG_LEVEL", "INFO");
                for setting in [
                    "CREATE_STREAM_DURATION",
                    "DELETE_STREAM_DURATION",
                    "MERGE_SHARDS_DURATION",
                    "SPLIT_SHARD_DURATION",
                    "UPDATE_SHARD_COUNT_DURATION",
                    "UPDATE_STREAM_MODE_DURATION",
                    "REGISTER_STREAM_CONSUMER_DURATION",
                    "DEREGISTER_STREAM_CONSUMER_DURATION",
                    "START_STREAM_ENCRYPTION_DURATION",
                    "STOP_STREAM_ENCRYPTION_DURATION",
                ] {
                    command.env(setting, &transition);
                }
            }
            EmulatorKind::Kinesalite => {
                let transition = TRANSITION_MS.to_string();
                command
                    .arg("--port")
                    .arg(self.port.to_string())
                    .arg("--path")
                    .arg(self.dir.path().join("data"))
                    .arg("--createStreamMs")
                    .arg(&transition)
                    .arg("--deleteStreamMs")
                    .arg(&transition)
                    .arg("--updateStreamMs")
                    .arg(&transition)
                    .arg("--shardLimit")
                    .arg("1000");
            }
        }
        // A header per start, so a restarted emulator's log reads in order.
        let _ = writeln!(log, "=== kflow tests: starting {command:?}");
        let stderr = log.try_clone().expect("cannot share the emulator log");
        command.stdout(log).stderr(stderr);
        let started = Instant::now();
        let child = command.spawn().unwrap_or_else(|error| {
            panic!(
                "cannot start the {} emulator with `node` ({error}): install Node.js",
                self.kind.name()
            )
        });
        self.child = Some(child);
        self.wait_until_ready(started);
        self.last_start = started.elapsed();
    }

    /// Polls `ListStreams` until it succeeds.
    fn wait_until_ready(&mut self, started: Instant) {
        let probe = Kinesis::probe(&self.endpoint());
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    panic!(
                        "the {} emulator exited during start-up ({status}); its log ({}):\n{}",
                        self.kind.name(),
                        self.log_path().display(),
                        self.log_tail()
                    );
                }
            }
            if probe
                .block_on(probe.client.list_streams().limit(1).send())
                .is_ok()
            {
                return;
            }
            if started.elapsed() > START_TIMEOUT {
                self.stop();
                panic!(
                    "the {} emulator did not answer ListStreams on {} within {:?}; its log ({}):\n{}",
                    self.kind.name(),
                    self.endpoint(),
                    START_TIMEOUT,
                    self.log_path().display(),
                    self.log_tail()
                );
            }
            thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        // node starts no child processes of its own (neither emulator does),
        // so killing it is enough.
        self.stop();
    }
}

/// `N` distinct free loopback ports: bound together (so they differ), read
/// and released.
pub fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("cannot bind a loopback port"))
        .collect();
    std::array::from_fn(|i| {
        listeners[i]
            .local_addr()
            .expect("a bound socket has an address")
            .port()
    })
}

/// The last `bytes` bytes of a file (lossy UTF-8), or why it cannot be read.
pub fn log_tail(path: &Path, bytes: u64) -> String {
    let read = || -> std::io::Result<String> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(bytes)))?;
        let mut tail = Vec::new();
        file.read_to_end(&mut tail)?;
        Ok(String::from_utf8_lossy(&tail).into_owned())
    };
    read().unwrap_or_else(|error| format!("<cannot read {}: {error}>", path.display()))
}

/// A stream name no other test (or test run) uses: `prefix` (cut to the
/// characters Kinesis allows), the process id, a counter and the time.
pub fn fresh_stream_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, AtomicOrdering::Relaxed)
    )
}

/// Compares two Kinesis sequence numbers (decimal strings of up to 128
/// bits' worth of digits, too long for `u128`) numerically.
pub fn compare_sequence_numbers(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// One shard, as `ListShards` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    /// `shardId-000000000000`.
    pub id: String,
    /// The shard it was split from, or the first shard it was merged from.
    pub parent: Option<String>,
    /// The second shard it was merged from.
    pub adjacent_parent: Option<String>,
    /// Whether it still takes records (no ending sequence number).
    pub open: bool,
    /// Its hash key range, inclusive.
    pub hash_key_range: (u128, u128),
}

/// A record read back: `(shard id, sequence number, partition key, data)`.
pub type ReadRecord = (String, String, String, Vec<u8>);

/// A blocking Kinesis client (the AWS SDK on a current-thread tokio runtime)
/// with the helpers the tests need. Every helper panics with the SDK error
/// when a call fails.
#[derive(Debug)]
pub struct Kinesis {
    runtime: tokio::runtime::Runtime,
    client: Client,
}

impl Kinesis {
    /// A client for `endpoint` (such as [`Emulator::endpoint`]) with dummy
    /// credentials and the SDK's standard retries.
    pub fn new(endpoint: &str) -> Kinesis {
        Kinesis::build(endpoint, RetryConfig::standard().with_max_attempts(5))
    }

    /// A client that tries once, quickly: for polling a starting emulator.
    fn probe(endpoint: &str) -> Kinesis {
        Kinesis::build(endpoint, RetryConfig::disabled())
    }

    fn build(endpoint: &str, retry: RetryConfig) -> Kinesis {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("cannot build a tokio runtime");
        // The rustls client the engine uses; it speaks plain HTTP to an
        // `http://` endpoint.
        let http_client = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let config = aws_sdk_kinesis::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(endpoint)
            .credentials_provider(Credentials::new(
                ACCESS_KEY,
                ACCESS_KEY,
                None,
                None,
                "kflow-tests",
            ))
            .http_client(http_client)
            .retry_config(retry)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(2))
                    .operation_attempt_timeout(Duration::from_secs(10))
                    .build(),
            )
            .build();
        Kinesis {
            runtime,
            client: Client::from_conf(config),
        }
    }

    /// The SDK client, for calls the helpers do not cover; run its futures
    /// with [`Kinesis::block_on`].
    pub fn sdk(&self) -> &Client {
        &self.client
    }

    /// Runs a future (such as an SDK call) to completion.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// Every stream's name.
    pub fn list_streams(&self) -> Vec<String> {
        let mut names = Vec::new();
        let mut start = None::<String>;
        loop {
            let out = self
                .block_on(
                    self.client
                        .list_streams()
                        .set_exclusive_start_stream_name(start.clone())
                        .send(),
                )
                .unwrap_or_else(|error| panic!("ListStreams: {}", describe(&error)));
            names.extend(out.stream_names().iter().cloned());
            match (out.has_more_streams(), names.last()) {
                (true, Some(last)) => start = Some(last.clone()),
                _ => return names,
            }
        }
    }

    /// Creates a stream under a [`fresh_stream_name`] from `prefix`, waits
    /// until it is `ACTIVE`, and returns its name.
    pub fn create_fresh_stream(&self, prefix: &str, shards: u32) -> String {
        let name = fresh_stream_name(prefix);
        self.create_stream(&name, shards);
        name
    }

    /// Creates a provisioned stream and waits until it is `ACTIVE`.
    pub fn create_stream(&self, name: &str, shards: u32) {
        let shards = i32::try_from(shards).expect("a shard count fits an i32");
        self.block_on(
            self.client
                .create_stream()
                .stream_name(name)
                .shard_count(shards)
                .send(),
        )
        .unwrap_or_else(|error| panic!("CreateStream {name}: {}", describe(&error)));
        self.wait_until_active(name);
    }

    /// Deletes a stream and waits until it is gone.
    pub fn delete_stream(&self, name: &str) {
        self.block_on(
            self.client
                .delete_stream()
                .stream_name(name)
                .enforce_consumer_deletion(true)
                .send(),
        )
        .unwrap_or_else(|error| panic!("DeleteStream {name}: {}", describe(&error)));
        let deadline = Instant::now() + OPERATION_TIMEOUT;
        while self.list_streams().iter().any(|stream| stream == name) {
            assert!(
                Instant::now() < deadline,
                "stream {name} still exists {OPERATION_TIMEOUT:?} after DeleteStream"
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// The stream's status (`CREATING`, `ACTIVE`, `UPDATING`, `DELETING`).
    pub fn stream_status(&self, name: &str) -> StreamStatus {
        let out = self
            .block_on(
                self.client
                    .describe_stream_summary()
                    .stream_name(name)
                    .send(),
            )
            .unwrap_or_else(|error| panic!("DescribeStreamSummary {name}: {}", describe(&error)));
        out.stream_description_summary()
            .unwrap_or_else(|| panic!("DescribeStreamSummary {name}: no summary"))
            .stream_status()
            .clone()
    }

    /// Polls `DescribeStreamSummary` until the stream is `ACTIVE`.
    pub fn wait_until_active(&self, name: &str) {
        let deadline = Instant::now() + OPERATION_TIMEOUT;
        loop {
            let status = self.stream_status(name);
            if status == StreamStatus::Active {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "stream {name} is still {status} after {OPERATION_TIMEOUT:?}"
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Every shard of the stream, open and closed, in `ListShards` order.
    pub fn list_shards(&self, name: &str) -> Vec<ShardInfo> {
        let mut shards = Vec::new();
        let mut token = None::<String>;
        loop {
            // The stream name and a next token exclude each other.
            let request = match &token {
                Some(token) => self.client.list_shards().next_token(token),
                None => self.client.list_shards().stream_name(name),
            };
            let out = self
                .block_on(request.send())
                .unwrap_or_else(|error| panic!("ListShards {name}: {}", describe(&error)));
            for shard in out.shards() {
                let range = shard
                    .hash_key_range()
                    .unwrap_or_else(|| panic!("shard {} has no hash key range", shard.shard_id()));
                let parse = |key: &str| {
                    key.parse::<u128>()
                        .unwrap_or_else(|_| panic!("hash key {key} is not a 128-bit number"))
                };
                shards.push(ShardInfo {
                    id: shard.shard_id().to_string(),
                    parent: shard.parent_shard_id().map(str::to_string),
                    adjacent_parent: shard.adjacent_parent_shard_id().map(str::to_string),
                    open: shard
                        .sequence_number_range()
                        .and_then(|range| range.ending_sequence_number())
                        .is_none(),
                    hash_key_range: (
                        parse(range.starting_hash_key()),
                        parse(range.ending_hash_key()),
                    ),
                });
            }
            match out.next_token() {
                Some(next) => token = Some(next.to_string()),
                None => return shards,
            }
        }
    }

    /// The stream's shards that still take records.
    pub fn open_shards(&self, name: &str) -> Vec<ShardInfo> {
        let mut shards = self.list_shards(name);
        shards.retain(|shard| shard.open);
        shards
    }

    /// Splits a shard at the middle of its hash key range and waits until the
    /// stream is `ACTIVE` again.
    pub fn split_shard(&self, name: &str, shard_id: &str) {
        let shard = self
            .list_shards(name)
            .into_iter()
            .find(|shard| shard.id == shard_id)
            .unwrap_or_else(|| panic!("stream {name} has no shard {shard_id}"));
        let (start, end) = shard.hash_key_range;
        assert!(
            start < end,
            "shard {shard_id} covers one hash key: cannot split"
        );
        let middle = start + (end - start) / 2 + 1;
        self.block_on(
            self.client
                .split_shard()
                .stream_name(name)
                .shard_to_split(shard_id)
                .new_starting_hash_key(middle.to_string())
                .send(),
        )
        .unwrap_or_else(|error| panic!("SplitShard {name} {shard_id}: {}", describe(&error)));
        self.wait_until_active(name);
    }

    /// Merges two adjacent shards and waits until the stream is `ACTIVE`
    /// again.
    pub fn merge_shards(&self, name: &str, shard: &str, adjacent: &str) {
        self.block_on(
            self.client
                .merge_shards()
                .stream_name(name)
                .shard_to_merge(shard)
                .adjacent_shard_to_merge(adjacent)
                .send(),
        )
        .unwrap_or_else(|error| {
            panic!(
                "MergeShards {name} {shard} {adjacent}: {}",
                describe(&error)
            )
        });
        self.wait_until_active(name);
    }

    /// Scales the stream uniformly to `shards` open shards and waits until it
    /// is `ACTIVE` again. kinesis-mock only (kinesalite lacks the call).
    pub fn update_shard_count(&self, name: &str, shards: u32) {
        let shards = i32::try_from(shards).expect("a shard count fits an i32");
        self.block_on(
            self.client
                .update_shard_count()
                .stream_name(name)
                .target_shard_count(shards)
                .scaling_type(aws_sdk_kinesis::types::ScalingType::UniformScaling)
                .send(),
        )
        .unwrap_or_else(|error| panic!("UpdateShardCount {name}: {}", describe(&error)));
        self.wait_until_active(name);
    }

    /// Writes four rounds with `put`, resharding between them: split an
    /// open shard, merge that split's two children back, then
    /// `UpdateShardCount` to 4 (seven shards or more in the end).
    ///
    /// # Panics
    ///
    /// When a reshard does not happen as asked.
    pub fn put_while_resharding(
        &self,
        name: &str,
        rounds: &[String; 4],
        mut put: impl FnMut(&str),
    ) {
        put(&rounds[0]);
        let open = self.open_shards(name);
        self.split_shard(name, &open[0].id);
        put(&rounds[1]);
        let mut children: Vec<ShardInfo> = self
            .open_shards(name)
            .into_iter()
            .filter(|s| s.parent.as_deref() == Some(open[0].id.as_str()))
            .collect();
        assert_eq!(children.len(), 2, "the split made two children");
        children.sort_by_key(|s| s.hash_key_range.0);
        self.merge_shards(name, &children[0].id, &children[1].id);
        put(&rounds[2]);
        self.update_shard_count(name, 4);
        put(&rounds[3]);
        assert!(self.list_shards(name).len() >= 7, "resharding happened");
    }

    /// Puts records `(partition key, data)` in order, 500 per `PutRecords`,
    /// retrying the entries that fail until all are in. Returns each
    /// record's `(shard id, sequence number)`, in input order.
    ///
    /// Records sharing a key keep their order only if none of them needed a
    /// retry (as with the real service); the emulators do not throttle.
    pub fn put_records<K, D>(&self, name: &str, records: &[(K, D)]) -> Vec<(String, String)>
    where
        K: AsRef<str>,
        D: AsRef<[u8]>,
    {
        let deadline = Instant::now() + OPERATION_TIMEOUT;
        let mut placed: Vec<Option<(String, String)>> = vec![None; records.len()];
        for chunk_start in (0..records.len()).step_by(500) {
            let mut pending: Vec<usize> =
                (chunk_start..records.len().min(chunk_start + 500)).collect();
            while !pending.is_empty() {
                let entries: Vec<PutRecordsRequestEntry> = pending
                    .iter()
                    .map(|&index| {
                        let (key, data) = &records[index];
                        PutRecordsRequestEntry::builder()
                            .partition_key(key.as_ref())
                            .data(Blob::new(data.as_ref()))
                            .build()
                            .expect("a record entry has its key and data")
                    })
                    .collect();
                let out = self
                    .block_on(
                        self.client
                            .put_records()
                            .stream_name(name)
                            .set_records(Some(entries))
                            .send(),
                    )
                    .unwrap_or_else(|error| panic!("PutRecords {name}: {}", describe(&error)));
                let mut failed = Vec::new();
                let mut last_error = None;
                for (&index, result) in pending.iter().zip(out.records()) {
                    match (result.shard_id(), result.sequence_number()) {
                        (Some(shard), Some(sequence)) if result.error_code().is_none() => {
                            placed[index] = Some((shard.to_string(), sequence.to_string()));
                        }
                        _ => {
                            failed.push(index);
                            last_error = Some(format!(
                                "{}: {}",
                                result.error_code().unwrap_or("?"),
                                result.error_message().unwrap_or("")
                            ));
                        }
                    }
                }
                assert_eq!(
                    out.records().len(),
                    pending.len(),
                    "PutRecords {name} answered for a different number of records"
                );
                assert!(
                    failed.is_empty() || Instant::now() < deadline,
                    "PutRecords {name}: {} records still failing after {OPERATION_TIMEOUT:?}, \
                     last error {}",
                    failed.len(),
                    last_error.unwrap_or_default()
                );
                if !failed.is_empty() {
                    thread::sleep(Duration::from_millis(50));
                }
                pending = failed;
            }
        }
        placed
            .into_iter()
            .map(|place| place.expect("every record was placed"))
            .collect()
    }

    /// Reads every shard (closed ones too) from `TRIM_HORIZON` to its current
    /// end: until the shard is closed and read through, or a batch comes back
    /// empty with `MillisBehindLatest` 0. Records are grouped by shard in
    /// `ListShards` order, in sequence order within a shard.
    pub fn read_all(&self, name: &str) -> Vec<ReadRecord> {
        let deadline = Instant::now() + OPERATION_TIMEOUT;
        let mut records = Vec::new();
        for shard in self.list_shards(name) {
            let out = self
                .block_on(
                    self.client
                        .get_shard_iterator()
                        .stream_name(name)
                        .shard_id(&shard.id)
                        .shard_iterator_type(ShardIteratorType::TrimHorizon)
                        .send(),
                )
                .unwrap_or_else(|error| {
                    panic!("GetShardIterator {name} {}: {}", shard.id, describe(&error))
                });
            let mut iterator = out.shard_iterator().map(str::to_string);
            while let Some(current) = iterator.take() {
                assert!(
                    Instant::now() < deadline,
                    "reading stream {name} took more than {OPERATION_TIMEOUT:?} (at shard {})",
                    shard.id
                );
                let out = self
                    .block_on(
                        self.client
                            .get_records()
                            .shard_iterator(current)
                            .limit(10_000)
                            .send(),
                    )
                    .unwrap_or_else(|error| {
                        panic!("GetRecords {name} {}: {}", shard.id, describe(&error))
                    });
                for record in out.records() {
                    records.push((
                        shard.id.clone(),
                        record.sequence_number().to_string(),
                        record.partition_key().unwrap_or_default().to_string(),
                        record.data().as_ref().to_vec(),
                    ));
                }
                let caught_up =
                    out.records().is_empty() && out.millis_behind_latest().unwrap_or(0) == 0;
                if !caught_up {
                    iterator = out.next_shard_iterator().map(str::to_string);
                }
            }
        }
        records
    }
}

/// An SDK error with its causes (the `Display` of an SDK error alone is just
/// "service error").
fn describe<E: std::error::Error>(error: &E) -> String {
    DisplayErrorContext(error).to_string()
}
