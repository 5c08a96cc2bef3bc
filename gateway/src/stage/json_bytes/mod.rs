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

mod elements;
mod numbers;
mod scanner;
#[cfg(test)]
mod tests;

pub use elements::{array_elements, keep_elements, Elements};
pub use numbers::{number_text_exact, numbers_exact, InexactNumber};
use scanner::Scanner;

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
