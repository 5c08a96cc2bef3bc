//! Per-target metrics. Labels are the upstream's configured name and a
//! target address it resolved to (at most `MAX_TARGETS` per upstream), so
//! cardinality stays bounded by the configuration.

use prometheus::{IntCounterVec, IntGaugeVec, Opts};

pub struct TargetStats {
    pub requests: IntCounterVec,
    pub failures: IntCounterVec,
    pub ejections: IntCounterVec,
    pub up: IntGaugeVec,
    pub retries: IntCounterVec,
    pub no_healthy_target: IntCounterVec,
}

/// The `kind` label values of `upstream_target_failures_total`.
pub const FAILURE_KINDS: [&str; 4] = ["connect", "timeout", "broken", "status_5xx"];

impl TargetStats {
    /// Drops every series of a target that is gone, so addresses that come
    /// and go (pods replaced) do not pile up series without end.
    pub fn remove(&self, upstream: &str, target: &str) {
        let labels = [upstream, target];
        let _ = self.requests.remove_label_values(&labels);
        let _ = self.ejections.remove_label_values(&labels);
        let _ = self.up.remove_label_values(&labels);
        for kind in FAILURE_KINDS {
            let _ = self.failures.remove_label_values(&[upstream, target, kind]);
        }
    }

    pub fn new() -> Result<TargetStats, prometheus::Error> {
        Ok(TargetStats {
            requests: IntCounterVec::new(
                Opts::new(
                    "upstream_target_requests_total",
                    "Requests sent to each upstream target (retries included)",
                ),
                &["upstream", "target"],
            )?,
            failures: IntCounterVec::new(
                Opts::new(
                    "upstream_target_failures_total",
                    "Live-traffic failures of each upstream target, by kind (connect, timeout, status_5xx, broken)",
                ),
                &["upstream", "target", "kind"],
            )?,
            ejections: IntCounterVec::new(
                Opts::new(
                    "upstream_target_ejections_total",
                    "Times a target was left out after consecutive failures",
                ),
                &["upstream", "target"],
            )?,
            up: IntGaugeVec::new(
                Opts::new(
                    "upstream_target_up",
                    "1 while a target passes its health checks and is not ejected, else 0",
                ),
                &["upstream", "target"],
            )?,
            retries: IntCounterVec::new(
                Opts::new(
                    "upstream_retries_total",
                    "Requests sent again to another target after a failure before anything was sent",
                ),
                &["upstream"],
            )?,
            no_healthy_target: IntCounterVec::new(
                Opts::new(
                    "upstream_no_healthy_target_total",
                    "Requests sent to a target known to be down because no target was up",
                ),
                &["upstream"],
            )?,
        })
    }
}
