//! The authentication stage: every request carries a valid partner key.

use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderMap;

use crate::keys::credential;
use crate::keys::pepper::KeyId;
use crate::keys::store::KeyRecord;
use crate::keys::verify::{Verdict, Verifier};
use crate::problem::Reject;

pub const KEY_MALFORMED: Reject =
    Reject::new(401, "key_malformed", "The API key is not well-formed");
pub const KEY_INVALID: Reject = Reject::new(401, "key_invalid", "The API key is not valid");
pub const KEY_EXPIRED: Reject = Reject::new(401, "key_expired", "The API key has expired");
pub const TOO_MANY_UNKNOWN_KEYS: Reject = Reject::new(
    429,
    "too_many_unknown_keys",
    "Too many unknown API keys from this client; slow down",
);
pub const KEY_STORE_UNAVAILABLE: Reject = Reject::new(
    503,
    "key_store_unavailable",
    "The API key cannot be checked right now; retry later",
);

/// A refusal, with the key id when the key was well-formed (for the
/// audit trail of a brute-force attempt).
pub type AuthRefusal = (Reject, Option<KeyId>);

pub async fn authenticate(
    verifier: &Verifier,
    headers: &HeaderMap,
    query: Option<&str>,
    key_header: &str,
    client: Option<IpAddr>,
) -> Result<Arc<KeyRecord>, AuthRefusal> {
    let presented = credential::extract(headers, query, key_header).map_err(|r| (r, None))?;
    match verifier.verify(presented, client).await {
        Verdict::Valid(record) => Ok(record),
        Verdict::Malformed => Err((KEY_MALFORMED, None)),
        Verdict::Unknown(id) => Err((KEY_INVALID, Some(id))),
        Verdict::Expired(id) => Err((KEY_EXPIRED, Some(id))),
        Verdict::Suspended(id) => Err((crate::isolation::PARTNER_SUSPENDED, Some(id))),
        Verdict::StoreUnavailable(id) => Err((KEY_STORE_UNAVAILABLE, Some(id))),
        Verdict::TooManyUnknown(id) => Err((TOO_MANY_UNKNOWN_KEYS, Some(id))),
    }
}
