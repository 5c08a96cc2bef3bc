//! The admin listener: health, readiness and metrics, never on the public one.

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics_are_served_on_the_admin_listener() {
    let up = Upstream::start().await;
    let gw = Gateway::start(GatewayConfig::orders(&up.url())).await;
    let client = gw.client();
    for _ in 0..3 {
        assert_eq!(
            client
                .get(gw.url("/partners/acme/orders"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    assert_eq!(
        client
            .get(gw.url("/unknown"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    assert_eq!(admin_get(gw.admin, "/healthz").await.unwrap().0, 200);
    let (status, ready) = admin_get(gw.admin, "/readyz").await.unwrap();
    assert_eq!(status, 200);
    let ready: serde_json::Value = serde_json::from_str(&ready).unwrap();
    assert_eq!(ready["routes"], 4);

    // Requests are counted when they end, just after the response is
    // written: wait for the last one to be counted.
    let m = eventually(
        "the requests to be counted",
        std::time::Duration::from_secs(10),
        || async {
            let m = gw.metrics().await;
            m.contains(
                r#"portcullis_requests_total{code="route_not_found",decision="deny",route="-",status="404"} 1"#,
            )
            .then_some(m)
        },
    )
    .await;
    assert!(
        m.contains(
            r#"portcullis_requests_total{code="proxied",decision="allow",route="list-orders",status="200"} 3"#
        ),
        "{m}"
    );
    assert!(
        m.contains(r#"portcullis_requests_total{code="route_not_found",decision="deny",route="-",status="404"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"portcullis_request_duration_seconds_count{route="list-orders"} 3"#),
        "{m}"
    );
    assert!(
        m.contains(r#"portcullis_upstream_duration_seconds_bucket{route="list-orders""#),
        "{m}"
    );
    assert!(
        m.contains("portcullis_tls_certificate_expiry_timestamp_seconds "),
        "{m}"
    );
    assert!(m.contains("portcullis_build_info{version="), "{m}");
    assert!(
        !m.contains("/partners/acme"),
        "raw paths must never be labels"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_are_not_reachable_on_the_public_listener() {
    let up = Upstream::start().await;
    let gw = Gateway::start(GatewayConfig::orders(&up.url())).await;
    let client = gw.client();
    for path in ["/metrics", "/healthz", "/readyz"] {
        let resp = client.get(gw.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 404, "{path}");
        let body = resp.text().await.unwrap();
        assert!(!body.contains("portcullis_requests_total"), "{path}");
    }
    assert!(up.recorder.is_empty());
}
