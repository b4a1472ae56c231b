//! Compiling windows, and the row schemas that let filters and windows
//! downstream of a window be checked: a window's output rows have exactly
//! `window_start`, `window_end`, its key fields and its aggregates.
//! Sources are schemaless, so anything read from them is accepted.

use std::ops::Range;
use std::rc::Rc;

use super::aggregate::parse_aggregate;
use super::Ctx;
use crate::duration::millis;
use crate::plan::{AggregatePlan, WindowKind, WindowPlan};
use crate::spec::WindowSpec;

/// The time columns every window output row has.
pub(crate) const WINDOW_START: &str = "window_start";
pub(crate) const WINDOW_END: &str = "window_end";

/// The type of a column of window output rows, as far as it is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ColumnType {
    /// An RFC 3339 string.
    Time,
    /// A number (every aggregate).
    Number,
    /// A key field: whatever the input had.
    Any,
}

/// What the rows of a stream are known to contain.
#[derive(Debug, Clone)]
pub(crate) enum Schema {
    /// Records from a source: any field may be there.
    Any,
    /// Rows from one or more windows.
    Rows(Rc<RowSchema>),
}

/// The columns of window output rows.
#[derive(Debug)]
pub(crate) struct RowSchema {
    /// The windows these rows come from.
    windows: Vec<String>,
    columns: Vec<(String, ColumnType)>,
}

impl Schema {
    /// The schema of a union of streams.
    pub(crate) fn union(schemas: impl IntoIterator<Item = Schema>) -> Schema {
        let mut windows = Vec::new();
        let mut columns: Vec<(String, ColumnType)> = Vec::new();
        for schema in schemas {
            let Schema::Rows(rows) = schema else {
                return Schema::Any;
            };
            for window in &rows.windows {
                if !windows.contains(window) {
                    windows.push(window.clone());
                }
            }
            for (name, kind) in &rows.columns {
                match columns.iter_mut().find(|(n, _)| n == name) {
                    Some((_, existing)) if existing != kind => *existing = ColumnType::Any,
                    Some(_) => {}
                    None => columns.push((name.clone(), *kind)),
                }
            }
        }
        if windows.is_empty() {
            return Schema::Any;
        }
        Schema::Rows(Rc::new(RowSchema { windows, columns }))
    }

