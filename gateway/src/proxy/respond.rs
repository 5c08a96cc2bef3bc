//! Writing the gateway's own answers: problem documents for refusals, the
//! headers every response carries, and the answers the connection guard
//! writes in place of pingora's.

use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

use crate::plan::Plan;
use crate::proxy::context::RequestCtx;
use crate::stage::outcome::Outcome;
use crate::stage::problem::{self, Reject};
use crate::stage::request_id;
use crate::stage::validate;
use crate::transport::conn_guard::GuardedStream;
use crate::transport::h2_refusal::Answer;

pub(crate) const HSTS: &str = "strict-transport-security";

/// Writes a problem+json response; the connection closes after it when the
/// problem says so ([`Reject::closes`]).
pub(crate) async fn respond_problem(
    session: &mut Session,
    ctx: &mut RequestCtx,
    reject: Reject,
    allow: Option<String>,
) -> pingora::Result<()> {
    respond_problem_with(session, ctx, reject, allow, &[]).await
}

/// A refusal by validation, listing what was wrong.
pub(crate) async fn respond_invalid(
    session: &mut Session,
    ctx: &mut RequestCtx,
    invalid: validate::Invalid,
) -> pingora::Result<()> {
    respond_problem_with(session, ctx, invalid.reject, None, &invalid.violations).await
}

async fn respond_problem_with(
    session: &mut Session,
    ctx: &mut RequestCtx,
    reject: Reject,
    allow: Option<String>,
    violations: &[validate::Violation],
) -> pingora::Result<()> {
    ctx.outcome = Outcome::Refused(reject);
    let body = Bytes::from(problem::render_with(
        &reject,
        &ctx.request_id,
        None,
        violations,
    ));
    let mut resp = ResponseHeader::build(reject.status, Some(8))?;
    resp.insert_header(CONTENT_TYPE, problem::CONTENT_TYPE)?;
    resp.insert_header(CONTENT_LENGTH, body.len().to_string())?;
    resp.insert_header("cache-control", "no-store")?;
    resp.insert_header("x-content-type-options", "nosniff")?;
    if let Some(allow) = allow {
        resp.insert_header("allow", allow)?;
    }
    if reject.status == 401 {
        resp.insert_header("www-authenticate", "Bearer realm=\"portcullis\"")?;
    }
    decorate(&mut resp, ctx)?;
    if reject.closes() {
        session.set_keepalive(None);
    }
    if let Some(guard) = session.stream().and_then(GuardedStream::of) {
        guard.linger_on_close();
    }
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await?;
    if session.is_http2() {
        linger_for_body(session).await;
    }
    Ok(())
}

/// After refusing an HTTP/2 request, reads (and drops) the rest of its
/// body for a moment. Dropping a stream whose body is still arriving makes
/// h2 reset it, and curl before 8.3 then reports a framing error instead
/// of our answer; a body that ends in time needs no reset at all.
async fn linger_for_body(session: &mut Session) {
    const BUDGET: Duration = Duration::from_secs(1);
    const MAX_BYTES: usize = 1 << 20;
    let downstream = session.as_downstream_mut();
    let deadline = tokio::time::Instant::now() + BUDGET;
    let mut seen = 0;
    while !downstream.is_body_done() && seen <= MAX_BYTES {
        match tokio::time::timeout_at(deadline, downstream.read_request_body()).await {
            Ok(Ok(Some(chunk))) => seen += chunk.len(),
            _ => break,
        }
    }
}

/// Headers every response carries, whoever generated it.
pub(crate) fn decorate(resp: &mut ResponseHeader, ctx: &RequestCtx) -> pingora::Result<()> {
    resp.insert_header(request_id::HEADER, ctx.request_id.as_str())?;
    let hsts = ctx
        .plan
        .as_ref()
        .map(|p| p.hsts.clone())
        .unwrap_or_else(|| HeaderValue::from_static("max-age=63072000; includeSubDomains"));
    resp.insert_header(HSTS, hsts)?;
    for (name, value) in &ctx.extra_headers {
        resp.insert_header(*name, value.as_str())?;
    }
    Ok(())
}

/// The raw HTTP/1 response that replaces pingora's own answer when its
/// parser refuses a request (see `conn_guard`). pingora cannot hold a
/// target over 64 KiB, so a request line longer than the URI limit is
/// answered as too long, whatever else pingora disliked.
pub fn parser_refusal(plan: &Plan, request_line: usize) -> Vec<u8> {
    let (reject, status_line) = if request_line > plan.limits.max_uri_bytes {
        (problem::URI_TOO_LONG, "414 URI Too Long")
    } else {
        (problem::BAD_REQUEST, "400 Bad Request")
    };
    let answer = guard_answer(plan, reject);
    let mut out = format!("HTTP/1.1 {status_line}\r\n").into_bytes();
    for (name, value) in &answer.headers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    out.extend_from_slice(b"connection: close\r\n\r\n");
    out.extend_from_slice(&answer.body);
    out
}

/// Our answer in place of pingora's bare HTTP/2 400, which it gives only
/// for a request whose host is ambiguous (see `h2_refusal`).
pub fn h2_authority_refusal(plan: &Plan) -> Answer {
    let answer = guard_answer(plan, problem::AUTHORITY_AMBIGUOUS);
    tracing::info!(
        request_id = answer.request_id(),
        code = problem::AUTHORITY_AMBIGUOUS.code,
        "refused an HTTP/2 request before routing"
    );
    answer
}

/// The headers and document of a refusal the connection guard writes in
/// place of pingora's own: no request context exists yet, so only what
/// every problem answer carries.
fn guard_answer(plan: &Plan, reject: Reject) -> Answer {
    let request_id = request_id::generate();
    let body = problem::render(&reject, &request_id, None);
    Answer {
        headers: vec![
            ("content-type", problem::CONTENT_TYPE.to_string()),
            ("content-length", body.len().to_string()),
            ("cache-control", "no-store".to_string()),
            ("x-content-type-options", "nosniff".to_string()),
            ("x-request-id", request_id),
            (
                HSTS,
                String::from_utf8_lossy(plan.hsts.as_bytes()).into_owned(),
            ),
        ],
        body,
    }
}
