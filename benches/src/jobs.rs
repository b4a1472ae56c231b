//! The clickstream job that benchmarks, examples and end-to-end tests run,
//! as one builder: non-view events per user per window into a file. A test
//! or benchmark says what differs (source, window, aggregates, state) and
//! gets the job file's text.

use std::fmt::Write as _;

/// Where the clicks come from.
#[derive(Debug, Clone)]
pub enum ClickSource {
    /// A JSON-lines file (relative to the job file, or absolute).
    File {
        /// The file.
        path: String,
    },
    /// A Kinesis stream.
    Kinesis {
        /// Stream name.
        stream: String,
        /// Endpoint URL (an emulator on loopback).
        endpoint: String,
        /// More source lines: `start_at`, `stop_at`, `on_expired`.
        settings: String,
    },
}

/// A clickstream job: source `clicks` -> filter `checkouts` (no product
/// views) -> window `per_user` keyed by `user_id` -> file sink `result`.
#[derive(Debug, Clone)]
pub struct ClickJob {
    /// `[job] name`.
    pub name: String,
    /// `checkpoint_interval`, when not the default.
    pub checkpoint_interval: Option<String>,
    /// `state_dir`, when not the default.
    pub state_dir: Option<String>,
    /// `state_memory`, when not the default.
    pub state_memory: Option<String>,
    /// The source.
    pub source: ClickSource,
    /// `max_out_of_orderness` of the source's watermark.
    pub max_out_of_orderness: String,
    /// The window line: `tumbling = "1m"` or `sliding = { ... }`.
    pub window: String,
    /// The aggregates table's contents: `events = "count()", ...`.
    pub aggregates: String,
    /// The file sink's path.
    pub sink_path: String,
}

impl ClickJob {
    /// The usual job over `source`: 1-minute tumbling windows of count,
    /// revenue and top amount into `out/result.jsonl`, 5 s of disorder.
    pub fn new(name: &str, source: ClickSource) -> ClickJob {
        ClickJob {
            name: name.to_string(),
            checkpoint_interval: None,
            state_dir: None,
            state_memory: None,
            source,
            max_out_of_orderness: "5s".into(),
            window: "tumbling = \"1m\"".into(),
            aggregates: "events = \"count()\", revenue = \"sum(amount)\", top = \"max(amount)\""
                .into(),
            sink_path: "out/result.jsonl".into(),
        }
    }

    /// The `[job]` table and the source, without the filter, window and
    /// sink (for jobs that read the clicks otherwise).
    pub fn head(&self) -> String {
        let mut out = format!("[job]\nname = \"{}\"\n", self.name);
        for (key, value) in [
            ("checkpoint_interval", &self.checkpoint_interval),
            ("state_dir", &self.state_dir),
            ("state_memory", &self.state_memory),
        ] {
            if let Some(value) = value {
                let _ = writeln!(out, "{key} = \"{value}\"");
            }
        }
        out.push_str("\n[sources.clicks]\n");
        match &self.source {
            ClickSource::File { path } => {
                let _ = writeln!(out, "type = \"file\"\npath = \"{path}\"");
            }
            ClickSource::Kinesis {
                stream,
                endpoint,
                settings,
            } => {
                let _ = writeln!(
                    out,
                    "type = \"kinesis\"\nstream = \"{stream}\"\nendpoint = \"{endpoint}\"\n{settings}"
                );
            }
        }
        let _ = writeln!(
            out,
            "event_time = {{ field = \"ts\" }}\nwatermark = {{ max_out_of_orderness = \"{}\" }}",
            self.max_out_of_orderness
        );
        out
    }

    /// The filter, window and sink.
    pub fn windows(&self) -> String {
        format!(
            "\n[filters.checkouts]\ninput = \"clicks\"\nwhere = \"type != 'product_view'\"\n\
             \n[windows.per_user]\ninput = \"checkouts\"\nkey = [\"user_id\"]\n{}\n\
             aggregates = {{ {} }}\n\
             \n[sinks.result]\ninput = \"per_user\"\ntype = \"file\"\npath = \"{}\"\n",
            self.window, self.aggregates, self.sink_path
        )
    }

    /// The whole job file.
    pub fn toml(&self) -> String {
        self.head() + &self.windows()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_parses_as_toml_with_every_part() {
        let mut job = ClickJob::new(
            "t",
            ClickSource::File {
                path: "clicks.jsonl".into(),
            },
        );
        job.state_memory = Some("64MB".into());
        let text = job.toml();
        let value: toml::Table = text.parse().expect("valid TOML");
        assert_eq!(value["job"]["state_memory"].as_str(), Some("64MB"));
        assert_eq!(
            value["windows"]["per_user"]["tumbling"].as_str(),
            Some("1m")
        );
        assert_eq!(
            value["sinks"]["result"]["path"].as_str(),
            Some("out/result.jsonl")
        );
    }
}
