//! An example legacy partner backend: a JSON orders API, scoped by partner in the path,
//! that behaves the way real backends too often do. Every response advertises
//! `Server: Apache/2.4.41 (Ubuntu)`, `X-Powered-By: PHP/7.4.3` and an `X-Internal-Trace-Id`;
//! orders carry internal fields (`internal_cost_cents`, `db_shard`, `created_by`); errors
//! leak stack traces, SQL and internal hostnames. The Portcullis demo and end-to-end tests
//! put the gateway in front of it.
//!
//! Beside it, a second API shaped like a backend that never knew about
//! partners (opaque ids, no partner in any URL, nothing checks whose order
//! it is), for the gateway's object-level isolation:
//!
//! - `GET /orders[?status=S]`: `{"orders": [...]}` with every partner's orders
//!   (`id`, `partner`, `sku`, `quantity`, `status`, `internal_cost_cents`),
//!   seeded with three each for acme, globex and initech, interleaved.
//! - `POST /orders` `{"sku", "quantity"}`: 201 with the order, owned by the
//!   partner named in the `x-partner-id` request header (400 without one).
//! - `GET|PUT|DELETE /orders/{id}`: the order, changed (`sku`, `quantity`,
//!   `status`; anything else is ignored) or deleted (204), whoever asks;
//!   404 `{"error": "order not found"}` for an id that does not exist.
//!
//! Besides the orders API (see [`OPENAPI_YAML`]) it serves test helpers that are
//! deliberately left out of the OpenAPI document:
//!
//! - `ANY /echo[/...]`: 200 JSON `{"method", "path_and_query", "headers": {name: [values]},
//!   "body_len", "body"}` (body as lossy UTF-8), i.e. what the upstream actually received.
//! - `ANY /reply[/...]?status=N&header=NAME`: answers with the request body byte for byte
//!   (status N, default 200; the request's `Content-Type`), and with the body's first line
//!   as response header NAME when given: a test decides exactly what the backend says.
//! - `GET /slow?ms=N`: answers `{"slept_ms": N}` after N ms (capped at 30000).
//! - `GET /big?bytes=N`: N bytes (capped at 16 MiB) of `application/octet-stream` where
//!   byte `i` is `(i % 251) as u8`.
//! - `GET /openapi.yaml`: [`OPENAPI_YAML`] as `application/yaml`.
//!
//! Unknown paths get 404 `{"error": "not found", "path": ...}`; known paths with an
//! unsupported method get 405 with an `Allow` header.

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

mod app;
mod assertion;
mod legacy;
mod orders;
mod recorder;

pub use assertion::AssertionCheck;
pub use recorder::{RecordedRequest, Recorder};

/// The id of `partner`'s `n`-th seeded order in the legacy API (`/orders/{id}`),
/// or `None` when it seeds no such order.
pub fn seeded_legacy_order(partner: &str, n: usize) -> Option<String> {
    legacy::seeded_id(partner, n)
}

/// The OpenAPI 3.0 document of the orders API.
pub const OPENAPI_YAML: &str = include_str!("../openapi.yaml");

/// Serve on an already-bound listener until the future is dropped. Every request that
/// reaches the service (any path, any method, including 404s) is recorded in full, body
/// included, before it is answered.
pub async fn serve(listener: TcpListener, recorder: Recorder) -> std::io::Result<()> {
    serve_with(listener, recorder, Options::default()).await
}

/// How the service behaves beyond the defaults.
#[derive(Clone, Default)]
pub struct Options {
    /// When set, every request without a valid gateway assertion gets 401
    /// (it is still recorded, so tests can see it arrived).
    pub assertion: Option<AssertionCheck>,
}

pub async fn serve_with(
    listener: TcpListener,
    recorder: Recorder,
    options: Options,
) -> std::io::Result<()> {
    axum::serve(listener, app::router(recorder, options)).await
}

/// [`spawn`], with options.
pub async fn spawn_with(
    addr: SocketAddr,
    options: Options,
) -> std::io::Result<(SocketAddr, Recorder, JoinHandle<std::io::Result<()>>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let recorder = Recorder::new();
    let handle = tokio::spawn(serve_with(listener, recorder.clone(), options));
    Ok((local, recorder, handle))
}

/// Bind `addr` (use port 0 for an ephemeral port), serve on the current tokio runtime and
/// return the bound address, the recorder and the serving task. Aborting the task stops
/// accepting connections.
pub async fn spawn(
    addr: SocketAddr,
) -> std::io::Result<(SocketAddr, Recorder, JoinHandle<std::io::Result<()>>)> {
    spawn_with(addr, Options::default()).await
}
