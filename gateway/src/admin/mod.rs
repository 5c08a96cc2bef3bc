//! The admin listener: health, readiness, metrics and the key-management
//! API. It binds to its own address (loopback by default) and is never
//! reachable on the public one.

pub mod keys;
pub mod metrics_listener;
pub mod owners;
pub mod ready;

use std::sync::Arc;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::admin::keys::{problem_response, ApiResponse, KeysApi};
use crate::admin::ready::Readiness;
use crate::ownership::service::OwnershipIndex;
use crate::server::reload::Live;
use crate::stage::problem;

/// Largest request body the admin API reads.
const MAX_BODY: usize = 16 * 1024;

pub struct AdminApp {
    live: Arc<Live>,
    keys: KeysApi,
    readiness: Readiness,
    owners: Option<Arc<OwnershipIndex>>,
}

impl AdminApp {
    pub fn new(
        live: Arc<Live>,
        keys: KeysApi,
        readiness: Readiness,
        owners: Option<Arc<OwnershipIndex>>,
    ) -> Self {
        AdminApp {
            live,
            keys,
            readiness,
            owners,
        }
    }

    fn observe(&self, method: &http::Method, path: &str) -> ApiResponse {
        if method != http::Method::GET && method != http::Method::HEAD {
            return problem_response(problem::METHOD_NOT_ALLOWED);
        }
        let (status, content_type, body) = match path {
            "/healthz" => (StatusCode::OK, "text/plain", b"ok\n".to_vec()),
            "/readyz" => {
                let report = self.readiness.report();
                let status = if report.ready() {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                let body = report.to_json(&self.live).to_string().into_bytes();
                (status, "application/json", body)
            }
            "/metrics" => (
                StatusCode::OK,
                metrics_listener::CONTENT_TYPE,
                self.live.metrics.render(),
            ),
            _ => return problem_response(problem::ROUTE_NOT_FOUND),
        };
        ApiResponse {
            status,
            content_type,
            body,
        }
    }
}

/// The request body, or `None` past `limit` bytes or on a read error.
pub(crate) async fn read_body(session: &mut ServerSession, limit: usize) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    while let Some(chunk) = session.read_request_body().await.ok()? {
        body.extend_from_slice(&chunk);
        if body.len() > limit {
            return None;
        }
    }
    Some(body)
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let method = session.req_header().method.clone();
        let path = session.req_header().uri.path().to_string();
        // One spelling per resource: the handlers split on '/' and skip empty
        // segments, so `/v1/keys/` or `/v1//keys` would otherwise be aliases.
        let answer = if path.contains("//") || (path.len() > 1 && path.ends_with('/')) {
            problem_response(problem::ROUTE_NOT_FOUND)
        } else if path == keys::PREFIX
            || path.starts_with("/v1/keys/")
            || path.starts_with(keys::PARTNERS_PREFIX)
            || path == keys::BLOCKS_PREFIX
            || path.starts_with("/v1/blocks/")
        {
            let query = session.req_header().uri.query().map(str::to_string);
            let authorization = session
                .req_header()
                .headers
                .get(http::header::AUTHORIZATION)
                .map(|v| v.as_bytes().to_vec());
            match read_body(session, MAX_BODY).await {
                Some(body) => {
                    self.keys
                        .handle(
                            &method,
                            &path,
                            query.as_deref(),
                            authorization.as_deref(),
                            &body,
                        )
                        .await
                }
                None => problem_response(problem::BAD_REQUEST),
            }
        } else if path == owners::PREFIX || path.starts_with("/v1/owners/") {
            let query = session.req_header().uri.query().map(str::to_string);
            let authorization = session
                .req_header()
                .headers
                .get(http::header::AUTHORIZATION)
                .map(|v| v.as_bytes().to_vec());
            match self.keys.authorize(authorization.as_deref()) {
                Err(refused) => refused,
                Ok(()) => match read_body(session, owners::MAX_IMPORT_BODY).await {
                    Some(body) => {
                        owners::handle(
                            self.owners.as_ref(),
                            &method,
                            &path,
                            query.as_deref(),
                            &body,
                        )
                        .await
                    }
                    None => problem_response(problem::BAD_REQUEST),
                },
            }
        } else {
            self.observe(&method, &path)
        };
        to_http(answer, method == http::Method::HEAD)
    }
}

/// An answer of the admin or metrics listener as sent: never cached, and
/// a HEAD answer keeps the length of the body it leaves out.
pub(crate) fn to_http(answer: ApiResponse, head: bool) -> Response<Vec<u8>> {
    let len = answer.body.len();
    Response::builder()
        .status(answer.status)
        .header(http::header::CONTENT_TYPE, answer.content_type)
        .header(http::header::CONTENT_LENGTH, len)
        .header(http::header::CACHE_CONTROL, "no-store")
        .body(if head { Vec::new() } else { answer.body })
        .unwrap_or_else(|_| Response::new(Vec::new()))
}
