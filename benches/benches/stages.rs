//! Criterion micro-benchmarks of the request stages that exist so far.
//! Run: `cargo bench -p portcullis-benches --bench stages`.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use portcullis::keys::embedded::EmbeddedStore;
use portcullis::keys::format;
use portcullis::keys::node::NodeState;
use portcullis::keys::pepper::Pepper;
use portcullis::keys::redis_store::RedisStore;
use portcullis::keys::service::KeyService;
use portcullis::keys::verify::{Verdict, Verifier};

/// Polls a future that completes without waiting (a cache hit) without a
/// runtime, so the runtime's cost is not measured.
fn ready<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    match f.as_mut().poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("expected an immediate answer"),
    }
}

fn keys(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("keys.json")).unwrap();
    let verifier = Arc::new(Verifier::new(
        Pepper::from_bytes([9; 32]),
        Arc::new(store),
        100_000,
        Duration::from_secs(5),
    ));
    let service = KeyService::new(verifier.clone());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (key, _) = rt
        .block_on(service.create("acme", "primary", None))
        .unwrap();
    let key = key.reveal().as_bytes().to_vec();
    assert!(matches!(
        ready(verifier.verify(&key, None)),
        Verdict::Valid(_)
    ));

    let mut group = c.benchmark_group("key_verify");
    group.bench_function("cache_hit", |b| {
        b.iter(|| ready(verifier.verify(&key, None)))
    });
    group.bench_function("malformed", |b| {
        b.iter(|| ready(verifier.verify(b"ptc_live_garbage", None)))
    });
    let parsed_key = key.clone();
    let pepper = Pepper::from_bytes([9; 32]);
    group.bench_function("format_check_and_hash_only", |b| {
        b.iter(|| {
            let parsed = format::parse(&parsed_key).unwrap();
            pepper.hash(&parsed)
        })
    });

    if let Ok(redis) = portcullis_benches::Redis::start() {
        let settings =
            portcullis_benches::redis_settings(&redis.url, "bench:", Duration::from_millis(500));
        // A node without a lease never trusts its cache: every verify is a
        // lookup in Redis.
        let store = Arc::new(RedisStore::new(&settings));
        let remote = Arc::new(Verifier::with_node(
            Pepper::from_bytes([9; 32]),
            store,
            100_000,
            Duration::ZERO,
            NodeState::shared(),
        ));
        let (rkey, _) = rt
            .block_on(KeyService::new(remote.clone()).create("acme", "primary", None))
            .unwrap();
        let rkey = rkey.reveal().as_bytes().to_vec();
        assert!(matches!(
            rt.block_on(remote.verify(&rkey, None)),
            Verdict::Valid(_)
        ));
        group.bench_function("redis_lookup_local", |b| {
            b.iter(|| rt.block_on(remote.verify(&rkey, None)))
        });
    } else {
        eprintln!("redis-server not available: skipping redis_lookup_local");
    }
    group.finish();
}

fn routing(c: &mut Criterion) {
    let mut router = portcullis::stage::route::Router::default();
    for i in 0..50 {
        router
            .insert(
                &format!("/partners/{{partner}}/resource{i}/{{id}}"),
                &[http::Method::GET],
                Arc::new(i),
            )
            .unwrap();
    }
    let mut group = c.benchmark_group("path_and_route");
    group.bench_function("normalise_clean_path", |b| {
        b.iter(|| portcullis::stage::path::normalise("/partners/acme/resource42/acme-1001"))
    });
    group.bench_function("normalise_dirty_path", |b| {
        b.iter(|| {
            portcullis::stage::path::normalise("//partners/./acme/%72esource42/x/../acme-1001")
        })
    });
    group.bench_function("route_lookup_50_routes", |b| {
        b.iter(|| {
            router
                .lookup(&http::Method::GET, "/partners/acme/resource42/acme-1001")
                .is_ok()
        })
    });
    group.finish();
}

