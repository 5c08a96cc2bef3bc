//! Routes bound to their partner by query, header and JSON body, and the
//! response-side guard; bodies the gateway must read whole reach the
//! upstream byte for byte, or not at all.

use crate::common::*;

fn policy(upstream: &str) -> String {
    format!(
        "partners:\n  acme: {{}}\n  globex: {{}}\n\
         upstreams:\n  up:\n    url: {upstream}\n\
         routes:\n\
         \x20 - name: by-query\n    methods: [GET]\n    path: /echo/query\n    upstream: up\n    bind:\n      query: partner\n\
         \x20 - name: by-header\n    methods: [GET]\n    path: /echo/header\n    upstream: up\n    bind:\n      header: x-account\n\
         \x20 - name: by-body\n    methods: [POST, PUT]\n    path: /echo/body\n    upstream: up\n    max_body_bytes: 2097152\n    bind:\n      body: /order/partner\n\
         \x20 - name: guarded\n    methods: [GET]\n    path: /echo/guard\n    upstream: up\n    response_bind: /headers/x-account/0\n\
         \x20 - name: guarded-small\n    methods: [GET]\n    path: /big\n    upstream: up\n    response_bind: /partner\n    max_response_bytes: 1024\n\
         \x20 - name: list-orders\n    methods: [GET]\n    path: /partners/{{partner}}/orders\n    upstream: up\n    response_bind: /orders/*/partner\n\
         \x20 - name: small-post\n    methods: [POST]\n    path: /echo/small\n    upstream: up\n    max_body_bytes: 16\n"
    )
}

async fn start() -> (Upstream, Gateway) {
    let up = Upstream::start().await;
    let mut config = GatewayConfig::orders(&up.url());
    config.policies = vec![("bound.yaml".into(), policy(&up.url()))];
    let gw = Gateway::start(config).await;
    (up, gw)
}

fn get(path_and_query: &str, extra: &str) -> Vec<u8> {
    format!("GET {path_and_query} HTTP/1.1\r\nHost: gateway.test\r\n{extra}\r\n").into_bytes()
}

