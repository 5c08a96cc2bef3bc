//! Finding the credential in a request: `Authorization: Bearer <key>` or an
//! API-key header. Keys in the query string are refused (they end up in
//! access logs and browser history), and so are requests carrying two
//! different credentials (which one would an upstream believe?).

use http::HeaderMap;

use crate::stage::problem;
use crate::stage::problem::Reject;

/// Query parameter names that mean "here is my key".
pub const QUERY_NAMES: [&str; 6] = [
    "api_key",
    "apikey",
    "key",
    "access_token",
    "token",
    "x-api-key",
];

/// Returns the presented credential bytes, or why the request is refused.
pub fn extract<'a>(
    headers: &'a HeaderMap,
    query: Option<&str>,
    key_header: &str,
) -> Result<&'a [u8], Reject> {
    if let Some(q) = query {
        for pair in q.split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if QUERY_NAMES.iter().any(|n| n.eq_ignore_ascii_case(name))
                || super::format::PREFIXES.iter().any(|p| value.starts_with(p))
            {
                return Err(problem::KEY_IN_QUERY);
            }
        }
    }
    let mut found: Option<&[u8]> = None;
    let mut offer = |candidate: &'a [u8]| -> Result<(), Reject> {
        match found {
            Some(previous) if previous != candidate => Err(problem::CONFLICTING_CREDENTIALS),
            _ => {
                found = Some(candidate);
                Ok(())
            }
        }
    };
    for value in headers.get_all(http::header::AUTHORIZATION) {
        let bytes = value.as_bytes();
        let token = bytes
            .get(..7)
            .filter(|scheme| scheme.eq_ignore_ascii_case(b"bearer "))
            .map(|_| trim(&bytes[7..]))
            // Basic, Digest, … are not ours: a second credential scheme.
            .ok_or(problem::CONFLICTING_CREDENTIALS)?;
        offer(token)?;
    }
    for value in headers.get_all(key_header) {
        offer(trim(value.as_bytes()))?;
    }
    found.filter(|k| !k.is_empty()).ok_or(problem::KEY_MISSING)
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &bytes[start..end]
}

/// Every header that may carry a credential, to remove before the
/// request goes upstream.
pub fn headers(key_header: &str) -> [&str; 2] {
    ["authorization", key_header]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn bearer_or_key_header() {
        let h = headers(&[("authorization", "Bearer abc")]);
        assert_eq!(extract(&h, None, "x-api-key"), Ok(&b"abc"[..]));
        let h = headers(&[("x-api-key", " abc ")]);
        assert_eq!(extract(&h, None, "x-api-key"), Ok(&b"abc"[..]));
        let h = headers(&[("authorization", "bearer abc"), ("x-api-key", "abc")]);
        assert_eq!(extract(&h, None, "x-api-key"), Ok(&b"abc"[..]));
    }

    #[test]
    fn missing_conflicting_and_query_keys_are_refused() {
        assert_eq!(
            extract(&headers(&[]), None, "x-api-key"),
            Err(problem::KEY_MISSING)
        );
        assert_eq!(
            extract(&headers(&[("x-api-key", "")]), None, "x-api-key"),
            Err(problem::KEY_MISSING)
        );
        let two = headers(&[("authorization", "Bearer a"), ("x-api-key", "b")]);
        assert_eq!(
            extract(&two, None, "x-api-key"),
            Err(problem::CONFLICTING_CREDENTIALS)
        );
        let dup = headers(&[("x-api-key", "a"), ("x-api-key", "b")]);
        assert_eq!(
            extract(&dup, None, "x-api-key"),
            Err(problem::CONFLICTING_CREDENTIALS)
        );
        let basic = headers(&[("authorization", "Basic dXNlcjpwYXNz")]);
        assert_eq!(
            extract(&basic, None, "x-api-key"),
            Err(problem::CONFLICTING_CREDENTIALS)
        );
        let ok = headers(&[("x-api-key", "a")]);
        assert_eq!(
            extract(&ok, Some("page=2&API_KEY=x"), "x-api-key"),
            Err(problem::KEY_IN_QUERY)
        );
        assert_eq!(
            extract(&ok, Some("q=ptc_live_abc"), "x-api-key"),
            Err(problem::KEY_IN_QUERY)
        );
        assert_eq!(extract(&ok, Some("page=2"), "x-api-key"), Ok(&b"a"[..]));
    }
}
