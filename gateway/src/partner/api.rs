//! The partner API: what a partner signed in with its management credential
//! may do to its own data keys. Every operation is scoped to the signed-in
//! partner: a key id of another partner is "not found", never "forbidden",
//! so ids cannot be probed. Changes return once no node accepts the old key.

use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::keys::service::KeyService;
use crate::keys::store::{now_secs, valid_label, KeyRecord, StoreError};
use crate::stage::problem::{self, Reject};

/// Data keys one partner may hold at once: creating more is a mistake or
/// an attack on the store, never a need.
pub const MAX_KEYS: usize = 20;

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    List,
    Create,
    Regenerate(String),
    Revoke(String),
    RevokeAll,
    /// The partner's recent requests and key management.
    Activity,
}

impl Op {
    /// The audit event an operation is recorded as.
    pub fn event(&self) -> &'static str {
        match self {
            Op::List => "partner_keys_listed",
            Op::Create => "partner_key_created",
            Op::Regenerate(_) => "partner_key_regenerated",
            Op::Revoke(_) => "partner_key_revoked",
            Op::RevokeAll => "partner_keys_revoked_all",
            Op::Activity => "partner_activity_viewed",
        }
    }

    /// The metrics label.
    pub fn action(&self) -> &'static str {
        match self {
            Op::List => "list",
            Op::Create => "create",
            Op::Regenerate(_) => "regenerate",
            Op::Revoke(_) => "revoke",
            Op::RevokeAll => "revoke_all",
            Op::Activity => "activity",
        }
    }
}

