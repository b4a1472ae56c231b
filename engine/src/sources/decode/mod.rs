//! Decoding JSON records into only the fields a job reads.
//!
//! A [`Projection`] is a small trie of the field paths a source must decode
//! (computed once by the job compiler). Decoding checks the line is UTF-8
//! once, then walks its JSON text in one pass with a hand-written scanner:
//! referenced scalars are stored into their slots (strings borrowed from the
//! line unless they hold escapes), everything else is skipped without being
//! built. Skipping still validates: a line is accepted exactly when it is one
//! JSON object (RFC 8259), as `serde_json` would accept it; the differential
//! tests below hold the two to that.

use std::borrow::Cow;
use std::fmt;

use kflow_jobs::{FieldPath, Value};

use crate::dataflow::json;

/// Nesting deeper than this is rejected (as `serde_json` does), so a hostile
/// line cannot exhaust the stack.
const MAX_DEPTH: usize = 128;

/// The powers of ten an f64 holds exactly.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// Why a line could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Default, Clone)]
struct Node {
    slot: Option<usize>,
    children: Vec<(Box<str>, Node)>,
    /// This node's place in [`Projection::shapes`].
    id: usize,
}

impl Node {
    /// Which child `name` is.
    fn child_index(&self, name: &str) -> Option<usize> {
        self.children.iter().position(|(n, _)| &**n == name)
    }
}

/// The field paths one source decodes; slot `i` holds `paths[i]`.
#[derive(Debug, Clone)]
pub struct Projection {
    root: Node,
    slots: usize,
    /// Per node (by [`Node::id`]), the keys of the last object decoded at
    /// it, in order (see [`Shape`]).
    shapes: Vec<Shape>,
}

/// The keys of the last object decoded at one node, in order, each with
/// the child it named: producers write every record with the same keys in
/// the same order, so the key at a field's place is most likely the one
/// the last record had there. A guess is the bytes the last record had
/// from after the key's opening quote to its value: the key, its closing
/// quote and the `:` with any whitespace. Bytes equal to them scan the
/// same way (the key holds no quote, backslash or control character), so
/// the key and its colon are taken with one comparison instead of being
/// scanned and the key looked up among the node's children. A wrong guess
/// costs that comparison and is replaced.
#[derive(Debug, Default, Clone)]
struct Shape {
    keys: Vec<Guess>,
}

/// One remembered key.
#[derive(Debug, Default, Clone)]
struct Guess {
    /// The key's text, its closing quote and the `:` after it with any
    /// whitespace around it: bytes known to scan as one key and its colon.
    text: Vec<u8>,
    /// The text's first 16 bytes as two little-endian words, zero-padded,
    /// and the masks of the bytes they hold: a key of up to 16 bytes is
    /// compared in two word compares instead of a `memcmp` call.
    words: [u64; 2],
    masks: [u64; 2],
    /// The child it names.
    child: Option<usize>,
}

impl Guess {
    /// Whether `rest` starts with the guessed key.
    fn matches(&self, rest: &[u8]) -> bool {
        match (rest.get(..16), self.text.len() <= 16) {
            (Some(head), true) => {
                let (a, b) = head.split_at(8);
                let word = |w: &[u8]| u64::from_le_bytes(w.try_into().unwrap_or_default());
                word(a) & self.masks[0] == self.words[0] && word(b) & self.masks[1] == self.words[1]
            }
            _ => rest.starts_with(&self.text),
        }
    }
}

