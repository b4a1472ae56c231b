//! The job's DAG: one namespace for all nodes, `input` references resolved
//! to nodes and ports, cycles found and named, and a topological order.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::Range;

use crate::diagnostic::{Diagnostic, LineIndex};
use crate::plan::Port;
use crate::spec::{Spanned, SpecRead, StringOrList};

/// Which section a node is declared in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    Source,
    Filter,
    Window,
    Sink,
}

impl Section {
    pub(crate) fn noun(self) -> &'static str {
        match self {
            Section::Source => "source",
            Section::Filter => "filter",
            Section::Window => "window",
            Section::Sink => "sink",
        }
    }

    fn from_key(section: &str) -> Section {
        match section {
            "sources" => Section::Source,
            "filters" => Section::Filter,
            "windows" => Section::Window,
            _ => Section::Sink,
        }
    }
}

/// A declared node.
#[derive(Debug)]
pub(crate) struct Decl {
    pub(crate) name: String,
    pub(crate) name_span: Range<usize>,
    pub(crate) section: Section,
    /// Index in the spec's list for that section; `None`: could not be read.
    pub(crate) index: Option<usize>,
}

/// A resolved input: which declared node, which port, where it is written.
#[derive(Debug, Clone)]
pub(crate) struct Input {
    pub(crate) decl: usize,
    pub(crate) port: Port,
    pub(crate) span: Range<usize>,
}

/// The resolved graph.
#[derive(Debug)]
pub(crate) struct Graph {
    /// Every node, in file order.
    pub(crate) decls: Vec<Decl>,
    /// Resolved inputs of each node (empty for sources). Inputs that could
    /// not be resolved are left out (and reported).
    pub(crate) inputs: Vec<Vec<Input>>,
    /// Whether all of a node's inputs resolved to readable nodes: only then
    /// is its input schema known.
    pub(crate) complete: Vec<bool>,
    /// The nodes outside cycles (and not downstream of one), inputs first,
    /// ties in file order.
    pub(crate) order: Vec<usize>,
}

/// Builds the graph from what was read, reporting name and input errors.
pub(crate) fn build(read: &SpecRead, text: &str, diagnostics: &mut Vec<Diagnostic>) -> Graph {
    let spec = &read.spec;
    let mut decls = Vec::new();
    let mut declare = |name: &Spanned<String>, section: Section, index: Option<usize>| {
        decls.push(Decl {
            name: name.get_ref().clone(),
            name_span: name.span(),
            section,
            index,
        });
    };
    for (i, node) in spec.sources.iter().enumerate() {
        declare(&node.name, Section::Source, Some(i));
    }
    for (i, node) in spec.filters.iter().enumerate() {
        declare(&node.name, Section::Filter, Some(i));
    }
    for (i, node) in spec.windows.iter().enumerate() {
        declare(&node.name, Section::Window, Some(i));
    }
    for (i, node) in spec.sinks.iter().enumerate() {
        declare(&node.name, Section::Sink, Some(i));
    }
    for (section, name, span) in &read.unreadable {
        decls.push(Decl {
            name: name.clone(),
            name_span: span.clone(),
            section: Section::from_key(section),
            index: None,
        });
    }
    decls.sort_by_key(|decl| decl.name_span.start);

    // One namespace: the first declaration of a name owns it.
    let lines = LineIndex::new(text);
    let mut by_name: HashMap<&str, usize> = HashMap::new();
    for (i, decl) in decls.iter().enumerate() {
        if !is_valid_name(&decl.name) {
            diagnostics.push(Diagnostic::new(
                decl.name_span.clone(),
                format!(
                    "invalid name `{}`: names use letters, digits, `_` and `-`",
                    decl.name
                ),
            ));
        }
        if let Some(&first) = by_name.get(decl.name.as_str()) {
            let (line, _) = lines.line_col(decls[first].name_span.start);
            diagnostics.push(Diagnostic::new(
                decl.name_span.clone(),
                format!(
                    "duplicate name `{}`: the {} on line {line} has it already (sources, filters, windows and sinks share one namespace)",
                    decl.name,
                    decls[first].section.noun()
                ),
            ));
        } else {
            by_name.insert(&decl.name, i);
        }
    }

    let mut inputs = Vec::with_capacity(decls.len());
    let mut complete = Vec::with_capacity(decls.len());
    for decl in &decls {
        let written = decl.index.and_then(|i| match decl.section {
            Section::Source => None,
            Section::Filter => Some(&spec.filters[i].spec.get_ref().input),
            Section::Window => Some(&spec.windows[i].spec.get_ref().input),
            Section::Sink => Some(spec.sinks[i].spec.get_ref().input()),
        });
        let Some(written) = written else {
            inputs.push(Vec::new());
            complete.push(decl.index.is_some());
            continue;
        };
        let (resolved, all) = resolve_inputs(decl, written, &decls, &by_name, diagnostics);
        inputs.push(resolved);
        complete.push(all);
    }

    let order = order_and_report_cycles(&decls, &inputs, diagnostics);
    Graph {
        decls,
        inputs,
        complete,
        order,
    }
}

