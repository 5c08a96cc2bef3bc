//! The pingora `ProxyHttp` implementation. Wiring only: each phase calls a
//! stage (plain Rust in its own module) and turns its verdict into pingora
//! actions. No policy decisions are made here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use pingora::http::ResponseHeader;
use pingora::prelude::HttpPeer;
use pingora::protocols::ALPN;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorSource, ErrorType};

use crate::audit::{Decision, Entry, Record, Timings};
use crate::config::model::ReplaceErrors;
use crate::config::{Plan, Route};
use crate::conn_guard::GuardedStream;
use crate::inflight::{InFlight, Permit};
use crate::keys::credential;
use crate::keys::service::KeyService;
use crate::limits::limiter::Check;
use crate::metrics::NO_ROUTE;
use crate::minimise::{self, LeakScanner};
use crate::monitor::Monitor;
use crate::outcome::Outcome;
use crate::problem::{self, Reject};
use crate::reload::Live;
use crate::router::Miss;
use crate::trace_context::{self, Trace};
use crate::{
    assertion, auth, buffered, isolation, path, protocol, request_id, selfservice, unambiguous,
    validation,
};

const HSTS: &str = "strict-transport-security";

/// Tells the upstream which partner the request is for. Any value the
/// client sent is replaced.
const PARTNER_HEADER: &str = "x-partner-id";

pub struct Gateway {
    live: Arc<Live>,
    keys: Arc<KeyService>,
    key_header: String,
    inflight: InFlight,
    monitor: Arc<Monitor>,
}

pub const CLIENT_BLOCKED: Reject = Reject::new(
    429,
    "client_blocked",
    "Too many failed authentication attempts from this address; retry later",
);
pub const KEY_BLOCKED: Reject = Reject::new(
    429,
    "key_blocked",
    "Too many failed attempts with this API key; retry later",
);
pub const RATE_LIMITED: Reject =
    Reject::new(429, "rate_limited", "Rate limit exceeded; retry later");

impl Gateway {
    pub fn new(
        live: Arc<Live>,
        keys: Arc<KeyService>,
        key_header: String,
        monitor: Arc<Monitor>,
    ) -> Self {
        Gateway {
            live,
            keys,
            key_header,
            inflight: InFlight::default(),
            monitor,
        }
    }

    /// Makes the request header what the upstream may see: the canonical
    /// target, no credential, no identity the client claims, and the
    /// gateway's own request id and partner.
    fn prepare_forward(
        &self,
        req: &mut pingora::http::RequestHeader,
        forward: Forward<'_>,
    ) -> Result<(), Reject> {
        let Forward {
            plan,
            route,
            new_target,
            request_id,
            partner,
            trace,
        } = forward;
        if let Some(target) = new_target {
            let uri = target.parse::<http::Uri>().map_err(|_| problem::BAD_PATH)?;
            req.set_uri(uri);
        }
        for name in credential::headers(&self.key_header) {
            req.remove_header(name);
        }
        if let Some(signer) = &plan.signer {
            req.remove_header(signer.header_name());
        }
        let claimed: Vec<String> = req
            .headers
            .keys()
            .map(|n| n.as_str())
            .filter(|n| plan.identity_headers.matches(n))
            .map(str::to_string)
            .collect();
        for name in claimed {
            req.remove_header(&name);
        }
        req.insert_header(request_id::HEADER, request_id)
            .map_err(|_| problem::INTERNAL_ERROR)?;
        req.insert_header(PARTNER_HEADER, partner)
            .map_err(|_| problem::INTERNAL_ERROR)?;
        req.insert_header(trace_context::TRACEPARENT, trace.upstream_header.as_str())
            .map_err(|_| problem::INTERNAL_ERROR)?;
        if !trace.continued {
            // State that belonged to a trace we did not continue is meaningless.
            req.remove_header(trace_context::TRACESTATE);
        }
        if let Some(signer) = &plan.signer {
            let path_and_query = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
            let token = signer
                .sign(&assertion::Claims {
                    upstream: &route.upstream.name,
                    partner,
                    request_id,
                    method: req.method.as_str(),
                    path_and_query,
                    issued_at: crate::keys::store::now_secs(),
                })
                // Never forward unsigned when the upstream expects a signature.
                .map_err(|_| problem::INTERNAL_ERROR)?;
            req.insert_header(signer.header_name().clone(), token)
                .map_err(|_| problem::INTERNAL_ERROR)?;
        }
        Ok(())
    }
}

impl Gateway {
    /// Counts an authentication failure towards brute-force blocking, and
    /// answers a key id that is already blocked with 429.
    fn judge_auth_failure(&self, ctx: &mut RequestCtx, reject: Reject) -> Reject {
        if let Some(left) = ctx
            .key_id
            .as_deref()
            .and_then(|id| self.monitor.abuse.key_blocked(id))
        {
            ctx.extra_headers
                .push(("retry-after", left.as_secs().max(1).to_string()));
            return KEY_BLOCKED;
        }
        let counts = reject.status == 401 || reject == isolation::PARTNER_SUSPENDED;
        if counts {
            self.monitor.auth_failed(
                reject.code,
                ctx.client_ip,
                ctx.key_id.as_deref(),
                &ctx.request_id,
            );
        }
        reject
    }

