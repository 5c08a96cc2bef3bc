use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE, LOCATION, SERVER};
use http::request::Parts;
use http::{HeaderName, HeaderValue, Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::legacy::{LegacyOrder, LegacyStore, NewLegacyOrder, OrderChange};
use crate::orders::{NewOrder, Order, Store};
use crate::recorder::{RecordedRequest, Recorder};

/// Large enough for any test payload; a cap is still needed so a runaway client cannot
/// make the example exhaust memory.
const MAX_REQUEST_BODY: usize = 64 * 1024 * 1024;
const MAX_SLEEP_MS: u64 = 30_000;
const MAX_BIG_BYTES: usize = 16 * 1024 * 1024;

const X_POWERED_BY: HeaderName = HeaderName::from_static("x-powered-by");
const X_INTERNAL_TRACE_ID: HeaderName = HeaderName::from_static("x-internal-trace-id");

struct AppState {
    recorder: Recorder,
    store: Store,
    legacy: LegacyStore,
    next_trace: AtomicU64,
    options: crate::Options,
}

pub(crate) fn router(recorder: Recorder, options: crate::Options) -> Router {
    let state = AppState {
        recorder,
        store: Store::default(),
        legacy: LegacyStore::default(),
        next_trace: AtomicU64::new(1),
        options,
    };
    // A single fallback instead of axum routes: every request, matched or not, has to be
    // recorded with its raw body before anything can reject it.
    Router::new().fallback(handle).with_state(Arc::new(state))
}

async fn handle(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, MAX_REQUEST_BODY).await;
    state.recorder.record(RecordedRequest {
        method: parts.method.to_string(),
        path_and_query: path_and_query(&parts),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| (name.to_string(), lossy(value)))
            .collect(),
        body: body.as_ref().map(|b| b.to_vec()).unwrap_or_default(),
    });

    let trace_id = state.trace_id();
    let verified = match &state.options.assertion {
        Some(check) => check.verify(&parts),
        None => Ok(()),
    };
    let mut response = match (body, verified) {
        (_, Err(reason)) => (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "missing or invalid gateway assertion", "reason": reason})),
        )
            .into_response(),
        (Ok(body), Ok(())) => route(&state, &parts, body, &trace_id).await,
        (Err(e), Ok(())) => error(
            StatusCode::BAD_REQUEST,
            format!("could not read request body: {e}"),
        ),
    };
    let headers = response.headers_mut();
    headers.insert(SERVER, HeaderValue::from_static("Apache/2.4.41 (Ubuntu)"));
    headers.insert(X_POWERED_BY, HeaderValue::from_static("PHP/7.4.3"));
    if let Ok(value) = HeaderValue::from_str(&trace_id) {
        headers.insert(X_INTERNAL_TRACE_ID, value);
    }
    response
}

