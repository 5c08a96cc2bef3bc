//! Rotation with three nodes sharing one real Redis: how long the rotate
//! call takes, and how long until the old key is refused on every node.
//! Run: `cargo run --release -p portcullis-benches --bin rotation -- [ROTATIONS]`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pingora::services::background::BackgroundService;
use portcullis::keys::node::{NodeAgent, NodeState};
use portcullis::keys::pepper::Pepper;
use portcullis::keys::redis_store::RedisStore;
use portcullis::keys::service::KeyService;
use portcullis::keys::verify::{Verdict, Verifier};
use portcullis_benches::{percentile, redis_settings, Redis};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    let redis = Redis::start().expect("redis-server");
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut nodes = Vec::new();
    for i in 0..3 {
        let store = Arc::new(RedisStore::new(&redis_settings(
            &redis.url,
            "rot:",
            Duration::from_millis(500),
        )));
        let verifier = Arc::new(Verifier::with_node(
            Pepper::from_bytes([5; 32]),
            store.clone(),
            10_000,
            Duration::from_secs(5),
            NodeState::shared(),
        ));
        let agent = NodeAgent {
            node_id: format!("bench-node-{i}"),
            store,
            verifier: verifier.clone(),
        };
        let watch = stop_rx.clone();
        tokio::spawn(async move { agent.start(watch).await });
        nodes.push(verifier);
    }
    // Wait for every node to hold a lease (its cache trusted).
    while !nodes.iter().all(|n| n.node().cache_trusted()) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let service = KeyService::new(nodes[0].clone());
    let (mut key, _) = service
        .create("acme", "primary", None)
        .await
        .expect("create");
    let mut call = Vec::with_capacity(rounds);
    let mut refused_everywhere = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let old = key.reveal().as_bytes().to_vec();
        for n in &nodes {
            assert!(
                matches!(n.verify(&old, None).await, Verdict::Valid(_)),
                "warm cache"
            );
        }
        let started = Instant::now();
        let watchers: Vec<_> = nodes
            .iter()
            .map(|n| {
                let n = n.clone();
                let old = old.clone();
                tokio::spawn(async move {
                    loop {
                        if !matches!(n.verify(&old, None).await, Verdict::Valid(_)) {
                            return Instant::now();
                        }
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        let (new_key, _) = service.rotate("acme", "primary").await.expect("rotate");
        let returned = Instant::now();
        call.push(returned - started);
        let mut last = started;
        for w in watchers {
            last = last.max(w.await.expect("watcher"));
        }
        assert!(
            last <= returned + Duration::from_millis(1) || last >= returned,
            "ordering"
        );
        for n in &nodes {
            assert!(
                !matches!(n.verify(&old, None).await, Verdict::Valid(_)),
                "invariant violated"
            );
        }
        refused_everywhere.push(last - started);
        key = new_key;
    }
    println!("rotations: {rounds} (3 nodes, one local redis-server, lease 2s)");
    println!(
        "rotate call:                 p50 {:>9.3?}  p99 {:>9.3?}  max {:>9.3?}",
        percentile(&mut call, 50.0),
        percentile(&mut call, 99.0),
        percentile(&mut call, 100.0)
    );
    println!(
        "old key refused everywhere:  p50 {:>9.3?}  p99 {:>9.3?}  max {:>9.3?}",
        percentile(&mut refused_everywhere, 50.0),
        percentile(&mut refused_everywhere, 99.0),
        percentile(&mut refused_everywhere, 100.0)
    );
}
