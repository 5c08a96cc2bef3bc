//! Memory and verify cost with KEYS keys in the key store of record and a
//! verifier cache of CACHE entries, for the embedded and the Redis store.
//!
//! For each store it reports process RSS before the store is loaded, with
//! every record loaded and after CACHE keys were verified into the cache
//! (for Redis also the server's `used_memory`), then the median and p99
//! time of one `Verifier::verify` for: cached keys (hits), keys in the
//! store but not in the cache (a sample from the other KEYS - CACHE), and
//! well-formed keys that are not in the store at all (unknown).
//!
//! The parent process generates the keys (1000 partners, KEYS / 1000 key
//! names each), writes the embedded store's file in its on-disk format,
//! fills a private `redis-server` (skipped if none is on PATH) through
//! `KeyStore::insert`, and runs each store's measurement in a child process
//! of its own, so one store's heap does not blur the other's RSS.
//!
//! Run: `cargo run --release -p portcullis-benches --bin keyspace -- [KEYS=1000000] [CACHE=100000]`.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis::keys::embedded::EmbeddedStore;
use portcullis::keys::format;
use portcullis::keys::pepper::Pepper;
use portcullis::keys::redis_store::RedisStore;
use portcullis::keys::store::{new_record, KeyRecord, KeyStore};
use portcullis::keys::verify::{KeyStats, Verdict, Verifier};
use portcullis_benches::{redis_settings, redis_used_memory, rss_kib, Redis};

const PEPPER: [u8; 32] = [7; 32];
const PARTNERS: usize = 1000;
/// Keys per miss measurement.
const SAMPLE: usize = 100_000;
/// Inserts in flight while filling Redis.
const IN_FLIGHT: usize = 256;
const NEGATIVE_TTL: Duration = Duration::from_secs(60);

/// Set (with the variables below) only by the parent, on its children.
const CHILD: &str = "KEYSPACE_CHILD";
const DIR: &str = "KEYSPACE_DIR";
const REDIS_URL: &str = "KEYSPACE_REDIS_URL";
const REDIS_BASE: &str = "KEYSPACE_REDIS_USED_BEFORE";

