//! Forwarding a request whose body or response the gateway must see whole
//! before anything moves on.
//!
//! pingora connects to the upstream and sends the request header before
//! it shows a hook any of the body, and it can only replay a body read
//! early up to 64 KiB (its retry buffer). So the gateway reads the body
//! itself, checks it, and only then hands the request to a pingora
//! *subrequest* with the body preset: the subrequest runs the ordinary
//! proxy phases (upstream choice, timeouts, pooling, error mapping) and
//! its response is piped back to the client. Bodies of any size, chunked
//! or over HTTP/2, reach the upstream byte for byte, and a refused body
//! reaches it not at all. (Bodies of at most 64 KiB on routes without a
//! response guard skip the subrequest: pingora replays its own copy, which
//! `proxy::body` first checks is exactly the body that passed.)

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, TRANSFER_ENCODING};
use pingora::http::ResponseHeader;
use pingora::protocols::http::HttpTask;
use pingora::proxy::subrequest::pipe::{pipe_subrequest, InputBody, InputBodyType};
use pingora::proxy::subrequest::{BodyMode, Ctx as SubrequestCtx};
use pingora::proxy::Session;
use pingora::{Error, ErrorType};

use crate::ownership::service::OwnershipIndex;
use crate::plan::Plan;
use crate::plan::Route;
use crate::stage::minimise;
use crate::stage::outcome::Outcome;
use crate::stage::problem;
use crate::stage::problem::Reject;

/// What the subrequest needs to forward without deciding anything again:
/// every check already passed in the main request.
#[derive(Clone)]
pub struct Ticket {
    pub plan: Arc<Plan>,
    pub route: Arc<Route>,
    pub partner: String,
    pub key_id: String,
    pub request_id: String,
    pub trace: crate::stage::trace_context::Trace,
    pub new_target: Option<String>,
    pub body_len: usize,
    /// How the subrequest ended, for the main request's log line.
    pub outcome: Arc<Mutex<SubReport>>,
    /// A pre-flight read the gateway sends for itself (`GET new_target`,
    /// no body), whose answer is never shown to the client.
    pub preflight: bool,
    /// The owned object the request names, for reading the answer.
    pub object: Option<crate::proxy::context::ObjectSeen>,
}

/// What a subrequest tells the request that started it.
#[derive(Debug, Clone, Copy)]
pub struct SubReport {
    pub outcome: Outcome,
    pub upstream: crate::proxy::context::UpstreamTries,
}

impl Default for SubReport {
    fn default() -> Self {
        SubReport {
            outcome: Outcome::Pending,
            upstream: Default::default(),
        }
    }
}

/// Finds the ticket when `session` is a subrequest this module started.
pub fn ticket(session: &Session) -> Option<&Ticket> {
    session
        .subrequest_ctx
        .as_ref()?
        .user_ctx()?
        .downcast_ref::<Ticket>()
}

