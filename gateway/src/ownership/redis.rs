//! The ownership index in the key store's Redis, for many nodes. It keeps
//! the key store's guarantees because it uses the key store's machinery:
//!
//! - Each node caches owners it has read, and trusts that cache only while
//!   its key-store lease runs (`keys::node`). A node cut off from Redis
//!   keeps answering for objects it knows until the lease ends; an object
//!   it does not know is refused with 503 `ownership_unavailable`, never
//!   guessed.
//! - A transfer, a removal or an import moves the same change epoch a key
//!   rotation does, in the same atomic script, and returns only when every
//!   node with a live lease has applied it (emptied its caches) or lost its
//!   lease. So when `owners transfer` returns, no node serves the old owner.
//! - A lookup reads the owner and the epoch together; an answer older than
//!   an epoch the node has applied serves its request but is not cached.
//!
//! Learning (a create's answer, a pre-flight) only ever fills an object
//! nobody owns (`HSETNX`), which no node can have cached, so it moves no
//! epoch.

use std::sync::Arc;

use async_trait::async_trait;
use quick_cache::sync::Cache;
use redis::Script;

use super::store::{check, Claimed, IndexError, Ownership, OwnershipStore};
use crate::keys::change::Change;
use crate::keys::node::await_propagation;
use crate::keys::redis_store::RedisStore;
use crate::keys::store::StoreError;
use crate::keys::verify::Verifier;

/// KEYS: owners hash, epoch. ARGV: id. → {owner or false, epoch}
const LOOKUP: &str = r"
return {redis.call('HGET', KEYS[1], ARGV[1]), redis.call('GET', KEYS[2]) or '0'}
";

/// KEYS: owners hash, kinds set. ARGV: id, partner, kind. → the owner before, or ''.
const CLAIM: &str = r"
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then return cur end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
return ''
";

/// KEYS: owners hash, kinds set, epoch. ARGV: id, partner, kind, channel.
/// → {owner before or '', epoch}
const TRANSFER: &str = r"
local old = redis.call('HGET', KEYS[1], ARGV[1]) or ''
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
local e = redis.call('INCR', KEYS[3])
redis.call('PUBLISH', ARGV[4], e .. ' owner ' .. ARGV[3] .. '/' .. ARGV[1])
return {old, e}
";

/// KEYS: owners hash, epoch. ARGV: id, channel, kind. → {owner before, epoch}
const REMOVE: &str = r"
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not old then return redis.error_reply('NOTFOUND') end
redis.call('HDEL', KEYS[1], ARGV[1])
local e = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[2], e .. ' owner ' .. ARGV[3] .. '/' .. ARGV[1])
return {old, e}
";

/// KEYS: epoch. ARGV: channel. → epoch
const BUMP: &str = r"
local e = redis.call('INCR', KEYS[1])
redis.call('PUBLISH', ARGV[1], e)
return e
";

/// Records written per round trip on import.
const IMPORT_BATCH: usize = 1000;

pub struct RedisOwnership {
    store: Arc<RedisStore>,
    /// This node's lease and applied epoch, and where the cache registers
    /// to be flushed; `None` for the CLI, which caches nothing.
    node: Option<Arc<Verifier>>,
    cache: Arc<Cache<Box<str>, Arc<str>>>,
    lookup: Script,
    claim: Script,
    transfer: Script,
    remove: Script,
    bump: Script,
}

fn from_store(e: StoreError) -> IndexError {
    match e {
        StoreError::NotFound => IndexError::NotFound,
        StoreError::Conflict(c) => IndexError::Invalid(c),
        StoreError::Unavailable(u) => IndexError::Unavailable(u),
    }
}

fn slot(kind: &str, id: &str) -> Box<str> {
    format!("{kind}/{id}").into_boxed_str()
}