    /// Applies the partner's and the route's rate limits; the verdict's
    /// headers go on the response either way.
    async fn over_rate_limit(
        &self,
        ctx: &mut RequestCtx,
        partner: &isolation::Partner,
        route: &Route,
    ) -> bool {
        let mut checks = Vec::new();
        if let Some(rate) = partner.rate {
            checks.push(Check {
                scope: "partner",
                key: format!("p:{}", partner.id),
                rate,
            });
        }
        if let Some(rate) = route.rate_limit {
            checks.push(Check {
                scope: "route",
                key: format!("r:{}:{}", route.name, partner.id),
                rate,
            });
        }
        if checks.is_empty() {
            return false;
        }
        let started = Instant::now();
        let verdict = self.monitor.limiter.check(&route.name, &checks).await;
        ctx.stages.rate_limit = Some(started.elapsed());
        let Some(verdict) = verdict else {
            return false;
        };
        ctx.extra_headers
            .push(("ratelimit-policy", verdict.policy_header));
        ctx.extra_headers.push(("ratelimit", verdict.state_header));
        if !verdict.allowed {
            ctx.extra_headers
                .push(("retry-after", verdict.retry_after.as_secs().to_string()));
        }
        !verdict.allowed
    }

    /// Reads and checks the body, then forwards through `buffered`.
    async fn forward_buffered(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        plan: &Arc<Plan>,
        route: &Arc<Route>,
        partner: &str,
        new_target: Option<String>,
    ) -> pingora::Result<bool> {
        // Without a response to hold back, a small body can go the ordinary
        // way: pingora replays what it buffered while we read (up to
        // 64 KiB), which costs less than a subrequest.
        let may_replay = !route.holds_response();
        if may_replay {
            session.as_downstream_mut().enable_retry_buffering();
        }
        let body = if route.binding.needs_body() || !session.is_body_empty() {
            match buffered::read_body(session, route.max_body_bytes, plan.body_timeout).await {
                Ok(body) => Some(body),
                Err(reject) => {
                    session.set_keepalive(None);
                    respond_problem(session, ctx, reject, None).await?;
                    return Ok(true);
                }
            }
        } else {
            None
        };
        let bytes = body.as_deref().unwrap_or_default();
        if let Some(kind) = unambiguous::form_kind(content_type(session.req_header())) {
            let checked = unambiguous::check_form_body(kind, bytes).and_then(|()| {
                match (&route.binding.query, kind) {
                    (Some(name), unambiguous::FormKind::UrlEncoded) => {
                        isolation::check_form_params(name, &String::from_utf8_lossy(bytes), partner)
                    }
                    _ => Ok(()),
                }
            });
            if let Err(reject) = checked {
                if reject == isolation::PARTNER_MISMATCH {
                    audit_suspicious(ctx, partner, &route.name, reject);
                }
                respond_problem(session, ctx, reject, None).await?;
                return Ok(true);
            }
        }
        let mut parsed = None;
        if let Some(v) = &route.validation {
            let started = Instant::now();
            let checked = v.check_body(content_type(session.req_header()), bytes);
            add_time(&mut ctx.stages.validation, started.elapsed());
            match checked {
                Ok(doc) => parsed = doc,
                Err(invalid) => {
                    respond_invalid(session, ctx, invalid).await?;
                    return Ok(true);
                }
            }
        }
        if let Some(pointer) = &route.binding.body {
            let started = Instant::now();
            let bound = buffered::check_body_binding(pointer, bytes, parsed.as_ref(), partner);
            add_time(&mut ctx.stages.isolation, started.elapsed());
            if let Err(reject) = bound {
                if reject == isolation::PARTNER_MISMATCH {
                    audit_suspicious(ctx, partner, &route.name, reject);
                }
                respond_problem(session, ctx, reject, None).await?;
                return Ok(true);
            }
        }
        if unambiguous::is_json(content_type(session.req_header())) && !bytes.is_empty() {
            // Laravel takes `_method` from a JSON body as the method.
            let lenient;
            let doc = match parsed.as_ref() {
                Some(doc) => Some(doc),
                None => {
                    lenient = crate::body::parse_response(bytes, crate::body::MAX_DEPTH).ok();
                    lenient.as_ref()
                }
            };
            if let Err(reject) = doc.map_or(Ok(()), unambiguous::check_json_body) {
                respond_problem(session, ctx, reject, None).await?;
                return Ok(true);
            }
        }
        let replayable = may_replay
            && !bytes.is_empty()
            && !session.as_downstream().retry_buffer_truncated()
            && session.as_downstream().get_retry_buffer().as_deref() == Some(bytes);
        if replayable {
            let len = bytes.len();
            let req = session.req_header_mut();
            // The length is known now: forward with plain Content-Length
            // framing, whatever the client used.
            req.remove_header(&http::header::EXPECT);
            req.remove_header(&http::header::TRANSFER_ENCODING);
            req.insert_header(CONTENT_LENGTH, len.to_string())?;
            if let Err(reject) = self.prepare_forward(
                req,
                Forward {
                    plan,
                    route,
                    new_target: new_target.as_deref(),
                    request_id: &ctx.request_id,
                    partner,
                    trace: &ctx.trace,
                },
            ) {
                respond_problem(session, ctx, reject, None).await?;
                return Ok(true);
            }
            return Ok(false);
        }
        let outcome = Arc::new(std::sync::Mutex::new(Outcome::Pending));
        let ticket = buffered::Ticket {
            plan: plan.clone(),
            route: route.clone(),
            partner: partner.to_string(),
            key_id: ctx.key_id.clone().unwrap_or_default(),
            request_id: ctx.request_id.clone(),
            trace: ctx.trace.clone(),
            new_target,
            body_len: body.as_ref().map_or(0, |b| b.len()),
            outcome,
        };
        let started = Instant::now();
        let forwarded = buffered::forward(session, ticket, body).await;
        ctx.stages.upstream = Some(started.elapsed());
        match forwarded? {
            buffered::Forwarded::Answered(outcome) => ctx.outcome = outcome,
            buffered::Forwarded::Refused(reject) => {
                if reject == buffered::RESPONSE_PARTNER_MISMATCH {
                    tracing::warn!(
                        target: "portcullis::suspicious",
                        request_id = %ctx.request_id,
                        partner = %partner,
                        route = %route.name,
                        code = reject.code,
                        "upstream response for another partner withheld"
                    );
                }
                respond_problem(session, ctx, reject, None).await?;
            }
        }
        Ok(true)
    }
}