/// Node names: letters, digits, `_`, `-` (no dots: `name.late` addresses
/// a side output).
fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Resolves one node's `input`. Returns the resolved inputs and whether
/// every entry resolved to a readable node.
fn resolve_inputs(
    decl: &Decl,
    written: &Spanned<StringOrList>,
    decls: &[Decl],
    by_name: &HashMap<&str, usize>,
    diagnostics: &mut Vec<Diagnostic>,
) -> (Vec<Input>, bool) {
    let entries = written.get_ref().entries(written.span());
    if entries.is_empty() {
        diagnostics.push(Diagnostic::new(
            written.span(),
            "`input` is empty: name at least one source, filter or window",
        ));
        return (Vec::new(), false);
    }
    let mut resolved = Vec::new();
    let mut all = true;
    let mut seen = HashSet::new();
    for (text, span) in entries {
        if !seen.insert(text.clone()) {
            diagnostics.push(Diagnostic::new(span, format!("`{text}` is listed twice")));
            continue;
        }
        match resolve_one(decl, &text, decls, by_name) {
            Ok(Some((target, port))) => resolved.push(Input {
                decl: target,
                port,
                span,
            }),
            // Refers to a node that could not be read: already reported.
            Ok(None) => all = false,
            Err(message) => {
                diagnostics.push(Diagnostic::new(span, message));
                all = false;
            }
        }
    }
    (resolved, all)
}

fn resolve_one(
    decl: &Decl,
    text: &str,
    decls: &[Decl],
    by_name: &HashMap<&str, usize>,
) -> Result<Option<(usize, Port)>, String> {
    let (name, port) = match by_name.get(text) {
        Some(_) => (text, None),
        None => match text.rsplit_once('.') {
            Some((name, port)) => (name, Some(port)),
            None => (text, None),
        },
    };
    let Some(&target) = by_name.get(name) else {
        return Err(unknown_input(name, decls));
    };
    let target_decl = &decls[target];
    let noun = target_decl.section.noun();
    let port = match port {
        None => {
            if target_decl.section == Section::Sink {
                return Err(format!("`{name}` is a sink: it has no output to read"));
            }
            Port::Main
        }
        Some("late") => {
            if target_decl.section != Section::Window {
                return Err(format!(
                    "`{name}` is a {noun}: only windows have a `.late` output"
                ));
            }
            if decl.section != Section::Sink {
                return Err(format!(
                    "only a sink can read `{text}` (late records, as they came) in this version"
                ));
            }
            Port::Late
        }
        Some("errors") => {
            if target_decl.section != Section::Source {
                return Err(format!(
                    "`{name}` is a {noun}: only sources have an `.errors` output"
                ));
            }
            if decl.section != Section::Sink {
                return Err(format!(
                    "only a sink can read `{text}` (records that could not be decoded)"
                ));
            }
            Port::Errors
        }
        Some(other) => {
            return Err(format!(
                "unknown output `.{other}` of `{name}`, expected `.late` (of a window) or `.errors` (of a source)"
            ))
        }
    };
    if target_decl.index.is_none() {
        return Ok(None);
    }
    Ok(Some((target, port)))
}