/// The monitoring stages every request pays for: the audit record
/// (serialised and chained, as the writer thread does), the rate-limit
/// decision made locally, the brute-force check and the anomaly count.
fn monitoring(c: &mut Criterion) {
    use portcullis::config::monitoring::{AnomalySettings, AuthFailureSettings, RateSpec};
    use portcullis::limits::abuse::{AbuseGuard, AbuseStats};
    use portcullis::limits::anomaly::{AnomalyDetector, AnomalyStats};
    use portcullis::limits::limiter::Check;
    use portcullis::limits::{LimitStats, Rate, RateLimiter};
    use portcullis::monitor::audit::chain::Chain;
    use portcullis::monitor::audit::{Decision, Entry, Record, Timings};

    let record = Record {
        request_id: "6a494c344d9655ef524b8f439eb92abd".into(),
        trace_id: "2c24fbcd57a6549d195d3a1e7504138c".into(),
        partner: Some("acme".into()),
        key_id: Some("5c32d9ed5446".into()),
        route: "list-orders".into(),
        method: "GET".into(),
        path: "/partners/acme/orders".into(),
        status: 200,
        decision: Decision::Allow,
        reason: "proxied".into(),
        timings_us: Timings {
            total: 1127,
            auth: Some(80),
            isolation: Some(26),
            rate_limit: Some(3),
            validation: None,
            upstream: Some(423),
        },
        bytes_in: 0,
        bytes_out: 542,
        client_ip: Some("127.0.0.1".into()),
        peer_ip: None,
        tls_version: Some("TLSv1.3".into()),
        tls_cipher: Some("TLS13_AES_256_GCM_SHA384".into()),
        object: None,
    };
    let mut group = c.benchmark_group("monitoring");
    let mut chain = Chain::new(None);
    group.bench_function("audit_record_encode_and_chain", |b| {
        b.iter(|| {
            let json = serde_json::to_vec(&Entry::request(record.clone())).unwrap();
            chain.seal(json).len()
        })
    });
    let limiter = RateLimiter::new(
        None,
        Duration::from_millis(50),
        Duration::from_secs(1),
        LimitStats::new().unwrap(),
    );
    // A rate no benchmark can exhaust, so every check is an allow.
    let rate = Rate::new(&RateSpec {
        requests: u32::MAX,
        per: Duration::from_secs(1),
        burst: None,
    });
    let checks = [
        Check {
            scope: "partner",
            key: "p:acme".into(),
            rate,
        },
        Check {
            scope: "route",
            key: "r:list-orders:acme".into(),
            rate,
        },
    ];
    group.bench_function("rate_limit_local_two_limits", |b| {
        b.iter(|| ready(limiter.check("list-orders", &checks)).map(|l| l.allowed))
    });
    if let Ok(redis) = portcullis_benches::Redis::start() {
        let settings =
            portcullis_benches::redis_settings(&redis.url, "bench:", Duration::from_millis(500));
        let shared = RateLimiter::new(
            Some(Arc::new(RedisStore::new(&settings))),
            Duration::from_millis(500),
            Duration::from_secs(1),
            LimitStats::new().unwrap(),
        );
        let rt = tokio::runtime::Runtime::new().unwrap();
        let first = rt.block_on(shared.check("list-orders", &checks)).unwrap();
        assert!(first.allowed);
        group.bench_function("rate_limit_redis_two_limits", |b| {
            b.iter(|| {
                rt.block_on(shared.check("list-orders", &checks))
                    .map(|l| l.allowed)
            })
        });
    } else {
        eprintln!("redis-server not available: skipping rate_limit_redis_two_limits");
    }
    let guard = AbuseGuard::new(AuthFailureSettings::default(), AbuseStats::new().unwrap());
    let ip: std::net::IpAddr = "192.0.2.7".parse().unwrap();
    group.bench_function("brute_force_check_nothing_blocked", |b| {
        b.iter(|| guard.client_blocked(ip))
    });
    let detector = AnomalyDetector::new(AnomalySettings::default(), AnomalyStats::new().unwrap());
    group.bench_function("anomaly_count", |b| {
        b.iter(|| detector.observe("acme", false))
    });
    group.finish();
}

