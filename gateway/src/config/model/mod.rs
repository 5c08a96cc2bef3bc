//! The YAML model, as users write it. Field names and defaults here are the
//! configuration reference in README.md: keep the two in step.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

mod policy;

pub use policy::*;

/// The gateway file given to `portcullis run --config`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GatewayFile {
    #[serde(default)]
    pub listen: Listen,
    #[serde(default)]
    pub admin: Admin,
    pub tls: TlsFiles,
    #[serde(default)]
    pub http: HttpSettings,
    /// Glob patterns of policy files, relative to the gateway file.
    #[serde(default = "default_policies")]
    #[schemars(with = "Vec<String>")]
    pub policies: Vec<Spanned<String>>,
    #[serde(default)]
    pub keys: KeysSettings,
    /// Where the ownership index of `resources:` lives.
    #[serde(default)]
    pub ownership: OwnershipSettings,
    #[serde(default)]
    pub reload: Reload,
    #[serde(default)]
    pub server: ServerSettings,
    #[serde(default)]
    pub identity: IdentitySettings,
    /// Directory of JSON Schema files routes name, relative to the
    /// gateway file. `$ref`s resolve inside it (and inside imported
    /// OpenAPI documents' directories), never over the network.
    #[serde(default = "default_schemas_dir")]
    pub schemas: PathBuf,
    #[serde(default)]
    pub response: ResponseSettings,
    #[serde(default)]
    pub audit: super::monitoring::AuditSettings,
    #[serde(default)]
    pub metrics: super::monitoring::MetricsSettings,
    #[serde(default)]
    pub rate_limits: super::monitoring::RateLimitSettings,
    #[serde(default)]
    pub abuse: super::monitoring::AbuseSettings,
}

/// What every response loses or gains on its way out.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResponseSettings {
    /// Upstream response headers removed; a trailing `*` matches any suffix.
    #[serde(default = "default_strip_response_headers")]
    pub strip_headers: Vec<String>,
    /// Upstream error bodies replaced by a problem document: `server`
    /// (5xx, the default), `all` (4xx too) or `none`.
    #[serde(default)]
    pub replace_errors: ReplaceErrors,
    /// Withhold responses carrying text shaped like an API key of ours or
    /// a PEM private key.
    #[serde(default = "default_true")]
    pub block_secrets: bool,
    /// How much of a replaced error body is logged for investigation.
    #[serde(default = "default_error_excerpt")]
    pub error_log_bytes: usize,
}

fn default_strip_response_headers() -> Vec<String> {
    [
        "server",
        "x-powered-by",
        "x-aspnet-version",
        "x-aspnetmvc-version",
        "via",
        "x-internal-*",
        "x-backend-*",
        "x-runtime",
        "x-debug-*",
    ]
    .into_iter()
    .map(String::from)
    .collect()
}
fn default_error_excerpt() -> usize {
    2048
}

