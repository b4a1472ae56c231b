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
//! tasks. This is the only place that knows every kind of task.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_channel::{bounded, Receiver, Sender};
use kflow_jobs::{
    ConnectorPlan, FieldId, JobPlan, KinesisSourcePlan, NodeId, NodeKind, Port, SinkPlan,
    SourcePlan, StreamRef, WindowKind, WindowPlan,
};
use kflow_state::StateStore;

use crate::aws::{Endpoint, StreamId};
use crate::cluster::Part;
use crate::dataflow::checkpoint::{restore_part, CheckpointCtx};
use crate::dataflow::message::{InputId, SinkMsg, WindowMsg};
use crate::dataflow::metrics::Metrics;
use crate::dataflow::route::{
    ArgSpec, Keys, Partitions, Route, Router, SinkOut, Target, WindowInput, WindowOut,
};
use crate::dataflow::row::SlotMap;
use crate::error::EngineError;
use crate::operators::window::assign::Panes;
use crate::operators::window::{ResultEmitter, WindowTask, WindowTaskCtx};
use crate::runtime::meta::CheckpointMeta;
use crate::shuffle::out::{ShuffleOut, ShuffleWriter};
use crate::shuffle::source::{ShuffleSourceTask, ShuffleWindow, SHUFFLE_TASK};
use crate::sinks::{
    Creation, FileSinkPosition, FileWriter, KinesisWriter, LineWriter, S3SinkPosition, S3Writer,
    SinkTask, StdoutWriter,
};
use crate::sources::core::SourceCore;
use crate::sources::decode::Projection;
use crate::sources::dedup::Dedup;
use crate::sources::file::turns::{Script, Sequencer};
use crate::sources::file::{FilePosition, FileSourceTask, Follow};
use crate::sources::ingest::Ingest;
use crate::sources::kinesis::{stream_of, KinesisSettings, KinesisSourceTask, ReaderKind};
use crate::sources::SourceTask;

/// The checkpoint name of the dead-letter writer (not a valid node name).
pub const DEAD_LETTER: &str = "(dead-letter)";

/// Channel capacity, in batches. A window's work is bursty (a fire emits a
/// whole window's rows at once), so its queue holds ~130k records: enough
/// for the sources to keep decoding through a fire instead of taking turns
/// with it (see docs/performance.md).
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

/// A sink's channel and the emitters connected to it.
struct SinkChannel {
    name: String,
    sender: Sender<SinkMsg>,
    receiver: Receiver<SinkMsg>,
    inputs: Vec<InputId>,
    keys: Keys,
}

impl SinkChannel {
    fn new(name: String, keys: Keys) -> SinkChannel {
        let (sender, receiver) = bounded(SINK_QUEUE);
        SinkChannel {
            name,
            sender,
            receiver,
            inputs: Vec::new(),
            keys,
        }
    }

    fn connect(&mut self, input: InputId) -> SinkOut {
        self.inputs.push(input);
        SinkOut::new(self.name.clone(), input, self.sender.clone(), self.keys)
    }
}

/// A window's partition channels and the emitters connected to them.
struct WindowChannels {
    senders: Vec<Sender<WindowMsg>>,
    receivers: Vec<Receiver<WindowMsg>>,
    inputs: Vec<InputId>,
}

/// Every channel of the job.
struct Channels {
    windows: BTreeMap<NodeId, WindowChannels>,
    sinks: BTreeMap<NodeId, SinkChannel>,
    dead_letter: SinkChannel,
    /// A source shard's part: where window records go instead.
    shuffle: Option<Shuffle>,
}

/// The shuffle stream a source shard's part writes to.
struct Shuffle {
    writer: Arc<Mutex<ShuffleWriter>>,
    stream: String,
    shard: String,
}

/// A path from an emitter through filters to a window or sink.
struct FilterPath {
    filters: Vec<NodeId>,
    target: NodeId,
}

/// Every window or sink reachable from `stream`, through filters.
fn walk(plan: &JobPlan, stream: StreamRef, filters: &mut Vec<NodeId>, out: &mut Vec<FilterPath>) {
    for (id, node) in plan.consumers(stream) {
        match node.kind {
            NodeKind::Filter(_) => {
                filters.push(id);
                walk(plan, main(id), filters, out);
                filters.pop();
            }
            NodeKind::Window(_) | NodeKind::Sink(_) => out.push(FilterPath {
                filters: filters.clone(),
                target: id,
            }),
            NodeKind::Source(_) => {}
        }
    }
}

fn main(node: NodeId) -> StreamRef {
    StreamRef {
        node,
        port: Port::Main,
    }
}