impl RedisOwnership {
    /// `node` is the key verifier whose lease this node's cache trusts.
    pub fn new(store: Arc<RedisStore>, node: Option<Arc<Verifier>>, entries: usize) -> Self {
        let cache = Arc::new(Cache::new(entries.max(1)));
        if let Some(verifier) = &node {
            let weak = Arc::downgrade(&cache);
            verifier.on_change(move |change| {
                let Some(c) = weak.upgrade() else {
                    return;
                };
                match change {
                    Change::Everything => c.clear(),
                    Change::Owner(slot) => {
                        c.remove(slot.as_str());
                    }
                    Change::Key(_) | Change::Partner(_) => {}
                }
            });
        }
        RedisOwnership {
            store,
            node,
            cache,
            lookup: Script::new(LOOKUP),
            claim: Script::new(CLAIM),
            transfer: Script::new(TRANSFER),
            remove: Script::new(REMOVE),
            bump: Script::new(BUMP),
        }
    }

    fn owners(&self, kind: &str) -> String {
        self.store.name(&format!("owners:{kind}"))
    }

    fn kinds(&self) -> String {
        self.store.name("owner-kinds")
    }

    fn trusted(&self) -> Option<&Verifier> {
        self.node.as_deref().filter(|v| v.node().cache_trusted())
    }

    async fn call<T>(
        &self,
        f: impl AsyncFnOnce(&mut redis::aio::ConnectionManager) -> Result<T, redis::RedisError>,
    ) -> Result<T, IndexError> {
        let mut conn = self.store.conn().await.map_err(from_store)?;
        self.store
            .bounded(async {
                f(&mut conn)
                    .await
                    .map_err(|e| StoreError::Unavailable(e.to_string()))
            })
            .await
            .map_err(from_store)
    }

    /// After a change that moved the epoch: this node forgets it at once,
    /// every other node before this returns.
    async fn propagate(&self, epoch: u64, forget: Option<&str>) -> Result<(), IndexError> {
        match forget {
            Some(s) => {
                self.cache.remove(s);
            }
            None => self.cache.clear(),
        }
        await_propagation(&self.store, epoch)
            .await
            .map_err(from_store)
    }

    async fn replicate(&self) {
        if let Ok(mut conn) = self.store.conn().await {
            self.store.replicate(&mut conn).await;
        }
    }
}

#[async_trait]
impl OwnershipStore for RedisOwnership {
    async fn owner(&self, kind: &str, id: &str) -> Result<Option<String>, IndexError> {
        let key = slot(kind, id);
        if self.trusted().is_some() {
            if let Some(owner) = self.cache.get(&key) {
                return Ok(Some(owner.to_string()));
            }
        }
        let owners = self.owners(kind);
        let (owner, epoch): (Option<String>, String) = self
            .call(async |conn| {
                self.lookup
                    .key(&owners)
                    .key(self.store.name("epoch"))
                    .arg(id)
                    .invoke_async(conn)
                    .await
            })
            .await?;
        if let (Some(owner), Some(v)) = (&owner, self.trusted()) {
            let epoch = epoch.parse::<u64>().unwrap_or(0);
            if epoch >= v.node().applied_epoch() {
                self.cache.insert(key.clone(), Arc::from(owner.as_str()));
                // A change applied since the check may have evicted before
                // this insert (see `Verifier::cache_answer`).
                if v.node().applied_epoch() > epoch {
                    self.cache.remove(&key);
                }
            }
        }
        Ok(owner)
    }

    async fn claim(&self, kind: &str, id: &str, partner: &str) -> Result<Claimed, IndexError> {
        check(&Ownership {
            kind: kind.into(),
            id: id.into(),
            partner: partner.into(),
        })?;
        let owners = self.owners(kind);
        let before: String = self
            .call(async |conn| {
                self.claim
                    .key(&owners)
                    .key(self.kinds())
                    .arg(id)
                    .arg(partner)
                    .arg(kind)
                    .invoke_async(conn)
                    .await
            })
            .await?;
        Ok(match before.as_str() {
            "" => {
                self.replicate().await;
                Claimed::New
            }
            p if p == partner => Claimed::Already,
            p => Claimed::Other(p.to_string()),
        })
    }

