//! The partner listener: a partner manages its own data keys with its
//! management credential; a data key cannot, and one partner never reaches
//! another's keys.

use serde_json::{json, Value};

use crate::common::*;

async fn call(client: &reqwest::Client, method: &str, url: String) -> (u16, String, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let resp = client.request(method, url).send().await.unwrap();
    let status = resp.status().as_u16();
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let body = resp.text().await.unwrap();
    (
        status,
        request_id,
        serde_json::from_str(&body).unwrap_or(Value::Null),
    )
}

async fn create(client: &reqwest::Client, gw: &Gateway, body: Value) -> (u16, Value) {
    let resp = client
        .post(gw.partner_url("/v1/keys"))
        .json(&body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

async fn data_status(gw: &Gateway, key: &str, partner: &str) -> u16 {
    gw.client_with_key(Some(key))
        .get(gw.url(&format!("/partners/{partner}/orders")))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_takes_back_a_stolen_key_with_its_management_credential() {
    let up = Upstream::start().await;
    let gw = Gateway::start(GatewayConfig::orders(&up.url())).await;
    let stolen = gw.key("acme").to_string();
    let credential = gw.management_credential("acme", "console").await;
    assert_eq!(data_status(&gw, &stolen, "acme").await, 200);

    // The thief cannot rotate the key away from acme…
    let thief = gw.client_with_key(Some(&stolen));
    let resp = thief
        .post(gw.url("/.portcullis/v1/keys/rotate"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    // …nor use it to manage acme's keys.
    let as_manager = gw.partner_client(Some(&stolen));
    let (status, _, body) = call(&as_manager, "GET", gw.partner_url("/v1/keys")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("credential_invalid"))
    );

    // acme finds the key and revokes it.
    let acme = gw.partner_client(Some(&credential));
    let (status, _, listed) = call(&acme, "GET", gw.partner_url("/v1/keys")).await;
    assert_eq!(status, 200, "{listed}");
    let keys = listed["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "only data keys are listed: {listed}");
    assert!(
        !listed.to_string().contains(&stolen[9..]),
        "no secret in a listing"
    );
    assert!(listed.get("hash").is_none() && keys[0].get("hash").is_none());
    let key_id = keys[0]["key_id"].as_str().unwrap().to_string();
    let (status, request_id, revoked) = call(
        &acme,
        "DELETE",
        gw.partner_url(&format!("/v1/keys/{key_id}")),
    )
    .await;
    assert_eq!(status, 200, "{revoked}");
    assert_eq!(revoked["revoked"]["key_id"], key_id.as_str());

    // Refused the moment the call returned; the thief got nothing back.
    let resp = thief
        .get(gw.url("/partners/acme/orders"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "key_invalid");
    assert_eq!(
        up.recorder.len(),
        1,
        "only the request made before the theft arrived"
    );

    // The revocation is its own audit event: who, which key, from where.
    let event = gw.audit_event(&request_id).await;
    assert_eq!(event["event"], "partner_key_revoked", "{event}");
    assert_eq!(event["decision"], "allow", "{event}");
    assert_eq!(event["partner"], "acme", "{event}");
    assert_eq!(event["key_id"], key_id.as_str(), "{event}");
    assert_eq!(event["client_ip"], "127.0.0.1", "{event}");
    let credential_id = event["detail"]["credential"].as_str().unwrap();
    assert_eq!(credential_id.len(), 12, "{event}");
    let audit = std::fs::read_to_string(gw.path("audit.log")).unwrap();
    assert!(!audit.contains(&credential[9..]) && !audit.contains(&stolen[9..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_creates_regenerates_revokes_and_revokes_all_its_keys() {
    let up = Upstream::start().await;
    let gw = Gateway::start(GatewayConfig::orders(&up.url())).await;
    let credential = gw.management_credential("acme", "console").await;
    let acme = gw.partner_client(Some(&credential));

    // Create: the key is shown once and works at once.
    let (status, created) = create(&acme, &gw, json!({"name": "billing"})).await;
    assert_eq!(status, 201, "{created}");
    let billing = created["key"].as_str().unwrap().to_string();
    assert!(billing.starts_with("ptc_live_"));
    assert_eq!(created["name"], "billing");
    assert_eq!(data_status(&gw, &billing, "acme").await, 200);
    let (status, conflict) = create(&acme, &gw, json!({"name": "billing"})).await;
    assert_eq!(
        (status, conflict["code"].as_str()),
        (409, Some("key_conflict"))
    );
    for bad in [
        json!({"name": "Bad Name"}),
        json!({"name": "ok", "expires_at": 1}),
        json!({"name": "ok", "partner": "globex"}),
    ] {
        let (status, body) = create(&acme, &gw, bad.clone()).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("bad_request")),
            "{bad}"
        );
    }
    let (_, _, listed) = call(&acme, "GET", gw.partner_url("/v1/keys")).await;
    let names: Vec<&str> = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{listed}");
    assert!(names.contains(&"primary") && names.contains(&"billing"));
    assert!(!listed.to_string().contains(&billing[9..]));

    // Regenerate: the old key is refused when the call returns.
    let id = created["key_id"].as_str().unwrap();
    let (status, request_id, regenerated) = call(
        &acme,
        "POST",
        gw.partner_url(&format!("/v1/keys/{id}/regenerate")),
    )
    .await;
    assert_eq!(status, 200, "{regenerated}");
    assert_eq!(regenerated["replaced"], id);
    let renewed = regenerated["key"].as_str().unwrap().to_string();
    assert_eq!(data_status(&gw, &billing, "acme").await, 401);
    assert_eq!(data_status(&gw, &renewed, "acme").await, 200);
    let event = gw.audit_event(&request_id).await;
    assert_eq!(event["event"], "partner_key_regenerated", "{event}");
    assert_eq!(event["decision"], "allow", "{event}");
    // The replaced id is gone: regenerating it again finds nothing.
    let (status, _, body) = call(
        &acme,
        "POST",
        gw.partner_url(&format!("/v1/keys/{id}/regenerate")),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("key_not_found"))
    );

    // Revoke all: every data key goes at once; the credential stays.
    let (status, _, gone) = call(&acme, "POST", gw.partner_url("/v1/keys/revoke-all")).await;
    assert_eq!(status, 200, "{gone}");
    assert_eq!(gone["revoked"].as_array().unwrap().len(), 2, "{gone}");
    assert_eq!(data_status(&gw, &renewed, "acme").await, 401);
    assert_eq!(data_status(&gw, gw.key("acme"), "acme").await, 401);
    assert_eq!(data_status(&gw, gw.key("globex"), "globex").await, 200);
    let (status, _, listed) = call(&acme, "GET", gw.partner_url("/v1/keys")).await;
    assert_eq!(status, 200);
    assert_eq!(listed["keys"], json!([]));
    // Rollover without downtime starts again from a new key.
    let (status, _) = create(&acme, &gw, json!({"name": "primary"})).await;
    assert_eq!(status, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_partner_cannot_see_or_touch_anothers_keys_by_id() {
    let up = Upstream::start().await;
    let gw = Gateway::start(GatewayConfig::orders(&up.url())).await;
    let acme_credential = gw.management_credential("acme", "console").await;
    let globex_credential = gw.management_credential("globex", "console").await;
    let (_, _, acme_keys) = call(
        &gw.partner_client(Some(&acme_credential)),
        "GET",
        gw.partner_url("/v1/keys"),
    )
    .await;
    let acme_id = acme_keys["keys"][0]["key_id"].as_str().unwrap().to_string();

    let globex = gw.partner_client(Some(&globex_credential));
    let (_, _, listed) = call(&globex, "GET", gw.partner_url("/v1/keys")).await;
    assert_eq!(listed["partner"], "globex");
    assert!(!listed.to_string().contains(&acme_id), "{listed}");
    for (method, path) in [
        ("POST", format!("/v1/keys/{acme_id}/regenerate")),
        ("DELETE", format!("/v1/keys/{acme_id}")),
    ] {
        let (status, request_id, body) = call(&globex, method, gw.partner_url(&path)).await;
        // Not found, never forbidden: another partner's ids cannot be probed.
        assert_eq!(
            (status, body["code"].as_str()),
            (404, Some("key_not_found")),
            "{method} {path}"
        );
        let event = gw.audit_event(&request_id).await;
        assert_eq!(event["event"], "partner_request_refused", "{event}");
        assert_eq!(event["decision"], "deny", "{event}");
        assert_eq!(event["partner"], "globex", "{event}");
    }
    assert_eq!(data_status(&gw, gw.key("acme"), "acme").await, 200);
    // globex's credential is not an acme credential anywhere, and the
    // management credentials are not data keys to anyone.
    let resp = gw
        .client_with_key(Some(&globex_credential))
        .get(gw.url("/partners/globex/orders"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "key_malformed");
    assert_eq!(up.recorder.len(), 1, "only acme's own data request arrived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_partner_listener_refuses_what_it_does_not_serve() {
    let up = Upstream::start().await;
    let gw = Gateway::start(GatewayConfig::orders(&up.url())).await;
    let credential = gw.management_credential("acme", "console").await;
    let nobody = gw.partner_client(None);
    let resp = nobody.get(gw.partner_url("/v1/keys")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().contains_key("www-authenticate"));
    assert!(resp.headers().contains_key("strict-transport-security"));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "credential_missing");
    let acme = gw.partner_client(Some(&credential));
    for (method, path, status, code) in [
        ("GET", "/v1/keys?partner=globex", 400, "bad_request"),
        ("GET", "/v1/keys/", 404, "route_not_found"),
        ("GET", "/v1//keys", 404, "route_not_found"),
        ("GET", "/v1/partners/globex/keys", 404, "route_not_found"),
        ("PUT", "/v1/keys", 405, "method_not_allowed"),
        ("GET", "/v1/keys/revoke-all", 405, "method_not_allowed"),
        ("GET", "/partners/acme/orders", 404, "route_not_found"),
    ] {
        let (got, _, body) = call(&acme, method, gw.partner_url(path)).await;
        assert_eq!(
            (got, body["code"].as_str()),
            (status, Some(code)),
            "{method} {path}"
        );
    }
    // The data listener does not serve the partner API either.
    let resp = gw
        .client_with_key(Some(gw.key("acme")))
        .get(gw.url("/v1/keys"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert!(up.recorder.is_empty(), "nothing reached the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_credentials_blocks_the_address_and_calls_are_rate_limited() {
    let up = Upstream::start().await;
    let mut cfg = GatewayConfig::orders(&up.url());
    cfg.extra =
        "abuse:\n  auth_failures:\n    per_client: 3\n    window: 1m\n    block_for: 1m\n".into();
    let gw = Gateway::start(cfg).await;
    let credential = gw.management_credential("acme", "console").await;
    let guess = credential[..credential.len() - 10].to_string() + "0000000000";
    let guesser = gw.partner_client(Some(&guess));
    let mut codes = Vec::new();
    for _ in 0..4 {
        let (status, _, body) = call(&guesser, "GET", gw.partner_url("/v1/keys")).await;
        codes.push((status, body["code"].as_str().unwrap_or("").to_string()));
    }
    assert_eq!(codes[0], (401, "credential_invalid".to_string()));
    assert_eq!(codes[3], (429, "client_blocked".to_string()), "{codes:?}");
    // The block covers the real credential from that address too.
    let (status, _, _) = call(
        &gw.partner_client(Some(&credential)),
        "GET",
        gw.partner_url("/v1/keys"),
    )
    .await;
    assert_eq!(status, 429);
    let failures = gw.metrics().await;
    assert!(
        failures
            .contains("portcullis_partner_api_requests_total{action=\"list\",decision=\"deny\"}"),
        "{failures}"
    );

    // A tight listener rate: the fourth call in the burst waits.
    let mut cfg = GatewayConfig::orders(&up.url());
    cfg.partner_listener = "  rate: {requests: 3, per: 1h}\n".into();
    let gw = Gateway::start(cfg).await;
    let credential = gw.management_credential("acme", "console").await;
    let acme = gw.partner_client(Some(&credential));
    for _ in 0..3 {
        assert_eq!(call(&acme, "GET", gw.partner_url("/v1/keys")).await.0, 200);
    }
    let resp = acme.get(gw.partner_url("/v1/keys")).send().await.unwrap();
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "rate_limited");
    assert!(up.recorder.is_empty());
}

/// curl against the partner listener, as a partner's operator would script
/// it: (status, body).
fn curl(gw: &Gateway, credential: &str, args: &[&str], path: &str) -> (u16, Value) {
    let ca = gw.path("test-ca.pem");
    std::fs::write(&ca, &gw.pki.ca_pem).unwrap();
    let port = gw.partner.unwrap().port();
    let out = std::process::Command::new("curl")
        .args(["-sS", "--tlsv1.2", "-w", "\n%{http_code}", "--cacert"])
        .arg(&ca)
        .args(["--resolve", &format!("{HOST}:{port}:127.0.0.1")])
        .args(["-H", &format!("Authorization: Bearer {credential}")])
        .args(args)
        .arg(gw.partner_url(path))
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        status.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_rolls_a_key_over_without_downtime() {
    let up = Upstream::start().await;
    let gw = Gateway::start(GatewayConfig::orders(&up.url())).await;
    let credential = gw.management_credential("acme", "console").await;
    let old = gw.key("acme").to_string();
    // Create the new key first: both work while clients move over.
    let (status, created) = curl(
        &gw,
        &credential,
        &[
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "-d",
            r#"{"name":"next"}"#,
        ],
        "/v1/keys",
    );
    assert_eq!(status, 201, "{created}");
    let new = created["key"].as_str().unwrap().to_string();
    assert_eq!(data_status(&gw, &old, "acme").await, 200);
    assert_eq!(data_status(&gw, &new, "acme").await, 200);
    // Then revoke the old one.
    let (_, listed) = curl(&gw, &credential, &[], "/v1/keys");
    let old_id = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "primary")
        .unwrap()["key_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, revoked) = curl(
        &gw,
        &credential,
        &["-X", "DELETE"],
        &format!("/v1/keys/{old_id}"),
    );
    assert_eq!(status, 200, "{revoked}");
    assert_eq!(data_status(&gw, &old, "acme").await, 401);
    assert_eq!(data_status(&gw, &new, "acme").await, 200);
    // TLS 1.1 is refused here as on the data listener.
    let port = gw.partner.unwrap().port();
    let out = std::process::Command::new("curl")
        .args(["-sS", "-k", "--tlsv1.1", "--tls-max", "1.1"])
        .args(["--resolve", &format!("{HOST}:{port}:127.0.0.1")])
        .arg(gw.partner_url("/v1/keys"))
        .output()
        .unwrap();
    assert!(!out.status.success(), "a TLS 1.1 handshake must fail");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_shows_when_each_key_was_last_used() {
    let up = Upstream::start().await;
    let mut cfg = GatewayConfig::orders(&up.url());
    cfg.keys = "  last_used_flush: 200ms\n".into();
    let gw = Gateway::start(cfg).await;
    let credential = gw.management_credential("acme", "console").await;
    let acme = gw.partner_client(Some(&credential));
    let (status, spare) = create(&acme, &gw, json!({"name": "spare"})).await;
    assert_eq!(status, 201, "{spare}");
    assert_eq!(spare["last_used_at"], Value::Null);
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(data_status(&gw, gw.key("acme"), "acme").await, 200);
    // The batch reaches the store file; the listing reads it from there.
    let listed = eventually(
        "the key's use to be written",
        std::time::Duration::from_secs(10),
        || async {
            let store = std::fs::read_to_string(gw.path("keys.json")).ok()?;
            store.contains("last_used_at").then_some(())?;
            Some(call(&acme, "GET", gw.partner_url("/v1/keys")).await.2)
        },
    )
    .await;
    let keys = listed["keys"].as_array().unwrap();
    let used = keys.iter().find(|k| k["name"] == "primary").unwrap();
    let at = used["last_used_at"].as_u64().expect("a time");
    assert!(at <= before + 60 && at + 60 >= before, "{at} vs {before}");
    assert_eq!(at % 60, 0, "to the minute");
    let unused = keys.iter().find(|k| k["name"] == "spare").unwrap();
    assert_eq!(unused["last_used_at"], Value::Null, "{listed}");
}
