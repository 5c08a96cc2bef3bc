//! The elements of one array inside a document, as byte spans, so a list
//! can lose rows while every row it keeps reaches the client as the
//! upstream wrote it.

use std::ops::Range;

use super::{NotFilterable, Scan, Scanner};

/// Where an array's elements lie in the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Elements {
    /// Just after `[`.
    inner_start: usize,
    /// At `]`.
    close: usize,
    pub spans: Vec<Range<usize>>,
}

/// Finds the array reached by following the object keys `path` from the
/// top of `bytes` (an empty path: the document is the array). A key that
/// appears twice on the way is refused: which of the two a client reads is
/// its parser's choice.
pub fn array_elements(bytes: &[u8], path: &[String], max_depth: usize) -> Scan<Elements> {
    if let Err(e) = std::str::from_utf8(bytes) {
        return Err(NotFilterable {
            offset: e.valid_up_to(),
            reason: "invalid UTF-8",
        });
    }
    let mut s = Scanner {
        b: bytes,
        pos: 0,
        max_depth,
        open: Vec::new(),
        key: Vec::new(),
    };
    s.skip_ws();
    let mut depth = 0;
    for key in path {
        if s.peek() != Some(b'{') {
            return s.fail("the rows path meets something that is not an object");
        }
        s.enter(depth)?;
        s.pos += 1;
        s.skip_ws();
        let mut found = None;
        if s.peek() == Some(b'}') {
            return s.fail("the rows path names a key the answer lacks");
        }
        loop {
            let head = s.member_head()?;
            if s.key_bytes(head) == key.as_bytes() {
                if found.is_some() {
                    return s.fail("a key on the rows path appears twice");
                }
                found = Some(s.pos);
            }
            s.skip_value(depth + 1)?;
            s.skip_ws();
            match s.peek() {
                Some(b',') => {
                    s.pos += 1;
                    s.skip_ws();
                }
                Some(b'}') => break,
                _ => return s.fail("expected ',' or '}'"),
            }
        }
        let Some(at) = found else {
            return s.fail("the rows path names a key the answer lacks");
        };
        s.pos = at;
        depth += 1;
    }
    if s.peek() != Some(b'[') {
        return s.fail("the rows path does not reach an array");
    }
    s.enter(depth)?;
    s.pos += 1;
    let inner_start = s.pos;
    let mut spans = Vec::new();
    s.skip_ws();
    if s.peek() == Some(b']') {
        return Ok(Elements {
            inner_start,
            close: s.pos,
            spans,
        });
    }
    loop {
        let start = s.pos;
        s.skip_value(depth + 1)?;
        spans.push(start..s.pos);
        s.skip_ws();
        match s.peek() {
            Some(b',') => {
                s.pos += 1;
                s.skip_ws();
            }
            Some(b']') => {
                return Ok(Elements {
                    inner_start,
                    close: s.pos,
                    spans,
                })
            }
            _ => return s.fail("expected ',' or ']'"),
        }
    }
}

/// The document with only the elements where `keep` is true. Kept elements
/// and everything outside the array are copied byte for byte; a kept
/// element carries the separator that preceded it in the original (or, for
/// the first one kept, the whitespace after `[`).
pub fn keep_elements(bytes: &[u8], elements: &Elements, keep: &[bool]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&bytes[..elements.inner_start]);
    let mut first = true;
    let mut kept_any = false;
    debug_assert_eq!(keep.len(), elements.spans.len());
    for (i, span) in elements.spans.iter().enumerate() {
        if !keep.get(i).copied().unwrap_or(false) {
            continue;
        }
        if first {
            let lead = &bytes[elements.inner_start..elements.spans[0].start];
            out.extend_from_slice(lead);
            first = false;
        } else {
            let prev_end = elements.spans[i - 1].end;
            let sep = &bytes[prev_end..span.start];
            // Between two elements there is always exactly one comma.
            out.extend_from_slice(sep);
        }
        out.extend_from_slice(&bytes[span.clone()]);
        kept_any = true;
    }
    if kept_any {
        // The whitespace after the original last row, before `]`.
        let last = elements
            .spans
            .last()
            .map_or(elements.inner_start, |s| s.end);
        out.extend_from_slice(&bytes[last..elements.close]);
    }
    out.extend_from_slice(&bytes[elements.close..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keep(doc: &str, path: &[&str], keep: &[bool]) -> String {
        let path: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        let e = array_elements(doc.as_bytes(), &path, 32).unwrap();
        String::from_utf8(keep_elements(doc.as_bytes(), &e, keep)).unwrap()
    }

    #[test]
    fn kept_rows_are_byte_for_byte_and_commas_stay_right() {
        let doc = r#"{"orders": [ {"id":"a","n":1.50} , {"id":"b"},{"id":"c","big":12345678901234567890} ], "next": null}"#;
        assert_eq!(
            keep(doc, &["orders"], &[true, false, true]),
            r#"{"orders": [ {"id":"a","n":1.50},{"id":"c","big":12345678901234567890} ], "next": null}"#
        );
        assert_eq!(
            keep(doc, &["orders"], &[false, false, true]),
            r#"{"orders": [ {"id":"c","big":12345678901234567890} ], "next": null}"#
        );
        assert_eq!(
            keep(doc, &["orders"], &[true, false, false]),
            r#"{"orders": [ {"id":"a","n":1.50} ], "next": null}"#
        );
        assert_eq!(
            keep(doc, &["orders"], &[false, false, false]),
            r#"{"orders": [], "next": null}"#
        );
        assert_eq!(keep(doc, &["orders"], &[true, true, true]), doc);
        let top = "[1,2 ,\n 3]";
        assert_eq!(keep(top, &[], &[false, true, true]), "[2 ,\n 3]");
        assert_eq!(keep("[]", &[], &[]), "[]");
        // Every output is valid JSON.
        for mask in 0..8u8 {
            let k: Vec<bool> = (0..3).map(|i| mask & (1 << i) != 0).collect();
            let out = keep(doc, &["orders"], &k);
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(
                v["orders"].as_array().unwrap().len(),
                k.iter().filter(|b| **b).count()
            );
        }
    }

    #[test]
    fn an_unclear_rows_path_is_refused() {
        let path = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        for (doc, p) in [
            (r#"{"orders":[],"orders":[{"id":"x"}]}"#, path(&["orders"])),
            (r#"{"rows":[]}"#, path(&["orders"])),
            (r#"{"orders":{"id":"x"}}"#, path(&["orders"])),
            (r#"[{"id":"x"}]"#, path(&["orders"])),
            (r#"{"orders":[1,]}"#, path(&["orders"])),
        ] {
            assert!(array_elements(doc.as_bytes(), &p, 32).is_err(), "{doc}");
        }
        // An escaped key is the key it decodes to.
        let e = array_elements(br#"{"ord\u0065rs":[1]}"#, &path(&["orders"]), 32).unwrap();
        assert_eq!(e.spans.len(), 1);
    }
}
