//! Path normalisation. The gateway matches routes on, and forwards, one
//! canonical form of the path, so the gateway and the upstream can never
//! disagree about which resource a request names.
//!
//! - percent-encoded unreserved characters are decoded (`%61` → `a`, `%2e` → `.`);
//! - other percent-encodings are kept, with upper-case hex;
//! - dot segments are resolved and repeated slashes collapsed;
//! - encoded slashes and backslashes, NUL and other control characters, raw
//!   backslashes, raw non-ASCII bytes and traversal above the root are
//!   refused: each has a different meaning on some upstream.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Not an origin-form path, or a broken percent-escape.
    Malformed,
    /// A form that upstreams interpret differently (`%2f`, `\`, NUL, …).
    Ambiguous,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathError::Malformed => f.write_str("malformed path"),
            PathError::Ambiguous => f.write_str("ambiguous path"),
        }
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// A byte that must never reach an upstream, raw or encoded.
fn is_forbidden(b: u8) -> bool {
    b < 0x20 || b == 0x7f || b == b'\\'
}

/// Decodes what may be decoded in one segment, refusing ambiguous forms.
fn canonical_segment(raw: &[u8], out: &mut String) -> Result<(), PathError> {
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b == b'%' {
            let hi = raw.get(i + 1).copied().and_then(hex_value);
            let lo = raw.get(i + 2).copied().and_then(hex_value);
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(PathError::Malformed);
            };
            let decoded = hi << 4 | lo;
            if decoded == b'/' || is_forbidden(decoded) {
                return Err(PathError::Ambiguous);
            }
            if is_unreserved(decoded) {
                out.push(char::from(decoded));
            } else {
                out.push('%');
                out.push(char::from(b"0123456789ABCDEF"[usize::from(hi)]));
                out.push(char::from(b"0123456789ABCDEF"[usize::from(lo)]));
            }
            i += 3;
            continue;
        }
        if is_forbidden(b) {
            return Err(PathError::Ambiguous);
        }
        if !b.is_ascii() || b == b'#' || b == b'?' || b == b' ' {
            return Err(PathError::Malformed);
        }
        out.push(char::from(b));
        i += 1;
    }
    Ok(())
}

/// Returns the canonical form of an origin-form request path (no query).
pub fn normalise(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::Malformed);
    }
    let trailing_slash = bytes.len() > 1 && bytes.ends_with(b"/");
    let mut segments: Vec<String> = Vec::new();
    let mut last_was_dot = false;
    for raw_segment in bytes[1..].split(|&b| b == b'/') {
        let mut segment = String::with_capacity(raw_segment.len());
        canonical_segment(raw_segment, &mut segment)?;
        last_was_dot = false;
        match segment.as_str() {
            "" => {}
            "." => last_was_dot = true,
            ".." => {
                if segments.pop().is_none() {
                    return Err(PathError::Ambiguous);
                }
                last_was_dot = true;
            }
            _ => segments.push(segment),
        }
    }
    let mut out = String::with_capacity(raw.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    // `/a/b/..` names the directory `/a/`, as RFC 3986 resolution does.
    if out.is_empty() || ((trailing_slash || last_was_dot) && !segments.is_empty()) {
        out.push('/');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(input: &str, expected: &str) {
        assert_eq!(normalise(input).as_deref(), Ok(expected), "input {input}");
    }

    #[test]
    fn canonical_paths_are_unchanged() {
        ok("/", "/");
        ok("/partners/acme/orders", "/partners/acme/orders");
        ok("/partners/acme/orders/", "/partners/acme/orders/");
    }

    #[test]
    fn dot_segments_and_repeated_slashes_collapse() {
        ok("//partners///acme/orders", "/partners/acme/orders");
        ok("/partners/./acme/orders", "/partners/acme/orders");
        ok("/partners/other/../acme/orders", "/partners/acme/orders");
        ok("/partners/acme/orders/..", "/partners/acme/");
        ok("/partners/%2e%2e/x", "/x");
        ok("/partners/%2E/acme", "/partners/acme");
    }

    #[test]
    fn unreserved_escapes_are_decoded_others_kept_uppercase() {
        ok("/p%61rtners/%7Eacme", "/partners/~acme");
        ok("/a/%c3%a9", "/a/%C3%A9");
        ok("/a/b%3bc", "/a/b%3Bc");
    }

    #[test]
    fn ambiguous_forms_are_refused() {
        for bad in [
            "/a%2fb",
            "/a%2Fb",
            "/a%5cb",
            "/a\\b",
            "/a%00b",
            "/a%0ab",
            "/a%7f",
            "/..",
            "/a/../..",
            "/%2e%2e/etc",
        ] {
            assert_eq!(normalise(bad), Err(PathError::Ambiguous), "input {bad}");
        }
    }

    #[test]
    fn malformed_forms_are_refused() {
        for bad in ["", "a/b", "*", "/a%", "/a%4", "/a%zz", "/a b", "/é"] {
            assert_eq!(normalise(bad), Err(PathError::Malformed), "input {bad:?}");
        }
    }
}
