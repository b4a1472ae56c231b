//! Job file pieces the end-to-end tests share, on top of the clickstream
//! job builder of the benchmarks ([`kflow_benches::jobs::ClickJob`]).

use kflow_benches::jobs::{ClickJob, ClickSource};

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
    format!(
        "\n[sources.clicks]\ntype = \"kinesis\"\nstream = \"{stream}\"\nendpoint = \"{endpoint}\"\n\
         event_time = {{ field = \"ts\" }}\nwatermark = {{ max_out_of_orderness = \"20m\" }}\n{settings}\n"
    )
}
