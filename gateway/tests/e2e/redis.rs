//! The Redis key store: the shared contract, Sentinel, rotation that is
//! immediate on every node (also with one node cut off), and outages.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis::config::model::{RedisSettings, SentinelSettings};
use portcullis::keys::redis_store::RedisStore;

use crate::common::*;

fn settings(url: Option<String>, sentinel: Option<SentinelSettings>) -> RedisSettings {
    RedisSettings {
        url,
        sentinel,
        username: None,
        password_file: None,
        ca: None,
        prefix: format!("t{}:", rand::random::<u32>()),
        timeout: Duration::from_millis(500),
        lease: Duration::from_secs(1),
        replicas_ack: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_store_satisfies_the_store_contract() {
    let redis = RedisServer::start().await;
    let store = RedisStore::new(&settings(Some(redis.url()), None));
    portcullis::keys::contract::run(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_master_is_found_through_sentinel() {
    let redis = RedisServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let conf = dir.path().join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "bind 127.0.0.1\nport {port}\nsentinel monitor primary 127.0.0.1 {} 1\nsentinel down-after-milliseconds primary 1000\n",
            redis.port
        ),
    )
    .unwrap();
    let mut sentinel = std::process::Command::new("redis-server")
        .arg(&conf)
        .arg("--sentinel")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    eventually("sentinel to answer", Duration::from_secs(10), || async {
        redis_ping(port).await.then_some(())
    })
    .await;
    let store = RedisStore::new(&settings(
        None,
        Some(SentinelSettings {
            master: "primary".into(),
            addresses: vec![format!("127.0.0.1:{port}")],
            username: None,
            password_file: None,
            tls: false,
        }),
    ));
    portcullis::keys::contract::run(&store).await;
    let _ = sentinel.kill();
    let _ = sentinel.wait();
}

fn redis_keys_yaml(url: &str) -> String {
    format!("  store: redis\n  redis:\n    url: {url}\n    lease: 1s\n    timeout: 200ms\n")
}

/// `portcullis keys` with the node's configuration but a patient store
/// timeout: an operator's command after the test's fault is over is not
/// under test, and a busy machine can take longer than the nodes' 200 ms.
fn patient_keys_cli(dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let node = std::fs::read_to_string(dir.join("portcullis.yaml")).unwrap();
    let patient = node.replace("timeout: 200ms", "timeout: 5s");
    assert_ne!(
        patient, node,
        "the node's store timeout moved; update this helper"
    );
    std::fs::write(dir.join("operator.yaml"), patient).unwrap();
    let mut full = vec!["keys"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["--config", "operator.yaml"]);
    run_cli(&full, dir)
}

async fn node(url: &str, up: &Upstream, join: Option<&Gateway>) -> Gateway {
    let mut cfg = GatewayConfig::orders(&up.url());
    cfg.keys = redis_keys_yaml(url);
    cfg.join = join.map(|g| (g.dir.path().to_path_buf(), g.keys.clone()));
    Gateway::start(cfg).await
}

/// Sends `key` to every node in a loop; records (sent-at, status).
fn hammer(
    nodes: &[&Gateway],
    key: &str,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<(Instant, u16)>>> {
    nodes
        .iter()
        .map(|gw| {
            let client = gw.client_with_key(Some(key));
            let url = gw.url("/partners/acme/orders");
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    let sent = Instant::now();
                    let status = client
                        .get(&url)
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                        .unwrap_or(0);
                    seen.push((sent, status));
                }
                seen
            })
        })
        .collect()
}

/// Who replaces acme's key while every node is hammered with it.
enum Rotation {
    /// An operator, with `portcullis keys rotate` on the second node.
    Operator,
    /// acme itself, with its management credential on the first node's
    /// partner listener.
    Partner { credential: String, key_id: String },
}

