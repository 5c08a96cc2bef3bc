//! Audit trail, metrics, rate limits and abuse detection, end to end.

use std::time::Duration;

use crate::common::*;

fn request_id(resp: &reqwest::Response) -> String {
    resp.headers()["x-request-id"].to_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_is_audited_with_its_decision_and_never_the_key() {
    let up = Upstream::start().await;
    let gw = Gateway::start(GatewayConfig::orders(&up.url())).await;

    let allowed = gw
        .client()
        .get(gw.url("/partners/acme/orders?limit=5"))
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), 200);
    let record = gw.audit_record(&request_id(&allowed)).await;
    assert_eq!(record["kind"], "request");
    assert_eq!(record["decision"], "allow");
    assert_eq!(record["reason"], "proxied");
    assert_eq!(record["partner"], "acme");
    assert_eq!(record["route"], "list-orders");
    assert_eq!(record["method"], "GET");
    assert_eq!(record["path"], "/partners/acme/orders");
    assert_eq!(record["status"], 200);
    assert_eq!(record["client_ip"], "127.0.0.1");
    assert!(record["tls_version"] == "TLSv1.3", "{record}");
    assert!(
        record["tls_cipher"].as_str().unwrap().contains("AES")
            || record["tls_cipher"].as_str().unwrap().contains("CHACHA")
    );
    assert!(record["key_id"].as_str().is_some_and(|k| !k.is_empty()));
    assert!(record["timings_us"]["auth"].as_u64().is_some(), "{record}");
    assert!(
        record["timings_us"]["upstream"].as_u64().is_some(),
        "{record}"
    );
    assert!(record["bytes_out"].as_u64().unwrap() > 0);

    // The last character changed to one it is not (a fixed `x` is the
    // key itself one time in 62), so the checksum fails.
    let key = gw.key("acme");
    let last = if key.ends_with('x') { 'y' } else { 'x' };
    let bad_key = format!("{}{last}", &key[..key.len() - 1]);
    let denied = gw
        .client_with_key(Some(&bad_key))
        .get(gw.url("/partners/acme/orders"))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 401);
    let record = gw.audit_record(&request_id(&denied)).await;
    assert_eq!(record["decision"], "deny");
    assert!(
        record["reason"].as_str().unwrap().starts_with("key_"),
        "{record}"
    );
    assert!(record.get("partner").is_none());

    let trail = std::fs::read_to_string(gw.dir.path().join("audit.log")).unwrap();
    for secret in [gw.key("acme"), bad_key.as_str(), "limit=5"] {
        assert!(!trail.contains(secret), "the audit trail holds {secret:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_catches_an_edited_a_removed_and_a_reordered_line() {
    let up = Upstream::start().await;
    let gw = Gateway::start(GatewayConfig::orders(&up.url())).await;
    let client = gw.client();
    let mut last = String::new();
    for _ in 0..4 {
        let resp = client
            .get(gw.url("/partners/acme/orders"))
            .send()
            .await
            .unwrap();
        last = request_id(&resp);
    }
    gw.audit_record(&last).await;
    let original = std::fs::read_to_string(gw.dir.path().join("audit.log")).unwrap();
    let lines: Vec<&str> = original.lines().collect();
    assert!(lines.len() >= 4);
    let dir = tempfile::tempdir().unwrap();
    let check = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        run_cli(&["audit", "verify", path.to_str().unwrap()], dir.path())
    };

    let (code, out, _) = check("intact.log", original.clone());
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("OK: {} record(s) intact", lines.len())),
        "{out}"
    );

    let edited = original.replacen("\"status\":200", "\"status\":201", 1);
    let (code, out, _) = check("edited.log", edited);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("edited.log:1: record seq 0 was altered"),
        "{out}"
    );

    let mut removed = lines.clone();
    removed.remove(2);
    let (code, out, _) = check("removed.log", removed.join("\n") + "\n");
    assert_eq!(code, 1);
    assert!(
        out.contains("removed.log:3:") && out.contains("1 record(s) removed"),
        "{out}"
    );

    let mut swapped = lines.clone();
    swapped.swap(1, 2);
    let (code, out, _) = check("swapped.log", swapped.join("\n") + "\n");
    assert_eq!(code, 1);
    assert!(out.contains("swapped.log:2:"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_search_answers_what_a_key_did() {
    let up = Upstream::start().await;
    let gw = Gateway::start(GatewayConfig::orders(&up.url())).await;
    let acme = gw.client();
    acme.get(gw.url("/partners/acme/orders"))
        .send()
        .await
        .unwrap();
    // acme reaching for globex's orders: a denial worth finding.
    let probe = acme
        .get(gw.url("/partners/globex/orders"))
        .send()
        .await
        .unwrap();
    assert_eq!(probe.status(), 403);
    let probe_id = request_id(&probe);
    let probe_record = gw.audit_record(&probe_id).await;
    let key_id = probe_record["key_id"].as_str().unwrap().to_string();
    let globex = gw
        .client_with_key(Some(gw.key("globex")))
        .get(gw.url("/partners/globex/orders"))
        .send()
        .await
        .unwrap();
    gw.audit_record(&request_id(&globex)).await;

    let (code, out, err) = run_cli(
        &[
            "audit",
            "search",
            "audit.log",
            "--key-id",
            &key_id,
            "--decision",
            "deny",
            "--since",
            "1h",
        ],
        gw.dir.path(),
    );
    assert_eq!(code, 0, "{err}");
    let records: Vec<serde_json::Value> = out
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 1, "{out}");
    assert_eq!(records[0]["request_id"], probe_id.as_str());
    assert!(out.contains("1 matching record(s)"), "{out}");
    assert!(out.contains("by reason: partner_mismatch=1"), "{out}");
    assert!(out.contains("by client: 127.0.0.1=1"), "{out}");

    // A time window before the traffic finds nothing.
    let (_, out, _) = run_cli(
        &[
            "audit",
            "search",
            "audit.log",
            "--until",
            "2020-01-01T00:00:00Z",
        ],
        gw.dir.path(),
    );
    assert!(out.contains("0 matching record(s)"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_requests_can_be_sampled_but_denials_never_are() {
    let up = Upstream::start().await;
    let mut cfg = GatewayConfig::orders(&up.url());
    cfg.extra = "audit:\n  output: file\n  path: audit.log\n  sample_allowed: 0.0\n".into();
    let gw = Gateway::start(cfg).await;
    let ok = gw
        .client()
        .get(gw.url("/partners/acme/orders"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let ok_id = request_id(&ok);
    let denied = gw
        .client_with_key(None)
        .get(gw.url("/partners/acme/orders"))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 401);
    gw.audit_record(&request_id(&denied)).await;
    // Records are written in order, so the allowed one would be there by now.
    assert!(gw
        .audit_lines()
        .iter()
        .all(|r| r["request_id"] != ok_id.as_str()));
}

fn with_abuse(up: &Upstream, yaml: &str) -> GatewayConfig {
    let mut cfg = GatewayConfig::orders(&up.url());
    cfg.extra = yaml.to_string();
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_keeps_failing_authentication_is_blocked() {
    let up = Upstream::start().await;
    let gw = Gateway::start(with_abuse(
        &up,
        "abuse:\n  auth_failures:\n    per_client: 5\n    window: 1m\n    block_for: 2m\n",
    ))
    .await;
    let guesser = gw.client_with_key(Some("ptc_live_guessing"));
    for _ in 0..5 {
        let resp = guesser
            .get(gw.url("/partners/acme/orders"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
    }
    // Now even a valid key from this address is refused, before any lookup.
    let resp = gw
        .client()
        .get(gw.url("/partners/acme/orders"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((100..=120).contains(&retry), "Retry-After {retry}");
    let id = request_id(&resp);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "client_blocked");
    assert!(
        up.recorder.is_empty(),
        "the upstream saw {:?}",
        up.recorder.requests()
    );

    let record = gw.audit_record(&id).await;
    assert_eq!(record["reason"], "client_blocked");
    let event = gw
        .audit_lines()
        .into_iter()
        .find(|r| r["event"] == "blocked")
        .expect("a block event in the audit trail");
    assert_eq!(event["client_ip"], "127.0.0.1");
    assert_eq!(event["detail"]["kind"], "client_ip");
    assert_eq!(
        gw.metric("portcullis_clients_blocked_total{kind=\"client_ip\"}")
            .await,
        1.0
    );
    assert_eq!(gw.metric("portcullis_blocked_clients").await, 1.0);
    assert!(
        gw.metric("portcullis_auth_failures_total{reason=\"key_malformed\"}")
            .await
            >= 5.0
    );
    gw.wait_for_log("temporarily blocked").await;

    // An operator sees the block and lifts it; the address is served again.
    let (status, blocks) = gw.admin_api("GET", "/v1/blocks", None).await;
    assert_eq!(status, 200);
    assert_eq!(blocks["clients"][0]["id"], "127.0.0.1");
    let (status, _) = gw
        .admin_api("DELETE", "/v1/blocks/clients/127.0.0.1", None)
        .await;
    assert_eq!(status, 200);
    let (status, body) = gw
        .admin_api("DELETE", "/v1/blocks/clients/127.0.0.1", None)
        .await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_blocked")));
    let resp = gw
        .client()
        .get(gw.url("/partners/acme/orders"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(gw.metric("portcullis_blocked_clients").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_keeps_failing_is_blocked_for_everyone_who_presents_it() {
    let up = Upstream::start().await;
    let gw = Gateway::start(with_abuse(
        &up,
        "abuse:\n  auth_failures:\n    per_client: 0\n    per_key: 3\n",
    ))
    .await;
    // A well-formed key that was never issued (or was revoked).
    let (code, out, err) = keys_cli(
        gw.dir.path(),
        &["create", "--partner", "acme", "--name", "old"],
    );
    assert_eq!(code, 0, "{err}");
    let old = out.lines().last().unwrap().trim().to_string();
    let (code, _, err) = keys_cli(
        gw.dir.path(),
        &["revoke", "--partner", "acme", "--name", "old"],
    );
    assert_eq!(code, 0, "{err}");
    let revoked = gw.client_with_key(Some(&old));
    for _ in 0..3 {
        let resp = revoked
            .get(gw.url("/partners/acme/orders"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
    }
    let resp = revoked
        .get(gw.url("/partners/acme/orders"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "key_blocked");
    assert!(
        up.recorder.is_empty(),
        "upstream saw {:?}",
        up.recorder.requests()
    );
    // The address is not blocked (per_client: 0): the partner's real key works.
    let resp = gw
        .client()
        .get(gw.url("/partners/acme/orders"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        gw.metric("portcullis_clients_blocked_total{kind=\"key_id\"}")
            .await,
        1.0
    );
}

fn limited_policy(upstream: &str) -> Vec<(String, String)> {
    vec![
        (
            "partners.yaml".into(),
            "partners:\n  acme:\n    limits:\n      rate: { requests: 3, per: 1m }\n  globex: {}\n".into(),
        ),
        (
            "orders.yaml".into(),
            orders_policy(
                upstream,
                "  - name: one-order\n    methods: [GET]\n    path: /partners/{partner}/limited/{id}\n    upstream: orders\n    rate_limit: { requests: 1, per: 1m }\n",
            ),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_refuse_with_retry_after_and_ratelimit_headers() {
    let up = Upstream::start().await;
    let mut cfg = GatewayConfig::orders(&up.url());
    cfg.policies = limited_policy(&up.url());
    let gw = Gateway::start(cfg).await;
    let acme = gw.client();
    let url = gw.url("/partners/acme/orders");
    for remaining in [2, 1, 0] {
        let resp = acme.get(&url).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["ratelimit-policy"], "\"partner\";q=3;w=60");
        let state = resp.headers()["ratelimit"].to_str().unwrap();
        assert!(
            state.starts_with(&format!("\"partner\";r={remaining};t=")),
            "{state}"
        );
    }
    let resp = acme.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry), "Retry-After {retry}");
    assert!(resp.headers()["ratelimit"]
        .to_str()
        .unwrap()
        .contains("r=0"));
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "rate_limited");
    assert_eq!(up.recorder.len(), 3);

    // Another partner has its own budget, and a route limit applies per route.
    let globex = gw.client_with_key(Some(gw.key("globex")));
    let one = gw.url("/partners/globex/limited/o-1");
    let first = globex.get(&one).send().await.unwrap();
    assert_ne!(first.status(), 429);
    assert_eq!(first.headers()["ratelimit-policy"], "\"route\";q=1;w=60");
    let second = globex.get(&one).send().await.unwrap();
    assert_eq!(second.status(), 429);
    assert_eq!(
        gw.metric("portcullis_rate_limited_total{route=\"list-orders\",scope=\"partner\"}")
            .await,
        1.0
    );
    assert_eq!(
        gw.metric("portcullis_rate_limited_total{route=\"one-order\",scope=\"route\"}")
            .await,
        1.0
    );
}

fn redis_limited(url: &str, up: &Upstream, join: Option<&Gateway>) -> GatewayConfig {
    let mut cfg = GatewayConfig::orders(&up.url());
    cfg.policies = limited_policy(&up.url());
    cfg.keys =
        format!("  store: redis\n  redis:\n    url: {url}\n    lease: 30s\n    timeout: 200ms\n");
    cfg.join = join.map(|g| (g.dir.path().to_path_buf(), g.keys.clone()));
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_shared_by_every_node_through_redis() {
    let redis = RedisServer::start().await;
    let up = Upstream::start().await;
    let one = Gateway::start(redis_limited(&redis.url(), &up, None)).await;
    let two = Gateway::start(redis_limited(&redis.url(), &up, Some(&one))).await;
    let url = |gw: &Gateway| gw.url("/partners/acme/orders");
    let statuses = [
        one.client().get(url(&one)).send().await.unwrap().status(),
        two.client().get(url(&two)).send().await.unwrap().status(),
        one.client().get(url(&one)).send().await.unwrap().status(),
        two.client().get(url(&two)).send().await.unwrap().status(),
    ];
    assert_eq!(statuses.map(|s| s.as_u16()), [200, 200, 200, 429]);
    assert_eq!(one.metric("portcullis_rate_limit_store_up").await, 1.0);
    assert_eq!(
        two.metric("portcullis_rate_limit_local_decisions_total")
            .await,
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_each_node_still_enforces_the_limit_alone_and_recovers() {
    let redis = RedisServer::start().await;
    let up = Upstream::start().await;
    let gw = Gateway::start(redis_limited(&redis.url(), &up, None)).await;
    let acme = gw.client();
    let url = gw.url("/partners/acme/orders");
    assert_eq!(acme.get(&url).send().await.unwrap().status(), 200);

    redis.signal("STOP");
    // Inside the key lease the cached key still works; limits are decided
    // locally, from a fresh budget, and still enforced.
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(acme.get(&url).send().await.unwrap().status().as_u16());
    }
    assert_eq!(seen, [200, 200, 200, 429]);
    assert_eq!(gw.metric("portcullis_rate_limit_store_up").await, 0.0);
    assert!(
        gw.metric("portcullis_rate_limit_local_decisions_total")
            .await
            >= 4.0
    );
    gw.wait_for_log("shared rate limits unavailable").await;

    redis.signal("CONT");
    eventually(
        "shared rate limits to be used again",
        Duration::from_secs(15),
        || async {
            acme.get(&url).send().await.ok()?;
            (gw.metric("portcullis_rate_limit_store_up").await == 1.0).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_far_above_its_baseline_is_flagged() {
    let up = Upstream::start().await;
    let gw = Gateway::start(with_abuse(
        &up,
        "abuse:\n  anomaly:\n    interval: 500ms\n    factor: 3\n    min_count: 20\n    warmup_intervals: 0\n",
    ))
    .await;
    let acme = gw.client();
    let url = gw.url("/partners/acme/orders");
    acme.get(&url).send().await.unwrap();
    let sample = "portcullis_partner_anomaly{kind=\"request_rate\",partner=\"acme\"}";
    // The first interval with acme in it sets its baseline.
    eventually("acme's baseline", Duration::from_secs(10), || async {
        gw.metrics().await.contains(sample).then_some(())
    })
    .await;
    assert_eq!(gw.metric(sample).await, 0.0);
    let burst: Vec<_> = (0..80)
        .map(|_| {
            let (c, u) = (acme.clone(), url.clone());
            tokio::spawn(async move { c.get(&u).send().await.map(|r| r.status()) })
        })
        .collect();
    for b in burst {
        b.await.unwrap().unwrap();
    }
    eventually(
        "the anomaly to be flagged",
        Duration::from_secs(10),
        || async {
            (gw.metric("portcullis_anomalies_total{kind=\"request_rate\"}")
                .await
                >= 1.0)
                .then_some(())
        },
    )
    .await;
    let event = eventually(
        "the anomaly audit event",
        Duration::from_secs(10),
        || async {
            gw.audit_lines()
                .into_iter()
                .find(|r| r["event"] == "anomaly")
        },
    )
    .await;
    assert_eq!(event["partner"], "acme");
    assert_eq!(event["detail"]["kind"], "request_rate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_carry_decisions_stages_and_capped_partner_labels() {
    let up = Upstream::start().await;
    let gw = Gateway::start(GatewayConfig::orders(&up.url())).await;
    gw.client()
        .get(gw.url("/partners/acme/orders"))
        .send()
        .await
        .unwrap();
    gw.client_with_key(None)
        .get(gw.url("/partners/acme/orders"))
        .send()
        .await
        .unwrap();
    let text = eventually("request metrics", Duration::from_secs(10), || async {
        let t = gw.metrics().await;
        t.contains("decision=\"deny\"").then_some(t)
    })
    .await;
    for sample in [
        "portcullis_requests_total{code=\"proxied\",decision=\"allow\",route=\"list-orders\",status=\"200\"} 1",
        "portcullis_requests_total{code=\"key_missing\",decision=\"deny\",route=\"-\",status=\"401\"} 1",
        "portcullis_partner_requests_total{decision=\"allow\",partner=\"acme\"} 1",
        "portcullis_stage_duration_seconds_count{route=\"list-orders\",stage=\"auth\"} 1",
        "portcullis_stage_duration_seconds_count{route=\"list-orders\",stage=\"isolation\"} 1",
        "portcullis_stage_duration_seconds_count{route=\"list-orders\",stage=\"upstream\"} 1",
        "portcullis_auth_failures_total{reason=\"key_missing\"} 1",
    ] {
        assert!(text.contains(sample), "missing {sample} in\n{text}");
    }
    // No raw path or partner-chosen value becomes a label.
    assert!(!text.contains("/partners/acme"), "a raw path is a label");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_partner_label_can_be_switched_off() {
    let up = Upstream::start().await;
    let gw = Gateway::start(with_abuse(&up, "metrics:\n  partner_label: false\n")).await;
    gw.client()
        .get(gw.url("/partners/acme/orders"))
        .send()
        .await
        .unwrap();
    let text = eventually("request metrics", Duration::from_secs(10), || async {
        let t = gw.metrics().await;
        t.contains("decision=\"allow\"").then_some(t)
    })
    .await;
    assert!(
        !text.contains("portcullis_partner_requests_total{"),
        "{text}"
    );
}
