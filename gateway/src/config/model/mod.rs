//! The YAML model, as users write it. The doc comments here are the
//! configuration reference: `portcullis config-schema` turns them into the
//! editors' schemas and `portcullis reference` into the book's field tables
//! (docs/src/reference/generated/), and tests fail when either is stale.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

mod policy;

pub use policy::*;

/// The gateway file given to `portcullis run --config`. A deployment is
/// one gateway file and the policy files it names. Relative paths are
/// relative to the file that contains them, and unknown fields are errors.
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
    /// Glob patterns of policy files, relative to the gateway file. Each
    /// pattern must match at least one file.
    #[serde(default = "default_policies")]
    #[schemars(with = "Vec<String>")]
    pub policies: Vec<Spanned<String>>,
    #[serde(default)]
    pub keys: KeysSettings,
    /// Where the ownership index of `resources:` lives: in the key store's
    /// engine, a file with `keys.store: embedded` and the key store's Redis
    /// with `redis`.
    #[serde(default)]
    pub ownership: OwnershipSettings,
    #[serde(default)]
    pub reload: Reload,
    #[serde(default)]
    pub server: ServerSettings,
    #[serde(default)]
    pub identity: IdentitySettings,
    /// Directory of the JSON Schema files policies name, relative to the
    /// gateway file. `$ref`s resolve only inside it (and inside imported
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
    #[serde(default)]
    pub traces: super::traces::TracesSettings,
    #[serde(default)]
    pub partner_listener: super::partner::PartnerListenerSettings,
}

/// What every response loses or gains on its way out.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResponseSettings {
    /// Upstream response headers removed from every answer; a trailing `*`
    /// matches any suffix.
    #[serde(default = "default_strip_response_headers")]
    pub strip_headers: Vec<String>,
    /// Which upstream error answers have their body replaced by a problem
    /// document (`upstream_failed`, with the request id). They keep their
    /// status but lose their body and headers such as `Location`, `Set-Cookie`
    /// and `Content-Encoding`.
    ///
    /// Default: `server`.
    #[serde(default)]
    pub replace_errors: ReplaceErrors,
    /// Withhold answers carrying text shaped like one of our API keys or a PEM
    /// private key. A held answer becomes 502 `response_leak_blocked`, a
    /// streamed one is cut before the chunk that would complete the match, and
    /// an upstream header carrying one also turns the answer into the 502.
    /// `portcullis check` warns when this is off.
    #[serde(default = "default_true")]
    pub block_secrets: bool,
    /// How much of a replaced error body is logged for investigation (target
    /// `portcullis::upstream_error`).
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
    /// 5xx answers only.
    #[default]
    Server,
    /// 4xx and 5xx answers.
    All,
    /// Nothing is replaced: upstream error answers pass unchanged.
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

/// The listeners clients connect to. Only `listen.https` faces partners.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// The public HTTPS listener.
    #[serde(default = "default_https")]
    pub https: SocketAddr,
    /// An optional plaintext listener. It answers GET and HEAD with a 308
    /// redirect to HTTPS and everything else with 426, and never forwards a
    /// request.
    #[serde(default)]
    pub plaintext: Option<SocketAddr>,
    /// Port written into the plaintext listener's redirects, when it differs
    /// from `https`'s port (for example behind a port-mapping load balancer).
    ///
    /// Default: `listen.https`'s port.
    #[serde(default)]
    pub redirect_port: Option<u16>,
    /// Read a PROXY protocol header (v1 or v2) before TLS on the HTTPS
    /// listener, from the balancers in `from` only.
    ///
    /// Default: none, so no PROXY header is read.
    #[serde(default)]
    pub proxy_protocol: Option<ProxyProtocolSettings>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProxyProtocolSettings {
    /// The balancers (addresses or CIDR networks) that must send a PROXY
    /// header; the address it carries becomes the client's. A connection from
    /// them without one, or from anywhere else with one, is closed.
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

/// The admin listener: health, readiness, metrics and the key-management
/// API. Keep it on loopback or a monitoring-only network.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    /// Serves `/healthz` (liveness), `/readyz` (readiness), `/metrics` and the
    /// key API; never on the public listener. `/readyz` answers 503 while the
    /// node drains, while a Redis node is past its lease and while the audit
    /// trail cannot be written.
    #[serde(default = "default_admin")]
    pub address: SocketAddr,
    /// File holding the bearer token of the admin API (at least 32
    /// characters). Without one, the key-management API is disabled.
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

/// The HTTPS listener's certificate and key. They are validated at load
/// (readable, PEM, a matching pair, currently valid) and re-read without a
/// restart on SIGHUP or when the files change; a broken replacement is
/// refused and the old pair keeps serving.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first. Relative to the gateway file.
    pub certificate: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub private_key: PathBuf,
    /// `Strict-Transport-Security` value sent on every response, proxied or
    /// generated.
    #[serde(default = "default_hsts")]
    pub hsts: String,
}

fn default_hsts() -> String {
    "max-age=63072000; includeSubDomains".to_string()
}

