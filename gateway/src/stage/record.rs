//! How a finished request is written down: its audit record, the path the
//! logs may show, and the time each stage took. The decision comes from the
//! request's [`Outcome`], never from its status alone.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::monitor::audit::{Decision, ObjectNamed, Record, Timings};
use crate::stage::outcome::Outcome;
use crate::stage::problem;

/// Longest path kept in an audit record.
pub const AUDIT_PATH_MAX: usize = 512;

/// When a stage ran: from its first step's start to its last step's end,
/// and the time it was busy in between (a stage may run in several steps,
/// with other stages between them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageTime {
    pub first: Instant,
    pub last: Instant,
    pub busy: Duration,
}

impl StageTime {
    /// A stage run in one step, from `started` until now.
    pub fn since(started: Instant) -> StageTime {
        let now = Instant::now();
        StageTime {
            first: started,
            last: now,
            busy: now.saturating_duration_since(started),
        }
    }
}

/// Time spent in each stage, for the audit record, the histograms and the
/// trace's spans.
#[derive(Debug, Default, Clone, Copy)]
pub struct StageTimes {
    pub auth: Option<StageTime>,
    pub isolation: Option<StageTime>,
    pub rate_limit: Option<StageTime>,
    pub validation: Option<StageTime>,
    pub upstream: Option<StageTime>,
}

impl StageTimes {
    /// The stages as the `stage` label of the duration histogram and the
    /// trace's child spans name them.
    pub fn named(&self) -> [(&'static str, Option<StageTime>); 5] {
        [
            ("auth", self.auth),
            ("isolation", self.isolation),
            ("rate_limit", self.rate_limit),
            ("validation", self.validation),
            ("upstream", self.upstream),
        ]
    }
}

/// Adds a step that started at `started` and ends now to a stage's time.
pub fn add_time(slot: &mut Option<StageTime>, started: Instant) {
    let step = StageTime::since(started);
    *slot = Some(match *slot {
        None => step,
        Some(seen) => StageTime {
            first: seen.first.min(step.first),
            last: seen.last.max(step.last),
            busy: seen.busy + step.busy,
        },
    });
}

fn micros(d: Option<Duration>) -> Option<u64> {
    d.map(|d| d.as_micros().min(u128::from(u64::MAX)) as u64)
}

fn busy_micros(t: Option<StageTime>) -> Option<u64> {
    micros(t.map(|t| t.busy))
}

/// The path for the access log and the audit trail: the canonical path once
/// screening computed it. A target refused for carrying a key is never
/// written anywhere, in any encoding.
pub fn logged_path<'a>(outcome: Outcome, canonical: Option<&'a str>, raw: &'a str) -> &'a str {
    if outcome == Outcome::Refused(problem::KEY_IN_URL) {
        return "[redacted]";
    }
    canonical.unwrap_or(raw)
}

/// Everything known about a request once its answer went out.
pub struct Finished<'a> {
    pub request_id: &'a str,
    pub trace_id: &'a str,
    pub partner: Option<&'a str>,
    pub key_id: Option<&'a str>,
    pub route: &'a str,
    pub method: &'a str,
    /// From [`logged_path`].
    pub path: &'a str,
    /// What the client was sent; 0 if nothing was.
    pub status: u16,
    pub outcome: Outcome,
    pub elapsed: Duration,
    pub stages: StageTimes,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub client_ip: Option<IpAddr>,
    /// The TCP peer, when a trusted proxy named another client.
    pub peer_ip: Option<IpAddr>,
    /// The TLS version as the TLS library names it, and the cipher suite.
    pub tls: Option<(&'a str, &'a str)>,
    pub object: Option<&'a ObjectNamed>,
}

