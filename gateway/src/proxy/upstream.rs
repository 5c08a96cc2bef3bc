//! Which upstream a request goes to, and how the connection to it behaves:
//! the target its balancer picks, TLS and CA, timeouts and pool; and what
//! a failure means for the target and for a retry.

use std::time::{Duration, Instant};

use pingora::prelude::HttpPeer;
use pingora::protocols::ALPN;
use pingora::proxy::Session;
use pingora::{Error, ErrorSource, ErrorType};

use crate::balance::stats::TargetStats;
use crate::proxy::context::RequestCtx;

/// How long an idle pooled upstream connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(60);

pub(crate) fn peer(ctx: &mut RequestCtx, stats: &TargetStats) -> pingora::Result<Box<HttpPeer>> {
    let Some(route) = ctx.route.clone() else {
        return Err(Error::explain(
            ErrorType::InternalError,
            "no route selected",
        ));
    };
    let upstream = &route.upstream;
    let balancer = &upstream.balancer;
    let partner = ctx.partner.as_deref().unwrap_or_default();
    // The previous attempt's target is done with before the next is picked.
    ctx.target = None;
    let Some(pick) = balancer.pick(partner, &ctx.tried) else {
        return Err(Error::create(
            ErrorType::ConnectNoRoute,
            ErrorSource::Upstream,
            Some("every target of the upstream was tried".into()),
            None,
        ));
    };
    let target = &pick.lease.target;
    target
        .requests
        .get_or_init(|| {
            stats
                .requests
                .with_label_values(&[balancer.upstream.as_str(), target.label.as_str()])
        })
        .inc();
    if pick.degraded {
        stats
            .no_healthy_target
            .with_label_values(&[balancer.upstream.as_str()])
            .inc();
    }
    let t = route.timeouts;
    let mut peer = HttpPeer::new(target.addr, upstream.tls, upstream.server_name.clone());
    peer.options.connection_timeout = Some(t.connect);
    peer.options.total_connection_timeout = Some(t.connect);
    peer.options.read_timeout = Some(t.read.min(t.total));
    peer.options.write_timeout = Some(t.write.min(t.total));
    peer.options.idle_timeout = Some(POOL_IDLE);
    peer.options.alpn = ALPN::H1;
    peer.group_key = upstream.pool_key;
    if let Some(ca) = &upstream.ca {
        peer.options.ca = Some(ca.clone());
    }
    ctx.tried.push(target.addr);
    ctx.upstream.addr = Some(target.addr);
    ctx.upstream.attempts = ctx.upstream.attempts.saturating_add(1);
    ctx.target = Some(pick.lease);
    // One deadline for the whole exchange, retries included.
    ctx.upstream_deadline
        .get_or_insert_with(|| Instant::now() + t.total);
    Ok(Box::new(peer))
}

/// The connection (or its TLS handshake) failed, so nothing was sent: the
/// target's failure counts, and an idempotent request may go to another.
pub(crate) fn connect_failed(
    session: &Session,
    ctx: &mut RequestCtx,
    mut e: Box<Error>,
    stats: &TargetStats,
) -> Box<Error> {
    let (Some(route), Some(lease)) = (ctx.route.as_ref(), ctx.target.as_ref()) else {
        return e;
    };
    let balancer = &route.upstream.balancer;
    let kind = match e.etype() {
        ErrorType::ConnectTimedout | ErrorType::TLSHandshakeTimedout => "timeout",
        _ => "connect",
    };
    balancer.failed(lease, kind, stats);
    let retry = session.req_header().method.is_idempotent()
        && balancer.can_retry(&ctx.tried)
        && ctx
            .upstream_deadline
            .is_none_or(|deadline| Instant::now() < deadline);
    e.set_retry(retry);
    if retry {
        stats
            .retries
            .with_label_values(&[balancer.upstream.as_str()])
            .inc();
    }
    e
}

/// The exchange failed after the connection was made. pingora's rule
/// stands (retry an idempotent request only when a pooled connection had
/// gone stale, which says nothing about the target); a fresh connection
/// failing is the target's failure.
pub(crate) fn proxy_failed(
    peer: &HttpPeer,
    session: &Session,
    ctx: &mut RequestCtx,
    e: Box<Error>,
    client_reused: bool,
    stats: &TargetStats,
) -> Box<Error> {
    let mut e = e.more_context(format!("Peer: {peer}"));
    if !session.req_header().method.is_idempotent() || session.as_ref().retry_buffer_truncated() {
        e.set_retry(false);
    } else {
        e.retry.decide_reuse(client_reused);
    }
    if e.retry() {
        // The same target may be picked again: it was the pooled
        // connection, not the target, that failed.
        ctx.tried.pop();
    } else if *e.esource() == ErrorSource::Upstream && !client_reused {
        if let (Some(route), Some(lease)) = (ctx.route.as_ref(), ctx.target.as_ref()) {
            let kind = match e.etype() {
                ErrorType::ReadTimedout | ErrorType::WriteTimedout => "timeout",
                _ => "broken",
            };
            route.upstream.balancer.failed(lease, kind, stats);
        }
    }
    e
}

/// The target answered: a 5xx counts against it, anything else clears
/// its run of failures.
pub(crate) fn answered(ctx: &RequestCtx, status: u16, stats: &TargetStats) {
    if let (Some(route), Some(lease)) = (ctx.route.as_ref(), ctx.target.as_ref()) {
        let balancer = &route.upstream.balancer;
        if (500..600).contains(&status) {
            balancer.failed(lease, "status_5xx", stats);
        } else {
            balancer.succeeded(lease);
        }
    }
}

/// The upstream request's last touches: the Host it expects, and no
/// compression when the gateway must read the answer.
pub(crate) fn finish_request(
    session: &Session,
    upstream_request: &mut pingora::http::RequestHeader,
    ctx: &mut RequestCtx,
) -> pingora::Result<()> {
    if let Some(route) = ctx.route.as_ref() {
        if route.holds_response() {
            upstream_request.insert_header(http::header::ACCEPT_ENCODING, "identity")?;
        }
        if !route.upstream.preserve_host {
            upstream_request
                .insert_header(http::header::HOST, route.upstream.authority.as_str())?;
        } else if session.is_http2() {
            // HTTP/2 carries the host as :authority; HTTP/1 upstreams need Host.
            if let Some(authority) = session.req_header().uri.authority() {
                upstream_request.insert_header(http::header::HOST, authority.as_str())?;
            }
        }
    }
    ctx.upstream_sent = Some(Instant::now());
    Ok(())
}
