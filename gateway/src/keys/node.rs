//! How a rotation becomes immediate on every node.
//!
//! Each node holds a **lease** in Redis, renewed every quarter of its
//! length, and trusts its cache only while its own lease runs (measured
//! from the moment it *sent* the renewal, so its local deadline is never
//! later than the one Redis recorded). Every rotation or revocation bumps
//! a change **epoch** in the same atomic script and publishes it, with what
//! it touched. A node that learns of a newer epoch first marks it applied,
//! then forgets what changed, then acknowledges it in Redis. When the
//! published message is the very next epoch, it forgets just the key (or
//! partner, or object) the change names, so one partner's rotations never
//! empty the cache every other partner is served from. When the node has
//! missed an epoch, or learns of it from the epoch a renewal returns, it
//! cannot tell what changed and empties its caches (`change.rs`).
//!
//! The rotating call returns only when every node with a live lease has
//! acknowledged the epoch, or its lease has run out. So once it returns, no
//! node holds a cache entry it may trust that predates the change: a node
//! that dropped its subscription still renews (and sees the epoch), and a
//! node cut off from Redis cannot renew, so its cache goes untrusted when
//! its lease ends. Worst case, a rotation waits one lease length.
//!
//! The same lease bounds the outage window: when Redis is unreachable, keys
//! this node verified keep working until its lease ends, then every request
//! gets 503 `key_store_unavailable` until Redis answers again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::StreamExt;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use super::change::Change;
use super::redis_store::RedisStore;
use super::store::StoreError;
use super::verify::Verifier;

/// This node's view: how long its cache may be trusted, and the newest
/// change epoch it has applied.
pub struct NodeState {
    origin: Instant,
    /// Milliseconds since `origin`; `u64::MAX` for a single-node store.
    trusted_until_ms: AtomicU64,
    applied_epoch: AtomicU64,
}

impl NodeState {
    /// A node whose cache is always current (the embedded store).
    pub fn single() -> NodeState {
        NodeState {
            origin: Instant::now(),
            trusted_until_ms: AtomicU64::new(u64::MAX),
            applied_epoch: AtomicU64::new(0),
        }
    }

