//! How a request ended, as one type. The audit record's decision and
//! reason, the metrics' labels and the access log all derive from it;
//! nothing parses a code string back into a decision.

use crate::monitor::audit::record::Decision;
use crate::stage::problem::{self, Reject};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// No stage decided (the request ended before any did).
    Pending,
    /// Forwarded; the upstream's answer went back, whatever its status.
    Proxied,
    /// Answered by the gateway itself, as asked (a partner rotating its
    /// own key): allowed, with this code.
    Served(&'static str),
    /// Refused by a stage, or not servable: the problem that was sent.
    Refused(Reject),
    /// The client went away before its answer was complete.
    ClientGone,
}

impl Outcome {
    /// The stable code for metrics, logs and the audit trail.
    pub fn code(self) -> &'static str {
        match self {
            Outcome::Pending => "pending",
            Outcome::Proxied => "proxied",
            Outcome::Served(code) => code,
            Outcome::Refused(reject) => reject.code,
            Outcome::ClientGone => "client_gone",
        }
    }

    /// What the audit trail and metrics record; `status` is what the
    /// client was sent (0 if nothing was).
    pub fn decision(self, status: u16) -> Decision {
        match self {
            Outcome::Proxied | Outcome::Served(_) => Decision::Allow,
            Outcome::ClientGone => Decision::Error,
            Outcome::Refused(reject) if reject.status >= 500 => Decision::Error,
            Outcome::Refused(_) => Decision::Deny,
            Outcome::Pending if status >= 500 || status == 0 => Decision::Error,
            Outcome::Pending => Decision::Deny,
        }
    }

    /// The upstream failure this outcome stands for, as the
    /// `portcullis_upstream_errors_total` label.
    pub fn upstream_failure(self) -> Option<&'static str> {
        match self {
            Outcome::Refused(r) if r == problem::UPSTREAM_UNAVAILABLE => Some("unavailable"),
            Outcome::Refused(r) if r == problem::UPSTREAM_TIMEOUT => Some("timeout"),
            Outcome::Refused(r) if r == problem::UPSTREAM_ERROR => Some("error"),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_follow_the_outcome_not_the_status() {
        assert_eq!(Outcome::Proxied.decision(502), Decision::Allow);
        assert_eq!(
            Outcome::Served("key_rotated").decision(200),
            Decision::Allow
        );
        let invalid = Reject::new(401, "key_invalid", "x");
        assert_eq!(Outcome::Refused(invalid).decision(401), Decision::Deny);
        assert_eq!(
            Outcome::Refused(problem::UPSTREAM_UNAVAILABLE).decision(502),
            Decision::Error
        );
        assert_eq!(Outcome::ClientGone.decision(0), Decision::Error);
        assert_eq!(Outcome::Pending.decision(0), Decision::Error);
    }

    #[test]
    fn codes_and_upstream_failures() {
        assert_eq!(Outcome::Served("key_rotated").code(), "key_rotated");
        assert_eq!(
            Outcome::Refused(problem::UPSTREAM_TIMEOUT).upstream_failure(),
            Some("timeout")
        );
        assert_eq!(Outcome::Proxied.upstream_failure(), None);
    }
}