/// Limits and timeouts of client connections, and how the client's
/// address is found.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// A client must deliver a request's whole header block within this time:
    /// the first request from the connection's start, later ones on a
    /// kept-alive connection from their first byte. An HTTP/2 connection must
    /// send its preface within the same time.
    #[serde(default = "default_header_timeout", with = "humantime_serde")]
    #[schemars(with = "super::schema::HumanDuration")]
    pub header_timeout: Duration,
    /// A request body the gateway reads whole (on buffered routes, such as
    /// those with a body schema or a body binding) must arrive within this
    /// time, or the request gets 408 `body_timeout`.
    #[serde(default = "default_body_timeout", with = "humantime_serde")]
    #[schemars(with = "super::schema::HumanDuration")]
    pub body_timeout: Duration,
    /// A client that takes longer than this to accept response bytes (or
    /// to send the next piece of a streamed body) is cut off, so slow
    /// readers cannot hold connections and upstream sockets forever.
    #[serde(default = "default_write_timeout", with = "humantime_serde")]
    #[schemars(with = "super::schema::HumanDuration")]
    pub client_io_timeout: Duration,
    /// Idle time allowed between requests on a kept-alive connection; also
    /// HTTP/2's idle timeout.
    #[serde(default = "default_keepalive", with = "humantime_serde")]
    #[schemars(with = "super::schema::HumanDuration")]
    pub keepalive_timeout: Duration,
    /// Largest request header block accepted; larger ones get 431.
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    /// Longest request target accepted; longer ones get 414.
    #[serde(default = "default_max_uri_bytes")]
    pub max_uri_bytes: usize,
    /// Keep a well-formed incoming `X-Request-Id` (8–64 characters of
    /// `A-Za-z0-9._:-`) instead of generating one.
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
    /// Load balancers and CDNs (addresses or CIDR networks; never `0.0.0.0/0`)
    /// whose word on the client's address is believed, through
    /// `client_ip_header`. Empty: the TCP peer is the client.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Where a trusted proxy puts the client's address: `x-forwarded-for`
    /// (the rightmost entry that is not a trusted proxy) or a header holding
    /// one address (`cf-connecting-ip`, `true-client-ip`, `x-real-ip`). It is
    /// removed before forwarding. A trusted proxy that names no address, or
    /// something that is not one address, gets 400 `client_address_invalid`.
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

/// Where keys live and how they are presented. Only a keyed hash of each
/// key (BLAKE3 with the pepper) is stored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeysSettings {
    /// Where keys, and the ownership index, are kept.
    ///
    /// Default: `embedded`.
    #[serde(default)]
    pub store: StoreKind,
    /// Connection to the Redis store; required when `store: redis`.
    #[serde(default)]
    pub redis: Option<RedisSettings>,
    /// The embedded store's file, holding key hashes only (mode 0600).
    /// Relative to the gateway file.
    #[serde(default = "default_store_path")]
    pub path: PathBuf,
    /// File holding the 32-byte pepper as 64 hex characters
    /// (`openssl rand -hex 32`); without it, the `PORTCULLIS_PEPPER`
    /// environment variable is read, and `run` refuses to start without a
    /// pepper. Losing the pepper invalidates every key.
    #[serde(default)]
    pub pepper_file: Option<PathBuf>,
    /// Header carrying the key, besides `Authorization: Bearer`.
    #[serde(default = "default_key_header")]
    pub header: String,
    /// Most keys remembered per node, known and unknown ones alike.
    #[serde(default = "default_cache_entries")]
    pub cache_entries: usize,
    /// How long an unknown key is remembered as unknown.
    #[serde(default = "default_negative_ttl", with = "humantime_serde")]
    #[schemars(with = "super::schema::HumanDuration")]
    pub negative_ttl: Duration,
    /// Unknown keys one client address may present per `unknown_key_window`
    /// before its uncached keys are refused (429 `too_many_unknown_keys`)
    /// without a store lookup.
    #[serde(default = "default_unknown_key_limit")]
    pub unknown_key_limit: u32,
    /// The window `unknown_key_limit` counts over.
    #[serde(default = "default_unknown_key_window", with = "humantime_serde")]
    #[schemars(with = "super::schema::HumanDuration")]
    pub unknown_key_window: Duration,
    /// How often each node writes when its keys were last used to the store,
    /// in one batch (never a write per request). Listings show that time,
    /// to the minute, up to this much behind.
    #[serde(default = "default_usage_flush", with = "humantime_serde")]
    #[schemars(with = "super::schema::HumanDuration")]
    pub last_used_flush: Duration,
}

fn default_usage_flush() -> Duration {
    Duration::from_secs(60)
}

