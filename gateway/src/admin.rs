//! The admin listener: health, readiness and metrics. It binds to its own
//! address (loopback by default) and is never reachable on the public one.

use std::sync::Arc;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::problem;
use crate::reload::Live;

pub struct AdminApp {
    live: Arc<Live>,
}

impl AdminApp {
    pub fn new(live: Arc<Live>) -> Self {
        AdminApp { live }
    }

    fn respond(&self, method: &http::Method, path: &str) -> (StatusCode, &'static str, Vec<u8>) {
        if method != http::Method::GET && method != http::Method::HEAD {
            let body = problem::render(
                &problem::METHOD_NOT_ALLOWED,
                &crate::request_id::generate(),
                None,
            );
            return (StatusCode::METHOD_NOT_ALLOWED, problem::CONTENT_TYPE, body);
        }
        match path {
            "/healthz" => (StatusCode::OK, "text/plain", b"ok\n".to_vec()),
            "/readyz" => {
                let plan = self.live.plan();
                let body = serde_json::json!({
                    "status": "ready",
                    "config_generation": self.live.generation(),
                    "routes": plan.routes,
                });
                (
                    StatusCode::OK,
                    "application/json",
                    body.to_string().into_bytes(),
                )
            }
            "/metrics" => (
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                self.live.metrics.render(),
            ),
            _ => {
                let body = problem::render(
                    &problem::ROUTE_NOT_FOUND,
                    &crate::request_id::generate(),
                    None,
                );
                (StatusCode::NOT_FOUND, problem::CONTENT_TYPE, body)
            }
        }
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let (status, content_type, body) = self.respond(&req.method, req.uri.path());
        let len = body.len();
        let body = if req.method == http::Method::HEAD {
            Vec::new()
        } else {
            body
        };
        Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, content_type)
            .header(http::header::CONTENT_LENGTH, len)
            .header(http::header::CACHE_CONTROL, "no-store")
            .body(body)
            .unwrap_or_else(|_| Response::new(Vec::new()))
    }
}