impl Default for ResponseSettings {
    fn default() -> Self {
        ResponseSettings {
            strip_headers: default_strip_response_headers(),
            replace_errors: ReplaceErrors::default(),
            block_secrets: true,
            error_log_bytes: default_error_excerpt(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReplaceErrors {
    #[default]
    Server,
    All,
    None,
}

fn default_schemas_dir() -> PathBuf {
    PathBuf::from("schemas")
}

fn default_policies() -> Vec<Spanned<String>> {
    vec![Spanned::new(
        "policies/*.yaml".to_string(),
        serde_saphyr::Location::UNKNOWN,
        serde_saphyr::Location::UNKNOWN,
    )]
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// The public HTTPS listener.
    #[serde(default = "default_https")]
    pub https: SocketAddr,
    /// Optional plaintext listener that only redirects (GET/HEAD) or refuses.
    #[serde(default)]
    pub plaintext: Option<SocketAddr>,
    /// Port used in redirects to HTTPS when it differs from `https`'s port
    /// (for example behind a port-mapping load balancer).
    #[serde(default)]
    pub redirect_port: Option<u16>,
    /// Read the PROXY protocol (v1 or v2) on the HTTPS listener, from
    /// these networks only.
    #[serde(default)]
    pub proxy_protocol: Option<ProxyProtocolSettings>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProxyProtocolSettings {
    /// The balancers (addresses or CIDR networks) that must send a PROXY
    /// header; a connection from elsewhere that sends one is closed.
    pub from: Vec<String>,
}

fn default_https() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8443))
}

impl Default for Listen {
    fn default() -> Self {
        Listen {
            https: default_https(),
            plaintext: None,
            redirect_port: None,
            proxy_protocol: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    /// Health, readiness and metrics; never on the public listener.
    #[serde(default = "default_admin")]
    pub address: SocketAddr,
    /// File holding the bearer token of the key-management API. Without
    /// one, that API is disabled.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

fn default_admin() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9901))
}

impl Default for Admin {
    fn default() -> Self {
        Admin {
            address: default_admin(),
            token_file: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first. Relative to the gateway file.
    pub certificate: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub private_key: PathBuf,
    /// `Strict-Transport-Security` value sent on every response.
    #[serde(default = "default_hsts")]
    pub hsts: String,
}

fn default_hsts() -> String {
    "max-age=63072000; includeSubDomains".to_string()
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// A client must deliver a request's whole header block within this time.
    #[serde(default = "default_header_timeout", with = "humantime_serde")]
    #[schemars(with = "super::schema::HumanDuration")]
    pub header_timeout: Duration,
    /// A client must deliver a request body the gateway inspects (a body
    /// binding) within this time.
    #[serde(default = "default_body_timeout", with = "humantime_serde")]
    #[schemars(with = "super::schema::HumanDuration")]
    pub body_timeout: Duration,
    /// A client that takes longer than this to accept response bytes (or
    /// to send the next piece of a streamed body) is cut off, so slow
    /// readers cannot hold connections and upstream sockets forever.
    #[serde(default = "default_write_timeout", with = "humantime_serde")]
    #[schemars(with = "super::schema::HumanDuration")]
    pub client_io_timeout: Duration,
    /// Idle time allowed between requests on a kept-alive connection.
    #[serde(default = "default_keepalive", with = "humantime_serde")]
    #[schemars(with = "super::schema::HumanDuration")]
    pub keepalive_timeout: Duration,
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    #[serde(default = "default_max_uri_bytes")]
    pub max_uri_bytes: usize,
    /// Keep a well-formed incoming `X-Request-Id` instead of generating one.
    #[serde(default = "default_true")]
    pub trust_request_id: bool,
    /// Offer HTTP/2 by ALPN on the HTTPS listener.
    #[serde(default = "default_true")]
    pub h2: bool,
    /// More request headers through which your backends rewrite the URL
    /// or override the method. They are removed before forwarding, in
    /// addition to the built-in list (`X-Original-URL`, `X-Rewrite-URL`,
    /// `X-HTTP-Method-Override`, `X-HTTP-Method`, `X-Method-Override`, …),
    /// which always applies. A trailing `*` matches any suffix.
    #[serde(default)]
    pub override_headers: Vec<String>,
    /// Load balancers and CDNs (addresses or CIDR networks) whose word on
    /// the client's address is believed, through `client_ip_header`. Empty:
    /// the TCP peer is the client.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Where a trusted proxy puts the client's address: `x-forwarded-for`
    /// (the rightmost entry that is not a trusted proxy) or a header holding
    /// one address (`cf-connecting-ip`, `true-client-ip`, `x-real-ip`).
    #[serde(default = "default_client_ip_header")]
    pub client_ip_header: String,
}

fn default_client_ip_header() -> String {
    "x-forwarded-for".into()
}

fn default_header_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_body_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_write_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_keepalive() -> Duration {
    Duration::from_secs(60)
}
fn default_max_header_bytes() -> usize {
    16 * 1024
}
fn default_max_uri_bytes() -> usize {
    8 * 1024
}
fn default_true() -> bool {
    true
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            header_timeout: default_header_timeout(),
            body_timeout: default_body_timeout(),
            client_io_timeout: default_write_timeout(),
            keepalive_timeout: default_keepalive(),
            max_header_bytes: default_max_header_bytes(),
            max_uri_bytes: default_max_uri_bytes(),
            trust_request_id: true,
            h2: true,
            override_headers: Vec::new(),
            trusted_proxies: Vec::new(),
            client_ip_header: default_client_ip_header(),
        }
    }
}

/// Where keys live and how they are presented.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeysSettings {
    /// `embedded` (one node, a local file) or `redis` (many nodes).
    #[serde(default)]
    pub store: StoreKind,
    /// Connection to the Redis store; required when `store: redis`.
    #[serde(default)]
    pub redis: Option<RedisSettings>,
    /// The embedded store's file (hashes only). Relative to the gateway file.
    #[serde(default = "default_store_path")]
    pub path: PathBuf,
    /// File holding the 32-byte pepper as 64 hex characters; without it,
    /// the `PORTCULLIS_PEPPER` environment variable is used.
    #[serde(default)]
    pub pepper_file: Option<PathBuf>,
    /// Header carrying the key, besides `Authorization: Bearer`.
    #[serde(default = "default_key_header")]
    pub header: String,
    /// Most keys remembered per node (positive and negative entries).
    #[serde(default = "default_cache_entries")]
    pub cache_entries: usize,
    /// How long an unknown key is remembered as unknown.
    #[serde(default = "default_negative_ttl", with = "humantime_serde")]
    #[schemars(with = "super::schema::HumanDuration")]
    pub negative_ttl: Duration,
    /// Unknown keys one client address may present per `unknown_key_window`
    /// before its uncached keys are refused (429) without a store lookup.
    #[serde(default = "default_unknown_key_limit")]
    pub unknown_key_limit: u32,
    #[serde(default = "default_unknown_key_window", with = "humantime_serde")]
    #[schemars(with = "super::schema::HumanDuration")]
    pub unknown_key_window: Duration,
}

/// The ownership index (object → partner) for routes with `resource:`.
/// It lives in the key store's engine: with `keys.store: embedded`, a file;
/// with `redis`, the key store's Redis, under the same lease and epochs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OwnershipSettings {
    /// The embedded index's file (an append-only log). Relative to the
    /// gateway file; default: `owners.jsonl` beside `keys.path`, the
    /// directory the gateway already writes its key store to.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// With Redis: owners each node keeps in memory (trusted only while
    /// its key-store lease runs).
    #[serde(default = "default_ownership_cache")]
    pub cache_entries: usize,
}

