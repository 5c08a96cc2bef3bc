//! One partner's key verifications while another partner rotates its key
//! ten times a second, two nodes on one real Redis. Every rotation is a
//! change every node must apply; this measures what applying it costs the
//! partners who changed nothing.
//!
//! Each phase runs the same load on node 2: `TASKS` tasks verifying, round
//! robin, `KEYS` valid keys of other partners (all cached when the phase
//! starts). Phase "quiet": no rotations. Phase "churn": node 1 rotates
//! acme's key every 100 ms. Reported: verifications per second, store
//! lookups (cache misses) per second, and churn/quiet as a ratio, so two
//! builds compare by their ratios.
//!
//! Run: `cargo run --release -p portcullis-benches --bin churn -- [KEYS] [SECONDS]`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pingora::services::background::BackgroundService;
use portcullis::keys::node::{NodeAgent, NodeState};
use portcullis::keys::pepper::Pepper;
use portcullis::keys::redis_store::RedisStore;
use portcullis::keys::service::KeyService;
use portcullis::keys::verify::{KeyStats, Verdict, Verifier};
use portcullis_benches::{redis_settings, Redis};

const TASKS: usize = 32;

struct Phase {
    verified: u64,
    /// Valid keys refused because the store did not answer in time (503
    /// `key_store_unavailable` to a partner).
    unavailable: u64,
    misses: u64,
    rotations: u64,
    /// Rotations that returned an error (the store did not answer in time).
    failed_rotations: u64,
    seconds: f64,
}

async fn run_phase(
    node: &Arc<Verifier>,
    stats: &KeyStats,
    keys: &Arc<Vec<String>>,
    rotator: Option<&KeyService>,
    seconds: u64,
) -> Phase {
    let stop = Arc::new(AtomicBool::new(false));
    let verified = Arc::new(AtomicU64::new(0));
    let unavailable = Arc::new(AtomicU64::new(0));
    let misses_before = stats.cache_misses.get();
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let (node, keys, stop, verified, unavailable) = (
                node.clone(),
                keys.clone(),
                stop.clone(),
                verified.clone(),
                unavailable.clone(),
            );
            tokio::spawn(async move {
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    let key = &keys[i % keys.len()];
                    match node.verify(key.as_bytes(), None).await {
                        Verdict::Valid(_) => {
                            verified.fetch_add(1, Ordering::Relaxed);
                        }
                        Verdict::StoreUnavailable(_) => {
                            unavailable.fetch_add(1, Ordering::Relaxed);
                        }
                        other => panic!("a valid key was refused: {other:?}"),
                    }
                    i += TASKS;
                    // A request answered from the cache never waits, so
                    // without this the load would starve the node's own
                    // lease and store tasks on the same runtime; a real
                    // request yields at every socket read and write.
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    let mut rotations = 0;
    let mut failed_rotations = 0;
    let deadline = started + Duration::from_secs(seconds);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    while Instant::now() < deadline {
        tick.tick().await;
        if let Some(service) = rotator {
            match service.rotate("acme", "primary").await {
                Ok(_) => rotations += 1,
                Err(_) => failed_rotations += 1,
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("load task");
    }
    Phase {
        verified: verified.load(Ordering::Relaxed),
        unavailable: unavailable.load(Ordering::Relaxed),
        misses: stats.cache_misses.get() - misses_before,
        rotations,
        failed_rotations,
        seconds: started.elapsed().as_secs_f64(),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let key_count: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5000);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let redis = Redis::start().expect("redis-server");
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut nodes = Vec::new();
    let mut all_stats = Vec::new();
    for i in 0..2 {
        let store = Arc::new(RedisStore::new(&redis_settings(
            &redis.url,
            "churn:",
            Duration::from_millis(500),
        )));
        let stats = KeyStats::new().expect("stats");
        let verifier = Arc::new(
            Verifier::with_node(
                Pepper::from_bytes([5; 32]),
                store.clone(),
                key_count * 2,
                Duration::from_secs(5),
                NodeState::shared(),
            )
            .with_stats(stats.clone()),
        );
        let agent = NodeAgent {
            node_id: format!("churn-node-{i}"),
            store,
            verifier: verifier.clone(),
        };
        let watch = stop_rx.clone();
        tokio::spawn(async move { agent.start(watch).await });
        nodes.push(verifier);
        all_stats.push(stats);
    }
    while !nodes.iter().all(|n| n.node().cache_trusted()) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let rotator = KeyService::new(nodes[0].clone());
    rotator
        .create("acme", "primary", None)
        .await
        .expect("create acme");
    let mut keys = Vec::with_capacity(key_count);
    for i in 0..key_count {
        let (key, _) = rotator
            .create(&format!("partner-{i}"), "primary", None)
            .await
            .expect("create");
        keys.push(key.reveal().to_string());
    }
    let keys = Arc::new(keys);
    let (node, stats) = (&nodes[1], &all_stats[1]);
    for key in keys.iter() {
        assert!(matches!(
            node.verify(key.as_bytes(), None).await,
            Verdict::Valid(_)
        ));
    }
    println!(
        "{key_count} keys of other partners verified by {TASKS} tasks on node 2 of 2 (one local redis-server, lease 2s), {seconds}s per phase"
    );
    let mut ratios = Vec::new();
    for round in 1..=3 {
        let quiet = run_phase(node, stats, &keys, None, seconds).await;
        let churn = run_phase(node, stats, &keys, Some(&rotator), seconds).await;
        for (name, p) in [("quiet", &quiet), ("churn", &churn)] {
            println!(
                "round {round} {name}: {:>9.0} verifications/s  {:>8.0} store lookups/s  {:>6} valid keys refused (store timeout)  {} rotations of acme ({} failed)",
                p.verified as f64 / p.seconds,
                p.misses as f64 / p.seconds,
                p.unavailable,
                p.rotations,
                p.failed_rotations
            );
        }
        ratios.push(
            (churn.verified as f64 / churn.seconds) / (quiet.verified as f64 / quiet.seconds),
        );
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "churn/quiet throughput: median {:.3} (rounds: {:?})",
        ratios[1],
        ratios.iter().map(|r| format!("{r:.3}")).collect::<Vec<_>>()
    );
}
