//! The key-management API on the admin listener, protected by a bearer
//! token. Same operations as `portcullis keys`; secrets are returned only
//! by create and rotate, once.

use std::path::Path;
use std::sync::Arc;

use http::StatusCode;
use serde::Deserialize;

use crate::keys::service::KeyService;
use crate::keys::store::{KeyRecord, StoreError};
use crate::monitor::Monitor;
use crate::stage::problem::{self, Reject};

pub const PREFIX: &str = "/v1/keys";
/// Partner suspension: `POST /v1/partners/{id}/suspend|resume`,
/// `GET /v1/partners/suspended`.
pub const PARTNERS_PREFIX: &str = "/v1/partners/";
/// Brute-force blocks on this node: `GET /v1/blocks`,
/// `DELETE /v1/blocks/clients/{ip}`, `DELETE /v1/blocks/keys/{key_id}`.
pub const BLOCKS_PREFIX: &str = "/v1/blocks";

/// The admin token, kept only as a hash.
pub struct AdminToken(blake3::Hash);

impl AdminToken {
    /// Reads the token file; the token must be at least 32 characters.
    pub fn load(path: &Path) -> Result<AdminToken, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read admin token file {}: {e}", path.display()))?;
        let token = text.trim();
        if token.len() < 32 {
            return Err(format!(
                "{}: the admin token must be at least 32 characters",
                path.display()
            ));
        }
        Ok(AdminToken(blake3::hash(token.as_bytes())))
    }

    fn accepts(&self, authorization: Option<&[u8]>) -> bool {
        let Some(value) = authorization else {
            return false;
        };
        let Some(token) = value
            .get(7..)
            .filter(|_| value[..7].eq_ignore_ascii_case(b"bearer "))
        else {
            return false;
        };
        // Comparing hashes keeps the comparison constant-time.
        blake3::hash(token) == self.0
    }
}

pub struct KeysApi {
    keys: Arc<KeyService>,
    token: Option<AdminToken>,
    monitor: Option<Arc<Monitor>>,
}