impl Default for OwnershipSettings {
    fn default() -> Self {
        OwnershipSettings {
            path: None,
            cache_entries: default_ownership_cache(),
        }
    }
}

fn default_ownership_cache() -> usize {
    1_000_000
}

impl OwnershipSettings {
    /// The embedded index's file for a key store at `keys_path`.
    pub fn file(&self, keys_path: &std::path::Path) -> PathBuf {
        self.path
            .clone()
            .unwrap_or_else(|| keys_path.with_file_name("owners.jsonl"))
    }
}

fn default_unknown_key_limit() -> u32 {
    20
}
fn default_unknown_key_window() -> Duration {
    Duration::from_secs(60)
}

fn default_store_path() -> PathBuf {
    PathBuf::from("keys.json")
}
fn default_key_header() -> String {
    "x-api-key".to_string()
}
fn default_cache_entries() -> usize {
    100_000
}
fn default_negative_ttl() -> Duration {
    Duration::from_secs(5)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    #[default]
    Embedded,
    Redis,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// `redis://host:port/db` or `rediss://…` for TLS. Put no password here.
    #[serde(default)]
    pub url: Option<String>,
    /// Find the master through Redis Sentinel instead of `url`.
    #[serde(default)]
    pub sentinel: Option<SentinelSettings>,
    #[serde(default)]
    pub username: Option<String>,
    /// File holding the Redis password (AUTH).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// PEM CA certificates trusted for `rediss://` instead of the system roots.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Prefix of every Redis key Portcullis uses.
    #[serde(default = "default_redis_prefix")]
    pub prefix: String,
    /// Longest wait for one Redis reply.
    #[serde(default = "default_redis_timeout", with = "humantime_serde")]
    #[schemars(with = "super::schema::HumanDuration")]
    pub timeout: Duration,
    /// How long a node trusts its cache without hearing from Redis: the
    /// worst-case wait of a rotation, and the outage grace for known keys.
    #[serde(default = "default_lease", with = "humantime_serde")]
    #[schemars(with = "super::schema::HumanDuration")]
    pub lease: Duration,
    /// Replicas that must confirm each key change (Redis `WAIT`) before
    /// the call returns, so a failover cannot bring back a revoked key;
    /// a shortfall is logged and counted. 0 = do not wait.
    #[serde(default)]
    pub replicas_ack: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SentinelSettings {
    /// The monitored master's name.
    pub master: String,
    /// Sentinel addresses, `host:port`.
    pub addresses: Vec<String>,
    /// ACL user the Sentinels themselves require (their `user` / the
    /// master's `sentinel sentinel-user`); `keys.redis.username` is the
    /// master's.
    #[serde(default)]
    pub username: Option<String>,
    /// File holding the Sentinels' own password (their `requirepass`);
    /// `keys.redis.password_file` is the master's.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// TLS to the Sentinels and to the master they name, verified against
    /// `keys.redis.ca` (or the system roots when it is absent).
    #[serde(default)]
    pub tls: bool,
}

fn default_redis_prefix() -> String {
    "portcullis:".to_string()
}
fn default_redis_timeout() -> Duration {
    Duration::from_millis(250)
}
fn default_lease() -> Duration {
    Duration::from_secs(2)
}

impl Default for KeysSettings {
    fn default() -> Self {
        KeysSettings {
            store: StoreKind::Embedded,
            redis: None,
            path: default_store_path(),
            pepper_file: None,
            header: default_key_header(),
            cache_entries: default_cache_entries(),
            negative_ttl: default_negative_ttl(),
            unknown_key_limit: default_unknown_key_limit(),
            unknown_key_window: default_unknown_key_window(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Reload {
    /// How often policy and certificate files are checked for changes;
    /// `0s` turns the watch off (SIGHUP still reloads).
    #[serde(default = "default_watch", with = "humantime_serde")]
    #[schemars(with = "super::schema::HumanDuration")]
    pub watch_interval: Duration,
}

fn default_watch() -> Duration {
    Duration::from_secs(2)
}

impl Default for Reload {
    fn default() -> Self {
        Reload {
            watch_interval: default_watch(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Worker threads per listener; 0 means one per CPU.
    #[serde(default)]
    pub threads: usize,
    /// Written by pingora in daemon mode only (not used by `run` today).
    #[serde(default = "default_pid_file")]
    pub pid_file: PathBuf,
    /// Socket used to hand listeners to a new process on `--upgrade`.
    #[serde(default = "default_upgrade_sock")]
    pub upgrade_sock: PathBuf,
    /// On SIGTERM, how long the gateway keeps accepting while `/readyz`
    /// answers 503, so load balancers stop sending before the listeners
    /// close. 0 closes them at once.
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "super::schema::HumanDuration")]
    pub drain_delay: Duration,
    /// Once the listeners stop accepting (after `drain_delay` on SIGTERM,
    /// a few seconds after SIGQUIT), in-flight requests get this long to
    /// finish.
    #[serde(default = "default_grace", with = "humantime_serde")]
    #[schemars(with = "super::schema::HumanDuration")]
    pub grace_period: Duration,
    /// After the grace period, the longest wait for worker threads to stop.
    #[serde(default = "default_drain", with = "humantime_serde")]
    #[schemars(with = "super::schema::HumanDuration")]
    pub drain_timeout: Duration,
}

fn default_pid_file() -> PathBuf {
    PathBuf::from("/tmp/portcullis.pid")
}
fn default_upgrade_sock() -> PathBuf {
    PathBuf::from("/tmp/portcullis_upgrade.sock")
}
fn default_grace() -> Duration {
    Duration::from_secs(10)
}
fn default_drain() -> Duration {
    Duration::from_secs(5)
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            threads: 0,
            pid_file: default_pid_file(),
            upgrade_sock: default_upgrade_sock(),
            drain_delay: Duration::ZERO,
            grace_period: default_grace(),
            drain_timeout: default_drain(),
        }
    }
}

/// How the gateway tells an upstream who is calling.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentitySettings {
    /// Request headers removed before forwarding, so a client cannot claim
    /// an identity or origin the upstream might believe. A trailing `*`
    /// matches any suffix; matching ignores case.
    #[serde(default = "default_strip_headers")]
    pub strip_headers: Vec<String>,
    /// A signed statement of partner, request id, method, path and time,
    /// sent with every forwarded request. Off when absent.
    #[serde(default)]
    pub assertion: Option<AssertionSettings>,
}

fn default_strip_headers() -> Vec<String> {
    [
        "x-partner-*",
        "forwarded",
        "x-forwarded-*",
        "x-real-ip",
        "x-client-ip",
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

impl Default for IdentitySettings {
    fn default() -> Self {
        IdentitySettings {
            strip_headers: default_strip_headers(),
            assertion: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AssertionAlgorithm {
    /// EdDSA over Ed25519: upstreams verify with the public key only.
    Ed25519,
    /// HS256: faster, but every upstream holds the signing secret.
    HmacSha256,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AssertionSettings {
    pub algorithm: AssertionAlgorithm,
    /// Ed25519: a PKCS#8 PEM private key. HMAC: 64 hex characters (32
    /// bytes). Relative to the gateway file.
    pub key_file: PathBuf,
    #[serde(default = "default_assertion_header")]
    pub header: String,
    /// How long an assertion stays valid after it is issued.
    #[serde(default = "default_assertion_ttl", with = "humantime_serde")]
    #[schemars(with = "super::schema::HumanDuration")]
    pub ttl: Duration,
}

fn default_assertion_header() -> String {
    "x-portcullis-assertion".to_string()
}
fn default_assertion_ttl() -> Duration {
    Duration::from_secs(60)
}
