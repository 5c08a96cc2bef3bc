//! Partner isolation: `{partner}` routes serve only the partner that
//! authenticated, whatever the path tricks, over HTTP/1 and HTTP/2; the
//! partner policy (status, scopes, routes, networks, concurrency) decides
//! who may call what; client identity headers never reach the upstream.

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_cannot_reach_another_partners_resources() {
    let up = Upstream::start().await;
    let gw = Gateway::start(GatewayConfig::orders(&up.url())).await;
    for raw in [
        "/partners/globex/orders",
        "/partners/ACME/orders",
        "/partners/Acme/orders/acme-1001",
        "/partners/acme/../globex/orders",
        "/partners/%67lobex/orders",
        "/partners/./globex/./orders",
        "//partners//globex//orders",
        "/partners/globex/orders/acme-1001",
    ] {
        let req = format!("GET {raw} HTTP/1.1\r\nHost: gateway.test\r\n\r\n");
        let resp = raw_request(&gw, req.as_bytes()).await.expect("a response");
        assert_problem(&resp, 403, "partner_mismatch");
    }
    // The same over HTTP/2, and for a write.
    let h2 = gw.h2_client();
    assert_eq!(
        h2.get(gw.url("/partners/globex/orders"))
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    let post = gw
        .client()
        .post(gw.url("/partners/globex/orders"))
        .header("content-type", "application/json")
        .body(r#"{"sku":"X-1","quantity":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 403);
    assert!(
        up.recorder.is_empty(),
        "upstream saw {:?}",
        up.recorder.requests()
    );

    // The partner's own resources still work, and globex is kept out of acme's.
    assert_eq!(
        gw.client()
            .get(gw.url("/partners/acme/orders"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let globex = gw.client_with_key(Some(gw.key("globex")));
    assert_eq!(
        globex
            .get(gw.url("/partners/acme/orders/acme-1001"))
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(up.recorder.len(), 1);
    gw.wait_for_log("request for another partner's resource refused")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_headers_from_the_client_never_reach_the_upstream() {
    let up = Upstream::start().await;
    let gw = Gateway::start(GatewayConfig::orders(&up.url())).await;
    let resp = raw_request(
        &gw,
        b"GET /partners/acme/orders HTTP/1.1\r\nHost: gateway.test\r\nX-Partner-Id: globex\r\nX-Partner-Id: initech\r\n\
          X-Partner-Role: admin\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Host: internal\r\nForwarded: for=10.0.0.1\r\n\
          X-Real-IP: 10.0.0.2\r\nX-Kept: yes\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(resp.status, 200);
    let seen = &up.recorder.requests()[0];
    assert_eq!(seen.header("x-partner-id"), Some("acme"));
    assert_eq!(seen.header_count("x-partner-id"), 1);
    for gone in [
        "x-partner-role",
        "x-forwarded-for",
        "x-forwarded-host",
        "forwarded",
        "x-real-ip",
    ] {
        assert_eq!(seen.header(gone), None, "{gone} reached the upstream");
    }
    assert_eq!(seen.header("x-kept"), Some("yes"));
}

/// Every path trick aimed at globex's resources, as acme.
const PATH_TRICKS: &[&str] = &[
    "/partners/globex/orders",
    "/partners/ACME/orders",
    "/partners/Acme/orders/acme-1001",
    "/partners/acme/../globex/orders",
    "/partners/acme/%2e%2e/globex/orders",
    "/partners/acme/%2E%2E/globex/orders",
    "/partners/%67lobex/orders",
    "/partners/./globex/./orders",
    "//partners//globex//orders",
    "/partners/globex/orders/acme-1001",
    "/partners/globex;acme/orders",
    "/partners/acme;/../globex/orders",
    "/partners/globex;x=acme/orders",
    "/partners/globex./orders",
    "/partners/globex%2e/orders",
    "/partners/%D0%B0cme/orders",
    "/partners/%EF%BD%87lobex/orders",
    "/partners/glob%C3%A9x/orders",
];

/// Tricks refused as malformed before any partner check.
const MALFORMED_TRICKS: &[&str] = &[
    "/partners/acme%2fglobex/orders",
    "/partners/acme%2F..%2Fglobex/orders",
    "/partners/acme%5c..%5cglobex/orders",
    "/partners/acme\\..\\globex/orders",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_tricks_fail_over_http1_and_http2() {
    let up = Upstream::start().await;
    let gw = Gateway::start(GatewayConfig::orders(&up.url())).await;
    let mut wrong = Vec::new();
    for raw in PATH_TRICKS {
        let req = format!("GET {raw} HTTP/1.1\r\nHost: gateway.test\r\n\r\n");
        let resp = raw_request(&gw, req.as_bytes()).await.expect("a response");
        let (h2_status, _) = h2_raw(&gw, "GET", raw, &[], b"").await;
        let code = resp.json()["code"].as_str().unwrap_or_default().to_string();
        if resp.status != 403 || code != "partner_mismatch" || h2_status != 403 {
            wrong.push(format!(
                "{raw}: HTTP/1 {} {code}, HTTP/2 {h2_status}",
                resp.status
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "not refused as partner_mismatch: {wrong:#?}"
    );
    // A trailing dot segment leaves a trailing slash, which no route has.
    let resp = raw_request(
        &gw,
        b"GET /partners/globex/orders/. HTTP/1.1\r\nHost: gateway.test\r\n\r\n",
    )
    .await
    .unwrap();
    assert_problem(&resp, 404, "route_not_found");
    for raw in MALFORMED_TRICKS {
        let req = format!("GET {raw} HTTP/1.1\r\nHost: gateway.test\r\n\r\n");
        if let Some(resp) = raw_request(&gw, req.as_bytes()).await {
            assert_eq!(resp.status, 400, "{raw}");
        }
        let (status, _) = h2_raw(&gw, "GET", raw, &[], b"").await;
        assert_eq!(status, 400, "HTTP/2 {raw}");
    }
    // Duplicated identity headers over HTTP/2 are stripped like over HTTP/1.
    let (status, _) = h2_raw(
        &gw,
        "GET",
        "/partners/acme/orders",
        &[
            ("x-partner-id", "globex"),
            ("x-partner-id", "initech"),
            ("forwarded", "for=10.0.0.1"),
        ],
        b"",
    )
    .await;
    assert_eq!(status, 200);
    let seen = up.recorder.requests();
    assert_eq!(seen.len(), 1, "only the legitimate request got through");
    assert_eq!(seen[0].header("x-partner-id"), Some("acme"));
    assert_eq!(seen[0].header_count("x-partner-id"), 1);
    assert_eq!(seen[0].header("forwarded"), None);
}

fn partner_policy(upstream: &str) -> String {
    let routes = orders_policy(upstream, "")
        .replace(
            "path: /partners/{partner}/orders\n    upstream: orders\n",
            "path: /partners/{partner}/orders\n    upstream: orders\n    scopes: [orders:read]\n",
        )
        .replacen(
            "    methods: [POST]\n    path: /partners/{partner}/orders\n    upstream: orders\n    scopes: [orders:read]\n",
            "    methods: [POST]\n    path: /partners/{partner}/orders\n    upstream: orders\n    scopes: [orders:write]\n",
            1,
        );
    format!(
        "partners:\n\
         \x20 acme:\n    scopes: [orders:read]\n    limits:\n      max_concurrent: 1\n\
         \x20 globex:\n    status: suspended\n    scopes: [orders:read]\n\
         \x20 initech:\n    scopes: [orders:read]\n    allow_ips: [10.0.0.0/8, \"2001:db8::/32\"]\n\
         \x20 hooli:\n    scopes: [orders:read, orders:write]\n    routes: [get-order, list-orders]\n\
         \x20 piedpiper:\n    scopes: [orders:read]\n    allow_ips: [127.0.0.0/8]\n\
         {routes}"
    )
}

async fn issue(gw: &Gateway, partner: &str) -> String {
    let (status, body) = gw
        .admin_api(
            "POST",
            "/v1/keys",
            Some(serde_json::json!({"partner": partner, "name": "primary"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["key"].as_str().unwrap().to_string()
}

async fn get_as(gw: &Gateway, key: &str, path: &str) -> RawResponse {
    let req = format!("GET {path} HTTP/1.1\r\nHost: gateway.test\r\nX-API-Key: {key}\r\n\r\n");
    raw_request_as_is(gw, req.as_bytes()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partner_policy_decides_who_may_call_what_from_where() {
    let up = Upstream::start().await;
    let mut config = GatewayConfig::orders(&up.url());
    config.policies = vec![("orders.yaml".into(), partner_policy(&up.url()))];
    let gw = Gateway::start(config).await;
    let umbrella = issue(&gw, "umbrella").await;
    let initech = issue(&gw, "initech").await;
    let hooli = issue(&gw, "hooli").await;
    let piedpiper = issue(&gw, "piedpiper").await;

    // A key of an undeclared partner, a suspended partner, a partner
    // calling from outside its networks.
    let resp = get_as(&gw, &umbrella, "/partners/umbrella/orders").await;
    assert_problem(&resp, 403, "partner_unknown");
    let resp = get_as(&gw, gw.key("globex"), "/partners/globex/orders").await;
    assert_problem(&resp, 403, "partner_suspended");
    let resp = get_as(&gw, &initech, "/partners/initech/orders").await;
    assert_problem(&resp, 403, "ip_not_allowed");
    // Scopes: acme reads but may not write.
    let post = format!(
        "POST /partners/acme/orders HTTP/1.1\r\nHost: gateway.test\r\nX-API-Key: {}\r\n\
         Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}",
        gw.key("acme")
    );
    let resp = raw_request_as_is(&gw, post.as_bytes()).await.unwrap();
    assert_problem(&resp, 403, "scope_denied");
    // A route list: hooli holds every scope but may not use `echo`.
    let resp = get_as(&gw, &hooli, "/echo/x").await;
    assert_problem(&resp, 403, "route_not_permitted");
    // Unknown routes stay 404 for everyone, and admin paths are not served here.
    for path in ["/nope", "/metrics", "/healthz", "/v1/keys", "/readyz"] {
        let resp = get_as(&gw, &hooli, path).await;
        assert_problem(&resp, 404, "route_not_found");
    }
    assert!(
        up.recorder.is_empty(),
        "upstream saw {:?}",
        up.recorder.requests()
    );

    for (key, partner) in [
        (gw.key("acme"), "acme"),
        (&hooli, "hooli"),
        (&piedpiper, "piedpiper"),
    ] {
        let resp = get_as(&gw, key, &format!("/partners/{partner}/orders")).await;
        assert_eq!(resp.status, 200, "{partner}");
    }
    assert_eq!(up.recorder.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_over_its_concurrency_limit_gets_429() {
    let up = Upstream::start().await;
    let mut config = GatewayConfig::orders(&up.url());
    let policy = partner_policy(&up.url()).replace(
        "upstream: orders\n    scopes: [orders:read]\n  - name: create-order",
        "upstream: orders\n    scopes: [orders:read]\n  - name: slow\n    methods: [GET]\n    path: /slow\n    upstream: orders\n  - name: create-order",
    );
    assert!(policy.contains("name: slow"));
    config.policies = vec![("orders.yaml".into(), policy)];
    let gw = Gateway::start(config).await;
    // acme may have one request in flight: hold one open upstream...
    let client = gw.client();
    let slow = tokio::spawn({
        let client = client.clone();
        let url = gw.url("/slow?ms=3000");
        async move { client.get(url).send().await.map(|r| r.status().as_u16()) }
    });
    eventually(
        "the slow request to reach the upstream",
        std::time::Duration::from_secs(10),
        || async { (!up.recorder.is_empty()).then_some(()) },
    )
    .await;
    // ...and the next one is refused without reaching it.
    let resp = get_as(&gw, gw.key("acme"), "/partners/acme/orders").await;
    assert_problem(&resp, 429, "partner_concurrency_limit");
    assert_eq!(up.recorder.len(), 1);
    assert_eq!(slow.await.unwrap().unwrap(), 200);
    // The slot is released when the request ends (after its log line, which
    // may trail the last response byte).
    eventually(
        "acme's slot to be released",
        std::time::Duration::from_secs(10),
        || async {
            (get_as(&gw, gw.key("acme"), "/partners/acme/orders")
                .await
                .status
                == 200)
                .then_some(())
        },
    )
    .await;
}
