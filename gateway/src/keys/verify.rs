//! Verifying a presented key: format check, keyed hash, bounded cache,
//! then the store. Unknown keys are cached too (briefly), so a flood of
//! well-formed garbage does not become a flood of store lookups. The cache
//! is trusted only while this node's view of the store is known to be
//! current (see `node.rs`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use std::net::IpAddr;

use prometheus::{IntCounter, IntGauge};
use quick_cache::sync::Cache;

use super::format::{self, Malformed};
use super::node::NodeState;
use super::pepper::{KeyHash, KeyId, Pepper};
use super::store::{now_secs, KeyRecord, KeyStore, Kind, StoreError};

#[derive(Clone)]
enum Cached {
    /// A record, and whether its partner was suspended when it was read.
    Known(Arc<KeyRecord>, bool),
    Unknown(Instant),
}

/// Counters a verifier keeps; `Metrics` registers them for exposition.
#[derive(Clone)]
pub struct KeyStats {
    pub cache_hits: IntCounter,
    pub cache_misses: IntCounter,
    pub store_errors: IntCounter,
    pub misses_refused: IntCounter,
    /// 1 while this node's last lease renewal succeeded, else 0.
    pub store_up: IntGauge,
}

impl KeyStats {
    pub fn new() -> Result<KeyStats, prometheus::Error> {
        Ok(KeyStats {
            cache_hits: IntCounter::new(
                "key_cache_hits_total",
                "Key verifications answered from this node's cache",
            )?,
            cache_misses: IntCounter::new(
                "key_cache_misses_total",
                "Key verifications that asked the key store",
            )?,
            store_errors: IntCounter::new(
                "key_store_errors_total",
                "Key store lookups that failed",
            )?,
            misses_refused: IntCounter::new(
                "key_lookups_refused_total",
                "Lookups refused because a client presented too many unknown keys",
            )?,
            store_up: IntGauge::new(
                "key_store_up",
                "1 while this node's last key-store lease renewal succeeded, else 0",
            )?,
        })
    }
}

/// Limits how many unknown keys one client may have looked up per window,
/// so guessing keys cannot become a flood of store lookups.
pub struct MissLimit {
    pub per_client: u32,
    pub window: Duration,
}

#[derive(Debug)]
pub enum Verdict {
    Valid(Arc<KeyRecord>),
    /// Not a key of ours by its shape; no lookup was made.
    Malformed,
    /// Well-formed but unknown (never issued, rotated away or revoked).
    Unknown(KeyId),
    Expired(KeyId),
    /// A valid key of a partner suspended at runtime.
    Suspended(KeyId),
    /// The store could not answer and the cache may not be trusted.
    StoreUnavailable(KeyId),
    /// This client presented too many unknown keys lately; not looked up.
    TooManyUnknown(KeyId),
}

pub struct Verifier {
    pepper: Pepper,
    store: Arc<dyn KeyStore>,
    cache: Cache<KeyHash, Cached>,
    /// Other caches that must empty with this one (the ownership index's):
    /// the node agent flushes them all when it applies a change epoch.
    also_flush: std::sync::Mutex<Vec<Box<dyn Fn() + Send + Sync>>>,
    negative_ttl: Duration,
    node: NodeState,
    stats: Option<KeyStats>,
    miss_limit: Option<MissLimit>,
    misses: Cache<IpAddr, (Instant, u32)>,
}

impl Verifier {
    /// A verifier for a single-node store, whose cache is always current.
    pub fn new(
        pepper: Pepper,
        store: Arc<dyn KeyStore>,
        cache_entries: usize,
        negative_ttl: Duration,
    ) -> Self {
        Self::with_node(
            pepper,
            store,
            cache_entries,
            negative_ttl,
            NodeState::single(),
        )
    }

    /// A verifier whose cache is trusted only as `node` allows.
    pub fn with_node(
        pepper: Pepper,
        store: Arc<dyn KeyStore>,
        cache_entries: usize,
        negative_ttl: Duration,
        node: NodeState,
    ) -> Self {
        Verifier {
            pepper,
            store,
            cache: Cache::new(cache_entries.max(1)),
            also_flush: std::sync::Mutex::new(Vec::new()),
            negative_ttl,
            node,
            stats: None,
            miss_limit: None,
            misses: Cache::new(cache_entries.clamp(1, 100_000)),
        }
    }

    pub fn with_stats(mut self, stats: KeyStats) -> Self {
        self.stats = Some(stats);
        self
    }

    pub fn with_miss_limit(mut self, limit: MissLimit) -> Self {
        self.miss_limit = Some(limit);
        self
    }

    pub fn set_store_up(&self, up: bool) {
        if let Some(stats) = &self.stats {
            stats.store_up.set(i64::from(up));
        }
    }

