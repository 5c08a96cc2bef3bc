//! Operations on raw JSON bytes that must not disturb what they do not touch.
//!
//! The gateway used to parse bodies into `serde_json::Value` and serialise
//! them again. That rewrites values nobody asked it to change: big integers
//! and long decimals lose digits, `1e-400` becomes `0.0`, keys come back
//! sorted, escapes and whitespace are redone. A security filter that alters
//! data it was only meant to pass through is a correctness bug for the
//! backend's clients, so the response filter here works on byte spans of the
//! original document instead of a value tree.
//!
//! The same loss is also a validation hole in the other direction: the schema
//! validator sees the `f64` serde_json made of a number, while the backend may
//! read the exact decimal. [`numbers_exact`] refuses documents where the two
//! readings can disagree.

use std::fmt;

/// One JSON pointer pattern as unescaped segments; a segment `"*"` stands for
/// every element of an array.
pub type Pattern = Vec<String>;

/// Which members and elements of a document survive [`filter`].
#[derive(Clone, Copy, Debug)]
pub enum Filter<'a> {
    /// Only what some pattern reaches survives. Keys match exactly, because
    /// an allow list that matched loosely would let through more than it
    /// names.
    Allow(&'a [Pattern]),
    /// Whatever some pattern names is removed. Keys match ASCII
    /// case-insensitively: an upstream that spells `Internal_Cost` instead of
    /// `internal_cost` must not leak it, and removing more is the safe side
    /// of data minimisation.
    Deny(&'a [Pattern]),
}

/// The input is not one valid JSON document, so nothing can be said about
/// which of its bytes are safe to pass on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotFilterable {
    offset: usize,
    reason: &'static str,
}

impl NotFilterable {
    /// Byte offset in the input where the document stopped being valid, for
    /// logs that need to point at the upstream's mistake.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// A short fixed description, safe to log because it never quotes the
    /// (possibly sensitive) body.
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

impl fmt::Display for NotFilterable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "not a filterable JSON document: {} at byte {}",
            self.reason, self.offset
        )
    }
}

impl std::error::Error for NotFilterable {}

type Scan<T> = Result<T, NotFilterable>;

/// Removes what `filter` says from the JSON document in `bytes`, copying every
/// byte that is kept verbatim from the input.
///
/// Member and element choices follow the gateway's former `Value`-based
/// filter, so configurations keep their meaning:
/// - allow: a member survives when a pattern's first segment is its decoded
///   key; a pattern ending there keeps the member whole, otherwise the member
///   survives only if the rest of the pattern keeps something inside it. An
///   array element is selected by `*` or its decimal index; elements keep
///   their places, so one with nothing kept becomes `{}`. When nothing at all
///   is kept the result is `null`. An empty pattern keeps everything.
/// - deny: a pattern ending at an object member removes every occurrence of
///   that key (duplicate keys included, since a backend may read either one);
///   ending at `*` empties the array; ending at an index replaces that element
///   with `null`, so later indexes do not shift; otherwise the rest of the
///   pattern applies to the selected children. Array indexes are read the way
///   the former filter read them (`str::parse::<usize>`).
///
/// Duplicate keys under an allow list are each filtered on their own and kept
/// when something in them is kept (the former filter saw only the last one).
///
/// Removed members take their leading whitespace and one adjacent comma with
/// them; whitespace before a closing bracket stays, so pretty-printed bodies
/// stay readable.
///
/// `max_depth` bounds how many arrays and objects may enclose one another; a
/// top-level scalar has depth 0. Only the parts of the document that patterns
/// reach are walked recursively (as deep as the longest pattern); everything
/// else is validated by a loop, so a deeply nested body cannot exhaust the
/// stack whatever `max_depth` is.
///
/// # Errors
/// [`NotFilterable`] unless `bytes` is exactly one JSON value (surrounding
/// whitespace allowed) in valid UTF-8, nested at most `max_depth` deep, with
/// strings free of lone surrogate escapes (which serde_json, and therefore
/// the former filter, refused). Numbers of any size or precision are accepted
/// and passed on as written.
pub fn filter(
    bytes: &[u8],
    filter: Filter<'_>,
    max_depth: usize,
) -> Result<Vec<u8>, NotFilterable> {
    // Checking UTF-8 up front lets the scanner treat string contents as
    // opaque bytes; std's validator is much faster than doing it per byte.
    if let Err(e) = std::str::from_utf8(bytes) {
        return Err(NotFilterable {
            offset: e.valid_up_to(),
            reason: "invalid UTF-8",
        });
    }
    let mut scanner = Scanner {
        b: bytes,
        pos: 0,
        max_depth,
        open: Vec::new(),
        key: Vec::new(),
    };
    let mut out = Vec::with_capacity(bytes.len());
    scanner.skip_ws();
    out.extend_from_slice(&bytes[..scanner.pos]);
    let kept = match filter {
        Filter::Allow(patterns) => {
            let mut arena: Vec<&[String]> = patterns.iter().map(Vec::as_slice).collect();
            scanner.allow(&mut out, &mut arena, 0, 0)?
        }
        Filter::Deny(patterns) => {
            // The former filter ignored the empty pointer in a deny list
            // rather than removing the whole document.
            let mut arena: Vec<&[String]> = patterns
                .iter()
                .filter(|p| !p.is_empty())
                .map(Vec::as_slice)
                .collect();
            scanner.deny(&mut out, &mut arena, 0, 0)?;
            true
        }
    };
    let tail = scanner.pos;
    scanner.skip_ws();
    if scanner.pos != bytes.len() {
        return scanner.fail("bytes after the JSON value");
    }
    if !kept {
        return Ok(b"null".to_vec());
    }
    out.extend_from_slice(&bytes[tail..]);
    Ok(out)
}

/// A validating cursor over the document. Pattern state lives outside it, in
/// one `arena` vector per call: the patterns active at a node are a range of
/// that vector, and a child's range is pushed after it and truncated away
/// afterwards, so walking the document allocates nothing per value.
struct Scanner<'a> {
    b: &'a [u8],
    pos: usize,
    max_depth: usize,
    /// Kinds of the containers open inside `skip_value` (true for objects);
    /// a field so its capacity is reused across values.
    open: Vec<bool>,
    /// Decoded form of the current key, used only when the key has escapes.
    key: Vec<u8>,
}

