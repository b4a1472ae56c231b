//! What a checkpoint remembers about the job that wrote it, and whether the
//! current job file can resume from it.
//!
//! Sources and windows are *stateful*: their checkpointed positions and
//! partials only make sense for the same definition, so changing one (a
//! window's key, size, lateness or aggregates; a source's file or time
//! settings) refuses to resume unless the user asks to start over. Filters
//! and sinks are *stateless*: changing them is allowed and reported.

use std::collections::BTreeMap;

use kflow_jobs::{
    ConnectorPlan, FieldId, JobPlan, NodeKind, SinkPlan, SourcePlan, StartAt, StopAt, WindowPlan,
};

use kflow_jobs::duration::format_duration;

/// Descriptions of the stateful and the stateless parts of `plan`, by
/// `kind name`.
pub fn describe(plan: &JobPlan) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let mut stateful = BTreeMap::new();
    let mut stateless = BTreeMap::new();
    for node in &plan.nodes {
        let inputs: Vec<String> = node
            .inputs
            .iter()
            .map(|s| plan.node(s.node).name.clone())
            .collect();
        match &node.kind {
            NodeKind::Source(s) => {
                stateful.insert(format!("source {}", node.name), source(plan, s));
            }
            NodeKind::Window(w) => {
                stateful.insert(format!("window {}", node.name), window(plan, w));
            }
            NodeKind::Filter(f) => {
                stateless.insert(
                    format!("filter {}", node.name),
                    format!("[{}] where {}", inputs.join(", "), f.text),
                );
            }
            NodeKind::Sink(s) => {
                let target = match s {
                    SinkPlan::Stdout => "stdout".to_string(),
                    SinkPlan::File { path } => format!("file {}", path.display()),
                    SinkPlan::Kinesis { stream, .. } => format!("kinesis {stream}"),
                    SinkPlan::S3 { path, .. } => format!("s3 {path}"),
                };
                stateless.insert(
                    format!("sink {}", node.name),
                    format!("[{}] {target}", inputs.join(", ")),
                );
            }
        }
    }
    (stateful, stateless)
}

fn field(plan: &JobPlan, f: FieldId) -> String {
    plan.fields[f.index()].dotted.clone()
}

/// A source's connector, time and dedup settings.
fn source(plan: &JobPlan, s: &SourcePlan) -> String {
    let connector = match &s.connector {
        ConnectorPlan::File(f) => format!("file {}", f.path.display()),
        ConnectorPlan::Kinesis(k) => format!(
            "kinesis {} start_at {} stop_at {}",
            k.stream,
            match k.start_at {
                StartAt::Latest => "latest".to_string(),
                StartAt::TrimHorizon => "trim_horizon".to_string(),
                StartAt::Timestamp(t) => t.to_string(),
            },
            match k.stop_at {
                None => "none".to_string(),
                Some(StopAt::Latest) => "latest".to_string(),
                Some(StopAt::Timestamp(t)) => t.to_string(),
            }
        ),
    };
    let time = s.event_time.map_or("arrival time".to_string(), |f| {
        format!("event time {}", field(plan, f))
    });
    let dedup = s
        .dedup
        .as_ref()
        .map(|d| {
            format!(
                ", dedup {} within {}",
                field(plan, d.field),
                format_duration(d.within_ms)
            )
        })
        .unwrap_or_default();
    format!(
        "{connector}, {time}, max out of orderness {}{dedup}",
        format_duration(s.max_out_of_orderness_ms)
    )
}

/// A window's key, kind, lateness and aggregates.
fn window(plan: &JobPlan, w: &WindowPlan) -> String {
    let aggregates: Vec<String> = w
        .aggregates
        .iter()
        .map(|a| {
            let by = a.by.map(|f| format!("{}, ", field(plan, f)));
            format!(
                "{}={:?}({}{})",
                a.name,
                a.function,
                by.unwrap_or_default(),
                a.field.map(|f| field(plan, f)).unwrap_or_default()
            )
        })
        .collect();
    format!(
        "key [{}], {:?}, allowed lateness {}, aggregates [{}]",
        w.key_names.join(", "),
        w.kind,
        format_duration(w.allowed_lateness_ms),
        aggregates.join(", ")
    )
}

/// What the checkpoint means for one part of the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Unchanged: its state (if any) resumes as it was.
    Same,
    /// New since the checkpoint: it starts empty.
    Added,
    /// A stateless part changed (a filter's condition, a sink's target):
    /// the run resumes and logs the change; records before the checkpoint
    /// are not reprocessed under the new definition.
    Changed {
        /// The definition in the checkpoint.
        was: String,
        /// The definition now.
        now: String,
    },
    /// A stateless part was removed: said, allowed.
    Removed {
        /// The definition in the checkpoint.
        was: String,
    },
    /// A stateful part changed: its checkpointed state does not fit the
    /// new definition, so `run` refuses to resume.
    Incompatible {
        /// The definition in the checkpoint.
        was: String,
        /// The definition now, or `None` when the part was removed.
        now: Option<String>,
    },
}

