//! The key store of record: one interface, an embedded and a Redis
//! implementation. Stores hold key hashes only, never key text.

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use super::format::Kind;
use super::format::{self, NewKey};
use super::pepper::{KeyHash, Pepper};

/// One stored key: which partner it authenticates, under which name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// Hex of the keyed hash; the key itself is never stored.
    pub hash: String,
    pub key_id: String,
    pub partner: String,
    /// Partners may hold several keys at once (e.g. `primary`, `migration`).
    pub name: String,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds; the key is refused from then on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// Made by a key regenerating itself. Such a key may not do so again:
    /// a stolen key's holder gets one rotation at most, never the account.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub self_rotated: bool,
    /// An API key, or a partner's management credential.
    #[serde(default, skip_serializing_if = "Kind::is_data")]
    pub kind: Kind,
    /// Unix seconds, to the minute, when a node last accepted it, as of
    /// that node's last usage batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<u64>,
    /// A management credential's TOTP secret, sealed (`keys::totp`): the
    /// console's second factor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp: Option<String>,
}

/// What marks a management credential's slot: a character no name may
/// hold, so the two kinds can never claim each other's names.
const MANAGEMENT_SLOT: &str = "mgmt.";

/// The store's name for a partner's credential of `kind` called `name`:
/// the name itself for a data key, `mgmt.<name>` for a management
/// credential.
pub fn slot(kind: Kind, name: &str) -> String {
    match kind {
        Kind::Data => name.to_string(),
        Kind::Management => format!("{MANAGEMENT_SLOT}{name}"),
    }
}

/// Reads a slot back: which kind, under which name.
pub fn parse_slot(slot: &str) -> (Kind, &str) {
    match slot.strip_prefix(MANAGEMENT_SLOT) {
        Some(name) => (Kind::Management, name),
        None => (Kind::Data, slot),
    }
}

impl KeyRecord {
    /// Where the store keeps it among its partner's credentials.
    pub fn slot(&self) -> String {
        slot(self.kind, &self.name)
    }

    pub fn key_hash(&self) -> Option<KeyHash> {
        KeyHash::from_hex(&self.hash)
    }

    pub fn is_expired(&self, now: u64) -> bool {
        self.expires_at.is_some_and(|t| now >= t)
    }

    /// What listings and answers show: never the hash, never the key.
    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "key_id": self.key_id,
            "partner": self.partner,
            "name": self.name,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "self_rotated": self.self_rotated,
            "kind": self.kind,
            "last_used_at": self.last_used_at,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The store could not answer (I/O, network, timeout).
    Unavailable(String),
    /// The request contradicts the store's contents.
    Conflict(String),
    NotFound,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Unavailable(e) => write!(f, "key store unavailable: {e}"),
            StoreError::Conflict(e) => write!(f, "{e}"),
            StoreError::NotFound => f.write_str("no such key"),
        }
    }
}

impl std::error::Error for StoreError {}

/// Why a conditional replacement was refused.
pub const SUPERSEDED: &str = "the key has already been replaced";

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A partner id or key name: short, and safe in logs, URLs and Redis keys.
pub fn valid_label(label: &str) -> bool {
    (1..=64).contains(&label.len())
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// A lookup's answer, with the store's change epoch read in the same
/// atomic step (a node must not cache an answer older than a change it has
/// already applied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    pub record: Option<KeyRecord>,
    pub epoch: u64,
    /// Whether the record's partner is suspended at runtime.
    pub partner_suspended: bool,
}

#[async_trait]
pub trait KeyStore: Send + Sync {
    async fn lookup(&self, hash: &KeyHash) -> Result<Lookup, StoreError>;
    /// Stores a new record; fails if the partner already has a key of that name.
    async fn insert(&self, record: KeyRecord) -> Result<(), StoreError>;
    /// Atomically replaces the partner's named key with `record`; returns
    /// the replaced record and the change epoch it created. With
    /// `expected`, only if the named key is still the one of that hash
    /// (else `Conflict`): a key that has already been replaced cannot
    /// replace its successor.
    async fn replace(
        &self,
        record: KeyRecord,
        expected: Option<&KeyHash>,
    ) -> Result<(KeyRecord, u64), StoreError>;
    /// Removes the partner's credential in `slot` (see [`slot`]); with
    /// `expected`, only if it is still the one of that hash (else
    /// `Conflict`), so revoking one key never removes its successor.
    async fn remove(
        &self,
        partner: &str,
        slot: &str,
        expected: Option<&KeyHash>,
    ) -> Result<(KeyRecord, u64), StoreError>;
    async fn list(&self, partner: Option<&str>) -> Result<Vec<KeyRecord>, StoreError>;
    /// Suspends or resumes every key of `partner` (including keys issued
    /// later); returns the change epoch it created.
    async fn set_suspended(&self, partner: &str, suspended: bool) -> Result<u64, StoreError>;
    async fn suspended_partners(&self) -> Result<Vec<String>, StoreError>;
    /// Raises the last-used times of the keys with these hashes (hex) to
    /// the times given; keys no longer stored are skipped. Moves no epoch:
    /// nothing a node caches depends on it.
    async fn record_use(&self, used: &[(String, u64)]) -> Result<(), StoreError>;
    /// Returns once no node can still accept keys changed by `epoch`.
    /// A single-node store has nothing to wait for.
    async fn await_propagation(&self, _epoch: u64) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Builds the record for a fresh key; the caller shows the key once.
pub fn new_record(
    pepper: &Pepper,
    partner: &str,
    name: &str,
    expires_at: Option<u64>,
) -> Result<(NewKey, KeyRecord), StoreError> {
    new_record_of(Kind::Data, pepper, partner, name, expires_at)
}

/// The same for a credential of `kind`.
pub fn new_record_of(
    kind: Kind,
    pepper: &Pepper,
    partner: &str,
    name: &str,
    expires_at: Option<u64>,
) -> Result<(NewKey, KeyRecord), StoreError> {
    if !valid_label(partner) || !valid_label(name) {
        return Err(StoreError::Conflict(
            "partner ids and key names are 1-64 characters of a-z, 0-9, '-' and '_'".into(),
        ));
    }
    let key = format::generate_kind(kind);
    let parsed = format::parse_kind(key.reveal().as_bytes(), kind)
        .map_err(|_| StoreError::Conflict("generated key failed its own format check".into()))?;
    let hash = pepper.hash(&parsed);
    let totp = (kind == Kind::Management)
        .then(|| super::totp::seal(pepper, &hash, &super::totp::generate()));
    let record = KeyRecord {
        hash: hash.to_hex(),
        key_id: hash.key_id().to_string(),
        partner: partner.to_string(),
        name: name.to_string(),
        created_at: now_secs(),
        expires_at,
        self_rotated: false,
        kind,
        last_used_at: None,
        totp,
    };
    Ok((key, record))
}
