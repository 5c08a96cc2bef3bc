//! A million objects in the ownership index: what they cost in memory and
//! what one lookup costs, for each engine, each measured in a child
//! process of its own so one engine's heap does not blur the other's RSS.
//!
//! - embedded: the log written in its on-disk format, then opened (replayed)
//!   by `EmbeddedOwnership::open_owned`; RSS before and after; lookups of
//!   known and unknown objects.
//! - redis: the million imported through `RedisOwnership::import` into a
//!   private `redis-server` (skipped if none is on PATH); Redis
//!   `used_memory`; then lookups answered by Redis (first read of an
//!   object) and by this node's cache (second read), and the RSS the cache
//!   costs.
//!
//! Run: `cargo run --release -p portcullis-benches --bin ownership_index -- [objects] [cached]`

use std::io::{BufWriter, Write};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis::keys::embedded::EmbeddedStore;
use portcullis::keys::pepper::Pepper;
use portcullis::keys::redis_store::RedisStore;
use portcullis::keys::verify::Verifier;
use portcullis::ownership::embedded::EmbeddedOwnership;
use portcullis::ownership::redis::RedisOwnership;
use portcullis::ownership::store::{Ownership, OwnershipStore};
use portcullis_benches::{redis_settings, redis_used_memory, rss_kib, Redis};

const CHILD: &str = "OWNERSHIP_BENCH_CHILD";
const SAMPLE: usize = 20_000;

