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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::HeaderValue;

    use super::*;
    use crate::keys::embedded::EmbeddedStore;
    use crate::keys::format;
    use crate::keys::pepper::Pepper;
    use crate::keys::service::KeyService;

    struct Keys {
        _dir: tempfile::TempDir,
        service: KeyService,
    }

    fn keys() -> Keys {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("keys.json")).unwrap();
        let verifier = Verifier::new(
            Pepper::from_bytes([7; 32]),
            Arc::new(store),
            1_000,
            Duration::from_secs(5),
        );
        Keys {
            _dir: dir,
            service: KeyService::new(Arc::new(verifier)),
        }
    }

    fn with_key(key: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", HeaderValue::from_str(key).unwrap());
        headers
    }

    async fn run(
        keys: &Keys,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Result<String, (Reject, bool)> {
        authenticate(keys.service.verifier(), headers, query, "x-api-key", None)
            .await
            .map(|record| record.partner.clone())
            .map_err(|(reject, id)| (reject, id.is_some()))
    }

    #[tokio::test]
    async fn a_valid_key_names_its_partner() {
        let keys = keys();
        let (key, _) = keys.service.create("acme", "primary", None).await.unwrap();
        let found = run(&keys, &with_key(key.reveal()), None).await;
        assert_eq!(found.as_deref(), Ok("acme"));
    }

    #[tokio::test]
    async fn each_bad_credential_has_its_own_code_and_only_well_formed_keys_an_id() {
        let keys = keys();
        assert_eq!(
            run(&keys, &HeaderMap::new(), None).await,
            Err((problem::KEY_MISSING, false))
        );
        assert_eq!(
            run(&keys, &with_key("ptc_live_short"), None).await,
            Err((problem::KEY_MALFORMED, false))
        );
        let unknown = format::generate();
        assert_eq!(
            run(&keys, &with_key(unknown.reveal()), None).await,
            Err((problem::KEY_INVALID, true)),
            "a well-formed unknown key is remembered by id for brute-force accounting"
        );
        assert_eq!(
            run(&keys, &HeaderMap::new(), Some("api_key=x")).await,
            Err((problem::KEY_IN_QUERY, false))
        );
    }

    #[test]
    fn guesses_count_towards_blocking_and_outages_do_not() {
        for reject in [
            problem::KEY_MISSING,
            problem::KEY_MALFORMED,
            problem::KEY_INVALID,
            problem::KEY_EXPIRED,
            problem::PARTNER_SUSPENDED,
        ] {
            assert!(counts_towards_blocking(reject), "{}", reject.code);
        }
        assert!(!counts_towards_blocking(problem::KEY_STORE_UNAVAILABLE));
        assert!(!counts_towards_blocking(problem::KEY_IN_QUERY));
    }
}
