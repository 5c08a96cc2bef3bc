//! The policy files, as users write them: partners, upstreams, routes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

/// One policy file: partners, upstreams, the routes that reach them, kinds
/// of owned object and OpenAPI imports. Relative paths are relative to the
/// policy file, and unknown fields are errors.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// The partners allowed through, by the partner id their keys are issued
    /// for. Only declared partners get through (403 `partner_unknown`).
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, PartnerSpec>")]
    pub partners: BTreeMap<String, Spanned<PartnerSpec>>,
    /// The upstreams routes forward to, by name.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, UpstreamSpec>")]
    pub upstreams: BTreeMap<String, Spanned<UpstreamSpec>>,
    /// The routes: which requests are accepted, what is checked, and where
    /// they are forwarded.
    #[serde(default)]
    #[schemars(with = "Vec<RouteSpec>")]
    pub routes: Vec<Spanned<RouteSpec>>,
    /// OpenAPI 3.0/3.1 documents whose operations become routes, with
    /// their parameters and request bodies as validators.
    #[serde(default)]
    #[schemars(with = "Vec<OpenApiImport>")]
    pub openapi: Vec<Spanned<OpenApiImport>>,
    /// Kinds of object whose owner the gateway tracks (`order`), for
    /// backends whose URLs name an object and not the partner. A kind's name
    /// is 1–64 characters of `a-z`, `0-9`, `-` and `_`, and it is defined in
    /// one file only; each kind is its own namespace of ids.
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
    /// are learnt only from create routes and imports. A `list` route and
    /// `unknown: preflight` need it.
    #[serde(default)]
    pub owner: Option<String>,
}

fn default_id_pointer() -> String {
    "/id".to_string()
}

/// What a route does to which object kind. The object a request names must
/// be the caller's in the ownership index, checked before the upstream
/// sees anything; otherwise the answer is 404 `object_not_found`, the same
/// for another partner's object and an unknown one, so it does not confirm
/// that an id exists.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteResourceSpec {
    /// A name under `resources`.
    pub kind: String,
    /// What the route does to the object.
    pub action: ResourceAction,
    /// Where the request names the object: exactly one of `path`, `query` and
    /// `body`. `create` and `list` take none.
    ///
    /// Default: the template's `{id}`.
    #[serde(default)]
    pub id: ObjectIdSpec,
    /// What happens to an id the ownership index does not know: it is refused
    /// (404), or decided by a pre-flight read.
    ///
    /// Default: `refuse`.
    #[serde(default)]
    pub unknown: UnknownObjects,
    /// Path template of the pre-flight read (`/orders/{id}`: exactly one
    /// `{id}`, no query), sent as a `GET` to the route's upstream with the
    /// route's timeouts and the caller's `X-Partner-Id`; its answer's owner
    /// decides. A 2xx naming the caller lets the request through; another
    /// partner, 404 or 410 give 404 `object_not_found`; anything else gives
    /// 502 `preflight_failed`. Without it, a `read` route's own answer is the
    /// pre-flight; `change` and `delete` with `unknown: preflight` must have
    /// it.
    #[serde(default)]
    pub preflight: Option<String>,
    /// For `list`, and required there: pointer to the rows, with `*` for the
    /// array (`/orders/*`, or `/*` for a top-level array). Each row is judged
    /// by the kind's `owner` pointer, read inside the row.
    #[serde(default)]
    pub rows: Option<String>,
    /// For `list`: what happens to rows owned by another partner (or by no one
    /// readable).
    ///
    /// Default: `drop`.
    #[serde(default)]
    pub others: OtherRows,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ResourceAction {
    /// The answer names a new object, owned by the caller from then on.
    Create,
    /// The object must be the caller's, and so must the answer's owner when the kind has `owner`.
    Read,
    /// The object must be the caller's; the answer is not read.
    Change,
    /// The object must be the caller's; its id stays its owner's in the index.
    Delete,
    /// Names no object; each row at `rows` is judged by its own owner (see `others`).
    List,
}

