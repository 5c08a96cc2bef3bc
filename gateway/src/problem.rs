//! The one error shape: every response the gateway itself generates is an
//! RFC 9457 `application/problem+json` document with a stable `code`.

use serde::Serialize;

pub const CONTENT_TYPE: &str = "application/problem+json";

/// A reason the gateway refused or failed a request. `code` is part of the
/// public contract: clients and alerts match on it, so never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reject {
    pub status: u16,
    pub code: &'static str,
    pub title: &'static str,
}

impl Reject {
    pub const fn new(status: u16, code: &'static str, title: &'static str) -> Self {
        Reject {
            status,
            code,
            title,
        }
    }
}

pub const ROUTE_NOT_FOUND: Reject =
    Reject::new(404, "route_not_found", "No route matches this path");
pub const METHOD_NOT_ALLOWED: Reject = Reject::new(
    405,
    "method_not_allowed",
    "The route does not accept this method",
);
pub const BAD_PATH: Reject = Reject::new(400, "bad_path", "The request path is malformed");
pub const AMBIGUOUS_PATH: Reject = Reject::new(
    400,
    "ambiguous_path",
    "The request path contains an encoded slash, backslash, NUL or control character",
);
pub const AMBIGUOUS_FRAMING: Reject = Reject::new(
    400,
    "ambiguous_framing",
    "The request's framing is ambiguous: conflicting Content-Length / Transfer-Encoding, or a line not ending in CRLF",
);
pub const BAD_REQUEST: Reject = Reject::new(400, "bad_request", "The request is malformed");
pub const HEADERS_TOO_LARGE: Reject = Reject::new(
    431,
    "headers_too_large",
    "The request header block is larger than allowed",
);
pub const URI_TOO_LONG: Reject = Reject::new(
    414,
    "uri_too_long",
    "The request URI is longer than allowed",
);
pub const UPSTREAM_UNAVAILABLE: Reject = Reject::new(
    502,
    "upstream_unavailable",
    "The upstream service could not be reached",
);
pub const UPSTREAM_TIMEOUT: Reject = Reject::new(
    504,
    "upstream_timeout",
    "The upstream service did not answer in time",
);
pub const UPSTREAM_ERROR: Reject = Reject::new(
    502,
    "upstream_error",
    "The upstream service failed to answer correctly",
);
pub const INTERNAL_ERROR: Reject = Reject::new(
    500,
    "internal_error",
    "The gateway failed to process the request",
);
pub const CLIENT_ERROR: Reject = Reject::new(400, "bad_request", "The request could not be read");
pub const HTTPS_REQUIRED: Reject = Reject::new(
    426,
    "https_required",
    "This endpoint is only served over HTTPS",
);

#[derive(Serialize)]
struct Document<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    code: &'a str,
    request_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    violations: &'a [crate::validation::Violation],
}

/// Renders the problem document. `detail` must never carry secrets or
/// upstream internals: it is shown to the client verbatim.
pub fn render(reject: &Reject, request_id: &str, detail: Option<&str>) -> Vec<u8> {
    render_with(reject, request_id, detail, &[])
}

/// Renders the problem document with the schema violations that caused it.
pub fn render_with(
    reject: &Reject,
    request_id: &str,
    detail: Option<&str>,
    violations: &[crate::validation::Violation],
) -> Vec<u8> {
    let doc = Document {
        kind: format!("urn:portcullis:problem:{}", reject.code),
        title: reject.title,
        status: reject.status,
        code: reject.code,
        request_id,
        detail,
        violations,
    };
    // Serialising a struct of strings and integers cannot fail; fall back to a
    // fixed document rather than panicking if it ever did.
    serde_json::to_vec(&doc).unwrap_or_else(|_| {
        br#"{"type":"urn:portcullis:problem:internal_error","title":"Internal error","status":500,"code":"internal_error"}"#.to_vec()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_has_rfc9457_members_and_stable_code() {
        let body = render(&ROUTE_NOT_FOUND, "req-1", None);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["type"], "urn:portcullis:problem:route_not_found");
        assert_eq!(v["status"], 404);
        assert_eq!(v["code"], "route_not_found");
        assert_eq!(v["request_id"], "req-1");
        assert!(v.get("detail").is_none());
    }

    #[test]
    fn detail_is_escaped_json() {
        let body = render(&BAD_PATH, "r", Some("quote \" and <tag>"));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["detail"], "quote \" and <tag>");
    }
}
