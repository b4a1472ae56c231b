//! Turning a [`JobPlan`] into tasks and channels.
//!
//! Every source is one task; every window is `parallelism` partition tasks;
//! every sink (and the dead-letter file) is one task. Sources and window
//! partitions are *emitters*: for each, the filter chains leading from it to
//! windows and sinks are walked once here and fused into its [`Router`].
//! Every consumer learns exactly which emitters feed it, so it knows when all
//! of them have ended and which watermarks to take the minimum of.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use async_channel::{bounded, Receiver, Sender};
use kflow_jobs::{ConnectorPlan, JobPlan, NodeId, NodeKind, Port, SinkPlan, StreamRef, WindowPlan};
use kflow_state::StateStore;

use crate::error::EngineError;
use crate::kinesis::Endpoint;
use crate::metrics::Metrics;
use crate::operators::window::assign::Panes;
use crate::operators::window::{ResultEmitter, WindowTask, WindowTaskCtx};
use crate::runtime::checkpoint::{CheckpointCtx, CheckpointMeta};
use crate::runtime::message::{InputId, SinkMsg, WindowMsg};
use crate::runtime::route::{ArgSpec, Route, Router, SinkOut, Target, WindowOut};
use crate::runtime::row::SlotMap;
use crate::sinks::{FileWriter, KinesisWriter, LineWriter, SinkTask, StdoutWriter};
use crate::sources::decode::Projection;
use crate::sources::dedup::Dedup;
use crate::sources::file::FileSourceTask;
use crate::sources::ingest::Ingest;
use crate::sources::kinesis::reader::StreamId;
use crate::sources::kinesis::{KinesisSettings, KinesisSourceTask};
use crate::sources::SourceTask;

/// The checkpoint name of the dead-letter writer (not a valid node name).
pub const DEAD_LETTER: &str = "(dead-letter)";

/// Channel capacity, in batches. A window's work is bursty (a fire emits a
/// whole window's rows at once), so its queue holds ~130k records: enough
/// for the sources to keep decoding through a fire instead of taking turns
/// with it (16 batches ran the two threads mostly one after the other:
/// 684k -> 1,058k events/s on W1 at 5M by deepening it).
const WINDOW_QUEUE: usize = 128;
const SINK_QUEUE: usize = 64;

/// All tasks of a job, ready to be started.
pub struct Topology {
    /// Source tasks.
    pub sources: Vec<SourceTask>,
    /// Window partition tasks.
    pub windows: Vec<WindowTask>,
    /// Sink tasks, the dead-letter writer among them.
    pub sinks: Vec<SinkTask>,
}

impl Topology {
    /// The names of every task, as checkpoints know them.
    pub fn task_names(&self) -> Vec<String> {
        let sources = self.sources.iter().map(|s| s.name().to_string());
        let windows = self.windows.iter().map(|w| w.task_name().to_string());
        let sinks = self.sinks.iter().map(|s| s.name.clone());
        sources.chain(windows).chain(sinks).collect()
    }
}

struct SinkChannel {
    name: String,
    sender: Sender<SinkMsg>,
    receiver: Receiver<SinkMsg>,
    inputs: Vec<InputId>,
}

impl SinkChannel {
    fn new(name: String) -> SinkChannel {
        let (sender, receiver) = bounded(SINK_QUEUE);
        SinkChannel {
            name,
            sender,
            receiver,
            inputs: Vec::new(),
        }
    }

    fn connect(&mut self, input: InputId) -> SinkOut {
        self.inputs.push(input);
        SinkOut::new(self.name.clone(), input, self.sender.clone())
    }
}

struct WindowChannels {
    senders: Vec<Sender<WindowMsg>>,
    receivers: Vec<Receiver<WindowMsg>>,
    inputs: Vec<InputId>,
}

/// A path from an emitter through filters to a window or sink.
struct Path_ {
    filters: Vec<NodeId>,
    target: NodeId,
}

/// Every window or sink reachable from `stream`, through filters.
fn walk(plan: &JobPlan, stream: StreamRef, filters: &mut Vec<NodeId>, out: &mut Vec<Path_>) {
    for (id, node) in plan.consumers(stream) {
        match node.kind {
            NodeKind::Filter(_) => {
                filters.push(id);
                walk(
                    plan,
                    StreamRef {
                        node: id,
                        port: Port::Main,
                    },
                    filters,
                    out,
                );
                filters.pop();
            }
            NodeKind::Window(_) | NodeKind::Sink(_) => out.push(Path_ {
                filters: filters.clone(),
                target: id,
            }),
            NodeKind::Source(_) => {}
        }
    }
}

