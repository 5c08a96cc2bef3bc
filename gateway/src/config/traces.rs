//! Configuration of trace export: OpenTelemetry spans over OTLP/HTTP, one
//! span per request with a child per stage. Applies at start; a reload
//! that changes it is refused, like the other monitoring settings.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Spans for each recorded request, sent over OTLP/HTTP (protobuf) to a
/// collector (an OpenTelemetry Collector, Jaeger, Tempo, …). Without
/// `endpoint` nothing is recorded and the caller's `traceparent` flags pass
/// to the upstream unchanged. With it, the gateway decides whether each
/// trace is recorded, and the `traceparent` the upstream receives carries
/// that decision. Spans carry the method, route, canonical path (never the
/// query string), status, outcome, partner and key id (never the key).
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TracesSettings {
    /// The collector's OTLP/HTTP traces URL, for example
    /// `https://collector.internal:4318/v1/traces`. `https` is required,
    /// except to a loopback address or with `allow_plaintext`. Without it,
    /// no spans are recorded.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// CA certificates (PEM) the collector's certificate must chain to,
    /// relative to the gateway file. Without it, the system's roots.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Allow an `http://` endpoint that is not on a loopback address (a
    /// collector on the node's own network, say). Spans then cross that
    /// network in plaintext.
    #[serde(default)]
    pub allow_plaintext: bool,
    /// A secret file of headers sent with every export, one `name: value`
    /// per line (a collector's API key, for example), relative to the
    /// gateway file. Its values are never logged.
    #[serde(default)]
    pub headers_file: Option<PathBuf>,
    /// Share of traces recorded, from 0.0 to 1.0, judged on the trace id as
    /// OpenTelemetry's `TraceIdRatioBased` sampler does, so services
    /// sampling at the same ratio keep the same traces.
    ///
    /// Default: `1.0`.
    #[serde(default = "default_ratio")]
    pub sample_ratio: f64,
    /// Let an incoming `traceparent`'s sampled flag decide instead of
    /// `sample_ratio` (OpenTelemetry's parent-based sampling). Off by
    /// default: partners are outside callers, and trusting their flag lets
    /// one make the gateway record every request it sends, or none.
    #[serde(default)]
    pub trust_incoming_sampling: bool,
    /// `service.name` of the spans' resource. `OTEL_RESOURCE_ATTRIBUTES`
    /// adds attributes to it.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// How many finished spans may wait for export; when full, spans are
    /// dropped (the request is never held up). It must be greater than 0.
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// The longest a span waits before its batch is sent.
    #[serde(default = "default_flush_interval", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub flush_interval: Duration,
    /// The longest one export may take.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub timeout: Duration,
}

impl Default for TracesSettings {
    fn default() -> Self {
        TracesSettings {
            endpoint: None,
            ca: None,
            allow_plaintext: false,
            headers_file: None,
            sample_ratio: default_ratio(),
            trust_incoming_sampling: false,
            service_name: default_service_name(),
            queue: default_queue(),
            flush_interval: default_flush_interval(),
            timeout: default_timeout(),
        }
    }
}

fn default_ratio() -> f64 {
    1.0
}
fn default_service_name() -> String {
    "portcullis".into()
}
fn default_queue() -> usize {
    8192
}
fn default_flush_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// Checks that cannot be expressed by types alone.
pub fn problems(traces: &TracesSettings) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if !(0.0..=1.0).contains(&traces.sample_ratio) {
        out.push(("traces.sample_ratio", "must be between 0 and 1".into()));
    }
    if traces.queue == 0 {
        out.push(("traces.queue", "must be greater than 0".into()));
    }
    if traces.flush_interval.is_zero() {
        out.push(("traces.flush_interval", "must be greater than 0".into()));
    }
    if traces.timeout.is_zero() {
        out.push(("traces.timeout", "must be greater than 0".into()));
    }
    if traces.service_name.trim().is_empty() {
        out.push(("traces.service_name", "must not be empty".into()));
    }
    if let Some(endpoint) = &traces.endpoint {
        if let Err(msg) = check_endpoint(endpoint, traces.allow_plaintext) {
            out.push(("traces.endpoint", msg));
        }
    }
    out
}

