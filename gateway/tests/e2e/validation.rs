//! Request validation end to end: every invalid request is refused with a
//! bounded list of violations, and the upstream receives no byte of it,
//! whatever the framing (Content-Length, chunked, slow, HTTP/2).

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::common::*;

const COMMON: &str = r#"{
  "$schema": "http://json-schema.org/draft-07/schema#",
  "definitions": {"sku": {"type": "string", "pattern": "^[A-Z0-9-]{3,32}$"}}
}"#;

const NEW_ORDER: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "additionalProperties": false,
  "required": ["sku", "quantity"],
  "properties": {
    "sku": {"$ref": "../common.json#/definitions/sku"},
    "quantity": {"type": "integer", "minimum": 1, "maximum": 1000},
    "note": {"type": "string", "maxLength": 200}
  }
}"#;

/// Draft 7 only: `dependencies` (split in 2019-09).
const LEGACY: &str = r#"{
  "$schema": "http://json-schema.org/draft-07/schema#",
  "type": "object",
  "dependencies": {"card": ["expiry"]}
}"#;

const BATCH: &str = r#"{
  "type": "object",
  "required": ["items"],
  "properties": {"items": {"type": "array", "items": {"type": "object", "required": ["sku"],
    "properties": {"sku": {"type": "string", "pattern": "^[A-Z0-9-]{3,32}$"}}}}}
}"#;

fn policy(upstream: &str) -> String {
    format!(
        "partners:\n  acme: {{}}\n  globex: {{}}\n\
         upstreams:\n  up:\n    url: {upstream}\n\
         routes:\n\
         \x20 - name: create-order\n    methods: [POST]\n    path: /partners/{{partner}}/orders\n    upstream: up\n\
         \x20   validate:\n      body: orders/new-order.json\n\
         \x20 - name: list-orders\n    methods: [GET]\n    path: /partners/{{partner}}/orders\n    upstream: up\n\
         \x20   validate:\n      unknown_query: refuse\n\
         \x20     query:\n        type: object\n        properties:\n          limit: {{type: integer, minimum: 1, maximum: 100}}\n          status: {{enum: [open, shipped]}}\n          tag: {{type: array, items: {{type: string}}, maxItems: 3}}\n\
         \x20     headers:\n        type: object\n        required: [x-client-version]\n        properties:\n          x-client-version: {{type: integer, minimum: 2}}\n\
         \x20 - name: get-order\n    methods: [GET]\n    path: /partners/{{partner}}/orders/{{id}}\n    upstream: up\n\
         \x20   validate:\n      path:\n        properties:\n          id: {{type: string, pattern: '^[a-z]+-[0-9]{{4}}$'}}\n\
         \x20 - name: legacy\n    methods: [POST]\n    path: /echo/legacy\n    upstream: up\n\
         \x20   validate:\n      body: legacy.json\n      content_types: [application/json, application/vnd.acme+json]\n\
         \x20 - name: batch\n    methods: [POST]\n    path: /echo/batch\n    upstream: up\n    max_body_bytes: 2097152\n\
         \x20   validate:\n      body: batch.json\n"
    )
}

async fn start() -> (Upstream, Gateway) {
    let up = Upstream::start().await;
    let mut config = GatewayConfig::orders(&up.url());
    config.policies = vec![("validated.yaml".into(), policy(&up.url()))];
    config.schemas = vec![
        ("common.json".into(), COMMON.into()),
        ("orders/new-order.json".into(), NEW_ORDER.into()),
        ("legacy.json".into(), LEGACY.into()),
        ("batch.json".into(), BATCH.into()),
    ];
    let gw = Gateway::start(config).await;
    (up, gw)
}

fn post(path: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: gateway.test\r\n{content_type}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    req
}

const JSON: &str = "Content-Type: application/json\r\n";

/// A reported violation: (location, pointer, keyword).
type Found = (String, String, String);

/// A request body case: content-type header line(s), body, expected status,
/// problem code and violations.
type Case = (&'static str, Vec<u8>, u16, &'static str, Vec<Found>);

