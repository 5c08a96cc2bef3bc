//! Response minimisation against the example upstream, which leaks
//! everything a backend can: banner headers, internal fields, stack traces.

use crate::common::*;

const KEY_SHAPED: &str = "ptc_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
const PEM: &str = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIAbc\n-----END EC PRIVATE KEY-----";

fn policy(upstream: &str) -> String {
    format!(
        "partners:\n  acme: {{}}\n  globex: {{}}\n\
         upstreams:\n  up:\n    url: {upstream}\n\
         routes:\n\
         \x20 - name: list-orders\n    methods: [GET]\n    path: /partners/{{partner}}/orders\n    upstream: up\n\
         \x20   response:\n      allow: [/partner, /orders/*/id, /orders/*/sku, /orders/*/quantity, /orders/*/status]\n\
         \x20 - name: get-order\n    methods: [GET]\n    path: /partners/{{partner}}/orders/{{id}}\n    upstream: up\n\
         \x20   response:\n      deny: [/internal_cost_cents, /db_shard, /created_by]\n      partner_exceptions:\n        acme: [/internal_cost_cents]\n      cache_control: \"private, max-age=30\"\n\
         \x20 - name: create-order\n    methods: [POST]\n    path: /partners/{{partner}}/orders\n    upstream: up\n\
         \x20 - name: explode\n    methods: [GET]\n    path: /partners/{{partner}}/orders/{{id}}/explode\n    upstream: up\n\
         \x20 - name: echo\n    methods: [GET, POST]\n    path: /echo/streamed\n    upstream: up\n\
         \x20 - name: echo-held\n    methods: [POST]\n    path: /echo/held\n    upstream: up\n    response:\n      deny: [/headers]\n\
         \x20 - name: big\n    methods: [GET]\n    path: /big\n    upstream: up\n    max_response_bytes: 2048\n    response:\n      deny: [/x]\n"
    )
}

async fn start() -> (Upstream, Gateway) {
    let up = Upstream::start().await;
    let mut config = GatewayConfig::orders(&up.url());
    config.policies = vec![("min.yaml".into(), policy(&up.url()))];
    let gw = Gateway::start(config).await;
    (up, gw)
}

