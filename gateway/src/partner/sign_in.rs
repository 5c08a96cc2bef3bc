//! Who is calling the partner listener: exactly one `Authorization: Bearer`
//! header holding a management credential of a partner that may manage
//! keys. Failures count towards the brute-force blocker like failed API
//! keys, so guessing credentials here is as slow as guessing keys.

use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderMap;

use crate::keys::store::{KeyRecord, Kind};
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

/// Checks the caller's management credential.
pub async fn sign_in(
    verifier: &Verifier,
    monitor: &Monitor,
    headers: &HeaderMap,
    client: Option<IpAddr>,
    request_id: &str,
) -> Result<Arc<KeyRecord>, Refused> {
    let token = bearer(headers).map_err(|reject| refused(reject, None))?;
    let verdict = verifier.verify_kind(Kind::Management, token, client).await;
    let (reject, id) = match verdict {
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
