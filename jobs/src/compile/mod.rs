//! From a [`JobSpec`](crate::spec::JobSpec) to a [`JobPlan`]: names and
//! inputs resolved into a DAG, durations typed, expressions compiled,
//! fields interned and each source's projection computed.
//!
//! Every check runs even after earlier ones failed, and each failure is
//! collected as a [`Diagnostic`] with its span, so a user fixes a job file
//! in one round. A plan is only assembled when nothing failed.

mod aggregate;
mod cluster;
mod fields;
mod graph;
mod nodes;
mod projection;
mod window;

pub(crate) use nodes::rfc3339_millis;

use std::collections::HashSet;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::diagnostic::{sort_and_dedup, Diagnostic};
use crate::duration::parse_duration;
use crate::expr;
use crate::plan::{FilterPlan, JobPlan, NodeId, NodeKind, NodePlan, Port, StreamRef};
use crate::spec::{self, Spanned};
use crate::toml_string::StringOffsets;
use crate::value::FieldId;

use fields::{check_path, FieldTable};
use graph::{Graph, Section};
use window::Schema;

/// Compiles a job file's text. `job_path` is used to resolve relative paths.
pub(crate) fn compile(text: &str, job_path: &Path) -> Result<JobPlan, Vec<Diagnostic>> {
    let read = spec::read(text);
    let mut ctx = Ctx {
        text,
        base_dir: job_path.parent().map(Path::to_path_buf).unwrap_or_default(),
        diagnostics: read.diagnostics.clone(),
        fields: FieldTable::default(),
    };
    if read.fatal {
        return Err(finish(ctx.diagnostics));
    }
    let job = nodes::compile_job(&mut ctx, read.spec.job.as_ref());
    let cluster = cluster::compile_cluster(&mut ctx, &read.spec);
    let graph = graph::build(&read, text, &mut ctx.diagnostics);
    if cluster.is_some() {
        cluster::check_graph(&mut ctx, &graph);
    }
    let kinds = compile_nodes(&mut ctx, &read.spec, &graph);
    if !ctx.diagnostics.is_empty() {
        return Err(finish(ctx.diagnostics));
    }

    // Nothing failed: every node compiled and the graph is acyclic.
    let mut node_ids = vec![NodeId(0); graph.decls.len()];
    for (position, &decl) in graph.order.iter().enumerate() {
        node_ids[decl] = NodeId(u32::try_from(position).unwrap_or(u32::MAX));
    }
    let mut kinds: Vec<Option<NodeKind>> = kinds;
    let mut nodes = Vec::with_capacity(graph.order.len());
    for &decl in &graph.order {
        let Some(kind) = kinds[decl].take() else {
            return Err(vec![Diagnostic::new(
                graph.decls[decl].name_span.clone(),
                "internal error: a node was not compiled",
            )]);
        };
        nodes.push(NodePlan {
            name: graph.decls[decl].name.clone(),
            inputs: graph.inputs[decl]
                .iter()
                .map(|input| StreamRef {
                    node: node_ids[input.decl],
                    port: input.port,
                })
                .collect(),
            kind,
        });
    }
    projection::fill(&mut nodes);
    Ok(JobPlan {
        name: job.name,
        job_path: job_path.to_path_buf(),
        state_dir: job.state_dir,
        dead_letter_path: job.dead_letter_path,
        checkpoint_interval: job.checkpoint_interval,
        state_memory_bytes: job.state_memory_bytes,
        metrics: job.metrics,
        checkpoint_store: job.checkpoint_store,
        retain_checkpoints: job.retain_checkpoints,
        cluster,
        fields: ctx.fields.into_paths(),
        nodes,
    })
}

fn finish(mut diagnostics: Vec<Diagnostic>) -> Vec<Diagnostic> {
    sort_and_dedup(&mut diagnostics);
    diagnostics
}

