//! The request phase: each stage in turn, in the order of the standard,
//! each result mapped to "go on" or to the problem answer. The first
//! refusal ends the request and the upstream sees nothing.

use std::time::Instant;

use http::header::CONTENT_LENGTH;
use pingora::proxy::Session;

use crate::keys::credential;
use crate::plan::{Plan, Route};
use crate::proxy::context::RequestCtx;
use crate::proxy::respond::{respond_invalid, respond_problem};
use crate::proxy::subrequest::Ticket;
use crate::proxy::{selfservice, Gateway};
use crate::stage::forward::{self, Edits, Forward};
use crate::stage::isolation::{self, Partner};
use crate::stage::problem::{self, Reject};
use crate::stage::record::add_time;
use crate::stage::route::{self as routing, Admitted};
use crate::stage::screen::{self, Wire};
use crate::stage::{
    authenticate, client_address, own, rate_limit, request_id, trace_context, unambiguous,
};

/// Whether the request was answered here (`true`) or goes upstream.
pub(crate) type Answered = bool;

impl Gateway {
    pub(crate) async fn run_stages(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<Answered> {
        let plan = self.live.plan();
        let req = session.req_header();
        ctx.request_id = request_id::choose(
            req.headers.get(request_id::HEADER).map(|v| v.as_bytes()),
            plan.trust_request_id,
        );
        ctx.trace = trace_context::continue_or_start(
            req.headers.get_all(trace_context::TRACEPARENT).iter(),
            self.monitor.sampling,
        );
        ctx.plan = Some(plan.clone());
        session.set_keepalive(Some(plan.keepalive_secs));
        session.set_write_timeout(Some(plan.client_io_timeout));
        session.set_read_timeout(Some(plan.client_io_timeout));
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let client_ip = match peer {
            Some(peer) => {
                match client_address::resolve(
                    &plan.client_address,
                    peer,
                    &session.req_header().headers,
                ) {
                    Ok(client) => {
                        // Logged beside the client only when they differ.
                        ctx.peer_ip = (client != peer).then_some(peer);
                        Some(client)
                    }
                    Err(reject) => {
                        ctx.peer_ip = Some(peer);
                        return refuse(session, ctx, reject).await;
                    }
                }
            }
            None => None,
        };
        ctx.client_ip = client_ip;
        if let Some(left) = client_ip.and_then(|ip| self.monitor.abuse.client_blocked(ip)) {
            ctx.extra_headers
                .push(("retry-after", rate_limit::retry_after(left.max(ONE_SECOND))));
            return refuse(session, ctx, problem::CLIENT_BLOCKED).await;
        }

        let raw_h1 = session.as_http1().map(|h1| h1.get_headers_raw_bytes());
        let wire = match &raw_h1 {
            Some(raw) => Wire::Http1(raw),
            None => Wire::Http2,
        };
        let screened = screen::screen(
            session.req_header(),
            wire,
            &plan.limits,
            &credential::headers(&self.key_header),
        );
        let canonical = match screened {
            Ok(c) => c,
            Err(reject) => return refuse(session, ctx, reject).await,
        };
        ctx.canonical_path = Some(canonical.clone());

        let started = Instant::now();
        let req = session.req_header();
        let authenticated = authenticate::authenticate(
            self.keys.verifier(),
            &req.headers,
            req.uri.query(),
            &self.key_header,
            client_ip,
        )
        .await;
        add_time(&mut ctx.stages.auth, started);
        let record = match authenticated {
            Ok(record) => record,
            Err((reject, key_id)) => {
                ctx.key_id = key_id.map(|id| id.to_string());
                let reject = self.judge_auth_failure(ctx, reject);
                return refuse(session, ctx, reject).await;
            }
        };
        ctx.partner = Some(record.partner.clone());
        ctx.key_id = Some(record.key_id.clone());

        let started = Instant::now();
        let partner = plan.partners.get(&record.partner).cloned();
        if let Err(reject) = isolation::admit_partner(partner.as_deref(), client_ip) {
            return refuse(session, ctx, reject).await;
        }
        let Some(partner) = partner else {
            return refuse(session, ctx, problem::PARTNER_UNKNOWN).await;
        };

        if canonical == selfservice::ROTATE_PATH {
            selfservice::rotate(session, ctx, &self.keys, &partner, &record).await?;
            return Ok(true);
        }

        let req = session.req_header();
        let Admitted {
            route,
            params,
            new_target,
        } = match routing::resolve(&plan.router, req, req.raw_path(), canonical) {
            Ok(admitted) => admitted,
            Err((reject, allow)) => {
                respond_problem(session, ctx, reject, allow).await?;
                return Ok(true);
            }
        };
        ctx.route = Some(route.clone());

        if let Err(reject) = isolation::admit_route(&partner, &route.name, &route.scopes) {
            return refuse(session, ctx, reject).await;
        }
        let req = session.req_header();
        let bound = isolation::check_bindings(
            &route.binding,
            &params,
            req.uri.query(),
            &req.headers,
            &partner.id,
        );
        add_time(&mut ctx.stages.isolation, started);
        if let Err(reject) = bound {
            suspicious(ctx, &partner.id, &route.name, reject);
            return refuse(session, ctx, reject).await;
        }
        if let Err(reject) = self.rate_limit(ctx, &partner, &route).await {
            return refuse(session, ctx, reject).await;
        }
        if let Some(v) = &route.validation {
            let started = Instant::now();
            let req = session.req_header();
            let checked = v
                .check_params(req.uri.query(), &params, &req.headers)
                .and_then(|()| v.check_content_type(screen::content_type(&req.headers)));
            add_time(&mut ctx.stages.validation, started);
            if let Err(invalid) = checked {
                respond_invalid(session, ctx, invalid).await?;
                return Ok(true);
            }
        }
        let body_empty = session.is_body_empty();
        let req = session.req_header();
        let body = unambiguous::check_body_allowed(
            route.allow_body,
            &req.method,
            body_empty,
            screen::declared_length(&req.headers),
            route.max_body_bytes,
        );
        if let Err(reject) = body {
            return refuse(session, ctx, reject).await;
        }
        if let Some(max) = partner.max_concurrent {
            match self.inflight.acquire(&partner.id, max) {
                Some(permit) => ctx.permit = Some(permit),
                None => return refuse(session, ctx, problem::CONCURRENCY_LIMITED).await,
            }
        }

        if let Some(rule) = &route.object {
            let req = session.req_header();
            match own::request_object(rule, &params, req.uri.query()) {
                Err(reject) => return refuse(session, ctx, reject).await,
                Ok(Some(id)) => {
                    let checked = self
                        .check_object(session, ctx, &plan, &route, id, &partner.id)
                        .await?;
                    if let Err(reject) = checked {
                        return refuse(session, ctx, reject).await;
                    }
                }
                // Named in the body, or no object named: see `proxy::body`.
                Ok(None) => {}
            }
        }

        // A form body is always read: frameworks merge its fields (`_method`,
        // the bound parameter) into what they act on.
        let form = unambiguous::form_kind(screen::content_type(&session.req_header().headers));
        if route.buffers() || form.is_some() {
            return self
                .forward_whole_body(session, ctx, &plan, &route, &partner.id, new_target)
                .await;
        }
        let prepared = self.prepare_forward(
            session,
            &plan,
            &route,
            new_target.as_deref(),
            &partner.id,
            &ctx.request_id,
            &ctx.trace,
        );
        match prepared {
            Ok(()) => Ok(false),
            Err(reject) => refuse(session, ctx, reject).await,
        }
    }

    /// The subrequest `proxy::body` started: everything was decided in the
    /// main request, so it only prepares the forward.
    pub(crate) async fn run_subrequest(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        ticket: Ticket,
    ) -> pingora::Result<Answered> {
        ctx.request_id = ticket.request_id.clone();
        ctx.plan = Some(ticket.plan.clone());
        ctx.route = Some(ticket.route.clone());
        ctx.partner = Some(ticket.partner.clone());
        ctx.key_id = Some(ticket.key_id.clone());
        ctx.sub_outcome = Some(ticket.outcome.clone());
        ctx.trace = ticket.trace.clone();
        if ticket.preflight {
            // The gateway's own read: a GET of the pre-flight target, with
            // nothing of the client's body.
            let req = session.req_header_mut();
            req.set_method(http::Method::GET);
            for name in [
                http::header::CONTENT_LENGTH,
                http::header::TRANSFER_ENCODING,
                http::header::CONTENT_TYPE,
                http::header::EXPECT,
            ] {
                req.remove_header(&name);
            }
        }
        let prepared = self.prepare_forward(
            session,
            &ticket.plan,
            &ticket.route,
            ticket.new_target.as_deref(),
            &ticket.partner,
            &ticket.request_id,
            &ticket.trace,
        );
        if let Err(reject) = prepared {
            return refuse(session, ctx, reject).await;
        }
        if ticket.preflight {
            return Ok(false);
        }
        // The body was read whole, so its length is known: send it with
        // plain Content-Length framing whatever the client used.
        let req = session.req_header_mut();
        req.remove_header(&http::header::TRANSFER_ENCODING);
        req.remove_header(&http::header::EXPECT);
        if ticket.body_len > 0 {
            req.insert_header(CONTENT_LENGTH, ticket.body_len.to_string())?;
        } else {
            req.remove_header(&CONTENT_LENGTH);
        }
        Ok(false)
    }

    /// Makes the request header what the upstream may see (see
    /// `stage::forward`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn prepare_forward(
        &self,
        session: &mut Session,
        plan: &Plan,
        route: &Route,
        new_target: Option<&str>,
        partner: &str,
        request_id: &str,
        trace: &trace_context::Trace,
    ) -> Result<(), Reject> {
        let edits = forward::edits(
            session.req_header(),
            Forward {
                new_target,
                credential_headers: &credential::headers(&self.key_header),
                identity_headers: &plan.identity_headers,
                signer: plan.signer.as_deref(),
                upstream: &route.upstream.name,
                request_id,
                partner,
                trace,
                now: crate::keys::store::now_secs(),
            },
        )?;
        apply(session.req_header_mut(), edits)
    }

