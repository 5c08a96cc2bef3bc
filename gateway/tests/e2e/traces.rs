//! OpenTelemetry spans over OTLP/HTTP: one server span per request with a
//! child per stage, the caller's trace continued, the sampling decision the
//! upstream sees agreeing with what is exported, against a real receiver
//! (`collector.rs`) over plain TCP and TLS.

use std::time::Duration;

use crate::collector::{Collector, Span};
use crate::common::*;

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn traceparent(flags: &str) -> String {
    format!("00-{CALLER_TRACE}-{CALLER_SPAN}-{flags}")
}

/// The orders gateway exporting to `endpoint`, with `more` in `traces:`.
fn exporting(up: &Upstream, endpoint: &str, more: &str) -> GatewayConfig {
    let mut cfg = GatewayConfig::orders(&up.url());
    cfg.extra = format!("traces:\n  endpoint: {endpoint}\n  flush_interval: 100ms\n{more}");
    cfg
}

/// curl, as a partner would call, with a `traceparent`.
fn curl_with_trace(gw: &Gateway, key: &str, trace: &str, path: &str) -> (u16, String) {
    let ca = gw.path("test-ca.pem");
    std::fs::write(&ca, &gw.pki.ca_pem).unwrap();
    let out = std::process::Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-D", "-", "--cacert"])
        .arg(&ca)
        .args([
            "--resolve",
            &format!("{HOST}:{}:127.0.0.1", gw.https.port()),
        ])
        .args(["-H", &format!("x-api-key: {key}")])
        .args(["-H", &format!("traceparent: {trace}")])
        .arg(gw.url(path))
        .output()
        .expect("curl runs");
    let head = String::from_utf8_lossy(&out.stdout).to_string();
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let request_id = head
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .unwrap_or_default()
        .trim()
        .to_string();
    (status, request_id)
}

fn named<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    spans
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no span {name} in {spans:#?}"))
}