impl Shape {
    /// Makes `text` (a key without escapes, its closing quote and the `:`
    /// after it with any whitespace, as scanned; the key names child
    /// `child`) the guess for field `field`; a shape only grows one field
    /// at a time.
    fn remember(&mut self, field: usize, text: &[u8], child: Option<usize>) {
        if field == self.keys.len() {
            self.keys.push(Guess::default());
        }
        let Some(guess) = self.keys.get_mut(field) else {
            return;
        };
        guess.child = child;
        guess.text.clear();
        guess.text.extend_from_slice(text);
        let mut head = [0u8; 16];
        let n = guess.text.len().min(16);
        head[..n].copy_from_slice(&guess.text[..n]);
        for (i, word) in head.chunks_exact(8).enumerate() {
            let held = n.saturating_sub(8 * i).min(8);
            guess.masks[i] = if held == 8 {
                u64::MAX
            } else {
                (1u64 << (8 * held)) - 1
            };
            guess.words[i] = u64::from_le_bytes(word.try_into().unwrap_or_default());
        }
    }
}

impl Projection {
    /// A projection decoding `paths` into slots `0..paths.len()`.
    pub fn new<'a>(paths: impl IntoIterator<Item = &'a FieldPath>) -> Projection {
        let mut root = Node::default();
        let mut slots = 0;
        let mut nodes = 1;
        for path in paths {
            let mut node = &mut root;
            for segment in &path.segments {
                let at = match node.children.iter().position(|(n, _)| **n == **segment) {
                    Some(i) => i,
                    None => {
                        let child = Node {
                            id: nodes,
                            ..Node::default()
                        };
                        nodes += 1;
                        node.children.push((segment.as_str().into(), child));
                        node.children.len() - 1
                    }
                };
                node = &mut node.children[at].1;
            }
            node.slot = Some(slots);
            slots += 1;
        }
        Projection {
            root,
            slots,
            shapes: vec![Shape::default(); nodes],
        }
    }

    /// Number of slots.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Decodes `line` (one JSON object) into `slots`, which must have
    /// [`Projection::slots`] entries; fields the line lacks become null.
    ///
    /// # Errors
    /// [`DecodeError`] when the line is not a single JSON object in UTF-8.
    pub fn decode<'a>(
        &mut self,
        line: &'a [u8],
        slots: &mut [Value<'a>],
    ) -> Result<(), DecodeError> {
        let text = simdutf8::compat::from_utf8(line).map_err(|e| {
            for slot in slots.iter_mut() {
                *slot = Value::Null;
            }
            DecodeError(format!(
                "invalid JSON: invalid UTF-8 at column {}",
                e.valid_up_to() + 1
            ))
        })?;
        self.decode_str(text, slots)
    }

    /// [`Projection::decode`] for a line already known to be UTF-8 (a file
    /// source checks a whole block at once: one long check costs less than
    /// one per line).
    ///
    /// # Errors
    /// [`DecodeError`] when the line is not a single JSON object.
    pub fn decode_str<'a>(
        &mut self,
        text: &'a str,
        slots: &mut [Value<'a>],
    ) -> Result<(), DecodeError> {
        for slot in slots.iter_mut() {
            *slot = Value::Null;
        }
        let mut scan = Scanner {
            text,
            pos: 0,
            slots,
            shapes: &mut self.shapes,
        };
        scan.record(&self.root)
            .map_err(|(what, at)| DecodeError(format!("invalid JSON: {what} at column {}", at + 1)))
    }
}

/// A scan error: what was wrong and the byte offset where it was seen.
type ScanResult<T> = Result<T, (&'static str, usize)>;

struct Scanner<'a, 's> {
    text: &'a str,
    pos: usize,
    slots: &'s mut [Value<'a>],
    shapes: &'s mut [Shape],
}

/// A string's text: borrowed when it has no escapes.
enum Text<'a> {
    Borrowed(&'a str),
    Escaped { start: usize, end: usize },
}