/// Compiles every node, in topological order where there is one (so each
/// node knows its input's schema), then the nodes on or behind cycles with
/// unknown inputs (to still report their own errors).
fn compile_nodes(ctx: &mut Ctx<'_>, spec: &spec::JobSpec, graph: &Graph) -> Vec<Option<NodeKind>> {
    let count = graph.decls.len();
    let mut kinds: Vec<Option<NodeKind>> = (0..count).map(|_| None).collect();
    let mut main_schema: Vec<Option<Schema>> = vec![None; count];
    let mut late_schema: Vec<Option<Schema>> = vec![None; count];

    let ordered: HashSet<usize> = graph.order.iter().copied().collect();
    let rest = (0..count).filter(|d| !ordered.contains(d));
    for decl_index in graph.order.iter().copied().chain(rest) {
        let decl = &graph.decls[decl_index];
        let Some(index) = decl.index else { continue };
        let input_schema = if graph.complete[decl_index] {
            let schemas: Option<Vec<Schema>> = graph.inputs[decl_index]
                .iter()
                .map(|input| match input.port {
                    Port::Main => main_schema[input.decl].clone(),
                    Port::Late => late_schema[input.decl].clone(),
                    Port::Errors => Some(Schema::Any),
                })
                .collect();
            schemas.map_or(Schema::Any, Schema::union)
        } else {
            Schema::Any
        };
        let (kind, output) = match decl.section {
            Section::Source => {
                let source = &spec.sources[index];
                let plan =
                    nodes::compile_source(ctx, decl.name_span.clone(), source.spec.get_ref());
                (plan.map(NodeKind::Source), Schema::Any)
            }
            Section::Filter => {
                let filter = spec.filters[index].spec.get_ref();
                let plan = compile_filter(ctx, &filter.condition, &input_schema);
                (plan.map(NodeKind::Filter), input_schema.clone())
            }
            Section::Window => {
                let window = spec.windows[index].spec.get_ref();
                let (plan, output) = window::compile_window(
                    ctx,
                    &decl.name,
                    decl.name_span.clone(),
                    window,
                    &input_schema,
                );
                late_schema[decl_index] = Some(input_schema.clone());
                (plan.map(NodeKind::Window), output)
            }
            Section::Sink => {
                let sink = spec.sinks[index].spec.get_ref();
                (
                    nodes::compile_sink(ctx, sink).map(NodeKind::Sink),
                    Schema::Any,
                )
            }
        };
        kinds[decl_index] = kind;
        main_schema[decl_index] = Some(output);
    }
    kinds
}

/// Compiles a filter's `where`, mapping expression positions into the file.
fn compile_filter(
    ctx: &mut Ctx<'_>,
    condition: &Spanned<String>,
    input: &Schema,
) -> Option<FilterPlan> {
    let offsets = ctx.string_offsets(condition);
    let text = condition.get_ref();
    let fields = &mut ctx.fields;
    let compiled = expr::compile(text, &mut |path| fields.intern(path));
    match compiled {
        Err(errors) => {
            for error in errors {
                ctx.error(offsets.file_span(error.span), error.message);
            }
            None
        }
        Ok(compiled) => {
            let mut ok = true;
            for field in &compiled.field_refs {
                if let Err(message) = input.column(&field.path) {
                    ctx.error(offsets.file_span(field.span.clone()), message);
                    ok = false;
                }
            }
            ok.then(|| FilterPlan {
                expr: compiled.expr,
                text: text.clone(),
            })
        }
    }
}

/// What every compile step shares: the text, where relative paths start,
/// the diagnostics so far and the field table.
pub(crate) struct Ctx<'a> {
    text: &'a str,
    base_dir: PathBuf,
    diagnostics: Vec<Diagnostic>,
    fields: FieldTable,
}

impl Ctx<'_> {
    fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic::new(span, message));
    }

    /// Maps positions inside a string value back into the file.
    fn string_offsets(&self, value: &Spanned<String>) -> StringOffsets {
        StringOffsets::new(self.text, value.span(), value.get_ref())
    }

    /// A duration value (zero allowed).
    fn duration(&mut self, value: &Spanned<String>) -> Option<Duration> {
        match parse_duration(value.get_ref()) {
            Ok(duration) => Some(duration),
            Err(message) => {
                self.error(value.span(), message);
                None
            }
        }
    }

    /// A duration value that must be more than zero.
    fn positive_duration(&mut self, value: &Spanned<String>, what: &str) -> Option<Duration> {
        let duration = self.duration(value)?;
        if duration.is_zero() {
            self.error(value.span(), format!("{what} must be more than 0"));
            return None;
        }
        Some(duration)
    }

    /// A path value, resolved against the job file's folder.
    fn path(&mut self, value: &Spanned<String>) -> Option<PathBuf> {
        if value.get_ref().is_empty() {
            self.error(value.span(), "empty path");
            return None;
        }
        Some(self.base_dir.join(value.get_ref()))
    }

    /// A string value that must not be empty.
    fn non_empty(&mut self, value: &Spanned<String>, what: &str) -> Option<String> {
        if value.get_ref().trim().is_empty() {
            self.error(value.span(), format!("{what} must not be empty"));
            return None;
        }
        Some(value.get_ref().clone())
    }

    /// An endpoint URL.
    fn endpoint(&mut self, value: &Spanned<String>) -> Option<String> {
        let url = value.get_ref();
        if url.starts_with("http://") || url.starts_with("https://") {
            Some(url.clone())
        } else {
            self.error(
                value.span(),
                "`endpoint` must be a URL starting with `http://` or `https://`",
            );
            None
        }
    }

    /// A field path written as a whole string value.
    fn field(&mut self, value: &Spanned<String>) -> Option<FieldId> {
        self.field_at(value.get_ref(), value.span())
    }

    /// A field path, reported at `span` if invalid.
    fn field_at(&mut self, path: &str, span: Range<usize>) -> Option<FieldId> {
        match check_path(path) {
            Ok(()) => Some(self.fields.intern(path)),
            Err(message) => {
                self.error(span, message);
                None
            }
        }
    }
}