fn main() {
    let arg = |n: usize, default: usize| {
        std::env::args()
            .nth(n)
            .and_then(|a| a.parse().ok())
            .unwrap_or(default)
    };
    let keys = arg(1, 1_000_000);
    let cache = arg(2, 100_000);
    let result = match std::env::var(CHILD) {
        Ok(kind) => runtime().and_then(|rt| rt.block_on(child(&kind, keys, cache))),
        Err(_) => parent(keys, cache),
    };
    if let Err(e) = result {
        eprintln!("keyspace: error: {e}");
        std::process::exit(1);
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

// ---------------------------------------------------------------- parent

fn parent(keys: usize, cache: usize) -> Result<(), String> {
    if keys == 0 {
        return Err("KEYS must be at least 1".into());
    }
    println!(
        "keyspace: {keys} keys in the store ({PARTNERS} partners), verifier cache {cache} entries, \
         miss samples of up to {SAMPLE} keys"
    );
    let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let pepper = Pepper::from_bytes(PEPPER);

    let started = Instant::now();
    let mut texts = Vec::with_capacity(keys);
    let mut records = Vec::with_capacity(keys);
    for i in 0..keys {
        let partner = format!("p{}", i % PARTNERS);
        let name = format!("n{}", i / PARTNERS);
        let (key, record) = new_record(&pepper, &partner, &name, None)
            .map_err(|e| format!("new_record({partner}, {name}): {e}"))?;
        texts.push(key.reveal().to_string());
        records.push(record);
    }
    let generated = started.elapsed();

    let started = Instant::now();
    write_lines(&dir.path().join("keys.txt"), &texts)?;
    drop(texts);
    let store_file = dir.path().join("store.json");
    write_store_file(&store_file, &records)?;
    let file_size = std::fs::metadata(&store_file)
        .map_err(|e| format!("{}: {e}", store_file.display()))?
        .len();
    println!(
        "generated {keys} keys and records in {:.1} s; embedded store file {:.1} MiB written in {:.1} s",
        generated.as_secs_f64(),
        mib(file_size),
        started.elapsed().as_secs_f64()
    );

    println!("\n== embedded store ==");
    run_child("embedded", keys, cache, dir.path(), &[])?;

    println!("\n== redis store ==");
    if !on_path("redis-server") {
        println!("skipped: redis-server is not on PATH");
        return Ok(());
    }
    let redis = Redis::start()?;
    let used_before = redis_used_memory(&redis.url)?;
    let store = Arc::new(RedisStore::new(&redis_settings(
        &redis.url,
        "ks:",
        Duration::from_secs(1),
    )));
    let started = Instant::now();
    runtime()?.block_on(fill(store, Arc::new(records)))?;
    let took = started.elapsed().as_secs_f64();
    println!(
        "{} ({}): filled {keys} records with KeyStore::insert, {IN_FLIGHT} in flight, in {took:.1} s ({:.0} inserts/s)",
        redis.url,
        redis_version(),
        keys as f64 / took
    );
    run_child(
        "redis",
        keys,
        cache,
        dir.path(),
        &[
            (REDIS_URL, redis.url.clone()),
            (REDIS_BASE, used_before.to_string()),
        ],
    )?;
    drop(redis);
    Ok(())
}

fn write_lines(path: &Path, lines: &[String]) -> Result<(), String> {
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut out = BufWriter::new(std::fs::File::create(path).map_err(err)?);
    for line in lines {
        out.write_all(line.as_bytes()).map_err(err)?;
        out.write_all(b"\n").map_err(err)?;
    }
    out.flush().map_err(err)
}

/// The embedded store's file format: `{"format":1,"keys":[KeyRecord,...]}`.
fn write_store_file(path: &Path, records: &[KeyRecord]) -> Result<(), String> {
    let err = |e: String| format!("{}: {e}", path.display());
    let file = std::fs::File::create(path).map_err(|e| err(e.to_string()))?;
    let mut out = BufWriter::new(file);
    out.write_all(br#"{"format":1,"keys":"#)
        .map_err(|e| err(e.to_string()))?;
    serde_json::to_writer(&mut out, records).map_err(|e| err(e.to_string()))?;
    out.write_all(b"}").map_err(|e| err(e.to_string()))?;
    out.flush().map_err(|e| err(e.to_string()))
}

async fn fill(store: Arc<RedisStore>, records: Arc<Vec<KeyRecord>>) -> Result<(), String> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..IN_FLIGHT {
        let (store, records, next) = (store.clone(), records.clone(), next.clone());
        workers.spawn(async move {
            while let Some(record) = records.get(next.fetch_add(1, Ordering::Relaxed)) {
                store
                    .insert(record.clone())
                    .await
                    .map_err(|e| format!("redis insert {}/{}: {e}", record.partner, record.name))?;
            }
            Ok::<(), String>(())
        });
    }
    while let Some(done) = workers.join_next().await {
        done.map_err(|e| format!("insert task: {e}"))??;
    }
    Ok(())
}

fn run_child(
    kind: &str,
    keys: usize,
    cache: usize,
    dir: &Path,
    env: &[(&str, String)],
) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let status = Command::new(exe)
        .args([keys.to_string(), cache.to_string()])
        .env(CHILD, kind)
        .env(DIR, dir)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .status()
        .map_err(|e| format!("cannot start the {kind} measurement: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("the {kind} measurement failed ({status})"))
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join(program).is_file()))
}

fn redis_version() -> String {
    Command::new("redis-server")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| {
            s.split_whitespace()
                .find_map(|w| w.strip_prefix("v=").map(|v| format!("redis {v}")))
        })
        .unwrap_or_else(|| "redis ?".into())
}

