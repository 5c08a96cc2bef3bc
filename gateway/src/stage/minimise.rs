//! Response minimisation: internal headers removed, JSON fields kept to an
//! allow-list or cut by a deny-list, and a last-line leak guard that
//! refuses to pass on anything shaped like one of our API keys or a PEM
//! private key.

use std::collections::HashSet;
use std::sync::LazyLock;

use memchr::memmem;

use crate::config::model::ReplaceErrors;
use crate::stage::body::{bound_to, parse_response, Bound, Pointer, MAX_DEPTH};
use crate::stage::problem::{self, Reject};

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
    crate::stage::body::Pointer::parse(text, true).map(|p| p.segments())
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
    pub fn apply(&self, body: &[u8]) -> Result<Vec<u8>, crate::stage::json_bytes::NotFilterable> {
        let filter = match self {
            FieldFilter::Allow(list) => crate::stage::json_bytes::Filter::Allow(list),
            FieldFilter::Deny(list) => crate::stage::json_bytes::Filter::Deny(list),
        };
        crate::stage::json_bytes::filter(body, filter, crate::stage::body::MAX_DEPTH)
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
/// `ptc_live_` or `ptc_mgmt_` + 49 base62 characters (secret and checksum).
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
    LazyLock::new(|| memmem::Finder::new(crate::keys::format::STEM.as_bytes()));

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
    KEY_FINDER.find_iter(bytes).any(|i| {
        crate::keys::format::PREFIXES.iter().any(|prefix| {
            bytes[i..].starts_with(prefix.as_bytes()) && {
                let rest = &bytes[i + prefix.len()..];
                rest.len() >= KEY_TAIL && rest[..KEY_TAIL].iter().all(u8::is_ascii_alphanumeric)
            }
        })
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
        if let Some(after) = crate::keys::format::PREFIXES
            .iter()
            .find_map(|prefix| strip_prefix_ignore_case(rest, prefix))
        {
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

/// Whether an upstream answer is withheld and replaced by a problem
/// document, decided on its header: a secret in a header value always,
/// an error status as `response.replace_errors` says.
pub fn withheld(status: u16, replace: ReplaceErrors, secret_in_headers: bool) -> Option<Reject> {
    let failed = match replace {
        _ if secret_in_headers => return Some(problem::RESPONSE_LEAK_BLOCKED),
        ReplaceErrors::Server if status >= 500 => problem::UPSTREAM_FAILED,
        ReplaceErrors::All if status >= 400 => problem::UPSTREAM_FAILED,
        _ => return None,
    };
    // The status class is the client's business; the body is not.
    Some(Reject { status, ..failed })
}

/// An upstream answer held back whole, as the route's response rules see it.
pub struct Held<'a> {
    pub success: bool,
    /// The body is content-encoded: it cannot be read, so not checked.
    pub encoded: bool,
    pub body: &'a [u8],
    /// The pointer that must name the caller in a successful answer.
    pub bind: Option<&'a Pointer>,
    pub fields: Option<&'a FieldFilter>,
    pub partner: &'a str,
    pub block_secrets: bool,
}

/// The body to send for a held answer, or why it must not be sent. Only
/// successful answers carry partner data: they must belong to the caller
/// and are cut to the route's fields. Error answers (the gateway's own, or
/// already replaced) pass as they are, through the leak guard.
pub fn check_held(held: Held<'_>) -> Result<Option<Vec<u8>>, Reject> {
    let mut cut = None;
    if held.success {
        if let Some(pointer) = held.bind {
            let owned = !held.encoded
                && parse_response(held.body, MAX_DEPTH)
                    .is_ok_and(|d| bound_to(pointer, &d, held.partner) == Bound::Yes);
            if !owned {
                return Err(problem::RESPONSE_PARTNER_MISMATCH);
            }
        }
        if let Some(fields) = held.fields {
            if held.encoded {
                return Err(problem::RESPONSE_NOT_FILTERABLE);
            }
            cut = Some(
                fields
                    .apply(held.body)
                    .map_err(|_| problem::RESPONSE_NOT_FILTERABLE)?,
            );
        }
    }
    let sent = cut.as_deref().unwrap_or(held.body);
    if held.block_secrets && contains_secret(sent) {
        return Err(problem::RESPONSE_LEAK_BLOCKED);
    }
    Ok(cut)
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
        // A management credential is a secret too.
        let credential = format!(
            "{}{}",
            crate::keys::format::MANAGEMENT_PREFIX,
            "b".repeat(KEY_TAIL)
        );
        assert!(LeakScanner::default().leaks(credential.as_bytes()));
        let safe = log_safe(format!("token {credential}").as_bytes());
        assert!(!safe.contains("bbbb"), "{safe}");
    }

    #[test]
    fn error_answers_are_withheld_as_configured_keeping_the_status() {
        assert_eq!(withheld(200, ReplaceErrors::All, false), None);
        let replaced = withheld(503, ReplaceErrors::Server, false).unwrap();
        assert_eq!((replaced.code, replaced.status), ("upstream_failed", 503));
        assert_eq!(withheld(404, ReplaceErrors::Server, false), None);
        assert_eq!(
            withheld(404, ReplaceErrors::All, false).map(|r| r.status),
            Some(404)
        );
        assert_eq!(withheld(500, ReplaceErrors::None, false), None);
        assert_eq!(
            withheld(200, ReplaceErrors::None, true),
            Some(problem::RESPONSE_LEAK_BLOCKED)
        );
    }

    #[test]
    fn a_held_answer_must_be_the_callers_and_is_cut_to_its_fields() {
        let pointer = Pointer::parse("/partner", false).unwrap();
        let fields = FieldFilter::allow(&["/id".to_string(), "/partner".to_string()]).unwrap();
        let held = |body: &'static str, success, encoded| Held {
            success,
            encoded,
            body: body.as_bytes(),
            bind: Some(&pointer),
            fields: Some(&fields),
            partner: "acme",
            block_secrets: true,
        };
        let cut = check_held(held(r#"{"id":1,"partner":"acme","cost":9}"#, true, false)).unwrap();
        assert_eq!(
            cut.as_deref(),
            Some(br#"{"id":1,"partner":"acme"}"#.as_slice())
        );
        assert_eq!(
            check_held(held(r#"{"id":1,"partner":"globex"}"#, true, false)),
            Err(problem::RESPONSE_PARTNER_MISMATCH)
        );
        assert_eq!(
            check_held(held(r#"{"id":1,"partner":"acme"}"#, true, true)),
            Err(problem::RESPONSE_PARTNER_MISMATCH),
            "an encoded body cannot be shown to be the caller's"
        );
        assert_eq!(
            check_held(held(r#"{"detail":"x"}"#, false, false)),
            Ok(None)
        );
        assert_eq!(
            check_held(held("-----BEGIN PRIVATE KEY-----", false, false)),
            Err(problem::RESPONSE_LEAK_BLOCKED)
        );
    }
}