impl AppState {
    fn trace_id(&self) -> String {
        let n = self.next_trace.fetch_add(1, Ordering::Relaxed);
        // Multiplying by an odd constant is a bijection on u64: ids stay unique but look
        // like the opaque ids a real tracing system would hand out.
        format!("{:016x}", n.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }
}

/// What a path names, decided before looking at the method so that a known path with the
/// wrong method gets 405 rather than 404.
enum Endpoint<'a> {
    Echo,
    Reply,
    Healthz,
    OpenApi,
    Slow,
    Big,
    Orders { partner: &'a str },
    Order { partner: &'a str, id: &'a str },
    Explode { partner: &'a str, id: &'a str },
    LegacyOrders,
    LegacyOrder { id: &'a str },
}

impl<'a> Endpoint<'a> {
    fn parse(path: &'a str) -> Option<Self> {
        let segments: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
        let endpoint = match segments.as_slice() {
            ["echo", ..] => Self::Echo,
            ["reply", ..] => Self::Reply,
            ["healthz"] => Self::Healthz,
            ["openapi.yaml"] => Self::OpenApi,
            ["slow"] => Self::Slow,
            ["big"] => Self::Big,
            ["partners", partner, "orders"] if !partner.is_empty() => Self::Orders { partner },
            ["partners", partner, "orders", id] if !partner.is_empty() && !id.is_empty() => {
                Self::Order { partner, id }
            }
            ["orders"] => Self::LegacyOrders,
            ["orders", id] if !id.is_empty() => Self::LegacyOrder { id },
            ["partners", partner, "orders", id, "explode"]
                if !partner.is_empty() && !id.is_empty() =>
            {
                Self::Explode { partner, id }
            }
            _ => return None,
        };
        Some(endpoint)
    }

    /// The `Allow` header value, or `None` when every method is accepted.
    fn allow(&self) -> Option<&'static str> {
        match self {
            Self::Echo | Self::Reply => None,
            Self::Orders { .. } | Self::LegacyOrders => Some("GET, HEAD, POST"),
            Self::LegacyOrder { .. } => Some("GET, HEAD, PUT, DELETE"),
            _ => Some("GET, HEAD"),
        }
    }

    fn accepts(&self, method: &Method) -> bool {
        self.allow()
            .is_none_or(|allow| allow.split(", ").any(|m| m == method.as_str()))
    }
}

#[derive(Serialize)]
struct OrderList<'a> {
    partner: &'a str,
    orders: Vec<Order>,
}

async fn route(state: &AppState, parts: &Parts, body: Bytes, trace_id: &str) -> Response {
    let path = parts.uri.path();
    let Some(endpoint) = Endpoint::parse(path) else {
        return not_found(path);
    };
    let method = &parts.method;
    let is_post = method == Method::POST;
    if let (false, Some(allow)) = (endpoint.accepts(method), endpoint.allow()) {
        return method_not_allowed(allow);
    }

    match endpoint {
        Endpoint::Echo => echo(parts, &body),
        Endpoint::Reply => reply(parts, body),
        Endpoint::Healthz => "ok".into_response(),
        Endpoint::OpenApi => {
            ([(CONTENT_TYPE, "application/yaml")], crate::OPENAPI_YAML).into_response()
        }
        Endpoint::Slow => slow(&parts.uri).await,
        Endpoint::Big => big(&parts.uri),
        Endpoint::Orders { partner } if is_post => create(state, partner, &body),
        Endpoint::Orders { partner } => Json(OrderList {
            partner,
            orders: state.store.list(partner),
        })
        .into_response(),
        Endpoint::Order { partner, id } => match state.store.get(partner, id) {
            Some(order) => Json(order).into_response(),
            None => error(StatusCode::NOT_FOUND, "order not found"),
        },
        Endpoint::Explode { partner, id } => explode(partner, id, trace_id),
        Endpoint::LegacyOrders if is_post => legacy_create(state, parts, &body),
        Endpoint::LegacyOrders => legacy_list(state, &parts.uri),
        Endpoint::LegacyOrder { id } => legacy_order(state, method, id, &body),
    }
}

#[derive(Serialize)]
struct LegacyList {
    orders: Vec<LegacyOrder>,
}

#[derive(Deserialize)]
struct LegacyListQuery {
    #[serde(default)]
    status: Option<String>,
}

fn legacy_list(state: &AppState, uri: &http::Uri) -> Response {
    match Query::<LegacyListQuery>::try_from_uri(uri) {
        Ok(Query(q)) => Json(LegacyList {
            orders: state.legacy.list(q.status.as_deref()),
        })
        .into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, e.body_text()),
    }
}

