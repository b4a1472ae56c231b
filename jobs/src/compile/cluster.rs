//! Compiling `[job.cluster]`: the lease table, key groups, shuffle stream
//! and failover timeout of a job run on several processes, checked against
//! the rest of the job (a cluster keeps its state and positions in the
//! checkpoint store and reads Kinesis sources only).

use std::time::Duration;

use super::graph::{Graph, Section};
use super::Ctx;
use crate::plan::ClusterPlan;
use crate::spec::{JobSpec, SourceSpec, Spanned};

const DEFAULT_KEY_GROUPS: u32 = 64;
/// Flink's largest max-parallelism; more groups only cost lease writes.
const MAX_KEY_GROUPS: i64 = 32_768;
const DEFAULT_SHUFFLE_SHARDS: u32 = 4;
const DEFAULT_FAILOVER: Duration = Duration::from_secs(10);
/// Heartbeats come every third of the timeout: below a second they would
/// cost more lease writes than they save.
const MIN_FAILOVER: Duration = Duration::from_secs(1);

/// Compiles `[job.cluster]`, if the job has one.
pub(crate) fn compile_cluster(ctx: &mut Ctx<'_>, spec: &JobSpec) -> Option<ClusterPlan> {
    let job = spec.job.as_ref()?.get_ref();
    let section = job.cluster.as_ref()?;
    let cluster = section.get_ref();
    let leases_table = table_name(ctx, &cluster.leases);
    let key_groups = match &cluster.key_groups {
        None => DEFAULT_KEY_GROUPS,
        Some(n) if (1..=MAX_KEY_GROUPS).contains(n.get_ref()) => *n.get_ref() as u32,
        Some(n) => {
            ctx.error(
                n.span(),
                format!("`key_groups` must be from 1 to {MAX_KEY_GROUPS}"),
            );
            DEFAULT_KEY_GROUPS
        }
    };
    let shuffle_shards = match &cluster.shuffle_shards {
        None => DEFAULT_SHUFFLE_SHARDS.min(key_groups),
        Some(n) if (1..=i64::from(key_groups)).contains(n.get_ref()) => *n.get_ref() as u32,
        Some(n) => {
            ctx.error(
                n.span(),
                format!("`shuffle_shards` must be from 1 to `key_groups` ({key_groups})"),
            );
            DEFAULT_SHUFFLE_SHARDS.min(key_groups)
        }
    };
    let failover_timeout = match &cluster.failover_timeout {
        None => DEFAULT_FAILOVER,
        Some(d) => match ctx.duration(d) {
            Some(d) if d >= MIN_FAILOVER => d,
            Some(_) => {
                ctx.error(d.span(), "`failover_timeout` must be at least 1s");
                DEFAULT_FAILOVER
            }
            None => DEFAULT_FAILOVER,
        },
    };
    let shuffle_stream = cluster
        .shuffle_stream
        .as_ref()
        .and_then(|s| ctx.non_empty(s, "`shuffle_stream`"));
    if shuffle_stream.is_none() && cluster.shuffle_stream.is_none() && !spec.windows.is_empty() {
        ctx.error(
            section.span(),
            "a cluster job with windows needs `shuffle_stream`: the Kinesis stream that \
             carries records from the workers reading shards to the workers owning key groups",
        );
    }
    if job.checkpoint_store.is_none() {
        ctx.error(
            section.span(),
            "a cluster job needs `checkpoint_store` in [job]: workers keep their state and \
             positions there, so that another worker can take over",
        );
    }
    for source in &spec.sources {
        if let SourceSpec::File(_) = source.spec.get_ref() {
            ctx.error(
                source.name.span(),
                format!(
                    "source `{}` is a file: a cluster job reads Kinesis sources only \
                     (their shards are what workers lease)",
                    source.name.get_ref()
                ),
            );
        }
    }
    Some(ClusterPlan {
        leases_table: leases_table?,
        key_groups,
        shuffle_stream,
        shuffle_shards,
        failover_timeout,
        endpoint: cluster.endpoint.as_ref().map(|e| e.get_ref().clone()),
        region: cluster.region.as_ref().map(|r| r.get_ref().clone()),
    })
}

/// What a cluster cannot run yet: a second source (shard leases name
/// shards, not streams), or a window over a window's rows (its key groups
/// would need a second shuffle). Reported at the offending input.
pub(crate) fn check_graph(ctx: &mut Ctx<'_>, graph: &Graph) {
    let mut sources = graph
        .decls
        .iter()
        .filter(|d| matches!(d.section, Section::Source));
    if let Some(second) = sources.nth(1) {
        ctx.error(
            second.name_span.clone(),
            "a cluster job reads one source: shard leases name the shards of one stream",
        );
    }
    for (decl, inputs) in graph.decls.iter().zip(&graph.inputs) {
        if !matches!(decl.section, Section::Window) {
            continue;
        }
        for input in inputs {
            if reaches_window(graph, input.decl, graph.decls.len()) {
                ctx.error(
                    input.span.clone(),
                    format!(
                        "window `{}` reads a window's rows: in a cluster job, windows read \
                         sources (through filters) only; their rows are keyed by other key \
                         groups, which would need a second shuffle",
                        decl.name
                    ),
                );
            }
        }
    }
}

/// Whether node `decl` is a window or reads one through filters, looking
/// at most `depth` nodes up (a cycle, reported elsewhere, ends the search).
fn reaches_window(graph: &Graph, decl: usize, depth: usize) -> bool {
    match graph.decls[decl].section {
        Section::Window => true,
        Section::Filter if depth > 0 => graph.inputs[decl]
            .iter()
            .any(|input| reaches_window(graph, input.decl, depth - 1)),
        _ => false,
    }
}

/// The table of `dynamodb://TABLE`, checked against DynamoDB's naming rules.
fn table_name(ctx: &mut Ctx<'_>, url: &Spanned<String>) -> Option<String> {
    let table = url.get_ref().strip_prefix("dynamodb://").unwrap_or("");
    let valid = (3..=255).contains(&table.len())
        && table
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if valid {
        Some(table.to_string())
    } else {
        ctx.error(
            url.span(),
            format!(
                "invalid `leases` `{}`: write dynamodb://TABLE (3 to 255 of a-z, A-Z, 0-9, `_`, `-`, `.`)",
                url.get_ref()
            ),
        );
        None
    }
}
