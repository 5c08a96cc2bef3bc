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
    let logs = gw.wait_for_log("nowhere").await;
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

/// Runs `portcullis check --reload` on the gateway's own configuration.
fn check_reload(gw: &Gateway) -> String {
    let out = std::process::Command::new(binary())
        .args(["check", "--reload", "--config"])
        .arg(gw.path("portcullis.yaml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editing_a_setting_that_needs_a_restart_refuses_the_reload_loudly() {
    let up = Upstream::start().await;
    let gw = Gateway::start(GatewayConfig::orders(&up.url())).await;
    let file = gw.path("portcullis.yaml");
    let original = std::fs::read_to_string(&file).unwrap();
    let classes = check_reload(&gw);
    for line in [
        "audit                      applies on restart",
        "abuse                      applies on restart",
        "tls.hsts                   applies on reload",
    ] {
        assert!(classes.contains(line), "{line:?} in:\n{classes}");
    }
    // A policy edit in the same reload must not slip through either.
    std::fs::write(
        gw.path("policies/orders.yaml"),
        orders_policy(&up.url(), NEW_ROUTE),
    )
    .unwrap();
    let edits = [
        (
            "audit",
            original.replace("path: audit.log", "path: elsewhere.log"),
        ),
        (
            "abuse",
            format!("{original}abuse:\n  auth_failures:\n    per_client: 3\n"),
        ),
    ];
    for (refused, (section, edited)) in edits.into_iter().enumerate() {
        assert_ne!(edited, original);
        std::fs::write(&file, edited).unwrap();
        gw.signal("HUP");
        eventually(
            "the refused reload to be counted",
            Duration::from_secs(15),
            || async {
                let errors = gw
                    .metric("portcullis_config_reloads_total{result=\"error\"}")
                    .await;
                (errors >= (refused + 1) as f64).then_some(())
            },
        )
        .await;
        assert_eq!(generation(&gw).await, 1, "{section}: nothing was applied");
        assert_eq!(
            healthz_status(&gw).await,
            404,
            "{section}: the policy edit waits too"
        );
        // The log line can trail the counter.
        eventually(
            "the refusal to name the setting",
            Duration::from_secs(10),
            || async {
                gw.logs()
                    .lines()
                    .any(|l| l.contains(section) && l.contains("takes effect only on restart"))
                    .then_some(())
            },
        )
        .await;
    }
    // Put the gateway file back: the policy edit alone now applies.
    std::fs::write(&file, &original).unwrap();
    gw.signal("HUP");
    eventually("reload", Duration::from_secs(15), || async {
        (generation(&gw).await >= 2).then_some(())
    })
    .await;
    assert_eq!(healthz_status(&gw).await, 200);
}

/// The status of `GET /healthz`, the route the policy edits add.
async fn healthz_status(gw: &Gateway) -> u16 {
    let resp = gw.client().get(gw.url("/healthz")).send().await.unwrap();
    resp.status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_covers_the_schema_files_routes_name() {
    let up = Upstream::start().await;
    let mut config = GatewayConfig::orders(&up.url());
    config.watch_interval = "100ms".into();
    config.schemas = vec![(
        "orders/new.json".into(),
        r#"{"type":"object","properties":{"quantity":{"type":"integer","maximum":1000}}}"#.into(),
    )];
    config.policies = vec![(
        "orders.yaml".into(),
        format!(
            "upstreams:\n  orders:\n    url: {}\n\
             routes:\n  - name: validated\n    methods: [POST]\n    path: /echo/validated\n    upstream: orders\n\
             \x20   validate:\n      body: orders/new.json\n",
            up.url()
        ),
    )];
    let gw = Gateway::start(config).await;
    assert!(
        check_reload(&gw).contains("orders/new.json"),
        "check --reload lists the schema as watched"
    );
    let send = || async {
        gw.client()
            .post(gw.url("/echo/validated"))
            .header("content-type", "application/json")
            .body(r#"{"quantity":500}"#)
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(send().await, 200);
    std::fs::write(
        gw.path("schemas/orders/new.json"),
        r#"{"type":"object","properties":{"quantity":{"type":"integer","maximum":10}}}"#,
    )
    .unwrap();
    eventually(
        "the edited schema to apply",
        Duration::from_secs(15),
        || async { (send().await == 400).then_some(()) },
    )
    .await;
    assert!(generation(&gw).await >= 2);
}
