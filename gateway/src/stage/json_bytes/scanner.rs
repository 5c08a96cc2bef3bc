//! The validating cursor `filter` walks a document with: it copies the
//! bytes that are kept and checks every byte it skips.

use super::{NotFilterable, Scan};

/// A validating cursor over the document. Pattern state lives outside it, in
/// one `arena` vector per call: the patterns active at a node are a range of
/// that vector, and a child's range is pushed after it and truncated away
/// afterwards, so walking the document allocates nothing per value.
pub(super) struct Scanner<'a> {
    pub(super) b: &'a [u8],
    pub(super) pos: usize,
    pub(super) max_depth: usize,
    /// Kinds of the containers open inside `skip_value` (true for objects);
    /// a field so its capacity is reused across values.
    pub(super) open: Vec<bool>,
    /// Decoded form of the current key, used only when the key has escapes.
    pub(super) key: Vec<u8>,
}

impl Scanner<'_> {
    pub(super) fn fail<T>(&self, reason: &'static str) -> Scan<T> {
        Err(NotFilterable {
            offset: self.pos,
            reason,
        })
    }

    pub(super) fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    pub(super) fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    /// Refuses to open a container inside `depth` others when that would
    /// exceed the limit.
    pub(super) fn enter(&self, depth: usize) -> Scan<()> {
        if depth >= self.max_depth {
            return self.fail("nesting deeper than the limit");
        }
        Ok(())
    }

    /// Allow-list walk of the value at `pos` with patterns `arena[start..]`.
    /// Returns whether anything was kept; on `false` the caller discards what
    /// was written to `out`.
    pub(super) fn allow(
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

    pub(super) fn allow_object(
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

    pub(super) fn allow_array(
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
    pub(super) fn deny(
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

    pub(super) fn deny_object(
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

    pub(super) fn deny_array(
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

    pub(super) fn copy_value(&mut self, out: &mut Vec<u8>, depth: usize) -> Scan<()> {
        let start = self.pos;
        self.skip_value(depth)?;
        out.extend_from_slice(&self.b[start..self.pos]);
        Ok(())
    }

    /// Validates the value at `pos` (whitespace already skipped) and moves
    /// past it, without recursion.
    pub(super) fn skip_value(&mut self, depth: usize) -> Scan<()> {
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
    pub(super) fn member_head(&mut self) -> Scan<(usize, usize, bool)> {
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
    pub(super) fn key_bytes(&mut self, (start, end, escaped): (usize, usize, bool)) -> &[u8] {
        let raw = &self.b[start..end];
        if !escaped {
            return raw;
        }
        unescape(raw, &mut self.key);
        &self.key
    }

    /// Validates the string at `pos` and moves past it; returns whether it
    /// contains escapes.
    pub(super) fn string(&mut self) -> Scan<bool> {
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

    pub(super) fn escape(&mut self) -> Scan<()> {
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

    pub(super) fn scalar(&mut self) -> Scan<()> {
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
    pub(super) fn number(&mut self) -> Scan<()> {
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

    pub(super) fn digits(&mut self) {
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