impl Scanner<'_> {
    fn fail<T>(&self, reason: &'static str) -> Scan<T> {
        Err(NotFilterable {
            offset: self.pos,
            reason,
        })
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    /// Refuses to open a container inside `depth` others when that would
    /// exceed the limit.
    fn enter(&self, depth: usize) -> Scan<()> {
        if depth >= self.max_depth {
            return self.fail("nesting deeper than the limit");
        }
        Ok(())
    }

    /// Allow-list walk of the value at `pos` with patterns `arena[start..]`.
    /// Returns whether anything was kept; on `false` the caller discards what
    /// was written to `out`.
    fn allow(
        &mut self,
        out: &mut Vec<u8>,
        arena: &mut Vec<&[String]>,
        start: usize,
        depth: usize,
    ) -> Scan<bool> {
        let active = &arena[start..];
        if active.iter().any(|p| p.is_empty()) {
            self.copy_value(out, depth)?;
            return Ok(true);
        }
        if active.is_empty() {
            self.skip_value(depth)?;
            return Ok(false);
        }
        match self.peek() {
            Some(b'{') => self.allow_object(out, arena, start, depth),
            Some(b'[') => self.allow_array(out, arena, start, depth),
            _ => {
                self.skip_value(depth)?;
                Ok(false)
            }
        }
    }

    fn allow_object(
        &mut self,
        out: &mut Vec<u8>,
        arena: &mut Vec<&[String]>,
        start: usize,
        depth: usize,
    ) -> Scan<bool> {
        self.enter(depth)?;
        let end = arena.len();
        out.push(b'{');
        self.pos += 1;
        let mut kept_any = false;
        let mut first = true;
        loop {
            let seg = self.pos;
            self.skip_ws();
            if first && self.peek() == Some(b'}') {
                self.pos += 1;
                return Ok(false);
            }
            first = false;
            let key = self.member_head()?;
            let value_start = self.pos;
            let key = self.key_bytes(key);
            for i in start..end {
                let pattern = arena[i];
                match pattern.split_first() {
                    Some((head, rest)) if head.as_bytes() == key => arena.push(rest),
                    _ => {}
                }
            }
            let mut kept = false;
            if arena.len() == end {
                self.skip_value(depth + 1)?;
            } else {
                let mark = out.len();
                if kept_any {
                    out.push(b',');
                }
                out.extend_from_slice(&self.b[seg..value_start]);
                kept = self.allow(out, arena, end, depth + 1)?;
                arena.truncate(end);
                if !kept {
                    out.truncate(mark);
                }
            }
            kept_any |= kept;
            let ws = self.pos;
            self.skip_ws();
            match self.peek() {
                Some(b',') => {
                    if kept {
                        out.extend_from_slice(&self.b[ws..self.pos]);
                    }
                    self.pos += 1;
                }
                Some(b'}') => {
                    if kept_any {
                        out.extend_from_slice(&self.b[ws..self.pos]);
                    }
                    self.pos += 1;
                    break;
                }
                _ => return self.fail("expected ',' or '}'"),
            }
        }
        out.push(b'}');
        Ok(kept_any)
    }

    fn allow_array(
        &mut self,
        out: &mut Vec<u8>,
        arena: &mut Vec<&[String]>,
        start: usize,
        depth: usize,
    ) -> Scan<bool> {
        self.enter(depth)?;
        let end = arena.len();
        out.push(b'[');
        self.pos += 1;
        let mut kept_any = false;
        let mut index = 0usize;
        let mut digits = [0u8; 20];
        loop {
            let seg = self.pos;
            self.skip_ws();
            if index == 0 && self.peek() == Some(b']') {
                self.pos += 1;
                return Ok(false);
            }
            if index > 0 {
                out.push(b',');
            }
            out.extend_from_slice(&self.b[seg..self.pos]);
            // The former filter compared segments with `index.to_string()`,
            // so only the canonical spelling of an index selects it.
            let index_text = decimal(index, &mut digits);
            for i in start..end {
                let pattern = arena[i];
                match pattern.split_first() {
                    Some((head, rest)) if head == "*" || head.as_bytes() == index_text => {
                        arena.push(rest)
                    }
                    _ => {}
                }
            }
            let mark = out.len();
            let kept = self.allow(out, arena, end, depth + 1)?;
            arena.truncate(end);
            if !kept {
                out.truncate(mark);
                out.extend_from_slice(b"{}");
            }
            kept_any |= kept;
            let ws = self.pos;
            self.skip_ws();
            out.extend_from_slice(&self.b[ws..self.pos]);
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    index += 1;
                }
                Some(b']') => {
                    self.pos += 1;
                    break;
                }
                _ => return self.fail("expected ',' or ']'"),
            }
        }
        out.push(b']');
        Ok(kept_any)
    }

    /// Deny-list walk of the value at `pos` with patterns `arena[start..]`,
    /// all of them non-empty.
    fn deny(
        &mut self,
        out: &mut Vec<u8>,
        arena: &mut Vec<&[String]>,
        start: usize,
        depth: usize,
    ) -> Scan<()> {
        if start == arena.len() {
            return self.copy_value(out, depth);
        }
        match self.peek() {
            Some(b'{') => self.deny_object(out, arena, start, depth),
            Some(b'[') => self.deny_array(out, arena, start, depth),
            _ => self.copy_value(out, depth),
        }
    }

    fn deny_object(
        &mut self,
        out: &mut Vec<u8>,
        arena: &mut Vec<&[String]>,
        start: usize,
        depth: usize,
    ) -> Scan<()> {
        self.enter(depth)?;
        let end = arena.len();
        let open = self.pos;
        out.push(b'{');
        self.pos += 1;
        let mut kept_any = false;
        let mut first = true;
        loop {
            let seg = self.pos;
            self.skip_ws();
            if first && self.peek() == Some(b'}') {
                self.pos += 1;
                out.truncate(out.len() - 1);
                out.extend_from_slice(&self.b[open..self.pos]);
                return Ok(());
            }
            first = false;
            let key = self.member_head()?;
            let value_start = self.pos;
            let key = self.key_bytes(key);
            let mut remove = false;
            for i in start..end {
                let pattern = arena[i];
                match pattern.split_first() {
                    Some((head, rest)) if head.as_bytes().eq_ignore_ascii_case(key) => {
                        if rest.is_empty() {
                            remove = true;
                            break;
                        }
                        arena.push(rest);
                    }
                    _ => {}
                }
            }
            if remove {
                arena.truncate(end);
                self.skip_value(depth + 1)?;
            } else {
                if kept_any {
                    out.push(b',');
                }
                out.extend_from_slice(&self.b[seg..value_start]);
                self.deny(out, arena, end, depth + 1)?;
                arena.truncate(end);
                kept_any = true;
            }
            let ws = self.pos;
            self.skip_ws();
            match self.peek() {
                Some(b',') => {
                    if !remove {
                        out.extend_from_slice(&self.b[ws..self.pos]);
                    }
                    self.pos += 1;
                }
                Some(b'}') => {
                    if kept_any {
                        out.extend_from_slice(&self.b[ws..self.pos]);
                    }
                    self.pos += 1;
                    break;
                }
                _ => return self.fail("expected ',' or '}'"),
            }
        }
        out.push(b'}');
        Ok(())
    }

    fn deny_array(
        &mut self,
        out: &mut Vec<u8>,
        arena: &mut Vec<&[String]>,
        start: usize,
        depth: usize,
    ) -> Scan<()> {
        if arena[start..].iter().any(|p| p.len() == 1 && p[0] == "*") {
            // Still walked, so an invalid body is refused the same way
            // whatever the patterns are.
            self.skip_value(depth)?;
            out.extend_from_slice(b"[]");
            return Ok(());
        }
        self.enter(depth)?;
        let end = arena.len();
        let open = self.pos;
        out.push(b'[');
        self.pos += 1;
        let mut index = 0usize;
        loop {
            let seg = self.pos;
            self.skip_ws();
            if index == 0 && self.peek() == Some(b']') {
                self.pos += 1;
                out.truncate(out.len() - 1);
                out.extend_from_slice(&self.b[open..self.pos]);
                return Ok(());
            }
            if index > 0 {
                out.push(b',');
            }
            out.extend_from_slice(&self.b[seg..self.pos]);
            let mut null = false;
            for i in start..end {
                let pattern = arena[i];
                match pattern.split_first() {
                    Some((head, rest)) if head == "*" || head.parse::<usize>() == Ok(index) => {
                        if rest.is_empty() {
                            null = true;
                            break;
                        }
                        arena.push(rest);
                    }
                    _ => {}
                }
            }
            if null {
                arena.truncate(end);
                self.skip_value(depth + 1)?;
                out.extend_from_slice(b"null");
            } else {
                self.deny(out, arena, end, depth + 1)?;
                arena.truncate(end);
            }
            let ws = self.pos;
            self.skip_ws();
            out.extend_from_slice(&self.b[ws..self.pos]);
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    index += 1;
                }
                Some(b']') => {
                    self.pos += 1;
                    break;
                }
                _ => return self.fail("expected ',' or ']'"),
            }
        }
        out.push(b']');
        Ok(())
    }

    fn copy_value(&mut self, out: &mut Vec<u8>, depth: usize) -> Scan<()> {
        let start = self.pos;
        self.skip_value(depth)?;
        out.extend_from_slice(&self.b[start..self.pos]);
        Ok(())
    }

    /// Validates the value at `pos` (whitespace already skipped) and moves
    /// past it, without recursion.
    fn skip_value(&mut self, depth: usize) -> Scan<()> {
        self.open.clear();
        loop {
            match self.peek() {
                Some(c @ (b'{' | b'[')) => {
                    self.enter(depth + self.open.len())?;
                    self.pos += 1;
                    self.skip_ws();
                    let object = c == b'{';
                    if self.peek() == Some(if object { b'}' } else { b']' }) {
                        self.pos += 1;
                    } else {
                        self.open.push(object);
                        if object {
                            self.member_head()?;
                        }
                        continue;
                    }
                }
                Some(b'"') => {
                    self.string()?;
                }
                _ => self.scalar()?,
            }
            // A value just ended: close containers until one continues.
            loop {
                let Some(&object) = self.open.last() else {
                    return Ok(());
                };
                self.skip_ws();
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        self.skip_ws();
                        if object {
                            self.member_head()?;
                        }
                        break;
                    }
                    Some(b'}') if object => {
                        self.pos += 1;
                        self.open.pop();
                    }
                    Some(b']') if !object => {
                        self.pos += 1;
                        self.open.pop();
                    }
                    _ => return self.fail("expected ',' or a closing bracket"),
                }
            }
        }
    }

    /// Reads `"key" :` and the whitespace after it; returns the key's raw
    /// content span and whether it contains escapes.
    fn member_head(&mut self) -> Scan<(usize, usize, bool)> {
        if self.peek() != Some(b'"') {
            return self.fail("expected a string key");
        }
        let start = self.pos + 1;
        let escaped = self.string()?;
        let end = self.pos - 1;
        self.skip_ws();
        if self.peek() != Some(b':') {
            return self.fail("expected ':'");
        }
        self.pos += 1;
        self.skip_ws();
        Ok((start, end, escaped))
    }

    /// The key as patterns name it: decoded only when it has escapes, which
    /// is rare, so plain keys cost no copy.
    fn key_bytes(&mut self, (start, end, escaped): (usize, usize, bool)) -> &[u8] {
        let raw = &self.b[start..end];
        if !escaped {
            return raw;
        }
        unescape(raw, &mut self.key);
        &self.key
    }

    /// Validates the string at `pos` and moves past it; returns whether it
    /// contains escapes.
    fn string(&mut self) -> Scan<bool> {
        self.pos += 1;
        let mut escaped = false;
        loop {
            let rest = &self.b[self.pos..];
            match rest
                .iter()
                .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
            {
                None => {
                    self.pos = self.b.len();
                    return self.fail("unterminated string");
                }
                Some(n) => self.pos += n,
            }
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(escaped);
                }
                Some(b'\\') => {
                    escaped = true;
                    self.escape()?;
                }
                _ => return self.fail("control character in string"),
            }
        }
    }

    fn escape(&mut self) -> Scan<()> {
        match self.b.get(self.pos + 1) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                self.pos += 2;
                Ok(())
            }
            Some(b'u') => {
                let Some(unit) = hex4(self.b, self.pos + 2) else {
                    return self.fail("invalid \\u escape");
                };
                if (0xDC00..0xE000).contains(&unit) {
                    return self.fail("lone surrogate escape");
                }
                self.pos += 6;
                if (0xD800..0xDC00).contains(&unit) {
                    let low = match self.b.get(self.pos..self.pos + 2) {
                        Some(b"\\u") => hex4(self.b, self.pos + 2),
                        _ => None,
                    };
                    if !low.is_some_and(|low| (0xDC00..0xE000).contains(&low)) {
                        return self.fail("lone surrogate escape");
                    }
                    self.pos += 6;
                }
                Ok(())
            }
            _ => self.fail("invalid escape"),
        }
    }

    fn scalar(&mut self) -> Scan<()> {
        let literal: &[u8] = match self.peek() {
            Some(b't') => b"true",
            Some(b'f') => b"false",
            Some(b'n') => b"null",
            Some(b'-' | b'0'..=b'9') => return self.number(),
            None => return self.fail("unexpected end of input"),
            _ => return self.fail("expected a JSON value"),
        };
        if self.b.get(self.pos..self.pos + literal.len()) != Some(literal) {
            return self.fail("invalid literal");
        }
        self.pos += literal.len();
        Ok(())
    }

    /// Checks the JSON number grammar only: the value is never computed,
    /// which is what lets any size or precision through unchanged.
    fn number(&mut self) -> Scan<()> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return self.fail("invalid number"),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return self.fail("invalid number");
            }
            self.digits();
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return self.fail("invalid number");
            }
            self.digits();
        }
        Ok(())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
    }
}

