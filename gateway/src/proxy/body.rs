//! Request bodies. One the gateway must see is read whole before anything
//! moves on: read, inspect (`stage::inspect`), then forward either by
//! pingora's own replay of what it buffered or through a subrequest
//! (`subrequest`). One that streams is counted against the route's limit.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use pingora::proxy::Session;

use crate::plan::{Plan, Route};
use crate::proxy::context::RequestCtx;
use crate::proxy::errors::refusal;
use crate::proxy::request::{refuse, suspicious, Answered};
use crate::proxy::respond::respond_invalid;
use crate::proxy::subrequest::{self, Forwarded, SubReport, Ticket};
use crate::proxy::Gateway;
use crate::stage::inspect::{inspect, Rules};
use crate::stage::problem;
use crate::stage::record::StageTime;
use crate::stage::{own, screen};

impl Gateway {
    pub(crate) async fn forward_whole_body(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        plan: &Arc<Plan>,
        route: &Arc<Route>,
        partner: &str,
        new_target: Option<String>,
    ) -> pingora::Result<Answered> {
        // Without a response to hold back, a small body can go the ordinary
        // way: pingora replays what it buffered while we read (up to
        // 64 KiB), which costs less than a subrequest.
        let may_replay = !route.holds_response();
        if may_replay {
            session.as_downstream_mut().enable_retry_buffering();
        }
        let body = if route.binding.needs_body() || !session.is_body_empty() {
            match subrequest::read_body(session, route.max_body_bytes, plan.body_timeout).await {
                Ok(body) => Some(body),
                Err(reject) => {
                    // Part of the body may still be on the wire.
                    session.set_keepalive(None);
                    return refuse(session, ctx, reject).await;
                }
            }
        } else {
            None
        };
        let bytes = body.as_deref().unwrap_or_default();
        let rules = Rules {
            binding: &route.binding,
            validation: route.validation.as_ref(),
        };
        let content_type = screen::content_type(&session.req_header().headers);
        if let Err(invalid) = inspect(&rules, content_type, bytes, partner, &mut ctx.stages) {
            suspicious(ctx, partner, &route.name, invalid.reject);
            respond_invalid(session, ctx, invalid).await?;
            return Ok(true);
        }
        if let Some(rule) = route.object.as_ref().filter(|r| r.id_in_body()) {
            let named = match &rule.id {
                Some(own::IdSource::Body(pointer)) => own::body_object(pointer, bytes),
                _ => Err(problem::OBJECT_ID_MISSING),
            };
            let checked = match named {
                Ok(id) => {
                    self.check_object(session, ctx, plan, route, id, partner)
                        .await?
                }
                Err(reject) => Err(reject),
            };
            if let Err(reject) = checked {
                return refuse(session, ctx, reject).await;
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
            let prepared = self.prepare_forward(
                session,
                plan,
                route,
                new_target.as_deref(),
                partner,
                &ctx.request_id,
                &ctx.trace,
            );
            return match prepared {
                Ok(()) => Ok(false),
                Err(reject) => refuse(session, ctx, reject).await,
            };
        }
        let ticket = Ticket {
            plan: plan.clone(),
            route: route.clone(),
            partner: partner.to_string(),
            key_id: ctx.key_id.clone().unwrap_or_default(),
            request_id: ctx.request_id.clone(),
            trace: ctx.trace.clone(),
            new_target,
            body_len: body.as_ref().map_or(0, |b| b.len()),
            outcome: Arc::new(Mutex::new(SubReport::default())),
            preflight: false,
            object: ctx.object.clone(),
        };
        let report = ticket.outcome.clone();
        let started = Instant::now();
        let forwarded = subrequest::forward(session, ticket, body, self.ownership.as_deref()).await;
        ctx.stages.upstream = Some(StageTime::since(started));
        if let Ok(report) = report.lock() {
            ctx.upstream = report.upstream;
        }
        match forwarded? {
            Forwarded::Answered(outcome) => ctx.outcome = outcome,
            Forwarded::Refused(reject) => {
                if reject == problem::OBJECT_NOT_FOUND {
                    self.note_answer_owner(ctx).await;
                }
                if reject == problem::RESPONSE_PARTNER_MISMATCH {
                    tracing::warn!(
                        target: "portcullis::suspicious",
                        request_id = %ctx.request_id,
                        partner = %partner,
                        route = %route.name,
                        code = reject.code,
                        "upstream response for another partner withheld"
                    );
                }
                refuse(session, ctx, reject).await?;
            }
        }
        Ok(true)
    }
}

/// Counts a streamed request body against the route's limit: Content-Length
/// was checked up front; this catches chunked and HTTP/2 bodies that grow
/// past it.
pub(crate) fn request_chunk(body: Option<&Bytes>, ctx: &mut RequestCtx) -> pingora::Result<()> {
    if let (Some(chunk), Some(route)) = (body, ctx.route.as_ref()) {
        ctx.body_seen += chunk.len();
        if ctx.body_seen > route.max_body_bytes {
            return Err(refusal(
                problem::BODY_TOO_LARGE,
                "request body over the route's limit",
            ));
        }
    }
    Ok(())
}
