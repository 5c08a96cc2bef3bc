//! W3C Trace Context (`traceparent`): a well-formed incoming trace is
//! continued with a new span for the hop to the upstream; otherwise a
//! trace is started. Malformed values are never passed on.

use rand::Rng;

pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

/// The trace a request belongs to, and the header to send upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trace {
    pub trace_id: String,
    /// `traceparent` for the upstream request: same trace, our own span.
    pub upstream_header: String,
    /// Whether the client's trace was continued (its `tracestate` may pass).
    pub continued: bool,
}

fn random_hex<const N: usize>() -> String {
    let mut bytes = [0u8; N];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Stricter than a hex decoder: the spec allows lowercase digits only.
fn lower_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Version 00 only, as the spec allows a receiver to insist on.
fn parse(value: &[u8]) -> Option<(&str, &str)> {
    let text = std::str::from_utf8(value).ok()?;
    let mut parts = text.trim().split('-');
    let (version, trace_id, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || version != "00" {
        return None;
    }
    let valid = lower_hex(trace_id, 32)
        && lower_hex(parent, 16)
        && lower_hex(flags, 2)
        && trace_id.bytes().any(|b| b != b'0')
        && parent.bytes().any(|b| b != b'0');
    valid.then_some((trace_id, flags))
}

/// Continues `incoming` (exactly one well-formed `traceparent`) or starts
/// a new, unsampled trace.
pub fn continue_or_start(mut incoming: impl Iterator<Item = impl AsRef<[u8]>>) -> Trace {
    let first = incoming.next();
    let single = incoming.next().is_none();
    let parsed = first
        .as_ref()
        .filter(|_| single)
        .and_then(|v| parse(v.as_ref()))
        .map(|(t, f)| (t.to_string(), f.to_string()));
    let span = random_hex::<8>();
    match parsed {
        Some((trace_id, flags)) => Trace {
            upstream_header: format!("00-{trace_id}-{span}-{flags}"),
            trace_id,
            continued: true,
        },
        None => {
            let trace_id = random_hex::<16>();
            Trace {
                upstream_header: format!("00-{trace_id}-{span}-00"),
                trace_id,
                continued: false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_well_formed_trace_is_continued_with_a_new_span() {
        let t = continue_or_start([GOOD].iter());
        assert!(t.continued);
        assert_eq!(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(t
            .upstream_header
            .starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(t.upstream_header.ends_with("-01"));
        assert!(!t.upstream_header.contains("00f067aa0ba902b7"));
    }

    #[test]
    fn anything_else_starts_a_new_trace() {
        for bad in [
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\nx: y",
            "garbage",
        ] {
            let t = continue_or_start([bad].iter());
            assert!(!t.continued, "{bad}");
            assert_eq!(t.trace_id.len(), 32);
            assert!(parse(t.upstream_header.as_bytes()).is_some());
        }
        // Two traceparents: which would the upstream believe? Neither.
        assert!(!continue_or_start([GOOD, GOOD].iter()).continued);
        assert!(!continue_or_start(std::iter::empty::<&str>()).continued);
    }
}
