//! The ownership index on the admin listener, behind the admin token: the
//! same operations as `portcullis owners`. A transfer is enforced by every
//! node when the call returns (the index, not a cache, answers).
//!
//! - `GET /v1/owners[?kind=K&partner=P]`: `{"owners": [{kind, id, partner}]}`
//! - `POST /v1/owners` `{"owners": [...]}`: bulk import, `{"imported": n}`
//! - `GET /v1/owners/{kind}/{id}`: `{kind, id, partner}`
//! - `PUT /v1/owners/{kind}/{id}` `{"partner": P}`: transfer, `{kind, id,
//!   partner, previous}`
//! - `DELETE /v1/owners/{kind}/{id}`: forget, `{kind, id, previous}`

use std::sync::Arc;

use http::StatusCode;
use serde::Deserialize;

use crate::admin::keys::{json, problem_response, ApiResponse};
use crate::ownership::service::OwnershipIndex;
use crate::ownership::store::{check, IndexError, Ownership};
use crate::stage::problem;

pub const PREFIX: &str = "/v1/owners";

/// An import body is the largest admin request: about 60 bytes a record,
/// so a batch of 100 000 records fits. The CLI sends bigger files in batches.
pub const MAX_IMPORT_BODY: usize = 8 << 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportBody {
    owners: Vec<Ownership>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferBody {
    partner: String,
}

fn index_problem(e: &IndexError) -> ApiResponse {
    match e {
        IndexError::NotFound => problem_response(problem::ADMIN_OWNER_NOT_FOUND),
        IndexError::Invalid(_) => problem_response(problem::ADMIN_BAD_BODY),
        IndexError::Unavailable(_) => problem_response(problem::OWNERSHIP_UNAVAILABLE),
    }
}

fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?.split('&').find_map(|pair| {
        pair.split_once('=')
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| v)
    })
}

/// Handles an already authorised request under [`PREFIX`].
pub async fn handle(
    index: Option<&Arc<OwnershipIndex>>,
    method: &http::Method,
    path: &str,
    query: Option<&str>,
    body: &[u8],
) -> ApiResponse {
    let Some(index) = index else {
        return problem_response(problem::OWNERSHIP_UNAVAILABLE);
    };
    let rest = path.strip_prefix(PREFIX).unwrap_or("");
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    match (method.as_str(), segments.as_slice()) {
        ("GET", []) => {
            let kind = query_param(query, "kind");
            let partner = query_param(query, "partner");
            match index.export(kind, partner).await {
                Ok(owners) => json(StatusCode::OK, serde_json::json!({ "owners": owners })),
                Err(e) => index_problem(&e),
            }
        }
        ("POST", []) => {
            let Ok(req) = serde_json::from_slice::<ImportBody>(body) else {
                return problem_response(problem::ADMIN_BAD_BODY);
            };
            match index.import(req.owners).await {
                Ok(n) => json(StatusCode::OK, serde_json::json!({ "imported": n })),
                Err(e) => index_problem(&e),
            }
        }
        ("GET", [kind, id]) => match index.owner(kind, id).await {
            Ok(Some(partner)) => json(
                StatusCode::OK,
                serde_json::json!({ "kind": kind, "id": id, "partner": partner }),
            ),
            Ok(None) => problem_response(problem::ADMIN_OWNER_NOT_FOUND),
            Err(e) => index_problem(&e),
        },
        ("PUT", [kind, id]) => {
            let Ok(req) = serde_json::from_slice::<TransferBody>(body) else {
                return problem_response(problem::ADMIN_BAD_BODY);
            };
            let record = Ownership {
                kind: kind.to_string(),
                id: id.to_string(),
                partner: req.partner,
            };
            if check(&record).is_err() {
                return problem_response(problem::ADMIN_BAD_BODY);
            }
            match index.transfer(kind, id, &record.partner).await {
                Ok(previous) => json(
                    StatusCode::OK,
                    serde_json::json!({ "kind": kind, "id": id, "partner": record.partner, "previous": previous }),
                ),
                Err(e) => index_problem(&e),
            }
        }
        ("DELETE", [kind, id]) => match index.remove(kind, id).await {
            Ok(previous) => json(
                StatusCode::OK,
                serde_json::json!({ "kind": kind, "id": id, "previous": previous }),
            ),
            Err(e) => index_problem(&e),
        },
        _ => problem_response(problem::ROUTE_NOT_FOUND),
    }
}