impl Verdict {
    /// The verdict's word for a report: `compatible`, `compatible, will
    /// log` or `incompatible`.
    pub fn word(&self) -> &'static str {
        match self {
            Verdict::Same | Verdict::Added => "compatible",
            Verdict::Changed { .. } | Verdict::Removed { .. } => "compatible, will log",
            Verdict::Incompatible { .. } => "incompatible",
        }
    }
}

/// One part of the job (`kind name`, as in [`describe`]) and its verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeVerdict {
    /// `source clicks`, `window per_user`, `filter f`, `sink out`.
    pub node: String,
    /// What the checkpoint means for it.
    pub verdict: Verdict,
}

impl NodeVerdict {
    /// The change in words, for the run's log and its refusal (`None`
    /// when unchanged).
    pub fn change(&self) -> Option<String> {
        let node = &self.node;
        match &self.verdict {
            Verdict::Same => None,
            Verdict::Added => Some(format!("{node} is new: it starts empty")),
            Verdict::Changed { was, now }
            | Verdict::Incompatible {
                was,
                now: Some(now),
            } => Some(format!("{node} changed: was `{was}`, now `{now}`")),
            Verdict::Removed { was } | Verdict::Incompatible { was, now: None } => {
                Some(format!("{node} was removed (it was: {was})"))
            }
        }
    }
}

/// Every part of the checkpointed job and of the current one, with its
/// verdict: checkpointed parts in name order (stateful first), then the
/// new ones.
pub fn verdicts(
    old_stateful: &BTreeMap<String, String>,
    old_stateless: &BTreeMap<String, String>,
    stateful: &BTreeMap<String, String>,
    stateless: &BTreeMap<String, String>,
) -> Vec<NodeVerdict> {
    let mut out = Vec::new();
    let mut added = Vec::new();
    for (old, new, has_state) in [
        (old_stateful, stateful, true),
        (old_stateless, stateless, false),
    ] {
        for (node, was) in old {
            let verdict = match (new.get(node), has_state) {
                (Some(now), _) if now == was => Verdict::Same,
                (now, true) => Verdict::Incompatible {
                    was: was.clone(),
                    now: now.cloned(),
                },
                (Some(now), false) => Verdict::Changed {
                    was: was.clone(),
                    now: now.clone(),
                },
                // A removed filter or sink keeps no state: said, allowed.
                (None, false) => Verdict::Removed { was: was.clone() },
            };
            out.push(NodeVerdict {
                node: node.clone(),
                verdict,
            });
        }
        for node in new.keys().filter(|n| !old.contains_key(*n)) {
            added.push(NodeVerdict {
                node: node.clone(),
                verdict: Verdict::Added,
            });
        }
    }
    out.extend(added);
    out
}

/// How the current job differs from the checkpointed one.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Changes that make the checkpoint unusable.
    pub incompatible: Vec<String>,
    /// Changes that are fine, said for the record.
    pub compatible: Vec<String>,
}

/// Compares the checkpointed descriptions with the current ones: the
/// changes of [`verdicts`], in words.
pub fn compare(
    old_stateful: &BTreeMap<String, String>,
    old_stateless: &BTreeMap<String, String>,
    stateful: &BTreeMap<String, String>,
    stateless: &BTreeMap<String, String>,
) -> Changes {
    let mut changes = Changes::default();
    for v in verdicts(old_stateful, old_stateless, stateful, stateless) {
        let Some(text) = v.change() else { continue };
        match v.verdict {
            Verdict::Incompatible { .. } => changes.incompatible.push(text),
            _ => changes.compatible.push(text),
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn stateful_changes_are_incompatible_and_stateless_ones_are_said() {
        let old = map(&[("window w", "tumbling 1m"), ("source s", "file a")]);
        let new = map(&[
            ("window w", "tumbling 5m"),
            ("source s", "file a"),
            ("window v", "x"),
        ]);
        let c = compare(
            &old,
            &map(&[("filter f", "a > 1")]),
            &new,
            &map(&[("filter f", "a > 2")]),
        );
        assert_eq!(
            c.incompatible,
            vec!["window w changed: was `tumbling 1m`, now `tumbling 5m`"]
        );
        assert_eq!(
            c.compatible,
            vec![
                "filter f changed: was `a > 1`, now `a > 2`",
                "window v is new: it starts empty"
            ]
        );
    }
}
