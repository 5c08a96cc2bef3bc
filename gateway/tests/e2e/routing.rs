//! Routing, normalisation, upstream forwarding and the error shape.

use crate::common::*;
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routed_request_reaches_the_upstream_unchanged_but_for_managed_headers() {
    let up = Upstream::start().await;
    let gw = Gateway::start(GatewayConfig::orders(&up.url())).await;
    let body = br#"{"sku":"BOLT-7","quantity":3}"#;
    let resp = gw
        .client()
        .post(gw.url("/partners/acme/orders?dry_run=1&tag=a%20b"))
        .header("content-type", "application/json")
        .header("x-custom", "kept")
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(resp.headers().contains_key("strict-transport-security"));
    let order: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(order["partner"], "acme");

    let seen = up.recorder.requests();
    assert_eq!(seen.len(), 1);
    let r = &seen[0];
    assert_eq!(r.method, "POST");
    assert_eq!(
        r.path_and_query,
        "/partners/acme/orders?dry_run=1&tag=a%20b"
    );
    assert_eq!(r.body, body);
    assert_eq!(r.header("x-custom"), Some("kept"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("x-request-id"), Some(request_id.as_str()));
    assert_eq!(r.header("host"), Some(up.addr.to_string().as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_methods_are_refused_without_calling_the_upstream() {
    let up = Upstream::start().await;
    let gw = Gateway::start(GatewayConfig::orders(&up.url())).await;

    let resp = raw_request(&gw, b"GET /admin HTTP/1.1\r\nHost: gateway.test\r\n\r\n")
        .await
        .unwrap();
    assert_problem(&resp, 404, "route_not_found");
    let resp = raw_request(
        &gw,
        b"GET /partners/acme HTTP/1.1\r\nHost: gateway.test\r\n\r\n",
    )
    .await
    .unwrap();
    assert_problem(&resp, 404, "route_not_found");
    let resp = raw_request(
        &gw,
        b"DELETE /partners/acme/orders HTTP/1.1\r\nHost: gateway.test\r\nContent-Length: 0\r\n\r\n",
    )
    .await
    .unwrap();
    assert_problem(&resp, 405, "method_not_allowed");
    assert_eq!(resp.header("allow"), Some("GET, POST"));
    assert!(
        up.recorder.is_empty(),
        "upstream saw {:?}",
        up.recorder.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_are_normalised_before_matching_and_forwarded_canonically() {
    let up = Upstream::start().await;
    let gw = Gateway::start(GatewayConfig::orders(&up.url())).await;
    for raw in [
        "/partners/acme/./orders",
        "//partners//acme/orders",
        "/partners/globex/../acme/orders",
        "/p%61rtners/acme/%6Frders",
        "/partners/acme/orders/%2e%2e/orders",
    ] {
        up.recorder.clear();
        let req = format!("GET {raw}?x=1 HTTP/1.1\r\nHost: gateway.test\r\n\r\n");
        let resp = raw_request(&gw, req.as_bytes()).await.unwrap();
        assert_eq!(
            resp.status,
            200,
            "{raw}: {}",
            String::from_utf8_lossy(&resp.body)
        );
        let seen = up.recorder.requests();
        assert_eq!(seen.len(), 1, "{raw}");
        assert_eq!(seen[0].path_and_query, "/partners/acme/orders?x=1", "{raw}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_and_malformed_paths_are_refused_without_calling_the_upstream() {
    let up = Upstream::start().await;
    let gw = Gateway::start(GatewayConfig::orders(&up.url())).await;
    for (raw, code) in [
        ("/partners/acme%2forders", "ambiguous_path"),
        ("/partners/acme%2Forders", "ambiguous_path"),
        ("/partners/acme%5corders", "ambiguous_path"),
        ("/partners/acme\\orders", "ambiguous_path"),
        ("/partners/acme%00/orders", "ambiguous_path"),
        (
            "/partners/acme%0d%0aX-Injected:%201/orders",
            "ambiguous_path",
        ),
        ("/../partners/acme/orders", "ambiguous_path"),
        (
            "/partners/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
            "ambiguous_path",
        ),
        ("/partners/acme/orders%zz", "bad_path"),
        ("/partners/acme/orders%", "bad_path"),
    ] {
        let req = format!("GET {raw} HTTP/1.1\r\nHost: gateway.test\r\n\r\n");
        match raw_request(&gw, req.as_bytes()).await {
            Some(resp)
                if resp.status == 400
                    && resp.header("content-type") == Some("application/problem+json") =>
            {
                assert_problem(&resp, 400, code)
            }
            // pingora's own parser refuses some bytes outright (a raw
            // backslash): that is a refusal too, as long as nothing passed.
            Some(resp) => assert_eq!(resp.status, 400, "{raw}"),
            None => {}
        }
    }
    assert!(
        up.recorder.is_empty(),
        "upstream saw {:?}",
        up.recorder.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_generated_or_kept_when_well_formed() {
    let up = Upstream::start().await;
    let gw = Gateway::start(GatewayConfig::orders(&up.url())).await;
    let client = gw.client();
    let kept = client
        .get(gw.url("/partners/acme/orders"))
        .header("x-request-id", "trace-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(kept.headers()["x-request-id"], "trace-0123456789");
    let replaced = client
        .get(gw.url("/partners/acme/orders"))
        .header("x-request-id", "bad id with spaces")
        .send()
        .await
        .unwrap();
    let id = replaced.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert_ne!(id, "bad id with spaces");
    assert_eq!(id.len(), 32);
    let seen = up.recorder.requests();
    assert_eq!(seen[0].header("x-request-id"), Some("trace-0123456789"));
    assert_eq!(seen[1].header("x-request-id"), Some(id.as_str()));
    assert_eq!(seen[1].header_count("x-request-id"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_become_problems_without_internals() {
    let up = Upstream::start().await;
    // A port held bound but never listened on refuses every connection, and
    // no other test's server can take it meanwhile (a port that was merely
    // free when picked can be, and then answers for it).
    let held = tokio::net::TcpSocket::new_v4().unwrap();
    held.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let dead = format!("http://{}", held.local_addr().unwrap());
    let policy = format!(
        "upstreams:\n  orders:\n    url: {}\n    timeouts:\n      read: 300ms\n  dead:\n    url: {dead}\n    timeouts:\n      connect: 500ms\n\
         routes:\n\
         \x20 - name: slow\n    methods: [GET]\n    path: /slow\n    upstream: orders\n\
         \x20 - name: slow-but-allowed\n    methods: [GET]\n    path: /slow/{{*rest}}\n    upstream: orders\n    timeouts:\n      read: 5s\n\
         \x20 - name: gone\n    methods: [GET]\n    path: /partners/{{partner}}/orders\n    upstream: dead\n",
        up.url()
    );
    let mut cfg = GatewayConfig::orders(&up.url());
    cfg.policies = vec![("p.yaml".into(), policy)];
    let gw = Gateway::start(cfg).await;

    let resp = raw_request(
        &gw,
        b"GET /slow?ms=3000 HTTP/1.1\r\nHost: gateway.test\r\n\r\n",
    )
    .await
    .unwrap();
    assert_problem(&resp, 504, "upstream_timeout");

    let resp = raw_request(
        &gw,
        b"GET /partners/acme/orders HTTP/1.1\r\nHost: gateway.test\r\n\r\n",
    )
    .await
    .unwrap();
    assert_problem(&resp, 502, "upstream_unavailable");
    let text = String::from_utf8_lossy(&resp.body);
    assert!(
        !text.contains("127.0.0.1"),
        "internal address leaked: {text}"
    );
    assert!(
        !text.to_lowercase().contains("refused"),
        "internal error leaked: {text}"
    );
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_requests_are_routed_and_refused_the_same_way() {
    let up = Upstream::start().await;
    let gw = Gateway::start(GatewayConfig::orders(&up.url())).await;
    let client = gw.h2_client();
    let ok = client
        .get(gw.url("/partners/acme/orders"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.version(), reqwest::Version::HTTP_2);
    assert_eq!(ok.status(), 200);
    assert!(ok.headers().contains_key("strict-transport-security"));
    let missing = client.get(gw.url("/nothing/here")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.headers()["content-type"],
        "application/problem+json"
    );
    let v: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(v["code"], "route_not_found");
    let posted = client
        .post(gw.url("/partners/acme/orders"))
        .header("content-type", "application/json")
        .body(r#"{"sku":"NUT-1","quantity":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 201);
    let seen = up.recorder.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].body, br#"{"sku":"NUT-1","quantity":1}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstreams_are_verified_against_the_configured_ca() {
    let up = Upstream::start().await;
    let tls_up = TlsFront::start(up.addr).await;
    let ca_path = tls_up.dir.path().join("upstream-ca.pem");
    let policy = format!(
        "upstreams:\n  trusted:\n    url: https://127.0.0.1:{port}\n    server_name: upstream.test\n    ca: {ca}\n\
         \x20 untrusted:\n    url: https://127.0.0.1:{port}\n    server_name: upstream.test\n\
         routes:\n\
         \x20 - name: via-trusted\n    methods: [GET]\n    path: /partners/{{partner}}/orders\n    upstream: trusted\n\
         \x20 - name: via-untrusted\n    methods: [GET]\n    path: /partners/{{partner}}/orders/{{id}}\n    upstream: untrusted\n",
        port = tls_up.addr.port(),
        ca = ca_path.display()
    );
    let mut cfg = GatewayConfig::orders(&up.url());
    cfg.policies = vec![("p.yaml".into(), policy)];
    let gw = Gateway::start(cfg).await;
    let client = gw.client();
    let ok = client
        .get(gw.url("/partners/acme/orders"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200, "{}", gw.logs());
    assert_eq!(up.recorder.len(), 1);
    let refused = client
        .get(gw.url("/partners/acme/orders/acme-1001"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 502);
    assert_eq!(
        up.recorder.len(),
        1,
        "an unverified upstream must get nothing"
    );
}

/// A real TLS server in front of the example upstream: terminates TLS with
/// a certificate from its own CA and pipes bytes through.
pub struct TlsFront {
    pub addr: std::net::SocketAddr,
    pub dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl TlsFront {
    pub async fn start(backend: std::net::SocketAddr) -> TlsFront {
        let dir = tempfile::tempdir().unwrap();
        let ca = portcullis::transport::certgen::Ca::new("Upstream test CA").unwrap();
        std::fs::write(dir.path().join("upstream-ca.pem"), ca.cert_pem()).unwrap();
        let leaf = ca.issue(&["upstream.test"]).unwrap();
        use rustls::pki_types::pem::PemObject;
        let certs =
            vec![
                rustls::pki_types::CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes())
                    .unwrap(),
            ];
        let key =
            rustls::pki_types::PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Ok(mut back) = tokio::net::TcpStream::connect(backend).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut back).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        TlsFront { addr, dir, task }
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_timeouts_override_the_upstream_defaults() {
    let up = Upstream::start().await;
    let policy = format!(
        "upstreams:\n  orders:\n    url: {}\n    timeouts:\n      read: 200ms\n\
         routes:\n\
         \x20 - name: patient\n    methods: [GET]\n    path: /slow\n    upstream: orders\n    timeouts:\n      read: 5s\n",
        up.url()
    );
    let mut cfg = GatewayConfig::orders(&up.url());
    cfg.policies = vec![("p.yaml".into(), policy)];
    let gw = Gateway::start(cfg).await;
    let resp = gw
        .client()
        .get(gw.url("/slow?ms=600"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_answers_garbage_is_a_problem_not_a_leak() {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"SMTP READY db-primary.internal:5432\r\n\r\n")
                .await;
        }
    });
    let up = Upstream::start().await;
    let mut cfg = GatewayConfig::orders(&up.url());
    cfg.policies = vec![(
        "p.yaml".into(),
        format!(
            "upstreams:\n  broken:\n    url: http://{addr}\nroutes:\n  - name: broken\n    methods: [GET]\n    path: /partners/{{partner}}/orders\n    upstream: broken\n"
        ),
    )];
    let gw = Gateway::start(cfg).await;
    let resp = raw_request(
        &gw,
        b"GET /partners/acme/orders HTTP/1.1\r\nHost: gateway.test\r\n\r\n",
    )
    .await
    .unwrap();
    assert_problem(&resp, 502, "upstream_error");
    assert!(!String::from_utf8_lossy(&resp.body).contains("db-primary"));
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn w3c_trace_context_is_continued_or_started() {
    let up = Upstream::start().await;
    let gw = Gateway::start(GatewayConfig::orders(&up.url())).await;
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let send = |headers: &str| {
        format!("GET /echo/trace HTTP/1.1\r\nHost: gateway.test\r\n{headers}\r\n").into_bytes()
    };
    let resp = raw_request(
        &gw,
        &send(&format!(
            "traceparent: {incoming}\r\ntracestate: vendor=1\r\n"
        )),
    )
    .await
    .unwrap();
    assert_eq!(resp.status, 200);
    let resp = raw_request(
        &gw,
        &send("traceparent: 00-zz-00f067aa0ba902b7-01\r\ntracestate: vendor=1\r\n"),
    )
    .await
    .unwrap();
    assert_eq!(resp.status, 200);
    let seen = up.recorder.requests();
    // Continued: same trace, the gateway's own span, the client's state kept.
    let continued = seen[0].header("traceparent").unwrap();
    assert!(
        continued.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{continued}"
    );
    assert!(continued.ends_with("-01"));
    assert_ne!(continued, incoming);
    assert_eq!(seen[0].header("tracestate"), Some("vendor=1"));
    // Malformed: a fresh trace, and no state that belonged to another one.
    let started = seen[1].header("traceparent").unwrap();
    assert!(
        started.starts_with("00-") && started.len() == 55,
        "{started}"
    );
    assert!(!started.contains("zz"));
    assert_eq!(seen[1].header("tracestate"), None);
    // The access log names the trace.
    gw.wait_for_log("4bf92f3577b34da6a3ce929d0e0e4736").await;
}
