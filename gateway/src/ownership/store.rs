//! The ownership index of record: one interface, one record shape.

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// One object and its owner, as imported, exported and shown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ownership {
    pub kind: String,
    pub id: String,
    pub partner: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexError {
    /// The index could not answer (I/O, network, timeout).
    Unavailable(String),
    /// The request contradicts the index or is malformed.
    Invalid(String),
    NotFound,
}

impl fmt::Display for IndexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IndexError::Unavailable(e) => write!(f, "ownership index unavailable: {e}"),
            IndexError::Invalid(e) => f.write_str(e),
            IndexError::NotFound => f.write_str("no such object in the ownership index"),
        }
    }
}

impl std::error::Error for IndexError {}

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimed {
    /// The object had no owner and now belongs to the claimant.
    New,
    /// It already belonged to the claimant.
    Already,
    /// It belongs to someone else, who keeps it.
    Other(String),
}

#[async_trait]
pub trait OwnershipStore: Send + Sync {
    async fn owner(&self, kind: &str, id: &str) -> Result<Option<String>, IndexError>;
    /// Records `partner` as the owner unless the object has one already:
    /// learning never moves an object between partners.
    async fn claim(&self, kind: &str, id: &str, partner: &str) -> Result<Claimed, IndexError>;
    /// Gives the object to `partner` whoever held it; returns the previous owner.
    async fn transfer(
        &self,
        kind: &str,
        id: &str,
        partner: &str,
    ) -> Result<Option<String>, IndexError>;
    async fn remove(&self, kind: &str, id: &str) -> Result<String, IndexError>;
    /// Adds many records at once (each a transfer); returns how many.
    async fn import(&self, records: Vec<Ownership>) -> Result<usize, IndexError>;
    /// Every record, or those of one kind and one partner.
    async fn export(
        &self,
        kind: Option<&str>,
        partner: Option<&str>,
    ) -> Result<Vec<Ownership>, IndexError>;
    async fn count(&self) -> Result<u64, IndexError>;
}

/// Longest object id accepted, in bytes.
pub const MAX_ID_BYTES: usize = 200;

/// An object id the index accepts: what an URL path segment or query value
/// carries unchanged through every framework. Unreserved URI characters
/// only (RFC 3986), so no decoder can turn it into something else, and not
/// a dot segment.
pub fn valid_id(id: &str) -> bool {
    (1..=MAX_ID_BYTES).contains(&id.len())
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// Checks a record for import or transfer.
pub fn check(record: &Ownership) -> Result<(), IndexError> {
    if !crate::keys::store::valid_label(&record.kind) {
        return Err(IndexError::Invalid(format!(
            "kind {:?}: 1-64 characters of a-z, 0-9, '-' and '_'",
            record.kind
        )));
    }
    if !crate::keys::store::valid_label(&record.partner) {
        return Err(IndexError::Invalid(format!(
            "partner {:?}: 1-64 characters of a-z, 0-9, '-' and '_'",
            record.partner
        )));
    }
    if !valid_id(&record.id) {
        return Err(IndexError::Invalid(format!(
            "id {:?}: 1-{MAX_ID_BYTES} characters of A-Z, a-z, 0-9, '-', '.', '_' and '~'",
            record.id
        )));
    }
    Ok(())
}
