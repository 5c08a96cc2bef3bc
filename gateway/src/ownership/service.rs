//! What the request path, the admin API and the CLI call: the index of
//! record behind counters. On the embedded engine every read is answered
//! from memory, so there is no cache to keep current: a transfer is
//! enforced by this node the moment it returns.

use std::sync::Arc;

use prometheus::{IntCounterVec, IntGauge, Opts};

use super::store::{Claimed, IndexError, Ownership, OwnershipStore};

/// Counters the index keeps; `Metrics` registers them.
#[derive(Clone)]
pub struct OwnershipStats {
    /// Objects in the index, as this node last saw.
    pub entries: IntGauge,
    /// `result`: known, unknown, error.
    pub lookups: IntCounterVec,
    /// `how`: create, read, preflight, import, transfer.
    pub learned: IntCounterVec,
    /// `result`: owner, other, missing, failed.
    pub preflights: IntCounterVec,
    /// Requests refused for naming another partner's (or an unknown) object, by route.
    pub refusals: IntCounterVec,
    /// List rows dropped because another partner owns them, by route.
    pub rows_dropped: IntCounterVec,
}

impl OwnershipStats {
    pub fn new() -> Result<OwnershipStats, prometheus::Error> {
        Ok(OwnershipStats {
            entries: IntGauge::new(
                "ownership_index_entries",
                "Objects in the ownership index, as this node last counted",
            )?,
            lookups: IntCounterVec::new(
                Opts::new(
                    "ownership_lookups_total",
                    "Ownership lookups on the request path, by result (known, unknown, error)",
                ),
                &["result"],
            )?,
            learned: IntCounterVec::new(
                Opts::new(
                    "ownership_learned_total",
                    "Owners recorded, by how (create, read, preflight, import, transfer)",
                ),
                &["how"],
            )?,
            preflights: IntCounterVec::new(
                Opts::new(
                    "ownership_preflights_total",
                    "Pre-flight reads sent for unknown objects, by result (owner, other, missing, failed)",
                ),
                &["result"],
            )?,
            refusals: IntCounterVec::new(
                Opts::new(
                    "ownership_refusals_total",
                    "Requests refused 404 object_not_found before reaching the upstream, by route",
                ),
                &["route"],
            )?,
            rows_dropped: IntCounterVec::new(
                Opts::new(
                    "ownership_rows_dropped_total",
                    "List rows withheld because they belong to another partner, by route",
                ),
                &["route"],
            )?,
        })
    }
}

/// The ownership index as the gateway uses it.
pub struct OwnershipIndex {
    store: Arc<dyn OwnershipStore>,
    stats: Option<OwnershipStats>,
}

impl OwnershipIndex {
    pub fn new(store: Arc<dyn OwnershipStore>, stats: Option<OwnershipStats>) -> OwnershipIndex {
        OwnershipIndex { store, stats }
    }

    pub fn stats(&self) -> Option<&OwnershipStats> {
        self.stats.as_ref()
    }

    fn count(&self, f: impl FnOnce(&OwnershipStats)) {
        if let Some(s) = &self.stats {
            f(s);
        }
    }

    /// The owner, for a request about to be forwarded.
    pub async fn owner(&self, kind: &str, id: &str) -> Result<Option<String>, IndexError> {
        let found = self.store.owner(kind, id).await;
        let result = match &found {
            Ok(Some(_)) => "known",
            Ok(None) => "unknown",
            Err(_) => "error",
        };
        self.count(|s| s.lookups.with_label_values(&[result]).inc());
        found
    }

    /// Records what an answer taught (`how`: create, read, preflight).
    pub async fn learn(
        &self,
        kind: &str,
        id: &str,
        partner: &str,
        how: &str,
    ) -> Result<Claimed, IndexError> {
        let claimed = self.store.claim(kind, id, partner).await?;
        if claimed == Claimed::New {
            self.count(|s| {
                s.learned.with_label_values(&[how]).inc();
                s.entries.inc();
            });
        }
        Ok(claimed)
    }

    pub async fn transfer(
        &self,
        kind: &str,
        id: &str,
        partner: &str,
    ) -> Result<Option<String>, IndexError> {
        let before = self.store.transfer(kind, id, partner).await?;
        self.count(|s| s.learned.with_label_values(&["transfer"]).inc());
        self.recount().await;
        Ok(before)
    }

    pub async fn remove(&self, kind: &str, id: &str) -> Result<String, IndexError> {
        let before = self.store.remove(kind, id).await?;
        self.recount().await;
        Ok(before)
    }

    pub async fn import(&self, records: Vec<Ownership>) -> Result<usize, IndexError> {
        let n = self.store.import(records).await?;
        self.count(|s| s.learned.with_label_values(&["import"]).inc_by(n as u64));
        self.recount().await;
        Ok(n)
    }

    pub async fn export(
        &self,
        kind: Option<&str>,
        partner: Option<&str>,
    ) -> Result<Vec<Ownership>, IndexError> {
        self.store.export(kind, partner).await
    }

    /// Sets the entries gauge from the index itself.
    pub async fn recount(&self) {
        if let (Some(s), Ok(n)) = (&self.stats, self.store.count().await) {
            s.entries.set(n as i64);
        }
    }
}