/// The violations of a refusal.
fn violations(resp: &RawResponse) -> Vec<Found> {
    resp.json()["violations"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|v| {
                    (
                        v["location"].as_str().unwrap_or_default().to_string(),
                        v["pointer"].as_str().unwrap_or_default().to_string(),
                        v["keyword"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn v(location: &str, pointer: &str, keyword: &str) -> Found {
    (location.into(), pointer.into(), keyword.into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_path_and_header_values_are_validated_with_their_declared_types() {
    let (up, gw) = start().await;
    let get = |target: &str, headers: &str| {
        format!("GET {target} HTTP/1.1\r\nHost: gateway.test\r\n{headers}\r\n").into_bytes()
    };
    let version = "X-Client-Version: 3\r\n";
    for (target, headers, expected) in [
        (
            "/partners/acme/orders?limit=five",
            version,
            v("query", "/limit", "type"),
        ),
        (
            "/partners/acme/orders?limit=500",
            version,
            v("query", "/limit", "maximum"),
        ),
        (
            "/partners/acme/orders?limit=0",
            version,
            v("query", "/limit", "minimum"),
        ),
        (
            "/partners/acme/orders?limit=5&limit=50",
            version,
            v("query", "/limit", "repeated"),
        ),
        (
            "/partners/acme/orders?status=lost",
            version,
            v("query", "/status", "enum"),
        ),
        (
            "/partners/acme/orders?debug=1",
            version,
            v("query", "/debug", "unknown"),
        ),
        (
            "/partners/acme/orders?tag=a&tag=b&tag=c&tag=d",
            version,
            v("query", "/tag", "maxItems"),
        ),
        ("/partners/acme/orders", "", v("header", "", "required")),
        (
            "/partners/acme/orders",
            "X-Client-Version: 1\r\n",
            v("header", "/x-client-version", "minimum"),
        ),
        (
            "/partners/acme/orders",
            "X-Client-Version: two\r\n",
            v("header", "/x-client-version", "type"),
        ),
        (
            "/partners/acme/orders/ACME_1",
            "",
            v("path", "/id", "pattern"),
        ),
    ] {
        let resp = raw_request(&gw, &get(target, headers)).await.unwrap();
        assert_problem(&resp, 400, "schema_violation");
        assert_eq!(violations(&resp), vec![expected], "{target} {headers}");
    }
    assert!(
        up.recorder.is_empty(),
        "upstream saw {:?}",
        up.recorder.requests()
    );

    for (target, headers) in [
        ("/partners/acme/orders?limit=5", version),
        (
            "/partners/acme/orders?limit=100&status=open&tag=a&tag=b",
            version,
        ),
        ("/partners/acme/orders/acme-1001", ""),
    ] {
        let resp = raw_request(&gw, &get(target, headers)).await.unwrap();
        assert_eq!(
            resp.status,
            200,
            "{target}: {}",
            String::from_utf8_lossy(&resp.body)
        );
    }
    assert_eq!(up.recorder.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_bodies_never_reach_the_upstream() {
    let (up, gw) = start().await;
    let order = "/partners/acme/orders";
    let deep = format!(
        r#"{{"sku":"AB-1","quantity":1,"note":{}1{}}}"#,
        "[".repeat(40),
        "]".repeat(40)
    );
    let cases: Vec<Case> = vec![
        (
            JSON,
            br#"{"sku":"AB-1","quantity":"3"}"#.to_vec(),
            400,
            "schema_violation",
            vec![v("body", "/quantity", "type")],
        ),
        (
            JSON,
            br#"{"sku":"AB-1","quantity":0}"#.to_vec(),
            400,
            "schema_violation",
            vec![v("body", "/quantity", "minimum")],
        ),
        (
            JSON,
            br#"{"sku":"ab-1","quantity":1}"#.to_vec(),
            400,
            "schema_violation",
            vec![v("body", "/sku", "pattern")],
        ),
        (
            JSON,
            br#"{"sku":"AB-1","quantity":1,"admin":true}"#.to_vec(),
            400,
            "schema_violation",
            vec![v("body", "", "additionalProperties")],
        ),
        (
            JSON,
            br#"{"sku":"AB-1"}"#.to_vec(),
            400,
            "schema_violation",
            vec![v("body", "", "required")],
        ),
        (
            JSON,
            br#"{"sku":"AB-1","quantity":1,"quantity":1000000}"#.to_vec(),
            400,
            "json_duplicate_key",
            vec![],
        ),
        (JSON, deep.into_bytes(), 400, "json_too_deep", vec![]),
        (
            JSON,
            b"{\"sku\":\"AB-1\xff\",\"quantity\":1}".to_vec(),
            400,
            "body_not_utf8",
            vec![],
        ),
        (
            JSON,
            br#"{"sku":"AB-1","quantity":1"#.to_vec(),
            400,
            "body_not_json",
            vec![],
        ),
        (JSON, b"".to_vec(), 400, "body_required", vec![]),
        (
            "Content-Type: text/plain\r\n",
            br#"{"sku":"AB-1","quantity":1}"#.to_vec(),
            415,
            "unsupported_media_type",
            vec![],
        ),
        (
            "Content-Type: application/json; charset=latin1\r\n",
            br#"{"sku":"AB-1","quantity":1}"#.to_vec(),
            415,
            "unsupported_media_type",
            vec![],
        ),
        (
            "Content-Type: application/json\r\nContent-Type: text/plain\r\n",
            br#"{"sku":"AB-1","quantity":1}"#.to_vec(),
            415,
            "unsupported_media_type",
            vec![],
        ),
        (
            "",
            br#"{"sku":"AB-1","quantity":1}"#.to_vec(),
            415,
            "unsupported_media_type",
            vec![],
        ),
    ];
    for (content_type, body, status, code, expected) in cases {
        let resp = raw_request(&gw, &post(order, content_type, &body))
            .await
            .unwrap();
        assert_problem(&resp, status, code);
        assert_eq!(
            violations(&resp),
            expected,
            "{}",
            String::from_utf8_lossy(&body)
        );
    }

    // The same invalid body chunked, dribbled slowly, and over HTTP/2.
    let bad = br#"{"sku":"AB-1","quantity":1,"admin":true}"#;
    let mut chunked = format!(
        "POST {order} HTTP/1.1\r\nHost: gateway.test\r\n{JSON}Transfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for piece in bad.chunks(7) {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let resp = raw_request(&gw, &chunked).await.unwrap();
    assert_problem(&resp, 400, "schema_violation");

    let mut slow = gw.raw_tls().await;
    let request = gw.authed(&post(order, JSON, bad));
    for piece in request.chunks(request.len() / 4 + 1) {
        slow.write_all(piece).await.unwrap();
        slow.flush().await.unwrap();
        // A slow client, not synchronisation: nothing waits on this.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let resp = read_response(&mut slow).await.unwrap();
    assert_problem(&resp, 400, "schema_violation");

    let (status, body) = h2_raw(
        &gw,
        "POST",
        order,
        &[("content-type", "application/json")],
        bad,
    )
    .await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    assert!(
        up.recorder.is_empty(),
        "upstream saw {:?}",
        up.recorder.requests()
    );

    // A valid body reaches the upstream byte for byte, over either protocol.
    let good = br#"{"sku":"AB-1","quantity":3,"note":"by the door"}"#;
    let resp = raw_request(&gw, &post(order, JSON, good)).await.unwrap();
    assert_eq!(resp.status, 201, "{}", String::from_utf8_lossy(&resp.body));
    let (status, _) = h2_raw(
        &gw,
        "POST",
        order,
        &[("content-type", "application/json")],
        good,
    )
    .await;
    assert_eq!(status, 201);
    let seen = up.recorder.requests();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|r| r.body == good));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn violations_are_bounded_and_never_echo_values() {
    let (up, gw) = start().await;
    let items: Vec<String> = (0..50)
        .map(|i| format!(r#"{{"sku":"secret-token-{i}"}}"#))
        .collect();
    let body = format!(r#"{{"items":[{}]}}"#, items.join(","));
    let resp = raw_request(&gw, &post("/echo/batch", JSON, body.as_bytes()))
        .await
        .unwrap();
    assert_problem(&resp, 400, "schema_violation");
    let found = violations(&resp);
    assert_eq!(found.len(), 10, "{found:?}");
    assert!(found.iter().all(|(l, _, k)| l == "body" && k == "pattern"));
    assert!(!String::from_utf8_lossy(&resp.body).contains("secret-token"));

    // A 1 MiB body is validated whole: one bad item at the very end refuses it.
    let item = r#"{"sku":"ABC-123"}"#;
    let count = 1024 * 1024 / (item.len() + 1);
    let mut many = vec![item; count];
    let valid = format!(r#"{{"items":[{}]}}"#, many.join(","));
    assert!(valid.len() >= 1024 * 1024 - 64);
    let resp = raw_request(&gw, &post("/echo/batch", JSON, valid.as_bytes()))
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
    assert!(up.recorder.requests()[0].body == valid.as_bytes());
    many.push(r#"{"sku":"bad"}"#);
    let invalid = format!(r#"{{"items":[{}]}}"#, many.join(","));
    let resp = raw_request(&gw, &post("/echo/batch", JSON, invalid.as_bytes()))
        .await
        .unwrap();
    assert_problem(&resp, 400, "schema_violation");
    assert_eq!(
        violations(&resp),
        vec![v("body", &format!("/items/{count}/sku"), "pattern")]
    );
    assert_eq!(up.recorder.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draft_7_schemas_and_declared_media_types_are_honoured() {
    let (up, gw) = start().await;
    let resp = raw_request(
        &gw,
        &post(
            "/echo/legacy",
            "Content-Type: application/vnd.acme+json\r\n",
            br#"{"card":"4111"}"#,
        ),
    )
    .await
    .unwrap();
    assert_problem(&resp, 400, "schema_violation");
    // Applied at all only under draft 7 (2020-12 ignores `dependencies`);
    // the validator reports it as the missing property.
    assert_eq!(violations(&resp), vec![v("body", "", "required")]);
    let resp = raw_request(
        &gw,
        &post(
            "/echo/legacy",
            "Content-Type: Application/JSON; charset=UTF-8\r\n",
            br#"{"card":"4111","expiry":"12/30"}"#,
        ),
    )
    .await
    .unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(up.recorder.len(), 1);
}

/// The example upstream's own OpenAPI document, imported as routes.
fn openapi_policy(upstream: &str) -> String {
    let doc = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/orders-upstream/openapi.yaml");
    format!(
        "partners:\n  acme: {{}}\n  globex: {{}}\n\
         upstreams:\n  orders:\n    url: {upstream}\n\
         openapi:\n  - file: {}\n    upstream: orders\n    unknown_query: refuse\n",
        doc.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openapi_document_becomes_routes_and_validators() {
    let up = Upstream::start().await;
    let mut config = GatewayConfig::orders(&up.url());
    config.policies = vec![("openapi.yaml".into(), openapi_policy(&up.url()))];
    let gw = Gateway::start(config).await;
    let order = "/partners/acme/orders";
    for (body, expected) in [
        (
            &br#"{"sku":"BOLT-7","quantity":0}"#[..],
            v("body", "/quantity", "minimum"),
        ),
        (
            br#"{"sku":"BOLT-7","quantity":1001}"#,
            v("body", "/quantity", "maximum"),
        ),
        (
            br#"{"sku":"bolt-7","quantity":1}"#,
            v("body", "/sku", "pattern"),
        ),
        (
            br#"{"sku":"BOLT-7","quantity":1,"price":0}"#,
            v("body", "", "additionalProperties"),
        ),
        (br#"{"quantity":1}"#, v("body", "", "required")),
    ] {
        let resp = raw_request(&gw, &post(order, JSON, body)).await.unwrap();
        assert_problem(&resp, 400, "schema_violation");
        assert_eq!(violations(&resp), vec![expected]);
    }
    let resp = raw_request(&gw, &post(order, JSON, b"")).await.unwrap();
    assert_problem(&resp, 400, "body_required");
    let get =
        |target: &str| format!("GET {target} HTTP/1.1\r\nHost: gateway.test\r\n\r\n").into_bytes();
    let resp = raw_request(&gw, &get("/partners/acme/orders?debug=1"))
        .await
        .unwrap();
    assert_problem(&resp, 400, "schema_violation");
    assert_eq!(violations(&resp), vec![v("query", "/debug", "unknown")]);
    // `{partner}` in an imported path binds the route to the caller.
    let resp = raw_request(&gw, &get("/partners/globex/orders"))
        .await
        .unwrap();
    assert_problem(&resp, 403, "partner_mismatch");
    // Paths the document does not have stay unknown.
    let resp = raw_request(&gw, &get("/echo/anything")).await.unwrap();
    assert_problem(&resp, 404, "route_not_found");
    assert!(
        up.recorder.is_empty(),
        "upstream saw {:?}",
        up.recorder.requests()
    );

    let resp = raw_request(&gw, &post(order, JSON, br#"{"sku":"BOLT-7","quantity":3}"#))
        .await
        .unwrap();
    assert_eq!(resp.status, 201, "{}", String::from_utf8_lossy(&resp.body));
    let resp = raw_request(&gw, &get("/partners/acme/orders"))
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
    // Imported routes are named after their operationId in metrics.
    let sample = "portcullis_requests_total{code=\"proxied\",decision=\"allow\",route=\"createOrder\",status=\"201\"}";
    eventually(
        "the created order counted",
        Duration::from_secs(10),
        || async { (gw.metric(sample).await == 1.0).then_some(()) },
    )
    .await;
}

/// An OpenAPI 3.0 document as real ones are written: `nullable` fields, a
/// server-owned `readOnly` id, and `security` scopes.
const LEGACY_30: &str = r##"openapi: 3.0.3
info: {title: notes, version: "1"}
security: [{oauth: ["orders:read"]}]
paths:
  /partners/{partner}/notes:
    parameters: [{name: partner, in: path, required: true, schema: {type: string}}]
    get:
      operationId: listNotes
      responses: {"200": {description: ok}}
    post:
      operationId: createNote
      security: [{oauth: ["orders:write"]}]
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: "#/components/schemas/Note"}
      responses: {"201": {description: ok}}
components:
  schemas:
    Note:
      type: object
      required: [id, text]
      additionalProperties: false
      properties:
        id: {type: string, readOnly: true}
        text: {type: string, nullable: true, maxLength: 20}
        due: {type: string, format: date, nullable: true}
"##;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openapi_30_document_validates_as_its_authors_meant() {
    let up = Upstream::start().await;
    let mut config = GatewayConfig::orders(&up.url());
    config.schemas = vec![("notes.yaml".into(), LEGACY_30.into())];
    config.policies = vec![(
        "notes.yaml".into(),
        format!(
            "partners:\n  acme:\n    scopes: [orders:read, orders:write]\n  globex:\n    scopes: [orders:read]\n\
             upstreams:\n  orders:\n    url: {}\n\
             openapi:\n  - file: ../schemas/notes.yaml\n    upstream: orders\n",
            up.url()
        ),
    )];
    let gw = Gateway::start(config).await;
    let acme = gw.client_with_key(Some(gw.key("acme")));
    let globex = gw.client_with_key(Some(gw.key("globex")));
    let notes = |partner: &str| gw.url(&format!("/partners/{partner}/notes"));
    let post = |client: &reqwest::Client, partner: &str, body: &'static str| {
        client
            .post(notes(partner))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    // Null where the document says nullable: forwarded, not a false 400.
    for body in [r#"{"text":null}"#, r#"{"text":"call back","due":null}"#] {
        let resp = post(&acme, "acme", body).await.unwrap();
        assert_ne!(resp.status(), 400, "{body}: {}", resp.text().await.unwrap());
    }
    assert_eq!(up.recorder.len(), 2);
    up.recorder.clear();

    // The read-only id belongs to the server: a request carrying it is
    // refused, and its `required` does not apply to requests.
    // A case-insensitive binder would read these as `id`.
    for spelling in [r#"{"ID":"n-1","text":"x"}"#, r#"{"Id":"n-1"}"#] {
        let resp = post(&acme, "acme", spelling).await.unwrap();
        assert_eq!(resp.status(), 400, "{spelling}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["code"], "schema_violation", "{spelling}");
        // Refused as the read-only field, not merely as an unknown one.
        let violations = body["violations"].as_array().unwrap();
        assert!(
            violations
                .iter()
                .any(|v| v["keyword"] == "not" && v["pointer"].as_str() != Some("")),
            "{body}"
        );
    }
    let resp = post(&acme, "acme", r#"{"id":"n-1","text":"x"}"#)
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "schema_violation");
    assert_eq!(body["violations"][0]["pointer"], "/id", "{body}");
    // Non-nullable constraints still hold.
    let resp = post(&acme, "acme", r#"{"text":"far too long for the field"}"#)
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = post(&acme, "acme", r#"{"text":"x","due":"tomorrow"}"#)
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    // `security` scopes: creating needs orders:write, which globex lacks;
    // the document-level orders:read lets it list.
    let resp = post(&globex, "globex", r#"{"text":"x"}"#).await.unwrap();
    assert_eq!(resp.status(), 403);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "scope_denied");
    assert!(up.recorder.is_empty(), "{:?}", up.recorder.requests());
    let resp = globex.get(notes("globex")).send().await.unwrap();
    assert_ne!(resp.status(), 403);
    assert_eq!(up.recorder.len(), 1);
}
