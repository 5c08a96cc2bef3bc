//! Who is calling the partner listener: exactly one `Authorization: Bearer`
//! header holding a management credential of a partner that may manage
//! keys. Failures count towards the brute-force blocker like failed API
//! keys, so guessing credentials here is as slow as guessing keys.

use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderMap;

use super::session::{self, Sessions};
use crate::keys::pepper::KeyHash;
use crate::keys::service::KeyService;
use crate::keys::store::{now_secs, KeyRecord, Kind};
use crate::keys::totp;
use crate::keys::verify::{Verdict, Verifier};
use crate::monitor::Monitor;
use crate::stage::problem::{self, Reject};

/// A refusal, and the key id of the credential tried, when it had one.
pub struct Refused {
    pub reject: Reject,
    pub credential: Option<String>,
}

fn refused(reject: Reject, credential: Option<String>) -> Refused {
    Refused { reject, credential }
}

/// The bearer token, when the request carries exactly one.
fn bearer(headers: &HeaderMap) -> Result<&[u8], Reject> {
    let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(problem::CREDENTIAL_MISSING);
    };
    if values.next().is_some() {
        return Err(problem::CONFLICTING_CREDENTIALS);
    }
    let bytes = value.as_bytes();
    match bytes.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer ") => Ok(bytes[7..].trim_ascii()),
        _ => Err(problem::CREDENTIAL_INVALID),
    }
}

/// Who is calling: a bearer management credential, or else a console
/// session (whose changes must carry its CSRF token).
pub async fn caller(
    verifier: &Verifier,
    monitor: &Monitor,
    sessions: &Sessions,
    headers: &HeaderMap,
    changes: bool,
    client: Option<IpAddr>,
    request_id: &str,
) -> Result<Arc<KeyRecord>, Refused> {
    if headers.contains_key(http::header::AUTHORIZATION) {
        return sign_in(verifier, monitor, headers, client, request_id).await;
    }
    let Some(value) = session::cookie_value(headers) else {
        return Err(refused(problem::CREDENTIAL_MISSING, None));
    };
    let Some(open) = sessions.open(value, now_secs()) else {
        return Err(refused(problem::SESSION_EXPIRED, None));
    };
    let id = Some(open.credential.key_id().to_string());
    if changes {
        let token = headers
            .get("x-csrf-token")
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        // Compared as hashes: constant time whatever the token's length.
        if blake3::hash(token) != blake3::hash(open.csrf.as_bytes()) {
            return Err(refused(problem::CSRF_FAILED, id));
        }
    }
    match verifier
        .verify_hash(Kind::Management, open.credential, client)
        .await
    {
        Verdict::Valid(record) if record.partner == open.partner => Ok(record),
        Verdict::Suspended(_) => Err(refused(problem::PARTNER_SUSPENDED, id)),
        Verdict::StoreUnavailable(_) => Err(refused(problem::KEY_STORE_UNAVAILABLE, id)),
        // Revoked, expired or replaced since signing in: the session ends.
        _ => Err(refused(problem::SESSION_EXPIRED, id)),
    }
}

/// Signing in to the console: the management credential and a current
/// one-time code of its TOTP secret. A code is accepted once (`spent`
/// holds the last step each credential used on this node).
#[allow(clippy::too_many_arguments)]
pub async fn console_sign_in(
    keys: &KeyService,
    monitor: &Monitor,
    spent: &quick_cache::sync::Cache<KeyHash, u64>,
    credential: &str,
    code: &str,
    client: Option<IpAddr>,
    request_id: &str,
) -> Result<Arc<KeyRecord>, Refused> {
    let record = check(
        keys.verifier(),
        monitor,
        credential.as_bytes(),
        client,
        request_id,
    )
    .await?;
    let step = keys
        .totp_secret(&record)
        .and_then(|secret| totp::accepts(&secret, code, now_secs()));
    let fresh = match (step, record.key_hash()) {
        (Some(step), Some(hash)) => spent.get(&hash).is_none_or(|last| step > last).then(|| {
            spent.insert(hash, step);
        }),
        _ => None,
    };
    if fresh.is_none() {
        let id = record.key_id.clone();
        monitor.auth_failed(problem::TOTP_INVALID.code, client, Some(&id), request_id);
        return Err(refused(problem::TOTP_INVALID, Some(id)));
    }
    Ok(record)
}

/// Checks the caller's bearer management credential.
pub async fn sign_in(
    verifier: &Verifier,
    monitor: &Monitor,
    headers: &HeaderMap,
    client: Option<IpAddr>,
    request_id: &str,
) -> Result<Arc<KeyRecord>, Refused> {
    let token = bearer(headers).map_err(|reject| refused(reject, None))?;
    check(verifier, monitor, token, client, request_id).await
}

/// A presented management credential: valid and not blocked, or the
/// refusal, with a failed guess counted against the address and the id.
async fn check(
    verifier: &Verifier,
    monitor: &Monitor,
    presented: &[u8],
    client: Option<IpAddr>,
    request_id: &str,
) -> Result<Arc<KeyRecord>, Refused> {
    let (reject, id) = match verifier
        .verify_kind(Kind::Management, presented, client)
        .await
    {
        Verdict::Valid(record) => {
            if monitor.abuse.key_blocked(&record.key_id).is_some() {
                return Err(refused(problem::KEY_BLOCKED, Some(record.key_id.clone())));
            }
            return Ok(record);
        }
        Verdict::Malformed => (problem::CREDENTIAL_INVALID, None),
        Verdict::Unknown(id) | Verdict::Expired(id) => {
            (problem::CREDENTIAL_INVALID, Some(id.to_string()))
        }
        // Not a wrong guess: refused without counting.
        Verdict::Suspended(id) => {
            return Err(refused(problem::PARTNER_SUSPENDED, Some(id.to_string())))
        }
        Verdict::StoreUnavailable(id) => {
            return Err(refused(
                problem::KEY_STORE_UNAVAILABLE,
                Some(id.to_string()),
            ))
        }
        Verdict::TooManyUnknown(id) => {
            return Err(refused(
                problem::TOO_MANY_UNKNOWN_KEYS,
                Some(id.to_string()),
            ))
        }
    };
    monitor.auth_failed(reject.code, client, id.as_deref(), request_id);
    Err(refused(reject, id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                http::header::AUTHORIZATION,
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn exactly_one_bearer_header_is_accepted() {
        assert_eq!(bearer(&headers(&["Bearer abc "])), Ok(&b"abc"[..]));
        assert_eq!(bearer(&headers(&["bearer abc"])), Ok(&b"abc"[..]));
        assert_eq!(
            bearer(&headers(&[])).err(),
            Some(problem::CREDENTIAL_MISSING)
        );
        assert_eq!(
            bearer(&headers(&["Bearer a", "Bearer a"])).err(),
            Some(problem::CONFLICTING_CREDENTIALS)
        );
        assert_eq!(
            bearer(&headers(&["Basic YTpi"])).err(),
            Some(problem::CREDENTIAL_INVALID)
        );
    }
}
