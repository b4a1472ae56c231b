//! Job file pieces the end-to-end tests share, on top of the clickstream
//! job builder of the benchmarks ([`kflow_benches::jobs::ClickJob`]).

use std::collections::HashSet;

use kflow_benches::jobs::{ClickJob, ClickSource};
use kflow_benches::workload::{write_events, Workload};

use crate::compare::{compare_jsonl, RowKind};
use crate::job::JobDir;
use crate::kinesis::Emulator;
use crate::process::RunOutput;

/// The `[job]` table.
pub fn header(name: &str, checkpoint_interval: &str) -> String {
    format!("[job]\nname = \"{name}\"\ncheckpoint_interval = \"{checkpoint_interval}\"\n")
}

/// The clickstream job's filter, window and file sink
/// (`out/result.jsonl`).
pub fn click_windows() -> String {
    let source = ClickSource::File {
        path: String::new(),
    };
    ClickJob::new("", source).windows()
}

/// A file source `clicks` of JSON lines at `path`, event time from `ts`.
pub fn file_source(path: &str, max_out_of_orderness: &str) -> String {
    format!(
        "\n[sources.clicks]\ntype = \"file\"\npath = \"{path}\"\nevent_time = {{ field = \"ts\" }}\n\
         watermark = {{ max_out_of_orderness = \"{max_out_of_orderness}\" }}\n"
    )
}

/// A Kinesis source `clicks` reading `stream` at `endpoint`, event time
/// from `ts`, with more `settings` lines (start and stop positions).
pub fn kinesis_source(stream: &str, endpoint: &str, settings: &str) -> String {
    kinesis_source_allowing(stream, endpoint, "20m", settings)
}

/// [`kinesis_source`] allowing `max_out_of_orderness`.
pub fn kinesis_source_allowing(
    stream: &str,
    endpoint: &str,
    max_out_of_orderness: &str,
    settings: &str,
) -> String {
    format!(
        "\n[sources.clicks]\ntype = \"kinesis\"\nstream = \"{stream}\"\nendpoint = \"{endpoint}\"\n\
         event_time = {{ field = \"ts\" }}\nwatermark = {{ max_out_of_orderness = \"{max_out_of_orderness}\" }}\n{settings}\n"
    )
}

/// Events over ten minutes of event time, `users` users.
pub fn events(n: u64, users: u64, seed: u64) -> String {
    let workload = Workload {
        events: n,
        users,
        seed,
        span_ms: 600_000,
        duplicate_rate: 0.0,
    };
    let mut out = Vec::new();
    write_events(&workload, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

/// `lines` (JSON lines) in four rounds of equal size, each ending with a
/// newline, to put between reshards.
pub fn four_rounds(lines: &str) -> [String; 4] {
    let lines: Vec<&str> = lines.lines().collect();
    let size = lines.len().div_ceil(4).max(1);
    let rounds: Vec<String> = lines.chunks(size).map(|c| c.join("\n") + "\n").collect();
    rounds.try_into().unwrap_or_else(|r: Vec<String>| {
        panic!("{} lines make {} rounds, not 4", lines.len(), r.len())
    })
}

/// `kflow produce` of `lines` into `stream`, keyed by user.
pub fn produce(em: &Emulator, stream: &str, lines: &str) -> RunOutput {
    let dir = JobDir::new("");
    dir.write("events.jsonl", lines);
    let endpoint = em.endpoint();
    dir.run_ok(
        &[
            "produce",
            "--stream",
            stream,
            "--partition-key",
            "user_id",
            "--endpoint",
            &endpoint,
            "events.jsonl",
        ],
        &[],
    )
}

/// The window results of the clickstream job (20 minutes of allowed
/// disorder, as the Kinesis tests' jobs have) over `lines` read from a
/// file: what the same job over a stream must write.
pub fn file_reference(lines: &str) -> String {
    let source = file_source("events.jsonl", "20m");
    let windows = click_windows();
    let dir = JobDir::new(&format!(
        "{}{source}{windows}",
        header("reference", "300ms")
    ));
    dir.write("events.jsonl", lines);
    dir.run_job_ok(&[]);
    let result = dir.read("out/result.jsonl");
    assert!(
        result.lines().count() > 10,
        "the reference has too few rows"
    );
    result
}

/// Panics unless `actual` holds `expected`'s rows (as a multiset, numbers
/// within tolerance) and no row twice.
pub fn assert_rows_equal(expected: &str, actual: &str) {
    if let Err(mismatch) = compare_jsonl(expected, actual, RowKind::Rows) {
        panic!("window results differ from the file run:\n{mismatch}");
    }
    let mut seen = HashSet::new();
    for line in actual.lines() {
        assert!(seen.insert(line), "row written twice: {line}");
    }
}

/// Each user's event ids in the order of `lines` (JSON objects with
/// `user_id` and `event_id`: events, or a raw sink's copy of them), to
/// check per-key order.
pub fn per_user_order(lines: &str) -> std::collections::HashMap<String, Vec<String>> {
    let mut order = std::collections::HashMap::<String, Vec<String>>::new();
    for line in lines.lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        order
            .entry(row["user_id"].as_str().unwrap().to_string())
            .or_default()
            .push(row["event_id"].as_str().unwrap().to_string());
    }
    order
}