impl<'a> Scanner<'a, '_> {
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn fail<T>(&self, what: &'static str) -> ScanResult<T> {
        Err((what, self.pos))
    }

    fn peek(&self) -> Option<u8> {
        self.bytes().get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    /// The whole line: one object and nothing but whitespace after it.
    fn record(&mut self, root: &Node) -> ScanResult<()> {
        self.skip_ws();
        match self.peek() {
            Some(b'{') => {}
            None => return self.fail("EOF while parsing a value"),
            Some(_) => {
                // Say "not an object" only of what is some other JSON.
                let rest = &self.bytes()[self.pos..];
                let other_json = matches!(rest[0], b'[' | b'"' | b'-' | b'0'..=b'9')
                    || [&b"true"[..], b"false", b"null"]
                        .iter()
                        .any(|word| rest.starts_with(word));
                return self.fail(if other_json {
                    "a record must be a JSON object"
                } else {
                    "expected value"
                });
            }
        }
        self.object(Some(root), 1)?;
        self.skip_ws();
        if self.pos < self.bytes().len() {
            return self.fail("trailing characters");
        }
        Ok(())
    }

    /// An object starting at `{`; fields named by `node`'s children are
    /// decoded, the others skipped.
    fn object(&mut self, node: Option<&Node>, depth: usize) -> ScanResult<()> {
        if self.open(b'}', depth)? {
            return Ok(());
        }
        let mut field = 0;
        loop {
            if self.peek() != Some(b'"') {
                return self.fail("expected a string key");
            }
            let child = match node {
                Some(n) if !n.children.is_empty() => self.key(n, field)?,
                _ => {
                    self.string()?;
                    self.colon()?;
                    None
                }
            };
            field += 1;
            self.value(child, depth)?;
            if self.closed(b'}', "EOF while parsing an object", "expected `,` or `}`")? {
                return Ok(());
            }
        }
    }

    /// The `:` after a key, and the whitespace around it.
    fn colon(&mut self) -> ScanResult<()> {
        self.skip_ws();
        if self.peek() != Some(b':') {
            return self.fail("expected `:`");
        }
        self.pos += 1;
        self.skip_ws();
        Ok(())
    }

    /// The key at `"` of field `field` of an object at `node` and the `:`
    /// after it, and the child the key names: the node's [`Shape`] is
    /// tried first.
    fn key<'n>(&mut self, node: &'n Node, field: usize) -> ScanResult<Option<&'n Node>> {
        let child = |index: Option<usize>| index.and_then(|i| node.children.get(i)).map(|c| &c.1);
        let start = self.pos + 1;
        let guessed = self
            .shapes
            .get(node.id)
            .and_then(|s| s.keys.get(field))
            .filter(|g| g.matches(&self.bytes()[start..]))
            .map(|g| (g.text.len(), g.child));
        if let Some((len, index)) = guessed {
            self.pos = start + len;
            // The guess may end inside a longer run of whitespace.
            self.skip_ws();
            return Ok(child(index));
        }
        let index = match self.string()? {
            Text::Borrowed(name) => {
                let index = node.child_index(name);
                self.colon()?;
                let text = &self.bytes()[start..self.pos];
                if let Some(shape) = self.shapes.get_mut(node.id) {
                    shape.remember(field, text, index);
                }
                index
            }
            // Not remembered: its bytes are not its name.
            Text::Escaped { start: from, end } => {
                let index = node.child_index(&self.unescape(from, end)?);
                self.colon()?;
                index
            }
        };
        Ok(child(index))
    }

    /// An array starting at `[`, skipped.
    fn array(&mut self, depth: usize) -> ScanResult<()> {
        if self.open(b']', depth)? {
            return Ok(());
        }
        loop {
            self.value(None, depth)?;
            if self.closed(b']', "EOF while parsing a list", "expected `,` or `]`")? {
                return Ok(());
            }
        }
    }

    /// Steps into an object or array at its opening byte; `true` when it
    /// is closed right away by `close`.
    fn open(&mut self, close: u8, depth: usize) -> ScanResult<bool> {
        if depth > MAX_DEPTH {
            return self.fail("recursion limit exceeded");
        }
        self.pos += 1;
        self.skip_ws();
        let empty = self.peek() == Some(close);
        if empty {
            self.pos += 1;
        }
        Ok(empty)
    }

    /// After an element: `,` and more to come (`false`), or `close` and
    /// the end of the object or array (`true`).
    fn closed(&mut self, close: u8, eof: &'static str, expected: &'static str) -> ScanResult<bool> {
        self.skip_ws();
        match self.peek() {
            Some(b',') => {
                self.pos += 1;
                self.skip_ws();
                Ok(false)
            }
            Some(b) if b == close => {
                self.pos += 1;
                Ok(true)
            }
            None => self.fail(eof),
            Some(_) => self.fail(expected),
        }
    }

    /// One value; stored when `node` has a slot.
    fn value(&mut self, node: Option<&Node>, depth: usize) -> ScanResult<()> {
        let slot = node.and_then(|n| n.slot);
        let value = match self.peek() {
            Some(b'"') => {
                let text = self.string()?;
                match (slot, text) {
                    (None, _) => return Ok(()),
                    (Some(_), Text::Borrowed(s)) => Value::Str(Cow::Borrowed(s)),
                    (Some(_), Text::Escaped { start, end }) => {
                        Value::Str(Cow::Owned(self.unescape(start, end)?))
                    }
                }
            }
            Some(b'{') => {
                self.object(node, depth + 1)?;
                Value::Other
            }
            Some(b'[') => {
                self.array(depth + 1)?;
                Value::Other
            }
            Some(b't') => {
                self.literal(b"true")?;
                Value::Bool(true)
            }
            Some(b'f') => {
                self.literal(b"false")?;
                Value::Bool(false)
            }
            Some(b'n') => {
                self.literal(b"null")?;
                Value::Null
            }
            Some(b'-' | b'0'..=b'9') => {
                let n = self.number(slot.is_some())?;
                Value::Num(n)
            }
            None => return self.fail("EOF while parsing a value"),
            Some(_) => return self.fail("expected value"),
        };
        if let Some(slot) = slot {
            self.slots[slot] = value;
        }
        Ok(())
    }

    fn literal(&mut self, word: &'static [u8]) -> ScanResult<()> {
        match self.bytes().get(self.pos..self.pos + word.len()) {
            Some(found) if found == word => {
                self.pos += word.len();
                Ok(())
            }
            _ => self.fail("expected ident"),
        }
    }

    /// A number: validated against the JSON grammar, and converted only
    /// when `wanted`.
    fn number(&mut self, wanted: bool) -> ScanResult<f64> {
        let start = self.pos;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        // Integer part: `0` or a non-zero digit and more digits.
        let mut mantissa: u64 = 0;
        let mut digits = 0;
        match self.peek() {
            Some(b'0') => {
                self.pos += 1;
                digits = 1;
            }
            Some(b'1'..=b'9') => {
                while let Some(d @ b'0'..=b'9') = self.peek() {
                    mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(d - b'0'));
                    digits += 1;
                    self.pos += 1;
                }
            }
            _ => return self.fail("invalid number"),
        }
        // Fraction digits join the mantissa: `12.75` is 1275 / 10^2.
        let mut scale = 0usize;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return self.fail("invalid number");
            }
            while let Some(d @ b'0'..=b'9') = self.peek() {
                mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(d - b'0'));
                digits += 1;
                scale += 1;
                self.pos += 1;
            }
        }
        let mut exponent = false;
        if let Some(b'e' | b'E') = self.peek() {
            exponent = true;
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            self.digits()?;
        }
        if !wanted {
            return Ok(0.0);
        }
        // Up to 15 digits the mantissa is exact in an f64 (< 2^53), and so
        // is 10^scale for scale <= 22; one IEEE division of two exact
        // values is correctly rounded, the same f64 `parse` gives (Clinger's
        // fast path).
        if let (false, true, Some(divisor)) = (exponent, digits <= 15, POW10.get(scale)) {
            let n = mantissa as f64 / divisor;
            return Ok(if negative { -n } else { n });
        }
        match self.text[start..self.pos].parse::<f64>() {
            Ok(n) if n.is_finite() => Ok(n),
            _ => Err(("number out of range", start)),
        }
    }

    /// One or more digits (a fraction or an exponent).
    fn digits(&mut self) -> ScanResult<()> {
        if !matches!(self.peek(), Some(b'0'..=b'9')) {
            return self.fail("invalid number");
        }
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        Ok(())
    }

    /// A string starting at `"`: checks it and returns its text.
    fn string(&mut self) -> ScanResult<Text<'a>> {
        self.pos += 1;
        let start = self.pos;
        let mut escaped = false;
        loop {
            self.pos += json::plain_run(&self.bytes()[self.pos..]);
            let Some(&byte) = self.bytes().get(self.pos) else {
                return self.fail("EOF while parsing a string");
            };
            if byte < 0x20 {
                return self
                    .fail("control character (\\u0000-\\u001F) found while parsing a string");
            }
            if byte == b'"' {
                let end = self.pos;
                self.pos += 1;
                return Ok(if escaped {
                    Text::Escaped { start, end }
                } else {
                    Text::Borrowed(&self.text[start..end])
                });
            }
            escaped = true;
            self.escape()?;
        }
    }

    /// Checks the escape at `\` and moves past it.
    fn escape(&mut self) -> ScanResult<()> {
        self.pos += 1;
        match self.peek() {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                self.pos += 1;
                Ok(())
            }
            Some(b'u') => {
                self.pos += 1;
                let unit = self.hex4()?;
                if (0xD800..0xDC00).contains(&unit) {
                    // A high surrogate must be followed by a low one.
                    if self.bytes().get(self.pos..self.pos + 2) != Some(b"\\u") {
                        return self.fail("lone leading surrogate in hex escape");
                    }
                    self.pos += 2;
                    let low = self.hex4()?;
                    if !(0xDC00..0xE000).contains(&low) {
                        return self.fail("lone leading surrogate in hex escape");
                    }
                } else if (0xDC00..0xE000).contains(&unit) {
                    return self.fail("lone trailing surrogate in hex escape");
                }
                Ok(())
            }
            None => self.fail("EOF while parsing a string"),
            Some(_) => self.fail("invalid escape"),
        }
    }

    fn hex4(&mut self) -> ScanResult<u32> {
        let mut unit = 0;
        for _ in 0..4 {
            let digit = match self.peek() {
                Some(b) => (b as char).to_digit(16),
                None => return self.fail("EOF while parsing a string"),
            };
            let Some(digit) = digit else {
                return self.fail("invalid escape");
            };
            unit = unit * 16 + digit;
            self.pos += 1;
        }
        Ok(unit)
    }

    /// The text of a checked string with escapes, between `start` and `end`.
    fn unescape(&self, start: usize, end: usize) -> ScanResult<String> {
        let raw = &self.text[start..end];
        let mut out = String::with_capacity(raw.len());
        let mut chars = raw.char_indices();
        while let Some((at, c)) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            let escape = chars.next().map(|(_, c)| c);
            out.push(match escape {
                Some('b') => '\u{8}',
                Some('f') => '\u{c}',
                Some('n') => '\n',
                Some('r') => '\r',
                Some('t') => '\t',
                Some('u') => {
                    let hex = |from: usize| {
                        raw.get(from..from + 4)
                            .and_then(|h| u32::from_str_radix(h, 16).ok())
                    };
                    let unit = hex(at + 2).ok_or(("invalid escape", start + at))?;
                    for _ in 0..4 {
                        chars.next();
                    }
                    let code = if (0xD800..0xDC00).contains(&unit) {
                        let low = hex(at + 8).ok_or(("invalid escape", start + at))?;
                        for _ in 0..6 {
                            chars.next();
                        }
                        0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                    } else {
                        unit
                    };
                    char::from_u32(code).ok_or(("invalid escape", start + at))?
                }
                Some(c) => c,
                None => return Err(("EOF while parsing a string", end)),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
