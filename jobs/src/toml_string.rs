//! Positions inside TOML strings: maps a byte offset in a string's value
//! (as serde hands it over, escapes decoded) back to a byte offset in the
//! job file, so an error inside a `where` expression or an aggregate call
//! points at the right column even after `\"`, `\u00e9` or a line-ending
//! backslash.
//!
//! The raw token is re-scanned here with TOML's escape rules and checked
//! against the decoded value; if they ever disagree, every offset maps to
//! the start of the string (a less precise caret, never a wrong one).

use std::ops::Range;

/// Offsets of one string value in the job file.
#[derive(Debug)]
pub(crate) struct StringOffsets {
    /// (offset in the value, offset in the file) at each value character.
    starts: Vec<(usize, usize)>,
    /// File offset just past the value's last character.
    end: usize,
}

impl StringOffsets {
    /// Maps the string token at `span` of `file`, whose decoded value is
    /// `value`.
    pub(crate) fn new(file: &str, span: Range<usize>, value: &str) -> StringOffsets {
        scan(file, span.clone(), value).unwrap_or_else(|| StringOffsets {
            starts: Vec::new(),
            end: span.start,
        })
    }

    /// The file offset of a byte offset in the value.
    pub(crate) fn file_offset(&self, offset: usize) -> usize {
        let Some(&(last_value, _)) = self.starts.last() else {
            return self.end;
        };
        if offset > last_value {
            return self.end;
        }
        match self.starts.binary_search_by_key(&offset, |(v, _)| *v) {
            Ok(i) => self.starts[i].1,
            // Inside a multi-byte character: its start.
            Err(i) => self.starts[i.saturating_sub(1)].1,
        }
    }

    /// The file span of a span in the value.
    pub(crate) fn file_span(&self, span: Range<usize>) -> Range<usize> {
        let start = self.file_offset(span.start);
        let end = if span.end > span.start {
            // The end of the last character inside the span.
            let last = self.file_offset(span.end - 1);
            let next = self.file_offset(span.end);
            if next > last {
                next
            } else {
                last + 1
            }
        } else {
            start
        };
        start..end.max(start)
    }
}

fn scan(file: &str, span: Range<usize>, value: &str) -> Option<StringOffsets> {
    let raw = file.get(span.clone())?;
    let (quote_len, basic) = if raw.starts_with("\"\"\"") {
        (3, true)
    } else if raw.starts_with("'''") {
        (3, false)
    } else if raw.starts_with('"') {
        (1, true)
    } else if raw.starts_with('\'') {
        (1, false)
    } else {
        return None;
    };
    if raw.len() < 2 * quote_len {
        return None;
    }
    let mut content_start = span.start + quote_len;
    let content_end = span.end - quote_len;
    if quote_len == 3 {
        // A newline right after the opening delimiter is not part of the value.
        let rest = file.get(content_start..content_end)?;
        if rest.starts_with("\r\n") {
            content_start += 2;
        } else if rest.starts_with('\n') {
            content_start += 1;
        }
    }
    let content = file.get(content_start..content_end)?;

    let mut starts = Vec::with_capacity(value.len());
    let mut decoded = value.char_indices().peekable();
    let mut raw_chars = content.char_indices().peekable();
    while let Some((at, c)) = raw_chars.next() {
        let file_at = content_start + at;
        if basic && c == '\\' {
            let (_, kind) = raw_chars.next()?;
            let produced = match kind {
                'b' => '\u{8}',
                't' => '\t',
                'n' => '\n',
                'f' => '\u{c}',
                'r' => '\r',
                'e' => '\u{1b}',
                '"' => '"',
                '\\' => '\\',
                'u' | 'U' | 'x' => {
                    let digits = match kind {
                        'u' => 4,
                        'U' => 8,
                        _ => 2,
                    };
                    let mut code = 0u32;
                    for _ in 0..digits {
                        let (_, digit) = raw_chars.next()?;
                        code = code * 16 + digit.to_digit(16)?;
                    }
                    char::from_u32(code)?
                }
                c if c.is_whitespace() => {
                    // Line-ending backslash: drops all whitespace up to the
                    // next non-whitespace character.
                    while raw_chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
                    continue;
                }
                _ => return None,
            };
            let (value_at, expected) = decoded.next()?;
            if expected != produced {
                return None;
            }
            starts.push((value_at, file_at));
            continue;
        }
        if c == '\r' && raw_chars.peek().map(|(_, c)| *c) == Some('\n') {
            // A CRLF in a multi-line string may be decoded as `\n` alone.
            if decoded.peek().map(|(_, c)| *c) == Some('\n') {
                raw_chars.next();
                let (value_at, _) = decoded.next()?;
                starts.push((value_at, file_at));
                continue;
            }
        }
        let (value_at, expected) = decoded.next()?;
        if expected != c {
            return None;
        }
        starts.push((value_at, file_at));
    }
    if decoded.next().is_some() {
        return None;
    }
    Some(StringOffsets {
        starts,
        end: content_end,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// The file offset of `needle` in the value, mapped back, must be where
    /// `needle_in_file` is in the file.
    fn check(file: &str, value: &str, needle: &str, needle_in_file: &str) {
        let start = file.find(['"', '\'']).unwrap();
        let end = file.rfind(['"', '\'']).unwrap() + 1;
        let offsets = StringOffsets::new(file, start..end, value);
        let at = value.find(needle).unwrap();
        let span = offsets.file_span(at..at + needle.len());
        assert_eq!(&file[span], needle_in_file, "{file}");
    }

    #[test]
    fn plain_strings_shift_by_their_quotes() {
        check("w = \"a > 1\"", "a > 1", ">", ">");
        check("w = 'a > 1'", "a > 1", ">", ">");
        check("w = \"é > 1\"", "é > 1", ">", ">");
    }

    #[test]
    fn escapes_are_followed() {
        check(r#"w = "x == \"a\" && yy""#, "x == \"a\" && yy", "yy", "yy");
        check(r#"w = "x == '\u00e9' && q""#, "x == 'é' && q", "q", "q");
        check(
            r#"w = "x == '\u00e9' && q""#,
            "x == 'é' && q",
            "é",
            "\\u00e9",
        );
    }

    #[test]
    fn multi_line_strings_drop_the_first_newline_and_line_continuations() {
        check("w = '''\nab && cd'''", "ab && cd", "cd", "cd");
        check("w = \"\"\"\nab && \\\n    cd\"\"\"", "ab && cd", "cd", "cd");
        check("w = \"\"\"\r\na\r\nb\"\"\"", "a\nb", "b", "b");
    }

    #[test]
    fn a_mismatch_maps_to_the_string_start() {
        let file = "w = \"abc\"";
        let offsets = StringOffsets::new(file, 4..9, "xyz");
        assert_eq!(offsets.file_span(1..2), 4..5);
    }

    #[test]
    fn end_of_value_maps_to_the_closing_quote() {
        let file = "w = \"ab\"";
        let offsets = StringOffsets::new(file, 4..8, "ab");
        assert_eq!(offsets.file_span(2..2), 7..7);
    }
}