/// The request's media type. Two `Content-Type` headers are as good as an
/// unreadable one: the upstream might believe the other.
fn content_type(req: &pingora::http::RequestHeader) -> Option<&str> {
    let mut all = req.headers.get_all(CONTENT_TYPE).iter();
    let first = all.next()?;
    if all.next().is_some() {
        return Some("\u{FFFD}");
    }
    Some(first.to_str().unwrap_or("\u{FFFD}"))
}

/// The request's declared body length, when it declares one.
fn declared_length(session: &Session) -> Option<usize> {
    session
        .req_header()
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

impl Gateway {
    /// Removes internal headers, adds security headers, and arranges for
    /// an upstream error body (or a response leaking a secret in its
    /// headers) to be replaced by a problem document.
    fn minimise_headers(
        &self,
        resp: &mut ResponseHeader,
        plan: &Plan,
        route: &Route,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        let internal: Vec<String> = resp
            .headers
            .keys()
            .map(|n| n.as_str())
            .filter(|n| plan.response_headers.matches(n))
            .map(str::to_string)
            .collect();
        for name in internal {
            resp.remove_header(&name);
        }
        let status = resp.status.as_u16();
        let secret_in_headers = plan.block_secrets
            && resp
                .headers
                .values()
                .any(|v| minimise::contains_secret(v.as_bytes()));
        let replace = match plan.replace_errors {
            _ if secret_in_headers => Some(minimise::RESPONSE_LEAK_BLOCKED),
            ReplaceErrors::None => None,
            ReplaceErrors::Server if status >= 500 => Some(minimise::UPSTREAM_FAILED),
            ReplaceErrors::All if status >= 400 => Some(minimise::UPSTREAM_FAILED),
            _ => None,
        };
        if let Some(reject) = replace {
            let reject = if reject == minimise::UPSTREAM_FAILED {
                // The status class is the client's business; the body is not.
                Reject { status, ..reject }
            } else {
                reject
            };
            ctx.outcome = Outcome::Refused(reject);
            let body = Bytes::from(problem::render(&reject, &ctx.request_id, None));
            // A withheld answer is built fresh: a header of the upstream's
            // may be the very leak, or describe a body that is not sent.
            *resp = ResponseHeader::build(reject.status, Some(8))?;
            resp.insert_header(CONTENT_TYPE, problem::CONTENT_TYPE)?;
            resp.insert_header(CONTENT_LENGTH, body.len().to_string())?;
            ctx.replacing = Some(Replacement {
                body,
                excerpt: Vec::new(),
                status,
            });
        } else if plan.block_secrets && !route.holds_response() {
            ctx.leak_scanner = Some(LeakScanner::default());
        }
        resp.insert_header("x-content-type-options", "nosniff")?;
        resp.insert_header("cache-control", route.cache_control.clone())?;
        Ok(())
    }
}

/// What the upstream request is prepared from.
struct Forward<'a> {
    plan: &'a Plan,
    route: &'a Route,
    new_target: Option<&'a str>,
    request_id: &'a str,
    partner: &'a str,
    trace: &'a Trace,
}

impl Gateway {
    /// Every metric a finished request moves.
    fn count(
        &self,
        ctx: &RequestCtx,
        route: &str,
        status: u16,
        decision: Decision,
        elapsed: Duration,
    ) {
        let metrics = &self.live.metrics;
        let status_label = status.to_string();
        metrics
            .requests
            .with_label_values(&[
                route,
                status_label.as_str(),
                decision.as_str(),
                ctx.outcome.code(),
            ])
            .inc();
        metrics
            .request_duration
            .with_label_values(&[route])
            .observe(elapsed.as_secs_f64());
        for (stage, time) in ctx.stages.named() {
            if let Some(time) = time {
                metrics
                    .stage_duration
                    .with_label_values(&[route, stage])
                    .observe(time.as_secs_f64());
            }
        }
        if let Some(kind) = ctx.outcome.upstream_failure() {
            metrics
                .upstream_errors
                .with_label_values(&[route, kind])
                .inc();
        }
        if let Some(partner) = ctx.partner.as_deref() {
            if let Some(label) = self.monitor.partner_labels.label(partner) {
                metrics
                    .partner_requests
                    .with_label_values(&[label, decision.as_str()])
                    .inc();
                self.monitor
                    .anomaly
                    .observe(label, decision != Decision::Allow || status >= 500);
            }
        }
    }
}