async fn rotate_while_hammered(
    nodes: &[&Gateway],
    before_rotation: impl FnOnce(),
    rotation: Rotation,
) -> (Vec<(Instant, u16)>, Instant, Duration) {
    let old = nodes[0].key("acme").to_string();
    for gw in nodes {
        // Every node has the old key cached before the rotation.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = gw
                .client_with_key(Some(&old))
                .get(gw.url("/partners/acme/orders"))
                .send()
                .await
                .map(|r| r.status().as_u16());
            if matches!(s, Ok(200)) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "old key refused on a node ({s:?}):\n{}",
                gw.logs()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    for gw in nodes {
        // Every node holds a lease, so every node trusts (and serves from)
        // its cache: the rotation has real caches to beat.
        eventually(
            "every node to hold its lease",
            Duration::from_secs(10),
            || async { (gw.metric("portcullis_key_store_up").await == 1.0).then_some(()) },
        )
        .await;
        let hits = gw.metric("portcullis_key_cache_hits_total").await;
        let resp = gw
            .client_with_key(Some(&old))
            .get(gw.url("/partners/acme/orders"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert!(
            gw.metric("portcullis_key_cache_hits_total").await > hits,
            "served from the cache"
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = hammer(nodes, &old, stop.clone());
    tokio::time::sleep(Duration::from_millis(200)).await;
    before_rotation();
    let started = Instant::now();
    match rotation {
        Rotation::Operator => {
            let (code, out, err) = keys_cli(nodes[1].dir.path(), &["rotate", "--partner", "acme"]);
            assert_eq!(code, 0, "{out}{err}");
        }
        Rotation::Partner { credential, key_id } => {
            let resp = nodes[0]
                .partner_client(Some(&credential))
                .post(nodes[0].partner_url(&format!("/v1/keys/{key_id}/regenerate")))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
        }
    }
    let returned = Instant::now();
    tokio::time::sleep(Duration::from_millis(400)).await;
    stop.store(true, Ordering::SeqCst);
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    (all, returned, returned - started)
}

/// The old key worked before `returned`, and no node accepted it after.
fn assert_cut_over(seen: &[(Instant, u16)], returned: Instant) {
    let accepted_before = seen
        .iter()
        .filter(|(t, s)| *t < returned && *s == 200)
        .count();
    let accepted_after = seen
        .iter()
        .filter(|(t, s)| *t >= returned && *s == 200)
        .count();
    let refused_after = seen
        .iter()
        .filter(|(t, s)| *t >= returned && *s == 401)
        .count();
    assert!(
        accepted_before > 0,
        "the old key worked before the rotation"
    );
    assert_eq!(
        accepted_after, 0,
        "old key accepted after the rotation returned"
    );
    assert!(refused_after > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_rotation_returns_no_node_accepts_the_old_key() {
    let redis = RedisServer::start().await;
    let up = Upstream::start().await;
    let n1 = node(&redis.url(), &up, None).await;
    let n2 = node(&redis.url(), &up, Some(&n1)).await;
    let n3 = node(&redis.url(), &up, Some(&n1)).await;
    let (seen, returned, took) =
        rotate_while_hammered(&[&n1, &n2, &n3], || {}, Rotation::Operator).await;
    assert_cut_over(&seen, returned);
    eprintln!("rotation with 3 live nodes took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_regenerating_its_key_is_enforced_on_every_node_when_the_call_returns() {
    let redis = RedisServer::start().await;
    let up = Upstream::start().await;
    let n1 = node(&redis.url(), &up, None).await;
    let n2 = node(&redis.url(), &up, Some(&n1)).await;
    let n3 = node(&redis.url(), &up, Some(&n1)).await;
    let credential = n1.management_credential("acme", "console").await;
    let listed: serde_json::Value = n1
        .partner_client(Some(&credential))
        .get(n1.partner_url("/v1/keys"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key_id = listed["keys"][0]["key_id"].as_str().unwrap().to_string();
    // The credential, issued through the first node, works on the others.
    for gw in [&n2, &n3] {
        let status = gw
            .partner_client(Some(&credential))
            .get(gw.partner_url("/v1/keys"))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
    }
    let (seen, returned, took) = rotate_while_hammered(
        &[&n1, &n2, &n3],
        || {},
        Rotation::Partner { credential, key_id },
    )
    .await;
    assert_cut_over(&seen, returned);
    eprintln!("partner regeneration with 3 live nodes took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_redis_cannot_keep_the_old_key_alive() {
    let redis = RedisServer::start().await;
    let up = Upstream::start().await;
    let relay = FaultProxy::start(std::net::SocketAddr::from(([127, 0, 0, 1], redis.port))).await;
    let n1 = node(&redis.url(), &up, None).await;
    let n2 = node(&redis.url(), &up, Some(&n1)).await;
    let n3 = node(&format!("redis://{}", relay.addr), &up, Some(&n1)).await;
    let (seen, returned, took) =
        rotate_while_hammered(&[&n1, &n2, &n3], || relay.cut(), Rotation::Operator).await;
    let accepted_after = seen
        .iter()
        .filter(|(t, s)| *t >= returned && *s == 200)
        .count();
    assert_eq!(
        accepted_after, 0,
        "old key accepted after the rotation returned"
    );
    // The cut node's lease bounds the wait.
    assert!(took < Duration::from_secs(3), "rotation took {took:?}");
    // Once the relay heals, the cut node serves the new key by itself.
    relay.heal();
    let (code, out, err) = patient_keys_cli(n1.dir.path(), &["list", "--partner", "acme"]);
    assert!(
        out.contains("partner=acme"),
        "keys list exited {code}: out {out:?}, err {err:?}"
    );
    let new_key = {
        let (code, out, err) = patient_keys_cli(n1.dir.path(), &["rotate", "--partner", "acme"]);
        assert_eq!(code, 0, "{err}");
        out.lines().last().unwrap().to_string()
    };
    eventually(
        "the healed node to accept the new key",
        Duration::from_secs(15),
        || async {
            let s = n3
                .client_with_key(Some(&new_key))
                .get(n3.url("/partners/acme/orders"))
                .send()
                .await
                .ok()?
                .status();
            (s == 200).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_is_bounded_and_recovers_by_itself() {
    let mut redis = RedisServer::start().await;
    let up = Upstream::start().await;
    // A 3s lease: long enough that "right after the kill" is well inside it.
    let mut cfg = GatewayConfig::orders(&up.url()).with_self_rotation();
    cfg.keys = format!(
        "  store: redis\n  redis:\n    url: {}\n    lease: 3s\n    timeout: 200ms\n",
        redis.url()
    );
    let gw = Gateway::start(cfg).await;
    let known = gw.client();
    let url = gw.url("/partners/acme/orders");
    assert_eq!(known.get(&url).send().await.unwrap().status(), 200);

    redis.kill();
    let killed = Instant::now();
    // A key this node verified keeps working inside the lease…
    assert_eq!(known.get(&url).send().await.unwrap().status(), 200);
    // …while a key it never verified cannot be checked: 503, not 401.
    let stranger = gw.client_with_key(Some(gw.key("globex")));
    let resp = stranger
        .get(gw.url("/partners/globex/orders"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "key_store_unavailable");

    // Self-service rotation needs the store: refused, and the key stays valid.
    let resp = known
        .post(gw.url("/.portcullis/v1/keys/rotate"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "key_rotation_failed");

    // Once the lease ends the verified key is refused too, within the bound.
    eventually(
        "cached keys to stop working once the lease ends",
        Duration::from_secs(10),
        || async { (known.get(&url).send().await.ok()?.status() == 503).then_some(()) },
    )
    .await;
    assert!(
        killed.elapsed() < Duration::from_secs(3) + Duration::from_millis(1500),
        "{:?}",
        killed.elapsed()
    );
    assert!(gw.metric("portcullis_key_store_errors_total").await >= 1.0);
    assert_eq!(gw.metric("portcullis_key_store_up").await, 0.0);
    // Past the lease the node would refuse every request: not ready, so a
    // load balancer sends traffic elsewhere; alive all the same.
    let (status, ready) = admin_get(gw.admin, "/readyz").await.unwrap();
    assert_eq!(status, 503, "{ready}");
    let ready: serde_json::Value = serde_json::from_str(&ready).unwrap();
    assert_eq!(ready["status"], "not_ready");
    assert_eq!(ready["checks"]["key_store"], "lease_lost");
    assert_eq!(admin_get(gw.admin, "/healthz").await.unwrap().0, 200);

    assert!(redis.launch().await, "redis restarted");
    eventually(
        "service to recover by itself",
        Duration::from_secs(15),
        || async { (known.get(&url).send().await.ok()?.status() == 200).then_some(()) },
    )
    .await;
    eventually("readyz to recover", Duration::from_secs(15), || async {
        admin_get(gw.admin, "/readyz")
            .await
            .filter(|(s, _)| *s == 200)
            .map(drop)
    })
    .await;
    assert_eq!(
        stranger
            .get(gw.url("/partners/globex/orders"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while gw.metric("portcullis_key_store_up").await != 1.0 {
        assert!(
            Instant::now() < deadline,
            "lease not renewed:\n{}",
            gw.logs()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_auth_is_used_and_required() {
    let redis = RedisServer::start_with(
        vec![
            "--requirepass".into(),
            "correct-horse-battery-staple".into(),
        ],
        false,
    )
    .await;
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "correct-horse-battery-staple\n").unwrap();
    let mut with_password = settings(Some(redis.url()), None);
    with_password.password_file = Some(secret.path().to_path_buf());
    portcullis::keys::contract::run(&RedisStore::new(&with_password)).await;

    let without = RedisStore::new(&settings(Some(redis.url()), None));
    let probe = portcullis::keys::pepper::KeyHash(blake3::hash(b"probe"));
    use portcullis::keys::store::{KeyStore, StoreError};
    let err = without.lookup(&probe).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(!err.to_string().contains("correct-horse"), "{err}");
}

/// redis-server serving TLS only from the files in its directory.
const REDIS_TLS_ARGS: [&str; 8] = [
    "--tls-cert-file",
    "tls.pem",
    "--tls-key-file",
    "tls.key",
    "--tls-ca-cert-file",
    "ca.pem",
    "--tls-auth-clients",
    "no",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_over_tls_is_verified_against_the_configured_ca() {
    let ca = portcullis::transport::certgen::Ca::new("Redis test CA").unwrap();
    let leaf = ca.issue(&["localhost"]).unwrap();
    let ca_pem = ca.cert_pem();
    let redis = RedisServer::start_with_files(
        REDIS_TLS_ARGS.iter().map(|s| s.to_string()).collect(),
        true,
        |dir| {
            std::fs::write(dir.join("tls.pem"), &leaf.cert_pem).unwrap();
            std::fs::write(dir.join("tls.key"), &leaf.key_pem).unwrap();
            std::fs::write(dir.join("ca.pem"), &ca_pem).unwrap();
        },
    )
    .await;
    // redis-server reads the TLS files relative to its working directory.
    let url = format!("rediss://localhost:{}", redis.port);
    let mut trusted = settings(Some(url.clone()), None);
    trusted.ca = Some(redis.dir.path().join("ca.pem"));
    portcullis::keys::contract::run(&RedisStore::new(&trusted)).await;

    // Without our CA the server's certificate is not trusted: no connection.
    let untrusted = RedisStore::new(&settings(Some(url), None));
    let probe = portcullis::keys::pepper::KeyHash(blake3::hash(b"probe"));
    use portcullis::keys::store::KeyStore;
    assert!(untrusted.lookup(&probe).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinels_with_a_password_and_tls_are_reached_as_configured() {
    let ca = portcullis::transport::certgen::Ca::new("Redis test CA").unwrap();
    let leaf = ca.issue(&["localhost", "127.0.0.1"]).unwrap();
    let ca_pem = ca.cert_pem();
    let write_tls = |dir: &std::path::Path| {
        std::fs::write(dir.join("tls.pem"), &leaf.cert_pem).unwrap();
        std::fs::write(dir.join("tls.key"), &leaf.key_pem).unwrap();
        std::fs::write(dir.join("ca.pem"), &ca_pem).unwrap();
    };
    let mut master_args: Vec<String> = REDIS_TLS_ARGS.iter().map(|s| s.to_string()).collect();
    master_args.extend(["--requirepass".into(), "master-secret-horse".into()]);
    let redis = RedisServer::start_with_files(master_args, true, write_tls).await;

    // One Sentinel, TLS only, with its own password, watching the master
    // over TLS with the master's password.
    let dir = tempfile::tempdir().unwrap();
    write_tls(dir.path());
    let port = free_port();
    std::fs::write(
        dir.path().join("sentinel.conf"),
        format!(
            "bind 127.0.0.1\nport 0\ntls-port {port}\ntls-cert-file tls.pem\ntls-key-file tls.key\n\
             tls-ca-cert-file ca.pem\ntls-auth-clients no\ntls-replication yes\n\
             requirepass sentinel-secret-staple\n\
             sentinel monitor primary 127.0.0.1 {} 1\nsentinel auth-pass primary master-secret-horse\n",
            redis.port
        ),
    )
    .unwrap();
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _sentinel = Killed(
        std::process::Command::new("redis-server")
            .arg(dir.path().join("sentinel.conf"))
            .arg("--sentinel")
            .current_dir(dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let secret = |text: &str| {
        let path = dir.path().join(format!("{}.secret", &text[..6]));
        std::fs::write(&path, format!("{text}\n")).unwrap();
        path
    };
    let configured = |sentinel_password: Option<std::path::PathBuf>, tls: bool| {
        let mut s = settings(
            None,
            Some(SentinelSettings {
                master: "primary".into(),
                addresses: vec![format!("127.0.0.1:{port}")],
                username: None,
                password_file: sentinel_password,
                tls,
            }),
        );
        s.password_file = Some(secret("master-secret-horse"));
        s.ca = Some(dir.path().join("ca.pem"));
        s
    };
    let full = configured(Some(secret("sentinel-secret-staple")), true);
    let store = eventually(
        "the Sentinel to name the master",
        Duration::from_secs(15),
        || async {
            let store = RedisStore::new(&full);
            use portcullis::keys::store::KeyStore;
            let probe = portcullis::keys::pepper::KeyHash(blake3::hash(b"probe"));
            store.lookup(&probe).await.ok().map(|_| store)
        },
    )
    .await;
    portcullis::keys::contract::run(&store).await;

    // Without the Sentinel's password, or without TLS, no master is found,
    // and no error quotes a password.
    use portcullis::keys::store::KeyStore;
    let probe = portcullis::keys::pepper::KeyHash(blake3::hash(b"probe"));
    for (what, wrong) in [
        ("no sentinel password", configured(None, true)),
        (
            "no TLS",
            configured(Some(secret("sentinel-secret-staple")), false),
        ),
    ] {
        let err = RedisStore::new(&wrong).lookup(&probe).await.unwrap_err();
        let text = err.to_string();
        assert!(!text.contains("secret"), "{what}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_partners_rotations_leave_every_other_partners_cached_keys_alone() {
    let redis = RedisServer::start().await;
    let up = Upstream::start().await;
    // A long lease: renewals (which cannot say what changed) stay out of the way.
    let keys = format!(
        "  store: redis\n  redis:\n    url: {}\n    lease: 20s\n    timeout: 500ms\n",
        redis.url()
    );
    let mut cfg = GatewayConfig::orders(&up.url());
    cfg.keys = keys.clone();
    let n1 = Gateway::start(cfg).await;
    let mut cfg = GatewayConfig::orders(&up.url());
    cfg.keys = keys;
    cfg.join = Some((n1.dir.path().to_path_buf(), n1.keys.clone()));
    let n2 = Gateway::start(cfg).await;
    let key_changes = "portcullis_key_cache_changes_total{scope=\"key\"}";
    let all_changes = "portcullis_key_cache_changes_total{scope=\"everything\"}";

    // Until node 2 has heard one change, its subscription may not be up yet.
    let (status, _) = n1
        .admin_api(
            "POST",
            "/v1/keys",
            Some(serde_json::json!({"partner": "acme", "name": "spare"})),
        )
        .await;
    assert_eq!(status, 201);
    eventually(
        "node 2 to hear a change",
        Duration::from_secs(30),
        || async {
            let (status, _) = n1
                .admin_api("POST", "/v1/keys/acme/spare/rotate", None)
                .await;
            assert_eq!(status, 200);
            (n2.metric(key_changes).await > 0.0).then_some(())
        },
    )
    .await;

    let globex = n2.client_with_key(Some(n2.key("globex")));
    let globex_url = n2.url("/partners/globex/orders");
    assert_eq!(globex.get(&globex_url).send().await.unwrap().status(), 200);
    let old = n2.key("acme").to_string();
    assert_eq!(
        n2.client_with_key(Some(&old))
            .get(n2.url("/partners/acme/orders"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let misses = n2.metric("portcullis_key_cache_misses_total").await;
    let (targeted, everything) = (n2.metric(key_changes).await, n2.metric(all_changes).await);

    for _ in 0..5 {
        let (status, body) = n1
            .admin_api("POST", "/v1/keys/acme/primary/rotate", None)
            .await;
        assert_eq!(status, 200, "{body}");
    }
    // acme's old key is gone from node 2 when the calls return…
    let resp = n2
        .client_with_key(Some(&old))
        .get(n2.url("/partners/acme/orders"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    // …and globex is still served from node 2's cache: the only lookup is
    // the old acme key's.
    for _ in 0..3 {
        assert_eq!(globex.get(&globex_url).send().await.unwrap().status(), 200);
    }
    assert_eq!(
        n2.metric("portcullis_key_cache_misses_total").await,
        misses + 1.0
    );
    assert_eq!(n2.metric(key_changes).await, targeted + 5.0);
    assert_eq!(n2.metric(all_changes).await, everything);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keys_last_use_on_one_node_shows_in_another_nodes_listing() {
    let redis = RedisServer::start().await;
    let up = Upstream::start().await;
    let keys = format!(
        "{}  last_used_flush: 200ms\n",
        redis_keys_yaml(&redis.url())
    );
    let mut cfg = GatewayConfig::orders(&up.url());
    cfg.keys = keys.clone();
    let n1 = Gateway::start(cfg).await;
    let mut cfg = GatewayConfig::orders(&up.url());
    cfg.keys = keys;
    cfg.join = Some((n1.dir.path().to_path_buf(), n1.keys.clone()));
    let n2 = Gateway::start(cfg).await;
    let credential = n1.management_credential("globex", "console").await;
    let status = n1
        .client_with_key(Some(n1.key("globex")))
        .get(n1.url("/partners/globex/orders"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    let listing = n2.partner_client(Some(&credential));
    let at = eventually(
        "node 1's use to show on node 2",
        Duration::from_secs(10),
        || async {
            let listed: serde_json::Value = listing
                .get(n2.partner_url("/v1/keys"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            listed["keys"][0]["last_used_at"].as_u64()
        },
    )
    .await;
    assert_eq!(at % 60, 0);
    // The credential's own sign-in on node 2 is a use too, but of the
    // credential: the data key's time came from node 1's batch.
    let (_, listed) = n2.admin_api("GET", "/v1/keys?partner=globex", None).await;
    let credential_row = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kind"] == "management")
        .unwrap()
        .clone();
    assert!(credential_row["last_used_at"].is_u64(), "{listed}");
}
