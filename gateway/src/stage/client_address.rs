//! Which address the request came from. Behind a load balancer or CDN the
//! TCP peer is the balancer, and every stage that decides on the client's
//! address (partner `allow_ips`, brute-force blocking, the unknown-key
//! limit, the audit trail) would see one address for everybody. So a peer
//! listed in `http.trusted_proxies` is believed about the client, through
//! one header, and nobody else is:
//!
//! - `x-forwarded-for` is read from the right: each proxy appends the
//!   address it saw, so entries left of the last trusted proxy's entry are
//!   whatever the client wrote. The client is the rightmost entry that is
//!   not itself a trusted proxy (the entry the outermost trusted proxy
//!   appended); when every entry is trusted, the leftmost.
//! - any other header (`cf-connecting-ip`, `true-client-ip`, `x-real-ip`)
//!   must carry exactly one address, once.
//!
//! Our own parser, on purpose: this is the rule that decides who gets
//! blocked, and it must refuse anything with two readings. An entry that
//! is not an address (`unknown`, an obfuscated id, a host name) where the
//! client's should be, a trusted peer that sends no header, or a single
//! header given twice is refused (400 `client_address_invalid`) rather than
//! falling back to the balancer's address, which would block every partner
//! behind it at once.

use std::net::{IpAddr, SocketAddr};

use http::header::{HeaderMap, HeaderName};
use ipnet::IpNet;

use crate::stage::problem::{self, Reject};

/// The compiled `http.trusted_proxies` and `http.client_ip_header`.
#[derive(Debug, Clone)]
pub struct ClientAddressRule {
    trusted: Vec<IpNet>,
    header: HeaderName,
    /// `x-forwarded-for`: a list appended to by each proxy.
    list: bool,
}

impl ClientAddressRule {
    pub fn new(trusted: Vec<IpNet>, header: HeaderName) -> Self {
        let list = header == "x-forwarded-for";
        ClientAddressRule {
            trusted,
            header,
            list,
        }
    }

    /// No proxy is trusted: the TCP peer is the client.
    pub fn peer_only() -> Self {
        ClientAddressRule::new(Vec::new(), HeaderName::from_static("x-forwarded-for"))
    }

    pub fn header(&self) -> &HeaderName {
        &self.header
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }
}

/// The client's address for `peer`'s request.
pub fn resolve(
    rule: &ClientAddressRule,
    peer: IpAddr,
    headers: &HeaderMap,
) -> Result<IpAddr, Reject> {
    let peer = canonical(peer);
    if !rule.trusts(peer) {
        return Ok(peer);
    }
    let mut values = headers.get_all(&rule.header).iter();
    let Some(first) = values.next() else {
        return Err(problem::CLIENT_ADDRESS_INVALID);
    };
    if !rule.list {
        return match (values.next(), first.to_str().ok().and_then(address)) {
            (None, Some(ip)) => Ok(ip),
            _ => Err(problem::CLIENT_ADDRESS_INVALID),
        };
    }
    // Header lines of one name join, in order, into one list.
    let mut joined = Vec::new();
    for value in headers.get_all(&rule.header) {
        let text = value
            .to_str()
            .map_err(|_| problem::CLIENT_ADDRESS_INVALID)?;
        joined.extend(text.split(','));
    }
    let mut leftmost = None;
    for entry in joined.iter().rev() {
        let ip = address(entry).ok_or(problem::CLIENT_ADDRESS_INVALID)?;
        if !rule.trusts(ip) {
            return Ok(ip);
        }
        leftmost = Some(ip);
    }
    leftmost.ok_or(problem::CLIENT_ADDRESS_INVALID)
}

/// One entry: an address, optionally with a port (`192.0.2.1:443`,
/// `[2001:db8::1]:443`, as some balancers write it), spaces around it.
fn address(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim_matches([' ', '\t']);
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(canonical)
}

