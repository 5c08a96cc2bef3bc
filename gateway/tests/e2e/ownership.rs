//! Object-level isolation in front of the example's legacy API
//! (`/orders/{id}`, opaque ids, no partner in any URL, and a backend that
//! serves any order to anyone): another partner's object is refused before
//! the upstream sees anything, unknown ids are refused or decided by a
//! pre-flight read, lists come back with only the caller's rows.

use std::time::Duration;

use crate::common::*;
use portcullis_example_upstream::seeded_legacy_order;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The legacy routes on upstream `orders`; `unknown` is the read, change and
/// delete routes' rule for ids the index does not know.
fn legacy_routes(unknown: &str, others: &str) -> String {
    let preflight = if unknown == "preflight" {
        ", preflight: '/orders/{id}'"
    } else {
        ""
    };
    format!(
        "resources:\n  order:\n    id: /id\n    owner: /partner\n\
         routes:\n\
         \x20 - name: legacy-list\n    methods: [GET]\n    path: /orders\n    upstream: orders\n\
         \x20   resource: {{kind: order, action: list, rows: /orders/*, others: {others}}}\n\
         \x20 - name: legacy-create\n    methods: [POST]\n    path: /orders\n    upstream: orders\n\
         \x20   resource: {{kind: order, action: create}}\n\
         \x20 - name: legacy-get\n    methods: [GET]\n    path: /orders/{{id}}\n    upstream: orders\n\
         \x20   resource: {{kind: order, action: read, unknown: {unknown}}}\n\
         \x20 - name: legacy-change\n    methods: [PUT]\n    path: /orders/{{id}}\n    upstream: orders\n\
         \x20   resource: {{kind: order, action: change, unknown: {unknown}{preflight}}}\n\
         \x20 - name: legacy-delete\n    methods: [DELETE]\n    path: /orders/{{id}}\n    upstream: orders\n\
         \x20   resource: {{kind: order, action: delete, unknown: {unknown}{preflight}}}\n"
    )
}

async fn start(unknown: &str, others: &str) -> (Upstream, Gateway) {
    let up = Upstream::start().await;
    let mut config = GatewayConfig::orders(&up.url());
    config
        .policies
        .push(("legacy.yaml".into(), legacy_routes(unknown, others)));
    let gw = Gateway::start(config).await;
    (up, gw)
}

/// One request with `partner`'s key on a fresh TLS connection.
async fn send(gw: &Gateway, partner: &str, method: &str, path: &str, body: &str) -> RawResponse {
    let typed = if body.is_empty() {
        String::new()
    } else {
        "Content-Type: application/json\r\n".to_string()
    };
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nX-API-Key: {key}\r\n{typed}Content-Length: {len}\r\nConnection: close\r\n\r\n{body}",
        key = gw.key(partner),
        len = body.len(),
    );
    raw_request_as_is(gw, req.as_bytes())
        .await
        .expect("a response")
}

fn seeded(partner: &str, n: usize) -> String {
    seeded_legacy_order(partner, n).expect("a seeded order")
}

