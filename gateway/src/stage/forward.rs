//! What the upstream request carries: the canonical target, no credential,
//! no identity the client claims, and the gateway's own request id,
//! partner, trace and (when configured) signed assertion. Computed as a
//! list of edits so the proxy applies them to pingora's header, which
//! keeps the client's header-name case for HTTP/1.

use http::header::{HeaderName, HeaderValue};
use http::request::Parts;
use http::Uri;

use crate::stage::assertion::{Claims, Signer};
use crate::stage::isolation::IdentityHeaders;
use crate::stage::problem::{self, Reject};
use crate::stage::request_id;
use crate::stage::trace_context::{self, Trace};

/// Tells the upstream which partner the request is for. Any value the
/// client sent is replaced.
pub const PARTNER_HEADER: &str = "x-partner-id";

/// What the upstream request is prepared from.
pub struct Forward<'a> {
    /// The rebuilt target, when it differs from the client's.
    pub new_target: Option<&'a str>,
    /// Where a client may put a key: never forwarded.
    pub credential_headers: &'a [&'a str],
    /// Headers that claim an identity (and URL or method overrides).
    pub identity_headers: &'a IdentityHeaders,
    pub signer: Option<&'a Signer>,
    /// The upstream's name, as the assertion's audience.
    pub upstream: &'a str,
    pub request_id: &'a str,
    pub partner: &'a str,
    pub trace: &'a Trace,
    /// Seconds since the epoch, for the assertion.
    pub now: u64,
}

/// The edits that make a request header what the upstream may see, in the
/// order they apply: target, removals, then insertions (which replace).
#[derive(Debug, Default)]
pub struct Edits {
    pub target: Option<Uri>,
    pub remove: Vec<HeaderName>,
    pub insert: Vec<(HeaderName, HeaderValue)>,
}

pub fn edits(req: &Parts, f: Forward<'_>) -> Result<Edits, Reject> {
    let mut out = Edits::default();
    if let Some(target) = f.new_target {
        out.target = Some(target.parse::<Uri>().map_err(|_| problem::BAD_PATH)?);
    }
    for name in f.credential_headers {
        out.remove.push(header_name(name)?);
    }
    if let Some(signer) = f.signer {
        out.remove.push(signer.header_name().clone());
    }
    out.remove.extend(
        req.headers
            .keys()
            .filter(|n| f.identity_headers.matches(n.as_str()))
            .cloned(),
    );
    if !f.trace.continued {
        // State that belonged to a trace we did not continue is meaningless.
        out.remove.push(header_name(trace_context::TRACESTATE)?);
    }
    out.insert
        .push((header_name(request_id::HEADER)?, value(f.request_id)?));
    out.insert
        .push((header_name(PARTNER_HEADER)?, value(f.partner)?));
    out.insert.push((
        header_name(trace_context::TRACEPARENT)?,
        value(&f.trace.upstream_header)?,
    ));
    if let Some(signer) = f.signer {
        let uri = out.target.as_ref().unwrap_or(&req.uri);
        let token = signer
            .sign(&Claims {
                upstream: f.upstream,
                partner: f.partner,
                request_id: f.request_id,
                method: req.method.as_str(),
                path_and_query: uri.path_and_query().map_or("/", |pq| pq.as_str()),
                issued_at: f.now,
            })
            // Never forward unsigned when the upstream expects a signature.
            .map_err(|_| problem::INTERNAL_ERROR)?;
        out.insert.push((signer.header_name().clone(), token));
    }
    Ok(out)
}

fn header_name(name: &str) -> Result<HeaderName, Reject> {
    HeaderName::from_bytes(name.as_bytes()).map_err(|_| problem::INTERNAL_ERROR)
}

fn value(text: &str) -> Result<HeaderValue, Reject> {
    HeaderValue::from_str(text).map_err(|_| problem::INTERNAL_ERROR)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stage::test_request as request;

    fn forward<'a>(identity: &'a IdentityHeaders, trace: &'a Trace) -> Forward<'a> {
        Forward {
            new_target: None,
            credential_headers: &["x-api-key", "authorization"],
            identity_headers: identity,
            signer: None,
            upstream: "orders",
            request_id: "req-1",
            partner: "acme",
            trace,
            now: 0,
        }
    }

    fn inserted<'e>(edits: &'e Edits, name: &str) -> Option<&'e str> {
        edits
            .insert
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.to_str().ok())
    }

    #[test]
    fn the_credential_and_claimed_identities_are_removed_and_ours_set() {
        let identity = IdentityHeaders::new(&["x-partner-*".to_string(), "x-user-id".to_string()]);
        let trace = Trace::default();
        let req = request(
            "/orders",
            &[
                ("x-api-key", "secret"),
                ("x-partner-id", "globex"),
                ("x-user-id", "7"),
                ("accept", "application/json"),
            ],
        );
        let edits = edits(&req, forward(&identity, &trace)).unwrap();
        let removed: Vec<&str> = edits.remove.iter().map(|n| n.as_str()).collect();
        for name in ["x-api-key", "authorization", "x-partner-id", "x-user-id"] {
            assert!(
                removed.contains(&name),
                "{name} must not reach the upstream"
            );
        }
        assert!(!removed.contains(&"accept"));
        assert_eq!(inserted(&edits, PARTNER_HEADER), Some("acme"));
        assert_eq!(inserted(&edits, request_id::HEADER), Some("req-1"));
        assert!(inserted(&edits, trace_context::TRACEPARENT).is_some());
        assert!(edits.target.is_none());
    }

    #[test]
    fn a_new_target_must_parse_and_a_foreign_tracestate_goes() {
        let identity = IdentityHeaders::new(&[]);
        let trace = Trace::default();
        assert!(!trace.continued);
        let req = request("/a/./b", &[("tracestate", "vendor=1")]);
        let mut f = forward(&identity, &trace);
        f.new_target = Some("/a/b?x=1");
        let edits = edits(&req, f).unwrap();
        assert_eq!(
            edits.target.map(|t| t.to_string()).as_deref(),
            Some("/a/b?x=1")
        );
        assert!(edits.remove.iter().any(|n| n == trace_context::TRACESTATE));
        let mut f = forward(&identity, &trace);
        f.new_target = Some("/a b");
        assert_eq!(super::edits(&req, f).unwrap_err(), problem::BAD_PATH);
    }
}
