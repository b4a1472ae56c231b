//! Turning a [`JobPlan`] into tasks and channels.
//!
//! Every source is one task; every window is `parallelism` partition tasks;
//! every sink (and the dead-letter file) is one task. Sources and window
//! partitions are *emitters*: for each, the filter chains leading from it to
//! windows and sinks are walked once here and fused into its [`Router`].
//! Every consumer learns exactly which emitters feed it, so it knows when all
//! of them have ended and which watermarks to take the minimum of.
//!
//! [`build`] runs four named steps: number the emitters, open the channels,
//! build each emitter's router, then make the source, window and sink
//! tasks. This is the only place that knows every kind of task:
//! channels.rs opens the channels and fuses each emitter's router and
//! makes the sink tasks, tasks.rs makes source and shuffle tasks.

mod channels;
mod tasks;

use channels::Channels;
pub(crate) use tasks::kinesis_source;
use tasks::{shuffle_task, source_task};

use std::collections::BTreeMap;
use std::sync::Arc;

use kflow_jobs::{FieldId, JobPlan, NodeId, NodeKind, WindowKind, WindowPlan};
use kflow_state::StateStore;

use crate::cluster::Part;
use crate::dataflow::checkpoint::{restore_part, CheckpointCtx};
use crate::dataflow::message::InputId;
use crate::dataflow::metrics::Metrics;
use crate::dataflow::row::SlotMap;
use crate::error::EngineError;
use crate::operators::window::assign::Panes;
use crate::operators::window::{ResultEmitter, WindowTask, WindowTaskCtx};
use crate::runtime::meta::CheckpointMeta;
use crate::shuffle::source::{ShuffleSourceTask, SHUFFLE_TASK};
use crate::sinks::SinkTask;
use crate::sources::file::turns::Sequencer;
use crate::sources::SourceTask;

/// The checkpoint name of the dead-letter writer (not a valid node name).
pub const DEAD_LETTER: &str = "(dead-letter)";

/// Channel capacity, in batches. A window's work is bursty (a fire emits a
/// whole window's rows at once), so its queue holds ~130k records: enough
/// for the sources to keep decoding through a fire instead of taking turns
/// with it (see docs/performance.md).
const WINDOW_QUEUE: usize = 128;
pub(super) const SINK_QUEUE: usize = 64;

/// All tasks of a job, ready to be started.
pub struct Topology {
    /// Source tasks.
    pub sources: Vec<SourceTask>,
    /// Window partition tasks.
    pub windows: Vec<WindowTask>,
    /// Sink tasks, the dead-letter writer among them.
    pub sinks: Vec<SinkTask>,
    /// A key group's reader of the shuffle (cluster jobs).
    pub shuffle: Option<ShuffleSourceTask>,
}

impl Topology {
    /// The names of every task, as checkpoints know them.
    pub fn task_names(&self) -> Vec<String> {
        let sources = self.sources.iter().map(|s| s.name().to_string());
        let windows = self.windows.iter().map(|w| w.task_name().to_string());
        let sinks = self.sinks.iter().map(|s| s.name.clone());
        let shuffle = self.shuffle.iter().map(|_| SHUFFLE_TASK.to_string());
        sources.chain(shuffle).chain(windows).chain(sinks).collect()
    }
}

/// What every task is built with.
pub struct BuildCtx<'a> {
    /// The job.
    pub plan: &'a JobPlan,
    /// Its state.
    pub store: &'a Arc<StateStore>,
    /// Shared counters.
    pub metrics: &'a Arc<Metrics>,
    /// Partitions per window.
    pub parallelism: usize,
    /// Checkpoint coordination.
    pub checkpoints: &'a CheckpointCtx,
    /// The checkpoint to resume from, if any.
    pub restore: Option<&'a CheckpointMeta>,
    /// The part of a cluster job this process runs (`None`: the whole job).
    pub part: Option<&'a Part>,
    /// Threads decoding each bounded file source (1: its own thread).
    pub decode_threads: usize,
    /// Windows whose aggregates were appended since the checkpoint.
    pub extended: &'a [String],
}