    /// The type of a field, or a message saying it is not there.
    pub(crate) fn column(&self, path: &str) -> Result<ColumnType, String> {
        let Schema::Rows(rows) = self else {
            return Ok(ColumnType::Any);
        };
        if let Some((_, kind)) = rows.columns.iter().find(|(name, _)| name == path) {
            return Ok(*kind);
        }
        let list = |items: &mut dyn Iterator<Item = &String>| {
            items
                .map(|s| format!("`{s}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let windows = list(&mut rows.windows.iter());
        let columns = list(&mut rows.columns.iter().map(|(name, _)| name));
        let windows_noun = if rows.windows.len() == 1 {
            "window"
        } else {
            "windows"
        };
        Err(format!(
            "field `{path}` is not in the rows of {windows_noun} {windows}, which have {columns}"
        ))
    }

    /// The window a time column comes from, for messages.
    fn source_windows(&self) -> String {
        match self {
            Schema::Any => String::new(),
            Schema::Rows(rows) => {
                let names = rows
                    .windows
                    .iter()
                    .map(|w| format!("`{w}`"))
                    .collect::<Vec<_>>()
                    .join(", ");
                let noun = if rows.windows.len() == 1 {
                    "window"
                } else {
                    "windows"
                };
                format!("{noun} {names}")
            }
        }
    }
}

/// Compiles a window; returns its plan (if it had no errors) and the
/// schema of its output rows.
pub(crate) fn compile_window(
    ctx: &mut Ctx<'_>,
    name: &str,
    name_span: Range<usize>,
    spec: &WindowSpec,
    input: &Schema,
) -> (Option<WindowPlan>, Schema) {
    let errors_before = ctx.diagnostics.len();

    // Key fields.
    let mut key = Vec::new();
    let mut key_names = Vec::new();
    if let Some(written) = &spec.key {
        for (field, span) in written.get_ref().entries(written.span()) {
            if key_names.contains(&field) {
                ctx.error(span, format!("duplicate key field `{field}`"));
                continue;
            }
            if field == WINDOW_START || field == WINDOW_END {
                ctx.error(
                    span,
                    format!(
                        "key field `{field}` would clash with the window's own `{field}` column"
                    ),
                );
                continue;
            }
            if let Some(id) = ctx.field_at(&field, span.clone()) {
                if let Err(message) = input.column(&field) {
                    ctx.error(span, message);
                }
                key.push(id);
            }
            key_names.push(field);
        }
    }

    let kind = window_kind(ctx, name, name_span, spec);
    let allowed_lateness_ms = spec
        .allowed_lateness
        .as_ref()
        .and_then(|d| ctx.duration(d))
        .map_or(0, millis);

    // Aggregates.
    let mut aggregates = Vec::new();
    if let Some(written) = &spec.aggregates {
        for (column, call) in &written.get_ref().0 {
            let column_name = column.get_ref().as_str();
            if column_name == WINDOW_START || column_name == WINDOW_END {
                ctx.error(
                    column.span(),
                    format!("`{column_name}` is a column of every window's rows: name the aggregate differently"),
                );
            } else if key_names.iter().any(|k| k == column_name) {
                ctx.error(
                    column.span(),
                    format!("aggregate `{column_name}` has the same name as a key field"),
                );
            } else if column_name.is_empty() {
                ctx.error(column.span(), "empty aggregate name");
            }
            let offsets = ctx.string_offsets(call);
            let parsed = match parse_aggregate(call.get_ref()) {
                Ok(parsed) => parsed,
                Err(e) => {
                    ctx.error(offsets.file_span(e.span), e.message);
                    continue;
                }
            };
            let function = function_name(parsed.function);
            let by = parsed.by.and_then(|(path, span)| {
                let span = offsets.file_span(span);
                let why = format!("`{function}` picks by a number");
                argument_field(ctx, input, &path, span, Some(&why))
            });
            let field = parsed.field.and_then(|(path, span)| {
                let span = offsets.file_span(span);
                let why = format!("`{function}` needs a number");
                let numeric = parsed.function.needs_number().then_some(why.as_str());
                argument_field(ctx, input, &path, span, numeric)
            });
            aggregates.push(AggregatePlan {
                name: column_name.to_string(),
                function: parsed.function,
                field,
                by,
            });
        }
    }

    let mut columns = vec![
        (WINDOW_START.to_string(), ColumnType::Time),
        (WINDOW_END.to_string(), ColumnType::Time),
    ];
    columns.extend(key_names.iter().map(|k| (k.clone(), ColumnType::Any)));
    columns.extend(aggregates.iter().map(|a| {
        let kind = if a.function.carries_a_value() {
            ColumnType::Any
        } else {
            ColumnType::Number
        };
        (a.name.clone(), kind)
    }));
    let output = Schema::Rows(Rc::new(RowSchema {
        windows: vec![name.to_string()],
        columns,
    }));

    let plan = match kind {
        Some(kind) if ctx.diagnostics.len() == errors_before => Some(WindowPlan {
            key,
            key_names,
            kind,
            allowed_lateness_ms,
            aggregates,
        }),
        _ => None,
    };
    (plan, output)
}

/// The field an aggregate reads at `path` in rows of `input`; when
/// `numeric` says why a number is needed, a time column is an error.
fn argument_field(
    ctx: &mut Ctx<'_>,
    input: &Schema,
    path: &str,
    span: Range<usize>,
    numeric: Option<&str>,
) -> Option<crate::value::FieldId> {
    match (input.column(path), numeric) {
        (Err(message), _) => ctx.error(span.clone(), message),
        (Ok(ColumnType::Time), Some(why)) => ctx.error(
            span.clone(),
            format!(
                "{why}, but `{path}` is a time (an RFC 3339 string) in the rows of {}",
                input.source_windows()
            ),
        ),
        _ => {}
    }
    ctx.field_at(path, span)
}

fn function_name(function: crate::plan::AggregateFunction) -> &'static str {
    use crate::plan::AggregateFunction as F;
    match function {
        F::Count => "count",
        F::Sum => "sum",
        F::Min => "min",
        F::Max => "max",
        F::Avg => "avg",
        F::CountDistinct => "count_distinct",
        F::Percentile(_) => "percentile",
        F::Variance => "variance",
        F::Stddev => "stddev",
        F::CountDistinctApprox => "count_distinct_approx",
        F::MaxBy => "max_by",
        F::MinBy => "min_by",
        F::First => "first",
        F::Last => "last",
        F::TopK(_) => "top_k",
    }
}

/// Exactly one of `tumbling`, `sliding`, `session`.
fn window_kind(
    ctx: &mut Ctx<'_>,
    name: &str,
    name_span: Range<usize>,
    spec: &WindowSpec,
) -> Option<WindowKind> {
    let mut given = Vec::new();
    if let Some(t) = &spec.tumbling {
        given.push(("tumbling", t.span()));
    }
    if let Some(s) = &spec.sliding {
        given.push(("sliding", s.span()));
    }
    if let Some(s) = &spec.session {
        given.push(("session", s.span()));
    }
    match given.as_slice() {
        [] => {
            ctx.error(
                name_span,
                format!(
                    "window `{name}` has no kind: add `tumbling = \"1m\"`, `sliding = {{ size = \"5m\", slide = \"1m\" }}` or `session = {{ gap = \"30m\" }}`"
                ),
            );
            return None;
        }
        [_] => {}
        [(first, _), (second, span), ..] => {
            ctx.error(
                span.clone(),
                format!(
                    "a window has exactly one kind, but `{name}` has both `{first}` and `{second}`"
                ),
            );
            return None;
        }
    }
    if let Some(size) = &spec.tumbling {
        let size_ms = millis(ctx.positive_duration(size, "window size")?);
        return Some(WindowKind::Tumbling { size_ms });
    }
    if let Some(sliding) = &spec.sliding {
        let sliding = sliding.get_ref();
        let size = ctx.positive_duration(&sliding.size, "window size");
        let slide = ctx.positive_duration(&sliding.slide, "slide");
        let (size_ms, slide_ms) = (millis(size?), millis(slide?));
        if slide_ms > size_ms {
            ctx.error(
                sliding.slide.span(),
                format!(
                    "slide `{}` is longer than the window size `{}`",
                    sliding.slide.get_ref(),
                    sliding.size.get_ref()
                ),
            );
            return None;
        }
        if size_ms % slide_ms != 0 {
            ctx.error(
                sliding.slide.span(),
                format!(
                    "slide `{}` does not divide the window size `{}`",
                    sliding.slide.get_ref(),
                    sliding.size.get_ref()
                ),
            );
            return None;
        }
        return Some(WindowKind::Sliding { size_ms, slide_ms });
    }
    let session = spec.session.as_ref()?.get_ref();
    let gap = ctx.positive_duration(&session.gap, "session gap");
    let max_duration = match &session.max_duration {
        Some(written) => Some(ctx.positive_duration(written, "session max_duration")?),
        None => None,
    };
    let gap_ms = millis(gap?);
    let max_duration_ms = max_duration.map(millis);
    if let (Some(max), Some(written)) = (max_duration_ms, &session.max_duration) {
        if max < gap_ms {
            ctx.error(
                written.span(),
                format!(
                    "max_duration `{}` is shorter than the gap `{}`: a session would be cut before it could pause",
                    written.get_ref(),
                    session.gap.get_ref()
                ),
            );
            return None;
        }
    }
    Some(WindowKind::Session {
        gap_ms,
        max_duration_ms,
    })
}
