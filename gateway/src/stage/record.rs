//! How a finished request is written down: its audit record, the path the
//! logs may show, and the time each stage took. The decision comes from the
//! request's [`Outcome`], never from its status alone.

use std::net::IpAddr;
use std::time::Duration;

use crate::monitor::audit::{Decision, ObjectNamed, Record, Timings};
use crate::stage::outcome::Outcome;
use crate::stage::problem;

/// Longest path kept in an audit record.
pub const AUDIT_PATH_MAX: usize = 512;

/// Time spent in each stage, for the audit record and the histograms.
#[derive(Debug, Default, Clone, Copy)]
pub struct StageTimes {
    pub auth: Option<Duration>,
    pub isolation: Option<Duration>,
    pub rate_limit: Option<Duration>,
    pub validation: Option<Duration>,
    pub upstream: Option<Duration>,
}

impl StageTimes {
    /// The stages as the `stage` label of the duration histogram names them.
    pub fn named(&self) -> [(&'static str, Option<Duration>); 5] {
        [
            ("auth", self.auth),
            ("isolation", self.isolation),
            ("rate_limit", self.rate_limit),
            ("validation", self.validation),
            ("upstream", self.upstream),
        ]
    }
}

/// Adds `more` to a stage's time (a stage may run in several steps).
pub fn add_time(slot: &mut Option<Duration>, more: Duration) {
    *slot = Some(slot.unwrap_or_default() + more);
}

fn micros(d: Option<Duration>) -> Option<u64> {
    d.map(|d| d.as_micros().min(u128::from(u64::MAX)) as u64)
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
                auth: micros(s.auth),
                isolation: micros(s.isolation),
                rate_limit: micros(s.rate_limit),
                validation: micros(s.validation),
                upstream: micros(s.upstream),
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
                auth: Some(Duration::from_micros(40)),
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
    fn stage_times_add_up() {
        let mut slot = None;
        add_time(&mut slot, Duration::from_micros(5));
        add_time(&mut slot, Duration::from_micros(7));
        assert_eq!(slot, Some(Duration::from_micros(12)));
    }
}
