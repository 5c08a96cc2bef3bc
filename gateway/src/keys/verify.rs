//! Verifying a presented key: format check, keyed hash, bounded cache,
//! then the store. Unknown keys are cached too (briefly), so a flood of
//! well-formed garbage does not become a flood of store lookups. The cache
//! is trusted only while this node's view of the store is known to be
//! current (see `node.rs`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use std::net::IpAddr;

use prometheus::{IntCounter, IntCounterVec, IntGauge};
use quick_cache::sync::Cache;

use super::change::Change;
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
    /// Changes this node's caches forgot, by what they touched.
    pub changes: IntCounterVec,
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
            changes: {
                let changes = IntCounterVec::new(
                    prometheus::Opts::new(
                        "key_cache_changes_total",
                        "Store changes this node's caches forgot, by scope: key, partner, owner (targeted) or everything (a change it could not pin down)",
                    ),
                    &["scope"],
                )?;
                for scope in ["key", "partner", "owner", "everything"] {
                    changes.with_label_values(&[scope]);
                }
                changes
            },
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

/// Another cache told of every change (the ownership index's).
type ChangeListener = Box<dyn Fn(&Change) + Send + Sync>;

pub struct Verifier {
    pepper: Pepper,
    store: Arc<dyn KeyStore>,
    cache: Cache<KeyHash, Cached>,
    /// Other caches that must forget what this one forgets (the ownership
    /// index's): the node agent tells them every change epoch it applies.
    listeners: std::sync::Mutex<Vec<ChangeListener>>,
    negative_ttl: Duration,
    node: NodeState,
    stats: Option<KeyStats>,
    miss_limit: Option<MissLimit>,
    misses: Cache<IpAddr, (Instant, u32)>,
    usage: super::usage::Usage,
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
            listeners: std::sync::Mutex::new(Vec::new()),
            negative_ttl,
            node,
            stats: None,
            miss_limit: None,
            misses: Cache::new(cache_entries.clamp(1, 100_000)),
            usage: super::usage::Usage::new(cache_entries),
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

    /// When this node last accepted each key, until the next batch.
    pub fn usage(&self) -> &super::usage::Usage {
        &self.usage
    }

    /// `record` with its last use as this node knows it (the store's batch
    /// time, or this node's newer sighting).
    pub fn with_last_use(&self, mut record: KeyRecord) -> KeyRecord {
        if let Some(hash) = record.key_hash() {
            record.last_used_at = record.last_used_at.max(self.usage.last_seen(&hash));
        }
        record
    }

    /// Empties every cache (a change this node cannot pin down happened).
    pub fn flush(&self) {
        self.forget_change(&Change::Everything);
    }

    /// Forgets what one change touched, in this cache and every cache
    /// registered with [`Verifier::on_change`].
    pub fn forget_change(&self, change: &Change) {
        if let Some(stats) = &self.stats {
            let scope = match change {
                Change::Everything => "everything",
                Change::Key(_) => "key",
                Change::Partner(_) => "partner",
                Change::Owner(_) => "owner",
            };
            stats.changes.with_label_values(&[scope]).inc();
        }
        match change {
            Change::Everything => self.cache.clear(),
            Change::Key(hash) => {
                self.cache.remove(hash);
            }
            Change::Partner(partner) => self.cache.retain(|_, cached| match cached {
                Cached::Known(record, _) => record.partner != *partner,
                Cached::Unknown(_) => true,
            }),
            Change::Owner(_) => {}
        }
        if let Ok(others) = self.listeners.lock() {
            for forget in others.iter() {
                forget(change);
            }
        }
    }

