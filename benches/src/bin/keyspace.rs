//! Memory with a million distinct keys tried against a bounded cache.
//! Run: `cargo run --release -p portcullis-benches --bin keyspace -- [KEYS] [CACHE]`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis::keys::embedded::EmbeddedStore;
use portcullis::keys::format;
use portcullis::keys::pepper::Pepper;
use portcullis::keys::verify::{Verdict, Verifier};
use portcullis_benches::rss_kib;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let keys: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let cache: usize = std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("keys.json")).unwrap();
    let verifier = Verifier::new(
        Pepper::from_bytes([1; 32]),
        Arc::new(store),
        cache,
        Duration::from_secs(60),
    );
    // Generate outside the timed part: 1M keys of 58 bytes.
    let tried: Vec<String> = (0..keys)
        .map(|_| format::generate().reveal().to_string())
        .collect();
    let start_rss = rss_kib();
    println!("cache entries {cache}; distinct well-formed unknown keys tried: {keys}");
    println!("{:>10} {:>12} {:>14}", "tried", "RSS KiB", "ns/verify");
    println!("{:>10} {:>12} {:>14}", 0, start_rss, "-");
    let mut last = Instant::now();
    let mut last_n = 0;
    for (i, key) in tried.iter().enumerate() {
        let verdict = verifier.verify(key.as_bytes(), None).await;
        debug_assert!(matches!(verdict, Verdict::Unknown(_)));
        let n = i + 1;
        if n == keys / 10 || n == keys / 2 || n == keys {
            let per = last.elapsed().as_nanos() / (n - last_n) as u128;
            println!("{:>10} {:>12} {:>14}", n, rss_kib(), per);
            last = Instant::now();
            last_n = n;
        }
    }
}
