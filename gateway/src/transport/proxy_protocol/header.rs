//! The PROXY protocol header (HAProxy's specification, versions 1 and 2)
//! that a load balancer writes before the client's first byte, naming the
//! client's address. Our own parser, on purpose: the address it yields is
//! the one partner `allow_ips`, blocking and the audit trail judge, so it
//! accepts exactly the specification's forms and refuses the rest
//! (versions other than 2, UDP and Unix-socket families, a v1 line with
//! extra spaces or a port with a sign) instead of guessing.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The version 2 signature; also what tells a v2 header from TLS.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// A v1 line is at most 107 bytes, CRLF included.
const V1_MAX: usize = 107;
/// Longest v2 address block we accept (addresses plus TLVs). The
/// specification allows 65535; balancers send well under 1 KiB.
const V2_MAX_BLOCK: usize = 4096;

/// What a complete header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Said {
    /// The connection carries a proxied client: its source address.
    Client(SocketAddr),
    /// The balancer speaks for itself (v2 LOCAL, v1 UNKNOWN: health
    /// checks): the TCP peer is the client.
    Local,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// A header of `len` bytes.
    Header { said: Said, len: usize },
    /// More bytes are needed to decide.
    Incomplete,
    /// The bytes do not start with a PROXY header (for example, a TLS
    /// ClientHello).
    Absent,
    /// They start like one but are not a valid header.
    Invalid(&'static str),
}

/// Reads a header from the start of `buf`.
pub fn parse(buf: &[u8]) -> Parsed {
    let v1 = b"PROXY ";
    // A prefix of the signature may still become a header.
    let prefix = |sig: &[u8]| buf.starts_with(sig) || sig.starts_with(buf);
    if prefix(v1) {
        if buf.len() < v1.len() {
            return Parsed::Incomplete;
        }
        return parse_v1(buf);
    }
    if prefix(&V2_SIGNATURE) {
        if buf.len() < 16 {
            return Parsed::Incomplete;
        }
        return parse_v2(buf);
    }
    Parsed::Absent
}

fn parse_v1(buf: &[u8]) -> Parsed {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() >= V1_MAX {
            Parsed::Invalid("v1 line longer than 107 bytes")
        } else {
            Parsed::Incomplete
        };
    };
    let Ok(line) = std::str::from_utf8(&buf[..end]) else {
        return Parsed::Invalid("v1 line is not ASCII");
    };
    let len = end + 2;
    let fields: Vec<&str> = line.split(' ').collect();
    match fields.as_slice() {
        ["PROXY", "UNKNOWN", ..] => Parsed::Header {
            said: Said::Local,
            len,
        },
        ["PROXY", family @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let ip = match (*family, src.parse::<IpAddr>()) {
                ("TCP4", Ok(ip @ IpAddr::V4(_))) | ("TCP6", Ok(ip @ IpAddr::V6(_))) => ip,
                _ => return Parsed::Invalid("v1 source address does not match its family"),
            };
            if dst.parse::<IpAddr>().map(|d| d.is_ipv4()) != Ok(ip.is_ipv4()) {
                return Parsed::Invalid("v1 destination address does not match its family");
            }
            match (port(sport), port(dport)) {
                (Some(p), Some(_)) => Parsed::Header {
                    said: Said::Client(SocketAddr::new(ip, p)),
                    len,
                },
                _ => Parsed::Invalid("v1 port is not a number from 0 to 65535"),
            }
        }
        _ => Parsed::Invalid("v1 line is not PROXY TCP4|TCP6|UNKNOWN with four fields"),
    }
}

/// A decimal port, digits only, no leading zero (but `0` itself).
fn port(text: &str) -> Option<u16> {
    let digits = !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit());
    if !digits || (text.len() > 1 && text.starts_with('0')) {
        return None;
    }
    text.parse().ok()
}