/// The sinks reading a side output (the compiler allows only sinks there).
fn side_output_sinks(plan: &JobPlan, node: NodeId, port: Port) -> Vec<NodeId> {
    plan.consumers(StreamRef { node, port })
        .filter(|(_, node)| matches!(node.kind, NodeKind::Sink(_)))
        .map(|(id, _)| id)
        .collect()
}

impl Channels {
    fn open(
        plan: &JobPlan,
        parallelism: usize,
        part: Option<&Part>,
    ) -> Result<Channels, EngineError> {
        let has_windows = plan
            .nodes
            .iter()
            .any(|n| matches!(n.kind, NodeKind::Window(_)));
        let shuffle = match part {
            Some(Part::Shard(shard)) if has_windows => {
                let Some((stream, endpoint, groups)) = shuffle_stream(plan) else {
                    return Err(EngineError::Shuffle(
                        "a cluster job with windows needs `shuffle_stream`".into(),
                    ));
                };
                Some(Shuffle {
                    writer: ShuffleWriter::open(&stream, &endpoint, groups)?,
                    stream,
                    shard: shard.clone(),
                })
            }
            _ => None,
        };
        let mut channels = Channels {
            windows: BTreeMap::new(),
            sinks: BTreeMap::new(),
            dead_letter: SinkChannel::new(DEAD_LETTER.into(), Keys::None),
            shuffle,
        };
        for (i, node) in plan.nodes.iter().enumerate() {
            let id = NodeId(i as u32);
            match &node.kind {
                NodeKind::Window(_) if matches!(part, Some(Part::Shard(_))) => {}
                NodeKind::Window(_) => {
                    let (senders, receivers) =
                        (0..parallelism).map(|_| bounded(WINDOW_QUEUE)).unzip();
                    let window = WindowChannels {
                        senders,
                        receivers,
                        inputs: Vec::new(),
                    };
                    channels.windows.insert(id, window);
                }
                NodeKind::Sink(sink) => {
                    // A Kinesis sink partitions rows by the key their
                    // emitter hands over.
                    let keys = match sink {
                        SinkPlan::Kinesis { .. } => Keys::PerLine,
                        SinkPlan::File { .. } | SinkPlan::Stdout | SinkPlan::S3 { .. } => {
                            Keys::None
                        }
                    };
                    let channel = SinkChannel::new(node.name.clone(), keys);
                    channels.sinks.insert(id, channel);
                }
                NodeKind::Source(_) | NodeKind::Filter(_) => {}
            }
        }
        Ok(channels)
    }

    /// Window partitions in the job.
    fn partitions(&self) -> usize {
        self.windows.values().map(|w| w.receivers.len()).sum()
    }

