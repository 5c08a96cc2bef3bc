//! Three gateway nodes, a Redis master with a replica, and three Sentinels,
//! all started by `deploy/cluster/local-cluster.sh` (the script operators
//! use to try a cluster): keys and rotations reach every node, and a Redis
//! failover is survived within the documented bound.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;

struct Cluster {
    dir: tempfile::TempDir,
    env: HashMap<String, String>,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/cluster/local-cluster.sh")
}

impl Cluster {
    fn up(upstream: &str) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("bash")
            .arg(script())
            .arg("up")
            .arg(dir.path())
            .env("PORTCULLIS_BIN", env!("CARGO_BIN_EXE_portcullis"))
            .env("UPSTREAM_URL", upstream)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "local-cluster.sh up failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let env = std::fs::read_to_string(dir.path().join("cluster.env"))
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Cluster { dir, env }
    }

    fn addr(&self, name: &str) -> SocketAddr {
        self.env[name].parse().unwrap()
    }

    /// A client of node `n` (1-based) presenting `key`.
    fn client(&self, n: usize, key: &str) -> (reqwest::Client, String) {
        let https = self.addr(&format!("NODE{n}_HTTPS"));
        let ca = std::fs::read(&self.env["CA"]).unwrap();
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("x-api-key", key.parse().unwrap());
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .resolve("localhost", https)
            .default_headers(headers)
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        (
            client,
            format!("https://localhost:{}/partners/acme/orders", https.port()),
        )
    }

    async fn status(&self, n: usize, key: &str) -> u16 {
        let (client, url) = self.client(n, key);
        client
            .get(&url)
            .send()
            .await
            .map_or(0, |r| r.status().as_u16())
    }

    /// The admin API of node `n`: (status, JSON).
    async fn admin(
        &self,
        n: usize,
        method: &str,
        path: &str,
        body: &str,
    ) -> (u16, serde_json::Value) {
        let token = std::fs::read_to_string(&self.env["ADMIN_TOKEN_FILE"]).unwrap();
        let url = format!("http://{}{path}", self.addr(&format!("NODE{n}_ADMIN")));
        let resp = reqwest::Client::new()
            .request(method.parse().unwrap(), url)
            .bearer_auth(token.trim())
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or_default())
    }
}

impl Cluster {
    /// What to look at when a node misbehaves: its log (without access
    /// lines) and what the Sentinels say.
    fn diagnosis(&self, n: usize) -> String {
        let log = std::fs::read_to_string(self.dir.path().join(format!("node{n}.log")))
            .unwrap_or_default();
        let tail: Vec<&str> = log
            .lines()
            .filter(|l| !l.contains("portcullis::access"))
            .collect();
        let sentinel =
            std::fs::read_to_string(self.dir.path().join("sentinel1.log")).unwrap_or_default();
        let sentinel_tail: Vec<&str> = sentinel.lines().rev().take(15).collect();
        format!(
            "node log:\n{}\nsentinel1 log (newest first):\n{}",
            tail[tail.len().saturating_sub(25)..].join("\n"),
            sentinel_tail.join("\n")
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash")
            .arg(script())
            .arg("down")
            .arg(self.dir.path())
            .status();
    }
}

/// The longest stretch, per node, in which no request got a 200.
fn longest_outage(seen: &[(Instant, u16)]) -> Duration {
    let mut longest = Duration::ZERO;
    let mut last_ok: Option<Instant> = seen.first().map(|(t, _)| *t);
    for (t, status) in seen {
        if *status == 200 {
            if let Some(ok) = last_ok {
                longest = longest.max(t.duration_since(ok));
            }
            last_ok = Some(*t);
        }
    }
    if let (Some(ok), Some((end, _))) = (last_ok, seen.last()) {
        longest = longest.max(end.duration_since(ok));
    }
    longest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_cluster_shares_keys_and_survives_a_redis_failover() {
    let up = Upstream::start().await;
    let cluster = Cluster::up(&up.url());

    // A key created on node 1 works on nodes 2 and 3.
    let (status, issued) = cluster
        .admin(
            1,
            "POST",
            "/v1/keys",
            r#"{"partner":"acme","name":"primary"}"#,
        )
        .await;
    assert_eq!(status, 201, "{issued}");
    let key = issued["key"].as_str().unwrap().to_string();
    for n in 1..=3 {
        assert_eq!(cluster.status(n, &key).await, 200, "node {n}");
    }

    // A rotation on node 2 is enforced on every node when it returns.
    let (status, rotated) = cluster
        .admin(2, "POST", "/v1/keys/acme/primary/rotate", "")
        .await;
    assert_eq!(status, 200, "{rotated}");
    let key = rotated["key"].as_str().unwrap().to_string();
    for n in 1..=3 {
        assert_eq!(
            cluster.status(n, issued["key"].as_str().unwrap()).await,
            401,
            "node {n}"
        );
        assert_eq!(cluster.status(n, &key).await, 200, "node {n}");
    }

    // Every node under steady traffic while the Redis master is killed.
    let stop = Arc::new(AtomicBool::new(false));
    let hammers: Vec<_> = (1..=3)
        .map(|n| {
            let (client, url) = cluster.client(n, &key);
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    let status = client
                        .get(&url)
                        .send()
                        .await
                        .map_or(0, |r| r.status().as_u16());
                    seen.push((Instant::now(), status));
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                seen
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let out = std::process::Command::new("bash")
        .arg(script())
        .arg("failover")
        .arg(cluster.dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let killed = Instant::now();

    // Every node serves again by itself, through the promoted replica.
    for n in 1..=3 {
        let mut last = 0;
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            last = cluster.status(n, &key).await;
            if last == 200 && killed.elapsed() > Duration::from_secs(3) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            last,
            200,
            "node {n} did not recover:\n{}",
            cluster.diagnosis(n)
        );
    }
    stop.store(true, Ordering::SeqCst);
    for (n, hammer) in hammers.into_iter().enumerate() {
        let seen = hammer.await.unwrap();
        let odd: Vec<u16> = seen
            .iter()
            .map(|(_, s)| *s)
            .filter(|s| *s != 200 && *s != 503)
            .collect();
        assert!(odd.is_empty(), "node {}: unexpected answers {odd:?}", n + 1);
        let outage = longest_outage(&seen);
        let refused = seen.iter().filter(|(_, s)| *s == 503).count();
        eprintln!(
            "node {}: {} requests, {refused} answered 503, longest stretch without a 200: {outage:?}",
            n + 1,
            seen.len()
        );
        // docs/src/operations/redis-outage.md, "Failover with Sentinel": Sentinel's down-after (1 s) and
        // failover, plus one lease (2 s), plus a renewal: 10 s at most here.
        assert!(
            outage < Duration::from_secs(10),
            "node {} refused requests for {outage:?}",
            n + 1
        );
    }

    // Changes made after the failover reach the new master and every node.
    let (status, rotated) = cluster
        .admin(3, "POST", "/v1/keys/acme/primary/rotate", "")
        .await;
    assert_eq!(status, 200, "{rotated}");
    let newest = rotated["key"].as_str().unwrap().to_string();
    for n in 1..=3 {
        assert_eq!(cluster.status(n, &key).await, 401, "node {n}");
        assert_eq!(cluster.status(n, &newest).await, 200, "node {n}");
    }
}
