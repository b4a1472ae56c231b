//! Reading a job file into [`JobSpec`], collecting every error.
//!
//! serde stops at the first error of a document, but a user wants to see
//! all of them. So the file is read in pieces: first a skeleton (which
//! sections and node names exist, and where), then each node on its own,
//! by deserializing the whole text again with a seed that skips to that one
//! node. Errors in one node then do not hide errors in another, and every
//! span stays a byte offset in the file. Job files are small; reading them
//! once per node costs microseconds.
//!
//! Sources and sinks are tagged by `type`. serde's internally tagged enums
//! buffer the table and lose spans, so `type` is read first (with a probe
//! that ignores the other keys) and the node is then read as that type.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Range;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

use super::skeleton::{check_is_table, NodeRef, Skeleton};
use super::{
    DedupSpec, EventTimeSpec, FileSinkSpec, FileSourceSpec, FilterSpec, JobSection, JobSpec,
    KinesisSinkSpec, KinesisSourceSpec, Named, RecordSpec, S3SinkSpec, SinkSpec, SourceSpec,
    StdoutSinkSpec, WatermarkSpec, WindowSpec,
};
use crate::diagnostic::Diagnostic;

/// The four sections holding named nodes, in the order they are listed in
/// messages.
pub(crate) const SECTIONS: [&str; 4] = ["sources", "filters", "windows", "sinks"];

/// What [`read`] found.
#[derive(Debug)]
pub(crate) struct SpecRead {
    /// The nodes that could be read.
    pub spec: JobSpec,
    /// Nodes that exist but could not be read (an error was reported for
    /// each): section, name and name span. Later checks treat them as
    /// present, so that they report no follow-up errors about them.
    pub unreadable: Vec<(&'static str, String, Range<usize>)>,
    /// Every problem found.
    pub diagnostics: Vec<Diagnostic>,
    /// The file is not valid TOML: nothing else could be checked.
    pub fatal: bool,
}

/// Reads a job file's text, collecting every error.
pub(crate) fn read(text: &str) -> SpecRead {
    let mut out = SpecRead {
        spec: JobSpec {
            job: None,
            sources: Vec::new(),
            filters: Vec::new(),
            windows: Vec::new(),
            sinks: Vec::new(),
        },
        unreadable: Vec::new(),
        diagnostics: Vec::new(),
        fatal: false,
    };

    // A syntax error makes the document unreadable as a whole.
    if let Err(error) = toml::from_str::<IgnoredAny>(text) {
        out.diagnostics.push(Diagnostic::new(
            error.span().unwrap_or(0..0),
            format!("toml syntax error: {}", toml_message(error.message())),
        ));
        out.fatal = true;
        return out;
    }

    let skeleton = match Skeleton::deserialize(toml::Deserializer::new(text)) {
        Ok(skeleton) => skeleton,
        Err(error) => {
            out.diagnostics.push(from_toml(&error, 0..0, 0..0));
            out.fatal = true;
            return out;
        }
    };
    out.diagnostics.extend(skeleton.diagnostics);

    match skeleton.job {
        None => out.diagnostics.push(Diagnostic::new(
            0..0,
            "missing table `[job]` (it needs at least `name`)",
        )),
        Some(job_span) => match read_one::<Spanned<JobSection>>(text, "job", None) {
            Ok(Some(job)) => out.spec.job = Some(job),
            Ok(None) => {}
            Err(error) => out
                .diagnostics
                .push(from_toml(&error, job_span.clone(), job_span)),
        },
    }

    for node in skeleton.nodes {
        let name = node.name.get_ref().clone();
        let name_span = node.name.span();
        if let Err(diagnostic) = check_is_table(text, &node) {
            out.diagnostics.push(diagnostic);
            out.unreadable.push((node.section, name, name_span));
            continue;
        }
        let result = match node.section {
            "sources" => read_source(text, &node).map(|spec| {
                out.spec.sources.push(Named {
                    name: node.name.clone(),
                    spec,
                })
            }),
            "filters" => read_plain::<FilterSpec>(text, &node).map(|spec| {
                out.spec.filters.push(Named {
                    name: node.name.clone(),
                    spec,
                })
            }),
            "windows" => read_plain::<WindowSpec>(text, &node).map(|spec| {
                out.spec.windows.push(Named {
                    name: node.name.clone(),
                    spec,
                })
            }),
            _ => read_sink(text, &node).map(|spec| {
                out.spec.sinks.push(Named {
                    name: node.name.clone(),
                    spec,
                })
            }),
        };
        if let Err(diagnostic) = result {
            out.diagnostics.push(diagnostic);
            out.unreadable.push((node.section, name, name_span));
        }
    }
    out
}

/// Deserializes `[section]` (when `name` is `None`) or `[section.name]`
/// from the whole document, skipping everything else.
pub(crate) fn read_one<T: DeserializeOwned>(
    text: &str,
    section: &str,
    name: Option<&str>,
) -> Result<Option<T>, toml::de::Error> {
    PathSeed::<T> {
        first: section,
        second: name,
        marker: PhantomData,
    }
    .deserialize(toml::Deserializer::new(text))
}

/// Walks to `first` (then `second`) in a table and deserializes a `T` there.
struct PathSeed<'a, T> {
    first: &'a str,
    second: Option<&'a str>,
    marker: PhantomData<T>,
}

