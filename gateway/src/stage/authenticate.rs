//! The authentication stage: every request carries a valid partner key.

use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderMap;

use crate::keys::credential;
use crate::keys::pepper::KeyId;
use crate::keys::store::KeyRecord;
use crate::keys::verify::{Verdict, Verifier};
use crate::stage::problem;
use crate::stage::problem::Reject;

/// Whether a refusal counts towards brute-force blocking of the client and
/// the key id: a key that is wrong, expired or malformed, or a suspended
/// partner's key. A store outage is nobody's guess.
pub fn counts_towards_blocking(reject: Reject) -> bool {
    reject.status == 401 || reject == crate::stage::problem::PARTNER_SUSPENDED
}

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
        Verdict::Malformed => Err((problem::KEY_MALFORMED, None)),
        Verdict::Unknown(id) => Err((problem::KEY_INVALID, Some(id))),
        Verdict::Expired(id) => Err((problem::KEY_EXPIRED, Some(id))),
        Verdict::Suspended(id) => Err((crate::stage::problem::PARTNER_SUSPENDED, Some(id))),
        Verdict::StoreUnavailable(id) => Err((problem::KEY_STORE_UNAVAILABLE, Some(id))),
        Verdict::TooManyUnknown(id) => Err((problem::TOO_MANY_UNKNOWN_KEYS, Some(id))),
    }
}
