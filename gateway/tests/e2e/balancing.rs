//! Upstreams with several targets: requests spread by the configured rule,
//! a dead target retried around (idempotent requests only) and ejected,
//! active health checks taking a target out and bringing it back, and a
//! name followed when its address changes. Each target is a real example
//! upstream on its own runtime, so killing it closes its listener and
//! every connection, as a crashed process would.

use std::net::SocketAddr;
use std::time::Duration;

use portcullis_example_upstream::Recorder;

use crate::common::*;

/// An example upstream that can be killed (connections refused from then
/// on) and started again on the same address.
struct Target {
    addr: SocketAddr,
    recorder: Recorder,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Target {
    fn start(addr: SocketAddr) -> Target {
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("target runtime");
            let (addr, recorder, _serving) = runtime
                .block_on(portcullis_example_upstream::spawn(addr))
                .expect("example upstream");
            Target {
                addr,
                recorder,
                runtime: Some(runtime),
            }
        })
        .join()
        .expect("target thread")
    }

    fn any() -> Target {
        Target::start(SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Stops serving and waits until connections are refused.
    async fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
        let addr = self.addr;
        eventually(
            "the target to refuse connections",
            Duration::from_secs(10),
            || async move {
                tokio::net::TcpStream::connect(addr)
                    .await
                    .is_err()
                    .then_some(())
            },
        )
        .await;
    }

    /// Requests other than health probes.
    fn requests(&self) -> usize {
        self.paths().iter().filter(|p| *p != "/healthz").count()
    }

    fn paths(&self) -> Vec<String> {
        self.recorder
            .requests()
            .into_iter()
            .map(|r| r.path_and_query)
            .collect()
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The example routes on upstream `orders`, with `extra` added to the
/// upstream's block.
fn config(url: &str, extra: &str) -> GatewayConfig {
    let policy = policy_with(url, extra);
    let mut cfg = GatewayConfig::orders(url);
    cfg.policies = vec![("orders.yaml".into(), policy)];
    cfg
}

/// The example policy with `extra` lines in its upstream's block.
pub fn policy_with(url: &str, extra: &str) -> String {
    let policy = orders_policy(url, "").replacen(
        &format!("    url: {url}\n"),
        &format!("    url: {url}\n{extra}"),
        1,
    );
    assert!(policy.contains(extra), "the upstream block was extended");
    policy
}

/// Two targets behind upstream `orders`, with `extra` in its block.
async fn two_targets(extra: &str) -> (Target, Target, Gateway) {
    let (a, b) = (Target::any(), Target::any());
    let extra = format!("{}{extra}", targets(&[&a, &b]));
    let gw = Gateway::start(config(&format!("http://{}", a.addr), &extra)).await;
    (a, b, gw)
}

fn targets(list: &[&Target]) -> String {
    let quoted: Vec<String> = list.iter().map(|t| format!("\"{}\"", t.addr)).collect();
    format!("    targets: [{}]\n", quoted.join(", "))
}

async fn get(client: &reqwest::Client, url: &str) -> (u16, serde_json::Value) {
    let resp = client.get(url).send().await.expect("response");
    let status = resp.status().as_u16();
    let body = resp.json().await.unwrap_or(serde_json::Value::Null);
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_target_is_retried_around_then_ejected() {
    let (mut a, b, gw) = two_targets("    ejection: {after_failures: 2, duration: 60s}\n").await;
    let client = gw.client();
    let url = gw.url("/partners/acme/orders");
    for _ in 0..8 {
        assert_eq!(get(&client, &url).await.0, 200);
    }
    assert_eq!(
        (a.requests(), b.requests()),
        (4, 4),
        "round robin alternates between the two targets"
    );

    a.kill().await;
    let a_label = a.addr.to_string();
    for _ in 0..6 {
        let (status, body) = get(&client, &url).await;
        assert_eq!(status, 200, "a GET is retried on the live target: {body}");
    }
    assert_eq!(b.requests(), 10, "every request was answered by b");
    // The access log names the target that answered and the attempts it took.
    gw.wait_for_log(&format!("upstream_addr={} upstream_attempts=2", b.addr))
        .await;
    let failures = format!(
        "portcullis_upstream_target_failures_total{{kind=\"connect\",target=\"{a_label}\",upstream=\"orders\"}}"
    );
    assert_eq!(gw.metric(&failures).await, 2.0, "{}", gw.metrics().await);
    assert_eq!(
        gw.metric(&format!(
            "portcullis_upstream_target_ejections_total{{target=\"{a_label}\",upstream=\"orders\"}}"
        ))
        .await,
        1.0
    );
    assert_eq!(
        gw.metric("portcullis_upstream_retries_total{upstream=\"orders\"}")
            .await,
        2.0,
        "one retry per connect failure"
    );
    eventually("a reported down", Duration::from_secs(5), || async {
        (gw.metric(&format!(
            "portcullis_upstream_target_up{{target=\"{a_label}\",upstream=\"orders\"}}"
        ))
        .await
            == 0.0)
            .then_some(())
    })
    .await;
    assert!(gw
        .logs()
        .contains("target ejected after consecutive failures"));

    // Ejected: not even tried any more.
    for _ in 0..4 {
        assert_eq!(get(&client, &url).await.0, 200);
    }
    assert_eq!(b.requests(), 14);
    assert_eq!(
        gw.metric(&failures).await,
        2.0,
        "the ejected target is left alone"
    );

    // What a partner's curl sees, over HTTP/1.1 and HTTP/2: answers, nothing else.
    let key = format!("x-api-key: {}", gw.key("acme"));
    for version in ["--http1.1", "--http2"] {
        let (code, out, err) =
            crate::one_meaning::curl(&gw, &[version, "-H", &key], "/partners/acme/orders");
        assert_eq!(code, 0, "{err}");
        assert!(
            out.ends_with("200 1.1") || out.ends_with("200 2"),
            "{version}: {out}"
        );
    }
    assert_eq!(b.requests(), 16);
}

/// GETs sent back to back by `workers` tasks until `stop`, each answer
/// noted with whether it was started after `dead` was set.
async fn load(
    gw: &Gateway,
    workers: usize,
    dead: std::sync::Arc<std::sync::atomic::AtomicBool>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinSet<Vec<(bool, u16)>> {
    use std::sync::atomic::Ordering::SeqCst;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let client = gw.client();
        let url = gw.url("/partners/acme/orders");
        let (dead, stop) = (dead.clone(), stop.clone());
        tasks.spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(SeqCst) {
                let after = dead.load(SeqCst);
                let status = client
                    .get(&url)
                    .send()
                    .await
                    .map_or(0, |r| r.status().as_u16());
                seen.push((after, status));
            }
            seen
        });
    }
    tasks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_killed_mid_traffic_costs_no_safe_request_and_is_used_again_once_back() {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    use std::sync::Arc;
    let (mut a, b, gw) = two_targets("    ejection: {after_failures: 1, duration: 1s}\n").await;
    let (dead, stop) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let mut tasks = load(&gw, 3, dead.clone(), stop.clone()).await;
    eventually(
        "traffic on both targets",
        Duration::from_secs(10),
        || async { (a.requests() >= 20 && b.requests() >= 20).then_some(()) },
    )
    .await;
    let addr = a.addr;
    a.kill().await;
    dead.store(true, SeqCst);
    let b_at_death = b.requests();
    eventually(
        "traffic going on without a",
        Duration::from_secs(10),
        || async { (b.requests() >= b_at_death + 50).then_some(()) },
    )
    .await;
    let back = Target::start(addr);
    eventually(
        "a used again once back",
        Duration::from_secs(10),
        || async { (back.requests() >= 5).then_some(()) },
    )
    .await;
    stop.store(true, SeqCst);
    let mut after_death = Vec::new();
    while let Some(seen) = tasks.join_next().await {
        after_death.extend(
            seen.expect("load task")
                .into_iter()
                .filter(|(after, _)| *after),
        );
    }
    let failed: Vec<u16> = after_death
        .iter()
        .map(|(_, status)| *status)
        .filter(|s| *s != 200)
        .collect();
    assert!(
        failed.is_empty(),
        "GETs started after the target died all succeed ({} sent): {failed:?}",
        after_death.len()
    );
    assert!(
        gw.metric("portcullis_upstream_retries_total{upstream=\"orders\"}")
            .await
            >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_is_never_sent_twice() {
    let (mut a, b, gw) = two_targets("    ejection: {after_failures: 0}\n").await;
    a.kill().await;
    let client = gw.client();
    let mut refused = 0;
    for i in 0..4 {
        let resp = client
            .post(gw.url("/partners/acme/orders"))
            .json(&serde_json::json!({"sku": format!("sku-{i}"), "quantity": 1}))
            .send()
            .await
            .expect("response");
        match resp.status().as_u16() {
            201 => {}
            502 => {
                let body: serde_json::Value = resp.json().await.expect("problem");
                assert_eq!(body["code"], "upstream_unavailable", "{body}");
                refused += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(
        refused, 2,
        "the POSTs round robin sent to the dead target are refused, not retried"
    );
    assert_eq!(b.requests(), 2, "b saw only the POSTs sent to it first");
    gw.wait_for_log(&format!(
        "upstream_addr={} upstream_attempts=1 status=502",
        a.addr
    ))
    .await;
    assert_eq!(
        gw.metric("portcullis_upstream_retries_total{upstream=\"orders\"}")
            .await,
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_target_reachable_the_request_is_refused_and_nothing_leaks() {
    let (mut a, mut b, gw) = two_targets("").await;
    a.kill().await;
    b.kill().await;
    let resp = raw_request(
        &gw,
        &gw.authed(b"GET /partners/acme/orders HTTP/1.1\r\nHost: gateway.test\r\n\r\n"),
    )
    .await
    .expect("response");
    assert_problem(&resp, 502, "upstream_unavailable");
    let text = String::from_utf8_lossy(&resp.body);
    assert!(!text.contains("127.0.0.1"), "target address leaked: {text}");
    assert_eq!(
        gw.metric("portcullis_upstream_retries_total{upstream=\"orders\"}")
            .await,
        1.0,
        "tried each target once"
    );
    // The same refusal as curl shows it, over HTTP/1.1 and HTTP/2.
    let key = format!("x-api-key: {}", gw.key("acme"));
    for version in ["--http1.1", "--http2"] {
        let (code, out, err) =
            crate::one_meaning::curl(&gw, &[version, "-H", &key], "/partners/acme/orders");
        assert_eq!(code, 0, "{err}");
        assert!(
            out.ends_with("502 1.1") || out.ends_with("502 2"),
            "{version}: {out}"
        );
        assert!(out.contains("\"code\":\"upstream_unavailable\""), "{out}");
        assert!(!out.contains("127.0.0.1"), "target address leaked: {out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_health_check_takes_a_target_out_and_brings_it_back() {
    let (mut a, b, gw) = two_targets("    health_check: {path: /healthz, interval: 200ms, timeout: 100ms, healthy_after: 1, unhealthy_after: 1}\n").await;
    let a_up = format!(
        "portcullis_upstream_target_up{{target=\"{}\",upstream=\"orders\"}}",
        a.addr
    );
    eventually("a probed and up", Duration::from_secs(5), || async {
        (a.paths().iter().any(|p| p == "/healthz") && gw.metric(&a_up).await == 1.0).then_some(())
    })
    .await;

    let addr = a.addr;
    a.kill().await;
    eventually(
        "a reported down by its probe",
        Duration::from_secs(5),
        || async { (gw.metric(&a_up).await == 0.0).then_some(()) },
    )
    .await;
    gw.wait_for_log("health check failing; target out of rotation")
        .await;
    let client = gw.client();
    let url = gw.url("/partners/acme/orders");
    let before = b.requests();
    for _ in 0..4 {
        assert_eq!(get(&client, &url).await.0, 200);
    }
    assert_eq!(
        gw.metric("portcullis_upstream_retries_total{upstream=\"orders\"}")
            .await,
        0.0,
        "a target the probe took out is not tried at all"
    );
    assert!(b.requests() >= before + 4);

    let back = Target::start(addr);
    eventually("a back in rotation", Duration::from_secs(5), || async {
        (gw.metric(&a_up).await == 1.0).then_some(())
    })
    .await;
    for _ in 0..4 {
        assert_eq!(get(&client, &url).await.0, 200);
    }
    assert!(
        back.paths().iter().any(|p| p == "/partners/acme/orders"),
        "traffic reaches the target again: {:?}",
        back.paths()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partner_hash_keeps_each_partner_on_one_target() {
    let a = Target::any();
    let b = Target::any();
    let c = Target::any();
    let extra = format!("{}    balance: partner_hash\n", targets(&[&a, &b, &c]));
    let gw = Gateway::start(config(&format!("http://{}", a.addr), &extra)).await;
    for partner in ["acme", "globex"] {
        let client = gw.client_with_key(Some(gw.key(partner)));
        for _ in 0..6 {
            let url = gw.url(&format!("/partners/{partner}/orders"));
            assert_eq!(get(&client, &url).await.0, 200);
        }
    }
    for partner in ["acme", "globex"] {
        let path = format!("/partners/{partner}/orders");
        let seen: Vec<usize> = [&a, &b, &c]
            .iter()
            .map(|t| t.paths().iter().filter(|p| **p == path).count())
            .collect();
        assert!(
            seen.contains(&6) && seen.iter().filter(|n| **n == 0).count() == 2,
            "{partner}'s six requests all reached one target: {seen:?}"
        );
    }
}

/// Rewrites one byte of an `/etc/hosts` line in place (same length, so a
/// concurrent reader sees the old line or the new one), and truncates the
/// file back to its original length when dropped.
struct HostsEntry {
    original_len: u64,
    address_offset: u64,
}

impl HostsEntry {
    fn add(name: &str) -> Option<HostsEntry> {
        use std::io::Write;
        let original_len = std::fs::metadata("/etc/hosts").ok()?.len();
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open("/etc/hosts")
            .ok()?;
        let current = std::fs::read("/etc/hosts").ok()?;
        let newline = if current.ends_with(b"\n") || current.is_empty() {
            ""
        } else {
            "\n"
        };
        let line = format!("{newline}127.0.0.1 {name}\n");
        file.write_all(line.as_bytes()).ok()?;
        Some(HostsEntry {
            original_len,
            // The last digit of 127.0.0.1.
            address_offset: original_len + newline.len() as u64 + 8,
        })
    }

    fn point_at(&self, last_digit: u8) {
        use std::os::unix::fs::FileExt;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open("/etc/hosts")
            .expect("hosts writable");
        file.write_all_at(&[last_digit], self.address_offset)
            .expect("hosts rewritten");
    }
}

impl Drop for HostsEntry {
    fn drop(&mut self) {
        if let Ok(file) = std::fs::OpenOptions::new().write(true).open("/etc/hosts") {
            let _ = file.set_len(self.original_len);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_is_resolved_again_and_traffic_follows_its_new_address() {
    let name = format!("portcullis-{}.test", std::process::id());
    let Some(entry) = HostsEntry::add(&name) else {
        eprintln!(
            "SKIPPED a_name_is_resolved_again_and_traffic_follows_its_new_address: /etc/hosts is not writable here"
        );
        return;
    };
    let old = Target::any();
    let port = old.addr.port();
    let Ok(probe) = std::net::TcpListener::bind(("127.0.0.2", port)) else {
        eprintln!("SKIPPED: cannot listen on 127.0.0.2:{port}");
        return;
    };
    drop(probe);
    let new = Target::start(SocketAddr::from(([127, 0, 0, 2], port)));
    let gw = Gateway::start(config(
        &format!("http://{name}:{port}"),
        "    resolve_every: 100ms\n",
    ))
    .await;
    let client = gw.client();
    let url = gw.url("/partners/acme/orders");
    assert_eq!(get(&client, &url).await.0, 200);
    assert_eq!((old.requests(), new.requests()), (1, 0));

    entry.point_at(b'2');
    eventually(
        "traffic on the new address",
        Duration::from_secs(10),
        || async {
            let _ = get(&client, &url).await;
            (new.requests() > 0).then_some(())
        },
    )
    .await;
    let settled = old.requests();
    for _ in 0..4 {
        assert_eq!(get(&client, &url).await.0, 200);
    }
    assert_eq!(old.requests(), settled, "the old address gets nothing more");
    gw.wait_for_log("target addresses changed").await;
    // The address that went away takes its series with it.
    let old_label = format!("target=\"{}\"", old.addr);
    eventually(
        "the old target's series gone",
        Duration::from_secs(5),
        || async {
            let text = gw.metrics().await;
            (!text.contains(&old_label) && text.contains(&format!("target=\"127.0.0.2:{port}\"")))
                .then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_read_whole_is_retried_with_its_body_intact() {
    let mut a = Target::any();
    let b = Target::any();
    let url = format!("http://{}", a.addr);
    // A body binding makes the gateway read the body whole and forward it
    // through a subrequest.
    let put_route = "\x20 - name: put-order\n    methods: [PUT]\n    path: /partners/{partner}/orders/{id}\n    upstream: orders\n    bind: {body: /partner}\n";
    let policy = orders_policy(&url, put_route).replacen(
        &format!("    url: {url}\n"),
        &format!("    url: {url}\n{}", targets(&[&a, &b])),
        1,
    );
    let mut cfg = GatewayConfig::orders(&url);
    cfg.policies = vec![("orders.yaml".into(), policy)];
    let gw = Gateway::start(cfg).await;
    a.kill().await;
    let body = r#"{"partner":"acme","quantity":3}"#;
    for _ in 0..2 {
        let resp = gw
            .client()
            .put(gw.url("/partners/acme/orders/acme-1001"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("response");
        assert_ne!(resp.status().as_u16(), 502, "the PUT reached a live target");
    }
    let puts: Vec<_> = b
        .recorder
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT")
        .collect();
    assert_eq!(puts.len(), 2, "both PUTs reached b, once each");
    for put in &puts {
        assert_eq!(put.body, body.as_bytes(), "the body arrived intact");
    }
    gw.wait_for_log(&format!("upstream_addr={} upstream_attempts=2", b.addr))
        .await;
}