/// Longest path kept in an audit record.
const AUDIT_PATH_MAX: usize = 512;

fn audit_record(
    session: &Session,
    ctx: &RequestCtx,
    route: &str,
    status: u16,
    decision: Decision,
    elapsed: Duration,
) -> Record {
    let req = session.req_header();
    let mut path = logged_path(ctx, req).to_string();
    if path.len() > AUDIT_PATH_MAX {
        let mut cut = AUDIT_PATH_MAX;
        while !path.is_char_boundary(cut) {
            cut -= 1;
        }
        path.truncate(cut);
    }
    let tls = session
        .digest()
        .and_then(|d| d.ssl_digest.as_ref())
        .map(|t| (t.version.replace('_', "."), t.cipher.to_string()));
    let s = &ctx.stages;
    Record {
        request_id: ctx.request_id.clone(),
        trace_id: ctx.trace.trace_id.clone(),
        partner: ctx.partner.clone(),
        key_id: ctx.key_id.clone(),
        route: route.to_string(),
        method: req.method.as_str().to_string(),
        path,
        status,
        decision,
        reason: ctx.outcome.code().to_string(),
        timings_us: Timings {
            total: micros(Some(elapsed)).unwrap_or_default(),
            auth: micros(s.auth),
            isolation: micros(s.isolation),
            rate_limit: micros(s.rate_limit),
            validation: micros(s.validation),
            upstream: micros(s.upstream),
        },
        bytes_in: session.body_bytes_read() as u64,
        bytes_out: session.body_bytes_sent() as u64,
        client_ip: ctx.client_ip.map(|ip| ip.to_string()),
        tls_version: tls.as_ref().map(|t| t.0.clone()),
        tls_cipher: tls.map(|t| t.1),
    }
}

/// The path for the access log and the audit trail. A target refused for
/// carrying a key is never written anywhere, in any encoding.
fn logged_path<'a>(ctx: &'a RequestCtx, req: &'a pingora::http::RequestHeader) -> &'a str {
    if ctx.outcome == Outcome::Refused(unambiguous::KEY_IN_URL) {
        return "[redacted]";
    }
    ctx.canonical_path.as_deref().unwrap_or(req.uri.path())
}

/// Logs a request that reached for another partner's data.
fn audit_suspicious(ctx: &RequestCtx, partner: &str, route: &str, reject: Reject) {
    tracing::warn!(
        target: "portcullis::suspicious",
        request_id = %ctx.request_id,
        partner = %partner,
        key_id = ctx.key_id.as_deref().unwrap_or("-"),
        route = %route,
        code = reject.code,
        "request for another partner's resource refused"
    );
}

/// Per-request facts gathered by the stages.
pub struct RequestCtx {
    started: Instant,
    pub(crate) request_id: String,
    plan: Option<Arc<Plan>>,
    route: Option<Arc<Route>>,
    /// The authenticated partner, and the id (never the key) of its key.
    partner: Option<String>,
    key_id: Option<String>,
    /// How the request ended, for audit, metrics and logs.
    pub(crate) outcome: Outcome,
    upstream_sent: Option<Instant>,
    upstream_deadline: Option<Instant>,
    /// Bytes of request body streamed so far, against the route's limit.
    body_seen: usize,
    /// This request's slot under its partner's concurrency limit.
    _permit: Option<Permit>,
    /// Set in a subrequest started by `buffered`: where to report back.
    sub_outcome: Option<Arc<std::sync::Mutex<Outcome>>>,
    /// The upstream's body is being replaced by this problem document.
    replacing: Option<Replacement>,
    /// Watches a streamed response for secrets.
    leak_scanner: Option<LeakScanner>,
    /// The W3C trace this request belongs to.
    trace: Trace,
    client_ip: Option<std::net::IpAddr>,
    /// The canonical path, once screening computed it.
    canonical_path: Option<String>,
    /// Time spent in each stage, for the audit record and the histograms.
    stages: StageTimes,
    /// Headers every response to this request carries (rate-limit state,
    /// Retry-After).
    extra_headers: Vec<(&'static str, String)>,
}

#[derive(Default, Clone, Copy)]
struct StageTimes {
    auth: Option<Duration>,
    isolation: Option<Duration>,
    rate_limit: Option<Duration>,
    validation: Option<Duration>,
    upstream: Option<Duration>,
}

impl StageTimes {
    fn named(&self) -> [(&'static str, Option<Duration>); 5] {
        [
            ("auth", self.auth),
            ("isolation", self.isolation),
            ("rate_limit", self.rate_limit),
            ("validation", self.validation),
            ("upstream", self.upstream),
        ]
    }
}

/// Adds `more` to a stage's time.
fn add_time(slot: &mut Option<Duration>, more: Duration) {
    *slot = Some(slot.unwrap_or_default() + more);
}

fn micros(d: Option<Duration>) -> Option<u64> {
    d.map(|d| d.as_micros().min(u128::from(u64::MAX)) as u64)
}

/// An upstream answer whose body is swallowed and replaced.
struct Replacement {
    body: Bytes,
    /// The start of the original body, for the log.
    excerpt: Vec<u8>,
    status: u16,
}

/// A request the routing stage let through.
struct Admitted {
    route: Arc<Route>,
    params: Vec<(String, String)>,
    /// The request target to send upstream (canonical path, original
    /// query) when it differs from what the client sent.
    new_target: Option<String>,
}

/// A refusal, with the `Allow` header value for 405s.
type Refusal = (Reject, Option<String>);

/// Protocol screening: framing, sizes, one meaning for target and
/// headers, then the canonical path.
fn screen(session: &Session, plan: &Plan, key_header: &str) -> Result<String, Reject> {
    let req = session.req_header();
    let header_bytes = match session.as_http1() {
        Some(h1) => {
            let raw = h1.get_headers_raw_bytes();
            protocol::check_h1_framing(&raw)?;
            raw.len()
        }
        None => protocol::h2_header_list_size(
            req.headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())),
        ),
    };
    let target_len = req.uri.path_and_query().map_or(0, |pq| pq.as_str().len());
    protocol::check_sizes(target_len, header_bytes, &plan.limits)?;
    if req
        .uri
        .authority()
        .is_some_and(|a| unambiguous::holds_key(a.as_str().as_bytes()))
    {
        return Err(unambiguous::KEY_IN_URL);
    }
    unambiguous::check_target(req.uri.path_and_query().map_or("/", |pq| pq.as_str()))?;
    unambiguous::check_headers(&req.headers, &credential::headers(key_header))?;
    path::normalise(req.uri.path()).map_err(|e| match e {
        path::PathError::Malformed => problem::BAD_PATH,
        path::PathError::Ambiguous => problem::AMBIGUOUS_PATH,
    })
}