fn hex4(bytes: &[u8], at: usize) -> Option<u32> {
    let hex = bytes.get(at..at + 4)?;
    let mut value = 0;
    for &c in hex {
        value = value * 16 + char::from(c).to_digit(16)?;
    }
    Some(value)
}

/// Decodes the content of an already validated JSON string into `out`.
fn unescape(raw: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let mut i = 0;
    while let Some(&c) = raw.get(i) {
        if c != b'\\' {
            out.push(c);
            i += 1;
            continue;
        }
        match raw.get(i + 1) {
            Some(b'u') => {
                let mut code = hex4(raw, i + 2).unwrap_or(0xFFFD);
                i += 6;
                // Validation already paired every lead surrogate with a trail.
                let low = match raw.get(i..i + 2) {
                    Some(b"\\u") if (0xD800..0xDC00).contains(&code) => hex4(raw, i + 2),
                    _ => None,
                };
                if let Some(low) = low {
                    code = 0x10000 + ((code - 0xD800) << 10) + (low.wrapping_sub(0xDC00) & 0x3FF);
                    i += 6;
                }
                let ch = char::from_u32(code).unwrap_or('\u{FFFD}');
                out.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
            }
            Some(&e) => {
                out.push(match e {
                    b'b' => 0x08,
                    b'f' => 0x0C,
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    other => other,
                });
                i += 2;
            }
            None => break,
        }
    }
}