/// Picking an upstream target, against building the pingora peer every
/// request already built before there was a choice to make.
fn balancing(c: &mut Criterion) {
    use portcullis::balance::{Balancer, BalancerSpec, Ejection, Name};
    use portcullis::config::model::BalanceSpec;
    let addr = |i: u16| std::net::SocketAddr::from(([10, 0, 0, 1], 8000 + i));
    let balancer = |balance, n: u16| {
        Balancer::new(BalancerSpec {
            upstream: "orders".into(),
            names: (0..n).map(|i| Name::Address(addr(i))).collect(),
            balance,
            ejection: Ejection {
                after_failures: 5,
                duration: Duration::from_secs(30),
            },
            resolve_every: Duration::from_secs(10),
            probe: None,
        })
        .unwrap()
    };
    let mut g = c.benchmark_group("balance");
    g.bench_function("baseline_peer_only", |b| {
        b.iter(|| {
            std::hint::black_box(pingora::upstreams::peer::HttpPeer::new(
                addr(0),
                false,
                String::new(),
            ))
        })
    });
    for (name, balance, n) in [
        ("round_robin_1", BalanceSpec::RoundRobin, 1),
        ("round_robin_8", BalanceSpec::RoundRobin, 8),
        ("least_connections_8", BalanceSpec::LeastConnections, 8),
        ("partner_hash_8", BalanceSpec::PartnerHash, 8),
    ] {
        let lb = balancer(balance, n);
        g.bench_function(name, |b| {
            b.iter(|| {
                let pick = lb.pick(std::hint::black_box("acme"), &[]).unwrap();
                std::hint::black_box(pingora::upstreams::peer::HttpPeer::new(
                    pick.lease.target_addr(),
                    false,
                    String::new(),
                ))
            })
        });
    }
    g.finish();
}

/// Object ownership: the check a request on a `resource:` route pays
/// before it is forwarded (the object's id from the path, its owner from an
/// embedded index of 100 000 objects, the decision), and cutting a list of
/// nine rows of three partners down to the caller's three.
fn ownership(c: &mut Criterion) {
    use portcullis::ownership::embedded::EmbeddedOwnership;
    use portcullis::ownership::store::{Ownership, OwnershipStore};
    use portcullis::stage::body::Pointer;
    use portcullis::stage::own::{
        self, Decision, IdSource, ObjectRule, OtherRows, Resource, ResourceAction, UnknownObjects,
    };

    let dir = tempfile::tempdir().unwrap();
    let index = EmbeddedOwnership::open_owned(&dir.path().join("owners.jsonl"))
        .unwrap()
        .unwrap();
    let records: Vec<Ownership> = (0..100_000u64)
        .map(|i| Ownership {
            kind: "order".into(),
            id: format!("ord_{:012x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 16),
            partner: format!("partner-{}", i % 1000),
        })
        .collect();
    let target = records[4242].clone();
    ready(index.import(records)).unwrap();
    let resource = Arc::new(Resource {
        kind: "order".into(),
        id: Pointer::parse("/id", false).unwrap(),
        owner: Some(Pointer::parse("/partner", false).unwrap()),
    });
    let rule = ObjectRule {
        resource: resource.clone(),
        action: ResourceAction::Change,
        id: Some(IdSource::Path("id".into())),
        unknown: UnknownObjects::Refuse,
        preflight: None,
        rows: None,
        others: OtherRows::Drop,
    };
    let params = vec![("id".to_string(), target.id.clone())];
    let mut g = c.benchmark_group("ownership");
    g.bench_function("check_known_owner_embedded_100k", |b| {
        b.iter(|| {
            let id = own::request_object(&rule, std::hint::black_box(&params), None)
                .unwrap()
                .unwrap();
            let owner = ready(index.owner("order", &id)).unwrap();
            let decision = own::decide(&rule, owner.as_deref(), &target.partner);
            assert_eq!(decision, Decision::Forward);
            decision
        })
    });
    let rows: Vec<String> = (0..9)
        .map(|i| {
            format!(
                r#"{{"id":"ord_{i:012x}","partner":"{}","sku":"WIDGET-RED-01","quantity":{i},"status":"open"}}"#,
                ["acme", "globex", "initech"][i % 3]
            )
        })
        .collect();
    let list = format!(r#"{{"orders":[{}]}}"#, rows.join(","));
    let path = vec!["orders".to_string()];
    g.bench_function("list_cut_9_rows_to_3", |b| {
        b.iter(|| {
            let found =
                own::list_rows(&resource, &path, std::hint::black_box(list.as_bytes())).unwrap();
            let keep: Vec<bool> = found
                .facts
                .iter()
                .map(|f| f.owner.as_deref() == Some("acme"))
                .collect();
            own::keep_rows(list.as_bytes(), &found, &keep)
        })
    });
    g.finish();
}

criterion_group!(benches, keys, routing, monitoring, balancing, ownership);
criterion_main!(benches);
