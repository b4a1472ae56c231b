//! What a checkpoint remembers about the job that wrote it, and whether the
//! current job file can resume from it.
//!
//! Sources and windows are *stateful*: their checkpointed positions and
//! partials only make sense for the same definition, so changing one (a
//! window's key, size, lateness or aggregates; a source's file or time
//! settings) refuses to resume unless the user asks to start over; the
//! one stateful change carried over is aggregates appended to a window's
//! list (the stored partials get empty accumulators for them). Filters
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
    /// Aggregates were appended to a window's list, the rest unchanged:
    /// its stored partials are extended with empty accumulators, so the
    /// new aggregates start empty on the windows open at the restart.
    Extended {
        /// The definition in the checkpoint.
        was: String,
        /// The definition now.
        now: String,
        /// The appended aggregates, as the description writes them.
        added: String,
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
            Verdict::Changed { .. } | Verdict::Removed { .. } | Verdict::Extended { .. } => {
                "compatible, will log"
            }
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
            Verdict::Extended { added, .. } => Some(format!(
                "{node}: aggregates appended ({added}): they start empty on the windows open now"
            )),
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
                (Some(now), true) if node.starts_with("window ") => {
                    match appended_aggregates(was, now) {
                        Some(added) => Verdict::Extended {
                            was: was.clone(),
                            now: now.clone(),
                            added,
                        },
                        None => Verdict::Incompatible {
                            was: was.clone(),
                            now: Some(now.clone()),
                        },
                    }
                }
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

/// What a window's description ([`describe`]) appends to its aggregates,
/// if that is the only change: the same key, kind and lateness, and the
/// old aggregate list a prefix of the new one.
fn appended_aggregates(was: &str, now: &str) -> Option<String> {
    const AGGREGATES: &str = ", aggregates [";
    let (was_head, was_list) = was.split_once(AGGREGATES)?;
    let (now_head, now_list) = now.split_once(AGGREGATES)?;
    if was_head != now_head {
        return None;
    }
    let was_list = was_list.strip_suffix(']')?;
    let now_list = now_list.strip_suffix(']')?;
    let added = now_list.strip_prefix(was_list)?.strip_prefix(", ")?;
    Some(added.to_string())
}

/// How the current job differs from the checkpointed one.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Changes that make the checkpoint unusable.
    pub incompatible: Vec<String>,
    /// Changes that are fine, said for the record.
    pub compatible: Vec<String>,
    /// Windows (by name) whose stored partials must be extended with
    /// empty accumulators for appended aggregates before they run.
    pub extended: Vec<String>,
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
            Verdict::Extended { .. } => {
                if let Some(window) = v.node.strip_prefix("window ") {
                    changes.extended.push(window.to_string());
                }
                changes.compatible.push(text);
            }
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

    #[test]
    fn aggregates_appended_to_a_window_carry_over_and_other_changes_do_not() {
        let was = "key [user_id], Tumbling(60000), allowed lateness 0s, aggregates [n=Count(), s=Sum(amount)]";
        let appended = was.replace("s=Sum(amount)]", "s=Sum(amount), m=Max(amount)]");
        let c = compare(
            &map(&[("window w", was)]),
            &BTreeMap::new(),
            &map(&[("window w", &appended)]),
            &BTreeMap::new(),
        );
        assert!(c.incompatible.is_empty(), "{c:?}");
        assert_eq!(c.extended, vec!["w"]);
        assert_eq!(
            c.compatible,
            vec!["window w: aggregates appended (m=Max(amount)): they start empty on the windows open now"]
        );
        for now in [
            // Inserted before an existing one, removed, renamed, another key.
            was.replace("[n=Count()", "[m=Max(amount), n=Count()"),
            was.replace(", s=Sum(amount)", ""),
            was.replace("s=Sum", "t=Sum"),
            appended.replace("[user_id]", "[page]"),
        ] {
            let c = compare(
                &map(&[("window w", was)]),
                &BTreeMap::new(),
                &map(&[("window w", &now)]),
                &BTreeMap::new(),
            );
            assert_eq!(c.incompatible.len(), 1, "{now}");
            assert!(c.extended.is_empty());
        }
    }
}
