//! Trace export: a finished, sampled request becomes one server span and a
//! child span per stage it ran, sent over OTLP/HTTP by OpenTelemetry's
//! batch processor on a thread of its own. The spans are built once the
//! request has finished, from times the stages already recorded, so a
//! request that is not sampled costs nothing here, and the ids are the
//! ones the request carried: the upstream's own spans name our upstream
//! span as their parent.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SpanData, SpanEvents, SpanExporter, SpanLinks,
    SpanProcessor,
};
use opentelemetry_sdk::Resource;
use prometheus::IntCounterVec;
use rand::Rng;

use crate::config::traces::{parse_headers, TracesSettings};
use crate::stage::record::{Finished, StageTime};
use crate::stage::trace_context::{Sampling, Trace};

/// Spans handed to the exporter, by result.
#[derive(Clone)]
pub struct TraceStats {
    pub spans: IntCounterVec,
}

impl TraceStats {
    pub fn new() -> Result<TraceStats, prometheus::Error> {
        let spans = IntCounterVec::new(
            prometheus::Opts::new(
                "trace_spans_total",
                "Spans by result: queued for export, exported, or failed to export (queued minus \
                 exported and failed is waiting or was dropped from a full queue)",
            ),
            &["result"],
        )?;
        for result in ["queued", "exported", "failed"] {
            spans.with_label_values(&[result]);
        }
        Ok(TraceStats { spans })
    }
}

/// Where sampled requests' spans go.
pub struct SpanExport {
    processor: BatchSpanProcessor,
    scope: InstrumentationScope,
    stats: TraceStats,
}

/// How requests are sampled under these settings.
pub fn sampling(settings: &TracesSettings) -> Sampling {
    match settings.endpoint {
        None => Sampling::PassThrough,
        Some(_) => Sampling::Decide {
            ratio: settings.sample_ratio,
            trust_incoming: settings.trust_incoming_sampling,
        },
    }
}

impl SpanExport {
    /// Starts the exporter when an endpoint is configured. A missing CA or
    /// headers file is an error now, at start.
    pub fn start(settings: &TracesSettings, stats: TraceStats) -> Result<Option<Self>, String> {
        let Some(endpoint) = settings.endpoint.clone() else {
            return Ok(None);
        };
        let headers: HashMap<String, String> = match &settings.headers_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("traces.headers_file {}: {e}", path.display()))?;
                parse_headers(&text)
                    .map_err(|e| format!("traces.headers_file {}: {e}", path.display()))?
                    .into_iter()
                    .collect()
            }
            None => HashMap::new(),
        };
        let tls = client_tls(settings)?;
        let timeout = settings.timeout;
        // reqwest's blocking client runs a runtime of its own, which may not
        // be built inside another; this thread has none whoever calls us.
        let exporter = std::thread::spawn(move || {
            let client = reqwest_blocking::blocking::Client::builder()
                .use_preconfigured_tls(tls)
                .timeout(timeout)
                .redirect(reqwest_blocking::redirect::Policy::none())
                .build()
                .map_err(|e| format!("traces: cannot build the HTTP client: {e}"))?;
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_http_client(client)
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(endpoint)
                .with_timeout(timeout)
                .with_headers(headers)
                .build()
                .map_err(|e| format!("traces: cannot build the exporter: {e}"))
        })
        .join()
        .map_err(|_| "traces: the exporter could not be built".to_string())??;
        let batch = BatchConfigBuilder::default()
            .with_max_queue_size(settings.queue)
            .with_max_export_batch_size(settings.queue.min(512))
            .with_scheduled_delay(settings.flush_interval)
            .build();
        let mut processor = BatchSpanProcessor::builder(Counted {
            inner: exporter,
            stats: stats.clone().into(),
        })
        .with_batch_config(batch)
        .build();
        processor.set_resource(
            &Resource::builder()
                .with_service_name(settings.service_name.clone())
                .build(),
        );
        Ok(Some(SpanExport {
            processor,
            scope: InstrumentationScope::builder("portcullis")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
            stats,
        }))
    }

    /// Queues a finished request's spans; never waits for the collector.
    pub fn record(&self, request: &RequestSpans<'_>) {
        let spans = build(request, &self.scope);
        self.stats
            .spans
            .with_label_values(&["queued"])
            .inc_by(spans.len() as u64);
        for span in spans {
            self.processor.on_end(span);
        }
    }

    /// Sends what is queued and stops; for shutdown.
    pub fn shutdown(&self, timeout: std::time::Duration) {
        if let Err(e) = self.processor.shutdown_with_timeout(timeout) {
            tracing::warn!(target: "portcullis::traces", error = %kind(&e), "queued spans not sent");
        }
    }
}

/// Everything a finished request's spans are made of.
pub struct RequestSpans<'a> {
    pub trace: &'a Trace,
    pub finished: &'a Finished<'a>,
    /// When the request began, as the stages' instants count.
    pub started: Instant,
    pub upstream_name: Option<&'a str>,
    pub upstream_addr: Option<SocketAddr>,
    pub upstream_attempts: u8,
    /// pingora's error kind, when the request ended in one.
    pub error: Option<&'a str>,
}