    /// The router of emitter instance `input` of `node`, and its `.late`
    /// outputs (window partitions only).
    fn router(&mut self, plan: &JobPlan, node: NodeId, input: InputId) -> (Router, Vec<SinkOut>) {
        let mut paths = Vec::new();
        walk(plan, main(node), &mut Vec::new(), &mut paths);
        let mut router = Router::new(plan.node(node).name.clone());
        let mut filter_index: BTreeMap<NodeId, usize> = BTreeMap::new();
        let mut target_index: BTreeMap<NodeId, Target> = BTreeMap::new();
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
            let target = match target_index.get(&path.target) {
                Some(t) => *t,
                None => {
                    let t = self.connect(plan, path.target, input, &mut router);
                    target_index.insert(path.target, t);
                    t
                }
            };
            router.routes.push(Route { chain, target });
        }
        let is_source = matches!(plan.node(node).kind, NodeKind::Source(_));
        let error_sinks = if is_source {
            side_output_sinks(plan, node, Port::Errors)
        } else {
            Vec::new()
        };
        if error_sinks.is_empty() {
            router.errors.push(self.dead_letter.connect(input));
            router.errors_to_dead_letter = true;
        } else {
            router.errors = self.connect_sinks(&error_sinks, input);
        }
        let late = if is_source {
            Vec::new()
        } else {
            self.connect_sinks(&side_output_sinks(plan, node, Port::Late), input)
        };
        (router, late)
    }

    fn connect_sinks(&mut self, sinks: &[NodeId], input: InputId) -> Vec<SinkOut> {
        sinks
            .iter()
            .filter_map(|sink| self.sinks.get_mut(sink).map(|c| c.connect(input)))
            .collect()
    }

    /// Connects emitter `input` to window or sink `target`.
    fn connect(
        &mut self,
        plan: &JobPlan,
        target: NodeId,
        input: InputId,
        router: &mut Router,
    ) -> Target {
        let NodeKind::Window(w) = &plan.node(target).kind else {
            let channel = self
                .sinks
                .get_mut(&target)
                .unwrap_or_else(|| unreachable!("every sink has a channel"));
            router.sinks.push(channel.connect(input));
            return Target::Sink(router.sinks.len() - 1);
        };
        let carry_raw = plan
            .consumers(StreamRef {
                node: target,
                port: Port::Late,
            })
            .next()
            .is_some();
        let field_name = |f: FieldId| plan.fields[f.index()].dotted.clone();
        let spec = WindowInput {
            name: plan.node(target).name.clone(),
            key_fields: w.key.iter().map(|f| (*f, field_name(*f))).collect(),
            args: w
                .aggregates
                .iter()
                .map(|a| ArgSpec {
                    name: a.name.clone(),
                    function: a.function,
                    field: a.field.map(|f| (f, field_name(f))),
                    by: a.by.map(|f| (f, field_name(f))),
                })
                .collect(),
            carry_raw,
        };
        let partitions = match (self.windows.get_mut(&target), &self.shuffle) {
            (Some(channels), _) => {
                channels.inputs.push(input);
                Partitions::Local(channels.senders.clone())
            }
            (None, Some(shuffle)) => Partitions::Remote(Box::new(ShuffleOut::new(
                shuffle.writer.clone(),
                &shuffle.stream,
                target.0 as u16,
                &shuffle.shard,
                spec.args.len(),
            ))),
            (None, None) => unreachable!("a window has channels unless its records are shuffled"),
        };
        router.windows.push(WindowOut::new(spec, input, partitions));
        Target::Window(router.windows.len() - 1)
    }

    /// One task per sink, and the dead-letter writer if any emitter may
    /// write to it.
    fn sink_tasks(self, ctx: &BuildCtx<'_>) -> Result<Vec<SinkTask>, EngineError> {
        let plan = ctx.plan;
        let committed = |name: &str| -> Result<Option<u64>, EngineError> {
            let stored = ctx.restore.and_then(|m| m.sinks.get(name));
            Ok(restore_part::<FileSinkPosition>(name, stored)?.map(|p| p.length))
        };
        let mut tasks = Vec::new();
        for (node_id, channel) in self.sinks {
            // In a cluster part, a sink fed by what another part runs.
            if channel.inputs.is_empty() {
                continue;
            }
            let node = plan.node(node_id);
            let writer: Box<dyn LineWriter> = match &node.kind {
                NodeKind::Sink(SinkPlan::File { path }) => Box::new(FileWriter::new(
                    node.name.clone(),
                    path.clone(),
                    Creation::AtStart,
                    committed(&node.name)?,
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
                )?),
                NodeKind::Sink(SinkPlan::S3 { path, gzip }) => {
                    let stored = ctx.restore.and_then(|m| m.sinks.get(&node.name));
                    Box::new(S3Writer::new(
                        node.name.clone(),
                        path,
                        *gzip,
                        restore_part::<S3SinkPosition>(&node.name, stored)?,
                    )?)
                }
                _ => Box::new(StdoutWriter::new(node.name.clone())),
            };
            tasks.push(sink_task(ctx, channel, writer));
        }
        if !self.dead_letter.inputs.is_empty() {
            let writer = FileWriter::new(
                DEAD_LETTER.into(),
                plan.dead_letter_path.clone(),
                Creation::OnFirstLine,
                committed(DEAD_LETTER)?,
            )?;
            tasks.push(sink_task(ctx, self.dead_letter, Box::new(writer)));
        }
        Ok(tasks)
    }
}

fn sink_task(ctx: &BuildCtx<'_>, channel: SinkChannel, writer: Box<dyn LineWriter>) -> SinkTask {
    SinkTask {
        name: channel.name,
        inputs: channel.inputs,
        receiver: channel.receiver,
        writer,
        checkpoints: ctx.checkpoints.clone(),
        metrics: ctx.metrics.clone(),
    }
}

