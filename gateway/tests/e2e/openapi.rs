//! The book's OpenAPI documents (`docs/src/reference/openapi/`) against a
//! running gateway: every operation is called and answers with a status the
//! document lists and a body its schema accepts, every operation's success
//! is seen, and every other method on a documented path, and the paths next
//! to them, are refused as unrouted.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::common::*;

/// One OpenAPI document, its `$ref`s resolvable.
struct Spec {
    doc: Value,
    name: &'static str,
}

const METHODS: [&str; 6] = ["get", "head", "post", "put", "patch", "delete"];

impl Spec {
    fn load(name: &'static str) -> Spec {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../docs/src/reference/openapi")
            .join(name);
        let text = std::fs::read_to_string(&path).unwrap();
        let doc: Value = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(doc["openapi"], "3.1.0", "{name}");
        Spec { doc, name }
    }

    /// (method, path template, operationId) of every operation.
    fn operations(&self) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for (path, item) in self.doc["paths"].as_object().unwrap() {
            for method in METHODS {
                if let Some(op) = item.get(method) {
                    let id = op["operationId"].as_str().unwrap().to_string();
                    out.push((method.to_string(), path.clone(), id));
                }
            }
        }
        out
    }

    /// The value with every local `$ref` replaced by what it points at.
    fn inline(&self, value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(reference)) = map.get("$ref") {
                    let pointer = reference.strip_prefix('#').unwrap();
                    let target = self
                        .doc
                        .pointer(pointer)
                        .unwrap_or_else(|| panic!("{}: dangling $ref {reference}", self.name));
                    return self.inline(target);
                }
                Value::Object(
                    map.iter()
                        .map(|(k, v)| (k.clone(), self.inline(v)))
                        .collect(),
                )
            }
            Value::Array(items) => Value::Array(items.iter().map(|v| self.inline(v)).collect()),
            other => other.clone(),
        }
    }

    /// Panics unless the answer is one the document gives for the
    /// operation: a listed status, a listed content type, a body its schema
    /// accepts. Returns the operationId.
    fn check(&self, method: &str, template: &str, answer: &Answer) -> String {
        let op = &self.doc["paths"][template][method];
        assert!(op.is_object(), "{}: no {method} {template}", self.name);
        let id = op["operationId"].as_str().unwrap().to_string();
        let response = self.inline(&op["responses"][answer.status.to_string()]);
        assert!(
            response.is_object(),
            "{}: {id} answered {} {}, a status the document does not list",
            self.name,
            answer.status,
            String::from_utf8_lossy(&answer.body)
        );
        let Some(content) = response.get("content") else {
            return id;
        };
        if method == "head" {
            assert!(answer.body.is_empty(), "{id}: HEAD answered a body");
            return id;
        }
        let media = content
            .get(answer.content_type.as_str())
            .unwrap_or_else(|| {
                panic!(
                    "{}: {id} answered {} as {:?}, a content type the document does not list",
                    self.name, answer.status, answer.content_type
                )
            });
        let instance: Value = if answer.content_type.contains("json") {
            serde_json::from_slice(&answer.body)
                .unwrap_or_else(|e| panic!("{id}: {} is not JSON: {e}", answer.status))
        } else {
            Value::String(String::from_utf8(answer.body.clone()).unwrap())
        };
        let schema = self.inline(&media["schema"]);
        let validator = jsonschema::validator_for(&schema).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&instance)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{}: {id} answered {} with a body its schema refuses: {errors:?}\n{instance}",
            self.name,
            answer.status
        );
        id
    }

    /// The template with its parameters filled in from `values`.
    fn fill(template: &str, values: &[(&str, &str)]) -> String {
        let mut path = template.to_string();
        for (name, value) in values {
            path = path.replace(&format!("{{{name}}}"), value);
        }
        assert!(
            !path.contains('{'),
            "no sample value for a parameter of {template}"
        );
        path
    }
}