/// IPv4 clients on a dual-stack socket arrive as `::ffff:a.b.c.d`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn rule(header: &'static str) -> ClientAddressRule {
        ClientAddressRule::new(
            vec![
                "10.0.0.0/8".parse().unwrap(),
                "2001:db8::/32".parse().unwrap(),
            ],
            HeaderName::from_static(header),
        )
    }

    fn headers(name: &'static str, values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(name, v.parse().unwrap());
        }
        map
    }

    fn xff(peer: &str, values: &[&str]) -> Result<IpAddr, Reject> {
        resolve(
            &rule("x-forwarded-for"),
            ip(peer),
            &headers("x-forwarded-for", values),
        )
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        assert_eq!(xff("203.0.113.9", &["198.51.100.1"]), Ok(ip("203.0.113.9")));
        assert_eq!(
            xff("203.0.113.9", &["not an address"]),
            Ok(ip("203.0.113.9"))
        );
        let none = ClientAddressRule::peer_only();
        let spoof = headers("x-forwarded-for", &["10.1.1.1"]);
        assert_eq!(resolve(&none, ip("10.0.0.5"), &spoof), Ok(ip("10.0.0.5")));
    }

    #[test]
    fn the_rightmost_untrusted_entry_is_the_client() {
        // The client wrote the first two; the balancer appended the third.
        assert_eq!(
            xff("10.0.0.5", &["1.1.1.1, 2.2.2.2, 198.51.100.7"]),
            Ok(ip("198.51.100.7"))
        );
        // Two trusted hops: the inner one's entry is skipped.
        assert_eq!(
            xff("10.0.0.5", &["6.6.6.6, 198.51.100.7, 10.2.3.4"]),
            Ok(ip("198.51.100.7"))
        );
        // Repeated header lines are one list, in order.
        assert_eq!(
            xff("10.0.0.5", &["6.6.6.6", "198.51.100.7,10.2.3.4"]),
            Ok(ip("198.51.100.7"))
        );
        // All trusted: an internal client; the leftmost is the origin.
        assert_eq!(xff("10.0.0.5", &["10.9.9.9, 10.2.3.4"]), Ok(ip("10.9.9.9")));
    }

    #[test]
    fn garbage_left_of_the_client_is_never_read() {
        assert_eq!(
            xff("10.0.0.5", &["unknown, <script>, 198.51.100.7"]),
            Ok(ip("198.51.100.7"))
        );
    }

    #[test]
    fn what_cannot_be_read_as_one_address_is_refused() {
        for values in [
            &[][..],
            &[""],
            &["198.51.100.7, "],
            &["unknown"],
            &["example.com"],
            &["198.51.100.7, 10.0.0.1, _hidden"],
            &["198.51.100.7 10.0.0.1"],
            &["0x7f.1"],
        ] {
            assert_eq!(
                xff("10.0.0.5", values),
                Err(problem::CLIENT_ADDRESS_INVALID),
                "{values:?}"
            );
        }
    }

    #[test]
    fn ports_and_mapped_addresses_are_read_as_the_address() {
        assert_eq!(
            xff("10.0.0.5", &["198.51.100.7:5123"]),
            Ok(ip("198.51.100.7"))
        );
        assert_eq!(
            xff("10.0.0.5", &["[2001:dead::1]:443"]),
            Ok(ip("2001:dead::1"))
        );
        assert_eq!(
            xff("::ffff:10.0.0.5", &["::ffff:198.51.100.7"]),
            Ok(ip("198.51.100.7"))
        );
        // A mapped trusted address is still trusted.
        assert_eq!(
            xff("10.0.0.5", &["198.51.100.7, ::ffff:10.3.3.3"]),
            Ok(ip("198.51.100.7"))
        );
    }

    #[test]
    fn a_single_address_header_must_hold_one_address_once() {
        let r = rule("cf-connecting-ip");
        let peer = ip("10.0.0.5");
        let one = headers("cf-connecting-ip", &["198.51.100.7"]);
        assert_eq!(resolve(&r, peer, &one), Ok(ip("198.51.100.7")));
        for values in [
            &["198.51.100.7, 1.1.1.1"][..],
            &["198.51.100.7", "1.1.1.1"],
            &[],
        ] {
            let h = headers("cf-connecting-ip", values);
            assert_eq!(
                resolve(&r, peer, &h),
                Err(problem::CLIENT_ADDRESS_INVALID),
                "{values:?}"
            );
        }
        // From an untrusted peer the header means nothing.
        assert_eq!(resolve(&r, ip("203.0.113.9"), &one), Ok(ip("203.0.113.9")));
    }
}