/// The owner is whoever the gateway says is calling; without a gateway in
/// front, anyone can claim to be anyone, which is what makes it legacy.
fn legacy_create(state: &AppState, parts: &Parts, body: &[u8]) -> Response {
    let Some(partner) = parts
        .headers
        .get("x-partner-id")
        .and_then(|v| v.to_str().ok())
        .filter(|p| !p.is_empty())
    else {
        return error(StatusCode::BAD_REQUEST, "x-partner-id is required");
    };
    match serde_json::from_slice::<NewLegacyOrder>(body) {
        Ok(new) => {
            let order = state.legacy.create(partner, new);
            let location = format!("/orders/{}", order.id);
            (StatusCode::CREATED, [(LOCATION, location)], Json(order)).into_response()
        }
        Err(e) => error(StatusCode::BAD_REQUEST, format!("bad order: {e}")),
    }
}

fn legacy_order(state: &AppState, method: &Method, id: &str, body: &[u8]) -> Response {
    let missing = || error(StatusCode::NOT_FOUND, "order not found");
    if method == Method::DELETE {
        return if state.legacy.delete(id) {
            StatusCode::NO_CONTENT.into_response()
        } else {
            missing()
        };
    }
    if method == Method::PUT {
        return match serde_json::from_slice::<OrderChange>(body) {
            Ok(change) => state
                .legacy
                .change(id, change)
                .map_or_else(missing, |o| Json(o).into_response()),
            Err(e) => error(StatusCode::BAD_REQUEST, format!("bad change: {e}")),
        };
    }
    state
        .legacy
        .get(id)
        .map_or_else(missing, |o| Json(o).into_response())
}

fn create(state: &AppState, partner: &str, body: &[u8]) -> Response {
    match serde_json::from_slice::<NewOrder>(body) {
        Ok(new) => {
            let order = state.store.create(partner, new);
            let location = format!("/partners/{partner}/orders/{}", order.id);
            (StatusCode::CREATED, [(LOCATION, location)], Json(order)).into_response()
        }
        // Leaking the parser's message and a stack trace is the point: this is the kind of
        // response a gateway has to keep away from partners.
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Json(json!({
                "error": format!("Unable to decode order payload: {e}"),
                "trace": format!(
                    "#0 /var/www/orders-api/vendor/netresearch/jsonmapper/src/JsonMapper.php(214): \
                     JsonMapper->map(NULL, Object(App\\Dto\\NewOrder))\n\
                     #1 /var/www/orders-api/src/Controller/OrderController.php(57): \
                     JsonMapper->map(NULL, Object(App\\Dto\\NewOrder))\n\
                     #2 /var/www/orders-api/vendor/slim/slim/Slim/Handlers/Strategies/RequestResponse.php(43): \
                     App\\Controller\\OrderController->create(Object(Slim\\Psr7\\Request), \
                     Object(Slim\\Psr7\\Response), Array)\n\
                     #3 /var/www/orders-api/public/index.php(31): Slim\\App->run()\n\
                     #4 {{main}}\n  json_last_error_msg(): {e}"
                ),
            })),
        )
            .into_response(),
    }
}

fn explode(partner: &str, id: &str, trace_id: &str) -> Response {
    let trace = format!(
        "PHP Fatal error:  Uncaught PDOException: SQLSTATE[57014]: Query canceled: 7 ERROR:  \
         canceling statement due to statement timeout in \
         /var/www/orders-api/src/Repository/OrderRepository.php:142\n\
         Query: SELECT o.id, o.sku, o.quantity, o.internal_cost_cents, c.credit_limit_cents \
         FROM orders o JOIN partner_credit c ON c.partner_id = o.partner_id \
         WHERE o.partner_id = '{partner}' AND o.id = '{id}' FOR UPDATE\n\
         Connection: pgsql:host=db-primary.internal;port=5432;dbname=orders_prod;user=orders_rw \
         (db-primary.internal:5432, 10.0.4.21)\n\
         Stack trace:\n\
         #0 /var/www/orders-api/src/Repository/OrderRepository.php(142): PDOStatement->execute(Array)\n\
         #1 /var/www/orders-api/src/Service/FulfilmentService.php(88): \
         App\\Repository\\OrderRepository->lockForFulfilment('{partner}', '{id}')\n\
         #2 /var/www/orders-api/src/Controller/OrderController.php(203): \
         App\\Service\\FulfilmentService->fulfil('{id}')\n\
         #3 /var/www/orders-api/vendor/slim/slim/Slim/Handlers/Strategies/RequestResponse.php(43): \
         App\\Controller\\OrderController->explode(Object(Slim\\Psr7\\Request), \
         Object(Slim\\Psr7\\Response), Array)\n\
         #4 /var/www/orders-api/public/index.php(31): Slim\\App->run()\n\
         #5 {{main}}\n  thrown in /var/www/orders-api/src/Repository/OrderRepository.php on line 142\n\
         trace-id: {trace_id} host: orders-api-7c9f8d-x2x4l\n"
    );
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(CONTENT_TYPE, "text/plain; charset=utf-8")],
        trace,
    )
        .into_response()
}