/// The sinks reading a side output (the compiler allows only sinks there).
fn side_output_sinks(plan: &JobPlan, stream: StreamRef) -> Vec<NodeId> {
    plan.consumers(stream)
        .filter(|(_, node)| matches!(node.kind, NodeKind::Sink(_)))
        .map(|(id, _)| id)
        .collect()
}

fn window_plan(plan: &JobPlan, id: NodeId) -> Option<&WindowPlan> {
    match &plan.node(id).kind {
        NodeKind::Window(w) => Some(w),
        _ => None,
    }
}

/// The key columns of the windows feeding a sink (through filters): a
/// Kinesis sink partitions rows by them.
fn sink_key_columns(plan: &JobPlan, sink: NodeId) -> Vec<String> {
    let mut columns = Vec::new();
    let mut stack: Vec<NodeId> = plan.node(sink).inputs.iter().map(|i| i.node).collect();
    while let Some(id) = stack.pop() {
        match &plan.node(id).kind {
            NodeKind::Window(w) => {
                for k in &w.key_names {
                    if !columns.contains(k) {
                        columns.push(k.clone());
                    }
                }
            }
            NodeKind::Filter(_) => stack.extend(plan.node(id).inputs.iter().map(|i| i.node)),
            NodeKind::Source(_) | NodeKind::Sink(_) => {}
        }
    }
    columns
}