/// Builds every task of the plan in `ctx`.
///
/// # Errors
/// I/O errors opening sink files, Kinesis sinks that cannot start, state
/// errors restoring dedup ids, positions in the checkpoint that do not
/// parse.
pub fn build(ctx: &BuildCtx<'_>) -> Result<Topology, EngineError> {
    // A key group is one partition of each window.
    let parallelism = match ctx.part {
        Some(_) => 1,
        None => ctx.parallelism.max(1),
    };
    let emitters = Emitters::number(ctx.plan, parallelism, ctx.part);
    let mut channels = Channels::open(ctx.plan, parallelism, ctx.part)?;
    let mut routers = BTreeMap::new();
    let mut late_outs = BTreeMap::new();
    for (&node, ids) in &emitters.ids {
        for &input in ids {
            let (router, late) = channels.router(ctx.plan, node, input);
            routers.insert(input, router);
            late_outs.insert(input, late);
        }
    }
    // A `kflow test` run's sources read in turns, in step.
    let sequencer = Sequencer::new();
    let mut topology = Topology {
        sources: Vec::new(),
        windows: Vec::new(),
        sinks: Vec::new(),
        shuffle: None,
    };
    if let (Some(Part::Group(group)), Some(input)) = (ctx.part, emitters.shuffle) {
        topology.shuffle = Some(shuffle_task(ctx, *group, input, &mut channels)?);
    }
    let budget = (ctx.plan.state_memory_bytes as usize) / channels.partitions().max(1);
    for (&node_id, ids) in &emitters.ids {
        let node = ctx.plan.node(node_id);
        match &node.kind {
            NodeKind::Source(source) => {
                let Some(router) = ids.first().and_then(|id| routers.remove(id)) else {
                    continue;
                };
                topology
                    .sources
                    .push(source_task(ctx, &node.name, source, router, &sequencer)?);
            }
            NodeKind::Window(w) => {
                let Some(window) = channels.windows.remove(&node_id) else {
                    continue;
                };
                let columns = result_columns(ctx.plan, w);
                for (partition, &input) in ids.iter().enumerate() {
                    let out = ResultEmitter::new(
                        node.name.clone(),
                        w.key_names.clone(),
                        w.aggregates.clone(),
                        routers.remove(&input).unwrap_or_default(),
                        columns.clone(),
                    );
                    let task = format!("{}/{partition}", node.name);
                    let restore = ctx.restore.and_then(|m| m.windows.get(&task));
                    let task_ctx = WindowTaskCtx {
                        instance: kflow_state::codec::instance(node_id.0 as u16, partition as u16),
                        restore: restore_part(&task, restore)?,
                        task,
                        panes: match w.kind.panes() {
                            Some((size, slide)) => Panes::new(size, slide),
                            None => Panes::new(1, 1),
                        },
                        sessions: match w.kind {
                            WindowKind::Session {
                                gap_ms,
                                max_duration_ms,
                            } => Some((gap_ms, max_duration_ms)),
                            _ => None,
                        },
                        lateness: w.allowed_lateness_ms,
                        inputs: window
                            .inputs
                            .iter()
                            .map(|id| (*id, emitters.name(*id)))
                            .collect(),
                        store: ctx.store.clone(),
                        budget,
                        late: late_outs.remove(&input).unwrap_or_default(),
                        metrics: ctx.metrics.clone(),
                        checkpoints: ctx.checkpoints.clone(),
                        extend_state: ctx.extended.contains(&node.name),
                    };
                    let receiver = window.receivers[partition].clone();
                    topology
                        .windows
                        .push(WindowTask::new(task_ctx, receiver, out));
                }
            }
            NodeKind::Filter(_) | NodeKind::Sink(_) => {}
        }
    }
    sequencer.close();
    topology.sinks = channels.sink_tasks(ctx)?;
    Ok(topology)
}

/// Emitter ids: one per source, one per window partition. A source
/// shard's part has no windows (its records go to the shuffle); a key
/// group's part reads no source but the shuffle, one emitter more.
struct Emitters {
    ids: BTreeMap<NodeId, Vec<InputId>>,
    names: BTreeMap<InputId, String>,
    shuffle: Option<InputId>,
}

impl Emitters {
    fn number(plan: &JobPlan, parallelism: usize, part: Option<&Part>) -> Emitters {
        let mut emitters = Emitters {
            ids: BTreeMap::new(),
            names: BTreeMap::new(),
            shuffle: None,
        };
        let mut next: InputId = 0;
        if let Some(Part::Group(_)) = part {
            emitters.shuffle = Some(next);
            emitters.names.insert(next, SHUFFLE_TASK.into());
            next += 1;
        }
        for (i, node) in plan.nodes.iter().enumerate() {
            let names: Vec<String> = match (&node.kind, part) {
                (NodeKind::Source(_), Some(Part::Group(_)))
                | (NodeKind::Window(_), Some(Part::Shard(_))) => continue,
                (NodeKind::Source(_), _) => vec![node.name.clone()],
                (NodeKind::Window(_), _) => (0..parallelism)
                    .map(|p| format!("{}/{p}", node.name))
                    .collect(),
                (NodeKind::Filter(_) | NodeKind::Sink(_), _) => continue,
            };
            let ids: Vec<InputId> = (next..next + names.len() as InputId).collect();
            next += names.len() as InputId;
            emitters.names.extend(ids.iter().copied().zip(names));
            emitters.ids.insert(NodeId(i as u32), ids);
        }
        emitters
    }

    fn name(&self, id: InputId) -> String {
        self.names.get(&id).cloned().unwrap_or_default()
    }
}

/// Field id -> column of a window's result rows: `window_start`,
/// `window_end`, the keys, then the aggregates.
fn result_columns(plan: &JobPlan, w: &WindowPlan) -> SlotMap {
    let mut names: Vec<&str> = vec!["window_start", "window_end"];
    names.extend(w.key_names.iter().map(String::as_str));
    names.extend(w.aggregates.iter().map(|a| a.name.as_str()));
    let pairs = plan.fields.iter().enumerate().filter_map(|(i, path)| {
        names
            .iter()
            .position(|n| *n == path.dotted)
            .map(|column| (FieldId(i as u32), column))
    });
    SlotMap::from_pairs(plan.fields.len(), pairs)
}