impl<'de, T: DeserializeOwned> DeserializeSeed<'de> for PathSeed<'_, T> {
    type Value = Option<T>;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Option<T>, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, T: DeserializeOwned> Visitor<'de> for PathSeed<'_, T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a table")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<T>, A::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<String>()? {
            if key != self.first || found.is_some() {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            found = match self.second {
                None => Some(map.next_value::<T>()?),
                Some(second) => map.next_value_seed(PathSeed::<T> {
                    first: second,
                    second: None,
                    marker: PhantomData,
                })?,
            };
        }
        Ok(found)
    }
}

/// Reads a node whose type has no `type` tag.
fn read_plain<T: DeserializeOwned>(text: &str, node: &NodeRef) -> Result<Spanned<T>, Diagnostic> {
    match read_one::<Spanned<T>>(text, node.section, Some(node.name.get_ref())) {
        Ok(Some(spec)) => Ok(spec),
        Ok(None) => Err(missing_node(node)),
        Err(error) => Err(from_toml(&error, node.span.clone(), node.name.span())),
    }
}

/// Should not happen: the skeleton saw the node. Said rather than panicked.
pub(crate) fn missing_node(node: &NodeRef) -> Diagnostic {
    Diagnostic::new(
        node.name.span(),
        format!("could not read `{}` (internal error)", node.name.get_ref()),
    )
}

/// Reads a node's `type` (ignoring its other keys).
fn read_type(text: &str, node: &NodeRef) -> Result<Option<Spanned<String>>, Diagnostic> {
    #[derive(Deserialize)]
    struct TypeProbe {
        #[serde(rename = "type")]
        kind: Option<Spanned<String>>,
    }
    match read_one::<TypeProbe>(text, node.section, Some(node.name.get_ref())) {
        Ok(Some(probe)) => Ok(probe.kind),
        Ok(None) => Err(missing_node(node)),
        Err(error) => Err(from_toml(&error, node.span.clone(), node.name.span())),
    }
}

/// The `type` of a source or sink, checked against `types`.
fn checked_type(
    text: &str,
    node: &NodeRef,
    what: &str,
    types: &[&str],
) -> Result<String, Diagnostic> {
    let expected = types
        .iter()
        .map(|t| format!("`{t}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let Some(kind) = read_type(text, node)? else {
        return Err(Diagnostic::new(
            node.name.span(),
            format!("missing key `type`: the {what} type, one of {expected}"),
        ));
    };
    if types.contains(&kind.get_ref().as_str()) {
        Ok(kind.into_inner())
    } else {
        Err(Diagnostic::new(
            kind.span(),
            format!(
                "unknown {what} type `{}`, expected one of {expected}",
                kind.get_ref()
            ),
        ))
    }
}

fn read_source(text: &str, node: &NodeRef) -> Result<Spanned<SourceSpec>, Diagnostic> {
    let kind = checked_type(text, node, "source", &["file", "kinesis"])?;
    if kind == "file" {
        let raw = read_plain::<FileSourceRaw>(text, node)?;
        let span = raw.span();
        let raw = raw.into_inner();
        Ok(Spanned::new(
            span,
            SourceSpec::File(FileSourceSpec {
                path: raw.path,
                follow: raw.follow,
                record: RecordSpec {
                    format: raw.format,
                    event_time: raw.event_time,
                    watermark: raw.watermark,
                    dedup: raw.dedup,
                },
            }),
        ))
    } else {
        let raw = read_plain::<KinesisSourceRaw>(text, node)?;
        let span = raw.span();
        let raw = raw.into_inner();
        Ok(Spanned::new(
            span,
            SourceSpec::Kinesis(KinesisSourceSpec {
                stream: raw.stream,
                stream_arn: raw.stream_arn,
                region: raw.region,
                endpoint: raw.endpoint,
                start_at: raw.start_at,
                stop_at: raw.stop_at,
                on_expired: raw.on_expired,
                reader: raw.reader,
                consumer_name: raw.consumer_name,
                record: RecordSpec {
                    format: raw.format,
                    event_time: raw.event_time,
                    watermark: raw.watermark,
                    dedup: raw.dedup,
                },
            }),
        ))
    }
}

fn read_sink(text: &str, node: &NodeRef) -> Result<Spanned<SinkSpec>, Diagnostic> {
    let kind = checked_type(text, node, "sink", &["file", "stdout", "kinesis", "s3"])?;
    Ok(match kind.as_str() {
        "file" => {
            let spec = read_plain::<FileSinkSpec>(text, node)?;
            let span = spec.span();
            Spanned::new(span, SinkSpec::File(spec.into_inner()))
        }
        "stdout" => {
            let spec = read_plain::<StdoutSinkSpec>(text, node)?;
            let span = spec.span();
            Spanned::new(span, SinkSpec::Stdout(spec.into_inner()))
        }
        "s3" => {
            let spec = read_plain::<S3SinkSpec>(text, node)?;
            let span = spec.span();
            Spanned::new(span, SinkSpec::S3(spec.into_inner()))
        }
        _ => {
            let spec = read_plain::<KinesisSinkSpec>(text, node)?;
            let span = spec.span();
            Spanned::new(span, SinkSpec::Kinesis(spec.into_inner()))
        }
    })
}

/// `[sources.NAME]` with `type = "file"`, as serde sees it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSourceRaw {
    #[serde(rename = "type")]
    _kind: IgnoredAny,
    path: Spanned<String>,
    follow: Option<Spanned<bool>>,
    format: Option<Spanned<String>>,
    event_time: Option<Spanned<EventTimeSpec>>,
    watermark: Option<Spanned<WatermarkSpec>>,
    dedup: Option<Spanned<DedupSpec>>,
}