pub struct ApiResponse {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

pub(crate) fn problem_response(reject: Reject) -> ApiResponse {
    ApiResponse {
        status: StatusCode::from_u16(reject.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        content_type: problem::CONTENT_TYPE,
        body: problem::render(&reject, &crate::stage::request_id::generate(), None),
    }
}

pub(crate) fn json(status: StatusCode, value: serde_json::Value) -> ApiResponse {
    ApiResponse {
        status,
        content_type: "application/json",
        body: value.to_string().into_bytes(),
    }
}

fn store_problem(e: &StoreError) -> ApiResponse {
    match e {
        StoreError::NotFound => problem_response(problem::ADMIN_KEY_NOT_FOUND),
        StoreError::Conflict(_) => problem_response(problem::ADMIN_KEY_CONFLICT),
        StoreError::Unavailable(_) => problem_response(problem::ADMIN_STORE_DOWN),
    }
}

fn issued(key: &str, record: &KeyRecord, totp_uri: Option<String>) -> serde_json::Value {
    let mut v = record.summary();
    v["key"] = serde_json::Value::String(key.to_string());
    if let Some(uri) = totp_uri {
        v["totp_uri"] = serde_json::Value::String(uri);
    }
    v
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    partner: String,
    #[serde(default = "primary")]
    name: String,
    #[serde(default)]
    expires_at: Option<u64>,
    #[serde(default)]
    kind: crate::keys::store::Kind,
}

fn primary() -> String {
    "primary".to_string()
}

impl KeysApi {
    pub fn new(keys: Arc<KeyService>, token: Option<AdminToken>) -> Self {
        KeysApi {
            keys,
            token,
            monitor: None,
        }
    }

    /// Lets the API list and lift brute-force blocks.
    pub fn with_monitor(mut self, monitor: Arc<Monitor>) -> Self {
        self.monitor = Some(monitor);
        self
    }

    /// Whether the request carries the admin token; the refusal otherwise.
    pub fn authorize(&self, authorization: Option<&[u8]>) -> Result<(), ApiResponse> {
        let Some(token) = &self.token else {
            return Err(problem_response(problem::ADMIN_API_DISABLED));
        };
        if !token.accepts(authorization) {
            return Err(problem_response(problem::ADMIN_UNAUTHORIZED));
        }
        Ok(())
    }

    pub async fn handle(
        &self,
        method: &http::Method,
        path: &str,
        query: Option<&str>,
        authorization: Option<&[u8]>,
        body: &[u8],
    ) -> ApiResponse {
        if let Err(refused) = self.authorize(authorization) {
            return refused;
        }
        if let Some(rest) = path.strip_prefix(PARTNERS_PREFIX) {
            return self.partners(method, rest).await;
        }
        if let Some(rest) = path.strip_prefix(BLOCKS_PREFIX) {
            return self.blocks(method, rest);
        }
        let rest = path.strip_prefix(PREFIX).unwrap_or("");
        let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        match (method.as_str(), segments.as_slice()) {
            ("GET", []) => {
                let partner =
                    query.and_then(|q| q.split('&').find_map(|pair| pair.strip_prefix("partner=")));
                match self.keys.list(partner).await {
                    Ok(records) => json(
                        StatusCode::OK,
                        serde_json::json!({ "keys": records.iter().map(KeyRecord::summary).collect::<Vec<_>>() }),
                    ),
                    Err(e) => store_problem(&e),
                }
            }
            ("POST", []) => {
                let Ok(req) = serde_json::from_slice::<CreateBody>(body) else {
                    return problem_response(problem::ADMIN_BAD_BODY);
                };
                match self
                    .keys
                    .create_kind(req.kind, &req.partner, &req.name, req.expires_at)
                    .await
                {
                    Ok((key, record)) => json(
                        StatusCode::CREATED,
                        issued(key.reveal(), &record, self.keys.totp_uri(&record)),
                    ),
                    Err(e) => store_problem(&e),
                }
            }
            ("POST", [partner, name, "rotate"]) => match self.keys.rotate(partner, name).await {
                Ok((key, record)) => json(
                    StatusCode::OK,
                    issued(key.reveal(), &record, self.keys.totp_uri(&record)),
                ),
                Err(e) => store_problem(&e),
            },
            ("DELETE", [partner, name]) => match self.keys.revoke(partner, name).await {
                Ok(record) => json(
                    StatusCode::OK,
                    serde_json::json!({ "revoked": record.summary() }),
                ),
                Err(e) => store_problem(&e),
            },
            _ => problem_response(problem::ROUTE_NOT_FOUND),
        }
    }
}

impl KeysApi {
    fn blocks(&self, method: &http::Method, rest: &str) -> ApiResponse {
        let Some(monitor) = &self.monitor else {
            return problem_response(problem::ROUTE_NOT_FOUND);
        };
        let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        match (method.as_str(), segments.as_slice()) {
            ("GET", []) => {
                let crate::limits::abuse::Blocked { clients, keys } = monitor.abuse.blocked();
                let entry = |what: String, left: std::time::Duration| serde_json::json!({ "id": what, "seconds_left": left.as_secs() });
                json(
                    StatusCode::OK,
                    serde_json::json!({
                        "clients": clients.into_iter().map(|(ip, d)| entry(ip.to_string(), d)).collect::<Vec<_>>(),
                        "keys": keys.into_iter().map(|(id, d)| entry(id, d)).collect::<Vec<_>>(),
                    }),
                )
            }
            ("DELETE", ["clients", ip]) => match ip.parse::<std::net::IpAddr>() {
                Ok(ip) if monitor.abuse.unblock_client(ip) => json(
                    StatusCode::OK,
                    serde_json::json!({ "unblocked": ip.to_string() }),
                ),
                Ok(_) => problem_response(problem::ADMIN_NOT_BLOCKED),
                Err(_) => problem_response(problem::ADMIN_BAD_BODY),
            },
            ("DELETE", ["keys", id]) => {
                if monitor.abuse.unblock_key(id) {
                    json(StatusCode::OK, serde_json::json!({ "unblocked": id }))
                } else {
                    problem_response(problem::ADMIN_NOT_BLOCKED)
                }
            }
            _ => problem_response(problem::ROUTE_NOT_FOUND),
        }
    }

    async fn partners(&self, method: &http::Method, rest: &str) -> ApiResponse {
        let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        match (method.as_str(), segments.as_slice()) {
            ("GET", ["suspended"]) => match self.keys.suspended().await {
                Ok(list) => json(StatusCode::OK, serde_json::json!({ "suspended": list })),
                Err(e) => store_problem(&e),
            },
            ("POST", [partner, action @ ("suspend" | "resume")]) => {
                let suspend = *action == "suspend";
                match self.keys.set_suspended(partner, suspend).await {
                    Ok(()) => json(
                        StatusCode::OK,
                        serde_json::json!({ "partner": partner, "suspended": suspend }),
                    ),
                    Err(StoreError::Conflict(_)) => problem_response(problem::ADMIN_BAD_PARTNER),
                    Err(e) => store_problem(&e),
                }
            }
            _ => problem_response(problem::ROUTE_NOT_FOUND),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::embedded::EmbeddedStore;
    use crate::keys::pepper::Pepper;
    use crate::keys::verify::Verifier;

    #[tokio::test]
    async fn without_a_token_the_key_api_is_disabled() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("keys.json")).unwrap();
        let verifier = Verifier::new(
            Pepper::from_bytes([1; 32]),
            Arc::new(store),
            16,
            std::time::Duration::ZERO,
        );
        let api = KeysApi::new(Arc::new(KeyService::new(Arc::new(verifier))), None);
        let answer = api
            .handle(
                &http::Method::GET,
                "/v1/keys",
                None,
                Some(b"Bearer anything-at-all-anything-at-all"),
                b"",
            )
            .await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN);
        let body: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
        assert_eq!(body["code"], "admin_api_disabled");
    }
}