fn unknown_input(name: &str, decls: &[Decl]) -> String {
    let closest = decls
        .iter()
        .filter(|d| d.section != Section::Sink)
        .map(|d| (edit_distance(name, &d.name), &d.name))
        .filter(|(distance, candidate)| *distance <= 2 && *distance < candidate.len())
        .min();
    match closest {
        Some((_, candidate)) => format!("unknown input `{name}`, did you mean `{candidate}`?"),
        None => format!("unknown input `{name}`: no source, filter or window has this name"),
    }
}

/// Levenshtein distance, for "did you mean" suggestions.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// Kahn's algorithm, smallest file position first. Nodes left over are on
/// or behind a cycle: each cycle is reported once, at the input (of its
/// first-declared node) that closes it.
fn order_and_report_cycles(
    decls: &[Decl],
    inputs: &[Vec<Input>],
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<usize> {
    let mut waiting: Vec<usize> = inputs.iter().map(Vec::len).collect();
    let mut consumers = vec![Vec::new(); decls.len()];
    for (consumer, node_inputs) in inputs.iter().enumerate() {
        for input in node_inputs {
            consumers[input.decl].push(consumer);
        }
    }
    let mut ready: BTreeSet<usize> = (0..decls.len()).filter(|d| waiting[*d] == 0).collect();
    let mut order = Vec::with_capacity(decls.len());
    while let Some(next) = ready.pop_first() {
        order.push(next);
        for &consumer in &consumers[next] {
            waiting[consumer] -= 1;
            if waiting[consumer] == 0 {
                ready.insert(consumer);
            }
        }
    }
    if order.len() == decls.len() {
        return order;
    }

    let mut reported = vec![false; decls.len()];
    for start in 0..decls.len() {
        if waiting[start] == 0 || reported[start] {
            continue;
        }
        // Walk upstream through left-over inputs until a node repeats.
        let mut path = vec![start];
        let mut position = HashMap::from([(start, 0usize)]);
        let cycle = loop {
            let Some(&current) = path.last() else {
                break None;
            };
            let Some(upstream) = inputs[current]
                .iter()
                .find(|input| waiting[input.decl] > 0)
                .map(|input| input.decl)
            else {
                break None;
            };
            if let Some(&at) = position.get(&upstream) {
                break Some(path[at..].to_vec());
            }
            position.insert(upstream, path.len());
            path.push(upstream);
        };
        let Some(cycle) = cycle else { continue };
        if cycle.iter().any(|d| reported[*d]) {
            continue;
        }
        for &d in &cycle {
            reported[d] = true;
        }
        // `cycle[i]` reads `cycle[i + 1]`: data flows the other way.
        let Some(anchor) = (0..cycle.len()).min_by_key(|i| cycle[*i]) else {
            continue;
        };
        let mut names = Vec::with_capacity(cycle.len() + 1);
        for step in 0..=cycle.len() {
            let i = (anchor + cycle.len() - step % cycle.len()) % cycle.len();
            names.push(decls[cycle[i]].name.as_str());
        }
        let reads = cycle[(anchor + 1) % cycle.len()];
        let span = inputs[cycle[anchor]]
            .iter()
            .find(|input| input.decl == reads)
            .map_or(decls[cycle[anchor]].name_span.clone(), |input| {
                input.span.clone()
            });
        diagnostics.push(Diagnostic::new(
            span,
            format!("cycle in inputs: `{}`", names.join(" -> ")),
        ));
    }
    order
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("clicks", "clicks"), 0);
        assert_eq!(edit_distance("clickz", "clicks"), 1);
        assert_eq!(edit_distance("", "ab"), 2);
        assert_eq!(edit_distance("kinesys", "kinesis"), 1);
    }

    #[test]
    fn names_are_checked() {
        assert!(is_valid_name("per-user_1"));
        assert!(!is_valid_name("a.b"));
        assert!(!is_valid_name(""));
    }
}
