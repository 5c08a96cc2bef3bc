//! The watchful parts that outlive any one configuration: the audit
//! trail, brute-force blocking, anomaly detection and rate limiting, with
//! the thread that closes each anomaly interval.

pub mod audit;
pub mod log_fields;
pub mod log_sink;
pub mod metrics;
pub mod traces;

use std::net::IpAddr;
use std::sync::Arc;

use crate::config::model::{GatewayFile, StoreKind};
use crate::config::monitoring::LimitStore;
use crate::keys::redis_store::RedisStore;
use crate::limits::abuse::{AbuseGuard, NewBlock};
use crate::limits::anomaly::AnomalyDetector;
use crate::limits::RateLimiter;
use crate::monitor::audit::{AuditSink, Entry, Event};
use crate::monitor::metrics::{Metrics, PartnerLabels};
use crate::monitor::traces::SpanExport;
use crate::stage::trace_context::Sampling;

pub struct Monitor {
    pub audit: AuditSink,
    pub abuse: AbuseGuard,
    pub anomaly: AnomalyDetector,
    pub limiter: RateLimiter,
    pub partner_labels: PartnerLabels,
    /// Where sampled requests' spans go, and how requests are sampled.
    pub traces: Option<SpanExport>,
    pub sampling: Sampling,
}

impl Monitor {
    /// Builds every part from the gateway file; a bad audit output or
    /// chain key is an error now, at start.
    pub fn start(
        settings: &GatewayFile,
        metrics: &Metrics,
        redis: Option<Arc<RedisStore>>,
    ) -> Result<Arc<Monitor>, String> {
        let audit = AuditSink::start(&settings.audit, metrics.audit.clone())?;
        let traces = SpanExport::start(&settings.traces, metrics.traces.clone())?;
        let shared = match (settings.rate_limits.store, settings.keys.store) {
            (LimitStore::Auto, StoreKind::Redis) => redis,
            _ => None,
        };
        let monitor = Arc::new(Monitor {
            audit,
            abuse: AbuseGuard::new(settings.abuse.auth_failures.clone(), metrics.abuse.clone()),
            anomaly: AnomalyDetector::new(settings.abuse.anomaly.clone(), metrics.anomaly.clone()),
            limiter: RateLimiter::new(
                shared,
                settings.rate_limits.timeout,
                settings.rate_limits.retry_after_failure,
                metrics.limits.clone(),
            ),
            partner_labels: PartnerLabels::new(
                settings.metrics.partner_label,
                settings.metrics.max_partners,
            ),
            traces,
            sampling: traces::sampling(&settings.traces),
        });
        let ticking = Arc::downgrade(&monitor);
        let interval = monitor.anomaly.interval();
        std::thread::Builder::new()
            .name("anomaly-interval".into())
            .spawn(move || loop {
                std::thread::sleep(interval);
                let Some(monitor) = ticking.upgrade() else {
                    return;
                };
                for event in monitor.anomaly.tick() {
                    monitor.audit.submit(Entry::event(event));
                }
                monitor.abuse.sweep();
            })
            .map_err(|e| format!("cannot start the anomaly detector: {e}"))?;
        Ok(monitor)
    }

    /// Audits and logs blocks that an authentication failure just started.
    pub fn blocks_started(&self, blocks: Vec<NewBlock>, request_id: &str) {
        for block in blocks {
            let mut event = Event::new("blocked")
                .with("request_id", request_id)
                .with("block_for_s", self.abuse_block_for_secs());
            match &block {
                NewBlock::Client(ip) => {
                    event = event.with("kind", "client_ip");
                    event.client_ip = Some(ip.to_string());
                }
                NewBlock::Key(id) => {
                    event = event.with("kind", "key_id");
                    event.key_id = Some(id.clone());
                }
            }
            tracing::warn!(
                target: "portcullis::suspicious",
                request_id,
                client_ip = event.client_ip.as_deref(),
                key_id = event.key_id.as_deref(),
                "repeated authentication failures; temporarily blocked"
            );
            self.audit.submit(Entry::event(event));
        }
    }

    fn abuse_block_for_secs(&self) -> u64 {
        self.abuse.block_for().as_secs()
    }

    /// Counts an authentication failure and audits any block it starts.
    pub fn auth_failed(
        &self,
        reason: &'static str,
        client: Option<IpAddr>,
        key_id: Option<&str>,
        request_id: &str,
    ) {
        let started = self.abuse.failed(reason, client, key_id);
        if !started.is_empty() {
            self.blocks_started(started, request_id);
        }
    }
}