/// `[sources.NAME]` with `type = "kinesis"`, as serde sees it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KinesisSourceRaw {
    #[serde(rename = "type")]
    _kind: IgnoredAny,
    stream: Option<Spanned<String>>,
    stream_arn: Option<Spanned<String>>,
    region: Option<Spanned<String>>,
    endpoint: Option<Spanned<String>>,
    start_at: Option<Spanned<String>>,
    stop_at: Option<Spanned<String>>,
    on_expired: Option<Spanned<String>>,
    reader: Option<Spanned<String>>,
    consumer_name: Option<Spanned<String>>,
    format: Option<Spanned<String>>,
    event_time: Option<Spanned<EventTimeSpec>>,
    watermark: Option<Spanned<WatermarkSpec>>,
    dedup: Option<Spanned<DedupSpec>>,
}

/// A diagnostic from a serde/TOML error. An error about a node's whole
/// table (a missing key) points at the node's name instead, which is
/// shorter and says which node.
pub(crate) fn from_toml(
    error: &toml::de::Error,
    node_span: Range<usize>,
    name_span: Range<usize>,
) -> Diagnostic {
    let span = match error.span() {
        Some(span) if span == node_span => name_span,
        Some(span) => span,
        None => name_span,
    };
    Diagnostic::new(span, toml_message(error.message()))
}

/// serde's and toml's wording, adjusted to how job files are talked about:
/// keys rather than fields, tables rather than Rust struct names, one line.
pub(crate) fn toml_message(message: &str) -> String {
    let mut message = message
        .trim()
        .replace("unknown field", "unknown key")
        .replace("missing field", "missing key")
        .replace('\n', ", ");
    // `expected struct FooRaw` names a Rust type: say what the user sees.
    while let Some(at) = message.find("expected struct ") {
        let rest = &message[at + "expected struct ".len()..];
        let name_len = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let tail = rest[name_len..].to_string();
        message.truncate(at);
        message.push_str("expected a table");
        message.push_str(&tail);
    }
    message
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_serde_wording() {
        assert_eq!(
            toml_message("unknown field `folow`, expected one of `a`, `b`"),
            "unknown key `folow`, expected one of `a`, `b`"
        );
        assert_eq!(
            toml_message("invalid type: integer `5`, expected struct FileSourceRaw"),
            "invalid type: integer `5`, expected a table"
        );
        assert_eq!(
            toml_message("invalid string\nexpected `\"`, `'`"),
            "invalid string, expected `\"`, `'`"
        );
    }

    #[test]
    fn reads_every_node_and_reports_each_bad_one() {
        let text = r#"
[job]
name = "x"

[sources.a]
type = "file"
path = "a.jsonl"

[sources.b]
type = "kinesys"

[filters.f]
input = "a"
where = "x > 1"
unknown = 1

[sinks.s]
type = "stdout"
input = ["f", "a"]
"#;
        let read = read(text);
        assert!(!read.fatal, "{:?}", read.diagnostics);
        assert_eq!(read.spec.sources.len(), 1);
        assert_eq!(read.spec.sinks.len(), 1);
        let names: Vec<_> = read.unreadable.iter().map(|(_, n, _)| n.as_str()).collect();
        assert_eq!(names, ["b", "f"]);
        let messages: Vec<_> = read
            .diagnostics
            .iter()
            .map(|d| d.message.as_str())
            .collect();
        assert_eq!(
            messages,
            [
                "unknown source type `kinesys`, expected one of `file`, `kinesis`",
                "unknown key `unknown`, expected `input` or `where`",
            ]
        );
        assert_eq!(&text[read.diagnostics[0].span.clone()], "\"kinesys\"");
        assert_eq!(&text[read.diagnostics[1].span.clone()], "unknown");
    }
}