// ----------------------------------------------------------------- child

#[derive(Clone, Copy)]
enum Expect {
    Valid,
    Unknown,
}

/// One measured phase, its samples split by who answered: the verifier's
/// cache or the store (a cached entry may have been evicted meanwhile).
struct Phase {
    label: &'static str,
    /// Nanoseconds per verify, sorted.
    from_cache: Vec<u64>,
    from_store: Vec<u64>,
}

fn quantile(sorted: &[u64], q: f64) -> u64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

async fn measure(
    verifier: &Verifier,
    stats: &KeyStats,
    label: &'static str,
    keys: &[&str],
    expect: Expect,
) -> Result<Phase, String> {
    let mut from_cache = Vec::with_capacity(keys.len());
    let mut from_store = Vec::with_capacity(keys.len());
    for key in keys {
        let hits = stats.cache_hits.get();
        let started = Instant::now();
        let verdict = verifier.verify(key.as_bytes(), None).await;
        let ns = started.elapsed().as_nanos() as u64;
        let ok = match expect {
            Expect::Valid => matches!(verdict, Verdict::Valid(_)),
            Expect::Unknown => matches!(verdict, Verdict::Unknown(_)),
        };
        if !ok {
            let want = match expect {
                Expect::Valid => "Valid",
                Expect::Unknown => "Unknown",
            };
            return Err(format!("{label}: expected {want}, got {verdict:?}"));
        }
        if stats.cache_hits.get() > hits {
            from_cache.push(ns);
        } else {
            from_store.push(ns);
        }
    }
    from_cache.sort_unstable();
    from_store.sort_unstable();
    Ok(Phase {
        label,
        from_cache,
        from_store,
    })
}