/// Routing on the canonical path.
fn route(session: &Session, plan: &Plan, canonical: String) -> Result<Admitted, Refusal> {
    let req = session.req_header();
    let matched = plan
        .router
        .lookup(&req.method, &canonical)
        .map_err(|miss| match miss {
            Miss::NoPath => (problem::ROUTE_NOT_FOUND, None),
            Miss::Method(allowed) => {
                let allow: Vec<&str> = allowed.iter().map(|m| m.as_str()).collect();
                (problem::METHOD_NOT_ALLOWED, Some(allow.join(", ")))
            }
        })?;
    // pingora parses an absolute-form target into a path-only URI but keeps
    // the raw bytes, which it would send (with the authority rewritten to
    // the upstream's): a target that is not origin-form is always rebuilt.
    let origin_form = req.raw_path().starts_with(b"/") && req.uri.authority().is_none();
    let new_target = if canonical != req.uri.path() || !origin_form {
        Some(match req.uri.query() {
            Some(q) => format!("{canonical}?{q}"),
            None => canonical,
        })
    } else {
        None
    };
    Ok(Admitted {
        route: matched.route.clone(),
        params: matched.params,
        new_target,
    })
}

/// Writes a problem+json response. The connection is closed after a
/// framing or protocol error, since its byte stream can no longer be trusted.
pub(crate) async fn respond_problem(
    session: &mut Session,
    ctx: &mut RequestCtx,
    reject: Reject,
    allow: Option<String>,
) -> pingora::Result<()> {
    respond_problem_with(session, ctx, reject, allow, &[]).await
}

/// A refusal by validation, listing what was wrong.
async fn respond_invalid(
    session: &mut Session,
    ctx: &mut RequestCtx,
    invalid: validation::Invalid,
) -> pingora::Result<()> {
    if invalid.reject.status == 415 || invalid.reject.status == 413 {
        // The body was not read; the connection cannot carry another request.
        session.set_keepalive(None);
    }
    respond_problem_with(session, ctx, invalid.reject, None, &invalid.violations).await
}