    /// Counts an authentication failure towards brute-force blocking, and
    /// answers a key id that is already blocked with 429.
    fn judge_auth_failure(&self, ctx: &mut RequestCtx, reject: Reject) -> Reject {
        if let Some(left) = ctx
            .key_id
            .as_deref()
            .and_then(|id| self.monitor.abuse.key_blocked(id))
        {
            ctx.extra_headers
                .push(("retry-after", rate_limit::retry_after(left.max(ONE_SECOND))));
            return problem::KEY_BLOCKED;
        }
        if authenticate::counts_towards_blocking(reject) {
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
    async fn rate_limit(
        &self,
        ctx: &mut RequestCtx,
        partner: &Partner,
        route: &Route,
    ) -> Result<(), Reject> {
        let checks = rate_limit::checks(&partner.id, partner.rate, &route.name, route.rate_limit);
        if checks.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let verdict = self.monitor.limiter.check(&route.name, &checks).await;
        add_time(&mut ctx.stages.rate_limit, started);
        let Some(verdict) = verdict else {
            return Ok(());
        };
        let (headers, answer) = rate_limit::answer(verdict);
        ctx.extra_headers.extend(headers);
        answer
    }
}

/// A `Retry-After` never says 0: the client would retry at once.
const ONE_SECOND: std::time::Duration = std::time::Duration::from_secs(1);

/// Applies forward edits to pingora's header, which keeps the client's
/// header-name case for HTTP/1 (so edits go through it, not the map).
fn apply(req: &mut pingora::http::RequestHeader, edits: Edits) -> Result<(), Reject> {
    if let Some(uri) = edits.target {
        req.set_uri(uri);
    }
    for name in &edits.remove {
        req.remove_header(name);
    }
    for (name, value) in edits.insert {
        req.insert_header(name, value)
            .map_err(|_| problem::INTERNAL_ERROR)?;
    }
    Ok(())
}

pub(crate) async fn refuse(
    session: &mut Session,
    ctx: &mut RequestCtx,
    reject: Reject,
) -> pingora::Result<Answered> {
    respond_problem(session, ctx, reject, None).await?;
    Ok(true)
}

/// Logs a request that reached for another partner's data.
pub(crate) fn suspicious(ctx: &RequestCtx, partner: &str, route: &str, reject: Reject) {
    if reject != problem::PARTNER_MISMATCH {
        return;
    }
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