/// Where a request names an object; exactly one of them. An id is 1–200
/// bytes of unreserved characters (`A-Z a-z 0-9 - . _ ~`), not `.` or
/// `..`; anything else gets 400 `object_id_invalid`, and no id at all 400
/// `object_id_missing`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ObjectIdSpec {
    /// Path parameter; its segment of the canonical path is the id.
    ///
    /// Default: `id` when the template has `{id}`.
    #[serde(default)]
    pub path: Option<String>,
    /// Query parameter name. Exactly one parameter spelled so is taken; a
    /// repeat, or a spelling a framework reads as the same name, gets 400
    /// `object_id_ambiguous`.
    #[serde(default)]
    pub query: Option<String>,
    /// JSON pointer into the request body; it must reach one string or
    /// non-negative integer. The body is read whole and checked before
    /// anything is forwarded.
    #[serde(default)]
    pub body: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum UnknownObjects {
    /// 404 `object_not_found`, for the owner too, until the object is learnt or imported.
    #[default]
    Refuse,
    /// A pre-flight `GET` (see `preflight`) decides by the owner it names; the kind needs `owner`.
    Preflight,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OtherRows {
    /// Cut those rows out; the rest of the answer passes byte for byte.
    #[default]
    Drop,
    /// Replace the whole answer with 502 `response_partner_mismatch`.
    Refuse,
}

/// Routes imported from an OpenAPI 3.0/3.1 document. Each operation
/// becomes a route with its method and path (and the `{partner}` binding
/// when the path has one); its `query`, `path` and `header` parameters
/// become the parameter schemas, and its `application/json` (or `+json`)
/// request body the body schema, `requestBody.required` deciding whether
/// it may be empty. The operation's `security` (or the document's) adds its
/// scopes to the route's. 3.1 schemas are JSON Schema 2020-12; 3.0 schemas
/// are validated as draft 4, with `nullable` admitting `null` and a
/// `readOnly` property refused in requests.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenApiImport {
    /// The document (YAML or JSON), relative to the policy file.
    pub file: PathBuf,
    /// The upstream every imported route goes to.
    pub upstream: String,
    /// Only these operationIds.
    ///
    /// Default: every operation in the document.
    #[serde(default)]
    pub operations: Option<Vec<String>>,
    /// Prefix of the imported route names: a route is named this prefix
    /// followed by its operationId.
    #[serde(default)]
    pub name_prefix: String,
    /// Scopes every imported route requires, besides those the operation's
    /// `security` adds.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Query parameters the document does not declare: allowed or refused.
    ///
    /// Default: `allow`.
    #[serde(default)]
    pub unknown_query: UnknownParams,
    /// Largest request body accepted on every imported route; bigger ones get
    /// 413 `body_too_large`.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Requests per partner on each imported route.
    #[serde(default)]
    pub rate_limit: Option<crate::config::monitoring::RateSpec>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PartnerStatus {
    /// The partner's keys are accepted.
    #[default]
    Active,
    /// Every key of the partner is refused with 403 `partner_suspended`.
    Suspended,
}

/// A partner allowed through the gateway, under the partner id its keys
/// are issued for. Keys of partners not declared in any policy file are
/// refused (403 `partner_unknown`).
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PartnerSpec {
    /// Whether the partner's keys are accepted. A suspension here takes effect
    /// on each node as it reloads the file; `portcullis keys suspend` is the
    /// runtime switch that is instant everywhere.
    ///
    /// Default: `active`.
    #[serde(default)]
    pub status: PartnerStatus,
    /// Scopes held; a route that lists scopes needs all of them (403
    /// `scope_denied`).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// When given, the only route names this partner may use (403
    /// `route_not_permitted`).
    ///
    /// Default: every route.
    #[serde(default)]
    pub routes: Option<Vec<String>>,
    /// When given, requests must come from these networks (CIDR, or a single
    /// address), or they get 403 `ip_not_allowed`. IPv4-mapped IPv6 addresses
    /// count as IPv4.
    ///
    /// Default: any address.
    #[serde(default)]
    pub allow_ips: Option<Vec<String>>,
    #[serde(default)]
    pub limits: PartnerLimits,
    /// Whether a data key may regenerate itself with `POST
    /// /.portcullis/v1/keys/rotate`. A key made that way cannot do it again,
    /// and only the key presented is replaced, so a stolen key's holder gets
    /// at most one rotation and never a chain of them. Off, a partner
    /// manages its keys with its management credential, never with a data
    /// key (403 `self_rotation_disabled`).
    ///
    /// Default: `false`.
    #[serde(default)]
    pub self_rotation: bool,
}

/// Limits on one partner's traffic.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PartnerLimits {
    /// Requests of this partner in flight at once on one node; more get 429
    /// `partner_concurrency_limit`.
    #[serde(default)]
    pub max_concurrent: Option<u32>,
    /// Requests of this partner over all routes, shared by every node; more
    /// get 429 `rate_limited`.
    #[serde(default)]
    pub rate: Option<crate::config::monitoring::RateSpec>,
}

