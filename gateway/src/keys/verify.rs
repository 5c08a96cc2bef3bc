//! Verifying a presented key: format check, keyed hash, bounded cache,
//! then the store. Unknown keys are cached too (briefly), so a flood of
//! well-formed garbage does not become a flood of store lookups. The cache
//! is trusted only while this node's view of the store is known to be
//! current (see `node.rs`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use quick_cache::sync::Cache;

use super::format::{self, Malformed};
use super::node::NodeState;
use super::pepper::{KeyHash, KeyId, Pepper};
use super::store::{now_secs, KeyRecord, KeyStore, StoreError};

#[derive(Clone)]
enum Cached {
    Known(Arc<KeyRecord>),
    Unknown(Instant),
}

#[derive(Debug)]
pub enum Verdict {
    Valid(Arc<KeyRecord>),
    /// Not a key of ours by its shape; no lookup was made.
    Malformed,
    /// Well-formed but unknown (never issued, rotated away or revoked).
    Unknown(KeyId),
    Expired(KeyId),
    /// The store could not answer and the cache may not be trusted.
    StoreUnavailable(KeyId),
}

pub struct Verifier {
    pepper: Pepper,
    store: Arc<dyn KeyStore>,
    cache: Cache<KeyHash, Cached>,
    negative_ttl: Duration,
    node: NodeState,
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
            negative_ttl,
            node,
        }
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
    }

    pub async fn verify(&self, presented: &[u8]) -> Verdict {
        let Ok(parsed) = format::parse(presented).map_err(|Malformed| ()) else {
            return Verdict::Malformed;
        };
        let hash = self.pepper.hash(&parsed);
        let id = hash.key_id();
        if self.node.cache_trusted() {
            match self.cache.get(&hash) {
                Some(Cached::Known(record)) => return Self::judge(record, id),
                Some(Cached::Unknown(at)) if at.elapsed() < self.negative_ttl => {
                    return Verdict::Unknown(id)
                }
                _ => {}
            }
        }
        match self.store.lookup(&hash).await {
            Ok(lookup) => {
                // An answer read before a change this node has already
                // applied serves this request but is never cached.
                let current = lookup.epoch >= self.node.applied_epoch();
                match lookup.record {
                    Some(record) => {
                        let record = Arc::new(record);
                        if current {
                            self.cache.insert(hash, Cached::Known(record.clone()));
                        }
                        Self::judge(record, id)
                    }
                    None => {
                        if current {
                            self.cache.insert(hash, Cached::Unknown(Instant::now()));
                        }
                        Verdict::Unknown(id)
                    }
                }
            }
            Err(StoreError::NotFound) => Verdict::Unknown(id),
            Err(_) => Verdict::StoreUnavailable(id),
        }
    }

    fn judge(record: Arc<KeyRecord>, id: KeyId) -> Verdict {
        if record.is_expired(now_secs()) {
            Verdict::Expired(id)
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
