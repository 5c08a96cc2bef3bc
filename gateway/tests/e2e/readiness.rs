//! `/readyz` tells a load balancer the truth: 503 while draining after
//! SIGTERM or SIGQUIT (with the listeners still open, so nothing is
//! refused while it notices) and while the audit trail cannot be written;
//! the key store's lease is covered by `redis.rs`. And the optional
//! metrics listener serves metrics only.

use std::time::Duration;

use crate::common::*;

async fn readyz(gw: &Gateway) -> Option<(u16, serde_json::Value)> {
    let (status, body) = admin_get(gw.admin, "/readyz").await?;
    Some((status, serde_json::from_str(&body).ok()?))
}

async fn until_readyz(gw: &Gateway, what: &str, status: u16) -> serde_json::Value {
    eventually(what, Duration::from_secs(15), || async {
        readyz(gw)
            .await
            .filter(|(s, _)| *s == status)
            .map(|(_, body)| body)
    })
    .await
}

/// A request on a new connection, so it proves the listener still accepts.
async fn fresh_request_status(gw: &Gateway) -> u16 {
    gw.fresh_connection_client()
        .get(gw.url("/partners/acme/orders"))
        .header("x-api-key", gw.key("acme"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_turns_readyz_503_while_the_drain_delay_keeps_serving() {
    let up = Upstream::start().await;
    let mut cfg = GatewayConfig::orders(&up.url());
    cfg.server = "  drain_delay: 60s\n".into();
    let gw = Gateway::start(cfg).await;
    let (status, ready) = readyz(&gw).await.unwrap();
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["checks"]["key_store"], "ok");
    assert_eq!(ready["checks"]["audit"], "ok");

    gw.signal("TERM");
    let body = until_readyz(&gw, "readyz to report draining", 503).await;
    assert_eq!(body["status"], "draining", "{body}");
    assert_eq!(body["checks"]["draining"], true);
    // Liveness is not readiness: the process is healthy, only leaving.
    assert_eq!(admin_get(gw.admin, "/healthz").await.unwrap().0, 200);

    // The drain delay keeps the listeners open: traffic a balancer has not
    // yet moved is still answered, and reaches the upstream.
    up.recorder.clear();
    assert_eq!(fresh_request_status(&gw).await, 200);
    assert_eq!(up.recorder.len(), 1);

    // A second SIGTERM ends the delay: the listeners close.
    gw.signal("TERM");
    eventually(
        "the https listener to close after a second SIGTERM",
        Duration::from_secs(15),
        || async {
            tokio::net::TcpStream::connect(gw.https)
                .await
                .is_err()
                .then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigquit_turns_readyz_503_before_the_listeners_close() {
    let up = Upstream::start().await;
    let gw = Gateway::start(GatewayConfig::orders(&up.url())).await;
    assert_eq!(readyz(&gw).await.unwrap().0, 200);

    // No new process waits on the upgrade socket, so the old one tries to
    // hand its listeners over for a few seconds, still accepting meanwhile.
    gw.signal("QUIT");
    let body = until_readyz(&gw, "readyz to report draining after SIGQUIT", 503).await;
    assert_eq!(body["status"], "draining", "{body}");
    up.recorder.clear();
    assert_eq!(fresh_request_status(&gw).await, 200);
    assert_eq!(up.recorder.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_while_the_audit_trail_cannot_be_written() {
    let up = Upstream::start().await;
    let mut cfg = GatewayConfig::orders(&up.url());
    cfg.extra = "audit:\n  output: file\n  path: audit.log\n  max_bytes: 4096\n  keep: 1\n".into();
    let gw = Gateway::start(cfg).await;
    assert_eq!(readyz(&gw).await.unwrap().0, 200);

    // Rotation renames audit.log to audit.log.1: a directory in the way
    // makes every rotation, and so every write past 4 KiB, fail.
    let blocker = gw.dir.path().join("audit.log.1");
    std::fs::create_dir(&blocker).unwrap();
    std::fs::write(blocker.join("in-the-way"), b"x").unwrap();
    let client = gw.client();
    let url = gw.url("/partners/acme/orders");
    let body = eventually(
        "readyz to report the audit trail failing",
        Duration::from_secs(15),
        || async {
            // Each request adds a record, so the file soon needs rotating.
            client.get(&url).send().await.ok()?;
            readyz(&gw)
                .await
                .filter(|(s, _)| *s == 503)
                .map(|(_, body)| body)
        },
    )
    .await;
    assert_eq!(body["status"], "not_ready", "{body}");
    assert_eq!(body["checks"]["audit"], "not_writing");
    assert_eq!(body["checks"]["draining"], false);
    assert!(gw.metric("portcullis_audit_records_dropped_total").await >= 1.0);

    // Out of the way again: the next rotation works and the node is ready.
    std::fs::remove_dir_all(&blocker).unwrap();
    eventually(
        "readyz to recover once the audit trail is writable",
        Duration::from_secs(15),
        || async {
            client.get(&url).send().await.ok()?;
            readyz(&gw).await.filter(|(s, _)| *s == 200).map(drop)
        },
    )
    .await;
    assert!(blocker.is_file(), "the trail rotated into audit.log.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_listener_serves_metrics_and_nothing_else() {
    let up = Upstream::start().await;
    let metrics = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut cfg = GatewayConfig::orders(&up.url());
    cfg.extra = format!("metrics:\n  address: \"{metrics}\"\n");
    let gw = Gateway::start(cfg).await;
    assert_eq!(
        gw.client()
            .get(gw.url("/partners/acme/orders"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // The request is counted once its answer is written, which the client
    // can see first: wait for the count rather than race it.
    let text = eventually(
        "the request to be counted on the metrics listener",
        Duration::from_secs(10),
        || async {
            let (status, text) = admin_get(metrics, "/metrics").await?;
            assert_eq!(status, 200);
            text.contains("portcullis_requests_total").then_some(text)
        },
    )
    .await;
    assert!(text.contains("process_resident_memory_bytes"), "{text}");
    // The key API, readiness and health stay on the admin listener only.
    for path in ["/v1/keys", "/v1/partners/acme/keys", "/readyz", "/healthz"] {
        let (status, body) = admin_get(metrics, path).await.unwrap();
        assert_eq!(status, 404, "{path}: {body}");
        let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(problem["code"], "route_not_found", "{path}");
    }
    let mut s = tokio::net::TcpStream::connect(metrics).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut s,
        b"POST /metrics HTTP/1.1\r\nHost: m\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let resp = read_response(&mut s).await.unwrap();
    assert_eq!(resp.status, 405);
    assert_eq!(resp.json()["code"], "method_not_allowed");
}