/// Where a request names the partner it is for. Every value given must
/// equal the authenticated partner, byte for byte, or the request gets 403
/// `partner_mismatch`; a declared binding the request lacks gets 400
/// `partner_binding_missing`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BindSpec {
    /// Path parameter naming the partner.
    ///
    /// Default: `partner` when the template has `{partner}`.
    #[serde(default)]
    pub path: Option<String>,
    /// Query parameter name. Exactly one parameter spelled as bound must name
    /// the caller; a second one, or a spelling a framework reads as the same
    /// name, gets 400 `ambiguous_parameter`.
    #[serde(default)]
    pub query: Option<String>,
    /// Request header name. Exactly one such header must carry the caller's
    /// id; a name with `_` is an error, since it could never match.
    #[serde(default)]
    pub header: Option<String>,
    /// JSON pointer into the request body (RFC 6901), which is read as strict
    /// JSON.
    #[serde(default)]
    pub body: Option<String>,
}

/// An upstream routes forward to, with its own connection pool. Host names
/// are resolved when the configuration is loaded (a name that resolves to
/// nothing is a load error) and again in the background every
/// `resolve_every`, never per request. A request is sent again, to another
/// target, only when nothing of it was sent and its method is idempotent:
/// at most 3 attempts in all, within the route's `total` timeout.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSpec {
    /// `http://host:port` or `https://host:port`: host and port only, no path.
    pub url: String,
    /// For an `https` upstream: PEM file of CA certificates trusted instead of
    /// the system roots.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// TLS server name to send and verify.
    ///
    /// Default: the URL's host.
    #[serde(default)]
    pub server_name: Option<String>,
    /// Send the client's `Host` header instead of the upstream's authority.
    #[serde(default)]
    pub preserve_host: bool,
    #[serde(default)]
    pub timeouts: TimeoutSpec,
    /// Where requests go, as `host:port` entries; a name stands for every
    /// address it resolves to (at most 64 per upstream). The URL still gives
    /// the scheme, the `Host` header and the TLS name, so every target must
    /// answer to the same name.
    ///
    /// Default: the URL's host and port.
    #[serde(default)]
    pub targets: Vec<String>,
    /// How a request picks among the targets.
    ///
    /// Default: `round_robin`.
    #[serde(default)]
    pub balance: BalanceSpec,
    /// How often names (in `targets` or the URL) are resolved again, so a
    /// service whose addresses change is followed without a reload; at least
    /// 100ms. A failed lookup keeps that name's last addresses.
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

/// Active health checks of every target. Each change of a target's state
/// is logged on `portcullis::upstream`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckSpec {
    /// `GET` this path and expect 200 (with the upstream's `Host`, TLS name and
    /// CA); without it, a TCP connect (and the TLS handshake for `https`) is
    /// the check.
    #[serde(default)]
    pub path: Option<String>,
    /// How often each target is checked.
    #[serde(default = "default_check_interval", with = "humantime_serde")]
    #[schemars(with = "crate::config::schema::HumanDuration")]
    pub interval: Duration,
    /// Longest wait for one check.
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

/// Passive ejection: a target failing live traffic is left out for a
/// while.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EjectionSpec {
    /// Consecutive failures of live traffic (connect errors and timeouts,
    /// read or write timeouts and broken exchanges on a fresh connection, 5xx
    /// answers) that eject a target; any other answer resets the count, and a
    /// stale pooled connection is not the target's failure. 0 turns ejection
    /// off.
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

/// Timeouts of the exchange with an upstream.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TimeoutSpec {
    /// TCP connect plus TLS handshake.
    ///
    /// Default: `5s` (on a route: the upstream's).
    #[serde(default, with = "humantime_serde::option")]
    #[schemars(with = "Option<crate::config::schema::HumanDuration>")]
    pub connect: Option<Duration>,
    /// Longest single wait for a read from the upstream (the response header
    /// or a body chunk).
    ///
    /// Default: `30s` (on a route: the upstream's).
    #[serde(default, with = "humantime_serde::option")]
    #[schemars(with = "Option<crate::config::schema::HumanDuration>")]
    pub read: Option<Duration>,
    /// Longest single wait for a write to the upstream.
    ///
    /// Default: `30s` (on a route: the upstream's).
    #[serde(default, with = "humantime_serde::option")]
    #[schemars(with = "Option<crate::config::schema::HumanDuration>")]
    pub write: Option<Duration>,
    /// Whole upstream exchange, from connect to the last response byte,
    /// checked at every response chunk.
    ///
    /// Default: `60s` (on a route: the upstream's).
    #[serde(default, with = "humantime_serde::option")]
    #[schemars(with = "Option<crate::config::schema::HumanDuration>")]
    pub total: Option<Duration>,
}

