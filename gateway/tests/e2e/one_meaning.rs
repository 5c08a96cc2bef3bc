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
         \x20 - name: reply\n    methods: [POST]\n    path: /reply\n    upstream: up\n\
         \x20 - name: filtered\n    methods: [POST]\n    path: /reply/filtered\n    upstream: up\n\
         \x20   response:\n      deny: [/internal, /items/*/cost]\n\
         \x20 - name: validated\n    methods: [GET, POST]\n    path: /echo/validated\n    upstream: up\n\
         \x20   validate:\n      body: {{type: object, properties: {{quantity: {{type: integer, maximum: 1000}}, price: {{type: number, maximum: 1000}}}}}}\n      body_required: false\n\
         \x20     query:\n        type: object\n        properties:\n          limit: {{type: number, maximum: 1000}}\n"
    )
}

async fn start_with_http(http: &str) -> (Upstream, Gateway) {
    start_with(http, "").await
}

async fn start_with(http: &str, extra: &str) -> (Upstream, Gateway) {
    let up = Upstream::start().await;
    let mut config = GatewayConfig::orders(&up.url());
    config.policies = vec![("meaning.yaml".into(), policy(&up.url()))];
    config.http = http.to_string();
    config.extra = extra.to_string();
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
    // Laravel also takes it from a JSON body (read here: the route binds it).
    let json = r#"{"order":{"partner":"acme"},"_method":"DELETE"}"#;
    let resp = raw_request(&gw, &post("/echo/body", "application/json", json))
        .await
        .unwrap();
    assert_problem(&resp, 400, "method_override");
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

/// An upstream that records the request line exactly as it arrived (the
/// example upstream's framework shows only the parsed path) and answers
/// every request with `{}`.
async fn request_line_recorder() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = lines.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    while let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                        let block = head.drain(..end + 4).collect::<Vec<u8>>();
                        let line = String::from_utf8_lossy(&block);
                        seen.lock()
                            .unwrap()
                            .push(line.lines().next().unwrap_or_default().to_string());
                        let ok = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
                        if conn.write_all(ok).await.is_err() {
                            return;
                        }
                    }
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
            });
        }
    });
    (url, lines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_targets_reach_the_upstream_in_origin_form() {
    let (upstream, lines) = request_line_recorder().await;
    let mut config = GatewayConfig::orders(&upstream);
    config.policies = vec![("meaning.yaml".into(), policy(&upstream))];
    let gw = Gateway::start(config).await;
    let port = gw.https.port();
    for (target, host, expected) in [
        (
            "https://gateway.test/partners/acme/orders".to_string(),
            "Host: gateway.test\r\n",
            "GET /partners/acme/orders HTTP/1.1",
        ),
        (
            "https://localhost/partners/acme/orders?limit=5".to_string(),
            "",
            "GET /partners/acme/orders?limit=5 HTTP/1.1",
        ),
        (
            format!("https://localhost:{port}/partners/acme/./orders"),
            "",
            "GET /partners/acme/orders HTTP/1.1",
        ),
    ] {
        lines.lock().unwrap().clear();
        let request = format!("GET {target} HTTP/1.1\r\n{host}\r\n");
        let resp = raw_request(&gw, request.as_bytes()).await.unwrap();
        assert_eq!(
            resp.status,
            200,
            "{target}: {}",
            String::from_utf8_lossy(&resp.body)
        );
        assert_eq!(*lines.lock().unwrap(), [expected], "{target}");
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
    // The first answer was withheld too: wait for this one's line, not any.
    let logs = gw.wait_for_log("status=500").await;
    let line = logs
        .lines()
        .find(|l| l.contains("upstream answer withheld") && l.contains("status=500"))
        .unwrap_or_default();
    assert!(line.contains("boom"), "{logs}");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_are_checked_exactly_or_refused() {
    let (up, gw) = start().await;
    for body in [
        r#"{"quantity": 1.0000000000000000001}"#,
        r#"{"price": 1000.00000000000000001}"#,
        r#"{"quantity": 12345678901234567890123}"#,
        r#"{"price": 1e-400}"#,
    ] {
        let resp = raw_request(&gw, &post("/echo/validated", "application/json", body))
            .await
            .unwrap();
        assert_problem(&resp, 400, "number_not_exact");
        let h2 = h2_raw(
            &gw,
            "POST",
            "/echo/validated",
            &[("content-type", "application/json")],
            body.as_bytes(),
        )
        .await;
        h2_problem(&h2, 400, "number_not_exact");
    }
    // A query parameter typed as a number is held to the same rule.
    let resp = raw_request(
        &gw,
        &get("/echo/validated?limit=1000.00000000000000001", ""),
    )
    .await
    .unwrap();
    assert_problem(&resp, 400, "schema_violation");
    assert_upstream_saw_nothing(&up, "inexact number");
    for body in [
        r#"{"quantity": 1000, "price": 999.99}"#,
        r#"{"price": 1.10}"#,
    ] {
        let resp = raw_request(&gw, &post("/echo/validated", "application/json", body))
            .await
            .unwrap();
        assert_eq!(
            resp.status,
            200,
            "{body}: {}",
            String::from_utf8_lossy(&resp.body)
        );
    }
    let resp = raw_request(&gw, &get("/echo/validated?limit=999.5", ""))
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_field_filter_passes_what_it_keeps_byte_for_byte() {
    let (_up, gw) = start().await;
    let sent = "{\n  \"z\": 12345678901234567890123,\n  \"internal\": {\"cost\": 1},\n  \"d\": 0.123456789012345678901234567890123456,\n  \"tiny\": 1e-400, \"p\": 1.10,\n  \"a\": \"caf\\u00e9 \\/\",\n  \"items\": [{\"sku\": \"A\", \"cost\": 3}, {\"cost\": 4, \"sku\": \"B\"}],\n  \"b\": 2\n}";
    let kept = "{\n  \"z\": 12345678901234567890123,\n  \"d\": 0.123456789012345678901234567890123456,\n  \"tiny\": 1e-400, \"p\": 1.10,\n  \"a\": \"caf\\u00e9 \\/\",\n  \"items\": [{\"sku\": \"A\"}, { \"sku\": \"B\"}],\n  \"b\": 2\n}";
    let resp = raw_request(&gw, &post("/reply/filtered", "application/json", sent))
        .await
        .unwrap();
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(String::from_utf8_lossy(&resp.body), kept);
    let h2 = h2_raw(
        &gw,
        "POST",
        "/reply/filtered",
        &[("content-type", "application/json")],
        sent.as_bytes(),
    )
    .await;
    assert_eq!(String::from_utf8_lossy(&h2.1), kept);
}

/// An HTTP/2 frame header: length, type, flags, stream id.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_prefaces_and_header_blocks_are_due_within_the_header_timeout() {
    use tokio::io::AsyncWriteExt;
    let (up, gw) = start_with_http("  header_timeout: 600ms\n").await;
    let h2 = || raw_tls_to(gw.https, gw.pki.roots(), vec![b"h2".to_vec()]);
    // One byte of the preface, then nothing.
    let mut s = h2().await;
    s.write_all(b"P").await.unwrap();
    s.flush().await.unwrap();
    assert!(
        closed_by_peer(&mut s, std::time::Duration::from_secs(10)).await,
        "a stalled preface holds the connection"
    );
    // A header block trickled one CONTINUATION at a time, each well within
    // any per-read timeout.
    let mut s = h2().await;
    let mut start = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    start.extend(frame(0x4, 0, 0, &[]));
    // HEADERS on stream 1 without END_HEADERS (:method GET, indexed).
    start.extend(frame(0x1, 0x1, 1, &[0x82]));
    s.write_all(&start).await.unwrap();
    s.flush().await.unwrap();
    let mut cut_after = None;
    for i in 0..40 {
        // A literal header with a new name each time (x-00, x-01, …).
        let name = format!("x-{i:02}");
        let mut field = vec![0x00, name.len() as u8];
        field.extend_from_slice(name.as_bytes());
        field.extend_from_slice(&[0x01, b'1']);
        let sent = s.write_all(&frame(0x9, 0, 1, &field)).await.is_ok() && s.flush().await.is_ok();
        if !sent || closed_by_peer(&mut s, std::time::Duration::from_millis(200)).await {
            cut_after = Some(i);
            break;
        }
    }
    let cut_after = cut_after.expect("a trickled header block holds the connection");
    assert!(
        cut_after >= 1,
        "cut before the deadline: after {cut_after} frames"
    );
    assert_upstream_saw_nothing(&up, "h2 slow headers");
    let ok = h2_raw(&gw, "GET", "/partners/acme/orders", &[], b"").await;
    assert_eq!(ok.0, 200);
    let cut = gw.metric("portcullis_header_timeouts_total").await;
    assert!(cut >= 2.0, "{cut} header timeouts counted");
}

/// Runs Debian's curl against the gateway: (exit code, body, status, version).
pub(crate) fn curl(gw: &Gateway, args: &[&str], path: &str) -> (i32, String, String) {
    let ca = gw.path("test-ca.pem");
    if !ca.exists() {
        std::fs::write(&ca, &gw.pki.ca_pem).unwrap();
    }
    let port = gw.https.port();
    let out = std::process::Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(&ca)
        .args(["--resolve", &format!("{HOST}:{port}:127.0.0.1")])
        .args(args)
        .args(["-w", "\n%{http_code} %{http_version}"])
        .arg(format!("https://{HOST}:{port}{path}"))
        .output()
        .expect("curl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_always_receives_the_refusal_of_a_post() {
    // Fifty wrong keys from one address would otherwise block it.
    let (up, gw) = start_with("", "abuse:\n  auth_failures:\n    per_client: 1000\n").await;
    let globex = format!("X-API-Key: {}", gw.key("globex"));
    let acme = format!("X-API-Key: {}", gw.key("acme"));
    let cases: [(&str, &str, &str, &str); 3] = [
        (
            "X-API-Key: ptc_live_wrong",
            "/partners/acme/orders",
            "401",
            "key_malformed",
        ),
        (&globex, "/partners/acme/orders", "403", "partner_mismatch"),
        (
            &acme,
            "/partners/acme/orders?_method=DELETE",
            "400",
            "method_override",
        ),
    ];
    for (key, path, status, code) in cases {
        for version in ["--http2", "--http1.1"] {
            for run in 0..25 {
                let (exit, out, err) = curl(
                    &gw,
                    &[
                        version,
                        "-X",
                        "POST",
                        "--data",
                        r#"{"a":"x"}"#,
                        "-H",
                        key,
                        "-H",
                        "Content-Type: application/json",
                    ],
                    path,
                );
                assert_eq!(exit, 0, "{version} run {run} {path}: curl failed: {err}");
                let expected_version = if version == "--http2" { "2" } else { "1.1" };
                assert!(
                    out.ends_with(&format!("\n{status} {expected_version}")),
                    "{version} run {run}: {out}"
                );
                assert!(out.contains(&format!("\"code\":\"{code}\"")), "{out}");
            }
        }
    }
    // A body refused unread on a connection that must close is still answered.
    let big = "x".repeat(4 << 20);
    let file = gw.path("big.json");
    std::fs::write(&file, big).unwrap();
    let data = format!("@{}", file.display());
    for run in 0..10 {
        let (exit, out, err) = curl(
            &gw,
            &[
                "--http1.1",
                "-H",
                "Expect:",
                "-H",
                &acme,
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                &data,
            ],
            "/partners/acme/orders",
        );
        assert_eq!(exit, 0, "run {run}: curl failed: {err}");
        assert!(out.ends_with("\n413 1.1"), "run {run}: {out}");
    }
    assert_upstream_saw_nothing(&up, "refused POSTs");
}

/// Sends one request on an open HTTP/2 connection: (head, body).
async fn h2_exchange(
    client: &mut h2::client::SendRequest<bytes::Bytes>,
    request: http::Request<()>,
    body: &[u8],
) -> (http::response::Parts, Vec<u8>) {
    let (response, mut send) = client
        .clone()
        .ready()
        .await
        .unwrap()
        .send_request(request, body.is_empty())
        .unwrap();
    if !body.is_empty() {
        send.send_data(bytes::Bytes::copy_from_slice(body), true)
            .unwrap();
    }
    let (head, mut recv) = response.await.unwrap().into_parts();
    let mut out = Vec::new();
    while let Some(chunk) = recv.data().await {
        let chunk = chunk.unwrap();
        let _ = recv.flow_control().release_capacity(chunk.len());
        out.extend_from_slice(&chunk);
    }
    (head, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_ambiguous_hosts_get_our_problem_document_and_the_connection_lives_on() {
    let (up, gw) = start().await;
    let tls = raw_tls_to(gw.https, gw.pki.roots(), vec![b"h2".to_vec()]).await;
    // h2's defaults: a 65,535-byte connection window the client only
    // reopens as it reads, so the documents we add must be paid for.
    let (mut client, conn) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(conn);
    let request = |hosts: &[&str]| {
        let mut r = http::Request::builder()
            .method("GET")
            .uri(format!("https://{HOST}/partners/acme/orders"))
            .header("x-api-key", gw.key("acme"));
        for host in hosts {
            r = r.header("host", *host);
        }
        r.body(()).unwrap()
    };
    let mut ids = Vec::new();
    for hosts in [
        &["globex.internal"][..],
        &[HOST, HOST][..],
        &["acme@gateway.test"][..],
    ] {
        for _ in 0..3 {
            let (head, body) = h2_exchange(&mut client, request(hosts), b"").await;
            h2_problem(&(head.status.as_u16(), body), 400, "authority_ambiguous");
            let header = |name: &str| {
                head.headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string()
            };
            assert_eq!(
                header("content-type"),
                "application/problem+json",
                "{hosts:?}"
            );
            assert!(
                header("strict-transport-security").starts_with("max-age="),
                "{hosts:?}: {:?}",
                head.headers
            );
            assert!(!header("x-request-id").is_empty(), "{hosts:?}");
            ids.push(header("x-request-id"));
        }
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 9, "each refusal has its own request id");
    // nghttp, nghttp2's own client, sends the two names as given.
    let port = gw.https.port();
    let out = std::process::Command::new("nghttp")
        .args(["-v", "-H", &format!(":authority: {HOST}:{port}")])
        .args(["-H", "host: globex.internal", "-H"])
        .arg(format!("x-api-key: {}", gw.key("acme")))
        .arg(format!("https://127.0.0.1:{port}/partners/acme/orders"))
        .output()
        .expect("nghttp (Debian: nghttp2-client)");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains(":status: 400"), "{shown}");
    assert!(
        shown.contains("strict-transport-security: max-age="),
        "{shown}"
    );
    assert!(shown.contains(r#""code":"authority_ambiguous""#), "{shown}");
    assert_upstream_saw_nothing(&up, "h2 ambiguous host");
    // The same connection then carries answers larger than its window:
    // h2 believes the window is larger by the documents we added, so
    // without the guard's accounting this is a flow-control error.
    let pad = "p".repeat(150_000);
    for n in 0..2 {
        let body = format!("{{\"n\":{n},\"pad\":\"{pad}\"}}");
        let post = http::Request::builder()
            .method("POST")
            .uri(format!("https://{HOST}/reply"))
            .header("x-api-key", gw.key("acme"))
            .header("content-type", "application/json")
            .body(())
            .unwrap();
        let (head, echoed) = h2_exchange(&mut client, post, body.as_bytes()).await;
        assert_eq!(
            head.status,
            200,
            "{}",
            String::from_utf8_lossy(&echoed[..200.min(echoed.len())])
        );
        assert!(echoed == body.as_bytes(), "answer {n} arrived whole");
        let (head, _) = h2_exchange(&mut client, request(&[]), b"").await;
        assert_eq!(head.status, 200);
    }
}
