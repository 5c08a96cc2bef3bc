//! One request, one meaning: every request the upstream receives has the
//! interpretation the gateway checked, whichever framework reads it. Each
//! probe here got through (or misbehaved) before the rule it tests; each
//! refusal is checked for its status, its problem code and that the
//! upstream saw nothing, over HTTP/1.1 and HTTP/2.

use crate::common::*;

pub fn policy(upstream: &str) -> String {
    format!(
        "partners:\n  acme: {{}}\n  globex: {{}}\n\
         upstreams:\n  up:\n    url: {upstream}\n\
         routes:\n\
         \x20 - name: list-orders\n    methods: [GET]\n    path: /partners/{{partner}}/orders\n    upstream: up\n\
         \x20 - name: create-order\n    methods: [POST]\n    path: /partners/{{partner}}/orders\n    upstream: up\n\
         \x20 - name: get-order\n    methods: [GET]\n    path: /partners/{{partner}}/orders/{{id}}\n    upstream: up\n\
         \x20 - name: by-query\n    methods: [GET, POST]\n    path: /echo/query\n    upstream: up\n    bind:\n      query: partner\n\
         \x20 - name: by-body\n    methods: [POST]\n    path: /echo/body\n    upstream: up\n    bind:\n      body: /order/partner\n\
         \x20 - name: echo\n    methods: [GET, POST, DELETE]\n    path: /echo/plain\n    upstream: up\n\
         \x20 - name: echo-with-body\n    methods: [GET, DELETE]\n    path: /echo/search\n    upstream: up\n    allow_body: true\n\
         \x20 - name: reply\n    methods: [POST]\n    path: /reply\n    upstream: up\n"
    )
}

async fn start_with_http(http: &str) -> (Upstream, Gateway) {
    let up = Upstream::start().await;
    let mut config = GatewayConfig::orders(&up.url());
    config.policies = vec![("meaning.yaml".into(), policy(&up.url()))];
    config.http = http.to_string();
    let gw = Gateway::start(config).await;
    (up, gw)
}

async fn start() -> (Upstream, Gateway) {
    start_with_http("").await
}

fn get(target: &str, extra: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: gateway.test\r\n{extra}\r\n").into_bytes()
}