/// A route: the requests it accepts, what is checked, and where they go.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// Stable, unique name, used in metrics and logs.
    pub name: String,
    /// Methods the route accepts: `GET`, `HEAD`, `POST`, `PUT`, `PATCH`,
    /// `DELETE`, `OPTIONS`. A method may be routed once per template.
    pub methods: Vec<String>,
    /// Path template, e.g. `/partners/{partner}/orders/{id}`: `{param}`
    /// matches one segment and `{*rest}` the remainder. Templates must be
    /// canonical (no `.`, `..`, `//` or escapes of unreserved characters).
    pub path: String,
    /// The upstream, by its name under `upstreams`, that requests go to.
    #[schemars(with = "String")]
    pub upstream: Spanned<String>,
    /// Overrides the upstream's `timeouts`, field by field.
    #[serde(default)]
    pub timeouts: TimeoutSpec,
    /// Scopes a partner must hold (all of them) to use this route (403
    /// `scope_denied`).
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub bind: BindSpec,
    /// JSON pointer into 2xx responses that must equal the caller's partner
    /// id; `*` walks every element of an array (`/items/*/partner`).
    /// Otherwise (another id, the field missing, not JSON, compressed, or over
    /// `max_response_bytes`) the response is replaced by 502
    /// `response_partner_mismatch` or `response_too_large`.
    #[serde(default)]
    pub response_bind: Option<String>,
    /// Largest request body accepted; bigger ones get 413 `body_too_large`.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Accept a request body on GET, HEAD, DELETE, OPTIONS and TRACE.
    /// Refused by default (400 `body_not_allowed`): backends disagree on
    /// whether such a body exists, and one that reads it acts on bytes no
    /// check looked at. Routes imported from OpenAPI set it when the
    /// operation declares a request body.
    #[serde(default)]
    pub allow_body: bool,
    /// Largest response the gateway holds to judge it (for `response_bind`, a
    /// field filter or an ownership check); bigger ones get 502.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
    /// JSON Schema validation of the request, before anything reaches the
    /// upstream.
    #[serde(default)]
    pub validate: Option<ValidateSpec>,
    /// What of the upstream's answer the partner gets.
    #[serde(default)]
    pub response: Option<RouteResponseSpec>,
    /// Requests per partner on this route, shared by every node; more get 429
    /// `rate_limited`.
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

/// A route's response fields and caching. Field filters apply to 2xx
/// answers, which are held (up to `max_response_bytes`): bigger ones get
/// 502 `response_too_large`, answers that are not JSON or are compressed
/// 502 `response_not_filterable`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteResponseSpec {
    /// JSON pointers (`*` = every array element) of the only fields kept; the
    /// alternative to `deny`.
    #[serde(default)]
    pub allow: Option<Vec<String>>,
    /// JSON pointers (`*` = every array element) of fields removed.
    #[serde(default)]
    pub deny: Option<Vec<String>>,
    /// Per partner: pointers it may see although the filter would drop them.
    #[serde(default)]
    pub partner_exceptions: BTreeMap<String, Vec<String>>,
    /// `Cache-Control` sent with this route's answers.
    ///
    /// Default: `no-store`.
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
    /// Parameters the schema does not name pass.
    #[default]
    Allow,
    /// Parameters the schema does not name are violations (400 `schema_violation`).
    Refuse,
}

/// JSON Schema validation of a request. Failures answer 400
/// `schema_violation` with up to 10 `violations`, each naming where and
/// which rule, never the offending value.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidateSpec {
    /// Schema of the JSON body: a file under `schemas`, or a schema written
    /// inline.
    #[serde(default)]
    pub body: Option<SchemaSource>,
    /// Object schema of the query parameters; values are typed as the
    /// schema declares (`?limit=5` is the integer 5, `?limit=five` a type
    /// violation).
    #[serde(default)]
    pub query: Option<SchemaSource>,
    /// Object schema of the path parameters.
    #[serde(default)]
    pub path: Option<SchemaSource>,
    /// Object schema of chosen headers (property names in lower case).
    #[serde(default)]
    pub headers: Option<SchemaSource>,
    /// Query parameters the query schema does not name: allowed or refused.
    ///
    /// Default: `allow`.
    #[serde(default)]
    pub unknown_query: UnknownParams,
    /// Accepted body media types; any other gets 415 `unsupported_media_type`,
    /// answered before the body is read.
    ///
    /// Default: `[application/json]`.
    #[serde(default)]
    pub content_types: Option<Vec<String>>,
    /// Whether an empty body is refused (400 `body_required`).
    ///
    /// Default: `true` when a body schema is given.
    #[serde(default)]
    pub body_required: Option<bool>,
    /// Deepest JSON nesting accepted in the body, at most 64; deeper bodies
    /// get 400 `json_too_deep`.
    ///
    /// Default: `32`.
    #[serde(default)]
    pub max_depth: Option<usize>,
}

fn default_max_body_bytes() -> usize {
    1024 * 1024
}
fn default_max_response_bytes() -> usize {
    4 * 1024 * 1024
}
