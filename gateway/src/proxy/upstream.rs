//! Which upstream a request goes to, and how the connection to it behaves:
//! the route's address, TLS and CA, timeouts and pool.

use std::time::{Duration, Instant};

use pingora::prelude::HttpPeer;
use pingora::protocols::ALPN;
use pingora::proxy::Session;
use pingora::{Error, ErrorType};

use crate::proxy::context::RequestCtx;

/// How long an idle pooled upstream connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(60);

pub(crate) fn peer(ctx: &mut RequestCtx) -> pingora::Result<Box<HttpPeer>> {
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
    peer.options.idle_timeout = Some(POOL_IDLE);
    peer.options.alpn = ALPN::H1;
    peer.group_key = upstream.pool_key;
    if let Some(ca) = &upstream.ca {
        peer.options.ca = Some(ca.clone());
    }
    ctx.upstream_deadline = Some(Instant::now() + t.total);
    Ok(Box::new(peer))
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