/// The span id the upstream was told is its parent.
fn upstream_parent(header: &str) -> (&str, &str, &str) {
    let parts: Vec<&str> = header.split('-').collect();
    (parts[1], parts[2], parts[3])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sampled_request_is_one_server_span_with_a_child_per_stage() {
    let collector = Collector::start().await;
    let up = Upstream::start().await;
    let gw = Gateway::start(exporting(
        &up,
        &collector.endpoint("http"),
        "  trust_incoming_sampling: true\n  service_name: edge-eu\n",
    ))
    .await;
    let key = gw.key("acme").to_string();
    let (status, request_id) =
        curl_with_trace(&gw, &key, &traceparent("01"), "/partners/acme/orders");
    assert_eq!(status, 200);

    let spans = collector.trace(CALLER_TRACE, 4).await;
    let request = named(&spans, "GET list-orders");
    assert_eq!(request.kind, 2, "a server span");
    assert_eq!(
        request.parent_span_id, CALLER_SPAN,
        "the caller's span is its parent"
    );
    assert_eq!(request.service_name, "edge-eu");
    assert_eq!(request.scope, "portcullis");
    assert_eq!(request.attributes["http.request.method"], "GET");
    assert_eq!(request.attributes["url.path"], "/partners/acme/orders");
    assert_eq!(request.attributes["http.response.status_code"], "200");
    assert_eq!(request.attributes["portcullis.partner"], "acme");
    assert_eq!(request.attributes["portcullis.route"], "list-orders");
    assert_eq!(request.attributes["portcullis.request_id"], request_id);
    assert_eq!(request.attributes["portcullis.decision"], "allow");
    assert_eq!(request.status, 0, "a 200 is not an error");

    let mut children: Vec<&str> = spans
        .iter()
        .filter(|s| s.parent_span_id == request.span_id)
        .map(|s| s.name.as_str())
        .collect();
    children.sort();
    assert_eq!(children, ["auth", "isolation", "upstream"]);
    for child in spans.iter().filter(|s| s.parent_span_id == request.span_id) {
        assert!(
            request.start_ns <= child.start_ns && child.end_ns <= request.end_ns,
            "{} lies inside the request: {child:?} {request:?}",
            child.name
        );
        assert!(child.start_ns <= child.end_ns);
    }
    let auth = named(&spans, "auth");
    let upstream = named(&spans, "upstream");
    assert!(
        auth.end_ns <= upstream.start_ns,
        "auth ran before the upstream was called"
    );
    assert_eq!(upstream.kind, 3, "a client span");
    assert_eq!(upstream.attributes["server.address"], "127.0.0.1");
    assert_eq!(
        upstream.attributes["server.port"],
        up.addr.port().to_string()
    );
    assert_eq!(upstream.attributes["portcullis.upstream.attempts"], "1");

    // The upstream's own spans would name our upstream span as their parent.
    let seen = up.recorder.requests();
    let header = seen[0].header("traceparent").unwrap();
    assert_eq!(
        upstream_parent(header),
        (CALLER_TRACE, upstream.span_id.as_str(), "01")
    );

    // OTLP/HTTP as a collector expects it; the key is nowhere in it.
    let exports = collector.exports();
    assert!(exports.iter().all(|e| e.path == "/v1/traces"));
    assert!(exports.iter().all(
        |e| e.headers.get("content-type").map(String::as_str) == Some("application/x-protobuf")
    ));
    assert!(exports.iter().all(|e| !contains(&e.body, key.as_bytes())));
    assert!(
        gw.metric("portcullis_trace_spans_total{result=\"exported\"}")
            .await
            >= 4.0,
        "exported spans are counted"
    );
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_cannot_choose_what_is_recorded_unless_trusted() {
    let collector = Collector::start().await;
    let up = Upstream::start().await;
    // Nothing sampled by ratio; the caller's flag is not trusted (the default).
    let gw = Gateway::start(exporting(
        &up,
        &collector.endpoint("http"),
        "  sample_ratio: 0.0\n",
    ))
    .await;
    let key = gw.key("acme").to_string();
    let (status, request_id) = curl_with_trace(&gw, &key, &traceparent("01"), "/echo/a");
    assert_eq!(status, 200);
    // The audit record is written after the spans would have been queued.
    gw.audit_record(&request_id).await;
    assert_eq!(
        gw.metric("portcullis_trace_spans_total{result=\"queued\"}")
            .await,
        0.0
    );
    let header = up.recorder.requests()[0]
        .header("traceparent")
        .unwrap()
        .to_string();
    let (trace, _, flags) = upstream_parent(&header);
    assert_eq!(trace, CALLER_TRACE, "the trace is still continued");
    assert_eq!(flags, "00", "the upstream is told the truth: not recorded");
    drop(gw);

    // Every trace sampled; the caller's "not sampled" does not hide it.
    let up = Upstream::start().await;
    let gw = Gateway::start(exporting(
        &up,
        &collector.endpoint("http"),
        "  sample_ratio: 1.0\n",
    ))
    .await;
    let key = gw.key("acme").to_string();
    let (status, _) = curl_with_trace(&gw, &key, &traceparent("00"), "/echo/b");
    assert_eq!(status, 200);
    let spans = collector.trace(CALLER_TRACE, 3).await;
    assert_eq!(named(&spans, "GET echo").attributes["url.path"], "/echo/b");
    let header = up.recorder.requests()[0]
        .header("traceparent")
        .unwrap()
        .to_string();
    assert_eq!(upstream_parent(&header).2, "01");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_callers_decision_stands_over_the_ratio() {
    let collector = Collector::start().await;
    let up = Upstream::start().await;
    let gw = Gateway::start(exporting(
        &up,
        &collector.endpoint("http"),
        "  sample_ratio: 0.0\n  trust_incoming_sampling: true\n",
    ))
    .await;
    let key = gw.key("acme").to_string();
    let (_, unsampled) = curl_with_trace(
        &gw,
        &key,
        "00-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-00f067aa0ba902b7-00",
        "/echo/quiet",
    );
    let (status, _) = curl_with_trace(&gw, &key, &traceparent("01"), "/echo/loud");
    assert_eq!(status, 200);
    let spans = collector.trace(CALLER_TRACE, 3).await;
    assert_eq!(
        named(&spans, "GET echo").attributes["url.path"],
        "/echo/loud"
    );
    gw.audit_record(&unsampled).await;
    assert!(collector
        .spans()
        .iter()
        .all(|s| s.trace_id != "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
    let seen = up.recorder.requests();
    assert_eq!(
        upstream_parent(seen[0].header("traceparent").unwrap()).2,
        "00"
    );
    assert_eq!(
        upstream_parent(seen[1].header("traceparent").unwrap()).2,
        "01"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_is_traced_without_its_key_and_never_reaches_the_upstream() {
    let collector = Collector::start().await;
    let up = Upstream::start().await;
    let gw = Gateway::start(exporting(&up, &collector.endpoint("http"), "")).await;
    // Well-formed, but not a key the store knows: acme's with its end changed.
    let real = gw.key("acme").to_string();
    let last = if real.ends_with('A') { "B" } else { "A" };
    let stolen = format!("{}{last}", &real[..real.len() - 1]);
    let (status, request_id) = curl_with_trace(
        &gw,
        &stolen,
        &traceparent("01"),
        "/partners/acme/orders?status=open",
    );
    assert_eq!(status, 401);
    let spans = collector.trace(CALLER_TRACE, 2).await;
    let request = named(&spans, "GET");
    assert_eq!(request.attributes["http.response.status_code"], "401");
    assert_eq!(request.attributes["portcullis.request_id"], request_id);
    assert_eq!(request.attributes["portcullis.decision"], "deny");
    assert!(request.attributes["portcullis.outcome"].starts_with("key_"));
    assert_eq!(
        request.attributes["url.path"], "/partners/acme/orders",
        "no query string"
    );
    assert_eq!(
        request.status, 0,
        "a refusal is the gateway working, not failing"
    );
    assert!(spans.iter().all(|s| s.name != "upstream"));
    named(&spans, "auth");
    for export in collector.exports() {
        assert!(!contains(&export.body, stolen.as_bytes()));
        assert!(!contains(&export.body, real.as_bytes()));
        assert!(!contains(&export.body, b"status=open"));
    }
    assert!(up.recorder.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_a_tls_collector_with_its_headers_and_the_secret_is_never_logged() {
    let ca = portcullis::transport::certgen::Ca::new("Collector test CA").unwrap();
    let collector = Collector::start_tls(&ca).await;
    let up = Upstream::start().await;
    let mut cfg = exporting(
        &up,
        &collector.endpoint("https"),
        "  ca: collector-ca.pem\n  headers_file: collector-headers\n",
    );
    let secret = "collector-secret-6f1d2c";
    cfg.files.push(("collector-ca.pem".into(), ca.cert_pem()));
    cfg.files.push((
        "collector-headers".into(),
        format!("# the collector's tenant key\nX-Api-Key: {secret}\n"),
    ));
    let gw = Gateway::start(cfg).await;
    let key = gw.key("acme").to_string();
    let (status, _) = curl_with_trace(&gw, &key, &traceparent("01"), "/partners/acme/orders");
    assert_eq!(status, 200);
    collector.trace(CALLER_TRACE, 4).await;
    let exports = collector.exports();
    assert!(exports
        .iter()
        .all(|e| e.headers.get("x-api-key").map(String::as_str) == Some(secret)));
    assert!(!gw.logs().contains(secret));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_down_never_holds_a_request_up() {
    // Bound and never listened on: connections to it are refused.
    let dead = tokio::net::TcpSocket::new_v4().unwrap();
    dead.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let endpoint = format!("http://{}/v1/traces", dead.local_addr().unwrap());
    let up = Upstream::start().await;
    let gw = Gateway::start(exporting(&up, &endpoint, "  timeout: 1s\n")).await;
    let client = gw.client();
    for _ in 0..5 {
        let resp = client
            .get(gw.url("/partners/acme/orders"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    eventually(
        "failed exports counted",
        Duration::from_secs(20),
        || async {
            (gw.metric("portcullis_trace_spans_total{result=\"failed\"}")
                .await
                >= 1.0)
                .then_some(())
        },
    )
    .await;
    let logged = gw.wait_for_log("span export failed").await;
    assert!(logged.contains("could not be reached") || logged.contains("timed out"));
    assert_eq!(up.recorder.requests().len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_still_queued_are_sent_when_the_gateway_stops() {
    let collector = Collector::start().await;
    let up = Upstream::start().await;
    let mut cfg = exporting(&up, &collector.endpoint("http"), "");
    // Long enough that only the stop can send the batch.
    cfg.extra = cfg
        .extra
        .replace("flush_interval: 100ms", "flush_interval: 1h");
    cfg.server
        .push_str("  drain_delay: 0s\n  grace_period: 0s\n  drain_timeout: 1s\n");
    let gw = Gateway::start(cfg).await;
    let key = gw.key("acme").to_string();
    let (status, request_id) = curl_with_trace(&gw, &key, &traceparent("01"), "/echo/last");
    assert_eq!(status, 200);
    gw.audit_record(&request_id).await;
    assert!(collector.spans().is_empty(), "nothing sent before the stop");
    gw.signal("TERM");
    let spans = collector.trace(CALLER_TRACE, 3).await;
    assert_eq!(
        named(&spans, "GET echo").attributes["url.path"],
        "/echo/last"
    );
}