async fn child(kind: &str, keys: usize, cache: usize) -> Result<(), String> {
    let dir = PathBuf::from(std::env::var(DIR).map_err(|_| format!("{DIR} is not set"))?);
    let keys_file = dir.join("keys.txt");
    let texts: Vec<String> = std::fs::read_to_string(&keys_file)
        .map_err(|e| format!("{}: {e}", keys_file.display()))?
        .lines()
        .map(str::to_string)
        .collect();
    if texts.len() != keys {
        return Err(format!(
            "{} holds {} keys, not {keys}",
            keys_file.display(),
            texts.len()
        ));
    }
    let warm_n = cache.min(keys);
    let cached: Vec<&str> = texts[..warm_n].iter().map(String::as_str).collect();
    let rest = keys - warm_n;
    let miss_n = SAMPLE.min(rest);
    let stride = rest.checked_div(miss_n).unwrap_or(1);
    let uncached: Vec<&str> = (0..miss_n)
        .map(|i| texts[warm_n + i * stride].as_str())
        .collect();
    let unknown_keys: Vec<String> = (0..SAMPLE)
        .map(|_| format::generate().reveal().to_string())
        .collect();
    let unknown: Vec<&str> = unknown_keys.iter().map(String::as_str).collect();
    let probe = format::generate();
    let pepper = Pepper::from_bytes(PEPPER);
    let probe_hash = pepper
        .hash(&format::parse(probe.reveal().as_bytes()).map_err(|_| "generated key is malformed")?);

    let rss_before = rss_kib();
    let started = Instant::now();
    let store: Arc<dyn KeyStore> = match kind {
        "embedded" => Arc::new(EmbeddedStore::open(&dir.join("store.json"))?),
        "redis" => {
            let url = std::env::var(REDIS_URL).map_err(|_| format!("{REDIS_URL} is not set"))?;
            Arc::new(RedisStore::new(&redis_settings(
                &url,
                "ks:",
                Duration::from_secs(1),
            )))
        }
        other => return Err(format!("unknown store kind {other}")),
    };
    // One lookup, so the store is open and connected before the RSS reading.
    let probed = store
        .lookup(&probe_hash)
        .await
        .map_err(|e| format!("probe lookup: {e}"))?;
    if probed.record.is_some() {
        return Err("a fresh key was found in the store".into());
    }
    let opened = started.elapsed();
    let rss_loaded = rss_kib();

    let stats = KeyStats::new().map_err(|e| format!("key stats: {e}"))?;
    let verifier = Verifier::new(pepper, store, cache, NEGATIVE_TTL).with_stats(stats.clone());
    let warm = measure(
        &verifier,
        &stats,
        "warm-up: stored, not yet cached",
        &cached,
        Expect::Valid,
    )
    .await?;
    let rss_warm = rss_kib();
    let mut rows = vec![warm];
    rows.push(measure(&verifier, &stats, "hit: cached", &cached, Expect::Valid).await?);
    if miss_n > 0 {
        rows.push(
            measure(
                &verifier,
                &stats,
                "miss: stored, not cached",
                &uncached,
                Expect::Valid,
            )
            .await?,
        );
    }
    rows.push(
        measure(
            &verifier,
            &stats,
            "miss: unknown",
            &unknown,
            Expect::Unknown,
        )
        .await?,
    );

    println!(
        "store opened (and one probe lookup answered) in {:.2} s",
        opened.as_secs_f64()
    );
    let per = |kib: u64, base: u64, n: usize| {
        let delta = kib as i64 - base as i64;
        (
            delta as f64 / 1024.0,
            if n == 0 { 0 } else { delta * 1024 / n as i64 },
        )
    };
    println!(
        "{:<48} {:>10} {:>10} {:>12}",
        "memory", "MiB", "delta MiB", "per item"
    );
    println!(
        "{:<48} {:>10.1}",
        format!("RSS before loading ({} key texts held)", keys + SAMPLE),
        rss_before as f64 / 1024.0
    );
    let (d, b) = per(rss_loaded, rss_before, keys);
    let (label, b) = match kind {
        "redis" => (
            "RSS with the store connected (records in Redis)".to_string(),
            "-".to_string(),
        ),
        _ => (
            format!("RSS with {keys} records in the store"),
            format!("{b} B/record"),
        ),
    };
    println!(
        "{:<48} {:>10.1} {:>+10.1} {:>12}",
        label,
        rss_loaded as f64 / 1024.0,
        d,
        b
    );
    let (d, b) = per(rss_warm, rss_loaded, warm_n);
    println!(
        "{:<48} {:>10.1} {:>+10.1} {:>12}",
        format!("RSS after warming {warm_n} into the cache"),
        rss_warm as f64 / 1024.0,
        d,
        format!("{b} B/entry")
    );
    if kind == "redis" {
        let url = std::env::var(REDIS_URL).map_err(|_| format!("{REDIS_URL} is not set"))?;
        let before: u64 = std::env::var(REDIS_BASE)
            .ok()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{REDIS_BASE} is not set"))?;
        let used = redis_used_memory(&url)?;
        let delta = used as i64 - before as i64;
        println!(
            "{:<48} {:>10.1} {:>+10.1} {:>12}",
            format!("redis used_memory, {keys} records"),
            mib(used),
            delta as f64 / (1024.0 * 1024.0),
            format!("{} B/record", delta / keys as i64)
        );
    }
    println!();
    println!(
        "{:<32} {:<6} {:>7} {:>10} {:>10} {:>10}",
        "verify", "answer", "n", "median ns", "p99 ns", "mean ns"
    );
    for phase in &rows {
        for (source, ns) in [("cache", &phase.from_cache), ("store", &phase.from_store)] {
            if ns.is_empty() {
                continue;
            }
            println!(
                "{:<32} {:<6} {:>7} {:>10} {:>10} {:>10}",
                phase.label,
                source,
                ns.len(),
                quantile(ns, 0.5),
                quantile(ns, 0.99),
                ns.iter().sum::<u64>() / ns.len() as u64
            );
        }
    }
    Ok(())
}