async fn respond_problem_with(
    session: &mut Session,
    ctx: &mut RequestCtx,
    reject: Reject,
    allow: Option<String>,
    violations: &[validation::Violation],
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
    if reject.status == 400 || reject.status == 431 || reject.status == 414 {
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
pub fn h2_authority_refusal(plan: &Plan) -> crate::h2_refusal::Answer {
    let answer = guard_answer(plan, unambiguous::AUTHORITY_AMBIGUOUS);
    tracing::info!(
        request_id = answer.request_id(),
        code = unambiguous::AUTHORITY_AMBIGUOUS.code,
        "refused an HTTP/2 request before routing"
    );
    answer
}

/// The headers and document of a refusal the connection guard writes in
/// place of pingora's own: no request context exists yet, so only what
/// every problem answer carries.
fn guard_answer(plan: &Plan, reject: Reject) -> crate::h2_refusal::Answer {
    let request_id = request_id::generate();
    let body = problem::render(&reject, &request_id, None);
    crate::h2_refusal::Answer {
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

fn reject_for_error(e: &Error) -> Option<Reject> {
    if *e.etype() == ErrorType::Custom(buffered::BODY_TOO_LARGE.code) {
        return Some(buffered::BODY_TOO_LARGE);
    }
    if *e.etype() == ErrorType::Custom(minimise::RESPONSE_LEAK_BLOCKED.code) {
        return Some(minimise::RESPONSE_LEAK_BLOCKED);
    }
    match e.etype() {
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
            if *e.esource() == ErrorSource::Downstream {
                None
            } else {
                Some(problem::UPSTREAM_TIMEOUT)
            }
        }
        ErrorType::HTTPStatus(504) => Some(problem::UPSTREAM_TIMEOUT),
        _ => match e.esource() {
            ErrorSource::Upstream => match e.etype() {
                ErrorType::ConnectRefused
                | ErrorType::ConnectNoRoute
                | ErrorType::ConnectError
                | ErrorType::TLSHandshakeFailure
                | ErrorType::TLSHandshakeTimedout
                | ErrorType::InvalidCert
                | ErrorType::HandshakeError
                | ErrorType::SocketError
                | ErrorType::BindError
                | ErrorType::ConnectProxyFailure => Some(problem::UPSTREAM_UNAVAILABLE),
                _ => Some(problem::UPSTREAM_ERROR),
            },
            ErrorSource::Downstream => match e.etype() {
                ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed => None,
                _ => Some(problem::CLIENT_ERROR),
            },
            ErrorSource::Internal | ErrorSource::Unset => Some(problem::INTERNAL_ERROR),
        },
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            started: Instant::now(),
            request_id: String::new(),
            plan: None,
            route: None,
            partner: None,
            key_id: None,
            outcome: Outcome::Pending,
            upstream_sent: None,
            upstream_deadline: None,
            body_seen: 0,
            _permit: None,
            sub_outcome: None,
            replacing: None,
            leak_scanner: None,
            trace: Trace::default(),
            client_ip: None,
            canonical_path: None,
            stages: StageTimes::default(),
            extra_headers: Vec::new(),
        }
    }

    fn allow_spawning_subrequest(&self, _session: &Session, _ctx: &RequestCtx) -> bool {
        // Buffered routes forward through a subrequest (see `buffered`).
        true
    }

    async fn early_request_filter(
        &self,
        session: &mut Session,
        _ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        if let Some(guard) = session.stream().and_then(GuardedStream::of) {
            guard.header_complete();
        }
        Ok(())
    }

    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<bool> {
        if let Some(ticket) = buffered::ticket(session) {
            // A subrequest of ours: everything was decided in the main request.
            ctx.request_id = ticket.request_id.clone();
            ctx.plan = Some(ticket.plan.clone());
            ctx.route = Some(ticket.route.clone());
            ctx.partner = Some(ticket.partner.clone());
            ctx.key_id = Some(ticket.key_id.clone());
            ctx.sub_outcome = Some(ticket.outcome.clone());
            let plan = ticket.plan.clone();
            let sub_route = ticket.route.clone();
            let (target, request_id, partner, len) = (
                ticket.new_target.clone(),
                ticket.request_id.clone(),
                ticket.partner.clone(),
                ticket.body_len,
            );
            ctx.trace = ticket.trace.clone();
            let req = session.req_header_mut();
            if let Err(reject) = self.prepare_forward(
                req,
                Forward {
                    plan: &plan,
                    route: &sub_route,
                    new_target: target.as_deref(),
                    request_id: &request_id,
                    partner: &partner,
                    trace: &ctx.trace,
                },
            ) {
                respond_problem(session, ctx, reject, None).await?;
                return Ok(true);
            }
            // The body was read whole, so its length is known: send it with
            // plain Content-Length framing whatever the client used.
            let req = session.req_header_mut();
            req.remove_header(&http::header::TRANSFER_ENCODING);
            req.remove_header(&http::header::EXPECT);
            if len > 0 {
                req.insert_header(CONTENT_LENGTH, len.to_string())?;
            } else {
                req.remove_header(&CONTENT_LENGTH);
            }
            return Ok(false);
        }

        let plan = self.live.plan();
        let incoming_id = session
            .req_header()
            .headers
            .get(request_id::HEADER)
            .map(|v| v.as_bytes());
        ctx.request_id = request_id::choose(incoming_id, plan.trust_request_id);
        ctx.trace = trace_context::continue_or_start(
            session
                .req_header()
                .headers
                .get_all(trace_context::TRACEPARENT)
                .iter(),
        );
        ctx.plan = Some(plan.clone());
        session.set_keepalive(Some(plan.keepalive_secs));
        session.set_write_timeout(Some(plan.client_io_timeout));
        session.set_read_timeout(Some(plan.client_io_timeout));
        let client_ip = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        ctx.client_ip = client_ip;
        if let Some(left) = client_ip.and_then(|ip| self.monitor.abuse.client_blocked(ip)) {
            ctx.extra_headers
                .push(("retry-after", left.as_secs().max(1).to_string()));
            respond_problem(session, ctx, CLIENT_BLOCKED, None).await?;
            return Ok(true);
        }

        let canonical = match screen(session, &plan, &self.key_header) {
            Ok(c) => c,
            Err(reject) => {
                respond_problem(session, ctx, reject, None).await?;
                return Ok(true);
            }
        };
        ctx.canonical_path = Some(canonical.clone());

        let started = Instant::now();
        let req = session.req_header();
        let authenticated = auth::authenticate(
            self.keys.verifier(),
            &req.headers,
            req.uri.query(),
            &self.key_header,
            client_ip,
        )
        .await;
        ctx.stages.auth = Some(started.elapsed());
        let record = match authenticated {
            Ok(record) => record,
            Err((reject, key_id)) => {
                ctx.key_id = key_id.map(|id| id.to_string());
                let reject = self.judge_auth_failure(ctx, reject);
                respond_problem(session, ctx, reject, None).await?;
                return Ok(true);
            }
        };
        ctx.partner = Some(record.partner.clone());
        ctx.key_id = Some(record.key_id.clone());

        let started = Instant::now();
        let partner = plan.partners.get(&record.partner);
        if let Err(reject) = isolation::admit_partner(partner.map(|p| p.as_ref()), client_ip) {
            respond_problem(session, ctx, reject, None).await?;
            return Ok(true);
        }
        let Some(partner) = partner.cloned() else {
            return Ok(true);
        };

        if canonical == selfservice::ROTATE_PATH {
            selfservice::rotate(session, ctx, &self.keys, &record).await?;
            return Ok(true);
        }

        let Admitted {
            route,
            params,
            new_target,
        } = match route(session, &plan, canonical) {
            Ok(admitted) => admitted,
            Err((reject, allow)) => {
                respond_problem(session, ctx, reject, allow).await?;
                return Ok(true);
            }
        };
        ctx.route = Some(route.clone());

        if let Err(reject) = isolation::admit_route(&partner, &route.name, &route.scopes) {
            respond_problem(session, ctx, reject, None).await?;
            return Ok(true);
        }
        let req = session.req_header();
        let bound = isolation::check_bindings(
            &route.binding,
            &params,
            req.uri.query(),
            &req.headers,
            &partner.id,
        );
        add_time(&mut ctx.stages.isolation, started.elapsed());
        if let Err(reject) = bound {
            if reject == isolation::PARTNER_MISMATCH {
                audit_suspicious(ctx, &partner.id, &route.name, reject);
            }
            respond_problem(session, ctx, reject, None).await?;
            return Ok(true);
        }
        if self.over_rate_limit(ctx, &partner, &route).await {
            respond_problem(session, ctx, RATE_LIMITED, None).await?;
            return Ok(true);
        }
        if let Some(v) = &route.validation {
            let started = Instant::now();
            let req = session.req_header();
            let checked = v
                .check_params(req.uri.query(), &params, &req.headers)
                .and_then(|()| v.check_content_type(content_type(req)));
            add_time(&mut ctx.stages.validation, started.elapsed());
            if let Err(invalid) = checked {
                respond_invalid(session, ctx, invalid).await?;
                return Ok(true);
            }
        }
        if !route.allow_body
            && unambiguous::method_takes_no_body(&session.req_header().method)
            && !session.is_body_empty()
        {
            // The unread body makes the connection unusable for another request.
            session.set_keepalive(None);
            respond_problem(session, ctx, unambiguous::BODY_NOT_ALLOWED, None).await?;
            return Ok(true);
        }
        if declared_length(session).is_some_and(|len| len > route.max_body_bytes) {
            // The unread body makes the connection unusable for another request.
            session.set_keepalive(None);
            respond_problem(session, ctx, buffered::BODY_TOO_LARGE, None).await?;
            return Ok(true);
        }
        if let Some(max) = partner.max_concurrent {
            match self.inflight.acquire(&partner.id, max) {
                Some(permit) => ctx._permit = Some(permit),
                None => {
                    respond_problem(session, ctx, isolation::CONCURRENCY_LIMITED, None).await?;
                    return Ok(true);
                }
            }
        }

        // A form body is always read: frameworks merge its fields (`_method`,
        // the bound parameter) into what they act on.
        let form = unambiguous::form_kind(content_type(session.req_header()));
        if route.buffers() || form.is_some() {
            return self
                .forward_buffered(session, ctx, &plan, &route, &partner.id, new_target)
                .await;
        }
        let req = session.req_header_mut();
        if let Err(reject) = self.prepare_forward(
            req,
            Forward {
                plan: &plan,
                route: &route,
                new_target: new_target.as_deref(),
                request_id: &ctx.request_id,
                partner: &partner.id,
                trace: &ctx.trace,
            },
        ) {
            respond_problem(session, ctx, reject, None).await?;
            return Ok(true);
        }
        Ok(false)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<Box<HttpPeer>> {
        let Some(route) = ctx.route.as_ref() else {
            return Err(Error::explain(
                ErrorType::InternalError,
                "no route selected",
            ));
        };
        let upstream = &route.upstream;
        let t = route.timeouts;
        let mut peer = HttpPeer::new(upstream.socket, upstream.tls, upstream.server_name.clone());
        peer.options.connection_timeout = Some(t.connect);
        peer.options.total_connection_timeout = Some(t.connect);
        peer.options.read_timeout = Some(t.read.min(t.total));
        peer.options.write_timeout = Some(t.write.min(t.total));
        peer.options.idle_timeout = Some(Duration::from_secs(60));
        peer.options.alpn = ALPN::H1;
        peer.group_key = upstream.pool_key;
        if let Some(ca) = &upstream.ca {
            peer.options.ca = Some(ca.clone());
        }
        let now = Instant::now();
        ctx.upstream_deadline = Some(now + t.total);
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut pingora::http::RequestHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        if let Some(route) = ctx.route.as_ref() {
            if route.holds_response() {
                // The response must be read to be checked: no compression.
                upstream_request.insert_header(http::header::ACCEPT_ENCODING, "identity")?;
            }
            if !route.upstream.preserve_host {
                upstream_request.insert_header(HOST, route.upstream.authority.as_str())?;
            } else if session.is_http2() {
                // HTTP/2 carries the host as :authority; HTTP/1 upstreams need Host.
                if let Some(authority) = session.req_header().uri.authority() {
                    upstream_request.insert_header(HOST, authority.as_str())?;
                }
            }
        }
        ctx.upstream_sent = Some(Instant::now());
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        if let (Some(sent), Some(route)) = (ctx.upstream_sent, ctx.route.as_ref()) {
            let waited = sent.elapsed();
            ctx.stages.upstream = Some(waited);
            let metrics = &self.live.metrics;
            metrics
                .upstream_duration
                .with_label_values(&[route.name.as_str()])
                .observe(waited.as_secs_f64());
            if upstream_response.status.is_server_error() {
                metrics
                    .upstream_errors
                    .with_label_values(&[route.name.as_str(), "status_5xx"])
                    .inc();
            }
        }
        ctx.outcome = Outcome::Proxied;
        if let (Some(plan), Some(route)) = (ctx.plan.clone(), ctx.route.clone()) {
            self.minimise_headers(upstream_response, &plan, &route, ctx)?;
        }
        decorate(upstream_response, ctx)
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<Option<Duration>> {
        // Enforce the route's total upstream deadline on streamed bodies;
        // each individual wait is already capped by the read timeout.
        if !end_of_stream && ctx.upstream_deadline.is_some_and(|d| Instant::now() > d) {
            ctx.outcome = Outcome::Refused(problem::UPSTREAM_TIMEOUT);
            return Err(Error::explain(
                ErrorType::ReadTimedout,
                "route total timeout exceeded",
            ));
        }
        if let Some(replacing) = ctx.replacing.as_mut() {
            if let Some(chunk) = body.take() {
                let room = ctx
                    .plan
                    .as_ref()
                    .map_or(0, |p| p.error_log_bytes)
                    .saturating_sub(replacing.excerpt.len());
                replacing
                    .excerpt
                    .extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            if end_of_stream {
                *body = Some(replacing.body.clone());
                tracing::warn!(
                    target: "portcullis::upstream_error",
                    request_id = %ctx.request_id,
                    route = ctx.route.as_ref().map_or(NO_ROUTE, |r| r.name.as_str()),
                    status = replacing.status,
                    body = %minimise::log_safe(&replacing.excerpt),
                    "upstream answer withheld from the client"
                );
            }
            return Ok(None);
        }
        if let (Some(scanner), Some(chunk)) = (ctx.leak_scanner.as_mut(), body.as_ref()) {
            if scanner.leaks(chunk) {
                // The header is already out: cutting the stream is all that is left.
                ctx.outcome = Outcome::Refused(minimise::RESPONSE_LEAK_BLOCKED);
                tracing::warn!(
                    target: "portcullis::suspicious",
                    request_id = %ctx.request_id,
                    route = ctx.route.as_ref().map_or(NO_ROUTE, |r| r.name.as_str()),
                    "secret in a streamed upstream response; response cut"
                );
                return Err(Error::explain(
                    ErrorType::Custom(minimise::RESPONSE_LEAK_BLOCKED.code),
                    "secret in upstream response",
                ));
            }
        }
        Ok(None)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let reject = reject_for_error(e);
        let Some(reject) = reject else {
            ctx.outcome = Outcome::ClientGone;
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        };
        if ctx.request_id.is_empty() {
            ctx.request_id = request_id::generate();
        }
        if session.response_written().is_some() {
            // Headers are already out: all we can do is cut the response.
            ctx.outcome = Outcome::Refused(reject);
            return FailToProxy {
                error_code: reject.status,
                can_reuse_downstream: false,
            };
        }
        session.set_keepalive(None);
        if let Err(write_err) = respond_problem(session, ctx, reject, None).await {
            tracing::debug!(request_id = %ctx.request_id, error = %write_err, "could not send error response");
        }
        FailToProxy {
            error_code: reject.status,
            can_reuse_downstream: false,
        }
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        // Content-Length was checked up front; this catches chunked and
        // HTTP/2 bodies that grow past the limit while streaming.
        if let (Some(chunk), Some(route)) = (body.as_ref(), ctx.route.as_ref()) {
            ctx.body_seen += chunk.len();
            if ctx.body_seen > route.max_body_bytes {
                return Err(Error::explain(
                    ErrorType::Custom(buffered::BODY_TOO_LARGE.code),
                    "request body over the route's limit",
                ));
            }
        }
        Ok(())
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        if let Some(report) = &ctx.sub_outcome {
            // A subrequest of ours: the main request logs and counts it.
            if let Ok(mut outcome) = report.lock() {
                *outcome = ctx.outcome;
            }
            return;
        }
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let route = ctx.route.as_ref().map_or(NO_ROUTE, |r| r.name.as_str());
        let elapsed = ctx.started.elapsed();
        let decision = ctx.outcome.decision(status);
        self.count(ctx, route, status, decision, elapsed);
        // The query string is never logged: partners put secrets in it.
        tracing::info!(
            target: "portcullis::access",
            request_id = %ctx.request_id,
            trace_id = %ctx.trace.trace_id,
            method = %session.req_header().method,
            path = logged_path(ctx, session.req_header()),
            route,
            partner = ctx.partner.as_deref(),
            key_id = ctx.key_id.as_deref(),
            status,
            outcome = ctx.outcome.code(),
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            error = e.map(|e| e.etype().as_str()),
        );
        if self.monitor.audit.wants(decision) {
            let record = audit_record(session, ctx, route, status, decision, elapsed);
            self.monitor.audit.submit(Entry::request(record));
        }
        if let Some(guard) = session.stream().and_then(GuardedStream::of) {
            guard.await_next_request();
        }
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, _error: &Error) -> bool {
        // Our access log records every failure with its outcome code.
        true
    }
}