    /// A node of a shared store; untrusted until its first lease.
    pub fn shared() -> NodeState {
        NodeState {
            origin: Instant::now(),
            trusted_until_ms: AtomicU64::new(0),
            applied_epoch: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    pub fn cache_trusted(&self) -> bool {
        self.now_ms() < self.trusted_until_ms.load(Ordering::Acquire)
    }

    pub fn applied_epoch(&self) -> u64 {
        self.applied_epoch.load(Ordering::SeqCst)
    }

    fn extend_trust(&self, sent_at: Instant, lease: Duration) {
        let until = sent_at.saturating_duration_since(self.origin) + lease;
        self.trusted_until_ms
            .fetch_max(until.as_millis() as u64, Ordering::AcqRel);
    }

    /// Records `epoch` as applied; true if it was new (the caller must
    /// then empty the cache before acknowledging).
    fn apply(&self, epoch: u64) -> bool {
        self.applied_epoch.fetch_max(epoch, Ordering::SeqCst) < epoch
    }

    /// Records `epoch` as applied and says what the caller must forget
    /// before acknowledging: only the change itself when it is the very
    /// next epoch, everything when one was missed, nothing when it is old.
    fn advance(&self, epoch: u64) -> Advance {
        let Some(previous) = epoch.checked_sub(1) else {
            return Advance::Seen;
        };
        match self.applied_epoch.compare_exchange(
            previous,
            epoch,
            Ordering::SeqCst,
            Ordering::SeqCst,
        ) {
            Ok(_) => Advance::Next,
            Err(current) if current >= epoch => Advance::Seen,
            Err(_) => {
                if self.apply(epoch) {
                    Advance::Gap
                } else {
                    Advance::Seen
                }
            }
        }
    }

    /// On a single node, the store's change epoch is applied as soon as the
    /// change is made, so a lookup that raced the change is never cached.
    /// (Nodes of a shared store apply epochs in order through `NodeAgent`.)
    pub fn applied_locally(&self, epoch: u64) {
        if self.trusted_until_ms.load(Ordering::Acquire) == u64::MAX {
            self.apply(epoch);
        }
    }
}

/// What applying an epoch asks of the caches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Advance {
    /// The next epoch: forget what it changed.
    Next,
    /// Newer than the next: something in between was missed.
    Gap,
    /// Already applied.
    Seen,
}

/// Waits until every live node has applied `epoch` or lost its lease.
pub async fn await_propagation(store: &RedisStore, epoch: u64) -> Result<(), StoreError> {
    let lease = store.lease();
    let started = Instant::now();
    // If Redis cannot tell us, waiting one full lease after the change is
    // enough: every lease that predates it has ended by then.
    let give_up = started + lease + Duration::from_millis(500);
    loop {
        match store.pending(epoch).await {
            Ok((0, _)) => return Ok(()),
            Ok((_, _remaining_ms)) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot check rotation acknowledgements; waiting out the lease")
            }
        }
        if Instant::now() >= give_up {
            tokio::time::sleep_until((started + lease).into()).await;
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Background service of a node sharing a Redis store: keeps the lease,
/// follows the change epoch, acknowledges what it applied.
#[derive(Clone)]
pub struct NodeAgent {
    pub node_id: String,
    pub store: Arc<RedisStore>,
    pub verifier: Arc<Verifier>,
}

impl NodeAgent {
    async fn apply(&self, epoch: u64, change: Change) {
        match self.verifier.node().advance(epoch) {
            Advance::Next => self.verifier.forget_change(&change),
            Advance::Gap => self.verifier.flush(),
            Advance::Seen => {}
        }
        if let Err(e) = self.store.ack(&self.node_id, epoch).await {
            tracing::debug!(error = %e, "cannot acknowledge key change");
        }
    }

    async fn renew(&self) -> bool {
        let sent_at = Instant::now();
        match self.store.renew(&self.node_id, self.store.lease()).await {
            Ok(epoch) => {
                // Apply before extending trust: a newer epoch must empty
                // the cache before the cache is trusted any longer.
                if epoch > self.verifier.node().applied_epoch() {
                    // A renewal does not say what changed.
                    self.apply(epoch, Change::Everything).await;
                }
                self.verifier
                    .node()
                    .extend_trust(sent_at, self.store.lease());
                self.verifier.set_store_up(true);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot renew key-store lease");
                self.verifier.set_store_up(false);
                false
            }
        }
    }

    /// Follows published changes; returns when the subscription ends.
    async fn follow(&self) {
        let Ok(client) = self.store.client().await else {
            return;
        };
        let Ok(mut pubsub) = client.get_async_pubsub().await else {
            return;
        };
        if pubsub.subscribe(self.store.channel()).await.is_err() {
            return;
        }
        let mut messages = pubsub.on_message();
        while let Some(msg) = messages.next().await {
            let Ok(payload) = msg.get_payload::<String>() else {
                continue;
            };
            if let Some((epoch, change)) = super::change::parse(&payload) {
                self.apply(epoch, change).await;
            }
        }
    }
}

#[async_trait]
impl BackgroundService for NodeAgent {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let period = self.store.lease() / 4;
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Its own task: a future polled only inside this select would
        // stall whenever a renewal is awaited, and with it any connection
        // it was setting up for everyone else.
        let follower = self.clone();
        let follow = tokio::spawn(async move {
            loop {
                follower.follow().await;
                // The subscription dropped: renewals still carry the epoch;
                // retry the fast path shortly.
                tokio::time::sleep(period).await;
            }
        });
        loop {
            tokio::select! {
                _ = tick.tick() => { self.renew().await; }
                _ = shutdown.changed() => {
                    follow.abort();
                    self.store.leave(&self.node_id).await;
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
    fn only_the_next_epoch_is_targeted_and_a_gap_forgets_everything() {
        let node = NodeState::shared();
        assert_eq!(node.advance(1), Advance::Next);
        assert_eq!(node.advance(2), Advance::Next);
        // Already applied (a renewal saw it first, or a repeat).
        assert_eq!(node.advance(2), Advance::Seen);
        assert_eq!(node.advance(1), Advance::Seen);
        // 3 and 4 were missed: 5 cannot be applied by what it names alone.
        assert_eq!(node.advance(5), Advance::Gap);
        assert_eq!(node.applied_epoch(), 5);
        assert_eq!(node.advance(4), Advance::Seen);
        assert_eq!(node.advance(6), Advance::Next);
        assert_eq!(node.advance(0), Advance::Seen);
    }
}
