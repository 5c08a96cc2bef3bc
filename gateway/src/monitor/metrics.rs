//! Prometheus metrics, served on the admin listener. Labels are bounded:
//! route names from the configuration and stable reason codes, never raw
//! paths or anything a client chooses.

use std::collections::HashSet;
use std::sync::RwLock;

use crate::balance::stats::TargetStats;
use crate::keys::verify::KeyStats;
use crate::limits::abuse::AbuseStats;
use crate::limits::anomaly::AnomalyStats;
use crate::limits::LimitStats;
use crate::monitor::audit::sink::AuditStats;
use prometheus::core::Collector;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    /// The standard `process_*` metrics (memory, CPU, descriptors, start
    /// time) under their usual names, without the `portcullis_` prefix,
    /// so the dashboards and alerts people already have work unchanged.
    process: Registry,
    /// Every registered metric's full name, for checking the dashboards
    /// and alert rules against.
    names: Vec<String>,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub upstream_duration: HistogramVec,
    pub stage_duration: HistogramVec,
    pub upstream_errors: IntCounterVec,
    pub partner_requests: IntCounterVec,
    /// Calls to the partner listener, by operation and decision.
    pub partner_api: IntCounterVec,
    pub config_reloads: IntCounterVec,
    pub config_generation: IntGauge,
    pub routes: IntGauge,
    pub cert_reloads: IntCounterVec,
    pub cert_expiry: IntGauge,
    pub header_timeouts: IntCounter,
    pub proxy_protocol_refused: IntCounterVec,
    pub keys: KeyStats,
    pub limits: LimitStats,
    pub abuse: AbuseStats,
    pub anomaly: AnomalyStats,
    pub audit: AuditStats,
    pub targets: TargetStats,
    pub ownership: crate::ownership::service::OwnershipStats,
    pub traces: crate::monitor::traces::TraceStats,
}

/// Route label for requests that matched no route.
pub const NO_ROUTE: &str = "-";