/// A key id as listings show it: twelve lowercase hex digits.
fn is_key_id(text: &str) -> bool {
    text.len() == 12
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Maps a request line to an operation. One spelling per operation: no
/// query, no empty or dot segment, no percent-encoding, no trailing slash.
pub fn route(
    method: &Method,
    path: &str,
    query: Option<&str>,
) -> Result<Op, (Reject, Option<&'static str>)> {
    if query.is_some() {
        return Err((problem::BAD_REQUEST, None));
    }
    if path == "/v1/activity" {
        return if *method == Method::GET {
            Ok(Op::Activity)
        } else {
            Err((problem::METHOD_NOT_ALLOWED, Some("GET")))
        };
    }
    let Some(rest) = path.strip_prefix("/v1/keys") else {
        return Err((problem::ROUTE_NOT_FOUND, None));
    };
    let segments: Vec<&str> = if rest.is_empty() {
        Vec::new()
    } else {
        match rest.strip_prefix('/') {
            Some(tail) => tail.split('/').collect(),
            None => return Err((problem::ROUTE_NOT_FOUND, None)),
        }
    };
    let (op, allow) = match segments.as_slice() {
        [] => match *method {
            Method::GET => (Some(Op::List), "GET, POST"),
            Method::POST => (Some(Op::Create), "GET, POST"),
            _ => (None, "GET, POST"),
        },
        ["revoke-all"] => ((*method == Method::POST).then_some(Op::RevokeAll), "POST"),
        [id] if is_key_id(id) => (
            (*method == Method::DELETE).then(|| Op::Revoke(id.to_string())),
            "DELETE",
        ),
        [id, "regenerate"] if is_key_id(id) => (
            (*method == Method::POST).then(|| Op::Regenerate(id.to_string())),
            "POST",
        ),
        _ => return Err((problem::ROUTE_NOT_FOUND, None)),
    };
    op.ok_or((problem::METHOD_NOT_ALLOWED, Some(allow)))
}

/// An operation's result: the answer, and the key it concerned.
pub struct Outcome {
    pub status: StatusCode,
    pub body: Result<Value, Reject>,
    /// The data key acted on (or created), for the audit trail.
    pub target: Option<String>,
    pub name: Option<String>,
}

impl Outcome {
    pub(crate) fn refused(reject: Reject) -> Outcome {
        Outcome {
            status: StatusCode::from_u16(reject.status)
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body: Err(reject),
            target: None,
            name: None,
        }
    }

    pub(crate) fn done(status: StatusCode, body: Value, record: Option<&KeyRecord>) -> Outcome {
        Outcome {
            status,
            body: Ok(body),
            target: record.map(|r| r.key_id.clone()),
            name: record.map(|r| r.name.clone()),
        }
    }
}

/// What a partner sees of one of its keys: never the hash, never the key.
fn view(record: &KeyRecord) -> Value {
    json!({
        "key_id": record.key_id,
        "name": record.name,
        "created_at": record.created_at,
        "expires_at": record.expires_at,
        "self_rotated": record.self_rotated,
        "last_used_at": record.last_used_at,
    })
}

fn issued(key: &str, record: &KeyRecord) -> Value {
    let mut v = view(record);
    v["key"] = Value::String(key.to_string());
    v
}

fn store_refusal(e: &StoreError) -> Reject {
    match e {
        StoreError::NotFound => problem::ADMIN_KEY_NOT_FOUND,
        StoreError::Conflict(_) => problem::ADMIN_KEY_CONFLICT,
        StoreError::Unavailable(_) => problem::ADMIN_STORE_DOWN,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    #[serde(default)]
    expires_at: Option<u64>,
}

async fn own_keys(keys: &KeyService, partner: &str) -> Result<Vec<KeyRecord>, StoreError> {
    Ok(keys
        .list(Some(partner))
        .await?
        .into_iter()
        .filter(|r| r.kind.is_data())
        .collect())
}

async fn own_key(keys: &KeyService, partner: &str, key_id: &str) -> Result<KeyRecord, StoreError> {
    own_keys(keys, partner)
        .await?
        .into_iter()
        .find(|r| r.key_id == key_id)
        .ok_or(StoreError::NotFound)
}

/// Runs `op` for `partner`.
pub async fn run(keys: &KeyService, partner: &str, op: &Op, body: &[u8]) -> Outcome {
    match op {
        Op::List => match own_keys(keys, partner).await {
            Ok(records) => Outcome::done(
                StatusCode::OK,
                json!({ "partner": partner, "keys": records.iter().map(view).collect::<Vec<_>>() }),
                None,
            ),
            Err(e) => Outcome::refused(store_refusal(&e)),
        },
        Op::Create => create(keys, partner, body).await,
        Op::Regenerate(id) => {
            let current = match own_key(keys, partner, id).await {
                Ok(r) => r,
                Err(e) => return Outcome::refused(store_refusal(&e)),
            };
            match keys.regenerate(&current).await {
                Ok((key, record)) => {
                    let mut body = issued(key.reveal(), &record);
                    body["replaced"] = Value::String(current.key_id.clone());
                    let mut done = Outcome::done(StatusCode::OK, body, Some(&current));
                    done.name = Some(record.name);
                    done
                }
                Err(e) => Outcome::refused(store_refusal(&e)),
            }
        }
        Op::Revoke(id) => {
            let current = match own_key(keys, partner, id).await {
                Ok(r) => r,
                Err(e) => return Outcome::refused(store_refusal(&e)),
            };
            match keys.revoke_exactly(&current).await {
                Ok(old) => {
                    Outcome::done(StatusCode::OK, json!({ "revoked": view(&old) }), Some(&old))
                }
                Err(e) => Outcome::refused(store_refusal(&e)),
            }
        }
        // Read by the listener itself, from the audit trail.
        Op::Activity => Outcome::refused(problem::ROUTE_NOT_FOUND),
        Op::RevokeAll => match keys.revoke_all_data(partner).await {
            Ok(gone) => Outcome::done(
                StatusCode::OK,
                json!({ "revoked": gone.iter().map(|r| r.key_id.clone()).collect::<Vec<_>>() }),
                None,
            ),
            Err(e) => Outcome::refused(store_refusal(&e)),
        },
    }
}

async fn create(keys: &KeyService, partner: &str, body: &[u8]) -> Outcome {
    let Ok(req) = serde_json::from_slice::<CreateBody>(body) else {
        return Outcome::refused(problem::ADMIN_BAD_BODY);
    };
    if !valid_label(&req.name) || req.expires_at.is_some_and(|t| t <= now_secs()) {
        return Outcome::refused(problem::ADMIN_BAD_BODY);
    }
    match own_keys(keys, partner).await {
        Ok(held) if held.len() >= MAX_KEYS => return Outcome::refused(problem::ADMIN_KEY_CONFLICT),
        Ok(_) => {}
        Err(e) => return Outcome::refused(store_refusal(&e)),
    }
    match keys
        .create_kind(
            crate::keys::store::Kind::Data,
            partner,
            &req.name,
            req.expires_at,
        )
        .await
    {
        Ok((key, record)) => Outcome::done(
            StatusCode::CREATED,
            issued(key.reveal(), &record),
            Some(&record),
        ),
        Err(e) => Outcome::refused(store_refusal(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_operation_has_one_spelling() {
        let id = "0123456789ab";
        assert_eq!(route(&Method::GET, "/v1/keys", None), Ok(Op::List));
        assert_eq!(route(&Method::POST, "/v1/keys", None), Ok(Op::Create));
        assert_eq!(
            route(&Method::POST, &format!("/v1/keys/{id}/regenerate"), None),
            Ok(Op::Regenerate(id.into()))
        );
        assert_eq!(
            route(&Method::DELETE, &format!("/v1/keys/{id}"), None),
            Ok(Op::Revoke(id.into()))
        );
        assert_eq!(
            route(&Method::POST, "/v1/keys/revoke-all", None),
            Ok(Op::RevokeAll)
        );
        for path in [
            "/v1/keys/",
            "/v1/keysx",
            "/v1//keys",
            "/v1/keys//",
            "/v1/keys/0123456789AB",
            "/v1/keys/0123456789ab/",
            "/v1/keys/%30123456789ab",
            "/v1/keys/../keys",
            "/v2/keys",
        ] {
            assert_eq!(
                route(&Method::GET, path, None).err().map(|e| e.0.code),
                Some("route_not_found"),
                "{path}"
            );
        }
        assert_eq!(
            route(&Method::GET, "/v1/keys", Some("partner=globex"))
                .err()
                .map(|e| e.0.code),
            Some("bad_request")
        );
        assert_eq!(
            route(&Method::GET, "/v1/keys/revoke-all", None).err(),
            Some((problem::METHOD_NOT_ALLOWED, Some("POST")))
        );
    }
}
