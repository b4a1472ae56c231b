//! `kflow plan`: the compiled operator DAG as text or Graphviz dot.

use std::fmt::Write as _;

use kflow_jobs::duration::format_duration;
use kflow_jobs::{
    AggregateFunction, AggregatePlan, ConnectorPlan, JobPlan, KinesisReader, NodeKind, Port,
    SinkPlan, StreamRef, WindowKind,
};

fn stream_name(plan: &JobPlan, s: &StreamRef) -> String {
    let name = &plan.node(s.node).name;
    match s.port {
        Port::Main => name.clone(),
        Port::Late => format!("{name}.late"),
        Port::Errors => format!("{name}.errors"),
    }
}

fn aggregate_text(plan: &JobPlan, a: &AggregatePlan) -> String {
    let field = a
        .field
        .map(|f| plan.fields[f.index()].dotted.clone())
        .unwrap_or_default();
    let by =
        a.by.map(|f| plan.fields[f.index()].dotted.clone())
            .unwrap_or_default();
    let call = match a.function {
        AggregateFunction::Count => "count()".to_string(),
        AggregateFunction::Sum => format!("sum({field})"),
        AggregateFunction::Min => format!("min({field})"),
        AggregateFunction::Max => format!("max({field})"),
        AggregateFunction::Avg => format!("avg({field})"),
        AggregateFunction::CountDistinct => format!("count_distinct({field})"),
        AggregateFunction::Percentile(q) => format!("percentile({field}, {q})"),
        AggregateFunction::Variance => format!("variance({field})"),
        AggregateFunction::Stddev => format!("stddev({field})"),
        AggregateFunction::CountDistinctApprox => format!("count_distinct_approx({field})"),
        AggregateFunction::MaxBy => format!("max_by({by}, {field})"),
        AggregateFunction::MinBy => format!("min_by({by}, {field})"),
        AggregateFunction::First => format!("first({field})"),
        AggregateFunction::Last => format!("last({field})"),
        AggregateFunction::TopK(k) => format!("top_k({field}, {k})"),
    };
    format!("{} = {call}", a.name)
}

fn describe(plan: &JobPlan, kind: &NodeKind) -> (&'static str, Vec<String>) {
    let fields = |ids: &[kflow_jobs::FieldId]| {
        ids.iter()
            .map(|f| plan.fields[f.index()].dotted.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match kind {
        NodeKind::Source(s) => {
            let mut lines = vec![match &s.connector {
                ConnectorPlan::File(f) => {
                    format!(
                        "file {}{}",
                        f.path.display(),
                        if f.follow { " (follow)" } else { "" }
                    )
                }
                ConnectorPlan::Kinesis(k) => match &k.reader {
                    KinesisReader::Polling => format!("kinesis stream {}", k.stream),
                    KinesisReader::Efo { consumer_name } => format!(
                        "kinesis stream {} (enhanced fan-out, consumer `{}`)",
                        k.stream,
                        consumer_name.as_deref().unwrap_or(&plan.name)
                    ),
                },
            }];
            lines.push(match s.event_time {
                Some(f) => format!(
                    "event time `{}`, watermark lag {}",
                    plan.fields[f.index()].dotted,
                    format_duration(s.max_out_of_orderness_ms)
                ),
                None => "event time = arrival time".to_string(),
            });
            lines.push(format!("decodes [{}]", fields(&s.projection)));
            if let Some(d) = &s.dedup {
                lines.push(format!(
                    "dedup on `{}` within {}",
                    plan.fields[d.field.index()].dotted,
                    format_duration(d.within_ms)
                ));
            }
            ("source", lines)
        }
        NodeKind::Filter(f) => ("filter", vec![format!("where {}", f.text)]),
        NodeKind::Window(w) => {
            let shape = match w.kind {
                WindowKind::Tumbling { size_ms } => {
                    format!("tumbling {}", format_duration(size_ms))
                }
                WindowKind::Sliding { size_ms, slide_ms } => format!(
                    "sliding {} every {} ({} panes of {})",
                    format_duration(size_ms),
                    format_duration(slide_ms),
                    size_ms / slide_ms.max(1),
                    format_duration(slide_ms)
                ),
                WindowKind::Session {
                    gap_ms,
                    max_duration_ms,
                } => match max_duration_ms {
                    Some(max) => format!(
                        "session, gap {}, cut at every {} since the epoch",
                        format_duration(gap_ms),
                        format_duration(max)
                    ),
                    None => format!("session, gap {}", format_duration(gap_ms)),
                },
            };
            let key = if w.key.is_empty() {
                "no key (one group)".to_string()
            } else {
                format!("key [{}]", fields(&w.key))
            };
            let mut lines = vec![format!(
                "{shape}, {key}, allowed lateness {}",
                format_duration(w.allowed_lateness_ms)
            )];
            lines.extend(w.aggregates.iter().map(|a| aggregate_text(plan, a)));
            ("window", lines)
        }
        NodeKind::Sink(s) => (
            "sink",
            vec![match s {
                SinkPlan::Stdout => "stdout".to_string(),
                SinkPlan::File { path } => format!("file {}", path.display()),
                SinkPlan::Kinesis { stream, .. } => format!("kinesis stream {stream}"),
                SinkPlan::S3 { path, gzip } => {
                    format!("s3 {path}{}", if *gzip { " (gzip)" } else { "" })
                }
            }],
        ),
    }
}

/// The DAG as indented text, nodes in topological order.
pub fn text(plan: &JobPlan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "job {}", plan.name);
    let _ = writeln!(out, "  state dir   {}", plan.state_dir.display());
    let _ = writeln!(
        out,
        "  checkpoints every {}",
        format_duration(plan.checkpoint_interval.as_millis() as i64)
    );
    for node in &plan.nodes {
        let (kind, lines) = describe(plan, &node.kind);
        let inputs: Vec<String> = node.inputs.iter().map(|s| stream_name(plan, s)).collect();
        let from = if inputs.is_empty() {
            String::new()
        } else {
            format!(" <- {}", inputs.join(" + "))
        };
        let _ = writeln!(out, "\n{kind} {}{from}", node.name);
        for line in lines {
            let _ = writeln!(out, "    {line}");
        }
    }
    out
}

/// The DAG in Graphviz dot.
pub fn dot(plan: &JobPlan) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "digraph {:?} {{\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];",
        plan.name
    );
    for (i, node) in plan.nodes.iter().enumerate() {
        let (kind, lines) = describe(plan, &node.kind);
        let shape = match kind {
            "source" => "cylinder",
            "filter" => "diamond",
            "window" => "box3d",
            _ => "note",
        };
        let label = format!("{kind} {}\n{}", node.name, lines.join("\n"));
        let _ = writeln!(out, "  n{i} [shape={shape}, label={label:?}];");
    }
    for (i, node) in plan.nodes.iter().enumerate() {
        for input in &node.inputs {
            let style = match input.port {
                Port::Main => String::new(),
                Port::Late => " [style=dashed, label=\"late\"]".to_string(),
                Port::Errors => " [style=dotted, label=\"errors\"]".to_string(),
            };
            let _ = writeln!(out, "  n{} -> n{i}{style};", input.node.0);
        }
    }
    out.push_str("}\n");
    out
}