fn id(i: usize) -> String {
    // Opaque ids of the example's shape (`ord_` + 12 hex).
    format!(
        "ord_{:012x}",
        (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 16
    )
}

fn partner(i: usize) -> String {
    format!("partner-{}", i % 1000)
}

fn main() -> Result<(), String> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let objects = args.first().copied().unwrap_or(1_000_000);
    let cached = args.get(1).copied().unwrap_or(100_000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    match std::env::var(CHILD).as_deref() {
        Ok("embedded") => runtime.block_on(embedded(objects)),
        Ok("redis") => runtime.block_on(redis(objects, cached)),
        _ => {
            println!("{objects} objects (1000 partners), lookups of {SAMPLE} sampled objects\n");
            for kind in ["embedded", "redis"] {
                let exe = std::env::current_exe().map_err(|e| e.to_string())?;
                let status = Command::new(exe)
                    .args([objects.to_string(), cached.to_string()])
                    .env(CHILD, kind)
                    .status()
                    .map_err(|e| e.to_string())?;
                if !status.success() {
                    return Err(format!("the {kind} measurement failed"));
                }
            }
            Ok(())
        }
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Median and p99 of one lookup, in nanoseconds.
async fn time_lookups(
    store: &dyn OwnershipStore,
    ids: &[String],
    expect_known: bool,
) -> Result<(u64, u64), String> {
    let mut ns = Vec::with_capacity(ids.len());
    for id in ids {
        let t = Instant::now();
        let owner = store.owner("order", id).await.map_err(|e| e.to_string())?;
        ns.push(t.elapsed().as_nanos() as u64);
        if owner.is_some() != expect_known {
            return Err(format!("{id}: unexpected answer {owner:?}"));
        }
    }
    ns.sort_unstable();
    Ok((ns[ns.len() / 2], ns[ns.len() * 99 / 100]))
}

fn sample_ids(objects: usize) -> Vec<String> {
    (0..SAMPLE).map(|k| id((k * 7919) % objects)).collect()
}

fn unknown_ids() -> Vec<String> {
    (0..SAMPLE).map(|k| format!("ord_unknown{k:06}")).collect()
}

async fn embedded(objects: usize) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = dir.path().join("owners.jsonl");
    {
        let mut out = BufWriter::new(std::fs::File::create(&path).map_err(|e| e.to_string())?);
        for i in 0..objects {
            writeln!(
                out,
                "{{\"op\":\"set\",\"kind\":\"order\",\"id\":\"{}\",\"partner\":\"{}\"}}",
                id(i),
                partner(i)
            )
            .map_err(|e| e.to_string())?;
        }
        out.flush().map_err(|e| e.to_string())?;
    }
    let file_size = std::fs::metadata(&path).map_err(|e| e.to_string())?.len();
    let (known, unknown) = (sample_ids(objects), unknown_ids());
    let rss_before = rss_kib();
    let t = Instant::now();
    let store = EmbeddedOwnership::open_owned(&path)?.ok_or("the index is owned")?;
    let opened = t.elapsed();
    let rss_loaded = rss_kib();
    let (hit50, hit99) = time_lookups(&store, &known, true).await?;
    let (miss50, miss99) = time_lookups(&store, &unknown, false).await?;
    let delta = rss_loaded.saturating_sub(rss_before);
    println!("embedded index:");
    println!(
        "  log of {objects} objects: {:.1} MiB, opened (replayed) in {:.2} s",
        file_size as f64 / (1024.0 * 1024.0),
        opened.as_secs_f64()
    );
    println!(
        "  memory: {:.1} MiB of RSS ({} B/object)",
        mib(delta),
        delta * 1024 / objects as u64
    );
    println!("  lookup, known object: median {hit50} ns, p99 {hit99} ns");
    println!("  lookup, unknown object: median {miss50} ns, p99 {miss99} ns\n");
    Ok(())
}

async fn redis(objects: usize, cached: usize) -> Result<(), String> {
    let on_path = std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|p| p.join("redis-server").is_file())
    });
    if !on_path {
        println!("redis index: skipped, redis-server is not on PATH");
        return Ok(());
    }
    let server = Redis::start()?;
    let settings = redis_settings(&server.url, "bench:", Duration::from_secs(5));
    let store = Arc::new(RedisStore::new(&settings));
    // A single-node verifier: its lease never runs out, so the cache is
    // always trusted, as on a node whose lease is current.
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let keys = EmbeddedStore::open(&dir.path().join("keys.json"))?;
    let verifier = Arc::new(Verifier::new(
        Pepper::from_bytes([7; 32]),
        Arc::new(keys),
        16,
        Duration::ZERO,
    ));
    let index = RedisOwnership::new(store, Some(verifier), cached);
    let memory_before = redis_used_memory(&server.url)?;
    let records: Vec<Ownership> = (0..objects)
        .map(|i| Ownership {
            kind: "order".into(),
            id: id(i),
            partner: partner(i),
        })
        .collect();
    let t = Instant::now();
    index.import(records).await.map_err(|e| e.to_string())?;
    let imported = t.elapsed();
    let used = redis_used_memory(&server.url)?.saturating_sub(memory_before);
    let (known, unknown) = (sample_ids(objects), unknown_ids());
    let rss_before = rss_kib();
    let (first50, first99) = time_lookups(&index, &known, true).await?;
    let (hit50, hit99) = time_lookups(&index, &known, true).await?;
    let rss_cached = rss_kib();
    let (miss50, miss99) = time_lookups(&index, &unknown, false).await?;
    let grown = rss_cached.saturating_sub(rss_before);
    println!("redis index (local redis-server):");
    println!(
        "  import of {objects} objects: {:.1} s ({:.0} objects/s)",
        imported.as_secs_f64(),
        objects as f64 / imported.as_secs_f64()
    );
    println!(
        "  memory: {:.1} MiB of Redis used_memory ({} B/object)",
        used as f64 / (1024.0 * 1024.0),
        used / objects as u64
    );
    println!("  lookup answered by Redis (first read): median {first50} ns, p99 {first99} ns");
    println!("  lookup answered by this node's cache: median {hit50} ns, p99 {hit99} ns");
    println!("  lookup, unknown object (always Redis): median {miss50} ns, p99 {miss99} ns");
    println!(
        "  this node's RSS for {SAMPLE} cached owners: +{:.1} MiB",
        mib(grown)
    );
    Ok(())
}
