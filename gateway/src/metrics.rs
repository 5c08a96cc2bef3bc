//! Prometheus metrics, served on the admin listener. Labels are bounded:
//! route names from the configuration and stable reason codes, never raw
//! paths or anything a client chooses.

use crate::keys::verify::KeyStats;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub upstream_duration: HistogramVec,
    pub config_reloads: IntCounterVec,
    pub config_generation: IntGauge,
    pub routes: IntGauge,
    pub cert_reloads: IntCounterVec,
    pub cert_expiry: IntGauge,
    pub header_timeouts: IntCounter,
    pub keys: KeyStats,
}

/// Route label for requests that matched no route.
pub const NO_ROUTE: &str = "-";

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("portcullis".into()), None)?;
        let requests = IntCounterVec::new(
            Opts::new(
                "requests_total",
                "Requests answered, by route, status and outcome code",
            ),
            &["route", "status", "code"],
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
        let build_info = IntGaugeVec::new(
            Opts::new("build_info", "Build information; always 1"),
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);

        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(request_duration.clone()))?;
        registry.register(Box::new(upstream_duration.clone()))?;
        registry.register(Box::new(config_reloads.clone()))?;
        registry.register(Box::new(config_generation.clone()))?;
        registry.register(Box::new(routes.clone()))?;
        registry.register(Box::new(cert_reloads.clone()))?;
        registry.register(Box::new(cert_expiry.clone()))?;
        registry.register(Box::new(header_timeouts.clone()))?;
        registry.register(Box::new(build_info))?;
        let keys = KeyStats::new()?;
        keys.store_up.set(1);
        registry.register(Box::new(keys.cache_hits.clone()))?;
        registry.register(Box::new(keys.cache_misses.clone()))?;
        registry.register(Box::new(keys.store_errors.clone()))?;
        registry.register(Box::new(keys.misses_refused.clone()))?;
        registry.register(Box::new(keys.store_up.clone()))?;
        Ok(Metrics {
            registry,
            requests,
            request_duration,
            upstream_duration,
            config_reloads,
            config_generation,
            routes,
            cert_reloads,
            cert_expiry,
            header_timeouts,
            keys,
        })
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "failed to encode metrics");
        }
        out
    }
}
