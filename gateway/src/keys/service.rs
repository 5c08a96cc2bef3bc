//! Key lifecycle operations shared by the CLI, the admin API and partner
//! self-service. A rotation or revocation returns only once no node can
//! accept the old key: this node drops it from its cache, and the store
//! waits until every other node has applied the change (see `node.rs`).

use std::sync::Arc;

use super::format::NewKey;
use super::store::{new_record_of, parse_slot, KeyRecord, Kind, StoreError};
use super::verify::Verifier;

/// How often "revoke all" re-reads the partner's keys to catch ones made
/// while it ran.
const REVOKE_ALL_PASSES: usize = 3;

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

    /// Issues a credential; `slot` is a data key's name, or `mgmt.<name>`
    /// for a management credential (see `store::slot`).
    pub async fn create(
        &self,
        partner: &str,
        slot: &str,
        expires_at: Option<u64>,
    ) -> Result<(NewKey, KeyRecord), StoreError> {
        let (kind, name) = parse_slot(slot);
        self.create_kind(kind, partner, name, expires_at).await
    }

    pub async fn create_kind(
        &self,
        kind: Kind,
        partner: &str,
        name: &str,
        expires_at: Option<u64>,
    ) -> Result<(NewKey, KeyRecord), StoreError> {
        let (key, record) = new_record_of(kind, self.verifier.pepper(), partner, name, expires_at)?;
        self.verifier.store().insert(record.clone()).await?;
        Ok((key, record))
    }

    /// Issues a new credential in the same slot; the old one stops working
    /// when this returns. The kind and the expiry, if any, carry over.
    pub async fn rotate(
        &self,
        partner: &str,
        slot: &str,
    ) -> Result<(NewKey, KeyRecord), StoreError> {
        let current = self
            .verifier
            .store()
            .list(Some(partner))
            .await?
            .into_iter()
            .find(|r| r.slot() == slot)
            .ok_or(StoreError::NotFound)?;
        self.regenerate(&current).await
    }

    /// A management credential's `otpauth://` URI, for the authenticator
    /// app of whoever receives the credential; shown with it, once.
    pub fn totp_uri(&self, record: &KeyRecord) -> Option<String> {
        let sealed = record.totp.as_deref()?;
        let secret = super::totp::unseal(self.verifier.pepper(), &record.key_hash()?, sealed)?;
        Some(super::totp::uri(&record.partner, &record.name, &secret))
    }

    /// The TOTP secret of a management credential, to check a code.
    pub fn totp_secret(&self, record: &KeyRecord) -> Option<[u8; super::totp::SECRET_LEN]> {
        super::totp::unseal(
            self.verifier.pepper(),
            &record.key_hash()?,
            record.totp.as_deref()?,
        )
    }

    /// Replaces exactly `current` (not whatever holds its slot by now).
    pub async fn regenerate(&self, current: &KeyRecord) -> Result<(NewKey, KeyRecord), StoreError> {
        self.replace_exactly(current, false).await
    }

    async fn replace_exactly(
        &self,
        current: &KeyRecord,
        self_rotated: bool,
    ) -> Result<(NewKey, KeyRecord), StoreError> {
        let expected = current
            .key_hash()
            .ok_or_else(|| StoreError::Unavailable("stored key hash is malformed".into()))?;
        let (key, mut record) = new_record_of(
            current.kind,
            self.verifier.pepper(),
            &current.partner,
            &current.name,
            current.expires_at,
        )?;
        record.self_rotated = self_rotated;
        self.replace(record, Some(&expected))
            .await
            .map(|record| (key, record))
    }

    /// A key regenerating itself: only `presented`, and only if it is still
    /// the partner's key of that name (two callers holding one key cannot
    /// both succeed). The new key is marked, so it cannot do the same.
    pub async fn self_rotate(
        &self,
        presented: &KeyRecord,
    ) -> Result<(NewKey, KeyRecord), StoreError> {
        if presented.self_rotated || !presented.kind.is_data() {
            return Err(StoreError::Conflict(
                "a key made by a self-rotation cannot rotate itself".into(),
            ));
        }
        self.replace_exactly(presented, true).await
    }

    async fn replace(
        &self,
        record: KeyRecord,
        expected: Option<&crate::keys::pepper::KeyHash>,
    ) -> Result<KeyRecord, StoreError> {
        let (old, epoch) = self
            .verifier
            .store()
            .replace(record.clone(), expected)
            .await?;
        self.verifier.node().applied_locally(epoch);
        self.verifier.forget(&old);
        self.verifier.store().await_propagation(epoch).await?;
        Ok(record)
    }

    /// Removes the credential in `slot`; refused everywhere when this returns.
    pub async fn revoke(&self, partner: &str, slot: &str) -> Result<KeyRecord, StoreError> {
        self.remove(partner, slot, None).await
    }

    /// Removes exactly `record`, not whatever holds its slot by now.
    pub async fn revoke_exactly(&self, record: &KeyRecord) -> Result<KeyRecord, StoreError> {
        let expected = record
            .key_hash()
            .ok_or_else(|| StoreError::Unavailable("stored key hash is malformed".into()))?;
        self.remove(&record.partner, &record.slot(), Some(&expected))
            .await
    }

    async fn remove(
        &self,
        partner: &str,
        slot: &str,
        expected: Option<&crate::keys::pepper::KeyHash>,
    ) -> Result<KeyRecord, StoreError> {
        let (old, epoch) = self
            .verifier
            .store()
            .remove(partner, slot, expected)
            .await?;
        self.verifier.node().applied_locally(epoch);
        self.verifier.forget(&old);
        self.verifier.store().await_propagation(epoch).await?;
        Ok(old)
    }

    /// Removes every data key of `partner` (the compromise button), then
    /// waits once for every node to have applied the last removal. A slot
    /// is emptied whatever key holds it by then, and the listing is read
    /// again until none is left, so a key a thief regenerates meanwhile goes
    /// too; the answer lists what went.
    pub async fn revoke_all_data(&self, partner: &str) -> Result<Vec<KeyRecord>, StoreError> {
        let mut removed = Vec::new();
        let mut last = None;
        for _pass in 0..REVOKE_ALL_PASSES {
            let left: Vec<KeyRecord> = self
                .list(Some(partner))
                .await?
                .into_iter()
                .filter(|r| r.kind.is_data())
                .collect();
            if left.is_empty() {
                break;
            }
            for record in left {
                match self
                    .verifier
                    .store()
                    .remove(partner, &record.slot(), None)
                    .await
                {
                    Ok((old, epoch)) => {
                        self.verifier.node().applied_locally(epoch);
                        self.verifier.forget(&old);
                        last = last.max(Some(epoch));
                        removed.push(old);
                    }
                    // Removed meanwhile by someone else: gone all the same.
                    Err(StoreError::NotFound) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        if let Some(epoch) = last {
            self.verifier.store().await_propagation(epoch).await?;
        }
        Ok(removed)
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
        self.verifier
            .forget_change(&super::change::Change::Partner(partner.to_string()));
        self.verifier.store().await_propagation(epoch).await
    }

    pub async fn suspended(&self) -> Result<Vec<String>, StoreError> {
        self.verifier.store().suspended_partners().await
    }

    pub async fn list(&self, partner: Option<&str>) -> Result<Vec<KeyRecord>, StoreError> {
        let mut records: Vec<KeyRecord> = self
            .verifier
            .store()
            .list(partner)
            .await?
            .into_iter()
            .map(|r| self.verifier.with_last_use(r))
            .collect();
        records.sort_by(|a, b| (&a.partner, &a.name).cmp(&(&b.partner, &b.name)));
        Ok(records)
    }
}