impl Finished<'_> {
    pub fn decision(&self) -> Decision {
        self.outcome.decision(self.status)
    }

    pub fn audit_record(&self) -> Record {
        let mut path = self.path.to_string();
        if path.len() > AUDIT_PATH_MAX {
            let mut cut = AUDIT_PATH_MAX;
            while !path.is_char_boundary(cut) {
                cut -= 1;
            }
            path.truncate(cut);
        }
        let s = &self.stages;
        Record {
            request_id: self.request_id.to_string(),
            trace_id: self.trace_id.to_string(),
            partner: self.partner.map(str::to_string),
            key_id: self.key_id.map(str::to_string),
            route: self.route.to_string(),
            method: self.method.to_string(),
            path,
            status: self.status,
            decision: self.decision(),
            reason: self.outcome.code().to_string(),
            timings_us: Timings {
                total: micros(Some(self.elapsed)).unwrap_or_default(),
                auth: busy_micros(s.auth),
                isolation: busy_micros(s.isolation),
                rate_limit: busy_micros(s.rate_limit),
                validation: busy_micros(s.validation),
                upstream: busy_micros(s.upstream),
            },
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            client_ip: self.client_ip.map(|ip| ip.to_string()),
            peer_ip: self.peer_ip.map(|ip| ip.to_string()),
            // rustls names versions `TLSv1_3`; the record says `TLSv1.3`.
            tls_version: self.tls.map(|(version, _)| version.replace('_', ".")),
            tls_cipher: self.tls.map(|(_, cipher)| cipher.to_string()),
            object: self.object.cloned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stage::problem;

    fn finished(outcome: Outcome, status: u16, path: &str) -> Finished<'_> {
        Finished {
            request_id: "req-1",
            trace_id: "trace",
            partner: Some("acme"),
            key_id: Some("k1"),
            route: "orders",
            method: "GET",
            path,
            status,
            outcome,
            elapsed: Duration::from_millis(3),
            stages: StageTimes {
                auth: Some(StageTime {
                    first: Instant::now(),
                    last: Instant::now(),
                    busy: Duration::from_micros(40),
                }),
                ..StageTimes::default()
            },
            bytes_in: 0,
            bytes_out: 120,
            client_ip: Some(IpAddr::from([192, 0, 2, 7])),
            peer_ip: None,
            tls: Some(("TLSv1_3", "TLS13_AES_128_GCM_SHA256")),
            object: None,
        }
    }

    #[test]
    fn the_record_carries_the_outcome_as_decision_and_reason() {
        let record = finished(Outcome::Served("key_rotated"), 200, "/x").audit_record();
        assert_eq!(record.decision, Decision::Allow);
        assert_eq!(record.reason, "key_rotated");
        let record = finished(Outcome::Refused(problem::ROUTE_NOT_FOUND), 404, "/x").audit_record();
        assert_eq!(record.decision, Decision::Deny);
        assert_eq!(record.reason, "route_not_found");
        assert_eq!(record.tls_version.as_deref(), Some("TLSv1.3"));
        assert_eq!(record.timings_us.total, 3000);
        assert_eq!(record.timings_us.auth, Some(40));
        assert_eq!(record.timings_us.upstream, None);
        assert_eq!(record.client_ip.as_deref(), Some("192.0.2.7"));
    }

    #[test]
    fn long_paths_are_cut_on_a_character_boundary() {
        let long = format!("/{}", "é".repeat(400));
        let record = finished(Outcome::Proxied, 200, &long).audit_record();
        assert!(record.path.len() <= AUDIT_PATH_MAX);
        assert!(record.path.len() > AUDIT_PATH_MAX - 2);
    }

    #[test]
    fn a_target_carrying_a_key_is_never_logged() {
        let refused = Outcome::Refused(problem::KEY_IN_URL);
        assert_eq!(
            logged_path(refused, Some("/a"), "/a?k=pk_live"),
            "[redacted]"
        );
        assert_eq!(logged_path(Outcome::Proxied, Some("/a"), "/./a"), "/a");
        assert_eq!(logged_path(Outcome::Pending, None, "/raw"), "/raw");
    }

    #[test]
    fn a_stage_in_two_steps_is_busy_for_their_sum_and_spans_both() {
        let mut slot = None;
        let first = Instant::now();
        add_time(&mut slot, first);
        let one = slot.map(|t| t.busy).unwrap_or_default();
        let second = Instant::now();
        add_time(&mut slot, second);
        let Some(t) = slot else {
            panic!("no time recorded");
        };
        assert_eq!(t.first, first);
        assert!(t.last >= second);
        assert!(t.busy >= one);
        assert!(t.busy <= t.last - t.first);
    }
}
