//! The PROXY protocol on the HTTPS listener (`listen.proxy_protocol`): a
//! layer-4 balancer that cannot add an `X-Forwarded-For` (it never sees
//! inside TLS) writes the client's address before the TLS handshake. The
//! header is read here, before TLS, and only from the configured
//! networks; everything else about the connection is unchanged:
//!
//! - a peer in `from` must send a header (v1 or v2), else the connection
//!   is closed: a balancer that lost its setting would otherwise make every
//!   client look like the balancer;
//! - a peer outside `from` must not send one, else the connection is
//!   closed: anybody could write any address;
//! - a header must arrive within `http.header_timeout`, like the request
//!   header block that follows.
//!
//! The address the header names becomes the connection's peer address, so
//! every stage sees it as the TCP peer; `http.trusted_proxies` can then
//! still apply to it (a CDN in front of the balancer). The balancer's own
//! address goes to the log of refused connections only.

mod header;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ipnet::IpNet;
use pingora::listeners::PreTlsProcess;
use pingora::protocols::l4::socket::SocketAddr as PeerAddr;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{GetSocketDigest, SocketDigest};
use pingora::{Error, ErrorType, Result};
use prometheus::IntCounterVec;
use tokio::io::AsyncReadExt;

pub use header::{parse, Parsed, Said};

/// Reads and checks the header of each new connection.
pub struct ProxyProtocol {
    from: Vec<IpNet>,
    timeout: Duration,
    /// Connections refused, by reason (`missing`, `untrusted`, `invalid`,
    /// `timeout`).
    refused: IntCounterVec,
}

impl ProxyProtocol {
    pub fn new(from: Vec<IpNet>, timeout: Duration, refused: IntCounterVec) -> Arc<Self> {
        Arc::new(ProxyProtocol {
            from,
            timeout,
            refused,
        })
    }

    fn refuse(&self, reason: &'static str, peer: Option<std::net::IpAddr>) -> Box<Error> {
        self.refused.with_label_values(&[reason]).inc();
        tracing::warn!(
            target: "portcullis::transport",
            peer = ?peer,
            reason,
            "PROXY protocol: connection refused"
        );
        Error::explain(ErrorType::AcceptError, "PROXY protocol header refused")
    }
}

/// Reads until the bytes at the start of the stream decide: a header, no
/// header, or garbage. Bytes past the header are handed back to the stream.
async fn read_header(stream: &mut L4Stream) -> std::io::Result<(Parsed, Vec<u8>)> {
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        match parse(&buf) {
            Parsed::Incomplete => continue,
            decided => return Ok((decided, buf)),
        }
    }
}

#[async_trait]
impl PreTlsProcess for ProxyProtocol {
    async fn process(&self, stream: &mut L4Stream) -> Result<()> {
        let peer = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        let trusted = peer.is_some_and(|ip| {
            let ip = match ip {
                std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
                v4 => v4,
            };
            self.from.iter().any(|net| net.contains(&ip))
        });
        let (parsed, buf) = match tokio::time::timeout(self.timeout, read_header(stream)).await {
            Ok(Ok(read)) => read,
            Ok(Err(_)) => return Err(self.refuse("closed", peer)),
            Err(_) => return Err(self.refuse("timeout", peer)),
        };
        let (said, len) = match (parsed, trusted) {
            (Parsed::Header { said, len }, true) => (said, len),
            (Parsed::Header { .. } | Parsed::Invalid(_), false) => {
                return Err(self.refuse("untrusted", peer))
            }
            (Parsed::Absent, false) => (Said::Local, 0),
            (Parsed::Absent, true) => return Err(self.refuse("missing", peer)),
            (Parsed::Invalid(why), true) => {
                tracing::debug!(target: "portcullis::transport", why, "PROXY protocol header invalid");
                return Err(self.refuse("invalid", peer));
            }
            (Parsed::Incomplete, _) => return Err(self.refuse("invalid", peer)),
        };
        // The TLS handshake reads what came after the header.
        if buf.len() > len {
            stream.rewind(&buf[len..]);
        }
        if let Said::Client(client) = said {
            use std::os::unix::io::AsRawFd;
            let digest = SocketDigest::from_raw_fd(stream.as_raw_fd());
            let _ = digest.peer_addr.set(Some(PeerAddr::Inet(client)));
            stream.set_socket_digest(digest);
        }
        Ok(())
    }
}
