//! The optional metrics listener (`metrics.address`): `/metrics` and
//! nothing else, so the network path Prometheus needs never reaches the
//! key API or readiness. The admin listener keeps serving `/metrics` too.

use std::sync::Arc;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::admin::keys::{problem_response, ApiResponse};
use crate::monitor::metrics::Metrics;
use crate::stage::problem;

/// Prometheus text exposition format 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub struct MetricsApp {
    metrics: Arc<Metrics>,
}

impl MetricsApp {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        MetricsApp { metrics }
    }
}

#[async_trait]
impl ServeHttp for MetricsApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let head = req.method == http::Method::HEAD;
        let answer = match (&req.method, req.uri.path()) {
            (&http::Method::GET | &http::Method::HEAD, "/metrics") => ApiResponse {
                status: StatusCode::OK,
                content_type: CONTENT_TYPE,
                body: self.metrics.render(),
            },
            (_, "/metrics") => problem_response(problem::METHOD_NOT_ALLOWED),
            _ => problem_response(problem::ROUTE_NOT_FOUND),
        };
        crate::admin::to_http(answer, head)
    }
}
