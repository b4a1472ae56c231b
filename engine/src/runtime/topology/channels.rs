//! The job's channels: one per window partition and per sink, each
//! emitter's fused [`Router`] into them, and the sink tasks at their ends.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_channel::{bounded, Receiver, Sender};
use kflow_jobs::{FieldId, JobPlan, NodeId, NodeKind, Port, SinkPlan, StreamRef};

use crate::aws::Endpoint;
use crate::cluster::Part;
use crate::dataflow::checkpoint::restore_part;
use crate::dataflow::message::{InputId, SinkMsg, WindowMsg};
use crate::dataflow::route::{
    ArgSpec, Keys, Partitions, Route, Router, SinkOut, Target, WindowInput, WindowOut,
};
use crate::error::EngineError;
use crate::operators::window::combine::Combiner;
use crate::shuffle::out::{ShuffleOut, ShuffleWriter};
use crate::sinks::{
    Creation, FileSinkPosition, FileWriter, KinesisWriter, LineWriter, S3SinkPosition, S3Writer,
    SinkTask, StdoutWriter,
};

use super::tasks::shuffle_stream;
use super::{BuildCtx, DEAD_LETTER, SINK_QUEUE, WINDOW_QUEUE};

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
pub(super) struct WindowChannels {
    pub(super) senders: Vec<Sender<WindowMsg>>,
    pub(super) receivers: Vec<Receiver<WindowMsg>>,
    pub(super) inputs: Vec<InputId>,
}

/// Every channel of the job.
pub(super) struct Channels {
    pub(super) windows: BTreeMap<NodeId, WindowChannels>,
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
pub(super) struct FilterPath {
    filters: Vec<NodeId>,
    pub(super) target: NodeId,
}

/// Every window or sink reachable from `stream`, through filters.
pub(super) fn walk(
    plan: &JobPlan,
    stream: StreamRef,
    filters: &mut Vec<NodeId>,
    out: &mut Vec<FilterPath>,
) {
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

pub(super) fn main(node: NodeId) -> StreamRef {
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
    pub(super) fn open(
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
    pub(super) fn partitions(&self) -> usize {
        self.windows.values().map(|w| w.receivers.len()).sum()
    }

    /// The router of emitter instance `input` of `node`, and its `.late`
    /// outputs (window partitions only).
    pub(super) fn router(
        &mut self,
        plan: &JobPlan,
        node: NodeId,
        input: InputId,
    ) -> (Router, Vec<SinkOut>) {
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
        if !is_source {
            // A window's fire emits rows sharing a time and watermark: a
            // window over it gets them combined per key.
            for out in &mut router.windows {
                let functions: Vec<_> = out.spec().args.iter().map(|a| a.function).collect();
                if let Some(combiner) = Combiner::new(&functions) {
                    out.combine_with(Box::new(combiner));
                }
            }
        }
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
    pub(super) fn sink_tasks(self, ctx: &BuildCtx<'_>) -> Result<Vec<SinkTask>, EngineError> {
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