/// Builds every task of `plan`.
///
/// # Errors
/// I/O errors opening sink files, Kinesis sinks that cannot start.
pub fn build(
    plan: &JobPlan,
    store: &Arc<StateStore>,
    metrics: &Arc<Metrics>,
    parallelism: usize,
    checkpoints: &CheckpointCtx,
    restore: Option<&CheckpointMeta>,
) -> Result<Topology, EngineError> {
    let parallelism = parallelism.max(1);
    let field_count = plan.fields.len();
    let job_dir = plan.job_path.parent().unwrap_or(Path::new("."));

    // Emitter ids: one per source, one per window partition.
    let mut emitters: BTreeMap<NodeId, Vec<InputId>> = BTreeMap::new();
    let mut emitter_names: BTreeMap<InputId, String> = BTreeMap::new();
    let mut next: InputId = 0;
    for (i, node) in plan.nodes.iter().enumerate() {
        let names: Vec<String> = match node.kind {
            NodeKind::Source(_) => vec![node.name.clone()],
            NodeKind::Window(_) => (0..parallelism)
                .map(|p| format!("{}/{p}", node.name))
                .collect(),
            _ => continue,
        };
        let ids: Vec<InputId> = (next..next + names.len() as InputId).collect();
        next += names.len() as InputId;
        emitter_names.extend(ids.iter().copied().zip(names));
        emitters.insert(NodeId(i as u32), ids);
    }

    // Channels.
    let mut windows: BTreeMap<NodeId, WindowChannels> = BTreeMap::new();
    let mut sinks: BTreeMap<NodeId, SinkChannel> = BTreeMap::new();
    for (i, node) in plan.nodes.iter().enumerate() {
        let id = NodeId(i as u32);
        match &node.kind {
            NodeKind::Window(_) => {
                let (senders, receivers) = (0..parallelism).map(|_| bounded(WINDOW_QUEUE)).unzip();
                windows.insert(
                    id,
                    WindowChannels {
                        senders,
                        receivers,
                        inputs: Vec::new(),
                    },
                );
            }
            NodeKind::Sink(_) => {
                sinks.insert(id, SinkChannel::new(node.name.clone()));
            }
            NodeKind::Source(_) | NodeKind::Filter(_) => {}
        }
    }
    let mut dead_letter = SinkChannel::new(DEAD_LETTER.into());

    // Routers, one per emitter instance.
    let mut routers: BTreeMap<InputId, Router> = BTreeMap::new();
    let mut late_outs: BTreeMap<InputId, Vec<SinkOut>> = BTreeMap::new();
    for (&node_id, ids) in &emitters {
        let node = plan.node(node_id);
        let mut paths = Vec::new();
        walk(
            plan,
            StreamRef {
                node: node_id,
                port: Port::Main,
            },
            &mut Vec::new(),
            &mut paths,
        );
        let error_sinks = match node.kind {
            NodeKind::Source(_) => side_output_sinks(
                plan,
                StreamRef {
                    node: node_id,
                    port: Port::Errors,
                },
            ),
            _ => Vec::new(),
        };
        let late_sinks = match node.kind {
            NodeKind::Window(_) => side_output_sinks(
                plan,
                StreamRef {
                    node: node_id,
                    port: Port::Late,
                },
            ),
            _ => Vec::new(),
        };
        for &input in ids {
            let mut router = Router::new(node.name.clone());
            let mut filter_index: BTreeMap<NodeId, usize> = BTreeMap::new();
            let mut window_index: BTreeMap<NodeId, usize> = BTreeMap::new();
            let mut sink_index: BTreeMap<NodeId, usize> = BTreeMap::new();
            for path in &paths {
                let chain = path
                    .filters
                    .iter()
                    .map(|f| {
                        *filter_index.entry(*f).or_insert_with(|| {
                            let expr = match &plan.node(*f).kind {
                                NodeKind::Filter(filter) => filter.expr.clone(),
                                _ => unreachable!("walk only collects filters"),
                            };
                            router.filters.push(expr);
                            router.filters.len() - 1
                        })
                    })
                    .collect();
                let target = if let Some(w) = window_plan(plan, path.target) {
                    let index = match window_index.get(&path.target) {
                        Some(i) => *i,
                        None => {
                            let channels = windows
                                .get_mut(&path.target)
                                .unwrap_or_else(|| unreachable!("every window has channels"));
                            channels.inputs.push(input);
                            let carry_raw = plan
                                .consumers(StreamRef {
                                    node: path.target,
                                    port: Port::Late,
                                })
                                .next()
                                .is_some();
                            let field_name =
                                |f: kflow_jobs::FieldId| plan.fields[f.index()].dotted.clone();
                            router.windows.push(WindowOut::new(
                                plan.node(path.target).name.clone(),
                                input,
                                w.key.iter().map(|f| (*f, field_name(*f))).collect(),
                                w.aggregates
                                    .iter()
                                    .map(|a| ArgSpec {
                                        name: a.name.clone(),
                                        function: a.function,
                                        field: a.field.map(|f| (f, field_name(f))),
                                    })
                                    .collect(),
                                carry_raw,
                                channels.senders.clone(),
                            ));
                            window_index.insert(path.target, router.windows.len() - 1);
                            router.windows.len() - 1
                        }
                    };
                    Target::Window(index)
                } else {
                    let index = match sink_index.get(&path.target) {
                        Some(i) => *i,
                        None => {
                            let channel = sinks
                                .get_mut(&path.target)
                                .unwrap_or_else(|| unreachable!("every sink has a channel"));
                            router.sinks.push(channel.connect(input));
                            sink_index.insert(path.target, router.sinks.len() - 1);
                            router.sinks.len() - 1
                        }
                    };
                    Target::Sink(index)
                };
                router.routes.push(Route { chain, target });
            }
            if error_sinks.is_empty() {
                router.errors.push(dead_letter.connect(input));
                router.errors_to_dead_letter = true;
            } else {
                for sink in &error_sinks {
                    if let Some(channel) = sinks.get_mut(sink) {
                        router.errors.push(channel.connect(input));
                    }
                }
            }
            let mut late = Vec::new();
            for sink in &late_sinks {
                if let Some(channel) = sinks.get_mut(sink) {
                    late.push(channel.connect(input));
                }
            }
            late_outs.insert(input, late);
            routers.insert(input, router);
        }
    }

    // Tasks.
    let mut topology = Topology {
        sources: Vec::new(),
        windows: Vec::new(),
        sinks: Vec::new(),
    };
    let partitions = windows
        .values()
        .map(|w| w.receivers.len())
        .sum::<usize>()
        .max(1);
    let budget = (plan.state_memory_bytes as usize) / partitions;
    for (&node_id, ids) in &emitters {
        let node = plan.node(node_id);
        match &node.kind {
            NodeKind::Source(source) => {
                let input = ids[0];
                let router = routers.remove(&input).unwrap_or_default();
                let projection =
                    Projection::new(source.projection.iter().map(|f| &plan.fields[f.index()]));
                let dedup = match &source.dedup {
                    Some(d) => {
                        let mut dedup = Dedup::new(&node.name, d.within_ms);
                        if restore.is_some() {
                            dedup.restore(store)?;
                        }
                        Some((d.field, dedup))
                    }
                    None => None,
                };
                let ingest = Ingest {
                    projection,
                    slots: SlotMap::new(field_count, source.projection.iter().copied()),
                    event_time: source
                        .event_time
                        .map(|f| (f, plan.fields[f.index()].dotted.clone())),
                    dedup,
                    router,
                };
                let restore_state = restore
                    .and_then(|m| m.sources.get(&node.name))
                    .cloned()
                    .unwrap_or_default();
                let task = match &source.connector {
                    ConnectorPlan::File(file) => SourceTask::File(Box::new(FileSourceTask {
                        name: node.name.clone(),
                        path: file.path.clone(),
                        display_path: file
                            .path
                            .strip_prefix(job_dir)
                            .unwrap_or(&file.path)
                            .display()
                            .to_string(),
                        follow: file.follow,
                        ingest,
                        max_out_of_orderness_ms: source.max_out_of_orderness_ms,
                        idle_timeout: source.idle_timeout,
                        metrics: metrics.clone(),
                        checkpoints: checkpoints.clone(),
                        restore: restore_state,
                    })),
                    ConnectorPlan::Kinesis(k) => SourceTask::Kinesis(Box::new(KinesisSourceTask {
                        name: node.name.clone(),
                        settings: KinesisSettings {
                            stream: StreamId {
                                id: k.stream.clone(),
                                is_arn: k.is_arn,
                            },
                            endpoint: Endpoint {
                                region: k.region.clone(),
                                url: k.endpoint.clone(),
                            },
                            start_at: k.start_at,
                            stop_at: k.stop_at,
                            on_expired: k.on_expired,
                        },
                        ingest,
                        max_out_of_orderness_ms: source.max_out_of_orderness_ms,
                        idle_timeout: source.idle_timeout,
                        metrics: metrics.clone(),
                        checkpoints: checkpoints.clone(),
                        restore: restore_state,
                    })),
                };
                topology.sources.push(task);
            }
            NodeKind::Window(w) => {
                let channels = windows
                    .remove(&node_id)
                    .unwrap_or_else(|| unreachable!("every window has channels"));
                let columns = result_columns(plan, w);
                for (partition, &input) in ids.iter().enumerate() {
                    let router = routers.remove(&input).unwrap_or_default();
                    let out = ResultEmitter::new(
                        node.name.clone(),
                        w.key_names.clone(),
                        w.aggregates.clone(),
                        router,
                        columns.clone(),
                    );
                    let task = format!("{}/{partition}", node.name);
                    let ctx = WindowTaskCtx {
                        instance: kflow_state::codec::instance(node_id.0 as u16, partition as u16),
                        restore: restore.and_then(|m| m.windows.get(&task)).cloned(),
                        task,
                        panes: Panes::new(w.kind.size_ms(), w.kind.slide_ms()),
                        lateness: w.allowed_lateness_ms,
                        inputs: channels
                            .inputs
                            .iter()
                            .map(|id| (*id, emitter_names.get(id).cloned().unwrap_or_default()))
                            .collect(),
                        store: store.clone(),
                        budget,
                        late: late_outs.remove(&input).unwrap_or_default(),
                        metrics: metrics.clone(),
                        checkpoints: checkpoints.clone(),
                    };
                    topology.windows.push(WindowTask::new(
                        ctx,
                        channels.receivers[partition].clone(),
                        out,
                    ));
                }
            }
            _ => {}
        }
    }
    let committed = |name: &str| restore.and_then(|m| m.sinks.get(name)).map(|s| s.length);
    for (node_id, channel) in sinks {
        let node = plan.node(node_id);
        let writer: Box<dyn LineWriter> = match &node.kind {
            NodeKind::Sink(SinkPlan::File { path }) => Box::new(FileWriter::new(
                node.name.clone(),
                path.clone(),
                false,
                committed(&node.name),
            )?),
            NodeKind::Sink(SinkPlan::Kinesis {
                stream,
                region,
                endpoint,
            }) => Box::new(KinesisWriter::new(
                node.name.clone(),
                stream.clone(),
                &Endpoint {
                    region: region.clone(),
                    url: endpoint.clone(),
                },
                sink_key_columns(plan, node_id),
            )?),
            _ => Box::new(StdoutWriter::new(node.name.clone())),
        };
        topology.sinks.push(SinkTask {
            name: channel.name,
            inputs: channel.inputs,
            receiver: channel.receiver,
            writer,
            checkpoints: checkpoints.clone(),
            metrics: metrics.clone(),
        });
    }
    if !dead_letter.inputs.is_empty() {
        let path = plan.dead_letter_path.clone();
        let writer = FileWriter::new(DEAD_LETTER.into(), path, true, committed(DEAD_LETTER))?;
        topology.sinks.push(SinkTask {
            name: dead_letter.name,
            inputs: dead_letter.inputs,
            receiver: dead_letter.receiver,
            writer: Box::new(writer),
            checkpoints: checkpoints.clone(),
            metrics: metrics.clone(),
        });
    }
    Ok(topology)
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
            .map(|column| (kflow_jobs::FieldId(i as u32), column))
    });
    SlotMap::from_pairs(plan.fields.len(), pairs)
}