fn build(r: &RequestSpans<'_>, scope: &InstrumentationScope) -> Vec<SpanData> {
    let f = r.finished;
    // One reading of both clocks maps every instant onto wall time.
    let (now, wall_now) = (Instant::now(), SystemTime::now());
    let wall = |at: Instant| wall_now - now.saturating_duration_since(at);
    let ids = &r.trace.ids;
    let trace_id = TraceId::from_bytes(ids.trace);
    let context = |span: [u8; 8]| {
        SpanContext::new(
            trace_id,
            SpanId::from_bytes(span),
            TraceFlags::SAMPLED,
            false,
            TraceState::NONE,
        )
    };
    let server_error = f.status >= 500 || (f.status == 0 && r.error.is_some());
    let mut attributes = vec![
        KeyValue::new("http.request.method", f.method.to_string()),
        KeyValue::new("url.scheme", "https"),
        KeyValue::new("url.path", f.path.to_string()),
        KeyValue::new("portcullis.request_id", f.request_id.to_string()),
        KeyValue::new("portcullis.route", f.route.to_string()),
        KeyValue::new("portcullis.outcome", f.outcome.code()),
        KeyValue::new("portcullis.decision", f.decision().as_str()),
    ];
    if f.status > 0 {
        attributes.push(KeyValue::new(
            "http.response.status_code",
            i64::from(f.status),
        ));
    }
    if let Some(partner) = f.partner {
        attributes.push(KeyValue::new("portcullis.partner", partner.to_string()));
    }
    if let Some(key_id) = f.key_id {
        attributes.push(KeyValue::new("portcullis.key_id", key_id.to_string()));
    }
    if let Some(ip) = f.client_ip {
        attributes.push(KeyValue::new("client.address", ip.to_string()));
    }
    if let Some((version, _)) = f.tls {
        attributes.push(KeyValue::new(
            "tls.protocol.version",
            version.trim_start_matches("TLSv").replace('_', "."),
        ));
    }
    if server_error {
        attributes.push(KeyValue::new(
            "error.type",
            r.error.unwrap_or(f.outcome.code()).to_string(),
        ));
    }
    let name = match f.route {
        crate::monitor::metrics::NO_ROUTE => f.method.to_string(),
        route => format!("{} {route}", f.method),
    };
    let request = SpanData {
        span_context: context(ids.request),
        parent_span_id: ids.parent.map_or(SpanId::INVALID, SpanId::from_bytes),
        parent_span_is_remote: ids.parent.is_some(),
        span_kind: SpanKind::Server,
        name: Cow::Owned(name),
        start_time: wall(r.started),
        end_time: wall_now,
        attributes,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: if server_error {
            Status::error(f.outcome.code())
        } else {
            Status::Unset
        },
        instrumentation_scope: scope.clone(),
    };
    let mut spans = vec![request];
    for (stage, time) in f.stages.named() {
        let Some(StageTime { first, last, .. }) = time else {
            continue;
        };
        let upstream = stage == "upstream";
        let span_id = if upstream {
            ids.upstream
        } else {
            let mut id = [0u8; 8];
            rand::rng().fill_bytes(&mut id);
            id
        };
        let mut attributes = Vec::new();
        if upstream {
            if let Some(name) = r.upstream_name {
                attributes.push(KeyValue::new("portcullis.upstream", name.to_string()));
            }
            if let Some(addr) = r.upstream_addr {
                attributes.push(KeyValue::new("server.address", addr.ip().to_string()));
                attributes.push(KeyValue::new("server.port", i64::from(addr.port())));
            }
            attributes.push(KeyValue::new(
                "portcullis.upstream.attempts",
                i64::from(r.upstream_attempts),
            ));
        }
        spans.push(SpanData {
            span_context: context(span_id),
            parent_span_id: SpanId::from_bytes(ids.request),
            parent_span_is_remote: false,
            span_kind: if upstream {
                SpanKind::Client
            } else {
                SpanKind::Internal
            },
            name: Cow::Borrowed(stage),
            start_time: wall(first),
            end_time: wall(last),
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: scope.clone(),
        });
    }
    spans
}

/// The rustls configuration the exporter connects with: the gateway's own
/// cipher policy, and the configured CA or the system's roots.
fn client_tls(settings: &TracesSettings) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    match &settings.ca {
        Some(path) => {
            for cert in crate::transport::tls::read_certificates(path)
                .map_err(|e| format!("traces.ca: {e}"))?
            {
                roots
                    .add(cert)
                    .map_err(|e| format!("traces.ca {}: {e}", path.display()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
        }
    }
    let mut config =
        rustls::ClientConfig::builder_with_provider(Arc::new(crate::transport::tls::provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("traces: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The OTLP exporter, with its results counted. A failure is logged by
/// kind only: the collector's answer is not ours to print.
#[derive(Debug)]
struct Counted {
    inner: opentelemetry_otlp::SpanExporter,
    stats: TraceStatsDebug,
}

/// `SpanExporter` must be `Debug`; the counters are not.
#[derive(Clone)]
struct TraceStatsDebug(TraceStats);

impl std::fmt::Debug for TraceStatsDebug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TraceStats")
    }
}

impl From<TraceStats> for TraceStatsDebug {
    fn from(stats: TraceStats) -> Self {
        TraceStatsDebug(stats)
    }
}

impl SpanExporter for Counted {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let count = batch.len() as u64;
        let result = self.inner.export(batch).await;
        let label = if result.is_ok() { "exported" } else { "failed" };
        self.stats.0.spans.with_label_values(&[label]).inc_by(count);
        if let Err(e) = &result {
            tracing::warn!(
                target: "portcullis::traces",
                spans = count,
                error = %kind(e),
                "span export failed"
            );
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: std::time::Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

fn kind(e: &opentelemetry_sdk::error::OTelSdkError) -> &'static str {
    use opentelemetry_sdk::error::OTelSdkError;
    match e {
        OTelSdkError::AlreadyShutdown => "already shut down",
        OTelSdkError::Timeout(_) => "timed out",
        OTelSdkError::InternalFailure(_) => "the collector refused or could not be reached",
    }
}
