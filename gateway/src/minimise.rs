//! Response minimisation: internal headers removed, JSON fields kept to an
//! allow-list or cut by a deny-list, and a last-line leak guard that
//! refuses to pass on anything shaped like one of our API keys or a PEM
//! private key.

use std::collections::HashSet;
use std::sync::LazyLock;

use memchr::memmem;
use serde_json::{Map, Value};

use crate::problem::Reject;

pub const RESPONSE_LEAK_BLOCKED: Reject = Reject::new(
    502,
    "response_leak_blocked",
    "The upstream response contained a secret and was withheld",
);
pub const RESPONSE_NOT_FILTERABLE: Reject = Reject::new(
    502,
    "response_not_filterable",
    "The upstream response could not be reduced to the fields this route returns",
);
pub const UPSTREAM_FAILED: Reject = Reject::new(
    502,
    "upstream_failed",
    "The upstream service failed; its answer was withheld",
);

/// Header names, lower case; a trailing `*` matches any suffix.
#[derive(Debug, Clone, Default)]
pub struct HeaderPatterns {
    exact: HashSet<String>,
    prefixes: Vec<String>,
}

impl HeaderPatterns {
    pub fn new(patterns: &[String]) -> HeaderPatterns {
        let mut out = HeaderPatterns::default();
        for p in patterns {
            let p = p.to_ascii_lowercase();
            match p.strip_suffix('*') {
                Some(prefix) => out.prefixes.push(prefix.to_string()),
                None => {
                    out.exact.insert(p);
                }
            }
        }
        out
    }

    pub fn matches(&self, name: &str) -> bool {
        self.exact.contains(name) || self.prefixes.iter().any(|p| name.starts_with(p.as_str()))
    }
}

/// One pointer as segments; `*` is every element of an array.
type Pattern = Vec<String>;

fn pattern(text: &str) -> Result<Pattern, String> {
    crate::body::Pointer::parse(text, true).map(|p| p.segments())
}

/// A route's field filter.
#[derive(Debug, Clone)]
pub enum FieldFilter {
    /// Only these paths survive.
    Allow(Vec<Pattern>),
    /// These paths are removed.
    Deny(Vec<Pattern>),
}

impl FieldFilter {
    pub fn allow(pointers: &[String]) -> Result<FieldFilter, String> {
        pointers
            .iter()
            .map(|p| pattern(p))
            .collect::<Result<_, _>>()
            .map(FieldFilter::Allow)
    }

    pub fn deny(pointers: &[String]) -> Result<FieldFilter, String> {
        pointers
            .iter()
            .map(|p| pattern(p))
            .collect::<Result<_, _>>()
            .map(FieldFilter::Deny)
    }

    /// This filter with a partner's exceptions: more allowed paths, or
    /// fewer denied ones.
    pub fn with_exceptions(&self, exceptions: &[String]) -> Result<FieldFilter, String> {
        let extra: Vec<Pattern> = exceptions
            .iter()
            .map(|p| pattern(p))
            .collect::<Result<_, _>>()?;
        Ok(match self {
            FieldFilter::Allow(list) => {
                FieldFilter::Allow(list.iter().cloned().chain(extra).collect())
            }
            FieldFilter::Deny(list) => FieldFilter::Deny(
                list.iter()
                    .filter(|p| !extra.contains(p))
                    .cloned()
                    .collect(),
            ),
        })
    }

    pub fn apply(&self, doc: &Value) -> Value {
        match self {
            FieldFilter::Allow(list) => {
                let refs: Vec<&[String]> = list.iter().map(Vec::as_slice).collect();
                keep(doc, &refs).unwrap_or(Value::Null)
            }
            FieldFilter::Deny(list) => {
                let mut out = doc.clone();
                for p in list {
                    remove(&mut out, p);
                }
                out
            }
        }
    }
}

/// What of `value` the patterns reach; `None` when nothing.
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
            let mut out = Vec::with_capacity(items.len());
            let mut any = false;
            for (i, item) in items.iter().enumerate() {
                let index = i.to_string();
                let rests: Vec<&[String]> = patterns
                    .iter()
                    .filter(|p| p[0] == "*" || p[0] == index)
                    .map(|p| &p[1..])
                    .collect();
                // Elements keep their places; one with nothing allowed is empty.
                match keep(item, &rests) {
                    Some(kept) => {
                        any = true;
                        out.push(kept);
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
            } else if let Some(child) = map.get_mut(first) {
                remove(child, rest);
            }
        }
        Value::Array(items) => {
            if first == "*" {
                if rest.is_empty() {
                    items.clear();
                } else {
                    for item in items.iter_mut() {
                        remove(item, rest);
                    }
                }
            } else if let Ok(i) = first.parse::<usize>() {
                if let Some(child) = items.get_mut(i) {
                    if rest.is_empty() {
                        *child = Value::Null;
                    } else {
                        remove(child, rest);
                    }
                }
            }
        }
        _ => {}
    }
}

/// Finds what must never leave the gateway in a response: text shaped
/// like one of our API keys, or a PEM private key block. Fed in chunks;
/// a match split across chunks is still found.
#[derive(Debug, Default)]
pub struct LeakScanner {
    /// The end of the previous chunk, long enough to hold a split match.
    carry: Vec<u8>,
}

