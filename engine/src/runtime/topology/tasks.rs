//! Source tasks (file and Kinesis, with a `kflow test` run's turns) and a
//! key group's shuffle task.

use std::path::Path;
use std::sync::Arc;

use kflow_jobs::{ConnectorPlan, JobPlan, KinesisSourcePlan, NodeId, NodeKind, SourcePlan};

use crate::aws::{Endpoint, StreamId};
use crate::cluster::Part;
use crate::dataflow::checkpoint::restore_part;
use crate::dataflow::message::InputId;
use crate::dataflow::route::Router;
use crate::dataflow::row::SlotMap;
use crate::error::EngineError;
use crate::shuffle::source::{ShuffleSourceTask, ShuffleWindow, SHUFFLE_TASK};
use crate::sources::core::SourceCore;
use crate::sources::decode::Projection;
use crate::sources::dedup::Dedup;
use crate::sources::file::turns::{Script, Sequencer};
use crate::sources::file::{FilePosition, FileSourceTask, Follow};
use crate::sources::ingest::Ingest;
use crate::sources::kinesis::{stream_of, KinesisSettings, KinesisSourceTask, ReaderKind};
use crate::sources::time::Dates;
use crate::sources::SourceTask;

use super::channels::{main, walk};
use super::{BuildCtx, Channels};

/// The task of source `name`, routing through `router`.
pub(super) fn source_task(
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
            Some(dedup)
        }
        None => None,
    };
    let ingest = Ingest {
        projection: Projection::new(source.projection.iter().map(|f| &plan.fields[f.index()])),
        slots: SlotMap::new(plan.fields.len(), source.projection.iter().copied()),
        event_time: source
            .event_time
            .map(|f| (f, plan.fields[f.index()].dotted.clone())),
        dedup_field: source.dedup.as_ref().map(|d| d.field),
        dedup,
        router,
        dates: Dates::default(),
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
                decode_threads: ctx.decode_threads,
            }))
        }
    })
}

/// A cluster job's shuffle stream, the endpoint of its source (the
/// shuffle lives beside it) and its key groups.
pub(super) fn shuffle_stream(plan: &JobPlan) -> Option<(String, Endpoint, u32)> {
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
pub(super) fn shuffle_task(
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
