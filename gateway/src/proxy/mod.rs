//! The pingora `ProxyHttp` implementation. Wiring only: each phase calls
//! the next stage (`crate::stage`, plain Rust that knows nothing of
//! pingora) and maps its result onto pingora: go on, or answer with the
//! problem. No policy decision is made here.
//!
//! - `request`: the request phase, stage by stage; `body` for request
//!   bodies (read whole, or counted as they stream), `subrequest` to forward it, `selfservice` for a
//!   partner rotating its own key.
//! - `upstream`: the peer and the upstream request's last touches.
//! - `response`: the upstream's answer, minimised or replaced.
//! - `respond`: the gateway's own answers; `errors`: pingora errors as problems.
//! - `finish`: counted, logged, audited.

mod body;
pub mod context;
mod errors;
mod finish;
mod ownership;
mod request;
pub mod respond;
mod response;
pub mod selfservice;
pub mod subrequest;
mod upstream;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::Error;

use crate::keys::service::KeyService;
use crate::limits::inflight::InFlight;
use crate::monitor::Monitor;
use crate::ownership::service::OwnershipIndex;
use crate::server::reload::Live;
use crate::stage::outcome::Outcome;
use crate::stage::request_id;
use crate::transport::conn_guard::GuardedStream;

pub use context::RequestCtx;
pub use respond::{h2_authority_refusal, parser_refusal};

pub struct Gateway {
    live: Arc<Live>,
    keys: Arc<KeyService>,
    key_header: String,
    inflight: InFlight,
    monitor: Arc<Monitor>,
    /// The ownership index, when the key store's engine has one.
    ownership: Option<Arc<OwnershipIndex>>,
}

impl Gateway {
    pub fn new(
        live: Arc<Live>,
        keys: Arc<KeyService>,
        key_header: String,
        monitor: Arc<Monitor>,
        ownership: Option<Arc<OwnershipIndex>>,
    ) -> Self {
        Gateway {
            live,
            keys,
            key_header,
            inflight: InFlight::default(),
            monitor,
            ownership,
        }
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new()
    }

    fn allow_spawning_subrequest(&self, _session: &Session, _ctx: &RequestCtx) -> bool {
        // Whole-body routes forward through a subrequest (see `subrequest`).
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
        match subrequest::ticket(session).cloned() {
            Some(ticket) => self.run_subrequest(session, ctx, ticket).await,
            None => self.run_stages(session, ctx).await,
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<Box<HttpPeer>> {
        upstream::peer(ctx, &self.live.metrics.targets)
    }

    fn fail_to_connect(
        &self,
        session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        e: Box<Error>,
    ) -> Box<Error> {
        upstream::connect_failed(session, ctx, e, &self.live.metrics.targets)
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        upstream::proxy_failed(
            peer,
            session,
            ctx,
            e,
            client_reused,
            &self.live.metrics.targets,
        )
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut pingora::http::RequestHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        upstream::finish_request(session, upstream_request, ctx)
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        self.upstream_answered(upstream_response, ctx)
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<Option<Duration>> {
        response::body_chunk(body, end_of_stream, ctx)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let Some(reject) = errors::reject_for_error(e) else {
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
        if let Err(write_err) = respond::respond_problem(session, ctx, reject, None).await {
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
        body::request_chunk(body.as_ref(), ctx)
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        self.finish(session, e, ctx);
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, _error: &Error) -> bool {
        // Our access log records every failure with its outcome code.
        true
    }
}
