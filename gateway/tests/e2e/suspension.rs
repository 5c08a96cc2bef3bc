//! Runtime partner suspension: once the call returns, no node accepts any
//! key of the partner — the same guarantee as a key revocation.

use crate::common::*;

async fn get(gw: &Gateway, key: &str, partner: &str) -> RawResponse {
    let req = format!(
        "GET /partners/{partner}/orders HTTP/1.1\r\nHost: gateway.test\r\nX-API-Key: {key}\r\n\r\n"
    );
    raw_request_as_is(gw, req.as_bytes()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_partner_is_refused_at_once_and_resumed_at_once() {
    let up = Upstream::start().await;
    let gw = Gateway::start(GatewayConfig::orders(&up.url())).await;
    let (acme, globex) = (gw.key("acme").to_string(), gw.key("globex").to_string());
    assert_eq!(get(&gw, &acme, "acme").await.status, 200, "cached as valid");

    let (status, body) = gw
        .admin_api("POST", "/v1/partners/acme/suspend", None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["suspended"], true);
    // No waiting: refused from the moment the call returned, keys of any name.
    assert_problem(&get(&gw, &acme, "acme").await, 403, "partner_suspended");
    let (_, spare) = gw
        .admin_api(
            "POST",
            "/v1/keys",
            Some(serde_json::json!({"partner": "acme", "name": "spare"})),
        )
        .await;
    let spare = spare["key"].as_str().unwrap().to_string();
    assert_problem(&get(&gw, &spare, "acme").await, 403, "partner_suspended");
    assert_eq!(
        get(&gw, &globex, "globex").await.status,
        200,
        "others unaffected"
    );
    assert_eq!(
        up.recorder.len(),
        2,
        "nothing of acme's reached the upstream"
    );
    let (_, listed) = gw.admin_api("GET", "/v1/partners/suspended", None).await;
    assert_eq!(listed["suspended"], serde_json::json!(["acme"]));

    // The CLI goes through the running gateway's admin API.
    let (code, out, err) = keys_cli(gw.dir.path(), &["suspended"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "acme");
    let (code, out, err) = keys_cli(gw.dir.path(), &["resume", "--partner", "acme"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("resumed acme"), "{out}");
    assert_eq!(get(&gw, &acme, "acme").await.status, 200);
    let (code, _, _) = keys_cli(gw.dir.path(), &["suspend", "--partner", "acme"]);
    assert_eq!(code, 0);
    assert_problem(&get(&gw, &acme, "acme").await, 403, "partner_suspended");

    let (status, body) = gw
        .admin_api("POST", "/v1/partners/Not%20Valid/suspend", None)
        .await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspension_on_one_node_is_enforced_on_the_other_before_the_call_returns() {
    let redis = RedisServer::start().await;
    let up = Upstream::start().await;
    let keys = format!(
        "  store: redis\n  redis:\n    url: {}\n    lease: 1s\n    timeout: 200ms\n",
        redis.url()
    );
    let mut first = GatewayConfig::orders(&up.url());
    first.keys = keys.clone();
    let one = Gateway::start(first).await;
    let mut second = GatewayConfig::orders(&up.url());
    second.keys = keys;
    second.join = Some((one.dir.path().to_path_buf(), one.keys.clone()));
    let two = Gateway::start(second).await;
    let acme = one.key("acme").to_string();
    for gw in [&one, &two] {
        // Both nodes hold acme's key in their caches.
        eventually(
            "acme accepted",
            std::time::Duration::from_secs(10),
            || async { (get(gw, &acme, "acme").await.status == 200).then_some(()) },
        )
        .await;
    }

    let (status, body) = one
        .admin_api("POST", "/v1/partners/acme/suspend", None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_problem(&get(&two, &acme, "acme").await, 403, "partner_suspended");
    assert_problem(&get(&one, &acme, "acme").await, 403, "partner_suspended");

    let (status, _) = two
        .admin_api("POST", "/v1/partners/acme/resume", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(get(&one, &acme, "acme").await.status, 200);
    assert_eq!(get(&two, &acme, "acme").await.status, 200);
}