fn post(target: &str, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {target} HTTP/1.1\r\nHost: gateway.test\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The problem code of an HTTP/2 refusal, with its status checked.
fn h2_problem(answer: &(u16, Vec<u8>), status: u16, code: &str) {
    assert_eq!(
        answer.0,
        status,
        "status; body: {}",
        String::from_utf8_lossy(&answer.1)
    );
    let doc: serde_json::Value = serde_json::from_slice(&answer.1).expect("problem document");
    assert_eq!(doc["code"], code, "{doc}");
}

fn assert_upstream_saw_nothing(up: &Upstream, what: &str) {
    assert!(
        up.recorder.is_empty(),
        "{what}: upstream saw {:?}",
        up.recorder.requests()
    );
}

const OVERRIDES: [(&str, &str); 7] = [
    ("X-Original-URL", "/partners/globex/orders/globex-1001"),
    ("X-Rewrite-URL", "/partners/globex/orders/globex-1001"),
    ("X-HTTP-Method-Override", "POST"),
    ("X-HTTP-Method", "DELETE"),
    ("X-Method-Override", "PUT"),
    ("X-Forwarded-Prefix", "/admin"),
    ("X-Site-Override", "/partners/globex"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrite_and_override_headers_never_reach_the_upstream() {
    let (up, gw) = start_with_http("  override_headers: [x-site-*]\n").await;
    let extra: String = OVERRIDES
        .iter()
        .map(|(n, v)| format!("{n}: {v}\r\n"))
        .collect();
    let resp = raw_request(&gw, &get("/partners/acme/orders/acme-1001", &extra))
        .await
        .unwrap();
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.json()["partner"], "acme");
    let h2 = h2_raw(
        &gw,
        "GET",
        "/partners/acme/orders/acme-1001",
        &OVERRIDES,
        b"",
    )
    .await;
    assert_eq!(h2.0, 200);
    let seen = up.recorder.requests();
    assert_eq!(seen.len(), 2);
    for request in seen {
        assert_eq!(request.method, "GET");
        assert_eq!(request.path_and_query, "/partners/acme/orders/acme-1001");
        for (name, _) in OVERRIDES {
            assert_eq!(request.header_count(name), 0, "{name} reached the upstream");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_override_fields_are_refused() {
    let (up, gw) = start().await;
    for target in [
        "/partners/acme/orders?_method=POST",
        "/partners/acme/orders?%5Fmethod=DELETE",
        "/partners/acme/orders?x=1;_method=PUT",
    ] {
        let resp = raw_request(&gw, &get(target, "")).await.unwrap();
        assert_problem(&resp, 400, "method_override");
        h2_problem(
            &h2_raw(&gw, "GET", target, &[], b"").await,
            400,
            "method_override",
        );
    }
    let form = "sku=BOLT-7&quantity=1&_method=DELETE";
    let resp = raw_request(
        &gw,
        &post(
            "/partners/acme/orders",
            "application/x-www-form-urlencoded",
            form,
        ),
    )
    .await
    .unwrap();
    assert_problem(&resp, 400, "method_override");
    let multipart =
        "--b\r\nContent-Disposition: form-data; name=\"_method\"\r\n\r\nDELETE\r\n--b--\r\n";
    let resp = raw_request(
        &gw,
        &post(
            "/partners/acme/orders",
            "multipart/form-data; boundary=b",
            multipart,
        ),
    )
    .await
    .unwrap();
    assert_problem(&resp, 400, "method_override");
    let h2 = h2_raw(
        &gw,
        "POST",
        "/partners/acme/orders",
        &[("content-type", "application/x-www-form-urlencoded")],
        form.as_bytes(),
    )
    .await;
    h2_problem(&h2, 400, "method_override");
    assert_upstream_saw_nothing(&up, "method override");
    // A form without the override still goes through, whole.
    let resp = raw_request(
        &gw,
        &post(
            "/echo/plain",
            "application/x-www-form-urlencoded",
            "sku=A&method=x",
        ),
    )
    .await
    .unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(up.recorder.requests()[0].body, b"sku=A&method=x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_names_cgi_backends_would_fold_are_refused() {
    let (up, gw) = start().await;
    for header in [
        "X_Partner_Id: globex",
        "X_Original_URL: /partners/globex/orders",
        "X.Partner.Id: globex",
    ] {
        let resp = raw_request(&gw, &get("/partners/acme/orders", &format!("{header}\r\n")))
            .await
            .unwrap();
        assert_problem(&resp, 400, "header_name_ambiguous");
    }
    let h2 = h2_raw(
        &gw,
        "GET",
        "/partners/acme/orders",
        &[("x_partner_id", "globex")],
        b"",
    )
    .await;
    h2_problem(&h2, 400, "header_name_ambiguous");
    assert_upstream_saw_nothing(&up, "underscore header");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_names_frameworks_read_as_the_bound_one_are_refused() {
    let (up, gw) = start().await;
    for q in [
        "partner=acme&partner[]=globex",
        "partner=acme&partner%5B%5D=globex",
        "partner=acme&partner[0]=globex",
        "partner[$ne]=acme",
        "partner=acme&partner[x][y]=globex",
        "partner=acme&partner.id=globex",
        "partner=acme&%20partner=globex",
    ] {
        let target = format!("/echo/query?{q}");
        let resp = raw_request(&gw, &get(&target, "")).await.unwrap();
        assert_problem(&resp, 400, "ambiguous_parameter");
        h2_problem(
            &h2_raw(&gw, "GET", &target, &[], b"").await,
            400,
            "ambiguous_parameter",
        );
    }
    // PHP's $_REQUEST, Rails' params and Express merge a form body with the query.
    for (body, status, code) in [
        ("partner=globex", 403, "partner_mismatch"),
        ("partner[]=globex", 400, "ambiguous_parameter"),
    ] {
        let resp = raw_request(
            &gw,
            &post(
                "/echo/query?partner=acme",
                "application/x-www-form-urlencoded",
                body,
            ),
        )
        .await
        .unwrap();
        assert_problem(&resp, status, code);
    }
    assert_upstream_saw_nothing(&up, "query alias");
    let resp = raw_request(&gw, &get("/echo/query?partner=acme&limit=5", ""))
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_keys_differing_only_in_case_are_refused() {
    let (up, gw) = start().await;
    for body in [
        r#"{"order":{"partner":"acme","Partner":"globex"}}"#,
        r#"{"order":{"partner":"acme"},"ORDER":{"partner":"globex"}}"#,
        "{\"order\":{\"partner\":\"acme\",\"\u{212A}\":1,\"k\":2}}",
    ] {
        let resp = raw_request(&gw, &post("/echo/body", "application/json", body))
            .await
            .unwrap();
        assert_problem(&resp, 400, "json_case_collision");
        let h2 = h2_raw(
            &gw,
            "POST",
            "/echo/body",
            &[("content-type", "application/json")],
            body.as_bytes(),
        )
        .await;
        h2_problem(&h2, 400, "json_case_collision");
    }
    assert_upstream_saw_nothing(&up, "case collision");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_targets_reach_the_upstream_in_origin_form() {
    let (up, gw) = start().await;
    for (target, expected) in [
        (
            "https://gateway.test/partners/acme/orders",
            "/partners/acme/orders",
        ),
        (
            "https://gateway.test/partners/acme/orders?limit=5",
            "/partners/acme/orders?limit=5",
        ),
        (
            "https://gateway.test/partners/acme/./orders",
            "/partners/acme/orders",
        ),
    ] {
        up.recorder.clear();
        let resp = raw_request(&gw, &get(target, "")).await.unwrap();
        assert_eq!(resp.status, 200, "{target}");
        let seen = up.recorder.requests();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].path_and_query, expected, "{target}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_anywhere_in_the_url_are_refused_and_never_logged() {
    let (up, gw) = start().await;
    let key = gw.key("acme").to_string();
    let secret = &key["ptc_live_".len()..];
    let targets = [
        format!("/partners/acme/orders?partner=acme;api_key={key}"),
        format!("/partners/acme/orders?k=ptc%5Flive%5F{secret}"),
        format!("/partners/acme/orders?k=%2570tc_live_{secret}"),
        format!("/partners/acme/orders/{key}"),
        format!("/partners/acme/orders/ptc_live_{secret}/x"),
    ];
    for target in &targets {
        let resp = raw_request(&gw, &get(target, "")).await.unwrap();
        assert_problem(&resp, 400, "key_in_url");
        h2_problem(
            &h2_raw(&gw, "GET", target, &[], b"").await,
            400,
            "key_in_url",
        );
    }
    assert_upstream_saw_nothing(&up, "key in URL");
    gw.wait_for_log("key_in_url").await;
    let audit = std::fs::read_to_string(gw.path("audit.log")).unwrap_or_default();
    for (what, text) in [("log", gw.logs()), ("audit trail", audit)] {
        assert!(!text.contains(secret), "the key reached the {what}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_in_headers_that_carry_no_credential_are_refused() {
    let (up, gw) = start().await;
    let key = gw.key("globex").to_string();
    let secret = &key["ptc_live_".len()..];
    for header in [
        format!("Cookie: session=1; k={key}"),
        format!("X-Debug: ptc%5Flive%5F{secret}"),
        format!("Referer: https://partner.test/?k={key}"),
    ] {
        let resp = raw_request(&gw, &get("/partners/acme/orders", &format!("{header}\r\n")))
            .await
            .unwrap();
        assert_problem(&resp, 400, "key_in_header");
    }
    let cookie = format!("k={key}");
    let h2 = h2_raw(
        &gw,
        "GET",
        "/partners/acme/orders",
        &[("cookie", cookie.as_str())],
        b"",
    )
    .await;
    h2_problem(&h2, 400, "key_in_header");
    assert_upstream_saw_nothing(&up, "key in header");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_on_bodyless_methods_are_refused_unless_the_route_opts_in() {
    let (up, gw) = start().await;
    let with_length = b"GET /echo/plain HTTP/1.1\r\nHost: gateway.test\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"sku\":\"A-1\"}";
    let chunked = b"DELETE /echo/plain HTTP/1.1\r\nHost: gateway.test\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n";
    for bytes in [&with_length[..], &chunked[..]] {
        let resp = raw_request(&gw, bytes).await.unwrap();
        assert_problem(&resp, 400, "body_not_allowed");
    }
    let h2 = h2_raw(&gw, "GET", "/echo/plain", &[], b"{\"sku\":\"A-1\"}").await;
    h2_problem(&h2, 400, "body_not_allowed");
    assert_upstream_saw_nothing(&up, "body on GET");
    let opted_in = String::from_utf8_lossy(with_length).replace("/echo/plain", "/echo/search");
    let resp = raw_request(&gw, opted_in.as_bytes()).await.unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(up.recorder.requests()[0].body, b"{\"sku\":\"A-1\"}");
    // A bodyless GET is what it always was.
    let resp = raw_request(&gw, &get("/echo/plain", "")).await.unwrap();
    assert_eq!(resp.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withheld_answers_are_built_fresh_and_their_bodies_logged_safely() {
    let (_up, gw) = start().await;
    let key = gw.key("globex").to_string();
    let secret = &key["ptc_live_".len()..];
    // The leaking header itself is what got the answer withheld.
    let resp = raw_request(
        &gw,
        &post("/reply?header=x-session-token", "text/plain", &key),
    )
    .await
    .unwrap();
    assert_problem(&resp, 502, "response_leak_blocked");
    for name in [
        "x-session-token",
        "x-powered-by",
        "x-internal-trace-id",
        "server",
    ] {
        assert!(resp.header(name).is_none(), "{name} on a withheld answer");
    }
    // A replaced 5xx body is logged without its secrets and cannot forge a line.
    let pem =
        "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----";
    let body = format!("boom {key}\n{pem}\nINFO portcullis::access: forged=yes\n");
    let resp = raw_request(&gw, &post("/reply?status=500", "text/plain", &body))
        .await
        .unwrap();
    assert_problem(&resp, 500, "upstream_failed");
    let line = gw.wait_for_log("upstream answer withheld").await;
    assert!(line.contains("boom"), "{line}");
    let logs = gw.logs();
    assert!(!logs.contains(secret), "key in the log: {logs}");
    assert!(
        !logs.contains("MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"),
        "PEM in the log"
    );
    assert!(
        !logs
            .lines()
            .any(|l| l.starts_with("INFO portcullis::access: forged")),
        "a forged line: {logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_past_pingoras_parser_limit_are_too_long_not_malformed() {
    let (up, gw) = start().await;
    for len in [9 * 1024, 70 * 1024, 500 * 1024] {
        let target = format!("/partners/acme/orders?pad={}", "a".repeat(len));
        let resp = raw_request(&gw, &get(&target, "")).await.unwrap();
        assert_problem(&resp, 414, "uri_too_long");
    }
    assert_upstream_saw_nothing(&up, "long target");
}
