//! The response phases of a streamed answer: the upstream's header
//! minimised (`stage::minimise`) or replaced, and its body watched for
//! secrets and the route's total deadline.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use pingora::http::ResponseHeader;
use pingora::{Error, ErrorType};

use crate::monitor::metrics::NO_ROUTE;
use crate::plan::{Plan, Route};
use crate::proxy::context::{Replacement, RequestCtx};
use crate::proxy::errors::refusal;
use crate::proxy::respond::decorate;
use crate::proxy::Gateway;
use crate::stage::minimise::{self, LeakScanner};
use crate::stage::outcome::Outcome;
use crate::stage::problem;
use crate::stage::record::StageTime;

impl Gateway {
    pub(crate) fn upstream_answered(
        &self,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        if let (Some(sent), Some(route)) = (ctx.upstream_sent, ctx.route.as_ref()) {
            let waited = StageTime::since(sent);
            ctx.stages.upstream = Some(waited);
            let metrics = &self.live.metrics;
            metrics
                .upstream_duration
                .with_label_values(&[route.name.as_str()])
                .observe(waited.busy.as_secs_f64());
            if resp.status.is_server_error() {
                metrics
                    .upstream_errors
                    .with_label_values(&[route.name.as_str(), "status_5xx"])
                    .inc();
            }
        }
        crate::proxy::upstream::answered(ctx, resp.status.as_u16(), &self.live.metrics.targets);
        ctx.outcome = Outcome::Proxied;
        if let (Some(plan), Some(route)) = (ctx.plan.clone(), ctx.route.clone()) {
            minimise_header(resp, &plan, &route, ctx)?;
        }
        decorate(resp, ctx)
    }
}

/// Removes internal headers, adds security headers, and arranges for
/// an upstream error body (or a response leaking a secret in its
/// headers) to be replaced by a problem document.
fn minimise_header(
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
    if let Some(reject) = minimise::withheld(status, plan.replace_errors, secret_in_headers) {
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

/// One chunk of a streamed upstream body.
pub(crate) fn body_chunk(
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
    let route = ctx.route.as_ref().map_or(NO_ROUTE, |r| r.name.as_str());
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
                route,
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
            ctx.outcome = Outcome::Refused(problem::RESPONSE_LEAK_BLOCKED);
            tracing::warn!(
                target: "portcullis::suspicious",
                request_id = %ctx.request_id,
                route,
                "secret in a streamed upstream response; response cut"
            );
            return Err(refusal(
                problem::RESPONSE_LEAK_BLOCKED,
                "secret in upstream response",
            ));
        }
    }
    Ok(None)
}
