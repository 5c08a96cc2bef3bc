//! The policy files, as users write them: partners, upstreams, routes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

/// One policy file: partners, upstreams and the routes that reach them.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, PartnerSpec>")]
    pub partners: BTreeMap<String, Spanned<PartnerSpec>>,
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, UpstreamSpec>")]
    pub upstreams: BTreeMap<String, Spanned<UpstreamSpec>>,
    #[serde(default)]
    #[schemars(with = "Vec<RouteSpec>")]
    pub routes: Vec<Spanned<RouteSpec>>,
    /// OpenAPI 3.0/3.1 documents whose operations become routes, with
    /// their parameters and request bodies as validators.
    #[serde(default)]
    #[schemars(with = "Vec<OpenApiImport>")]
    pub openapi: Vec<Spanned<OpenApiImport>>,
    /// Kinds of object whose owner the gateway tracks (`order`), for
    /// backends whose URLs name an object and not the partner.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, ResourceSpec>")]
    pub resources: BTreeMap<String, Spanned<ResourceSpec>>,
}

/// A kind of object partners own: where an upstream answer says which
/// object it is and whose.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceSpec {
    /// JSON pointer to the object's id in an answer (a created object, a
    /// read one, a row of a list).
    #[serde(default = "default_id_pointer")]
    pub id: String,
    /// JSON pointer to the owning partner in an answer; without it, owners
    /// are learnt only from create routes and imports.
    #[serde(default)]
    pub owner: Option<String>,
}

fn default_id_pointer() -> String {
    "/id".to_string()
}

/// What a route does to which object kind.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteResourceSpec {
    /// A name under `resources`.
    pub kind: String,
    pub action: ResourceAction,
    /// Where the request names the object (not for `create` and `list`).
    #[serde(default)]
    pub id: ObjectIdSpec,
    /// An id the ownership index does not know: refused (404), or decided
    /// by a pre-flight read.
    #[serde(default)]
    pub unknown: UnknownObjects,
    /// Path template of the pre-flight read (`/orders/{id}`), sent as a
    /// `GET` to the route's upstream; its answer's owner decides. Without
    /// it, a `read` route's own answer is the pre-flight.
    #[serde(default)]
    pub preflight: Option<String>,
    /// For `list`: pointer to the rows, with `*` for the array
    /// (`/orders/*`, or `/*` for a top-level array).
    #[serde(default)]
    pub rows: Option<String>,
    /// For `list`: rows owned by another partner (or by no one known) are
    /// dropped, or the whole answer is refused.
    #[serde(default)]
    pub others: OtherRows,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ResourceAction {
    /// The answer names a new object, owned by the caller from then on.
    Create,
    Read,
    Change,
    Delete,
    List,
}

