//! Key lifecycle operations shared by the CLI, the admin API and partner
//! self-service. A rotation or revocation returns only once no node can
//! accept the old key: this node drops it from its cache, and the store
//! waits until every other node has applied the change (see `node.rs`).

use std::sync::Arc;

use super::format::NewKey;
use super::store::{new_record, KeyRecord, StoreError};
use super::verify::Verifier;

pub struct KeyService {
    verifier: Arc<Verifier>,
}

impl KeyService {
    pub fn new(verifier: Arc<Verifier>) -> Self {
        KeyService { verifier }
    }

    pub fn verifier(&self) -> &Arc<Verifier> {
        &self.verifier
    }

    pub async fn create(
        &self,
        partner: &str,
        name: &str,
        expires_at: Option<u64>,
    ) -> Result<(NewKey, KeyRecord), StoreError> {
        let (key, record) = new_record(self.verifier.pepper(), partner, name, expires_at)?;
        self.verifier.store().insert(record.clone()).await?;
        Ok((key, record))
    }

    /// Issues a new key under the same partner and name; the old one stops
    /// working when this returns. The expiry, if any, carries over.
    pub async fn rotate(
        &self,
        partner: &str,
        name: &str,
    ) -> Result<(NewKey, KeyRecord), StoreError> {
        let current = self
            .verifier
            .store()
            .list(Some(partner))
            .await?
            .into_iter()
            .find(|r| r.name == name)
            .ok_or(StoreError::NotFound)?;
        let (key, record) = new_record(self.verifier.pepper(), partner, name, current.expires_at)?;
        let (old, epoch) = self.verifier.store().replace(record.clone()).await?;
        self.verifier.node().applied_locally(epoch);
        self.verifier.forget(&old);
        self.verifier.store().await_propagation(epoch).await?;
        Ok((key, record))
    }

    pub async fn revoke(&self, partner: &str, name: &str) -> Result<KeyRecord, StoreError> {
        let (old, epoch) = self.verifier.store().remove(partner, name).await?;
        self.verifier.node().applied_locally(epoch);
        self.verifier.forget(&old);
        self.verifier.store().await_propagation(epoch).await?;
        Ok(old)
    }

    /// Suspends (or resumes) every key of a partner. Like a revocation, it
    /// returns once no node accepts them (or accepts them again).
    pub async fn set_suspended(&self, partner: &str, suspended: bool) -> Result<(), StoreError> {
        if !super::store::valid_label(partner) {
            return Err(StoreError::Conflict(
                "partner ids are 1-64 characters of a-z, 0-9, '-' and '_'".into(),
            ));
        }
        let epoch = self
            .verifier
            .store()
            .set_suspended(partner, suspended)
            .await?;
        self.verifier.node().applied_locally(epoch);
        self.verifier.flush();
        self.verifier.store().await_propagation(epoch).await
    }

    pub async fn suspended(&self) -> Result<Vec<String>, StoreError> {
        self.verifier.store().suspended_partners().await
    }

    pub async fn list(&self, partner: Option<&str>) -> Result<Vec<KeyRecord>, StoreError> {
        let mut records = self.verifier.store().list(partner).await?;
        records.sort_by(|a, b| (&a.partner, &a.name).cmp(&(&b.partner, &b.name)));
        Ok(records)
    }
}
