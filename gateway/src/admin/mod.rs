//! The admin listener: health, readiness, metrics and the key-management
//! API. It binds to its own address (loopback by default) and is never
//! reachable on the public one.

pub mod keys;

use std::sync::Arc;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::admin::keys::{problem_response, ApiResponse, KeysApi};
use crate::server::reload::Live;
use crate::stage::problem;

/// Largest request body the admin API reads.
const MAX_BODY: usize = 16 * 1024;

pub struct AdminApp {
    live: Arc<Live>,
    keys: KeysApi,
}

impl AdminApp {
    pub fn new(live: Arc<Live>, keys: KeysApi) -> Self {
        AdminApp { live, keys }
    }

    fn observe(&self, method: &http::Method, path: &str) -> ApiResponse {
        if method != http::Method::GET && method != http::Method::HEAD {
            return problem_response(problem::METHOD_NOT_ALLOWED);
        }
        let (content_type, body) = match path {
            "/healthz" => ("text/plain", b"ok\n".to_vec()),
            "/readyz" => {
                let plan = self.live.plan();
                let body = serde_json::json!({
                    "status": "ready",
                    "config_generation": self.live.generation(),
                    "routes": plan.routes,
                });
                ("application/json", body.to_string().into_bytes())
            }
            "/metrics" => (
                "text/plain; version=0.0.4; charset=utf-8",
                self.live.metrics.render(),
            ),
            _ => return problem_response(problem::ROUTE_NOT_FOUND),
        };
        ApiResponse {
            status: StatusCode::OK,
            content_type,
            body,
        }
    }
}

async fn read_body(session: &mut ServerSession) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    while let Some(chunk) = session.read_request_body().await.ok()? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_BODY {
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
        let answer = if path == keys::PREFIX
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
            match read_body(session).await {
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
        } else {
            self.observe(&method, &path)
        };
        let len = answer.body.len();
        let body = if method == http::Method::HEAD {
            Vec::new()
        } else {
            answer.body
        };
        Response::builder()
            .status(answer.status)
            .header(http::header::CONTENT_TYPE, answer.content_type)
            .header(http::header::CONTENT_LENGTH, len)
            .header(http::header::CACHE_CONTROL, "no-store")
            .body(body)
            .unwrap_or_else(|_| Response::new(Vec::new()))
    }
}
