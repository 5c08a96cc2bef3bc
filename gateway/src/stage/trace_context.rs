//! W3C Trace Context (`traceparent`): a well-formed incoming trace is
//! continued with new spans of our own (the request, and the hop to the
//! upstream); otherwise a trace is started. Malformed values are never
//! passed on. Whether the trace is recorded is decided here, once, so the
//! flag the upstream sees and the spans exported agree.

use opentelemetry::trace::{SpanKind, TraceId};
use opentelemetry_sdk::trace::{Sampler, SamplingDecision, ShouldSample};
use rand::Rng;

pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

const SAMPLED: u8 = 0x01;

/// Whose word decides that a trace is recorded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampling {
    /// Nothing is recorded here: the caller's flags pass on unchanged.
    PassThrough,
    /// Spans are exported for `ratio` of the traces, judged on the trace id
    /// as OpenTelemetry's `TraceIdRatioBased` does; a continued trace keeps
    /// its caller's decision instead only when `trust_incoming`.
    Decide { ratio: f64, trust_incoming: bool },
}

/// The trace a request belongs to, and the header to send upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trace {
    /// Lowercase hex, as logs and the audit trail carry it.
    pub trace_id: String,
    pub ids: SpanIds,
    /// Whether this request's spans are exported.
    pub sampled: bool,
    /// `traceparent` for the upstream request: same trace, our upstream span.
    pub upstream_header: String,
    /// Whether the client's trace was continued (its `tracestate` may pass).
    pub continued: bool,
}

/// The ids a request's spans carry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpanIds {
    pub trace: [u8; 16],
    /// The caller's span, when its trace was continued.
    pub parent: Option<[u8; 8]>,
    /// The span covering the whole request at the gateway.
    pub request: [u8; 8],
    /// The hop to the upstream: the parent the upstream's own spans name.
    pub upstream: [u8; 8],
}

/// Stricter than a hex decoder: the spec allows lowercase digits only.
fn lower_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

struct Incoming {
    trace: [u8; 16],
    parent: [u8; 8],
    flags: u8,
}

/// Version 00 only, as the spec allows a receiver to insist on.
fn parse(value: &[u8]) -> Option<Incoming> {
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
    if !valid {
        return None;
    }
    let mut incoming = Incoming {
        trace: [0; 16],
        parent: [0; 8],
        flags: 0,
    };
    hex::decode_to_slice(trace_id, &mut incoming.trace).ok()?;
    hex::decode_to_slice(parent, &mut incoming.parent).ok()?;
    let mut flags_byte = [0u8; 1];
    hex::decode_to_slice(flags, &mut flags_byte).ok()?;
    incoming.flags = flags_byte[0];
    Some(incoming)
}

/// The same answer any OpenTelemetry SDK configured with this ratio gives
/// for this trace id, so a trace is kept or dropped whole across services.
fn ratio_keeps(ratio: f64, trace: [u8; 16]) -> bool {
    let result = Sampler::TraceIdRatioBased(ratio).should_sample(
        None,
        TraceId::from_bytes(trace),
        "request",
        &SpanKind::Server,
        &[],
        &[],
    );
    result.decision == SamplingDecision::RecordAndSample
}

