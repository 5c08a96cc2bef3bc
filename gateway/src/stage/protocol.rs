//! Request-shape checks that run before anything else looks at a request:
//! message framing that two HTTP parsers could read differently (the root
//! of request smuggling), and size limits on the URI and header block.

use crate::stage::problem::{self, Reject};

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_header_bytes: usize,
    pub max_uri_bytes: usize,
}

pub fn check_h1_framing(raw_header: &[u8]) -> Result<(), Reject> {
    let mut content_lengths = 0usize;
    let mut transfer_encodings = 0usize;
    // Every line ends in CRLF. A bare LF is a line end to some parsers and
    // part of a value to others: exactly the disagreement smuggling needs.
    let mut lines = raw_header.split(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        if lines.peek().is_some() && !line.ends_with(b"\r") {
            return Err(problem::AMBIGUOUS_FRAMING);
        }
    }
    // The first line is the request line; header lines follow until the
    // blank line. httparse has already refused obs-fold and bad tokens.
    for line in raw_header.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Err(problem::BAD_REQUEST);
        };
        let name = &line[..colon];
        let value = &line[colon + 1..];
        if name.eq_ignore_ascii_case(b"content-length") {
            // "5, 5" is a duplicate too, just folded into one line.
            content_lengths += 1 + value.iter().filter(|&&b| b == b',').count();
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            transfer_encodings += 1;
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            // A switched protocol would be a tunnel past every later check.
            return Err(problem::UPGRADE_REFUSED);
        }
    }
    if content_lengths > 1 || (content_lengths > 0 && transfer_encodings > 0) {
        return Err(problem::AMBIGUOUS_FRAMING);
    }
    Ok(())
}

pub fn check_sizes(uri_bytes: usize, header_bytes: usize, limits: &Limits) -> Result<(), Reject> {
    if uri_bytes > limits.max_uri_bytes {
        return Err(problem::URI_TOO_LONG);
    }
    if header_bytes > limits.max_header_bytes {
        return Err(problem::HEADERS_TOO_LARGE);
    }
    Ok(())
}

/// Size of a decoded header list as HTTP/2 accounts for it (RFC 9113 §6.5.2),
/// used for HTTP/2 requests where no raw block exists.
pub fn h2_header_list_size<'a>(headers: impl Iterator<Item = (&'a str, &'a [u8])>) -> usize {
    headers
        .map(|(name, value)| name.len() + value.len() + 32)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(headers: &str) -> Vec<u8> {
        format!("POST /x HTTP/1.1\r\nHost: a\r\n{headers}\r\n").into_bytes()
    }

    #[test]
    fn plain_framings_pass() {
        assert!(check_h1_framing(&raw("Content-Length: 5\r\n")).is_ok());
        assert!(check_h1_framing(&raw("Transfer-Encoding: chunked\r\n")).is_ok());
        assert!(check_h1_framing(&raw("")).is_ok());
    }

    #[test]
    fn bare_line_feeds_and_upgrades_are_refused() {
        let bare = b"GET / HTTP/1.1\r\nHost: a\r\nX-Note: a\nX-Partner-Id: b\r\n\r\n";
        assert_eq!(check_h1_framing(bare), Err(problem::AMBIGUOUS_FRAMING));
        let bare_request_line = b"GET / HTTP/1.1\nHost: a\r\n\r\n";
        assert_eq!(
            check_h1_framing(bare_request_line),
            Err(problem::AMBIGUOUS_FRAMING)
        );
        for upgrade in ["Upgrade: h2c", "upgrade: websocket"] {
            assert_eq!(
                check_h1_framing(&raw(upgrade)),
                Err(problem::UPGRADE_REFUSED)
            );
        }
    }

    #[test]
    fn conflicting_framings_are_refused() {
        for h in [
            "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
            "transfer-encoding: chunked\r\ncontent-length: 5\r\n",
            "Content-Length: 5\r\nContent-Length: 5\r\n",
            "Content-Length: 5, 5\r\n",
        ] {
            assert_eq!(
                check_h1_framing(&raw(h)),
                Err(problem::AMBIGUOUS_FRAMING),
                "{h:?}"
            );
        }
    }

    #[test]
    fn body_bytes_after_the_blank_line_are_not_headers() {
        let mut r = raw("Content-Length: 20\r\n");
        r.extend_from_slice(b"Content-Length: 9\r\n");
        assert!(check_h1_framing(&r).is_ok());
    }

    #[test]
    fn size_limits() {
        let limits = Limits {
            max_header_bytes: 100,
            max_uri_bytes: 10,
        };
        assert!(check_sizes(10, 100, &limits).is_ok());
        assert_eq!(check_sizes(11, 1, &limits), Err(problem::URI_TOO_LONG));
        assert_eq!(
            check_sizes(1, 101, &limits),
            Err(problem::HEADERS_TOO_LARGE)
        );
    }
}