/// Reads the whole request body, refusing it past `limit` bytes or
/// `deadline`.
pub async fn read_body(
    session: &mut Session,
    limit: usize,
    deadline: Duration,
) -> Result<Bytes, Reject> {
    let expects_continue = session
        .req_header()
        .headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let read = async {
        if expects_continue && !session.is_http2() {
            session
                .as_downstream_mut()
                .write_continue_response()
                .await
                .map_err(|_| crate::stage::problem::CLIENT_ERROR)?;
        }
        let mut body = BytesMut::new();
        while let Some(chunk) = session
            .read_request_body()
            .await
            .map_err(|_| crate::stage::problem::CLIENT_ERROR)?
        {
            if body.len() + chunk.len() > limit {
                return Err(problem::BODY_TOO_LARGE);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    };
    match tokio::time::timeout(deadline, read).await {
        Ok(result) => result,
        Err(_) => Err(problem::BODY_TIMEOUT),
    }
}

/// How a buffered forward ended, for the main request's log and metrics.
pub enum Forwarded {
    /// The upstream's answer went to the client; the subrequest's outcome.
    Answered(Outcome),
    /// The response was held back; the caller answers with this instead.
    Refused(Reject),
}

/// Runs the subrequest with `body` preset and pipes its response to the
/// client, holding the response back for inspection when the route has a
/// response binding.
pub async fn forward(
    session: &mut Session,
    ticket: Ticket,
    body: Option<Bytes>,
    ownership: Option<&OwnershipIndex>,
) -> pingora::Result<Forwarded> {
    as_http1(session)?;
    let outcome = ticket.outcome.clone();
    let route = ticket.route.clone();
    let block_secrets = ticket.plan.block_secrets;
    let max_response = route.max_response_bytes;
    let partner = ticket.partner.clone();
    let request_id = ticket.request_id.clone();
    let object = ticket.object.clone();
    let Some(spawner) = session.subrequest_spawner.as_ref() else {
        return Err(Error::explain(
            ErrorType::InternalError,
            "subrequests are not enabled",
        ));
    };
    let sub_ctx = SubrequestCtx::builder()
        .body_mode(if body.is_some() {
            BodyMode::ExpectBody
        } else {
            BodyMode::NoBody
        })
        .user_ctx(Box::new(ticket))
        .build();
    let (subrequest, handle) = spawner.create_subrequest(session.as_downstream(), sub_ctx);
    let input = match body {
        Some(b) if !b.is_empty() => InputBody::Bytes(vec![b]),
        _ => InputBody::NoBody,
    };

    let mut held = Held::new(max_response);
    let result = if route.holds_response() {
        pipe_subrequest(
            session,
            subrequest,
            handle,
            |task| {
                held.keep(task);
                Ok(None)
            },
            InputBodyType::Preset(input),
        )
        .await
    } else {
        pipe_subrequest(
            session,
            subrequest,
            handle,
            |task| Ok(Some(task)),
            InputBodyType::Preset(input),
        )
        .await
    };
    let state = result.map_err(|e| e.error)?;
    if let Some(join) = state.join_handle {
        // The subrequest's logging phase records its outcome; wait for it.
        let _ = join.await;
    }
    let sub_outcome = outcome
        .lock()
        .map(|r| r.outcome)
        .unwrap_or(Outcome::Pending);

    if !route.holds_response() {
        if session.response_written().is_none() {
            // The subrequest ended without an answer (it could not even
            // start): the client still gets one.
            return Ok(Forwarded::Refused(crate::stage::problem::INTERNAL_ERROR));
        }
        return Ok(Forwarded::Answered(sub_outcome));
    }
    if let Some(rule) = route.object.as_ref().filter(|r| r.holds_response()) {
        let Some(index) = ownership else {
            return Ok(Forwarded::Refused(problem::OWNERSHIP_UNAVAILABLE));
        };
        let read = crate::proxy::ownership::AnswerRead {
            rule,
            route: &route.name,
            caller: &partner,
            object: object.as_ref(),
            request_id: &request_id,
        };
        if let Err(reject) = held.own(&read, index).await {
            return Ok(Forwarded::Refused(reject));
        }
    }
    match held.verdict(&route, &partner, block_secrets) {
        Err(reject) => Ok(Forwarded::Refused(reject)),
        Ok((header, body)) => {
            session.write_response_header(header, false).await?;
            session.write_response_body(Some(body), true).await?;
            Ok(Forwarded::Answered(sub_outcome))
        }
    }
}

/// The subrequest re-parses this header as HTTP/1, which has no version
/// "HTTP/2" and carries the authority in `Host`.
fn as_http1(session: &mut Session) -> pingora::Result<()> {
    if session.is_http2() {
        let req = session.req_header_mut();
        req.set_version(http::Version::HTTP_11);
        if !req.headers.contains_key(http::header::HOST) {
            if let Some(authority) = req.uri.authority().map(|a| a.as_str().to_string()) {
                req.insert_header(http::header::HOST, authority)?;
            }
        }
    }
    Ok(())
}

/// A pre-flight's answer: its status and body, or nothing when the
/// upstream could not be asked or did not answer whole.
pub struct PreflightAnswer {
    pub status: u16,
    pub body: Bytes,
}

/// Sends the ticket's pre-flight read and collects its answer; nothing of
/// it reaches the client, and the client's request stays as it was for the
/// forward that may follow.
pub async fn preflight(
    session: &mut Session,
    ticket: Ticket,
) -> pingora::Result<Option<PreflightAnswer>> {
    as_http1(session)?;
    let limit = ticket.route.max_response_bytes;
    let Some(spawner) = session.subrequest_spawner.as_ref() else {
        return Err(Error::explain(
            ErrorType::InternalError,
            "subrequests are not enabled",
        ));
    };
    let sub_ctx = SubrequestCtx::builder()
        .body_mode(BodyMode::NoBody)
        .user_ctx(Box::new(ticket))
        .build();
    let (subrequest, handle) = spawner.create_subrequest(session.as_downstream(), sub_ctx);
    let mut held = Held::new(limit);
    let result = pipe_subrequest(
        session,
        subrequest,
        handle,
        |task| {
            held.keep(task);
            Ok(None)
        },
        InputBodyType::Preset(InputBody::NoBody),
    )
    .await;
    let Ok(state) = result else {
        return Ok(None);
    };
    if let Some(join) = state.join_handle {
        let _ = join.await;
    }
    let encoded = held.header.as_ref().is_some_and(|h| {
        h.headers
            .get(CONTENT_ENCODING)
            .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
    });
    match held.header {
        Some(header) if !held.failed && !held.overflow && !encoded => Ok(Some(PreflightAnswer {
            status: header.status.as_u16(),
            body: held.body.freeze(),
        })),
        _ => Ok(None),
    }
}

/// A response held back until it is known to belong to the caller.
pub(crate) struct Held {
    header: Option<Box<ResponseHeader>>,
    body: BytesMut,
    limit: usize,
    overflow: bool,
    failed: bool,
}

impl Held {
    /// Reads a successful answer's ownership (`proxy::ownership`): learns
    /// from it, refuses it, or cuts a list down to the caller's rows.
    async fn own(
        &mut self,
        read: &crate::proxy::ownership::AnswerRead<'_>,
        index: &OwnershipIndex,
    ) -> Result<(), Reject> {
        let Some(header) = &self.header else {
            return Ok(());
        };
        if read.rule.action == crate::stage::own::ResourceAction::Read
            && matches!(header.status.as_u16(), 404 | 410)
            && !self.failed
        {
            // The backend's own "not found" would differ from the gateway's
            // answer for another partner's object, and so tell the two apart.
            return Err(problem::OBJECT_NOT_FOUND);
        }
        if self.failed || self.overflow || !header.status.is_success() {
            // `verdict` answers these.
            return Ok(());
        }
        let encoded = header
            .headers
            .get(CONTENT_ENCODING)
            .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
        if encoded {
            return Err(problem::RESPONSE_NOT_FILTERABLE);
        }
        if let Some(cut) = crate::proxy::ownership::read_answer(read, index, &self.body).await? {
            self.body = BytesMut::from(&cut[..]);
        }
        Ok(())
    }

    fn new(limit: usize) -> Held {
        Held {
            header: None,
            body: BytesMut::new(),
            limit,
            overflow: false,
            failed: false,
        }
    }

    fn keep(&mut self, task: HttpTask) {
        match task {
            HttpTask::Header(h, _) => self.header = Some(h),
            HttpTask::Body(Some(bytes), _) | HttpTask::UpgradedBody(Some(bytes), _) => {
                if self.body.len() + bytes.len() > self.limit {
                    self.overflow = true;
                    self.body.clear();
                } else if !self.overflow {
                    self.body.extend_from_slice(&bytes);
                }
            }
            HttpTask::Failed(_) => self.failed = true,
            _ => {}
        }
    }

    /// The response to send, or why it must not be sent. Only successful
    /// answers carry partner data: they must belong to the caller and are
    /// cut to the route's fields. The gateway's own problem responses and
    /// (already replaced) upstream errors pass as they are.
    fn verdict(
        self,
        route: &Route,
        partner: &str,
        block_secrets: bool,
    ) -> Result<(Box<ResponseHeader>, Bytes), Reject> {
        let Some(mut header) = self.header else {
            return Err(crate::stage::problem::UPSTREAM_ERROR);
        };
        if self.failed {
            return Err(crate::stage::problem::UPSTREAM_ERROR);
        }
        if self.overflow {
            return Err(problem::RESPONSE_TOO_LARGE);
        }
        let encoded = header
            .headers
            .get(CONTENT_ENCODING)
            .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
        let body = self.body.freeze();
        let cut = minimise::check_held(minimise::Held {
            success: header.status.is_success(),
            encoded,
            body: &body,
            bind: route.response_bind.as_ref(),
            fields: route.fields.as_ref().map(|f| f.for_partner(partner)),
            partner,
            block_secrets,
        })?;
        let body = cut.map_or(body, Bytes::from);
        header.remove_header(&TRANSFER_ENCODING);
        header
            .insert_header(CONTENT_LENGTH, body.len().to_string())
            .map_err(|_| crate::stage::problem::INTERNAL_ERROR)?;
        Ok((header, body))
    }
}