    /// Registers another cache that trusts this node's lease and epochs;
    /// it is told every change this node applies.
    pub fn on_change(&self, forget: impl Fn(&Change) + Send + Sync + 'static) {
        if let Ok(mut others) = self.listeners.lock() {
            others.push(Box::new(forget));
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
        self.verify_hash(kind, hash, client).await
    }

    /// The same check for a credential known by its hash only (a console
    /// session carries the hash of the credential it signed in with).
    pub async fn verify_hash(&self, kind: Kind, hash: KeyHash, client: Option<IpAddr>) -> Verdict {
        let id = hash.key_id();
        if self.node.cache_trusted() {
            match self.cache.get(&hash) {
                Some(Cached::Known(record, suspended)) => {
                    self.count(|s| &s.cache_hits);
                    return self.used(&hash, Self::judge(kind, record, suspended, id));
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
                            self.cache_answer(
                                hash,
                                Cached::Known(record.clone(), suspended),
                                lookup.epoch,
                            );
                        }
                        self.used(&hash, Self::judge(kind, record, suspended, id))
                    }
                    None => {
                        if current {
                            self.cache_answer(hash, Cached::Unknown(Instant::now()), lookup.epoch);
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

    /// Caches an answer read at `epoch`. A change applied between the
    /// caller's check and this insert may already have evicted the entry
    /// it is about to write, so the epoch is read again after writing and
    /// the entry is dropped if a change came in meanwhile.
    fn cache_answer(&self, hash: KeyHash, answer: Cached, epoch: u64) {
        self.cache.insert(hash, answer);
        if self.node.applied_epoch() > epoch {
            self.cache.remove(&hash);
        }
    }

    fn used(&self, hash: &KeyHash, verdict: Verdict) -> Verdict {
        if matches!(verdict, Verdict::Valid(_)) {
            self.usage.touch(hash);
        }
        verdict
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::embedded::EmbeddedStore;
    use crate::keys::service::KeyService;

    async fn setup() -> (tempfile::TempDir, KeyService, KeyStats) {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("keys.json")).unwrap();
        let stats = KeyStats::new().unwrap();
        let verifier = Verifier::new(
            Pepper::from_bytes([3; 32]),
            Arc::new(store),
            100,
            Duration::from_secs(5),
        )
        .with_stats(stats.clone());
        (dir, KeyService::new(Arc::new(verifier)), stats)
    }

    #[tokio::test]
    async fn a_change_evicts_only_what_it_touched() {
        let (_dir, service, stats) = setup().await;
        let verifier = service.verifier().clone();
        let mut keys = Vec::new();
        for (partner, name) in [
            ("acme", "primary"),
            ("acme", "spare"),
            ("globex", "primary"),
        ] {
            let (key, record) = service.create(partner, name, None).await.unwrap();
            keys.push((key.reveal().to_string(), record));
        }
        for (key, _) in &keys {
            assert!(matches!(
                verifier.verify(key.as_bytes(), None).await,
                Verdict::Valid(_)
            ));
        }
        let misses = stats.cache_misses.get();
        let again = |n: usize| {
            let (key, _) = &keys[n];
            let verifier = verifier.clone();
            let key = key.clone();
            async move { verifier.verify(key.as_bytes(), None).await }
        };

        // One key: only it is looked up again.
        verifier.forget_change(&Change::Key(keys[0].1.key_hash().unwrap()));
        for n in 0..3 {
            again(n).await;
        }
        assert_eq!(stats.cache_misses.get(), misses + 1);

        // One partner: both of its keys, not the other partner's.
        verifier.forget_change(&Change::Partner("acme".into()));
        for n in 0..3 {
            again(n).await;
        }
        assert_eq!(stats.cache_misses.get(), misses + 3);

        // An object's owner changing is no key change.
        verifier.forget_change(&Change::Owner("order/o-1".into()));
        for n in 0..3 {
            again(n).await;
        }
        assert_eq!(stats.cache_misses.get(), misses + 3);

        // Anything the node cannot pin down: every key.
        verifier.forget_change(&Change::Everything);
        for n in 0..3 {
            again(n).await;
        }
        assert_eq!(stats.cache_misses.get(), misses + 6);
    }

    #[tokio::test]
    async fn other_caches_hear_every_change() {
        let (_dir, service, _) = setup().await;
        let heard = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = heard.clone();
        service.verifier().on_change(move |change| {
            log.lock().unwrap().push(change.clone());
        });
        service
            .verifier()
            .forget_change(&Change::Owner("order/o-1".into()));
        service.verifier().flush();
        assert_eq!(
            *heard.lock().unwrap(),
            vec![Change::Owner("order/o-1".into()), Change::Everything]
        );
    }
}
