//! Located error messages about a job file, and their rendering.
//!
//! A [`Diagnostic`] is a byte range in the job file plus a message. The
//! compiler collects every diagnostic it finds before failing, so a user
//! sees all problems at once; [`render`] prints each one as
//! `PATH:LINE:COL: message` followed by the offending line with a caret,
//! drawn by annotate-snippets.

use std::fmt::Write as _;
use std::ops::Range;

use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};

/// One problem in a job file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Byte offsets in the job file of the text at fault (may be empty: a
    /// position between two characters).
    pub span: Range<usize>,
    /// What is wrong: lowercase, no trailing period.
    pub message: String,
}

impl Diagnostic {
    /// A diagnostic at `span`.
    pub fn new(span: Range<usize>, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            span,
            message: message.into(),
        }
    }
}

/// Sorts diagnostics by position (then message) and drops exact duplicates.
pub(crate) fn sort_and_dedup(diagnostics: &mut Vec<Diagnostic>) {
    diagnostics.sort_by(|a, b| {
        (a.span.start, a.span.end, &a.message).cmp(&(b.span.start, b.span.end, &b.message))
    });
    diagnostics.dedup();
}

/// Line starts of a text, to turn byte offsets into lines and columns.
pub(crate) struct LineIndex<'a> {
    text: &'a str,
    /// Byte offset where each line starts; the first is 0.
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(text: &'a str) -> LineIndex<'a> {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { text, starts }
    }

    /// Clamps an offset into the text and back onto a character boundary.
    fn clamp(&self, offset: usize) -> usize {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        offset
    }

    /// 0-based line index of an offset.
    fn line_of(&self, offset: usize) -> usize {
        match self.starts.binary_search(&offset) {
            Ok(line) => line,
            Err(next) => next.saturating_sub(1),
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub(crate) fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = self.clamp(offset);
        let line = self.line_of(offset);
        let start = self.starts.get(line).copied().unwrap_or(0);
        let column = self.text[start..offset].chars().count() + 1;
        (line + 1, column)
    }

    /// The line holding `offset`: its byte range, without the line break.
    fn line_range(&self, offset: usize) -> Range<usize> {
        let line = self.line_of(self.clamp(offset));
        let start = self.starts.get(line).copied().unwrap_or(0);
        let mut end = self
            .starts
            .get(line + 1)
            .map_or(self.text.len(), |next| next - 1);
        if end > start && self.text.as_bytes().get(end - 1) == Some(&b'\r') {
            end -= 1;
        }
        start..end.max(start)
    }
}

/// Renders diagnostics about `text` (the job file at `path`, as the user
/// named it): for each, a line `PATH:LINE:COL: message`, then the source line
/// with a caret under the span. Blocks are separated by an empty line.
pub(crate) fn render(path: &str, text: &str, diagnostics: &[Diagnostic]) -> String {
    let index = LineIndex::new(text);
    let renderer = Renderer::plain();
    let mut out = String::new();
    for (i, diagnostic) in diagnostics.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let start = index.clamp(diagnostic.span.start);
        let (line, column) = index.line_col(start);
        let _ = writeln!(out, "{path}:{line}:{column}: {}", diagnostic.message);

        // Only the first line of a span is shown: a caret run under one line
        // reads better than annotate-snippets' multi-line brackets.
        let line_range = index.line_range(start);
        let end = index
            .clamp(diagnostic.span.end.max(start))
            .min(line_range.end);
        let source = &text[line_range.clone()];
        let span = (start - line_range.start)..(end - line_range.start);
        let report = [Group::with_level(Level::ERROR).element(
            Snippet::source(source)
                .line_start(line)
                .annotation(AnnotationKind::Primary.span(span)),
        )];
        out.push_str(&renderer.render(&report));
        out.push('\n');
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_count_characters() {
        let index = LineIndex::new("ab\né = 1\n");
        assert_eq!(index.line_col(0), (1, 1));
        assert_eq!(index.line_col(2), (1, 3));
        assert_eq!(index.line_col(3), (2, 1));
        // After the two-byte `é`.
        assert_eq!(index.line_col(5), (2, 2));
        // Past the end and inside a character are clamped.
        assert_eq!(index.line_col(4), (2, 1));
        assert_eq!(index.line_col(100), (3, 1));
    }

    #[test]
    fn renders_header_line_and_caret() {
        let text = "[job]\nname = \"x\"\nfolow = true\n";
        let rendered = render(
            "job.toml",
            text,
            &[Diagnostic::new(17..22, "unknown key `folow`")],
        );
        assert_eq!(
            rendered,
            "job.toml:3:1: unknown key `folow`\n  |\n3 | folow = true\n  | ^^^^^\n"
        );
    }

    #[test]
    fn renders_empty_and_out_of_range_spans() {
        let text = "a = 1";
        let rendered = render("j.toml", text, &[Diagnostic::new(50..60, "at the end")]);
        assert_eq!(
            rendered,
            "j.toml:1:6: at the end\n  |\n1 | a = 1\n  |      ^\n"
        );
        let rendered = render("j.toml", "", &[Diagnostic::new(0..0, "empty file")]);
        assert!(
            rendered.starts_with("j.toml:1:1: empty file\n"),
            "{rendered}"
        );
    }

    #[test]
    fn multi_line_spans_show_their_first_line() {
        let text = "[sources.a]\ntype = \"file\"\n";
        let rendered = render("j.toml", text, &[Diagnostic::new(0..25, "missing key")]);
        assert_eq!(
            rendered,
            "j.toml:1:1: missing key\n  |\n1 | [sources.a]\n  | ^^^^^^^^^^^\n"
        );
    }
}
