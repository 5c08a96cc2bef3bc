//! Response minimisation: internal headers removed, JSON fields kept to an
//! allow-list or cut by a deny-list, and a last-line leak guard that
//! refuses to pass on anything shaped like one of our API keys or a PEM
//! private key.

use std::collections::HashSet;
use std::sync::LazyLock;

use memchr::memmem;

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

    /// The upstream's answer with only what the filter lets through: the
    /// spans of removed members are cut out of the original bytes and
    /// everything kept reaches the partner byte for byte (numbers, escapes,
    /// key order and whitespace as the upstream wrote them).
    pub fn apply(&self, body: &[u8]) -> Result<Vec<u8>, crate::json_bytes::NotFilterable> {
        let filter = match self {
            FieldFilter::Allow(list) => crate::json_bytes::Filter::Allow(list),
            FieldFilter::Deny(list) => crate::json_bytes::Filter::Deny(list),
        };
        crate::json_bytes::filter(body, filter, crate::body::MAX_DEPTH)
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

/// Text from outside (an upstream's body, a client's bytes) made fit for a
/// log line: secrets the leak guard knows are replaced, and control
/// characters are escaped so a newline cannot start a forged line.
pub fn log_safe(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len());
    let mut rest: &str = &text;
    while !rest.is_empty() {
        if let Some(after) = strip_prefix_ignore_case(rest, crate::keys::format::PREFIX) {
            out.push_str("[redacted key]");
            rest = after.trim_start_matches(|c: char| c.is_ascii_alphanumeric());
            continue;
        }
        if rest.starts_with("-----BEGIN ") && private_key_header(rest) {
            out.push_str("[redacted private key]");
            rest = pem_block_end(rest);
            continue;
        }
        let Some(c) = rest.chars().next() else { break };
        if c.is_control() || c == '\\' {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// `-----BEGIN <anything> PRIVATE KEY-----` on this line.
fn private_key_header(text: &str) -> bool {
    let line = text.split('\n').next().unwrap_or(text);
    let line = &line[..line.len().min(64)];
    line.contains("PRIVATE KEY-----")
}

/// What follows the block's `-----END … PRIVATE KEY-----` line; everything
/// is the block when it never ends.
fn pem_block_end(text: &str) -> &str {
    let Some(end) = text.find("-----END ") else {
        return "";
    };
    let after_end = &text[end + "-----END ".len()..];
    match after_end.find("-----") {
        Some(close) => &after_end[close + "-----".len()..],
        None => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn log_text_loses_secrets_and_cannot_forge_lines() {
        let key = format!("{}{}", crate::keys::format::PREFIX, "a".repeat(KEY_TAIL));
        let pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----";
        let body = format!("error: key={key}, {pem} done\nINFO forged line\r\x1b[31m\\n");
        let safe = log_safe(body.as_bytes());
        assert!(!safe.contains(crate::keys::format::PREFIX), "{safe}");
        assert!(!safe.contains("MIIE"), "{safe}");
        assert!(!safe.contains('\n') && !safe.contains('\r') && !safe.contains('\x1b'));
        assert_eq!(
            safe,
            "error: key=[redacted key], [redacted private key] done\\nINFO forged line\\r\\u{1b}[31m\\\\n"
        );
        let unended = log_safe(b"x -----BEGIN RSA PRIVATE KEY-----\nMIIE");
        assert_eq!(unended, "x [redacted private key]");
        assert_eq!(
            log_safe("caf\u{e9} PTC_LIVE_abc!".as_bytes()),
            "caf\u{e9} [redacted key]!"
        );
    }

    fn doc() -> Vec<u8> {
        serde_json::to_vec(&json!({
            "id": "acme-1001",
            "partner": "acme",
            "internal_cost_cents": 410,
            "items": [
                {"sku": "A-1", "db_shard": "s1", "margin": 3},
                {"sku": "B-2", "db_shard": "s2", "margin": 4}
            ]
        }))
        .unwrap()
    }

    fn apply(f: &FieldFilter) -> Value {
        serde_json::from_slice(&f.apply(&doc()).unwrap()).unwrap()
    }

    #[test]
    fn an_allow_list_keeps_only_what_it_names() {
        let f = FieldFilter::allow(&["/id".into(), "/items/*/sku".into()]).unwrap();
        assert_eq!(
            apply(&f),
            json!({"id": "acme-1001", "items": [{"sku": "A-1"}, {"sku": "B-2"}]})
        );
        let with_margin = f.with_exceptions(&["/items/*/margin".into()]).unwrap();
        assert_eq!(
            apply(&with_margin)["items"][1],
            json!({"sku": "B-2", "margin": 4})
        );
        let nothing = FieldFilter::allow(&["/absent".into()]).unwrap();
        assert_eq!(apply(&nothing), Value::Null);
    }

    #[test]
    fn a_deny_list_removes_what_it_names() {
        let f = FieldFilter::deny(&[
            "/internal_cost_cents".into(),
            "/items/*/db_shard".into(),
            "/items/*/margin".into(),
        ])
        .unwrap();
        let out = apply(&f);
        assert!(out.get("internal_cost_cents").is_none());
        assert_eq!(out["items"][0], json!({"sku": "A-1"}));
        let acme = f.with_exceptions(&["/items/*/margin".into()]).unwrap();
        assert_eq!(apply(&acme)["items"][0], json!({"sku": "A-1", "margin": 3}));
    }

    #[test]
    fn kept_values_reach_the_partner_byte_for_byte() {
        let f = FieldFilter::deny(&["/internal".into()]).unwrap();
        let body = br#"{ "z": 12345678901234567890123, "internal": {"cost": 1},
  "d": 0.123456789012345678901234567890123456, "tiny": 1e-400, "p": 1.10,
  "a": "caf\u00e9 \/ x" }"#;
        let out = f.apply(body).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{ "z": 12345678901234567890123,
  "d": 0.123456789012345678901234567890123456, "tiny": 1e-400, "p": 1.10,
  "a": "caf\u00e9 \/ x" }"#
        );
        assert!(f.apply(b"{\"a\":1} trailing").is_err());
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
