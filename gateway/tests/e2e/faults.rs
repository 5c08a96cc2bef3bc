//! Faults under traffic: an upstream that dies mid-response, and policy
//! reloads while requests flow. Nothing is answered wrongly (no complete
//! 200 for a broken answer, no 500 with internals), and service goes on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;

/// An upstream that promises a 1000-byte JSON body, sends 100 bytes of it
/// and closes the connection.
async fn dying_upstream() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let head =
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n";
            let _ = s.write_all(head.as_bytes()).await;
            let _ = s
                .write_all(format!("{{\"orders\":[\"{}", "x".repeat(88)).as_bytes())
                .await;
            let _ = s.flush().await;
            // Gone 900 bytes short of what it promised.
            drop(s);
        }
    });
    (addr, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_dying_mid_body_is_never_a_complete_answer() {
    let (addr, server) = dying_upstream().await;
    let up = Upstream::start().await;
    let mut cfg = GatewayConfig::orders(&up.url());
    cfg.policies = vec![(
        "p.yaml".into(),
        format!(
            "upstreams:\n  dying:\n    url: http://{addr}\n  orders:\n    url: {}\nroutes:\n\
             \x20 - name: streamed\n    methods: [GET]\n    path: /partners/{{partner}}/streamed\n    upstream: dying\n\
             \x20 - name: filtered\n    methods: [GET]\n    path: /partners/{{partner}}/filtered\n    upstream: dying\n    response: {{deny: [/internal]}}\n\
             \x20 - name: list-orders\n    methods: [GET]\n    path: /partners/{{partner}}/orders\n    upstream: orders\n",
            up.url()
        ),
    )];
    let gw = Gateway::start(cfg).await;
    let client = gw.client();

    // Streamed: the header is already out, so the only honest move is to
    // cut the response; the client must see it as broken, never complete.
    let resp = client.get(gw.url("/partners/acme/streamed")).send().await;
    if let Ok(resp) = resp {
        assert!(
            resp.bytes().await.is_err(),
            "a truncated body arrived as complete"
        );
    }

    // A route whose answer is held and filtered: a clean problem instead.
    let resp = client
        .get(gw.url("/partners/acme/filtered"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(
        body["code"].as_str().unwrap().starts_with("upstream_"),
        "{body}"
    );

    // Other routes are unaffected.
    let resp = client
        .get(gw.url("/partners/acme/orders"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_reloads_under_traffic_fail_no_request() {
    let up = Upstream::start().await;
    let gw = Gateway::start(GatewayConfig::orders(&up.url())).await;
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (client, url, stop) = (gw.client(), gw.url("/partners/acme/orders"), stop.clone());
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    seen.push(
                        client
                            .get(&url)
                            .send()
                            .await
                            .map(|r| r.status().as_u16())
                            .ok(),
                    );
                }
                seen
            })
        })
        .collect();
    let policy = gw.path("policies/orders.yaml");
    for round in 0..10 {
        // Each reload really changes the plan: a route comes and goes.
        let extra = if round % 2 == 0 {
            "  - name: extra\n    methods: [GET]\n    path: /extra\n    upstream: orders\n"
        } else {
            ""
        };
        std::fs::write(&policy, orders_policy(&up.url(), extra)).unwrap();
        let before = gw.metric("portcullis_config_generation").await;
        gw.signal("HUP");
        eventually("the reload", Duration::from_secs(10), || async {
            (gw.metric("portcullis_config_generation").await > before).then_some(())
        })
        .await;
    }
    stop.store(true, Ordering::SeqCst);
    let mut total = 0;
    for w in workers {
        let seen = w.await.unwrap();
        total += seen.len();
        let bad: Vec<_> = seen.iter().filter(|s| **s != Some(200)).collect();
        assert!(bad.is_empty(), "requests failed during reloads: {bad:?}");
    }
    assert!(total > 0);
    assert_eq!(
        gw.metric("portcullis_config_reloads_total{result=\"ok\"}")
            .await,
        10.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_replacements_under_traffic_fail_no_request() {
    let up = Upstream::start().await;
    let gw = Gateway::start(GatewayConfig::orders(&up.url())).await;
    let stop = Arc::new(AtomicBool::new(false));
    // No pooling: every request is a new TLS handshake, so the swaps are met
    // by handshakes in flight.
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let client = reqwest::Client::builder()
                .use_rustls_tls()
                .tls_built_in_root_certs(false)
                .add_root_certificate(
                    reqwest::Certificate::from_pem(gw.pki.ca_pem.as_bytes()).unwrap(),
                )
                .resolve(HOST, gw.https)
                .pool_max_idle_per_host(0)
                .build()
                .unwrap();
            let (url, key, stop) = (
                gw.url("/partners/acme/orders"),
                gw.key("acme").to_string(),
                stop.clone(),
            );
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    let status = client.get(&url).header("x-api-key", &key).send().await;
                    seen.push(
                        status
                            .map(|r| r.status().as_u16())
                            .map_err(|e| e.to_string()),
                    );
                }
                seen
            })
        })
        .collect();
    for _ in 0..3 {
        let before = gw
            .metric("portcullis_tls_certificate_reloads_total{result=\"ok\"}")
            .await;
        gw.pki.write_leaf(&gw.path("cert.pem"), &gw.path("key.pem"));
        gw.signal("HUP");
        eventually("the new certificate", Duration::from_secs(15), || async {
            (gw.metric("portcullis_tls_certificate_reloads_total{result=\"ok\"}")
                .await
                > before)
                .then_some(())
        })
        .await;
    }
    stop.store(true, Ordering::SeqCst);
    let mut total = 0;
    for w in workers {
        let seen = w.await.unwrap();
        total += seen.len();
        let bad: Vec<_> = seen.iter().filter(|s| !matches!(s, Ok(200))).collect();
        assert!(
            bad.is_empty(),
            "requests failed during certificate swaps: {bad:?}"
        );
    }
    assert!(total > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_redis_never_yields_a_wrong_answer_and_service_comes_back() {
    let redis = RedisServer::start().await;
    let up = Upstream::start().await;
    let mut cfg = GatewayConfig::orders(&up.url());
    cfg.keys = format!(
        "  store: redis\n  redis:\n    url: {}\n    lease: 3s\n    timeout: 200ms\n",
        redis.url()
    );
    let gw = Gateway::start(cfg).await;
    let acme = gw.client();
    let url = gw.url("/partners/acme/orders");
    assert_eq!(acme.get(&url).send().await.unwrap().status(), 200);

    redis.signal("STOP");
    // A key this node verified is served from its cache for the lease; a key
    // it never saw cannot be checked and gets 503 (never 200, never 401),
    // promptly rather than hanging.
    assert_eq!(acme.get(&url).send().await.unwrap().status(), 200);
    let globex = gw.client_with_key(Some(gw.key("globex")));
    let other = gw.url("/partners/globex/orders");
    let resp = globex.get(&other).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "key_store_unavailable");

    redis.signal("CONT");
    eventually(
        "the unseen key to be checked again",
        Duration::from_secs(15),
        || async { (globex.get(&other).send().await.ok()?.status() == 200).then_some(()) },
    )
    .await;
    assert_eq!(acme.get(&url).send().await.unwrap().status(), 200);
}