struct Answer {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

async fn send(client: &reqwest::Client, url: String, method: &str, body: Option<Value>) -> Answer {
    let method = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
    let mut request = client.request(method, url);
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let resp = request.send().await.unwrap();
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = resp.bytes().await.unwrap().to_vec();
    Answer {
        status,
        content_type,
        body,
    }
}

/// Every method a document does not give a path, and paths next to the
/// documented ones, answer 404 `route_not_found`, 405 `method_not_allowed`
/// or 400 `bad_path`: nothing is served that the document leaves out.
async fn nothing_else_is_served(
    spec: &Spec,
    client: &reqwest::Client,
    base: &str,
    samples: &[(&str, &str)],
    neighbours: &[&str],
) {
    let mut probes = Vec::new();
    for (template, item) in spec.doc["paths"].as_object().unwrap() {
        for method in METHODS {
            if item.get(method).is_none() {
                probes.push((method, Spec::fill(template, samples)));
            }
        }
    }
    for path in neighbours {
        for method in ["get", "post", "put", "delete"] {
            probes.push((method, path.to_string()));
        }
    }
    for (method, path) in probes {
        let answer = send(client, format!("{base}{path}"), method, None).await;
        assert!(
            matches!(answer.status, 400 | 404 | 405),
            "{}: {method} {path} answered {}, yet the document does not list it: {}",
            spec.name,
            answer.status,
            String::from_utf8_lossy(&answer.body)
        );
        if method != "head" {
            let code = answer.json()["code"].clone();
            assert!(
                code == "route_not_found" || code == "method_not_allowed" || code == "bad_path",
                "{}: {method} {path}: {code}",
                spec.name
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_is_what_its_openapi_document_says() {
    let spec = Spec::load("admin.yaml");
    let up = Upstream::start().await;
    let mut config = GatewayConfig::orders(&up.url());
    config.extra = "abuse:\n  auth_failures:\n    per_client: 2\n    per_key: 2\n".into();
    let gw = Gateway::start(config).await;
    let token = std::fs::read_to_string(gw.path("admin-token")).unwrap();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        "authorization",
        format!("Bearer {}", token.trim()).parse().unwrap(),
    );
    let admin = reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap();
    let anonymous = reqwest::Client::new();
    let base = format!("http://{}", gw.admin);

    let mut succeeded = BTreeSet::new();
    let mut call = async |client: &reqwest::Client,
                          method: &str,
                          template: &str,
                          values: &[(&str, &str)],
                          body: Option<Value>,
                          expected: u16|
           -> Answer {
        let url = format!("{base}{}", Spec::fill(template, values));
        let answer = send(client, url, method, body).await;
        let documented_path = template.split('?').next().unwrap_or(template);
        let id = spec.check(method, documented_path, &answer);
        assert_eq!(
            answer.status,
            expected,
            "{id}: {}",
            String::from_utf8_lossy(&answer.body)
        );
        if (200..300).contains(&answer.status) {
            succeeded.insert(id);
        }
        answer
    };

    for path in ["/healthz", "/readyz", "/metrics"] {
        call(&anonymous, "get", path, &[], None, 200).await;
        call(&anonymous, "head", path, &[], None, 200).await;
    }
    let no_token = call(&anonymous, "get", "/v1/keys", &[], None, 401).await;
    assert_eq!(no_token.json()["code"], "admin_token_invalid");

    // Keys: issue, list, rotate, revoke, and the refusals on the way.
    let spare = [("partner", "acme"), ("name", "spare")];
    let created = call(
        &admin,
        "post",
        "/v1/keys",
        &[],
        Some(json!({"partner": "acme", "name": "spare"})),
        201,
    )
    .await;
    assert_eq!(created.json()["partner"], "acme");
    call(
        &admin,
        "post",
        "/v1/keys",
        &[],
        Some(json!({"partner": "acme", "colour": "blue"})),
        400,
    )
    .await;
    let listed = call(&admin, "get", "/v1/keys?partner=acme", &[], None, 200).await;
    assert!(listed.json()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["name"] == "spare"));
    let rotated = call(
        &admin,
        "post",
        "/v1/keys/{partner}/{name}/rotate",
        &spare,
        None,
        200,
    )
    .await;
    assert_ne!(rotated.json()["key"], created.json()["key"]);
    let missing = [("partner", "acme"), ("name", "no-such-key")];
    call(
        &admin,
        "post",
        "/v1/keys/{partner}/{name}/rotate",
        &missing,
        None,
        404,
    )
    .await;
    call(
        &admin,
        "delete",
        "/v1/keys/{partner}/{name}",
        &spare,
        None,
        200,
    )
    .await;
    call(
        &admin,
        "delete",
        "/v1/keys/{partner}/{name}",
        &spare,
        None,
        404,
    )
    .await;

    // Suspension.
    let globex = [("partner", "globex")];
    call(
        &admin,
        "post",
        "/v1/partners/{partner}/suspend",
        &globex,
        None,
        200,
    )
    .await;
    let suspended = call(&admin, "get", "/v1/partners/suspended", &[], None, 200).await;
    assert_eq!(suspended.json()["suspended"], json!(["globex"]));
    call(
        &admin,
        "post",
        "/v1/partners/{partner}/resume",
        &globex,
        None,
        200,
    )
    .await;

    // Blocks: the revoked key, presented twice, blocks this client and that
    // key id (both thresholds are 2 here).
    let revoked = rotated.json()["key"].as_str().unwrap().to_string();
    let partner = gw.client_with_key(Some(&revoked));
    for _ in 0..2 {
        let resp = partner
            .get(gw.url("/partners/acme/orders"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
    }
    let blocks = call(&admin, "get", "/v1/blocks", &[], None, 200)
        .await
        .json();
    let client_ip = blocks["clients"][0]["id"].as_str().unwrap().to_string();
    let key_id = blocks["keys"][0]["id"].as_str().unwrap().to_string();
    call(
        &admin,
        "delete",
        "/v1/blocks/clients/{ip}",
        &[("ip", &client_ip)],
        None,
        200,
    )
    .await;
    call(
        &admin,
        "delete",
        "/v1/blocks/clients/{ip}",
        &[("ip", &client_ip)],
        None,
        404,
    )
    .await;
    call(
        &admin,
        "delete",
        "/v1/blocks/clients/{ip}",
        &[("ip", "not-an-address")],
        None,
        400,
    )
    .await;
    call(
        &admin,
        "delete",
        "/v1/blocks/keys/{key_id}",
        &[("key_id", &key_id)],
        None,
        200,
    )
    .await;
    call(
        &admin,
        "delete",
        "/v1/blocks/keys/{key_id}",
        &[("key_id", &key_id)],
        None,
        404,
    )
    .await;

    // Owners: import, export, show, transfer, forget.
    let order = [("kind", "order"), ("id", "o-1")];
    let owners = json!({"owners": [{"kind": "order", "id": "o-1", "partner": "acme"}]});
    let imported = call(&admin, "post", "/v1/owners", &[], Some(owners), 200).await;
    assert_eq!(imported.json()["imported"], 1);
    call(
        &admin,
        "post",
        "/v1/owners",
        &[],
        Some(json!({"owners": 7})),
        400,
    )
    .await;
    let exported = call(&admin, "get", "/v1/owners?kind=order", &[], None, 200).await;
    assert_eq!(exported.json()["owners"][0]["id"], "o-1");
    let shown = call(&admin, "get", "/v1/owners/{kind}/{id}", &order, None, 200).await;
    assert_eq!(shown.json()["partner"], "acme");
    let moved = call(
        &admin,
        "put",
        "/v1/owners/{kind}/{id}",
        &order,
        Some(json!({"partner": "globex"})),
        200,
    )
    .await;
    assert_eq!(moved.json()["previous"], "acme");
    call(
        &admin,
        "put",
        "/v1/owners/{kind}/{id}",
        &order,
        Some(json!({})),
        400,
    )
    .await;
    call(
        &admin,
        "delete",
        "/v1/owners/{kind}/{id}",
        &order,
        None,
        200,
    )
    .await;
    call(
        &admin,
        "delete",
        "/v1/owners/{kind}/{id}",
        &order,
        None,
        404,
    )
    .await;
    call(&admin, "get", "/v1/owners/{kind}/{id}", &order, None, 404).await;

    let documented: BTreeSet<String> = spec.operations().into_iter().map(|(_, _, id)| id).collect();
    assert_eq!(
        succeeded, documented,
        "every operation of the document answered with success at least once"
    );

    let samples = [
        ("partner", "acme"),
        ("name", "primary"),
        ("ip", "192.0.2.9"),
        ("key_id", "some-key-id"),
        ("kind", "order"),
        ("id", "o-9"),
    ];
    let neighbours = [
        "/",
        "/v1",
        "/v1/",
        "/v1/keys/",
        "//v1/keys",
        "/v1//keys",
        "/v1/keys/acme",
        "/v1/keys/acme/primary/rotate/again",
        "/v1/partners",
        "/v1/partners/acme",
        "/v1/partners/acme/delete",
        "/v1/blocks/",
        "/v1/blocks/clients",
        "/v1/blocks/partners/acme",
        "/v1/owners/",
        "/v1/owners/order",
        "/v1/owners/order/o-1/partner",
        "/v2/keys",
        "/healthz/",
        "/metrics/extra",
        "/.portcullis/v1/keys/rotate",
    ];
    nothing_else_is_served(&spec, &admin, &base, &samples, &neighbours).await;
    assert!(
        up.recorder.requests().is_empty(),
        "nothing reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_partner_api_is_what_its_openapi_document_says() {
    let spec = Spec::load("partner.yaml");
    let up = Upstream::start().await;
    let gw = Gateway::start(GatewayConfig::orders(&up.url()).with_self_rotation()).await;
    let base = gw.url("");
    let rotate = "/.portcullis/v1/keys/rotate";

    let anonymous = gw.client_with_key(None);
    let answer = send(&anonymous, format!("{base}{rotate}"), "post", None).await;
    spec.check("post", rotate, &answer);
    assert_eq!(
        (answer.status, answer.json()["code"].clone()),
        (401, json!("key_missing"))
    );

    let old = gw.key("acme").to_string();
    let partner = gw.client_with_key(Some(&old));
    let answer = send(&partner, format!("{base}{rotate}"), "post", None).await;
    assert_eq!(spec.check("post", rotate, &answer), "rotateOwnKey");
    assert_eq!(answer.status, 200);
    let new = answer.json()["key"].as_str().unwrap().to_string();

    let answer = send(&partner, format!("{base}{rotate}"), "post", None).await;
    spec.check("post", rotate, &answer);
    assert_eq!(
        (answer.status, answer.json()["code"].clone()),
        (401, json!("key_invalid"))
    );

    let partner = gw.client_with_key(Some(&new));
    let neighbours = [
        "/.portcullis",
        "/.portcullis/",
        "/.portcullis/v1",
        "/.portcullis/v1/keys",
        "/.portcullis/v1/keys/",
        "/.portcullis/v1/keys/rotate/",
        "/.portcullis/v1/keys/rotate/again",
        "/.portcullis/v2/keys/rotate",
    ];
    nothing_else_is_served(&spec, &partner, &base, &[], &neighbours).await;
    assert!(
        up.recorder.requests().is_empty(),
        "nothing reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_partner_key_api_is_what_its_openapi_document_says() {
    let spec = Spec::load("partner-keys.yaml");
    let up = Upstream::start().await;
    let mut cfg = GatewayConfig::orders(&up.url());
    // The probes below are many more calls than a partner makes.
    cfg.partner_listener = "  rate: {requests: 1000, per: 1m}\n".into();
    let gw = Gateway::start(cfg).await;
    let base = gw.partner_url("");
    let mut seen = std::collections::BTreeSet::new();

    let anonymous = gw.partner_client(None);
    let answer = send(&anonymous, format!("{base}/v1/keys"), "get", None).await;
    spec.check("get", "/v1/keys", &answer);
    assert_eq!(answer.json()["code"], "credential_missing");

    let credential = gw.management_credential("acme", "console").await;
    let acme = gw.partner_client(Some(&credential));
    let answer = send(&acme, format!("{base}/v1/keys"), "get", None).await;
    seen.insert(spec.check("get", "/v1/keys", &answer));
    assert_eq!(answer.status, 200);

    let answer = send(
        &acme,
        format!("{base}/v1/keys"),
        "post",
        Some(json!({"name": "spare"})),
    )
    .await;
    seen.insert(spec.check("post", "/v1/keys", &answer));
    assert_eq!(answer.status, 201);
    let spare = answer.json()["key_id"].as_str().unwrap().to_string();
    let answer = send(
        &acme,
        format!("{base}/v1/keys"),
        "post",
        Some(json!({"name": "spare"})),
    )
    .await;
    spec.check("post", "/v1/keys", &answer);
    assert_eq!(answer.status, 409);
    let answer = send(
        &acme,
        format!("{base}/v1/keys"),
        "post",
        Some(json!({"nom": "x"})),
    )
    .await;
    spec.check("post", "/v1/keys", &answer);
    assert_eq!(answer.status, 400);

    let regenerate = "/v1/keys/{key_id}/regenerate";
    let answer = send(
        &acme,
        format!("{base}/v1/keys/{spare}/regenerate"),
        "post",
        None,
    )
    .await;
    seen.insert(spec.check("post", regenerate, &answer));
    assert_eq!(answer.status, 200);
    let renewed = answer.json()["key_id"].as_str().unwrap().to_string();
    let answer = send(
        &acme,
        format!("{base}/v1/keys/{spare}/regenerate"),
        "post",
        None,
    )
    .await;
    spec.check("post", regenerate, &answer);
    assert_eq!(answer.status, 404);

    let answer = send(&acme, format!("{base}/v1/keys/{renewed}"), "delete", None).await;
    seen.insert(spec.check("delete", "/v1/keys/{key_id}", &answer));
    assert_eq!(answer.status, 200);

    // The audit trail is written off the request path: wait for its lines.
    let answer = eventually(
        "acme's activity in the audit trail",
        std::time::Duration::from_secs(10),
        || async {
            let answer = send(&acme, format!("{base}/v1/activity"), "get", None).await;
            let entries = answer.json()["entries"].as_array()?.len();
            (entries > 0).then_some(answer)
        },
    )
    .await;
    seen.insert(spec.check("get", "/v1/activity", &answer));
    assert_eq!(answer.status, 200);

    let answer = send(&acme, format!("{base}/v1/keys/revoke-all"), "post", None).await;
    seen.insert(spec.check("post", "/v1/keys/revoke-all", &answer));
    assert_eq!(answer.status, 200);

    let documented: std::collections::BTreeSet<String> =
        spec.operations().into_iter().map(|(_, _, id)| id).collect();
    assert_eq!(seen, documented, "every operation was seen to succeed");
    let neighbours = [
        "/",
        "/v1",
        "/v1/",
        "/v1/keys/",
        "/v1//keys",
        "/v1/keys/revoke-all/",
        "/v1/keys/0123456789ab/regenerate/",
        "/v1/keys/0123456789ab/rotate",
        "/v1/keys/0123456789AB",
        "/v2/keys",
        "/.portcullis/v1/keys/rotate",
        "/partners/acme/orders",
        "/healthz",
        "/metrics",
    ];
    nothing_else_is_served(
        &spec,
        &acme,
        &base,
        &[("key_id", "0123456789ab")],
        &neighbours,
    )
    .await;
    assert!(
        up.recorder.requests().is_empty(),
        "nothing reached the upstream"
    );
}