/// `n` in decimal, written into `buf` so array walks need no allocation.
fn decimal(mut n: usize, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    while i > 0 {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// A number whose written decimal value is not what the schema validator
/// sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InexactNumber {
    offset: usize,
    len: usize,
}

impl InexactNumber {
    /// Byte offset of the number token in the document.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Byte range of the number token, so a caller can report which value
    /// was refused.
    pub fn span(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.len
    }
}

impl fmt::Display for InexactNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "number at byte {} is not exactly the value the schema validator checks",
            self.offset
        )
    }
}

impl std::error::Error for InexactNumber {}

/// Ok when every number token in the (already known valid) JSON document
/// denotes exactly the value serde_json parses it to.
///
/// "Exactly" means: an integer token that fits `i64` (negative) or `u64`
/// (serde_json keeps those as integers), or a token whose decimal value
/// equals the shortest round-trip decimal of the `f64` serde_json makes of
/// it. Why that rule: the validator checks the `f64`, and backends read the
/// text either as the nearest double (which is then that same `f64`) or as
/// an exact decimal (which is then the decimal the validator's value prints
/// as). Requiring equality with the double's own exact binary expansion
/// instead would refuse ordinary inputs such as `0.1`.
///
/// The value is taken from serde_json itself, not `str::parse`, because
/// without its `float_roundtrip` feature serde_json may round differently
/// from a correctly rounded parse; what matters is what the validator saw.
///
/// # Errors
/// [`InexactNumber`] for the first number whose text and checked value
/// differ: more digits than a double keeps, values that underflow to zero or
/// overflow to infinity, integers past `u64`. Malformed input is not
/// rejected as such (validate it first), but a malformed number counts as
/// inexact.
pub fn numbers_exact(bytes: &[u8]) -> Result<(), InexactNumber> {
    let mut i = 0;
    while let Some(&c) = bytes.get(i) {
        match c {
            b'"' => {
                i += 1;
                while let Some(&c) = bytes.get(i) {
                    i += 1;
                    match c {
                        b'"' => break,
                        b'\\' => i += 1,
                        _ => {}
                    }
                }
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while let Some(b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-') = bytes.get(i) {
                    i += 1;
                }
                let token = &bytes[start..i];
                if !json_number_exact(token) {
                    return Err(InexactNumber {
                        offset: start,
                        len: token.len(),
                    });
                }
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// The same rule as [`numbers_exact`] for one number written as text, as the
/// gateway reads query and path parameters that a schema types as numbers.
///
/// Those are read with `str::parse` (`i64`, then `u64`, then `f64`), so this
/// accepts that syntax (`+5`, `.5`, `5.`, leading zeros) and judges it
/// against that parse; `inf`, `NaN`, whitespace and anything else that is not
/// a finite decimal number are false.
pub fn number_text_exact(text: &str) -> bool {
    let Some(number) = Decimal::split(text.as_bytes(), true) else {
        return false;
    };
    if number.is_integer() && (text.parse::<i64>().is_ok() || text.parse::<u64>().is_ok()) {
        return true;
    }
    if number.plainly_exact() {
        return true;
    }
    match text.parse::<f64>() {
        Ok(value) => number.denotes(value),
        Err(_) => false,
    }
}

fn json_number_exact(token: &[u8]) -> bool {
    let Some(number) = Decimal::split(token, false) else {
        return false;
    };
    if number.is_integer() {
        let fits = std::str::from_utf8(token).is_ok_and(|text| {
            if number.negative {
                text.parse::<i64>().is_ok()
            } else {
                text.parse::<u64>().is_ok()
            }
        });
        if fits {
            return true;
        }
    }
    if number.plainly_exact() {
        return true;
    }
    match serde_json::from_slice::<f64>(token) {
        Ok(value) => number.denotes(value),
        Err(_) => false,
    }
}

/// A decimal number split into its written parts, never evaluated, so any
/// length costs linear time.
struct Decimal<'a> {
    negative: bool,
    int: &'a [u8],
    frac: &'a [u8],
    exp_negative: bool,
    exp: &'a [u8],
    has_point_or_exp: bool,
}

/// The most significant digits a shortest round-trip `f64` decimal has.
const MAX_DIGITS: usize = 17;

/// A nonzero decimal as 0.DIGITS × 10^point, DIGITS without leading or
/// trailing zeros: equal numbers have equal forms, however they are written.
#[derive(PartialEq, Eq)]
struct Normal {
    digits: [u8; MAX_DIGITS],
    len: usize,
    point: i64,
}

impl<'a> Decimal<'a> {
    /// Splits `text` by the JSON number grammar, or with `lenient` by the one
    /// `str::parse` accepts for finite numbers (a `+` sign, leading zeros,
    /// and digits missing on one side of the point).
    fn split(text: &'a [u8], lenient: bool) -> Option<Self> {
        let mut i = 0;
        let mut negative = false;
        match text.first() {
            Some(b'-') => {
                negative = true;
                i = 1;
            }
            Some(b'+') if lenient => i = 1,
            _ => {}
        }
        let run = |from: usize| {
            from + text
                .get(from..)
                .map_or(0, |t| t.iter().take_while(|c| c.is_ascii_digit()).count())
        };
        let int_end = run(i);
        let int = &text[i..int_end];
        if !lenient && (int.is_empty() || (int.len() > 1 && int[0] == b'0')) {
            return None;
        }
        i = int_end;
        let mut frac: &[u8] = &[];
        let mut has_point_or_exp = false;
        if text.get(i) == Some(&b'.') {
            has_point_or_exp = true;
            let end = run(i + 1);
            frac = &text[i + 1..end];
            if frac.is_empty() && !lenient {
                return None;
            }
            i = end;
        }
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        let mut exp: &[u8] = &[];
        let mut exp_negative = false;
        if let Some(b'e' | b'E') = text.get(i) {
            has_point_or_exp = true;
            i += 1;
            match text.get(i) {
                Some(b'-') => {
                    exp_negative = true;
                    i += 1;
                }
                Some(b'+') => i += 1,
                _ => {}
            }
            let end = run(i);
            exp = &text[i..end];
            if exp.is_empty() {
                return None;
            }
            i = end;
        }
        if i != text.len() {
            return None;
        }
        Some(Decimal {
            negative,
            int,
            frac,
            exp_negative,
            exp,
            has_point_or_exp,
        })
    }

    fn is_integer(&self) -> bool {
        !self.has_point_or_exp
    }

    /// True when the text has at most 15 digits once leading zeros are gone
    /// (so the integer significand is exact in an `f64`) and is scaled by at
    /// most 10^22 either way (an exact `f64` too). Then one multiplication or
    /// division rounds correctly, which is what serde_json (with or without
    /// `float_roundtrip`) and `str::parse` compute, and a decimal of at most
    /// 15 digits is always the shortest one of its double. Nearly all real
    /// numbers (prices, quantities) qualify, and this costs a scan where the
    /// general check parses and formats.
    fn plainly_exact(&self) -> bool {
        let digits = self.int.iter().chain(self.frac);
        let significant = digits.skip_while(|&&c| c == b'0').count();
        if significant == 0 || significant > 15 || self.exp.len() > 4 {
            return false;
        }
        let exp = self
            .exp
            .iter()
            .fold(0i64, |e, &c| e * 10 + i64::from(c - b'0'));
        let exp = if self.exp_negative { -exp } else { exp };
        i64::try_from(self.frac.len()).is_ok_and(|frac| (-22..=22).contains(&(exp - frac)))
    }

    /// Whether this text is exactly the shortest round-trip decimal of
    /// `value`.
    fn denotes(&self, value: f64) -> bool {
        if !value.is_finite() {
            return false;
        }
        let written = self.normal();
        if value == 0.0 {
            // Both signs of zero are zero to a decimal reader.
            return written.is_none() && self.all_zero();
        }
        if self.negative != value.is_sign_negative() {
            return false;
        }
        let mut buf = Buf::default();
        if fmt::Write::write_fmt(&mut buf, format_args!("{:e}", value.abs())).is_err() {
            return false;
        }
        let shortest = Decimal::split(buf.as_bytes(), false).and_then(|d| d.normal());
        match (written, shortest) {
            (Some(written), Some(shortest)) => written == shortest,
            _ => false,
        }
    }

    fn all_zero(&self) -> bool {
        self.int.iter().chain(self.frac).all(|&c| c == b'0')
    }

    /// None when zero, when longer than any shortest `f64` decimal, or when
    /// the exponent is too large to matter for a finite nonzero double.
    fn normal(&self) -> Option<Normal> {
        let digit = |k: usize| -> u8 {
            match self.int.get(k) {
                Some(&c) => c,
                None => self.frac.get(k - self.int.len()).copied().unwrap_or(b'0'),
            }
        };
        let total = self.int.len() + self.frac.len();
        let first = (0..total).find(|&k| digit(k) != b'0')?;
        let last = (first..total).rev().find(|&k| digit(k) != b'0')?;
        let len = last - first + 1;
        if len > MAX_DIGITS {
            return None;
        }
        let mut digits = [0u8; MAX_DIGITS];
        for (slot, k) in digits.iter_mut().zip(first..=last) {
            *slot = digit(k);
        }
        let mut exp: i64 = 0;
        for &c in self.exp {
            exp = exp.checked_mul(10)?.checked_add(i64::from(c - b'0'))?;
        }
        if self.exp_negative {
            exp = -exp;
        }
        let point = i64::try_from(self.int.len())
            .ok()?
            .checked_sub(i64::try_from(first).ok()?)?
            .checked_add(exp)?;
        Some(Normal { digits, len, point })
    }
}

/// Stack buffer for formatting one `f64`, so checking numbers allocates
/// nothing.
#[derive(Default)]
struct Buf {
    bytes: [u8; 32],
    len: usize,
}

impl Buf {
    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl fmt::Write for Buf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let slot = self.bytes.get_mut(self.len..end).ok_or(fmt::Error)?;
        slot.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, Value};

    fn pats(list: &[&str]) -> Vec<Pattern> {
        list.iter()
            .map(|p| {
                if p.is_empty() {
                    Vec::new()
                } else {
                    p.trim_start_matches('/')
                        .split('/')
                        .map(str::to_string)
                        .collect()
                }
            })
            .collect()
    }

    fn deny(doc: &str, list: &[&str]) -> String {
        let patterns = pats(list);
        let out = filter(doc.as_bytes(), Filter::Deny(&patterns), 64).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn allow(doc: &str, list: &[&str]) -> String {
        let patterns = pats(list);
        let out = filter(doc.as_bytes(), Filter::Allow(&patterns), 64).unwrap();
        String::from_utf8(out).unwrap()
    }

    // The former Value-based algorithm, kept verbatim as the reference.
    fn keep(value: &Value, patterns: &[&[String]]) -> Option<Value> {
        if patterns.iter().any(|p| p.is_empty()) {
            return Some(value.clone());
        }
        match value {
            Value::Object(map) => {
                let mut out = Map::new();
                for (key, child) in map {
                    let rests: Vec<&[String]> = patterns
                        .iter()
                        .filter(|p| p[0] == *key)
                        .map(|p| &p[1..])
                        .collect();
                    if rests.is_empty() {
                        continue;
                    }
                    if let Some(kept) = keep(child, &rests) {
                        out.insert(key.clone(), kept);
                    }
                }
                (!out.is_empty()).then_some(Value::Object(out))
            }
            Value::Array(items) => {
                let mut out = Vec::new();
                let mut any = false;
                for (i, item) in items.iter().enumerate() {
                    let index = i.to_string();
                    let rests: Vec<&[String]> = patterns
                        .iter()
                        .filter(|p| p[0] == "*" || p[0] == index)
                        .map(|p| &p[1..])
                        .collect();
                    match keep(item, &rests) {
                        Some(k) => {
                            any = true;
                            out.push(k)
                        }
                        None => out.push(Value::Object(Map::new())),
                    }
                }
                any.then_some(Value::Array(out))
            }
            _ => None,
        }
    }

    fn remove(value: &mut Value, pattern: &[String]) {
        let Some((first, rest)) = pattern.split_first() else {
            return;
        };
        match value {
            Value::Object(map) => {
                if rest.is_empty() {
                    map.remove(first);
                } else if let Some(c) = map.get_mut(first) {
                    remove(c, rest)
                }
            }
            Value::Array(items) => {
                if first == "*" {
                    if rest.is_empty() {
                        items.clear()
                    } else {
                        for i in items.iter_mut() {
                            remove(i, rest)
                        }
                    }
                } else if let Ok(i) = first.parse::<usize>() {
                    if let Some(c) = items.get_mut(i) {
                        if rest.is_empty() {
                            *c = Value::Null
                        } else {
                            remove(c, rest)
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn old_allow(doc: &Value, patterns: &[Pattern]) -> Value {
        let refs: Vec<&[String]> = patterns.iter().map(Vec::as_slice).collect();
        keep(doc, &refs).unwrap_or(Value::Null)
    }

    fn old_deny(doc: &Value, patterns: &[Pattern]) -> Value {
        let mut doc = doc.clone();
        for p in patterns {
            remove(&mut doc, p);
        }
        doc
    }

    const NUMBERS: &str = r#"{"big":12345678901234567890123,"tiny":1e-400,"huge":1e400,"dec":1.10,"long":0.123456789012345678901234567890123456,"neg":-0.0,"secret":1}"#;

    #[test]
    fn deny_passes_number_spellings_verbatim() {
        assert_eq!(
            deny(NUMBERS, &["/secret"]),
            r#"{"big":12345678901234567890123,"tiny":1e-400,"huge":1e400,"dec":1.10,"long":0.123456789012345678901234567890123456,"neg":-0.0}"#
        );
        assert_eq!(deny(NUMBERS, &["/absent"]), NUMBERS);
    }

    #[test]
    fn allow_passes_number_spellings_verbatim() {
        assert_eq!(
            allow(NUMBERS, &["/huge", "/big", "/tiny", "/long", "/dec"]),
            r#"{"big":12345678901234567890123,"tiny":1e-400,"huge":1e400,"dec":1.10,"long":0.123456789012345678901234567890123456}"#
        );
        assert_eq!(allow("[1e400, 1E+2]", &["/*"]), "[1e400, 1E+2]");
    }

    #[test]
    fn key_order_and_escapes_are_kept() {
        let doc =
            r#"{"z":1,"a":"caf\u00e9 \/ x","m":{"b":2,"a":1},"drop":0,"\u00e9":"\ud83d\ude00"}"#;
        assert_eq!(
            deny(doc, &["/drop"]),
            r#"{"z":1,"a":"caf\u00e9 \/ x","m":{"b":2,"a":1},"\u00e9":"\ud83d\ude00"}"#
        );
        assert_eq!(
            allow(doc, &["/z", "/a", "/m", "/é"]),
            r#"{"z":1,"a":"caf\u00e9 \/ x","m":{"b":2,"a":1},"\u00e9":"\ud83d\ude00"}"#
        );
    }

    #[test]
    fn pretty_printed_input_stays_pretty() {
        let doc = "{\n  \"a\": 1,\n  \"b\": {\n    \"c\": [1, 2],\n    \"d\": true\n  },\n  \"e\": null\n}\n";
        assert_eq!(
            deny(doc, &["/b/d"]),
            "{\n  \"a\": 1,\n  \"b\": {\n    \"c\": [1, 2]\n  },\n  \"e\": null\n}\n"
        );
        assert_eq!(
            deny(doc, &["/a"]),
            "{\n  \"b\": {\n    \"c\": [1, 2],\n    \"d\": true\n  },\n  \"e\": null\n}\n"
        );
        assert_eq!(
            deny(doc, &["/e"]),
            "{\n  \"a\": 1,\n  \"b\": {\n    \"c\": [1, 2],\n    \"d\": true\n  }\n}\n"
        );
        assert_eq!(
            allow(doc, &["/b/c"]),
            "{\n  \"b\": {\n    \"c\": [1, 2]\n  }\n}\n"
        );
        assert_eq!(deny(doc, &["/x"]), doc);
    }

    #[test]
    fn commas_stay_valid_wherever_members_go() {
        let doc = r#"{"a":1,"b":2,"c":3,"d":4}"#;
        assert_eq!(deny(doc, &["/a"]), r#"{"b":2,"c":3,"d":4}"#);
        assert_eq!(deny(doc, &["/d"]), r#"{"a":1,"b":2,"c":3}"#);
        assert_eq!(deny(doc, &["/b", "/c"]), r#"{"a":1,"d":4}"#);
        assert_eq!(deny(doc, &["/a", "/b"]), r#"{"c":3,"d":4}"#);
        assert_eq!(deny(doc, &["/c", "/d"]), r#"{"a":1,"b":2}"#);
        assert_eq!(deny(doc, &["/a", "/c"]), r#"{"b":2,"d":4}"#);
        assert_eq!(deny(doc, &["/a", "/b", "/c", "/d"]), "{}");
        assert_eq!(deny(r#"{"a":1}"#, &["/a"]), "{}");
        assert_eq!(deny(r#"{ "a" : 1 }"#, &["/a"]), "{}");
        assert_eq!(deny("{ }", &["/a"]), "{ }");
        assert_eq!(deny("[ ]", &["/0"]), "[ ]");
        assert_eq!(
            deny(r#"{ "a" : 1 , "b" : 2 , "c" : 3 }"#, &["/b"]),
            r#"{ "a" : 1 , "c" : 3 }"#
        );
        assert_eq!(
            deny(r#"{ "a" : 1 , "b" : 2 , "c" : 3 }"#, &["/c"]),
            r#"{ "a" : 1 , "b" : 2  }"#
        );
        assert_eq!(allow(doc, &["/b", "/d"]), r#"{"b":2,"d":4}"#);
        assert_eq!(allow(doc, &["/a", "/d"]), r#"{"a":1,"d":4}"#);
        assert_eq!(allow(doc, &["/c"]), r#"{"c":3}"#);
    }

    #[test]
    fn wildcards_reach_into_nested_arrays() {
        let doc = r#"{"items":[{"id":1,"cost":5,"tags":[{"k":"a","v":1},{"k":"b","v":2}]},{"id":2,"cost":6,"tags":[]}]}"#;
        assert_eq!(
            deny(doc, &["/items/*/cost", "/items/*/tags/*/v"]),
            r#"{"items":[{"id":1,"tags":[{"k":"a"},{"k":"b"}]},{"id":2,"tags":[]}]}"#
        );
        assert_eq!(
            allow(doc, &["/items/*/id", "/items/0/tags/*/k"]),
            r#"{"items":[{"id":1,"tags":[{"k":"a"},{"k":"b"}]},{"id":2}]}"#
        );
        assert_eq!(deny("[[1,2],[3,[4,5]]]", &["/*/1"]), "[[1,null],[3,null]]");
        assert_eq!(deny("[[1,2],[3,[4,5]]]", &["/1/1/*"]), "[[1,2],[3,[]]]");
        assert_eq!(deny("[[1,2],[3,[4,5]]]", &["/*"]), "[]");
        assert_eq!(deny(" [ 1 , 2 ] ", &["/1"]), " [ 1 , null ] ");
        assert_eq!(deny("[1,2]", &["/5"]), "[1,2]");
        assert_eq!(allow("[[1,2],[3,[4,5]]]", &["/*/1/0"]), "[{},[{},[4,{}]]]");
    }

    #[test]
    fn deny_removes_every_duplicate() {
        let doc = r#"{"a":1,"secret":2,"b":3,"secret":{"x":1,"y":2},"c":4}"#;
        assert_eq!(deny(doc, &["/secret"]), r#"{"a":1,"b":3,"c":4}"#);
        assert_eq!(
            deny(doc, &["/secret/x"]),
            r#"{"a":1,"secret":2,"b":3,"secret":{"y":2},"c":4}"#
        );
        let dup = r#"{"k":{"x":1,"y":2},"k":{"x":3}}"#;
        assert_eq!(allow(dup, &["/k/y"]), r#"{"k":{"y":2}}"#);
        assert_eq!(allow(dup, &["/k/x"]), r#"{"k":{"x":1},"k":{"x":3}}"#);
    }

    #[test]
    fn deny_ignores_ascii_case_but_allow_does_not() {
        let doc = r#"{"Internal_Cost":1,"INTERNAL_COST":2,"internal_cost":3,"price":4}"#;
        assert_eq!(deny(doc, &["/internal_cost"]), r#"{"price":4}"#);
        assert_eq!(allow(doc, &["/internal_cost"]), r#"{"internal_cost":3}"#);
        assert_eq!(
            deny(r#"{"A":{"b":1,"B":2,"c":3}}"#, &["/a/b"]),
            r#"{"A":{"c":3}}"#
        );
    }

    #[test]
    fn escaped_keys_are_compared_decoded() {
        let doc = r#"{"int\u0065rnal":1,"a\/b":2,"tab\t":3,"ok":4}"#;
        assert_eq!(deny(doc, &["/internal"]), r#"{"a\/b":2,"tab\t":3,"ok":4}"#);
        assert_eq!(deny(doc, &["/INTERNAL"]), r#"{"a\/b":2,"tab\t":3,"ok":4}"#);
        assert_eq!(allow(doc, &["/internal"]), r#"{"int\u0065rnal":1}"#);
        let slash = vec![vec!["a/b".to_string()], vec!["tab\t".to_string()]];
        let out = filter(doc.as_bytes(), Filter::Allow(&slash), 8).unwrap();
        assert_eq!(out, br#"{"a\/b":2,"tab\t":3}"#);
        let emoji = r#"{"\ud83d\ude00":1,"x":2}"#;
        assert_eq!(deny(emoji, &["/😀"]), r#"{"x":2}"#);
    }

    #[test]
    fn allow_placeholders_and_null() {
        assert_eq!(allow(r#"{"a":1}"#, &["/b"]), "null");
        assert_eq!(allow(r#"{"a":1}"#, &[]), "null");
        assert_eq!(allow("  5 ", &["/a"]), "null");
        assert_eq!(allow("[]", &["/*"]), "null");
        assert_eq!(allow("{}", &["/a"]), "null");
        assert_eq!(allow(r#"{"a":{"b":1}}"#, &["/a/c"]), "null");
        assert_eq!(allow(r#"{"a":1,"b":2}"#, &["/a/x"]), "null");
        assert_eq!(
            allow(r#"[{"a":1},{"b":2},3,[]]"#, &["/*/a"]),
            r#"[{"a":1},{},{},{}]"#
        );
        assert_eq!(allow("[1,2,3]", &["/1"]), "[{},2,{}]");
        assert_eq!(allow("[1,2,3]", &["/01", "/+1"]), "null");
        let doc = " {\"a\" : [1, {\"b\":2}] } ";
        assert_eq!(allow(doc, &[""]), doc);
        assert_eq!(allow(doc, &["/a"]), doc);
    }

    #[test]
    fn deny_arrays_by_index_and_wildcard() {
        assert_eq!(deny(r#"{"a":[1,2,3]}"#, &["/a/0"]), r#"{"a":[null,2,3]}"#);
        assert_eq!(deny(r#"{"a":[1,2,3]}"#, &["/a/01"]), r#"{"a":[1,null,3]}"#);
        assert_eq!(deny(r#"{"a":[1,2,3]}"#, &["/a/*"]), r#"{"a":[]}"#);
        assert_eq!(deny(r#"{"a":[1,2,3]}"#, &["/a/*", "/a/1"]), r#"{"a":[]}"#);
        assert_eq!(
            deny(r#"{"a":[{"x":1},{"x":2}]}"#, &["/a/1/x"]),
            r#"{"a":[{"x":1},{}]}"#
        );
        assert_eq!(deny(r#"{"*":1,"a":2}"#, &["/*"]), r#"{"a":2}"#);
        assert_eq!(deny(r#"{"a":1}"#, &[""]), r#"{"a":1}"#);
        assert_eq!(deny("7", &["/a"]), "7");
    }

    #[test]
    fn invalid_documents_are_refused() {
        let bad: &[&[u8]] = &[
            b"",
            b"   ",
            b"{",
            b"{\"a\":1",
            b"{\"a\":1,}",
            b"[1,]",
            b"[1 2]",
            b"{\"a\" 1}",
            b"{1:2}",
            b"{\"a\":1}x",
            b"{\"a\":1} {}",
            b"[01]",
            b"[1.]",
            b"[.5]",
            b"[-]",
            b"[1e]",
            b"[+1]",
            b"[tru]",
            b"[nulll]",
            b"[\"a\x01\"]",
            b"[\"\\x\"]",
            b"[\"\\u12\"]",
            b"[\"\\ud800\"]",
            b"[\"\\udc00\"]",
            b"[\"\\ud800\\u0041\"]",
            b"[\"unterminated]",
            b"[\"\xff\"]",
            b"\xef\xbb\xbf{}",
            b"[1]]",
            b"{]",
            b"[}",
            b"NaN",
        ];
        let some = pats(&["/a", "/*/b"]);
        for doc in bad {
            for f in [Filter::Deny(&[]), Filter::Deny(&some), Filter::Allow(&some)] {
                assert!(
                    filter(doc, f, 16).is_err(),
                    "{:?} accepted with {f:?}",
                    String::from_utf8_lossy(doc)
                );
            }
        }
        let err = filter(b"[1, 2] 3", Filter::Deny(&[]), 16).unwrap_err();
        assert_eq!(err.offset(), 7);
    }

    #[test]
    fn depth_limit_counts_containers() {
        let all = pats(&["/*"]);
        let deep = pats(&["/0/0/0/x"]);
        for f in [Filter::Deny(&[]), Filter::Deny(&deep), Filter::Allow(&all)] {
            assert!(filter(b"1", f, 0).is_ok());
            assert!(filter(b"[]", f, 0).is_err());
            assert!(filter(b"[[1]]", f, 2).is_ok());
            assert!(filter(b"[[1]]", f, 1).is_err());
            assert!(filter(br#"{"a":[{}]}"#, f, 3).is_ok());
            assert!(filter(br#"{"a":[{}]}"#, f, 2).is_err());
        }
        // Far deeper than any stack could recurse: validated by the loop.
        let n = 200_000;
        let doc = format!("{}{}", "[".repeat(n), "]".repeat(n));
        let out = filter(doc.as_bytes(), Filter::Deny(&deep), usize::MAX).unwrap();
        assert_eq!(out, doc.as_bytes());
        assert!(filter(doc.as_bytes(), Filter::Deny(&deep), n - 1).is_err());
    }

    /// xorshift64*: deterministic randomness without a dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    const KEYS: &[&str] = &["a", "b", "c", "*", "0", "1", "01", "x"];
    const SEGMENTS: &[&str] = &["a", "b", "c", "*", "0", "1", "2", "01", "+1", "x"];

    fn random_value(rng: &mut Rng, depth: usize) -> Value {
        let kind = if depth == 0 {
            rng.below(4)
        } else {
            rng.below(7)
        };
        match kind {
            0 => Value::Null,
            1 => Value::from(rng.below(1000) as u64),
            2 => Value::from(rng.below(100) as f64 / 8.0),
            3 => Value::from(["s", "é\"\\/", ""][rng.below(3)]),
            4 | 5 => {
                let mut map = Map::new();
                for _ in 0..rng.below(5) {
                    let key = KEYS[rng.below(KEYS.len())].to_string();
                    map.insert(key, random_value(rng, depth - 1));
                }
                Value::Object(map)
            }
            _ => Value::Array(
                (0..rng.below(5))
                    .map(|_| random_value(rng, depth - 1))
                    .collect(),
            ),
        }
    }

    fn random_patterns(rng: &mut Rng) -> Vec<Pattern> {
        (0..rng.below(4))
            .map(|_| {
                let len = if rng.below(10) == 0 {
                    0
                } else {
                    1 + rng.below(4)
                };
                (0..len)
                    .map(|_| SEGMENTS[rng.below(SEGMENTS.len())].to_string())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn matches_the_value_based_filter() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for round in 0..4000 {
            let doc = random_value(&mut rng, 4);
            let patterns = random_patterns(&mut rng);
            let text = if round % 2 == 0 {
                serde_json::to_string(&doc).unwrap()
            } else {
                serde_json::to_string_pretty(&doc).unwrap()
            };
            for (allowing, expected) in [
                (true, old_allow(&doc, &patterns)),
                (false, old_deny(&doc, &patterns)),
            ] {
                let f = if allowing {
                    Filter::Allow(&patterns)
                } else {
                    Filter::Deny(&patterns)
                };
                let out = filter(text.as_bytes(), f, 64).unwrap();
                let got: Value = serde_json::from_slice(&out).unwrap_or_else(|e| {
                    panic!("invalid output {e}: {}", String::from_utf8_lossy(&out))
                });
                assert_eq!(got, expected, "{text} {f:?}");
                if expected == doc && !allowing {
                    assert_eq!(out, text.as_bytes());
                }
            }
        }
    }

    #[test]
    fn numbers_rule() {
        let exact = [
            "0",
            "-0",
            "0.0",
            "-0.0e10",
            "0e999999999999999999999",
            "1.1",
            "1.10",
            "11e-1",
            "0.11E1",
            "0.1",
            "1e23",
            "5e-324",
            "1.7976931348623157e308",
            "9007199254740993",
            "18446744073709551615",
            "-9223372036854775808",
            "123.456",
            "1E+2",
            "100",
            "1e-21",
            "0.000000000000000000001",
            "123456789012345e22",
            "1234567890123456e-3",
            "1.7976931348623157e308",
        ];
        let inexact = [
            "1e-400",
            "1e400",
            "-1e400",
            "12345678901234567890123",
            "18446744073709551616",
            "-9223372036854775809",
            "1.0000000000000000001",
            "1000.00000000000000001",
            "9007199254740993.0",
            "2.4703282292062328e-324",
            "0.1234567890123456789",
            "1e99999999999999999999999",
            "1e-99999999999999999999999",
        ];
        for t in exact {
            assert!(number_text_exact(t), "{t} should be exact");
            assert_eq!(numbers_exact(t.as_bytes()), Ok(()), "{t}");
        }
        for t in inexact {
            assert!(!number_text_exact(t), "{t} should be inexact");
            assert!(numbers_exact(t.as_bytes()).is_err(), "{t}");
        }
    }

    #[test]
    fn number_text_accepts_what_the_parameter_parser_accepts() {
        for t in ["+5", ".5", "5.", "007", "-.25", "+1e2"] {
            assert!(number_text_exact(t), "{t}");
        }
        for t in [
            "",
            " 5",
            "5 ",
            "inf",
            "-infinity",
            "NaN",
            "0x10",
            "1e",
            ".",
            "+",
            "1_000",
            "--1",
        ] {
            assert!(!number_text_exact(t), "{t}");
        }
    }

    #[test]
    fn numbers_in_documents() {
        let doc = br#"{"a":[1,2.5,"1e400 \" 1e400",{"b":-0.0,"1e-400":true}],"c":1e-400}"#;
        let err = numbers_exact(doc).unwrap_err();
        assert_eq!(err.offset(), doc.len() - 7);
        assert_eq!(err.span(), doc.len() - 7..doc.len() - 1);
        assert_eq!(
            numbers_exact(br#"{"quantity":1.0000000000000000001}"#)
                .unwrap_err()
                .offset(),
            12
        );
        assert!(numbers_exact(br#"{"max":1000.00000000000000001}"#).is_err());
        assert!(numbers_exact(br#"{"ok":[1000, 0.5, 1e2, -3, true, null, "\\"]}"#).is_ok());
    }

    #[test]
    fn long_digit_runs_take_linear_time() {
        let n = 1 << 20;
        let huge = format!("1{}", "0".repeat(n));
        assert!(!number_text_exact(&huge));
        assert!(numbers_exact(huge.as_bytes()).is_err());
        let tiny = format!("0.{}1", "0".repeat(n));
        assert!(!number_text_exact(&tiny));
        assert!(numbers_exact(tiny.as_bytes()).is_err());
        let one = format!("1{}e-{n}", "0".repeat(n));
        assert_eq!(numbers_exact(one.as_bytes()), Ok(()));
        // str::parse saturates explicit exponents near 65536, so it reads
        // this as infinity; the parameter check follows what it read.
        assert_eq!(one.parse::<f64>(), Ok(f64::INFINITY));
        assert!(!number_text_exact(&one));
        let one = format!("1{}e-60000", "0".repeat(60000));
        assert!(number_text_exact(&one));
        let long = format!("1.{}1", "0".repeat(n));
        assert!(!number_text_exact(&long));
        let zeros = format!("0.{}", "0".repeat(n));
        assert!(number_text_exact(&zeros));
        let doc = format!("[{}]", "12,".repeat(n / 3) + "1");
        assert_eq!(numbers_exact(doc.as_bytes()), Ok(()));
    }

    #[test]
    fn the_short_cut_agrees_with_the_general_check() {
        let mut rng = Rng(7);
        let mut checked = 0;
        for _ in 0..50_000 {
            let digits = 1 + rng.below(16);
            let mut text: String = (0..digits)
                .map(|_| char::from(b'0' + rng.below(10) as u8))
                .collect();
            if rng.below(2) == 0 {
                text.insert(rng.below(digits + 1), '.');
                if text.starts_with('.') {
                    text.insert(0, '0');
                }
                if text.ends_with('.') {
                    text.push('0');
                }
            }
            if rng.below(2) == 0 {
                text.push_str(&format!("e{}", rng.below(50) as i64 - 25));
            }
            if text.starts_with('0') && text.len() > 1 && !text[1..].starts_with(['.', 'e']) {
                continue;
            }
            let number = Decimal::split(text.as_bytes(), false).unwrap();
            if number.plainly_exact() {
                checked += 1;
                let seen: f64 = serde_json::from_str(&text).unwrap();
                assert!(number.denotes(seen), "{text}");
                assert!(number.denotes(text.parse().unwrap()), "{text}");
            }
        }
        assert!(checked > 10_000);
    }

    #[test]
    fn numbers_follow_what_serde_json_parsed() {
        // Without serde_json's float_roundtrip feature some shortest decimals
        // parse one ulp off; such text does not denote the validated value.
        // serde_json without float_roundtrip reads this as 1000.0, so
        // `"maximum": 1000` would pass what a Java double reads as more.
        let text = "1000.0000000000001";
        let seen: f64 = serde_json::from_str(text).unwrap();
        let nearest: f64 = text.parse().unwrap();
        assert_eq!(numbers_exact(text.as_bytes()).is_ok(), seen == nearest);
        assert!(number_text_exact(text));
        let mut rng = Rng(42);
        for _ in 0..20_000 {
            let value = f64::from_bits(rng.next() >> 2);
            if !value.is_finite() || value == 0.0 {
                continue;
            }
            let text = format!("{value:e}");
            let seen: f64 = serde_json::from_str(&text).unwrap();
            assert_eq!(
                numbers_exact(text.as_bytes()).is_ok(),
                seen == value,
                "{text}"
            );
            assert!(number_text_exact(&text), "{text}");
        }
    }
}