/// Stages take microseconds to milliseconds (the upstream stage longer).
const STAGE_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1,
    0.5, 2.5, 10.0,
];

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("portcullis".into()), None)?;
        let mut names = Vec::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "requests_total",
                "Requests answered, by route, status, decision and outcome code",
            ),
            &["route", "status", "decision", "code"],
        )?;
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "request_duration_seconds",
                "Time from request header to the end of the response, by route",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route"],
        )?;
        let upstream_duration = HistogramVec::new(
            HistogramOpts::new(
                "upstream_duration_seconds",
                "Time from sending to the upstream until its response header arrived, by route",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route"],
        )?;
        let stage_duration = HistogramVec::new(
            HistogramOpts::new(
                "stage_duration_seconds",
                "Time spent in each stage (auth, isolation, rate_limit, validation, upstream), by route",
            )
            .buckets(STAGE_BUCKETS.to_vec()),
            &["route", "stage"],
        )?;
        let upstream_errors = IntCounterVec::new(
            Opts::new(
                "upstream_errors_total",
                "Upstream failures (unavailable, timeout, error) and 5xx answers, by route",
            ),
            &["route", "kind"],
        )?;
        let partner_requests = IntCounterVec::new(
            Opts::new(
                "partner_requests_total",
                "Requests by authenticated partner and decision (partner values capped)",
            ),
            &["partner", "decision"],
        )?;
        let partner_api = IntCounterVec::new(
            Opts::new(
                "partner_api_requests_total",
                "Calls to the partner listener by operation (list, create, regenerate, revoke, revoke_all, none) and decision",
            ),
            &["action", "decision"],
        )?;
        let config_reloads = IntCounterVec::new(
            Opts::new(
                "config_reloads_total",
                "Configuration reload attempts, by result",
            ),
            &["result"],
        )?;
        let config_generation = IntGauge::new(
            "config_generation",
            "Number of configurations loaded since start (1 = the initial one)",
        )?;
        let routes = IntGauge::new("routes", "Routes in the active configuration")?;
        let cert_reloads = IntCounterVec::new(
            Opts::new(
                "tls_certificate_reloads_total",
                "Certificate reload attempts, by result",
            ),
            &["result"],
        )?;
        let cert_expiry = IntGauge::new(
            "tls_certificate_expiry_timestamp_seconds",
            "notAfter of the serving certificate, as a Unix timestamp",
        )?;
        let header_timeouts = IntCounter::new(
            "header_timeouts_total",
            "Connections cut because a request header did not arrive in time",
        )?;
        let proxy_protocol_refused = IntCounterVec::new(
            Opts::new(
                "proxy_protocol_refused_total",
                "Connections closed before TLS over their PROXY protocol header, by reason",
            ),
            &["reason"],
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new("build_info", "Build information; always 1"),
            &["version"],
        )?;
        // Series an alert watches for a first occurrence exist from the
        // start, so `increase()` sees the step from 0.
        for result in ["ok", "error"] {
            config_reloads.with_label_values(&[result]);
            cert_reloads.with_label_values(&[result]);
        }
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);

        register(&registry, &mut names, requests.clone())?;
        register(&registry, &mut names, request_duration.clone())?;
        register(&registry, &mut names, upstream_duration.clone())?;
        register(&registry, &mut names, stage_duration.clone())?;
        register(&registry, &mut names, upstream_errors.clone())?;
        register(&registry, &mut names, partner_requests.clone())?;
        register(&registry, &mut names, partner_api.clone())?;
        register(&registry, &mut names, config_reloads.clone())?;
        register(&registry, &mut names, config_generation.clone())?;
        register(&registry, &mut names, routes.clone())?;
        register(&registry, &mut names, cert_reloads.clone())?;
        register(&registry, &mut names, cert_expiry.clone())?;
        register(&registry, &mut names, header_timeouts.clone())?;
        register(&registry, &mut names, proxy_protocol_refused.clone())?;
        register(&registry, &mut names, build_info)?;
        let keys = KeyStats::new()?;
        keys.store_up.set(1);
        register(&registry, &mut names, keys.cache_hits.clone())?;
        register(&registry, &mut names, keys.cache_misses.clone())?;
        register(&registry, &mut names, keys.store_errors.clone())?;
        register(&registry, &mut names, keys.misses_refused.clone())?;
        register(&registry, &mut names, keys.store_up.clone())?;
        register(&registry, &mut names, keys.changes.clone())?;
        let limits = LimitStats::new()?;
        register(&registry, &mut names, limits.limited.clone())?;
        register(&registry, &mut names, limits.store_up.clone())?;
        register(&registry, &mut names, limits.local_decisions.clone())?;
        let abuse = AbuseStats::new()?;
        register(&registry, &mut names, abuse.auth_failures.clone())?;
        register(&registry, &mut names, abuse.blocks.clone())?;
        register(&registry, &mut names, abuse.blocked_now.clone())?;
        for kind in ["client_ip", "key_id"] {
            abuse.blocks.with_label_values(&[kind]);
        }
        let anomaly = AnomalyStats::new()?;
        for kind in ["request_rate", "error_rate"] {
            anomaly.anomalies.with_label_values(&[kind]);
        }
        register(&registry, &mut names, anomaly.flagged.clone())?;
        register(&registry, &mut names, anomaly.anomalies.clone())?;
        let process = Registry::new();
        #[cfg(target_os = "linux")]
        {
            let collector = prometheus::process_collector::ProcessCollector::for_self();
            names.extend(collector.desc().iter().map(|d| d.fq_name.clone()));
            process.register(Box::new(collector))?;
        }
        let audit = AuditStats::new()?;
        register(&registry, &mut names, audit.written.clone())?;
        register(&registry, &mut names, audit.dropped.clone())?;
        register(&registry, &mut names, audit.queue_depth.clone())?;
        let targets = TargetStats::new()?;
        register(&registry, &mut names, targets.requests.clone())?;
        register(&registry, &mut names, targets.failures.clone())?;
        register(&registry, &mut names, targets.ejections.clone())?;
        register(&registry, &mut names, targets.up.clone())?;
        register(&registry, &mut names, targets.retries.clone())?;
        register(&registry, &mut names, targets.no_healthy_target.clone())?;
        let ownership = crate::ownership::service::OwnershipStats::new()?;
        register(&registry, &mut names, ownership.entries.clone())?;
        register(&registry, &mut names, ownership.lookups.clone())?;
        register(&registry, &mut names, ownership.learned.clone())?;
        register(&registry, &mut names, ownership.preflights.clone())?;
        register(&registry, &mut names, ownership.refusals.clone())?;
        register(&registry, &mut names, ownership.rows_dropped.clone())?;
        let traces = crate::monitor::traces::TraceStats::new()?;
        register(&registry, &mut names, traces.spans.clone())?;
        Ok(Metrics {
            registry,
            process,
            names,
            requests,
            request_duration,
            upstream_duration,
            stage_duration,
            upstream_errors,
            partner_requests,
            partner_api,
            config_reloads,
            config_generation,
            routes,
            cert_reloads,
            cert_expiry,
            header_timeouts,
            proxy_protocol_refused,
            keys,
            limits,
            abuse,
            anomaly,
            audit,
            targets,
            ownership,
            traces,
        })
    }

    /// Every metric's full name (`portcullis_…`, and `process_…` on
    /// Linux), whether or not it has samples yet.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let encoder = TextEncoder::new();
        for registry in [&self.registry, &self.process] {
            if let Err(e) = encoder.encode(&registry.gather(), &mut out) {
                tracing::error!(error = %e, "failed to encode metrics");
            }
        }
        out
    }
}