    async fn transfer(
        &self,
        kind: &str,
        id: &str,
        partner: &str,
    ) -> Result<Option<String>, IndexError> {
        check(&Ownership {
            kind: kind.into(),
            id: id.into(),
            partner: partner.into(),
        })?;
        let owners = self.owners(kind);
        let (old, epoch): (String, u64) = self
            .call(async |conn| {
                self.transfer
                    .key(&owners)
                    .key(self.kinds())
                    .key(self.store.name("epoch"))
                    .arg(id)
                    .arg(partner)
                    .arg(kind)
                    .arg(self.store.channel())
                    .invoke_async(conn)
                    .await
            })
            .await?;
        self.replicate().await;
        self.propagate(epoch, Some(&slot(kind, id))).await?;
        Ok((!old.is_empty()).then_some(old))
    }

    async fn remove(&self, kind: &str, id: &str) -> Result<String, IndexError> {
        let owners = self.owners(kind);
        let result: Result<(String, u64), IndexError> = self
            .call(async |conn| {
                self.remove
                    .key(&owners)
                    .key(self.store.name("epoch"))
                    .arg(id)
                    .arg(self.store.channel())
                    .arg(kind)
                    .invoke_async(conn)
                    .await
            })
            .await;
        let (old, epoch) = match result {
            Err(IndexError::Unavailable(text)) if text.contains("NOTFOUND") => {
                return Err(IndexError::NotFound)
            }
            other => other?,
        };
        self.replicate().await;
        self.propagate(epoch, Some(&slot(kind, id))).await?;
        Ok(old)
    }

    async fn import(&self, records: Vec<Ownership>) -> Result<usize, IndexError> {
        for r in &records {
            check(r)?;
        }
        let mut written = Ok(());
        for batch in records.chunks(IMPORT_BATCH) {
            let mut pipe = redis::pipe();
            for r in batch {
                pipe.hset(self.owners(&r.kind), &r.id, &r.partner).ignore();
                pipe.sadd(self.kinds(), &r.kind).ignore();
            }
            written = self
                .call(async |conn| pipe.query_async::<()>(conn).await)
                .await;
            if written.is_err() {
                break;
            }
        }
        // An import can move objects between partners: one epoch for all,
        // moved even when a batch failed, since the batches before it did
        // change owners that nodes may have cached.
        let epoch: u64 = self
            .call(async |conn| {
                self.bump
                    .key(self.store.name("epoch"))
                    .arg(self.store.channel())
                    .invoke_async(conn)
                    .await
            })
            .await?;
        self.replicate().await;
        self.propagate(epoch, None).await?;
        written?;
        Ok(records.len())
    }

    async fn export(
        &self,
        kind: Option<&str>,
        partner: Option<&str>,
    ) -> Result<Vec<Ownership>, IndexError> {
        let kinds: Vec<String> = match kind {
            Some(k) => vec![k.to_string()],
            None => {
                self.call(async |conn| {
                    redis::cmd("SMEMBERS")
                        .arg(self.kinds())
                        .query_async(conn)
                        .await
                })
                .await?
            }
        };
        let mut out = Vec::new();
        for k in kinds {
            let owners = self.owners(&k);
            let mut cursor: u64 = 0;
            loop {
                let (next, pairs): (u64, Vec<(String, String)>) = self
                    .call(async |conn| {
                        redis::cmd("HSCAN")
                            .arg(&owners)
                            .arg(cursor)
                            .arg("COUNT")
                            .arg(1000)
                            .query_async(conn)
                            .await
                    })
                    .await?;
                out.extend(
                    pairs
                        .into_iter()
                        .filter(|(_, p)| partner.is_none_or(|want| want == p))
                        .map(|(id, p)| Ownership {
                            kind: k.clone(),
                            id,
                            partner: p,
                        }),
                );
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        out.sort_by(|a, b| (&a.kind, &a.id).cmp(&(&b.kind, &b.id)));
        out.dedup();
        Ok(out)
    }

    async fn count(&self) -> Result<u64, IndexError> {
        let kinds: Vec<String> = self
            .call(async |conn| {
                redis::cmd("SMEMBERS")
                    .arg(self.kinds())
                    .query_async(conn)
                    .await
            })
            .await?;
        let mut total = 0u64;
        for k in kinds {
            let owners = self.owners(&k);
            let n: u64 = self
                .call(async |conn| redis::cmd("HLEN").arg(&owners).query_async(conn).await)
                .await?;
            total += n;
        }
        Ok(total)
    }
}