    fn count(&self, pick: impl Fn(&KeyStats) -> &IntCounter) {
        if let Some(stats) = &self.stats {
            pick(stats).inc();
        }
    }

    fn over_miss_limit(&self, client: Option<IpAddr>) -> bool {
        let (Some(limit), Some(ip)) = (&self.miss_limit, client) else {
            return false;
        };
        self.misses.get(&ip).is_some_and(|(start, count)| {
            start.elapsed() < limit.window && count >= limit.per_client
        })
    }

    fn record_miss(&self, client: Option<IpAddr>) {
        let (Some(limit), Some(ip)) = (&self.miss_limit, client) else {
            return;
        };
        let entry = match self.misses.get(&ip) {
            Some((start, count)) if start.elapsed() < limit.window => {
                (start, count.saturating_add(1))
            }
            _ => (Instant::now(), 1),
        };
        self.misses.insert(ip, entry);
    }

    pub fn store(&self) -> &Arc<dyn KeyStore> {
        &self.store
    }

    pub fn pepper(&self) -> &Pepper {
        &self.pepper
    }

    pub fn node(&self) -> &NodeState {
        &self.node
    }

    /// Empties the cache (a change this node cannot pin down happened).
    pub fn flush(&self) {
        self.cache.clear();
        if let Ok(others) = self.also_flush.lock() {
            for flush in others.iter() {
                flush();
            }
        }
    }

    /// Registers another cache that trusts this node's lease and epochs.
    pub fn on_flush(&self, flush: impl Fn() + Send + Sync + 'static) {
        if let Ok(mut others) = self.also_flush.lock() {
            others.push(Box::new(flush));
        }
    }

    /// Verifies a presented API key for a client (its address, for the
    /// limit on unknown keys).
    pub async fn verify(&self, presented: &[u8], client: Option<IpAddr>) -> Verdict {
        self.verify_kind(Kind::Data, presented, client).await
    }

    /// Verifies a credential that must be of `kind`: another kind's text is
    /// malformed, and a stored record of another kind is unknown.
    pub async fn verify_kind(
        &self,
        kind: Kind,
        presented: &[u8],
        client: Option<IpAddr>,
    ) -> Verdict {
        let Ok(parsed) = format::parse_kind(presented, kind).map_err(|Malformed| ()) else {
            return Verdict::Malformed;
        };
        let hash = self.pepper.hash(&parsed);
        let id = hash.key_id();
        if self.node.cache_trusted() {
            match self.cache.get(&hash) {
                Some(Cached::Known(record, suspended)) => {
                    self.count(|s| &s.cache_hits);
                    return Self::judge(kind, record, suspended, id);
                }
                Some(Cached::Unknown(at)) if at.elapsed() < self.negative_ttl => {
                    self.count(|s| &s.cache_hits);
                    return Verdict::Unknown(id);
                }
                _ => {}
            }
        }
        if self.over_miss_limit(client) {
            self.count(|s| &s.misses_refused);
            return Verdict::TooManyUnknown(id);
        }
        self.count(|s| &s.cache_misses);
        match self.store.lookup(&hash).await {
            Ok(lookup) => {
                // An answer read before a change this node has already
                // applied serves this request but is never cached.
                let current = lookup.epoch >= self.node.applied_epoch();
                let suspended = lookup.partner_suspended;
                match lookup.record {
                    Some(record) => {
                        let record = Arc::new(record);
                        if current {
                            self.cache
                                .insert(hash, Cached::Known(record.clone(), suspended));
                        }
                        Self::judge(kind, record, suspended, id)
                    }
                    None => {
                        if current {
                            self.cache.insert(hash, Cached::Unknown(Instant::now()));
                        }
                        self.record_miss(client);
                        Verdict::Unknown(id)
                    }
                }
            }
            Err(StoreError::NotFound) => {
                self.record_miss(client);
                Verdict::Unknown(id)
            }
            Err(_) => {
                self.count(|s| &s.store_errors);
                Verdict::StoreUnavailable(id)
            }
        }
    }

    fn judge(kind: Kind, record: Arc<KeyRecord>, suspended: bool, id: KeyId) -> Verdict {
        if record.kind != kind {
            Verdict::Unknown(id)
        } else if record.is_expired(now_secs()) {
            Verdict::Expired(id)
        } else if suspended {
            Verdict::Suspended(id)
        } else {
            Verdict::Valid(record)
        }
    }

    /// Drops what this node knows about a key, after it changed.
    pub fn forget(&self, record: &KeyRecord) {
        if let Some(hash) = record.key_hash() {
            self.cache.remove(&hash);
        }
    }
}