fn seen(up: &Upstream) -> Vec<String> {
    up.recorder
        .requests()
        .into_iter()
        .map(|r| format!("{} {}", r.method, r.path_and_query))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_partners_object_is_refused_for_every_verb_before_the_upstream_sees_it() {
    let (up, gw) = start("refuse", "drop").await;
    let created = send(
        &gw,
        "globex",
        "POST",
        "/orders",
        r#"{"sku":"BOLT-7","quantity":2}"#,
    )
    .await;
    assert_eq!(
        created.status,
        201,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    let id = created.json()["id"].as_str().unwrap().to_string();
    assert_eq!(created.json()["partner"], "globex");
    assert_eq!(up.recorder.len(), 1);

    let change = r#"{"status":"cancelled"}"#;
    for (method, body) in [("GET", ""), ("PUT", change), ("DELETE", "")] {
        let resp = send(&gw, "acme", method, &format!("/orders/{id}"), body).await;
        assert_problem(&resp, 404, "object_not_found");
        let problem = resp.json();
        let record = gw
            .audit_record(problem["request_id"].as_str().unwrap())
            .await;
        assert_eq!(record["decision"], "deny", "{record}");
        assert_eq!(record["partner"], "acme");
        assert_eq!(record["object"]["kind"], "order");
        assert_eq!(record["object"]["id"], id.as_str());
        assert_eq!(record["object"]["owner"], "globex", "{record}");
    }
    assert_eq!(
        seen(&up),
        vec!["POST /orders"],
        "the upstream saw only the create"
    );
    let log = gw
        .wait_for_log("request for another partner's object refused")
        .await;
    assert!(
        log.contains("owner=globex") || log.contains("owner=\"globex\""),
        "{log}"
    );
    assert_eq!(
        gw.metric("portcullis_ownership_refusals_total{route=\"legacy-delete\"}")
            .await,
        1.0
    );

    // The owner's requests pass, every verb, and its order is unchanged
    // by acme's attempts.
    let read = send(&gw, "globex", "GET", &format!("/orders/{id}"), "").await;
    assert_eq!(read.status, 200);
    assert_eq!(read.json()["status"], "open");
    let changed = send(&gw, "globex", "PUT", &format!("/orders/{id}"), change).await;
    assert_eq!(
        (changed.status, changed.json()["status"].clone()),
        (200, "cancelled".into())
    );
    let deleted = send(&gw, "globex", "DELETE", &format!("/orders/{id}"), "").await;
    assert_eq!(deleted.status, 204);
    assert_eq!(
        seen(&up)[1..],
        [
            format!("GET /orders/{id}"),
            format!("PUT /orders/{id}"),
            format!("DELETE /orders/{id}")
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_id_is_refused_when_the_route_says_refuse() {
    let (up, gw) = start("refuse", "drop").await;
    // Seeded in the backend but never seen by the gateway: neither the
    // owner nor anyone else can reach it until it is imported.
    for partner in ["acme", "globex"] {
        for method in ["GET", "DELETE"] {
            let resp = send(
                &gw,
                partner,
                method,
                &format!("/orders/{}", seeded("globex", 0)),
                "",
            )
            .await;
            assert_problem(&resp, 404, "object_not_found");
        }
    }
    assert!(up.recorder.is_empty(), "upstream saw {:?}", seen(&up));
    assert_eq!(
        gw.metric("portcullis_ownership_lookups_total{result=\"unknown\"}")
            .await,
        4.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preflight_decides_an_unknown_id_and_the_write_never_reaches_another_partners_object() {
    let (up, gw) = start("preflight", "drop").await;
    let globex_order = seeded("globex", 0);
    let path = format!("/orders/{globex_order}");
    let resp = send(&gw, "acme", "DELETE", &path, "").await;
    assert_problem(&resp, 404, "object_not_found");
    // The gateway asked with its own GET; the DELETE never went out.
    assert_eq!(seen(&up), vec![format!("GET {path}")]);
    let preflight = &up.recorder.requests()[0];
    assert_eq!(preflight.header("x-partner-id"), Some("acme"));
    assert!(preflight.body.is_empty());

    // Learnt: the second attempt costs no pre-flight, and a PUT is refused too.
    let again = send(&gw, "acme", "PUT", &path, r#"{"status":"cancelled"}"#).await;
    assert_problem(&again, 404, "object_not_found");
    assert_eq!(up.recorder.len(), 1);
    assert_eq!(
        gw.metric("portcullis_ownership_preflights_total{result=\"other\"}")
            .await,
        1.0
    );

    // globex's order is still there, and globex reaches it without a
    // pre-flight since the index now knows it.
    let read = send(&gw, "globex", "GET", &path, "").await;
    assert_eq!(read.status, 200);
    assert_eq!(read.json()["status"], "open");
    assert_eq!(up.recorder.len(), 2);

    // The owner's own unknown order: one pre-flight, then the write.
    let mine = format!("/orders/{}", seeded("acme", 1));
    let deleted = send(&gw, "acme", "DELETE", &mine, "").await;
    assert_eq!(deleted.status, 204);
    assert_eq!(
        seen(&up)[2..],
        [format!("GET {mine}"), format!("DELETE {mine}")]
    );
    // Deleted in the backend: the gateway's 404 and the backend's now agree.
    let gone = send(&gw, "acme", "GET", &mine, "").await;
    assert_eq!(gone.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_of_an_unknown_id_is_its_own_preflight() {
    let (up, gw) = start("preflight", "drop").await;
    let path = format!("/orders/{}", seeded("globex", 1));
    let resp = send(&gw, "acme", "GET", &path, "").await;
    assert_problem(&resp, 404, "object_not_found");
    let body = String::from_utf8_lossy(&resp.body);
    assert!(!body.contains("globex") && !body.contains("sku"), "{body}");
    assert_eq!(seen(&up), vec![format!("GET {path}")]);
    // Learnt from that answer: a write is refused without asking again.
    let delete = send(&gw, "acme", "DELETE", &path, "").await;
    assert_problem(&delete, 404, "object_not_found");
    assert_eq!(up.recorder.len(), 1);
    // An id the backend does not have gets the very same answer as another
    // partner's, so the two cannot be told apart.
    let missing = send(&gw, "acme", "GET", "/orders/ord_000000000000", "").await;
    assert_problem(&missing, 404, "object_not_found");
    assert_eq!(missing.json()["title"], resp.json()["title"]);
    let body = String::from_utf8_lossy(&missing.body);
    assert!(!body.contains("order not found"), "{body}");
}

/// A pre-flight that cannot say who owns the object refuses the request;
/// the write is never sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preflight_that_fails_or_names_no_owner_refuses_the_write() {
    let up = Upstream::start().await;
    let mut config = GatewayConfig::orders(&up.url());
    config.policies.push((
        "legacy.yaml".into(),
        "resources:\n  order:\n    owner: /partner\n\
         routes:\n\
         \x20 - name: explodes\n    methods: [DELETE]\n    path: /orders/{id}\n    upstream: orders\n\
         \x20   resource: {kind: order, action: delete, unknown: preflight, preflight: '/partners/acme/orders/{id}/explode'}\n\
         \x20 - name: no-owner\n    methods: [PUT]\n    path: /orders/{id}\n    upstream: orders\n\
         \x20   resource: {kind: order, action: change, unknown: preflight, preflight: '/echo/{id}'}\n"
            .into(),
    ));
    let gw = Gateway::start(config).await;
    let id = seeded("acme", 0);
    let resp = send(&gw, "acme", "DELETE", &format!("/orders/{id}"), "").await;
    assert_problem(&resp, 502, "preflight_failed");
    let body = String::from_utf8_lossy(&resp.body);
    assert!(!body.contains("PDOException"), "{body}");
    let resp = send(&gw, "acme", "PUT", &format!("/orders/{id}"), "{}").await;
    assert_problem(&resp, 502, "preflight_failed");
    assert_eq!(
        seen(&up),
        vec![
            format!("GET /partners/acme/orders/{id}/explode"),
            format!("GET /echo/{id}")
        ]
    );
    assert_eq!(
        gw.metric("portcullis_ownership_preflights_total{result=\"failed\"}")
            .await,
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preflight_that_times_out_refuses_the_write() {
    // An upstream that reads a request and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut held = Vec::new();
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    held.extend_from_slice(&buf[..n]);
                    let _ = tx.send(String::from_utf8_lossy(&held).into_owned());
                }
                let _ = s.shutdown().await;
            });
        }
    });
    let up = Upstream::start().await;
    let mut config = GatewayConfig::orders(&up.url());
    config.policies.push((
        "legacy.yaml".into(),
        format!(
            "upstreams:\n  mute:\n    url: http://{addr}\n    timeouts:\n      connect: 1s\n      read: 300ms\n\
             resources:\n  order:\n    owner: /partner\n\
             routes:\n\
             \x20 - name: mute-delete\n    methods: [DELETE]\n    path: /orders/{{id}}\n    upstream: mute\n\
             \x20   resource: {{kind: order, action: delete, unknown: preflight, preflight: '/orders/{{id}}'}}\n"
        ),
    ));
    let gw = Gateway::start(config).await;
    let id = seeded("globex", 0);
    let resp = send(&gw, "acme", "DELETE", &format!("/orders/{id}"), "").await;
    assert_problem(&resp, 502, "preflight_failed");
    let mut received = Vec::new();
    while let Ok(text) = rx.try_recv() {
        received.push(text);
    }
    assert!(
        received
            .iter()
            .any(|t| t.starts_with(&format!("GET /orders/{id} HTTP/1.1"))),
        "{received:?}"
    );
    assert!(
        received.iter().all(|t| !t.contains("DELETE")),
        "{received:?}"
    );
    gw.wait_for_log("pre-flight read could not say who owns the object")
        .await;
}

/// The rows of `{"orders":[...]}` exactly as the upstream wrote them.
fn raw_rows(body: &str) -> Vec<&str> {
    let inner = body
        .strip_prefix("{\"orders\":[")
        .and_then(|b| b.strip_suffix("]}"))
        .expect("the backend's compact list");
    let (mut rows, mut depth, mut in_string, mut escaped, mut start) =
        (Vec::new(), 0, false, false, 0);
    for (i, c) in inner.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_string => escaped = true,
            '"' => in_string = !in_string,
            '{' | '[' if !in_string => depth += 1,
            '}' | ']' if !in_string => depth -= 1,
            ',' if !in_string && depth == 0 => {
                rows.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if !inner.is_empty() {
        rows.push(&inner[start..]);
    }
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_keeps_only_the_callers_rows_byte_for_byte() {
    let (up, gw) = start("refuse", "drop").await;
    let direct = reqwest::get(format!("{}/orders", up.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    up.recorder.clear();
    let all = raw_rows(&direct);
    assert_eq!(all.len(), 9);
    for partner in ["acme", "globex"] {
        let resp = send(&gw, partner, "GET", "/orders", "").await;
        assert_eq!(resp.status, 200);
        let mine: Vec<&str> = all
            .iter()
            .copied()
            .filter(|r| r.contains(&format!("\"partner\":\"{partner}\"")))
            .collect();
        assert_eq!(mine.len(), 3);
        assert_eq!(
            String::from_utf8_lossy(&resp.body),
            format!("{{\"orders\":[{}]}}", mine.join(",")),
        );
        assert_eq!(
            resp.header("content-length"),
            Some(resp.body.len().to_string().as_str())
        );
    }
    assert_eq!(
        gw.metric("portcullis_ownership_rows_dropped_total{route=\"legacy-list\"}")
            .await,
        12.0
    );
    // A filtered list, as the backend filters it, cut the same way.
    let cancelled = send(&gw, "acme", "GET", "/orders?status=cancelled", "").await;
    assert_eq!(String::from_utf8_lossy(&cancelled.body), "{\"orders\":[]}");
    assert_eq!(up.recorder.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_with_others_refuse_withholds_a_mixed_answer() {
    let (_up, gw) = start("refuse", "refuse").await;
    let resp = send(&gw, "acme", "GET", "/orders", "").await;
    assert_problem(&resp, 502, "response_partner_mismatch");
    let body = String::from_utf8_lossy(&resp.body);
    assert!(!body.contains("ord_"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_teaches_the_index_and_the_creator_reaches_its_object() {
    let (up, gw) = start("refuse", "drop").await;
    let created = send(
        &gw,
        "acme",
        "POST",
        "/orders",
        r#"{"sku":"GADGET-XL","quantity":4}"#,
    )
    .await;
    assert_eq!(created.status, 201);
    let id = created.json()["id"].as_str().unwrap().to_string();
    assert_eq!(
        gw.metric("portcullis_ownership_learned_total{how=\"create\"}")
            .await,
        1.0
    );
    assert_eq!(gw.metric("portcullis_ownership_index_entries").await, 1.0);
    let read = send(&gw, "acme", "GET", &format!("/orders/{id}"), "").await;
    assert_eq!(read.status, 200);
    assert_eq!(read.json()["quantity"], 4);
    // The list shows the new order too: it is acme's row.
    let list = send(&gw, "acme", "GET", "/orders", "").await;
    assert!(String::from_utf8_lossy(&list.body).contains(&id));
    // The index is on disk: a restarted gateway still knows the owner.
    assert!(std::fs::read_to_string(gw.path("owners.jsonl"))
        .unwrap()
        .contains(&id));
    assert_eq!(up.recorder.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_with_path_query_or_body_tricks_are_refused() {
    let up = Upstream::start().await;
    let mut config = GatewayConfig::orders(&up.url());
    config.policies.push((
        "legacy.yaml".into(),
        "resources:\n  order:\n    owner: /partner\n\
         routes:\n\
         \x20 - name: by-path\n    methods: [GET, DELETE]\n    path: /orders/{id}\n    upstream: orders\n\
         \x20   resource: {kind: order, action: delete, unknown: refuse}\n\
         \x20 - name: by-query\n    methods: [GET]\n    path: /shipments\n    upstream: orders\n\
         \x20   resource: {kind: order, action: read, id: {query: order_id}}\n\
         \x20 - name: by-body\n    methods: [POST]\n    path: /shipments\n    upstream: orders\n\
         \x20   resource: {kind: order, action: change, id: {body: /order_id}}\n"
            .into(),
    ));
    let gw = Gateway::start(config).await;
    let g = seeded("globex", 0);
    for (method, target, body, status, code) in [
        // An encoded slash never reaches the ownership stage: the path is refused whole.
        (
            "DELETE",
            format!("/orders/{g}%2f.."),
            "",
            400,
            "ambiguous_path",
        ),
        (
            "DELETE",
            format!("/orders/{g}%2F"),
            "",
            400,
            "ambiguous_path",
        ),
        // Escapes of unreserved characters are decoded in the canonical path
        // (and forwarded decoded): the same object, judged as such.
        (
            "DELETE",
            format!("/orders/%6F{}", &g[1..]),
            "",
            404,
            "object_not_found",
        ),
        // Any other escape cannot be an id.
        (
            "DELETE",
            format!("/orders/{g}%20"),
            "",
            400,
            "object_id_invalid",
        ),
        (
            "DELETE",
            format!("/orders/{g}%00"),
            "",
            400,
            "ambiguous_path",
        ),
        (
            "DELETE",
            format!("/orders/{g};x=1"),
            "",
            400,
            "object_id_invalid",
        ),
        (
            "GET",
            format!("/shipments?order_id=a&order_id={g}"),
            "",
            400,
            "object_id_ambiguous",
        ),
        (
            "GET",
            format!("/shipments?order_id=a&order_id[]={g}"),
            "",
            400,
            "object_id_ambiguous",
        ),
        // PHP reads `order.id` as `order_id`: another spelling of the same name.
        (
            "GET",
            format!("/shipments?order.id={g}"),
            "",
            400,
            "object_id_ambiguous",
        ),
        (
            "GET",
            format!("/shipments?order_id=a&order%5fid={g}"),
            "",
            400,
            "object_id_ambiguous",
        ),
        // An escaped name is the same name: judged as such.
        (
            "GET",
            format!("/shipments?order%5fid={g}"),
            "",
            404,
            "object_not_found",
        ),
        (
            "GET",
            format!("/shipments?order_id={g}%26x"),
            "",
            400,
            "object_id_invalid",
        ),
        (
            "GET",
            "/shipments?other=1".to_string(),
            "",
            400,
            "object_id_missing",
        ),
        (
            "POST",
            "/shipments".to_string(),
            r#"{"order_id":"a","order_id":"b"}"#,
            400,
            "json_duplicate_key",
        ),
        (
            "POST",
            "/shipments".to_string(),
            r#"{"order_id":["a"]}"#,
            400,
            "object_id_invalid",
        ),
        (
            "POST",
            "/shipments".to_string(),
            r#"{"order_id":"../x"}"#,
            400,
            "object_id_invalid",
        ),
        (
            "POST",
            "/shipments".to_string(),
            r#"{"other":1}"#,
            400,
            "object_id_missing",
        ),
        (
            "POST",
            "/shipments".to_string(),
            &format!(r#"{{"order_id":"{g}"}}"#),
            404,
            "object_not_found",
        ),
    ] {
        let resp = send(&gw, "acme", method, &target, body).await;
        assert_eq!(
            resp.status,
            status,
            "{method} {target} {body}: {}",
            String::from_utf8_lossy(&resp.body)
        );
        assert_problem(&resp, status, code);
    }
    assert!(up.recorder.is_empty(), "upstream saw {:?}", seen(&up));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_sees_the_refusal_over_http1_and_http2() {
    let (up, gw) = start("preflight", "drop").await;
    let key = format!("x-api-key: {}", gw.key("acme"));
    let path = format!("/orders/{}", seeded("globex", 2));
    for version in ["--http1.1", "--http2"] {
        let (code, out, err) =
            crate::one_meaning::curl(&gw, &[version, "-X", "DELETE", "-H", &key], &path);
        assert_eq!(code, 0, "{err}");
        let (body, status) = out.rsplit_once('\n').unwrap();
        let spoken = if version == "--http2" { "2" } else { "1.1" };
        assert_eq!(status, format!("404 {spoken}"), "{body}");
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["code"], "object_not_found");
    }
    // One pre-flight for the first attempt; nothing else reached the upstream.
    assert_eq!(seen(&up), vec![format!("GET {path}")]);
    tokio::time::timeout(Duration::from_secs(5), gw.wait_for_log("object_not_found"))
        .await
        .unwrap();
}

// On Redis: the key store's lease and epochs govern the ownership index too.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_ownership_index_satisfies_the_contract() {
    let redis = RedisServer::start().await;
    let settings = portcullis::config::model::RedisSettings {
        url: Some(redis.url()),
        sentinel: None,
        username: None,
        password_file: None,
        ca: None,
        prefix: "contract:".into(),
        timeout: Duration::from_millis(500),
        lease: Duration::from_secs(1),
        replicas_ack: 0,
    };
    let store = portcullis::ownership::redis::RedisOwnership::new(
        std::sync::Arc::new(portcullis::keys::redis_store::RedisStore::new(&settings)),
        None,
        16,
    );
    portcullis::ownership::contract::run(&store).await;
}

async fn redis_node(
    redis_url: &str,
    lease: &str,
    up: &Upstream,
    join: Option<&Gateway>,
) -> Gateway {
    let mut config = GatewayConfig::orders(&up.url());
    config.keys = format!(
        "  store: redis\n  redis:\n    url: {redis_url}\n    lease: {lease}\n    timeout: 200ms\n"
    );
    config.join = join.map(|g| (g.dir.path().to_path_buf(), g.keys.clone()));
    config
        .policies
        .push(("legacy.yaml".into(), legacy_routes("refuse", "drop")));
    Gateway::start(config).await
}

/// `portcullis owners …` with the node's configuration.
fn owners_cli(gw: &Gateway, args: &[&str]) -> String {
    let mut full = vec!["owners"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["--config", "portcullis.yaml"]);
    let (code, out, err) = run_cli(&full, gw.dir.path());
    assert_eq!(code, 0, "owners {args:?}: {out}{err}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_owners_transfer_returns_the_old_owner_is_refused_on_every_node() {
    let redis = RedisServer::start().await;
    let up = Upstream::start().await;
    let n1 = redis_node(&redis.url(), "1s", &up, None).await;
    let n2 = redis_node(&redis.url(), "1s", &up, Some(&n1)).await;
    let n3 = redis_node(&redis.url(), "1s", &up, Some(&n1)).await;
    let id = seeded("acme", 0);
    let csv = n1.path("legacy-owners.csv");
    std::fs::write(
        &csv,
        format!(
            "order_id,partner_code\n{id},acme\n{},globex\n",
            seeded("globex", 0)
        ),
    )
    .unwrap();
    let out = owners_cli(
        &n1,
        &[
            "import",
            csv.to_str().unwrap(),
            "--kind",
            "order",
            "--id-field",
            "order_id",
            "--partner-field",
            "partner_code",
        ],
    );
    assert!(out.contains("imported 2 records"), "{out}");
    assert_eq!(
        owners_cli(&n2, &["show", "order", &id]).trim(),
        format!("order {id} acme")
    );

    let nodes = [&n1, &n2, &n3];
    let path = format!("/orders/{id}");
    for gw in nodes {
        eventually(
            "every node to hold its lease",
            Duration::from_secs(10),
            || async { (gw.metric("portcullis_key_store_up").await == 1.0).then_some(()) },
        )
        .await;
        // Twice: the second answer comes from the node's cache.
        for _ in 0..2 {
            assert_eq!(send(gw, "acme", "GET", &path, "").await.status, 200);
        }
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tasks: Vec<_> = nodes
        .iter()
        .map(|gw| {
            let client = gw.client_with_key(Some(gw.key("acme")));
            let url = gw.url(&path);
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let sent = std::time::Instant::now();
                    let status = client
                        .get(&url)
                        .send()
                        .await
                        .map_or(0, |r| r.status().as_u16());
                    seen.push((sent, status));
                }
                seen
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let out = owners_cli(&n2, &["transfer", "order", &id, "--to", "globex"]);
    let returned = std::time::Instant::now();
    assert!(out.contains("now belongs to globex (was acme)"), "{out}");
    tokio::time::sleep(Duration::from_millis(400)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut seen = Vec::new();
    for t in tasks {
        seen.extend(t.await.unwrap());
    }
    let before = seen
        .iter()
        .filter(|(t, s)| *t < returned && *s == 200)
        .count();
    let after_ok = seen
        .iter()
        .filter(|(t, s)| *t >= returned && *s == 200)
        .count();
    let after_refused = seen
        .iter()
        .filter(|(t, s)| *t >= returned && *s == 404)
        .count();
    assert!(before > 0, "acme reached its order before the transfer");
    assert_eq!(
        after_ok, 0,
        "the old owner was served after the transfer returned"
    );
    assert!(after_refused > 0);
    for gw in nodes {
        assert_problem(
            &send(gw, "acme", "DELETE", &path, "").await,
            404,
            "object_not_found",
        );
    }
    // The export is the index, and reads back as an import.
    let export = owners_cli(&n3, &["export", "--format", "csv"]);
    let mut want = [
        format!("order,{id},globex"),
        format!("order,{},globex", seeded("globex", 0)),
    ];
    want.sort();
    assert_eq!(export, format!("kind,id,partner\n{}\n", want.join("\n")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_known_objects_serve_inside_the_lease_and_unknown_ones_get_503() {
    let mut redis = RedisServer::start().await;
    let up = Upstream::start().await;
    let gw = redis_node(&redis.url(), "3s", &up, None).await;
    let (known, other) = (seeded("acme", 0), seeded("acme", 1));
    let json = gw.path("owners.json");
    std::fs::write(
        &json,
        format!(r#"[{{"kind":"order","id":"{known}","partner":"acme"}},{{"kind":"order","id":"{other}","partner":"acme"}}]"#),
    )
    .unwrap();
    owners_cli(&gw, &["import", json.to_str().unwrap()]);
    eventually("the lease", Duration::from_secs(10), || async {
        (gw.metric("portcullis_key_store_up").await == 1.0).then_some(())
    })
    .await;
    assert_eq!(
        send(&gw, "acme", "GET", &format!("/orders/{known}"), "")
            .await
            .status,
        200
    );
    up.recorder.clear();

    redis.kill();
    // Known and leased: served.
    assert_eq!(
        send(&gw, "acme", "GET", &format!("/orders/{known}"), "")
            .await
            .status,
        200
    );
    // In Redis but never read by this node: it cannot know, so it says so.
    let resp = send(&gw, "acme", "DELETE", &format!("/orders/{other}"), "").await;
    assert_problem(&resp, 503, "ownership_unavailable");
    assert_eq!(seen(&up), vec![format!("GET /orders/{known}")]);
    // Past the lease nothing is trusted.
    eventually("the lease to end", Duration::from_secs(10), || async {
        let s = send(&gw, "acme", "GET", &format!("/orders/{known}"), "")
            .await
            .status;
        (s == 503).then_some(())
    })
    .await;
    let other_path = format!("DELETE /orders/{other}");
    assert!(
        seen(&up).iter().all(|r| *r != other_path),
        "{:?}",
        seen(&up)
    );
}

#[test]
fn resource_mistakes_are_reported_by_check_with_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    pki.write_leaf(&dir.path().join("cert.pem"), &dir.path().join("key.pem"));
    std::fs::write(dir.path().join("pepper"), "ab".repeat(32)).unwrap();
    std::fs::write(
        dir.path().join("portcullis.yaml"),
        "tls:\n  certificate: cert.pem\n  private_key: key.pem\nkeys:\n  pepper_file: pepper\npolicies:\n  - p.yaml\n",
    )
    .unwrap();
    let route = |n: usize, methods: &str, path: &str, resource: &str| {
        format!("  - name: r{n}\n    methods: [{methods}]\n    path: {path}\n    upstream: u\n    resource: {resource}\n")
    };
    let policy = [
        "upstreams:\n  u:\n    url: http://127.0.0.1:9\nresources:\n  order: {owner: /partner}\n  note: {}\n  Bad: {}\nroutes:\n".to_string(),
        route(0, "GET", "/a/{id}", "{kind: invoice, action: read}"),
        route(1, "GET", "/b", "{kind: order, action: list}"),
        route(2, "DELETE", "/c/{id}", "{kind: order, action: delete, unknown: preflight}"),
        route(3, "GET, HEAD", "/d/{id}", "{kind: order, action: read}"),
        route(4, "GET", "/e/{ref}", "{kind: order, action: read}"),
        route(5, "PUT", "/f/{id}", "{kind: order, action: change, unknown: preflight, preflight: '/f?id={id}'}"),
        route(6, "GET", "/g", "{kind: note, action: list, rows: /notes/*}"),
        route(7, "POST", "/h", "{kind: order, action: create, id: {body: /id}}"),
    ]
    .concat();
    std::fs::write(dir.path().join("p.yaml"), &policy).unwrap();
    let (code, _out, err) = run_cli(&["check", "--config", "portcullis.yaml"], dir.path());
    assert_eq!(code, 1, "{err}");
    for expected in [
        "resources.Bad: resource kinds are 1-64 characters",
        "routes[0].resource.kind: no resource kind \"invoice\"",
        "routes[1].resource.rows: a list route says where its rows are",
        "routes[2].resource.preflight: a write on an unknown object needs a pre-flight read",
        "routes[3].methods: this route judges the owner in its answer's body",
        "routes[4].resource.id: say where the request names the object",
        "routes[5].resource.preflight: a path template starting with '/' with exactly one {id} and no query",
        "routes[6].resource.kind: list rows are judged by their owner field: give resources.note.owner",
        "routes[7].resource.id: create and list routes name no existing object",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    assert!(!err.contains("panicked"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_and_admin_api_manage_a_running_gateways_index() {
    let (up, gw) = start("refuse", "drop").await;
    let (a0, a1, g0) = (seeded("acme", 0), seeded("acme", 1), seeded("globex", 0));
    let export = gw.path("legacy.jsonl");
    std::fs::write(
        &export,
        format!("{{\"id\":\"{a0}\",\"partner\":\"acme\"}}\n{{\"id\":\"{a1}\",\"partner\":\"acme\"}}\n{{\"id\":\"{g0}\",\"partner\":\"globex\"}}\n"),
    )
    .unwrap();
    // The gateway owns its index, so the CLI goes through the admin API.
    let out = owners_cli(
        &gw,
        &["import", export.to_str().unwrap(), "--kind", "order"],
    );
    assert!(out.contains("imported 3 records"), "{out}");
    assert_eq!(gw.metric("portcullis_ownership_index_entries").await, 3.0);
    assert_eq!(
        send(&gw, "acme", "GET", &format!("/orders/{a0}"), "")
            .await
            .status,
        200
    );
    assert_problem(
        &send(&gw, "globex", "GET", &format!("/orders/{a0}"), "").await,
        404,
        "object_not_found",
    );

    let out = owners_cli(&gw, &["transfer", "order", &a1, "--to", "globex"]);
    assert!(out.contains("now belongs to globex (was acme)"), "{out}");
    assert_problem(
        &send(&gw, "acme", "DELETE", &format!("/orders/{a1}"), "").await,
        404,
        "object_not_found",
    );
    assert_eq!(
        send(&gw, "globex", "DELETE", &format!("/orders/{a1}"), "")
            .await
            .status,
        204
    );
    assert_eq!(
        owners_cli(&gw, &["show", "order", &a1]).trim(),
        format!("order {a1} globex")
    );
    let lines: Vec<serde_json::Value> = owners_cli(&gw, &["export", "--partner", "globex"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(lines
        .iter()
        .all(|l| l["partner"] == "globex" && l["kind"] == "order"));

    let out = owners_cli(&gw, &["forget", "order", &a0]);
    assert!(out.contains("forgotten (belonged to acme)"), "{out}");
    assert_problem(
        &send(&gw, "acme", "GET", &format!("/orders/{a0}"), "").await,
        404,
        "object_not_found",
    );

    // The admin API itself: token required, answers as documented.
    let mut s = tokio::net::TcpStream::connect(gw.admin).await.unwrap();
    s.write_all(b"GET /v1/owners HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let resp = read_response(&mut s).await.unwrap();
    assert_eq!(
        (resp.status, resp.json()["code"].clone()),
        (401, "admin_token_invalid".into())
    );
    let (status, body) = gw
        .admin_api("GET", &format!("/v1/owners/order/{g0}"), None)
        .await;
    assert_eq!((status, body["partner"].as_str()), (200, Some("globex")));
    let (status, body) = gw.admin_api("GET", "/v1/owners/order/ord_nope", None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("owner_not_found"))
    );
    let (status, _) = gw
        .admin_api(
            "PUT",
            &format!("/v1/owners/order/{g0}"),
            Some(serde_json::json!({"partner": "Not A Partner"})),
        )
        .await;
    assert_eq!(status, 400);
    let (status, body) = gw
        .admin_api(
            "POST",
            "/v1/owners",
            Some(
                serde_json::json!({"owners": [{"kind": "order", "id": "../x", "partner": "acme"}]}),
            ),
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (400, Some("bad_request")));
    let (status, body) = gw.admin_api("GET", "/v1/owners?partner=globex", None).await;
    assert_eq!(status, 200);
    // A deleted object stays its owner's: nobody else can claim its id.
    assert_eq!(body["owners"].as_array().unwrap().len(), 2, "{body}");
    // None of the refused requests reached the upstream.
    assert_eq!(
        seen(&up),
        vec![format!("GET /orders/{a0}"), format!("DELETE /orders/{a1}")]
    );
}
