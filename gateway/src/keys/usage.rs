//! When each key was last used: remembered per node to the minute, and
//! written to the store in one batch every `keys.last_used_flush`, never a
//! write per request. A request pays one cache read, and a map insert the
//! first time a key is seen in a minute.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use quick_cache::sync::Cache;

use super::pepper::KeyHash;
use super::store::now_secs;
use super::verify::Verifier;

pub struct Usage {
    /// The minute each key was last seen in, to skip repeats cheaply.
    seen: Cache<KeyHash, u64>,
    /// Seen since the last batch was written.
    pending: Mutex<HashMap<KeyHash, u64>>,
}

impl Usage {
    pub fn new(entries: usize) -> Usage {
        Usage {
            seen: Cache::new(entries.max(1)),
            pending: Mutex::new(HashMap::new()),
        }
    }

    pub fn touch(&self, hash: &KeyHash) {
        let minute = now_secs() / 60 * 60;
        if self.seen.get(hash) == Some(minute) {
            return;
        }
        self.seen.insert(*hash, minute);
        if let Ok(mut pending) = self.pending.lock() {
            pending.insert(*hash, minute);
        }
    }

    /// This node's latest sighting, which may be newer than the store's.
    pub fn last_seen(&self, hash: &KeyHash) -> Option<u64> {
        self.seen.get(hash)
    }

    fn take(&self) -> Vec<(KeyHash, u64)> {
        self.pending
            .lock()
            .map(|mut p| std::mem::take(&mut *p).into_iter().collect())
            .unwrap_or_default()
    }

    /// Puts back a batch that could not be written, keeping newer sightings.
    fn put_back(&self, batch: Vec<(KeyHash, u64)>) {
        if let Ok(mut pending) = self.pending.lock() {
            for (hash, at) in batch {
                let slot = pending.entry(hash).or_insert(at);
                *slot = (*slot).max(at);
            }
        }
    }
}

/// Writes this node's batch to the store, every interval and at shutdown.
pub struct UsageWriter {
    pub verifier: Arc<Verifier>,
    pub every: Duration,
}

impl UsageWriter {
    pub async fn write_once(&self) {
        let usage = self.verifier.usage();
        let batch = usage.take();
        if batch.is_empty() {
            return;
        }
        let rows: Vec<(String, u64)> = batch.iter().map(|(h, at)| (h.to_hex(), *at)).collect();
        if let Err(e) = self.verifier.store().record_use(&rows).await {
            tracing::debug!(target: "portcullis::keys", error = %e, "cannot write key usage; kept for the next batch");
            usage.put_back(batch);
        }
    }
}

#[async_trait]
impl BackgroundService for UsageWriter {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => self.write_once().await,
                _ = shutdown.changed() => {
                    self.write_once().await;
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_recorded_once_a_minute_and_a_failed_batch_is_kept() {
        let usage = Usage::new(16);
        let a = KeyHash(blake3::hash(b"a"));
        let b = KeyHash(blake3::hash(b"b"));
        for _ in 0..1000 {
            usage.touch(&a);
        }
        usage.touch(&b);
        let batch = usage.take();
        assert_eq!(batch.len(), 2);
        assert!(usage.take().is_empty(), "taken once");
        // Seen again within the same minute: nothing new to write.
        usage.touch(&a);
        assert!(usage.take().is_empty());
        usage.put_back(batch);
        assert_eq!(usage.take().len(), 2);
        assert_eq!(usage.last_seen(&a), Some(now_secs() / 60 * 60));
    }
}
