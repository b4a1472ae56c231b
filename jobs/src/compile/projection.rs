//! Which fields each source must decode, and whether it must keep each
//! record's original text.
//!
//! A source's records flow through filters unchanged, into windows (which
//! read their key and aggregate fields), and out of a window's `.late` side
//! output unchanged again. So the projection is every field read along
//! those paths, plus the source's own event-time and dedup fields; and the
//! raw text is needed when such a path ends in a sink, which writes records
//! as they came.

use std::collections::{BTreeSet, HashSet};

use crate::plan::{NodeKind, NodePlan, Port};
use crate::value::FieldId;

/// Fills `projection` of every source. `nodes` are in
/// topological order with resolved inputs.
pub(crate) fn fill(nodes: &mut [NodePlan]) {
    // consumers[node] = (port read, consumer) pairs.
    let mut consumers: Vec<Vec<(Port, usize)>> = vec![Vec::new(); nodes.len()];
    for (consumer, node) in nodes.iter().enumerate() {
        for input in &node.inputs {
            if let Some(list) = consumers.get_mut(input.node.index()) {
                list.push((input.port, consumer));
            }
        }
    }
    for source in 0..nodes.len() {
        let NodeKind::Source(plan) = &nodes[source].kind else {
            continue;
        };
        let mut fields: BTreeSet<FieldId> = BTreeSet::new();
        fields.extend(plan.event_time);
        fields.extend(plan.dedup.as_ref().map(|d| d.field));
        let mut seen: HashSet<(usize, Port)> = HashSet::new();
        let mut stack = vec![(source, Port::Main)];
        while let Some((node, port)) = stack.pop() {
            if !seen.insert((node, port)) {
                continue;
            }
            for &(read_port, consumer) in &consumers[node] {
                if read_port != port {
                    continue;
                }
                match &nodes[consumer].kind {
                    NodeKind::Filter(filter) => {
                        fields.extend(filter.expr.fields());
                        stack.push((consumer, Port::Main));
                    }
                    NodeKind::Window(window) => {
                        fields.extend(&window.key);
                        fields.extend(window.aggregates.iter().filter_map(|a| a.field));
                        fields.extend(window.aggregates.iter().filter_map(|a| a.by));
                        stack.push((consumer, Port::Late));
                    }
                    NodeKind::Sink(_) | NodeKind::Source(_) => {}
                }
            }
        }
        if let NodeKind::Source(plan) = &mut nodes[source].kind {
            plan.projection = fields.into_iter().collect();
        }
    }
}