fn get(target: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: gateway.test\r\nAccept-Encoding: gzip, br\r\n\r\n")
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_headers_go_and_security_headers_come() {
    let (up, gw) = start().await;
    // The upstream really does advertise itself.
    let direct = reqwest::get(format!("{}/partners/acme/orders", up.url()))
        .await
        .unwrap();
    assert!(direct.headers().contains_key("server"));
    assert!(direct.headers().contains_key("x-powered-by"));
    assert!(direct.headers().contains_key("x-internal-trace-id"));

    for target in [
        "/partners/acme/orders",
        "/partners/acme/orders/acme-1001",
        "/echo/streamed",
    ] {
        let resp = raw_request(&gw, &get(target)).await.unwrap();
        assert_eq!(resp.status, 200, "{target}");
        for gone in ["server", "x-powered-by", "x-internal-trace-id", "via"] {
            assert_eq!(resp.header(gone), None, "{gone} on {target}");
        }
        assert_eq!(resp.header("x-content-type-options"), Some("nosniff"));
        assert!(resp.header("strict-transport-security").is_some());
    }
    let resp = raw_request(&gw, &get("/partners/acme/orders"))
        .await
        .unwrap();
    assert_eq!(resp.header("cache-control"), Some("no-store"));
    let resp = raw_request(&gw, &get("/partners/acme/orders/acme-1001"))
        .await
        .unwrap();
    assert_eq!(resp.header("cache-control"), Some("private, max-age=30"));
    // Gateway-generated answers carry no banner either.
    let resp = raw_request(&gw, &get("/nowhere")).await.unwrap();
    assert_eq!(resp.header("server"), None);
    // Filtered routes ask the upstream not to compress.
    let seen = up.recorder.requests();
    let filtered = seen
        .iter()
        .find(|r| r.path_and_query == "/partners/acme/orders" && r.header("x-partner-id").is_some())
        .unwrap();
    assert_eq!(filtered.header("accept-encoding"), Some("identity"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_fields_a_route_allows_reach_the_partner() {
    let (_up, gw) = start().await;
    let list = raw_request(&gw, &get("/partners/acme/orders"))
        .await
        .unwrap();
    assert_eq!(list.status, 200);
    let v = list.json();
    let orders = v["orders"].as_array().unwrap();
    assert!(!orders.is_empty());
    for order in orders {
        let mut keys: Vec<&str> = order
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort();
        assert_eq!(keys, ["id", "quantity", "sku", "status"], "{order}");
    }
    assert_eq!(v["partner"], "acme");

    // A deny-list, with acme allowed one of the denied fields.
    let acme = raw_request(&gw, &get("/partners/acme/orders/acme-1001"))
        .await
        .unwrap()
        .json();
    assert!(acme.get("internal_cost_cents").is_some(), "{acme}");
    assert!(acme.get("db_shard").is_none() && acme.get("created_by").is_none());
    assert_eq!(acme["id"], "acme-1001");
    let globex = gw.client_with_key(Some(gw.key("globex")));
    let g: serde_json::Value = globex
        .get(gw.url("/partners/globex/orders/globex-1001"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(g.get("internal_cost_cents").is_none(), "{g}");
    assert!(g.get("db_shard").is_none());

    // What cannot be filtered is not passed on.
    let big = raw_request(&gw, &get("/big?bytes=4096")).await.unwrap();
    assert_problem(&big, 502, "response_too_large");
    let binary = raw_request(&gw, &get("/big?bytes=100")).await.unwrap();
    assert_problem(&binary, 502, "response_not_filterable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_error_bodies_are_replaced_and_logged() {
    let (_up, gw) = start().await;
    let resp = raw_request(&gw, &get("/partners/acme/orders/acme-1001/explode"))
        .await
        .unwrap();
    assert_problem(&resp, 500, "upstream_failed");
    let text = String::from_utf8_lossy(&resp.body);
    for secret in ["SQLSTATE", "db-primary", "Stack trace", "/var/www"] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    let logs = gw
        .wait_for_log("upstream answer withheld from the client")
        .await;
    assert!(
        logs.contains("SQLSTATE"),
        "the original body goes to the log"
    );

    // 4xx answers pass by default (they tell the partner what to fix)...
    let bad = b"POST /partners/acme/orders HTTP/1.1\r\nHost: gateway.test\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n[]";
    let resp = raw_request(&gw, bad).await.unwrap();
    assert_eq!(resp.status, 400);
    assert!(String::from_utf8_lossy(&resp.body).contains("Unable to decode"));
    drop(gw);
    // ...unless the gateway is told to replace them too.
    let up = Upstream::start().await;
    let mut config = GatewayConfig::orders(&up.url());
    config.policies = vec![("min.yaml".into(), policy(&up.url()))];
    config.extra = "response:\n  replace_errors: all\n".into();
    let gw = Gateway::start(config).await;
    let resp = raw_request(&gw, bad).await.unwrap();
    assert_problem(&resp, 400, "upstream_failed");
    assert!(!String::from_utf8_lossy(&resp.body).contains("JsonMapper"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_in_responses_are_withheld() {
    let (_up, gw) = start().await;
    let post = |path: &str, body: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: gateway.test\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    };
    // Held responses are refused outright.
    for secret in [KEY_SHAPED, PEM] {
        let resp = raw_request(&gw, &post("/echo/held", &format!("note: {secret}")))
            .await
            .unwrap();
        assert_problem(&resp, 502, "response_leak_blocked");
    }
    // A streamed response is cut before the secret is delivered.
    let got = raw_request(&gw, &post("/echo/streamed", &format!("note: {KEY_SHAPED}"))).await;
    if let Some(resp) = got {
        assert!(
            !String::from_utf8_lossy(&resp.body).contains(KEY_SHAPED),
            "the key reached the client"
        );
    }
    gw.wait_for_log("secret in a streamed upstream response; response cut")
        .await;
    // Clean answers still flow.
    let resp = raw_request(&gw, &post("/echo/streamed", "note: nothing to see"))
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
}