fn register<C: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    names: &mut Vec<String>,
    collector: C,
) -> Result<(), prometheus::Error> {
    for desc in collector.desc() {
        names.push(format!("portcullis_{}", desc.fq_name));
    }
    registry.register(Box::new(collector))
}

/// Caps the distinct values of a `partner` label: the first `max` partners
/// seen keep their name, later ones are counted as `_other`.
pub struct PartnerLabels {
    enabled: bool,
    max: usize,
    seen: RwLock<HashSet<String>>,
}

pub const OTHER_PARTNERS: &str = "_other";

impl PartnerLabels {
    pub fn new(enabled: bool, max: usize) -> PartnerLabels {
        PartnerLabels {
            enabled,
            max,
            seen: RwLock::new(HashSet::new()),
        }
    }

    /// The label value for `partner`, or None when partner labels are off.
    pub fn label<'a>(&self, partner: &'a str) -> Option<&'a str> {
        if !self.enabled {
            return None;
        }
        if self.seen.read().is_ok_and(|s| s.contains(partner)) {
            return Some(partner);
        }
        let Ok(mut seen) = self.seen.write() else {
            return Some(OTHER_PARTNERS);
        };
        if seen.contains(partner) || seen.len() < self.max {
            seen.insert(partner.to_string());
            Some(partner)
        } else {
            Some(OTHER_PARTNERS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// deploy/monitoring's rules and dashboard may only use metric names
    /// from metrics.txt (its check script enforces that); this keeps
    /// metrics.txt equal to what the gateway registers.
    #[test]
    fn the_monitoring_files_know_exactly_the_registered_metrics() {
        let listed = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../deploy/monitoring/metrics.txt"),
        )
        .expect("deploy/monitoring/metrics.txt");
        let listed: HashSet<&str> = listed
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        let metrics = Metrics::new().unwrap();
        let registered: HashSet<&str> = metrics.names().iter().map(String::as_str).collect();
        let missing: Vec<_> = listed.difference(&registered).collect();
        let unlisted: Vec<_> = registered.difference(&listed).collect();
        assert!(
            missing.is_empty(),
            "in metrics.txt but not registered: {missing:?}"
        );
        assert!(
            unlisted.is_empty(),
            "registered but not in metrics.txt: {unlisted:?}"
        );
    }

    #[test]
    fn partner_labels_are_capped_and_can_be_switched_off() {
        let labels = PartnerLabels::new(true, 2);
        assert_eq!(labels.label("acme"), Some("acme"));
        assert_eq!(labels.label("globex"), Some("globex"));
        assert_eq!(labels.label("initech"), Some(OTHER_PARTNERS));
        assert_eq!(labels.label("acme"), Some("acme"));
        assert_eq!(PartnerLabels::new(false, 2).label("acme"), None);
    }
}