fn post(path: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: gateway.test\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_and_header_bindings_accept_only_the_caller() {
    let (up, gw) = start().await;
    for q in [
        "/echo/query?partner=globex",
        "/echo/query?partner=acme&partner=globex",
        "/echo/query?partner=globex&partner=acme",
        "/echo/query?p%61rtner=globex&partner=acme",
        "/echo/query?partner=acme;partner=globex",
        "/echo/query?partner=ACME",
        "/echo/query?partner=acme%2e",
        "/echo/query?partner=%D0%B0cme",
    ] {
        let resp = raw_request(&gw, &get(q, "")).await.unwrap();
        assert_problem(&resp, 403, "partner_mismatch");
    }
    let resp = raw_request(&gw, &get("/echo/query?limit=5", ""))
        .await
        .unwrap();
    assert_problem(&resp, 400, "partner_binding_missing");
    for extra in [
        "X-Account: globex\r\n",
        "X-Account: acme\r\nX-Account: globex\r\n",
        "X-Account: acme, globex\r\n",
        "X-Account: acme \r\nx-account: Acme\r\n",
    ] {
        let resp = raw_request(&gw, &get("/echo/header", extra)).await.unwrap();
        assert_problem(&resp, 403, "partner_mismatch");
    }
    let resp = raw_request(&gw, &get("/echo/header", "")).await.unwrap();
    assert_problem(&resp, 400, "partner_binding_missing");
    assert!(
        up.recorder.is_empty(),
        "upstream saw {:?}",
        up.recorder.requests()
    );

    // A repeat, even of the caller's id, has no single reading (qs makes it
    // an array), nor has another spelling (ASP.NET reads `Partner`, PHP
    // does not): refused before either reaches the upstream.
    for q in ["partner=acme&partner=%61cme", "Partner=globex&partner=acme"] {
        let resp = raw_request(&gw, &get(&format!("/echo/query?{q}"), ""))
            .await
            .unwrap();
        assert_problem(&resp, 400, "ambiguous_parameter");
    }
    assert!(up.recorder.is_empty());
    let ok = raw_request(&gw, &get("/echo/query?partner=%61cme", ""))
        .await
        .unwrap();
    assert_eq!(ok.status, 200);
    let ok = raw_request(&gw, &get("/echo/header", "X-Account: acme\r\n"))
        .await
        .unwrap();
    assert_eq!(ok.status, 200);
    assert_eq!(up.recorder.len(), 2);
    gw.wait_for_log("request for another partner's resource refused")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_binding_refuses_other_partners_and_ambiguous_json() {
    let (up, gw) = start().await;
    for (body, status, code) in [
        (r#"{"order":{"partner":"globex"}}"#, 403, "partner_mismatch"),
        (r#"{"order":{"partner":"ACME"}}"#, 403, "partner_mismatch"),
        (r#"{"order":{"partner":["acme"]}}"#, 403, "partner_mismatch"),
        (
            r#"{"order":{"partner":"acme","partner":"globex"}}"#,
            400,
            "json_duplicate_key",
        ),
        (
            r#"{"order":{"partner":"globex"},"order":{"partner":"acme"}}"#,
            400,
            "json_duplicate_key",
        ),
        (
            r#"{"order":{"partner":"acme","\u0070artner":"globex"}}"#,
            400,
            "json_duplicate_key",
        ),
        (r#"{"order":{"sku":"x"}}"#, 400, "partner_binding_missing"),
        (r#"{"order":{"partner":"acme"}"#, 400, "body_not_json"),
        ("", 400, "body_not_json"),
        (
            r#"{"order":{"partner":"acme"}} {"order":{"partner":"globex"}}"#,
            400,
            "body_not_json",
        ),
    ] {
        let resp = raw_request(&gw, &post("/echo/body", body)).await.unwrap();
        assert_problem(&resp, status, code);
    }
    let deep = format!(
        "{{\"order\":{{\"partner\":\"acme\"}},\"x\":{}{}}}",
        "[".repeat(100),
        "]".repeat(100)
    );
    let resp = raw_request(&gw, &post("/echo/body", &deep)).await.unwrap();
    assert_problem(&resp, 400, "json_too_deep");
    let resp = raw_request(&gw, &post("/echo/small", "01234567890123456789"))
        .await
        .unwrap();
    assert_problem(&resp, 413, "body_too_large");
    assert!(
        up.recorder.is_empty(),
        "upstream saw {:?}",
        up.recorder.requests()
    );

    // Over HTTP/2, too.
    let resp = gw
        .h2_client()
        .post(gw.url("/echo/body"))
        .header("content-type", "application/json")
        .body(r#"{"order":{"partner":"globex"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(up.recorder.is_empty());

    let good = r#"{"order":{"partner":"acme","sku":"X-1"}}"#;
    let resp = raw_request(&gw, &post("/echo/body", good)).await.unwrap();
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let seen = &up.recorder.requests()[0];
    assert_eq!(seen.body, good.as_bytes());
    assert_eq!(seen.header("x-partner-id"), Some("acme"));
    assert_eq!(seen.header("x-api-key"), None);
}

/// A JSON body of exactly `len` bytes bound to acme.
fn body_of(len: usize) -> Vec<u8> {
    let head = br#"{"order":{"partner":"acme"},"pad":""#;
    let tail = br#""}"#;
    let mut body = head.to_vec();
    body.extend(std::iter::repeat_n(b'x', len - head.len() - tail.len()));
    body.extend_from_slice(tail);
    assert_eq!(body.len(), len);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspected_bodies_of_any_size_and_framing_arrive_byte_for_byte() {
    let (up, gw) = start().await;
    let h1 = gw.client();
    let h2 = gw.h2_client();
    let sizes = [1024, 64 * 1024 - 1, 64 * 1024, 64 * 1024 + 1, 1024 * 1024];
    for (i, len) in sizes.iter().enumerate() {
        let body = body_of(*len);
        // Content-Length over HTTP/1.1, chunked over HTTP/1.1, and HTTP/2.
        let fixed = h1
            .post(gw.url("/echo/body"))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(fixed.status(), 200, "{len} bytes, content-length");
        let stream = futures_util::stream::iter(
            body.chunks(10_000)
                .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
                .collect::<Vec<_>>(),
        );
        let chunked = h1
            .put(gw.url("/echo/body"))
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await
            .unwrap();
        assert_eq!(chunked.status(), 200, "{len} bytes, chunked");
        let over_h2 = h2
            .post(gw.url("/echo/body"))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(over_h2.status(), 200, "{len} bytes, HTTP/2");
        let seen = up.recorder.requests();
        assert_eq!(seen.len(), 3 * (i + 1));
        for r in &seen[3 * i..] {
            assert!(r.body == body, "{len}-byte body altered on the way");
            assert_eq!(r.header("content-length"), Some(len.to_string().as_str()));
            assert_eq!(r.header("transfer-encoding"), None);
        }
    }

    // Past the route's limit: refused before anything is forwarded.
    let before = up.recorder.len();
    // A declared length over the limit is refused before the body is sent.
    let declared = format!(
        "POST /echo/body HTTP/1.1\r\nHost: gateway.test\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        2 * 1024 * 1024 + 1
    );
    let too_big = raw_request(&gw, declared.as_bytes()).await.unwrap();
    assert_problem(&too_big, 413, "body_too_large");
    let stream = futures_util::stream::iter(
        body_of(3 * 1024 * 1024)
            .chunks(64 * 1024)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let too_big_chunked = h1
        .put(gw.url("/echo/body"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await;
    // The gateway answers 413 as soon as the limit is crossed; the client
    // may still be writing and see the connection close instead.
    if let Ok(resp) = too_big_chunked {
        assert_eq!(resp.status(), 413);
    }
    assert_eq!(up.recorder.len(), before, "upstream saw an oversized body");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_naming_another_partner_is_withheld() {
    let (up, gw) = start().await;
    let own = raw_request(&gw, &get("/echo/guard", "X-Account: acme\r\n"))
        .await
        .unwrap();
    assert_eq!(own.status, 200, "{}", String::from_utf8_lossy(&own.body));
    assert_eq!(own.json()["headers"]["x-account"][0], "acme");

    // The upstream answers, but with data the caller must not see.
    let leak = raw_request(&gw, &get("/echo/guard", "X-Account: globex\r\n"))
        .await
        .unwrap();
    assert_problem(&leak, 502, "response_partner_mismatch");
    assert!(!String::from_utf8_lossy(&leak.body).contains("globex"));
    let missing = raw_request(&gw, &get("/echo/guard", "")).await.unwrap();
    assert_problem(&missing, 502, "response_partner_mismatch");
    assert_eq!(up.recorder.len(), 3, "the upstream did answer each time");
    gw.wait_for_log("upstream response for another partner withheld")
        .await;
    // Requests are counted once answered, in the logging phase.
    let sample = "portcullis_requests_total{code=\"response_partner_mismatch\",decision=\"error\",route=\"guarded\",status=\"502\"}";
    eventually(
        "both withheld answers counted",
        std::time::Duration::from_secs(10),
        || async { (gw.metric(sample).await == 2.0).then_some(()) },
    )
    .await;

    // Non-JSON or oversized answers cannot be checked, so they are withheld too.
    let big = raw_request(&gw, &get("/big?bytes=4096", "")).await.unwrap();
    assert_problem(&big, 502, "response_too_large");
    let small = raw_request(&gw, &get("/big?bytes=10", "")).await.unwrap();
    assert_problem(&small, 502, "response_partner_mismatch");

    // A wildcard over a list, over HTTP/2.
    let list = gw
        .h2_client()
        .get(gw.url("/partners/acme/orders"))
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 200);
    let v: serde_json::Value = list.json().await.unwrap();
    assert!(v["orders"].as_array().is_some_and(|o| !o.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_does_not_arrive_in_time_is_refused() {
    let up = Upstream::start().await;
    let mut config = GatewayConfig::orders(&up.url());
    config.policies = vec![("bound.yaml".into(), policy(&up.url()))];
    config.http = "  body_timeout: 1s\n".into();
    let gw = Gateway::start(config).await;
    // Ten of the hundred declared bytes, then nothing: the gateway answers
    // on its own deadline, and nothing was forwarded.
    let mut s = gw.raw_tls().await;
    let head = gw.authed(
        b"POST /echo/body HTTP/1.1\r\nHost: gateway.test\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"order\":",
    );
    tokio::io::AsyncWriteExt::write_all(&mut s, &head)
        .await
        .unwrap();
    let resp = read_response(&mut s).await.unwrap();
    assert_problem(&resp, 408, "body_timeout");
    assert!(
        up.recorder.is_empty(),
        "upstream saw {:?}",
        up.recorder.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_body_over_the_limit_is_cut() {
    let (_up, gw) = start().await;
    // `small-post` streams (no body stage) with a 16-byte limit; a chunked
    // body declares no length, so it is counted as it passes.
    let mut req =
        b"POST /echo/small HTTP/1.1\r\nHost: gateway.test\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
    for _ in 0..4 {
        req.extend_from_slice(b"a\r\n0123456789\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let resp = raw_request(&gw, &req).await.unwrap();
    assert_problem(&resp, 413, "body_too_large");
}
