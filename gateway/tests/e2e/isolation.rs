//! Partner isolation so far: `{partner}` routes serve only the partner that
//! authenticated, whatever the path tricks; client identity headers never
//! reach the upstream.

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_cannot_reach_another_partners_resources() {
    let up = Upstream::start().await;
    let gw = Gateway::start(GatewayConfig::orders(&up.url())).await;
    for raw in [
        "/partners/globex/orders",
        "/partners/ACME/orders",
        "/partners/Acme/orders/acme-1001",
        "/partners/acme/../globex/orders",
        "/partners/%67lobex/orders",
        "/partners/./globex/./orders",
        "//partners//globex//orders",
        "/partners/globex/orders/acme-1001",
    ] {
        let req = format!("GET {raw} HTTP/1.1\r\nHost: gateway.test\r\n\r\n");
        let resp = raw_request(&gw, req.as_bytes()).await.expect("a response");
        assert_problem(&resp, 403, "partner_mismatch");
    }
    // The same over HTTP/2, and for a write.
    let h2 = gw.h2_client();
    assert_eq!(
        h2.get(gw.url("/partners/globex/orders"))
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    let post = gw
        .client()
        .post(gw.url("/partners/globex/orders"))
        .header("content-type", "application/json")
        .body(r#"{"sku":"X-1","quantity":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 403);
    assert!(
        up.recorder.is_empty(),
        "upstream saw {:?}",
        up.recorder.requests()
    );

    // The partner's own resources still work, and globex is kept out of acme's.
    assert_eq!(
        gw.client()
            .get(gw.url("/partners/acme/orders"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let globex = gw.client_with_key(Some(gw.key("globex")));
    assert_eq!(
        globex
            .get(gw.url("/partners/acme/orders/acme-1001"))
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(up.recorder.len(), 1);
    assert!(gw
        .logs()
        .contains("request for another partner's resource refused"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_headers_from_the_client_never_reach_the_upstream() {
    let up = Upstream::start().await;
    let gw = Gateway::start(GatewayConfig::orders(&up.url())).await;
    let resp = raw_request(
        &gw,
        b"GET /partners/acme/orders HTTP/1.1\r\nHost: gateway.test\r\nX-Partner-Id: globex\r\nX-Partner-Id: initech\r\n\
          X-Partner-Role: admin\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Host: internal\r\nForwarded: for=10.0.0.1\r\n\
          X-Real-IP: 10.0.0.2\r\nX-Kept: yes\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(resp.status, 200);
    let seen = &up.recorder.requests()[0];
    assert_eq!(seen.header("x-partner-id"), Some("acme"));
    assert_eq!(seen.header_count("x-partner-id"), 1);
    for gone in [
        "x-partner-role",
        "x-forwarded-for",
        "x-forwarded-host",
        "forwarded",
        "x-real-ip",
    ] {
        assert_eq!(seen.header(gone), None, "{gone} reached the upstream");
    }
    assert_eq!(seen.header("x-kept"), Some("yes"));
}