const PEM_MARK: &[u8] = b"PRIVATE KEY-----";
/// `ptc_live_` + 49 base62 characters (secret and checksum).
const KEY_TAIL: usize = 49;
const CARRY: usize = 64;

impl LeakScanner {
    /// True when `chunk`, read after everything fed before, completes a leak.
    pub fn leaks(&mut self, chunk: &[u8]) -> bool {
        // A match lies inside the chunk, or spans its start: the latter
        // fits in the previous tail plus the chunk's first CARRY bytes, so
        // only that small window is copied, never the chunk.
        let mut boundary = std::mem::take(&mut self.carry);
        boundary.extend_from_slice(&chunk[..chunk.len().min(CARRY)]);
        let found = leaks_in(&boundary) || leaks_in(chunk);
        self.carry = if chunk.len() >= CARRY {
            chunk[chunk.len() - CARRY..].to_vec()
        } else {
            boundary[boundary.len().saturating_sub(CARRY)..].to_vec()
        };
        found
    }
}

/// Whether one complete value (a header, a held body) holds a secret.
pub fn contains_secret(bytes: &[u8]) -> bool {
    leaks_in(bytes)
}

fn leaks_in(bytes: &[u8]) -> bool {
    contains_key(bytes) || contains_pem(bytes)
}

// Built once: building a searcher costs more than scanning a small body
// with it, and the scan runs on every response chunk.
static PEM_FINDER: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(PEM_MARK));
static KEY_FINDER: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(crate::keys::format::PREFIX.as_bytes()));

fn contains_pem(bytes: &[u8]) -> bool {
    PEM_FINDER
        .find_iter(bytes)
        .any(|i| bytes[..i].ends_with(b" ") && has_begin(&bytes[..i]))
}

/// `-----BEGIN [RSA |EC |ENCRYPTED |OPENSSH ]` before the mark.
fn has_begin(before: &[u8]) -> bool {
    let tail = &before[before.len().saturating_sub(32)..];
    tail.windows(11).any(|w| w == b"-----BEGIN ")
}

fn contains_key(bytes: &[u8]) -> bool {
    let prefix = crate::keys::format::PREFIX.as_bytes();
    KEY_FINDER.find_iter(bytes).any(|i| {
        let rest = &bytes[i + prefix.len()..];
        rest.len() >= KEY_TAIL && rest[..KEY_TAIL].iter().all(u8::is_ascii_alphanumeric)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Value {
        json!({
            "id": "acme-1001",
            "partner": "acme",
            "internal_cost_cents": 410,
            "items": [
                {"sku": "A-1", "db_shard": "s1", "margin": 3},
                {"sku": "B-2", "db_shard": "s2", "margin": 4}
            ]
        })
    }

    #[test]
    fn an_allow_list_keeps_only_what_it_names() {
        let f = FieldFilter::allow(&["/id".into(), "/items/*/sku".into()]).unwrap();
        assert_eq!(
            f.apply(&doc()),
            json!({"id": "acme-1001", "items": [{"sku": "A-1"}, {"sku": "B-2"}]})
        );
        let with_margin = f.with_exceptions(&["/items/*/margin".into()]).unwrap();
        assert_eq!(
            with_margin.apply(&doc())["items"][1],
            json!({"sku": "B-2", "margin": 4})
        );
        let nothing = FieldFilter::allow(&["/absent".into()]).unwrap();
        assert_eq!(nothing.apply(&doc()), Value::Null);
    }

    #[test]
    fn a_deny_list_removes_what_it_names() {
        let f = FieldFilter::deny(&[
            "/internal_cost_cents".into(),
            "/items/*/db_shard".into(),
            "/items/*/margin".into(),
        ])
        .unwrap();
        let out = f.apply(&doc());
        assert!(out.get("internal_cost_cents").is_none());
        assert_eq!(out["items"][0], json!({"sku": "A-1"}));
        let acme = f.with_exceptions(&["/items/*/margin".into()]).unwrap();
        assert_eq!(
            acme.apply(&doc())["items"][0],
            json!({"sku": "A-1", "margin": 3})
        );
    }

    #[test]
    fn leaks_are_found_even_across_chunks() {
        let key = format!("{}{}", crate::keys::format::PREFIX, "a".repeat(KEY_TAIL));
        let body = format!(r#"{{"note":"use {key} please"}}"#);
        let mut s = LeakScanner::default();
        assert!(s.leaks(body.as_bytes()));
        for split in [5, 20, 30, 40] {
            let mut s = LeakScanner::default();
            let (a, b) = body.as_bytes().split_at(split);
            assert!(s.leaks(a) || s.leaks(b), "split at {split}");
        }
        let pem = "x\n-----BEGIN RSA PRIVATE KEY-----\nMIIE";
        for split in 0..pem.len() {
            let mut s = LeakScanner::default();
            let (a, b) = pem.as_bytes().split_at(split);
            assert!(s.leaks(a) || s.leaks(b), "pem split at {split}");
        }
        // Dribbled a few bytes at a time, after a long clean prefix.
        let mut s = LeakScanner::default();
        let long = format!("{}{body}", "x".repeat(1000));
        assert!(long.as_bytes().chunks(5).any(|c| s.leaks(c)));
        let mut clean = LeakScanner::default();
        assert!(!clean.leaks(b"ptc_live_short and -----BEGIN CERTIFICATE----- are fine"));
        assert!(!clean.leaks(b"PUBLIC KEY-----"));
    }
}
