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

/// The standard `process_*` metrics describe the gateway process itself,
/// under the names every Prometheus dashboard and alert expects.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_metrics_describe_the_gateway_process() {
    let up = Upstream::start().await;
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let gw = Gateway::start(GatewayConfig::orders(&up.url())).await;
    let client = gw.client();
    for _ in 0..20 {
        let status = client
            .get(gw.url("/partners/acme/orders"))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
    }
    let text = gw.metrics().await;
    let sample = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{text}"))
    };
    for family in [
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family} has no TYPE line"
        );
        assert!(
            !text.contains(&format!("portcullis_{family}")),
            "{family} must keep its standard name"
        );
    }

    let start = sample("process_start_time_seconds");
    // /proc's start time has a resolution of one clock tick.
    assert!(
        start >= before.floor() - 1.0 && start <= before + 60.0,
        "start time {start} is not when the gateway started ({before})"
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", gw.pid())).unwrap();
    let rss_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    let rss = sample("process_resident_memory_bytes");
    assert!(
        rss > 0.5 * rss_kib * 1024.0 && rss < 2.0 * rss_kib * 1024.0,
        "resident memory {rss} is not the gateway's ({rss_kib} KiB in /proc)"
    );
    let fds = std::fs::read_dir(format!("/proc/{}/fd", gw.pid()))
        .unwrap()
        .count() as f64;
    let open = sample("process_open_fds");
    assert!(
        (open - fds).abs() <= 16.0,
        "open descriptors {open} are not the gateway's ({fds} in /proc)"
    );
    assert!(sample("process_max_fds") >= open);
    // The 0.14 collector counts whole seconds (ticks / CLK_TCK, rounded
    // down), so compare with the kernel's count rather than with zero.
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", gw.pid())).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<f64> = after_name
        .split(' ')
        .skip(11)
        .take(2)
        .map(|f| f.parse().unwrap())
        .collect();
    let kernel = (fields[0] + fields[1]) / 100.0;
    let cpu = sample("process_cpu_seconds_total");
    assert!(
        cpu <= kernel + 1.0 && cpu >= kernel.floor() - 1.0,
        "cpu seconds {cpu} are not the gateway's ({kernel} in /proc)"
    );
}
