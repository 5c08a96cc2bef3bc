//! Policy reload without restart: valid changes swap in atomically, invalid
//! ones are refused while the running configuration keeps serving.

use std::time::Duration;

use crate::common::*;

const NEW_ROUTE: &str =
    "  - name: healthz\n    methods: [GET]\n    path: /healthz\n    upstream: orders\n";

async fn generation(gw: &Gateway) -> u64 {
    admin_get(gw.admin, "/readyz")
        .await
        .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
        .and_then(|v| v["config_generation"].as_u64())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_swaps_in_a_new_policy() {
    let up = Upstream::start().await;
    let gw = Gateway::start(GatewayConfig::orders(&up.url())).await;
    let client = gw.client();
    assert_eq!(
        client
            .get(gw.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    std::fs::write(
        gw.path("policies/orders.yaml"),
        orders_policy(&up.url(), NEW_ROUTE),
    )
    .unwrap();
    gw.signal("HUP");
    eventually("reload", Duration::from_secs(15), || async {
        (generation(&gw).await >= 2).then_some(())
    })
    .await;

    let resp = client.get(gw.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        up.recorder.requests().last().unwrap().path_and_query,
        "/healthz"
    );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_policy_file_is_picked_up_by_the_watch() {
    let up = Upstream::start().await;
    let mut cfg = GatewayConfig::orders(&up.url());
    cfg.watch_interval = "100ms".into();
    let gw = Gateway::start(cfg).await;
    // A new file matching the glob counts as a change too.
    let extra = format!("routes:\n{NEW_ROUTE}");
    std::fs::write(gw.path("policies/extra.yaml"), extra).unwrap();
    let client = gw.client();
    eventually(
        "the watched route to appear",
        Duration::from_secs(15),
        || async {
            let s = client.get(gw.url("/healthz")).send().await.ok()?.status();
            (s == 200).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_policy_is_refused_and_the_old_one_keeps_serving() {
    let up = Upstream::start().await;
    let gw = Gateway::start(GatewayConfig::orders(&up.url())).await;
    let broken = orders_policy(
        &up.url(),
        "  - name: broken\n    methods: [GET]\n    path: /x\n    upstream: nowhere\n",
    );
    std::fs::write(gw.path("policies/orders.yaml"), broken).unwrap();
    gw.signal("HUP");
    eventually(
        "the refused reload to be counted",
        Duration::from_secs(15),
        || async {
            (gw.metric("portcullis_config_reloads_total{result=\"error\"}")
                .await
                >= 1.0)
                .then_some(())
        },
    )
    .await;
    assert_eq!(generation(&gw).await, 1);
    let resp = gw
        .client()
        .get(gw.url("/partners/acme/orders"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let logs = gw.logs();
    assert!(
        logs.contains("orders.yaml:") && logs.contains("no upstream named \\\"nowhere\\\"")
            || logs.contains("no upstream named \"nowhere\""),
        "the reason is logged with file and line:\n{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspending_a_partner_in_policy_takes_effect_on_reload() {
    let up = Upstream::start().await;
    let gw = Gateway::start(GatewayConfig::orders(&up.url())).await;
    let acme = gw.client();
    let ok = acme
        .get(gw.url("/partners/acme/orders"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);

    std::fs::write(
        gw.path("policies/00-partners.yaml"),
        "partners:\n  acme:\n    status: suspended\n  globex: {}\n",
    )
    .unwrap();
    gw.signal("HUP");
    eventually("reload", Duration::from_secs(15), || async {
        (generation(&gw).await >= 2).then_some(())
    })
    .await;

    let req = b"GET /partners/acme/orders HTTP/1.1\r\nHost: gateway.test\r\n\r\n";
    let refused = raw_request(&gw, req).await.unwrap();
    assert_problem(&refused, 403, "partner_suspended");
    let globex = gw.client_with_key(Some(gw.key("globex")));
    let still = globex
        .get(gw.url("/partners/globex/orders"))
        .send()
        .await
        .unwrap();
    assert_eq!(still.status(), 200);
    assert_eq!(
        up.recorder.len(),
        2,
        "the suspended partner's request was not forwarded"
    );
}