/// The task of source `name`, routing through `router`.
fn source_task(
    ctx: &BuildCtx<'_>,
    name: &str,
    source: &SourcePlan,
    router: Router,
    sequencer: &Arc<Sequencer>,
) -> Result<SourceTask, EngineError> {
    let plan = ctx.plan;
    let dedup = match &source.dedup {
        Some(d) => {
            let mut dedup = Dedup::new(name, d.within_ms);
            if ctx.restore.is_some() {
                dedup.restore(ctx.store)?;
            }
            Some((d.field, dedup))
        }
        None => None,
    };
    let ingest = Ingest {
        projection: Projection::new(source.projection.iter().map(|f| &plan.fields[f.index()])),
        slots: SlotMap::new(plan.fields.len(), source.projection.iter().copied()),
        event_time: source
            .event_time
            .map(|f| (f, plan.fields[f.index()].dotted.clone())),
        dedup,
        router,
    };
    let kind = match &source.connector {
        ConnectorPlan::File(_) => "file",
        ConnectorPlan::Kinesis(_) => "kinesis",
    };
    let core = SourceCore::new(
        name.to_string(),
        kind,
        ingest,
        source.max_out_of_orderness_ms,
        source.idle_timeout,
        ctx.metrics.clone(),
        ctx.checkpoints.clone(),
    );
    let stored = ctx.restore.and_then(|m| m.sources.get(name));
    Ok(match &source.connector {
        ConnectorPlan::File(file) => {
            let restore = restore_part::<FilePosition>(name, stored)?.unwrap_or_default();
            let job_dir = plan.job_path.parent().unwrap_or(Path::new("."));
            SourceTask::File(Box::new(FileSourceTask {
                core,
                decode_threads: ctx.decode_threads,
                path: file.path.clone(),
                display_path: file
                    .path
                    .strip_prefix(job_dir)
                    .unwrap_or(&file.path)
                    .display()
                    .to_string(),
                follow: if file.follow {
                    Follow::Tail
                } else {
                    Follow::No
                },
                script: (!file.turns.is_empty())
                    .then(|| Script::new(file.turns.clone(), restore.turns, Arc::clone(sequencer))),
                restore,
            }))
        }
        ConnectorPlan::Kinesis(k) => {
            let (stream, endpoint) = stream_of(k);
            SourceTask::Kinesis(Box::new(KinesisSourceTask {
                core,
                settings: KinesisSettings {
                    stream,
                    endpoint,
                    start_at: k.start_at,
                    stop_at: k.stop_at,
                    on_expired: k.on_expired,
                    only_shard: match ctx.part {
                        Some(Part::Shard(shard)) => Some(shard.clone()),
                        _ => None,
                    },
                    reader: ReaderKind::of(&k.reader, &plan.name),
                },
                restore: restore_part(name, stored)?,
            }))
        }
    })
}

/// A cluster job's shuffle stream, the endpoint of its source (the
/// shuffle lives beside it) and its key groups.
fn shuffle_stream(plan: &JobPlan) -> Option<(String, Endpoint, u32)> {
    let cluster = plan.cluster.as_ref()?;
    let stream = cluster.shuffle_stream.clone()?;
    let (_, endpoint) = stream_of(kinesis_source(plan)?);
    Some((stream, endpoint, cluster.key_groups))
}

/// The job's (first) Kinesis source.
pub(crate) fn kinesis_source(plan: &JobPlan) -> Option<&KinesisSourcePlan> {
    plan.nodes.iter().find_map(|node| match &node.kind {
        NodeKind::Source(SourcePlan {
            connector: ConnectorPlan::Kinesis(k),
            ..
        }) => Some(k),
        _ => None,
    })
}

/// The shuffle reader of key group `group`, emitter `input` of every
/// window that a source feeds.
fn shuffle_task(
    ctx: &BuildCtx<'_>,
    group: u32,
    input: InputId,
    channels: &mut Channels,
) -> Result<ShuffleSourceTask, EngineError> {
    let plan = ctx.plan;
    let (Some((stream, endpoint, groups)), Some(source)) =
        (shuffle_stream(plan), kinesis_source(plan))
    else {
        return Err(EngineError::Shuffle(
            "a key group's part needs a Kinesis source and `shuffle_stream`".into(),
        ));
    };
    let mut paths = Vec::new();
    for (i, node) in plan.nodes.iter().enumerate() {
        if let NodeKind::Source(_) = node.kind {
            walk(plan, main(NodeId(i as u32)), &mut Vec::new(), &mut paths);
        }
    }
    let mut windows: Vec<ShuffleWindow> = Vec::new();
    for path in paths {
        let Some(channel) = channels.windows.get_mut(&path.target) else {
            continue;
        };
        let node = path.target.0 as u16;
        if windows.iter().any(|w| w.node == node) {
            continue;
        }
        let Some(sender) = channel.senders.first() else {
            continue;
        };
        channel.inputs.push(input);
        windows.push(ShuffleWindow {
            node,
            input,
            sender: sender.clone(),
        });
    }
    let stored = ctx.restore.and_then(|m| m.sources.get(SHUFFLE_TASK));
    Ok(ShuffleSourceTask {
        group,
        groups,
        shuffle: StreamId::parse(&stream),
        source: stream_of(source).0,
        endpoint,
        windows,
        checkpoints: ctx.checkpoints.clone(),
        metrics: ctx.metrics.clone(),
        restore: restore_part(SHUFFLE_TASK, stored)?,
    })
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