/// Continues `incoming` (exactly one well-formed `traceparent`) or starts
/// a new trace, and decides whether it is recorded.
pub fn continue_or_start(
    mut incoming: impl Iterator<Item = impl AsRef<[u8]>>,
    sampling: Sampling,
) -> Trace {
    let first = incoming.next();
    let single = incoming.next().is_none();
    let parsed = first
        .as_ref()
        .filter(|_| single)
        .and_then(|v| parse(v.as_ref()));
    let mut random = [0u8; 32];
    rand::rng().fill_bytes(&mut random);
    let mut ids = SpanIds::default();
    ids.request.copy_from_slice(&random[16..24]);
    ids.upstream.copy_from_slice(&random[24..32]);
    let (continued, flags_in) = match &parsed {
        Some(p) => {
            ids.trace = p.trace;
            ids.parent = Some(p.parent);
            (true, p.flags)
        }
        None => {
            ids.trace.copy_from_slice(&random[..16]);
            (false, 0)
        }
    };
    let (sampled, flags) = match sampling {
        Sampling::PassThrough => (false, flags_in),
        Sampling::Decide {
            ratio,
            trust_incoming,
        } => {
            let sampled = if continued && trust_incoming {
                flags_in & SAMPLED != 0
            } else {
                ratio_keeps(ratio, ids.trace)
            };
            let flags = (flags_in & !SAMPLED) | if sampled { SAMPLED } else { 0 };
            (sampled, flags)
        }
    };
    let trace_id = hex::encode(ids.trace);
    Trace {
        upstream_header: format!(
            "00-{trace_id}-{}-{}",
            hex::encode(ids.upstream),
            hex::encode([flags])
        ),
        trace_id,
        ids,
        sampled,
        continued,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const UNSAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
    const PASS: Sampling = Sampling::PassThrough;

    fn decide(ratio: f64, trust_incoming: bool) -> Sampling {
        Sampling::Decide {
            ratio,
            trust_incoming,
        }
    }

    #[test]
    fn a_well_formed_trace_is_continued_with_a_new_span() {
        let t = continue_or_start([GOOD].iter(), PASS);
        assert!(t.continued);
        assert_eq!(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.ids.parent, Some(0x00f067aa0ba902b7u64.to_be_bytes()));
        assert_eq!(
            t.upstream_header,
            format!(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-{}-01",
                hex::encode(t.ids.upstream)
            )
        );
        assert!(!t.upstream_header.contains("00f067aa0ba902b7"));
        assert_ne!(t.ids.request, t.ids.upstream);
        // Nothing is recorded here without an exporter.
        assert!(!t.sampled);
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
            let t = continue_or_start([bad].iter(), PASS);
            assert!(!t.continued, "{bad}");
            assert_eq!(t.trace_id.len(), 32);
            assert_eq!(t.ids.parent, None);
            assert!(parse(t.upstream_header.as_bytes()).is_some());
            assert!(t.upstream_header.ends_with("-00"), "{bad}");
        }
        // Two traceparents: which would the upstream believe? Neither.
        assert!(!continue_or_start([GOOD, GOOD].iter(), PASS).continued);
        assert!(!continue_or_start(std::iter::empty::<&str>(), PASS).continued);
    }

    #[test]
    fn an_untrusted_callers_sampled_flag_is_replaced_by_our_decision() {
        let never = continue_or_start([GOOD].iter(), decide(0.0, false));
        assert!(never.continued && !never.sampled);
        assert!(never.upstream_header.ends_with("-00"));
        let always = continue_or_start([UNSAMPLED].iter(), decide(1.0, false));
        assert!(always.sampled);
        assert!(always.upstream_header.ends_with("-01"));
    }

    #[test]
    fn a_trusted_callers_decision_stands_whatever_the_ratio() {
        assert!(continue_or_start([GOOD].iter(), decide(0.0, true)).sampled);
        let kept_out = continue_or_start([UNSAMPLED].iter(), decide(1.0, true));
        assert!(!kept_out.sampled);
        assert!(kept_out.upstream_header.ends_with("-00"));
        // A trace started here has no caller to trust: the ratio decides.
        assert!(continue_or_start(std::iter::empty::<&str>(), decide(1.0, true)).sampled);
        assert!(!continue_or_start(std::iter::empty::<&str>(), decide(0.0, true)).sampled);
    }

    #[test]
    fn the_ratio_keeps_about_its_share_and_the_same_traces_every_time() {
        let kept: Vec<bool> = (0..4000)
            .map(|_| continue_or_start(std::iter::empty::<&str>(), decide(0.25, false)))
            .map(|t| {
                let again = continue_or_start(
                    [format!("00-{}-00f067aa0ba902b7-00", t.trace_id)].iter(),
                    decide(0.25, false),
                );
                assert_eq!(again.sampled, t.sampled, "same trace id, same decision");
                t.sampled
            })
            .collect();
        let share = kept.iter().filter(|k| **k).count() as f64 / kept.len() as f64;
        assert!((0.2..0.3).contains(&share), "kept {share}");
    }

    #[test]
    fn other_flags_pass_beside_our_sampled_bit() {
        let t = continue_or_start(
            ["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03"].iter(),
            decide(0.0, false),
        );
        assert!(t.upstream_header.ends_with("-02"));
    }
}