/// The ownership index (object → partner) for routes with `resource:`.
/// It lives in the key store's engine: with `keys.store: embedded`, a file;
/// with `redis`, the key store's Redis, under the same lease and epochs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OwnershipSettings {
    /// With `keys.store: embedded`, the ownership index of routes with
    /// `resource:`: an append-only log of JSON lines (mode 0600). The running
    /// gateway locks the same name with the extension `.owner` (by default
    /// `owners.owner`). It is opened at start even when no policy has
    /// `resources:`. By default it lives in the key store's directory, which
    /// the gateway already writes; a path given here is relative to the
    /// gateway file.
    ///
    /// Default: `owners.jsonl` beside `keys.path`.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// With `keys.store: redis`: the most owners each node keeps in memory,
    /// trusted only while its key-store lease runs.
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
    /// One node: key hashes in a local file (`keys.path`).
    #[default]
    Embedded,
    /// Many nodes sharing keys, revocations and the ownership index through Redis (`keys.redis`).
    Redis,
}

/// The Redis key store: standalone, with TLS (`rediss://`), AUTH, or found
/// through Sentinel.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// `redis://host:port/db`, or `rediss://…` for TLS. Give exactly one of
    /// `url` and `sentinel`. Put no password here.
    #[serde(default)]
    pub url: Option<String>,
    /// Find the master through Redis Sentinel instead of `url`.
    #[serde(default)]
    pub sentinel: Option<SentinelSettings>,
    /// ACL user for AUTH to the master.
    #[serde(default)]
    pub username: Option<String>,
    /// File holding the Redis password (AUTH); the password is read from a
    /// file, never from the configuration.
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
    /// worst-case wait of a rotation (one lease plus `timeout`), and the
    /// outage grace for known keys.
    #[serde(default = "default_lease", with = "humantime_serde")]
    #[schemars(with = "super::schema::HumanDuration")]
    pub lease: Duration,
    /// Replicas that must confirm each key change (Redis `WAIT`) before
    /// the call returns, so a failover cannot bring back a revoked key;
    /// a shortfall is logged and counted. 0 = do not wait.
    #[serde(default)]
    pub replicas_ack: u32,
}

/// Redis Sentinel: where the master is found.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SentinelSettings {
    /// The name of the master the Sentinels monitor.
    pub master: String,
    /// Sentinel addresses, as `host:port`.
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
            last_used_flush: default_usage_flush(),
        }
    }
}

/// How configuration changes are picked up. A reload (SIGHUP or a file
/// change) applies `policies` and the policy files, `identity`, `response`,
/// `schemas`, `tls.hsts` and the `http` settings the plan holds
/// (`body_timeout`, `client_io_timeout`, `max_header_bytes`,
/// `max_uri_bytes`, `trust_request_id`, `override_headers`,
/// `trusted_proxies`, `client_ip_header`). Everything built once at start
/// needs a restart: `listen`, `admin`, `server`, `keys`, `ownership`,
/// `reload`, `audit`, `metrics`, `rate_limits`, `abuse`, the TLS file
/// paths, `http.header_timeout`, `http.keepalive_timeout` and `http.h2`. A
/// reload that changes one of these is refused whole, with an error naming
/// each such setting, and the running configuration keeps serving; the
/// policy edits in the same reload wait too, so what runs is always one
/// file's worth of configuration. `portcullis check --reload` prints this
/// classification and every file the watch covers. The certificate files
/// are re-read on SIGHUP or change without a restart.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Reload {
    /// How often the watched files (the gateway file, the policy files and the
    /// files they name, such as schemas, OpenAPI documents, CAs, the assertion
    /// key and the certificates) are checked for changes; `0s` turns the watch
    /// off (SIGHUP still reloads).
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

/// The process: worker threads, in-place upgrades and shutdown.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Worker threads per listener; 0 means one per CPU.
    #[serde(default)]
    pub threads: usize,
    /// pingora's pid file, written in daemon mode only (not used by `run`
    /// today).
    #[serde(default = "default_pid_file")]
    pub pid_file: PathBuf,
    /// pingora's upgrade socket, used to hand listeners to a new process on
    /// `--upgrade`. Keep it in a directory only the gateway can enter (such as
    /// `/run/portcullis`).
    #[serde(default = "default_upgrade_sock")]
    pub upgrade_sock: PathBuf,
    /// On SIGTERM, how long the gateway keeps accepting while `/readyz`
    /// answers 503, so load balancers stop sending before the listeners
    /// close. 0 closes them at once; a second SIGTERM ends the delay.
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

/// A compact JWT sent with every forwarded request, signed per request.
/// Its claims name the partner (`sub`), the upstream (`aud`), the request
/// id (`jti`), the method (`htm`) and the path and query (`htu`), so a
/// token lifted from one request is worthless on another.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AssertionSettings {
    /// How assertions are signed.
    pub algorithm: AssertionAlgorithm,
    /// Ed25519: a PKCS#8 PEM private key
    /// (`openssl genpkey -algorithm ed25519 -out assertion-key.pem`). HMAC: 64
    /// hex characters (32 bytes). Relative to the gateway file.
    pub key_file: PathBuf,
    /// Header carrying the assertion; a client's own copy is removed.
    #[serde(default = "default_assertion_header")]
    pub header: String,
    /// How long an assertion stays valid after it is issued (`exp` − `iat`).
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