fn echo(parts: &Parts, body: &[u8]) -> Response {
    let mut headers: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (name, value) in &parts.headers {
        headers.entry(name.as_str()).or_default().push(lossy(value));
    }
    Json(json!({
        "method": parts.method.as_str(),
        "path_and_query": path_and_query(parts),
        "headers": headers,
        "body_len": body.len(),
        "body": String::from_utf8_lossy(body),
    }))
    .into_response()
}

#[derive(Deserialize)]
struct ReplyQuery {
    #[serde(default)]
    status: Option<u16>,
    #[serde(default)]
    header: Option<String>,
}

/// Answers with the request's own body, byte for byte, so a test decides
/// exactly what the "backend" says: `status` sets the status and `header`
/// names a response header that carries the body's first line.
fn reply(parts: &Parts, body: Bytes) -> Response {
    let query = match Query::<ReplyQuery>::try_from_uri(&parts.uri) {
        Ok(Query(q)) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let status = query
        .status
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let content_type = parts
        .headers
        .get(CONTENT_TYPE)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("application/json"));
    let mut response = (status, [(CONTENT_TYPE, content_type)], body.clone()).into_response();
    if let Some(name) = query.header {
        let first_line = body.split(|&b| b == b'\n').next().unwrap_or_default();
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(first_line),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

#[derive(Deserialize)]
struct SlowQuery {
    ms: u64,
}

async fn slow(uri: &http::Uri) -> Response {
    match Query::<SlowQuery>::try_from_uri(uri) {
        Ok(Query(SlowQuery { ms })) => {
            let ms = ms.min(MAX_SLEEP_MS);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Json(json!({ "slept_ms": ms })).into_response()
        }
        Err(e) => error(StatusCode::BAD_REQUEST, e.body_text()),
    }
}

#[derive(Deserialize)]
struct BigQuery {
    bytes: usize,
}

fn big(uri: &http::Uri) -> Response {
    match Query::<BigQuery>::try_from_uri(uri) {
        Ok(Query(BigQuery { bytes })) => {
            // 251 is prime, so the pattern never lines up with power-of-two buffer sizes and
            // a dropped or duplicated chunk shows up as a mismatch.
            let data: Vec<u8> = (0..bytes.min(MAX_BIG_BYTES))
                .map(|i| (i % 251) as u8)
                .collect();
            (
                [(CONTENT_TYPE, "application/octet-stream")],
                Body::from(data),
            )
                .into_response()
        }
        Err(e) => error(StatusCode::BAD_REQUEST, e.body_text()),
    }
}

fn not_found(path: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "error": "not found", "path": path })),
    )
        .into_response()
}

fn method_not_allowed(allow: &'static str) -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(ALLOW, allow)],
        Json(json!({ "error": "method not allowed" })),
    )
        .into_response()
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

fn path_and_query(parts: &Parts) -> String {
    parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned())
}

fn lossy(value: &HeaderValue) -> String {
    String::from_utf8_lossy(value.as_bytes()).into_owned()
}