fn parse_v2(buf: &[u8]) -> Parsed {
    let (version, command) = (buf[12] >> 4, buf[12] & 0x0f);
    if version != 2 {
        return Parsed::Invalid("v2 header with a version other than 2");
    }
    let block = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if block > V2_MAX_BLOCK {
        return Parsed::Invalid("v2 address block longer than 4096 bytes");
    }
    let len = 16 + block;
    if buf.len() < len {
        return Parsed::Incomplete;
    }
    let addresses = &buf[16..len];
    match command {
        0x0 => Parsed::Header {
            said: Said::Local,
            len,
        },
        0x1 => match buf[13] {
            // TCP over IPv4: source, destination, source port, destination port.
            0x11 if addresses.len() >= 12 => {
                let ip = Ipv4Addr::new(addresses[0], addresses[1], addresses[2], addresses[3]);
                let port = u16::from_be_bytes([addresses[8], addresses[9]]);
                Parsed::Header {
                    said: Said::Client(SocketAddr::new(IpAddr::V4(ip), port)),
                    len,
                }
            }
            0x21 if addresses.len() >= 36 => {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&addresses[..16]);
                let port = u16::from_be_bytes([addresses[32], addresses[33]]);
                Parsed::Header {
                    said: Said::Client(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(octets)), port)),
                    len,
                }
            }
            0x11 | 0x21 => Parsed::Invalid("v2 address block shorter than its family's addresses"),
            _ => Parsed::Invalid("v2 header for a family other than TCP over IPv4 or IPv6"),
        },
        _ => Parsed::Invalid("v2 header with a command other than LOCAL or PROXY"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(s: &str) -> Said {
        Said::Client(s.parse().unwrap())
    }

    fn v2(command: u8, family: u8, block: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(0x20 | command);
        out.push(family);
        out.extend_from_slice(&(block.len() as u16).to_be_bytes());
        out.extend_from_slice(block);
        out
    }

    #[test]
    fn v1_lines_name_the_client() {
        let line = b"PROXY TCP4 198.51.100.7 203.0.113.1 56324 443\r\n\x16\x03\x01";
        assert_eq!(
            parse(line),
            Parsed::Header {
                said: client("198.51.100.7:56324"),
                len: line.len() - 3
            }
        );
        let line = b"PROXY TCP6 2001:db8::7 2001:db8::1 1 443\r\n";
        assert_eq!(
            parse(line),
            Parsed::Header {
                said: client("[2001:db8::7]:1"),
                len: line.len()
            }
        );
        assert!(matches!(
            parse(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"),
            Parsed::Header {
                said: Said::Local,
                ..
            }
        ));
    }

    #[test]
    fn v1_accepts_only_the_specified_form() {
        for line in [
            &b"PROXY TCP4 198.51.100.7  203.0.113.1 1 443\r\n"[..],
            b"PROXY TCP4 198.51.100.7 203.0.113.1 +1 443\r\n",
            b"PROXY TCP4 198.51.100.7 203.0.113.1 01 443\r\n",
            b"PROXY TCP4 198.51.100.7 203.0.113.1 65536 443\r\n",
            b"PROXY TCP4 2001:db8::7 203.0.113.1 1 443\r\n",
            b"PROXY TCP6 2001:db8::7 203.0.113.1 1 443\r\n",
            b"PROXY TCP4 198.051.100.7 203.0.113.1 1 443\r\n",
            b"PROXY UDP4 198.51.100.7 203.0.113.1 1 443\r\n",
            b"PROXY TCP4 198.51.100.7 203.0.113.1 1 443 extra\r\n",
        ] {
            assert!(
                matches!(parse(line), Parsed::Invalid(_)),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        let endless = [b"PROXY TCP4 ".as_slice(), &[b'1'; 120]].concat();
        assert!(matches!(parse(&endless), Parsed::Invalid(_)));
    }

    #[test]
    fn v2_headers_name_the_client_and_skip_tlvs() {
        let mut block = vec![198, 51, 100, 7, 203, 0, 113, 1];
        block.extend_from_slice(&56324u16.to_be_bytes());
        block.extend_from_slice(&443u16.to_be_bytes());
        block.extend_from_slice(&[0x04, 0x00, 0x02, b'i', b'd']); // a TLV
        let mut header = v2(1, 0x11, &block);
        let len = header.len();
        header.extend_from_slice(b"\x16\x03\x01");
        assert_eq!(
            parse(&header),
            Parsed::Header {
                said: client("198.51.100.7:56324"),
                len
            }
        );
        let mut block = "2001:db8::7".parse::<Ipv6Addr>().unwrap().octets().to_vec();
        block.extend_from_slice(&[0; 16]);
        block.extend_from_slice(&[0, 9, 1, 187]);
        assert!(matches!(
            parse(&v2(1, 0x21, &block)),
            Parsed::Header { said, .. } if said == client("[2001:db8::7]:9")
        ));
        assert!(matches!(
            parse(&v2(0, 0x00, &[])),
            Parsed::Header {
                said: Said::Local,
                len: 16
            }
        ));
    }

    #[test]
    fn v2_refuses_what_it_cannot_read_as_one_tcp_client() {
        let ipv4 = [198, 51, 100, 7, 203, 0, 113, 1, 0, 1, 1, 187];
        for (header, why) in [
            (v2(1, 0x12, &ipv4), "UDP"),
            (v2(1, 0x31, &[0; 216]), "unix"),
            (v2(1, 0x11, &ipv4[..8]), "short"),
            (v2(2, 0x11, &ipv4), "command"),
            (
                {
                    let mut h = v2(1, 0x11, &ipv4);
                    h[12] = 0x11;
                    h
                },
                "version",
            ),
        ] {
            assert!(matches!(parse(&header), Parsed::Invalid(_)), "{why}");
        }
        let mut huge = v2(1, 0x11, &ipv4);
        huge[14..16].copy_from_slice(&5000u16.to_be_bytes());
        assert!(matches!(parse(&huge), Parsed::Invalid(_)));
    }

    #[test]
    fn partial_headers_wait_and_tls_is_not_a_header() {
        assert_eq!(parse(b"PRO"), Parsed::Incomplete);
        assert_eq!(parse(b"PROXY TCP4 198.51"), Parsed::Incomplete);
        assert_eq!(parse(&V2_SIGNATURE[..5]), Parsed::Incomplete);
        assert_eq!(parse(&v2(1, 0x11, &[0; 12])[..20]), Parsed::Incomplete);
        assert_eq!(parse(b"\x16\x03\x01\x02\x00"), Parsed::Absent);
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Parsed::Absent);
        assert_eq!(parse(b"PRI * HTTP/2.0"), Parsed::Absent);
    }
}
