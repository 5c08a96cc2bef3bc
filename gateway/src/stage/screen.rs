//! Screening, before anything looks up a key or a route: the framing and
//! size limits (`protocol`), one meaning for the target and the headers
//! (`unambiguous`), then the canonical path every later stage and the
//! upstream use (`path`).

use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::request::Parts;
use http::HeaderMap;

use crate::stage::path::{self, PathError};
use crate::stage::problem::{self, Reject};
use crate::stage::protocol::{self, Limits};
use crate::stage::unambiguous;

/// The request as the wire carried it, where HTTP/1 and HTTP/2 differ.
pub enum Wire<'a> {
    /// The HTTP/1 header block, byte for byte as received.
    Http1(&'a [u8]),
    /// HTTP/2: the header list is already decoded.
    Http2,
}

/// Screens a request; on success, its canonical path.
pub fn screen(
    req: &Parts,
    wire: Wire<'_>,
    limits: &Limits,
    credential_headers: &[&str],
) -> Result<String, Reject> {
    let header_bytes = match wire {
        Wire::Http1(raw) => {
            protocol::check_h1_framing(raw)?;
            raw.len()
        }
        Wire::Http2 => protocol::h2_header_list_size(
            req.headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())),
        ),
    };
    let target_len = req.uri.path_and_query().map_or(0, |pq| pq.as_str().len());
    protocol::check_sizes(target_len, header_bytes, limits)?;
    if req
        .uri
        .authority()
        .is_some_and(|a| unambiguous::holds_key(a.as_str().as_bytes()))
    {
        return Err(problem::KEY_IN_URL);
    }
    unambiguous::check_target(req.uri.path_and_query().map_or("/", |pq| pq.as_str()))?;
    unambiguous::check_headers(&req.headers, credential_headers)?;
    path::normalise(req.uri.path()).map_err(|e| match e {
        PathError::Malformed => problem::BAD_PATH,
        PathError::Ambiguous => problem::AMBIGUOUS_PATH,
    })
}

/// The request's media type. Two `Content-Type` headers are as good as an
/// unreadable one: the upstream might believe the other.
pub fn content_type(headers: &HeaderMap) -> Option<&str> {
    let mut all = headers.get_all(CONTENT_TYPE).iter();
    let first = all.next()?;
    if all.next().is_some() {
        return Some("\u{FFFD}");
    }
    Some(first.to_str().unwrap_or("\u{FFFD}"))
}

/// The request's declared body length, when it declares one.
pub fn declared_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stage::test_request as parts;

    const LIMITS: Limits = Limits {
        max_uri_bytes: 64,
        max_header_bytes: 512,
    };
    const CREDENTIALS: [&str; 2] = ["x-api-key", "authorization"];

    fn screened(target: &str, headers: &[(&str, &str)]) -> Result<String, Reject> {
        screen(&parts(target, headers), Wire::Http2, &LIMITS, &CREDENTIALS)
    }

    #[test]
    fn a_plain_request_yields_its_canonical_path() {
        assert_eq!(
            screened("/partners/acme/./orders//1", &[]).as_deref(),
            Ok("/partners/acme/orders/1")
        );
    }

    #[test]
    fn each_screen_refuses_with_its_own_code() {
        let long = format!("/{}", "a".repeat(80));
        assert_eq!(screened(&long, &[]), Err(problem::URI_TOO_LONG));
        assert_eq!(
            screened("/a%2fb", &[]),
            Err(problem::AMBIGUOUS_PATH),
            "an encoded slash has two readings"
        );
        assert_eq!(
            screened("/orders", &[("x_partner", "acme")]),
            Err(problem::HEADER_NAME_AMBIGUOUS)
        );
        assert_eq!(
            screened("/orders?_method=DELETE", &[]),
            Err(problem::METHOD_OVERRIDE)
        );
    }

    #[test]
    fn http1_framing_is_checked_on_the_raw_block() {
        let raw = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let req = parts("/", &[]);
        assert_eq!(
            screen(&req, Wire::Http1(raw), &LIMITS, &CREDENTIALS),
            Err(problem::AMBIGUOUS_FRAMING)
        );
    }

    #[test]
    fn two_content_types_read_as_unreadable() {
        let req = parts(
            "/",
            &[
                ("content-type", "application/json"),
                ("content-type", "text/plain"),
            ],
        );
        assert_eq!(content_type(&req.headers), Some("\u{FFFD}"));
        assert_eq!(
            content_type(&parts("/", &[("content-type", "application/json")]).headers),
            Some("application/json")
        );
        assert_eq!(
            declared_length(&parts("/", &[("content-length", " 12 ")]).headers),
            Some(12)
        );
        assert_eq!(declared_length(&parts("/", &[]).headers), None);
    }
}