fn check_endpoint(endpoint: &str, allow_plaintext: bool) -> Result<(), String> {
    let uri: http::Uri = endpoint
        .parse()
        .map_err(|_| "not a URL (for example https://collector:4318/v1/traces)".to_string())?;
    let authority = uri
        .authority()
        .ok_or("needs a host (for example https://collector:4318/v1/traces)")?;
    if authority.as_str().contains('@') {
        // A password in the URL would be printed wherever the URL is.
        return Err("must not carry credentials; use traces.headers_file".into());
    }
    if uri.query().is_some() {
        return Err("must not carry a query string".into());
    }
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if allow_plaintext || is_loopback(authority.host()) => Ok(()),
        Some("http") => Err(
            "spans would cross the network in plaintext: use https, a loopback collector, \
             or traces.allow_plaintext"
                .into(),
        ),
        _ => Err("must be an http or https URL".into()),
    }
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Reads a headers file: `name: value` lines; blank lines and `#` comments
/// are skipped. Errors name the line, never its value.
pub fn parse_headers(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("line {}: expected `name: value`", n + 1));
        };
        let (name, value) = (name.trim(), value.trim());
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(format!("line {}: not a valid header name", n + 1));
        }
        if http::HeaderValue::from_str(value).is_err() {
            return Err(format!("line {}: not a valid header value", n + 1));
        }
        out.push((name.to_ascii_lowercase(), value.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(endpoint: &str, allow_plaintext: bool) -> Vec<(&'static str, String)> {
        problems(&TracesSettings {
            endpoint: Some(endpoint.into()),
            allow_plaintext,
            ..TracesSettings::default()
        })
    }

    #[test]
    fn https_and_loopback_collectors_are_accepted() {
        for ok in [
            "https://collector.internal:4318/v1/traces",
            "http://127.0.0.1:4318/v1/traces",
            "http://[::1]:4318/v1/traces",
            "http://localhost:4318/v1/traces",
        ] {
            assert!(with(ok, false).is_empty(), "{ok}");
        }
        assert!(with("http://10.0.0.5:4318/v1/traces", true).is_empty());
    }

    #[test]
    fn plaintext_credentials_and_non_urls_are_refused() {
        for bad in [
            "http://10.0.0.5:4318/v1/traces",
            "http://collector:4318/v1/traces",
            "https://user:pw@collector:4318/v1/traces",
            "https://collector:4318/v1/traces?token=x",
            "ftp://collector/v1/traces",
            "collector:4318",
            "not a url",
        ] {
            let found = with(bad, false);
            assert_eq!(found.len(), 1, "{bad}: {found:?}");
            assert_eq!(found[0].0, "traces.endpoint");
            assert!(!found[0].1.contains("pw"), "{bad}");
        }
    }

    #[test]
    fn values_out_of_range_are_named() {
        let found = problems(&TracesSettings {
            sample_ratio: 1.5,
            queue: 0,
            flush_interval: Duration::ZERO,
            ..TracesSettings::default()
        });
        let fields: Vec<&str> = found.iter().map(|(f, _)| *f).collect();
        assert_eq!(
            fields,
            [
                "traces.sample_ratio",
                "traces.queue",
                "traces.flush_interval"
            ]
        );
    }

    #[test]
    fn a_headers_file_is_read_and_its_errors_never_show_a_value() {
        let parsed = parse_headers("# collector\nX-Api-Key: s3cret\n\nx-tenant: a b\n");
        assert_eq!(
            parsed,
            Ok(vec![
                ("x-api-key".into(), "s3cret".into()),
                ("x-tenant".into(), "a b".into())
            ])
        );
        let Err(e) = parse_headers("x-api-key s3cret") else {
            panic!("accepted a line without a colon");
        };
        assert!(!e.contains("s3cret"));
        assert!(parse_headers("bad name: v").is_err());
        assert!(parse_headers("x: bad\u{7f}value").is_err());
    }
}
