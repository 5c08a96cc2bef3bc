//! Readiness: whether this node should be sent traffic. `/healthz` says
//! the process answers (liveness); `/readyz` says a request sent now would
//! be served as the standard asks. A load balancer or orchestrator that
//! sees 503 sends the traffic elsewhere, so each check names a state in
//! which this node would refuse or mishandle requests:
//!
//! - **draining**: a shutdown or upgrade signal arrived; the listeners close
//!   soon, so new traffic belongs on another node;
//! - **key store**: a node of a shared store whose lease has lapsed (or was
//!   never taken) answers every request 503 `key_store_unavailable`;
//! - **audit**: the audit writer cannot write, so requests would go
//!   unrecorded.
//!
//! A configuration that fails to load at start never gets this far (the
//! process exits with the error); a reload that fails keeps the last good
//! plan serving, so it is reported in the body but does not make the node
//! unready.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::keys::verify::Verifier;
use crate::monitor::Monitor;
use crate::server::reload::Live;

/// Set once a shutdown or upgrade signal arrives; never cleared (the
/// process is on its way out).
#[derive(Clone, Default)]
pub struct Draining(Arc<AtomicBool>);

impl Draining {
    pub fn start(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn started(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// What `/readyz` reads.
pub struct Readiness {
    pub draining: Draining,
    pub keys: Arc<Verifier>,
    pub monitor: Arc<Monitor>,
}

/// One evaluation of every check.
#[derive(Debug, PartialEq, Eq)]
pub struct Report {
    pub draining: bool,
    pub key_store_trusted: bool,
    pub audit_writing: bool,
}

impl Report {
    pub fn ready(&self) -> bool {
        !self.draining && self.key_store_trusted && self.audit_writing
    }

    /// The body of `/readyz`: the verdict, then each check by name, so an
    /// operator reading a 503 sees which one failed.
    pub fn to_json(&self, live: &Live) -> serde_json::Value {
        let status = match (self.ready(), self.draining) {
            (true, _) => "ready",
            (false, true) => "draining",
            (false, false) => "not_ready",
        };
        let ok = |good: bool, bad: &'static str| if good { "ok" } else { bad };
        serde_json::json!({
            "status": status,
            "checks": {
                "draining": self.draining,
                "key_store": ok(self.key_store_trusted, "lease_lost"),
                "audit": ok(self.audit_writing, "not_writing"),
                "config": if live.last_reload_failed() { "last_reload_failed" } else { "ok" },
            },
            "config_generation": live.generation(),
            "routes": live.plan().routes,
        })
    }
}

impl Readiness {
    pub fn report(&self) -> Report {
        Report {
            draining: self.draining.started(),
            key_store_trusted: self.keys.node().cache_trusted(),
            audit_writing: self.monitor.audit.writing(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(draining: bool, key_store_trusted: bool, audit_writing: bool) -> Report {
        Report {
            draining,
            key_store_trusted,
            audit_writing,
        }
    }

    #[test]
    fn any_failed_check_makes_the_node_unready() {
        assert!(report(false, true, true).ready());
        assert!(!report(true, true, true).ready());
        assert!(!report(false, false, true).ready());
        assert!(!report(false, true, false).ready());
    }

    #[test]
    fn draining_is_one_way() {
        let draining = Draining::default();
        let seen_by_admin = draining.clone();
        assert!(!seen_by_admin.started());
        draining.start();
        draining.start();
        assert!(seen_by_admin.started());
    }
}