/// Where a request names an object; exactly one of them.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ObjectIdSpec {
    /// Path parameter; defaults to `id` when the template has `{id}`.
    #[serde(default)]
    pub path: Option<String>,
    /// Query parameter name.
    #[serde(default)]
    pub query: Option<String>,
    /// JSON pointer into the request body.
    #[serde(default)]
    pub body: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum UnknownObjects {
    #[default]
    Refuse,
    Preflight,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OtherRows {
    #[default]
    Drop,
    Refuse,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenApiImport {
    /// The document (YAML or JSON), relative to the policy file.
    pub file: PathBuf,
    /// The upstream every imported route goes to.
    pub upstream: String,
    /// Only these operationIds; all operations when absent.
    #[serde(default)]
    pub operations: Option<Vec<String>>,
    /// Prefix of the imported route names (`<prefix><operationId>`).
    #[serde(default)]
    pub name_prefix: String,
    /// Scopes every imported route requires.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Query parameters the document does not declare: allowed or refused.
    #[serde(default)]
    pub unknown_query: UnknownParams,
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Requests per partner on each imported route.
    #[serde(default)]
    pub rate_limit: Option<crate::config::monitoring::RateSpec>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PartnerStatus {
    #[default]
    Active,
    Suspended,
}

/// A partner allowed through the gateway. Keys of partners not declared
/// in any policy file are refused.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PartnerSpec {
    #[serde(default)]
    pub status: PartnerStatus,
    /// Scopes held; a route that lists scopes needs all of them.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// When given, the only route names this partner may use.
    #[serde(default)]
    pub routes: Option<Vec<String>>,
    /// When given, requests must come from these networks (CIDR, or a
    /// single address).
    #[serde(default)]
    pub allow_ips: Option<Vec<String>>,
    #[serde(default)]
    pub limits: PartnerLimits,
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PartnerLimits {
    /// Requests of this partner in flight at once on one node; more get 429.
    #[serde(default)]
    pub max_concurrent: Option<u32>,
    /// Requests of this partner over all routes, shared by every node.
    #[serde(default)]
    pub rate: Option<crate::config::monitoring::RateSpec>,
}

/// Where a request names the partner it is for. Every value given must
/// equal the authenticated partner.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BindSpec {
    /// Path parameter; defaults to `partner` when the template has `{partner}`.
    #[serde(default)]
    pub path: Option<String>,
    /// Query parameter name.
    #[serde(default)]
    pub query: Option<String>,
    /// Request header name.
    #[serde(default)]
    pub header: Option<String>,
    /// JSON pointer into the request body (RFC 6901).
    #[serde(default)]
    pub body: Option<String>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSpec {
    /// `http://host:port` or `https://host:port`; no path.
    pub url: String,
    /// PEM file of CA certificates trusted for this `https` upstream instead
    /// of the system roots.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// TLS server name to send and verify; defaults to the URL's host.
    #[serde(default)]
    pub server_name: Option<String>,
    /// Send the client's `Host` header instead of the upstream's authority.
    #[serde(default)]
    pub preserve_host: bool,
    #[serde(default)]
    pub timeouts: TimeoutSpec,
    /// Where requests go, as `host:port` entries; a name stands for every
    /// address it resolves to. Empty: the URL's host and port. The URL still
    /// gives the scheme, the `Host` header and the TLS name.
    #[serde(default)]
    pub targets: Vec<String>,
    /// How a request picks among the targets.
    #[serde(default)]
    pub balance: BalanceSpec,
    /// How often names (in `targets` or the URL) are resolved again, so a
    /// service whose addresses change is followed without a reload. A failed
    /// lookup keeps that name's last addresses.
    #[serde(default = "default_resolve_every", with = "humantime_serde")]
    #[schemars(with = "crate::config::schema::HumanDuration")]
    pub resolve_every: Duration,
    /// Active health checks; without one a target is only judged by traffic.
    #[serde(default)]
    pub health_check: Option<HealthCheckSpec>,
    /// Passive ejection: a target failing live traffic is left out for a while.
    #[serde(default)]
    pub ejection: EjectionSpec,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BalanceSpec {
    /// Each target in turn.
    #[default]
    RoundRobin,
    /// The target with the fewest requests in flight from this node.
    LeastConnections,
    /// The same partner keeps reaching the same target (consistent hashing:
    /// a target coming or going moves only its own share of partners).
    PartnerHash,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckSpec {
    /// `GET` this path and expect 200; without it, a TCP connect (and the TLS
    /// handshake for `https`) is the check.
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default = "default_check_interval", with = "humantime_serde")]
    #[schemars(with = "crate::config::schema::HumanDuration")]
    pub interval: Duration,
    #[serde(default = "default_check_timeout", with = "humantime_serde")]
    #[schemars(with = "crate::config::schema::HumanDuration")]
    pub timeout: Duration,
    /// Consecutive passed checks that bring a target back.
    #[serde(default = "default_threshold")]
    pub healthy_after: usize,
    /// Consecutive failed checks that take a target out.
    #[serde(default = "default_threshold")]
    pub unhealthy_after: usize,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EjectionSpec {
    /// Consecutive failures of live traffic (connect errors, timeouts, 5xx
    /// answers) that eject a target; 0 turns ejection off.
    #[serde(default = "default_ejection_failures")]
    pub after_failures: u32,
    /// How long an ejected target is left out.
    #[serde(default = "default_ejection_duration", with = "humantime_serde")]
    #[schemars(with = "crate::config::schema::HumanDuration")]
    pub duration: Duration,
}

impl Default for EjectionSpec {
    fn default() -> Self {
        EjectionSpec {
            after_failures: default_ejection_failures(),
            duration: default_ejection_duration(),
        }
    }
}

fn default_resolve_every() -> Duration {
    Duration::from_secs(10)
}

fn default_check_interval() -> Duration {
    Duration::from_secs(5)
}

fn default_check_timeout() -> Duration {
    Duration::from_secs(1)
}

fn default_threshold() -> usize {
    2
}

fn default_ejection_failures() -> u32 {
    5
}

fn default_ejection_duration() -> Duration {
    Duration::from_secs(30)
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TimeoutSpec {
    /// TCP connect plus TLS handshake.
    #[serde(default, with = "humantime_serde::option")]
    #[schemars(with = "Option<crate::config::schema::HumanDuration>")]
    pub connect: Option<Duration>,
    /// Longest wait for any read from the upstream (response header or a body chunk).
    #[serde(default, with = "humantime_serde::option")]
    #[schemars(with = "Option<crate::config::schema::HumanDuration>")]
    pub read: Option<Duration>,
    /// Longest wait for any write to the upstream.
    #[serde(default, with = "humantime_serde::option")]
    #[schemars(with = "Option<crate::config::schema::HumanDuration>")]
    pub write: Option<Duration>,
    /// Whole upstream exchange, from connect to the last response byte.
    #[serde(default, with = "humantime_serde::option")]
    #[schemars(with = "Option<crate::config::schema::HumanDuration>")]
    pub total: Option<Duration>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// Stable name used in metrics and logs.
    pub name: String,
    pub methods: Vec<String>,
    /// Path template, e.g. `/partners/{partner}/orders/{id}`.
    pub path: String,
    #[schemars(with = "String")]
    pub upstream: Spanned<String>,
    #[serde(default)]
    pub timeouts: TimeoutSpec,
    /// Scopes a partner must hold (all of them) to use this route.
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub bind: BindSpec,
    /// JSON pointer into the response that must equal the caller's partner
    /// id; `*` walks every element of an array (`/items/*/partner`).
    /// Otherwise the response is replaced by a 502.
    #[serde(default)]
    pub response_bind: Option<String>,
    /// Largest request body accepted; bigger ones get 413.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Accept a request body on GET, HEAD, DELETE, OPTIONS and TRACE.
    /// Refused by default (400 `body_not_allowed`): backends disagree on
    /// whether such a body exists, and one that reads it acts on bytes no
    /// check looked at.
    #[serde(default)]
    pub allow_body: bool,
    /// Largest response buffered for `response_bind`; bigger ones get 502.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
    /// JSON Schema validation of the request.
    #[serde(default)]
    pub validate: Option<ValidateSpec>,
    /// What of the upstream's answer the partner gets.
    #[serde(default)]
    pub response: Option<RouteResponseSpec>,
    /// Requests per partner on this route, shared by every node.
    #[serde(default)]
    pub rate_limit: Option<crate::config::monitoring::RateSpec>,
    /// The object this route touches, for backends whose URLs do not name
    /// the partner: its owner is checked before the upstream sees anything.
    #[serde(default)]
    pub resource: Option<RouteResourceSpec>,
    /// For routes imported from OpenAPI: the file inline schemas' `$ref`s
    /// resolve against, and the draft they are written in.
    #[serde(skip)]
    pub schema_origin: Option<(PathBuf, SchemaDraft)>,
}

/// The JSON Schema dialect of an imported document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaDraft {
    /// OpenAPI 3.0: close to draft 4 (boolean `exclusiveMinimum`).
    Draft4,
    /// OpenAPI 3.1: JSON Schema 2020-12.
    Draft202012,
}

/// A route's response fields and caching.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteResponseSpec {
    /// JSON pointers (`*` = every array element) of the only fields kept.
    #[serde(default)]
    pub allow: Option<Vec<String>>,
    /// JSON pointers of fields removed.
    #[serde(default)]
    pub deny: Option<Vec<String>>,
    /// Per partner: pointers it may see although the filter would drop them.
    #[serde(default)]
    pub partner_exceptions: BTreeMap<String, Vec<String>>,
    /// `Cache-Control` for this route's answers; default `no-store`.
    #[serde(default)]
    pub cache_control: Option<String>,
}

/// A schema: a file under the schemas directory, or written inline.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum SchemaSource {
    File(String),
    Inline(serde_json::Value),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum UnknownParams {
    #[default]
    Allow,
    Refuse,
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidateSpec {
    /// Schema of the JSON body.
    #[serde(default)]
    pub body: Option<SchemaSource>,
    /// Object schema of the query parameters; values are typed as the
    /// schema declares (`?limit=5` is the integer 5).
    #[serde(default)]
    pub query: Option<SchemaSource>,
    /// Object schema of the path parameters.
    #[serde(default)]
    pub path: Option<SchemaSource>,
    /// Object schema of chosen headers (property names in lower case).
    #[serde(default)]
    pub headers: Option<SchemaSource>,
    /// Query parameters the query schema does not name: allowed or refused.
    #[serde(default)]
    pub unknown_query: UnknownParams,
    /// Accepted body media types; default `[application/json]`.
    #[serde(default)]
    pub content_types: Option<Vec<String>>,
    /// Whether an empty body is refused; default true when a body schema
    /// is given.
    #[serde(default)]
    pub body_required: Option<bool>,
    /// Deepest JSON nesting accepted (at most 64); default 32.
    #[serde(default)]
    pub max_depth: Option<usize>,
}

fn default_max_body_bytes() -> usize {
    1024 * 1024
}
fn default_max_response_bytes() -> usize {
    4 * 1024 * 1024
}
