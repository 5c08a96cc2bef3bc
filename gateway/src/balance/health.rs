//! Active health checks, with pingora-load-balancing's own probes: an HTTP
//! `GET` that must answer 200, or a TCP connect (plus the TLS handshake for
//! an `https` upstream), verified against the upstream's CA and name.

use std::sync::Arc;

use async_trait::async_trait;
use pingora::http::RequestHeader;
use pingora::lb::health_check::{HealthCheck, HealthObserve, HttpHealthCheck, TcpHealthCheck};
use pingora::lb::Backend;
use pingora::protocols::tls::CaType;

use crate::config::model::HealthCheckSpec;

/// What a probe needs to know of its upstream.
pub(crate) struct ProbeTarget<'a> {
    pub(crate) upstream: &'a str,
    pub(crate) tls: bool,
    pub(crate) server_name: &'a str,
    pub(crate) authority: &'a str,
    pub(crate) ca: Option<&'a Arc<CaType>>,
}

pub(crate) fn probe(
    spec: &HealthCheckSpec,
    to: &ProbeTarget<'_>,
) -> Result<Box<dyn HealthCheck + Send + Sync>, (&'static str, String)> {
    if spec.interval.is_zero() || spec.timeout.is_zero() {
        return Err((
            "health_check",
            "interval and timeout must be greater than 0".into(),
        ));
    }
    if spec.timeout >= spec.interval {
        return Err((
            "health_check.timeout",
            "must be shorter than the interval".into(),
        ));
    }
    if spec.healthy_after == 0 || spec.unhealthy_after == 0 {
        return Err((
            "health_check",
            "healthy_after and unhealthy_after must be at least 1".into(),
        ));
    }
    let observer = Box::new(Observer {
        upstream: to.upstream.to_string(),
    });
    let Some(path) = &spec.path else {
        let mut tcp = if to.tls {
            TcpHealthCheck::new_tls(to.server_name)
        } else {
            TcpHealthCheck::new()
        };
        tcp.consecutive_success = spec.healthy_after;
        tcp.consecutive_failure = spec.unhealthy_after;
        tcp.peer_template.options.connection_timeout = Some(spec.timeout);
        tcp.peer_template.options.total_connection_timeout = Some(spec.timeout);
        tcp.peer_template.options.ca = to.ca.cloned();
        tcp.health_changed_callback = Some(observer);
        return Ok(tcp);
    };
    let valid_path = path.starts_with('/')
        && path.parse::<http::uri::PathAndQuery>().is_ok()
        && !path.contains('#');
    if !valid_path {
        return Err((
            "health_check.path",
            "must be an absolute path such as /healthz".into(),
        ));
    }
    let mut http = HttpHealthCheck::new(to.authority, to.tls);
    let mut request = RequestHeader::build("GET", path.as_bytes(), None)
        .map_err(|e| ("health_check.path", e.to_string()))?;
    request
        .insert_header(http::header::HOST, to.authority)
        .map_err(|e| ("health_check", e.to_string()))?;
    request
        .insert_header(http::header::USER_AGENT, "portcullis-health-check")
        .map_err(|e| ("health_check", e.to_string()))?;
    http.req = request;
    http.consecutive_success = spec.healthy_after;
    http.consecutive_failure = spec.unhealthy_after;
    let options = &mut http.peer_template.options;
    options.connection_timeout = Some(spec.timeout);
    options.total_connection_timeout = Some(spec.timeout);
    options.read_timeout = Some(spec.timeout);
    options.write_timeout = Some(spec.timeout);
    options.ca = to.ca.cloned();
    if to.tls {
        http.peer_template.sni = to.server_name.to_string();
    }
    http.health_changed_callback = Some(observer);
    Ok(Box::new(http))
}

/// Says when a target's health flips, on the log the operator watches.
struct Observer {
    upstream: String,
}

#[async_trait]
impl HealthObserve for Observer {
    async fn observe(&self, target: &Backend, healthy: bool) {
        if healthy {
            tracing::info!(
                target: "portcullis::upstream",
                upstream = %self.upstream,
                target_addr = %target.addr,
                "health check passed again; target back in rotation"
            );
        } else {
            tracing::warn!(
                target: "portcullis::upstream",
                upstream = %self.upstream,
                target_addr = %target.addr,
                "health check failing; target out of rotation"
            );
        }
    }
}
