//! Data-key self-rotation on the public listener: a key regenerates
//! itself. The new key is shown once; the old one is refused from the
//! moment the response is written.
//!
//! Whoever holds a key can call this, including someone who stole it, so
//! it is off unless the partner's policy turns it on, and even then a key
//! rotates itself once: the key it makes cannot, and only the presented
//! key is replaced. A partner manages its keys with its management
//! credential, which a data key never is.

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

use crate::keys::service::KeyService;
use crate::keys::store::KeyRecord;
use crate::keys::store::StoreError;
use crate::proxy::context::RequestCtx;
use crate::proxy::respond::{decorate, respond_problem};
use crate::stage::isolation::Partner;
use crate::stage::problem;

pub const ROTATE_PATH: &str = "/.portcullis/v1/keys/rotate";

pub async fn rotate(
    session: &mut Session,
    ctx: &mut RequestCtx,
    keys: &KeyService,
    partner: &Partner,
    record: &KeyRecord,
) -> pingora::Result<()> {
    if session.req_header().method != http::Method::POST {
        return respond_problem(
            session,
            ctx,
            problem::METHOD_NOT_ALLOWED,
            Some("POST".into()),
        )
        .await;
    }
    if !partner.self_rotation {
        return respond_problem(session, ctx, problem::SELF_ROTATION_DISABLED, None).await;
    }
    if record.self_rotated {
        return respond_problem(session, ctx, problem::SELF_ROTATION_SPENT, None).await;
    }
    let (key, new_record) = match keys.self_rotate(record).await {
        Ok(rotated) => rotated,
        // Another holder of this key rotated it first: it is no longer valid.
        Err(StoreError::Conflict(_) | StoreError::NotFound) => {
            return respond_problem(session, ctx, problem::KEY_INVALID, None).await;
        }
        Err(e) => {
            tracing::error!(request_id = %ctx.request_id, error = %e, key_id = %record.key_id, "self-service rotation failed");
            return respond_problem(session, ctx, problem::ROTATION_FAILED, None).await;
        }
    };
    ctx.outcome = crate::stage::outcome::Outcome::Served("key_rotated");
    let body = serde_json::json!({
        "key": key.reveal(),
        "key_id": new_record.key_id,
        "partner": new_record.partner,
        "name": new_record.name,
        "expires_at": new_record.expires_at,
    });
    let body = Bytes::from(body.to_string());
    let mut resp = ResponseHeader::build(200, Some(6))?;
    resp.insert_header(CONTENT_TYPE, "application/json")?;
    resp.insert_header(CONTENT_LENGTH, body.len().to_string())?;
    resp.insert_header(CACHE_CONTROL, "no-store")?;
    decorate(&mut resp, ctx)?;
    tracing::info!(request_id = %ctx.request_id, partner = %new_record.partner, old_key_id = %record.key_id, new_key_id = %new_record.key_id, "partner rotated its key");
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await
}
