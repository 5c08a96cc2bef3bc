//! Configuration of the audit trail, metrics, rate limits and abuse
//! detection. These settings apply when the gateway starts; a reload
//! changes policies (including the rate limits partners and routes carry),
//! not these.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Where the audit trail is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AuditOutput {
    /// One JSON line per record on stdout (logs go to stderr).
    #[default]
    Stdout,
    /// One JSON line per record, appended to the file at `path` and rotated by size.
    File,
    /// No audit trail is written.
    Off,
}

/// The audit trail: one JSON line per request, written by a dedicated
/// thread from a bounded queue, so a slow disk never holds a request up.
/// Allowed requests may be sampled; denials and errors never are. The key
/// itself, the query string and bodies are never recorded. Events share
/// the trail: `blocked` (an address or key id blocked), `anomaly` (a
/// partner far above its baseline) and `records_dropped`. Each line ends
/// with a sequence number and a chain hash (BLAKE3 over the previous
/// line's chain and this line's bytes), which continues across restarts
/// and rotated files, so `portcullis audit verify` can name the first
/// altered, removed or reordered record.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditSettings {
    /// Where the trail is written: one JSON line per record on stdout (logs
    /// go to stderr), to a file, or nowhere.
    ///
    /// Default: `stdout`.
    #[serde(default)]
    pub output: AuditOutput,
    /// The file for `output: file`, relative to the gateway file. It is
    /// appended to, and the chain continues across restarts.
    #[serde(default = "default_audit_path")]
    pub path: PathBuf,
    /// Size in bytes at which the file is rotated to `<path>.1`, older
    /// rotated files moving on up to `<path>.<keep>`. With `output: file` it
    /// must be at least 4096.
    #[serde(default = "default_audit_max_bytes")]
    pub max_bytes: u64,
    /// How many rotated files are kept: `<path>.1` … `<path>.<keep>`.
    #[serde(default = "default_audit_keep")]
    pub keep: usize,
    /// Share of allowed requests recorded, from 0.0 to 1.0. Denials and
    /// errors are always recorded.
    #[serde(default = "default_sample")]
    pub sample_allowed: f64,
    /// How many records may wait for the writer thread; it must be greater
    /// than 0. When the queue is full, records are dropped, counted in
    /// `portcullis_audit_records_dropped_total` and noted in the trail by a
    /// `records_dropped` event with the count; the request is never held up.
    #[serde(default = "default_audit_queue")]
    pub queue: usize,
    /// A secret file (at least 32 bytes) keying the chain hash, relative to
    /// the gateway file, so someone who can edit the trail cannot recompute
    /// the chain. Without it, someone who can rewrite the whole file can
    /// recompute the chain. `portcullis audit verify` needs the same key
    /// (`--key-file`).
    #[serde(default)]
    pub chain_key_file: Option<PathBuf>,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            output: AuditOutput::default(),
            path: default_audit_path(),
            max_bytes: default_audit_max_bytes(),
            keep: default_audit_keep(),
            sample_allowed: default_sample(),
            queue: default_audit_queue(),
            chain_key_file: None,
        }
    }
}

fn default_audit_path() -> PathBuf {
    PathBuf::from("audit.log")
}
fn default_audit_max_bytes() -> u64 {
    100 * 1024 * 1024
}
fn default_audit_keep() -> usize {
    10
}
fn default_sample() -> f64 {
    1.0
}
fn default_audit_queue() -> usize {
    65_536
}

/// Prometheus metrics, served on the admin listener at `/metrics` (and,
/// with `address`, on a listener of their own that serves nothing else).
/// Labels are route names, stage names and stable codes, never raw paths;
/// partner label values are capped and can be switched off.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// Count requests per partner (`portcullis_partner_requests_total`, by
    /// partner and decision). With `false` they are not counted by partner.
    #[serde(default = "default_true")]
    pub partner_label: bool,
    /// Most distinct partner label values; partners seen after that are
    /// counted as `_other`.
    #[serde(default = "default_max_partners")]
    pub max_partners: usize,
    /// A listener of its own that serves `/metrics` and nothing else, over
    /// plain HTTP, so Prometheus needs no path to the admin listener's key
    /// API. The admin listener keeps serving `/metrics` too.
    #[serde(default)]
    pub address: Option<std::net::SocketAddr>,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        MetricsSettings {
            partner_label: true,
            max_partners: default_max_partners(),
            address: None,
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_max_partners() -> usize {
    200
}

/// A rate: `requests` per `per`, with bursts of up to `burst` at once
/// (default: `requests`). Limits are enforced by GCRA before validation;
/// a refused request gets 429 `rate_limited` with `Retry-After`. With the
/// Redis key store a limit is shared by every node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateSpec {
    /// Requests allowed per `per`; at least 1.
    pub requests: u32,
    /// The period `requests` are allowed in (`1m`); greater than 0.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "super::schema::HumanDuration")]
    pub per: Duration,
    /// Requests that may be admitted at once; at least 1.
    ///
    /// Default: `requests`.
    #[serde(default)]
    pub burst: Option<u32>,
}

/// Where rate limits are counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LimitStore {
    /// Shared through the Redis key store when `keys.store` is `redis`, else per node.
    #[default]
    Auto,
    /// Each node counts alone, always.
    Local,
}

/// How the rate limits that policy files give partners (`limits.rate`)
/// and routes (`rate_limit`) are counted. With the Redis key store they
/// are shared by every node (one Lua script, Redis's clock). When Redis
/// does not answer within `timeout`, the node decides alone with the same
/// limits for `retry_after_failure`, counts
/// `portcullis_rate_limit_local_decisions_total` and sets
/// `portcullis_rate_limit_store_up` to 0; it returns to shared limits by
/// itself. During an outage, a cluster of N nodes therefore admits up to N
/// times the limit.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    /// Whether limits are shared through Redis or counted on each node.
    ///
    /// Default: `auto`.
    #[serde(default)]
    pub store: LimitStore,
    /// Longest wait for a shared decision before this node decides alone.
    #[serde(default = "default_limit_timeout", with = "humantime_serde")]
    #[schemars(with = "super::schema::HumanDuration")]
    pub timeout: Duration,
    /// After Redis failed, how long the node decides alone before asking
    /// again.
    #[serde(default = "default_limit_retry", with = "humantime_serde")]
    #[schemars(with = "super::schema::HumanDuration")]
    pub retry_after_failure: Duration,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        RateLimitSettings {
            store: LimitStore::Auto,
            timeout: default_limit_timeout(),
            retry_after_failure: default_limit_retry(),
        }
    }
}

fn default_limit_timeout() -> Duration {
    Duration::from_millis(50)
}
fn default_limit_retry() -> Duration {
    Duration::from_secs(1)
}

/// Blocking of clients that keep failing authentication. Failures (401s
/// and suspended keys) are counted per client address and per key id over
/// a sliding window. Blocks are per node; they are audited (`blocked`
/// event), logged on `portcullis::suspicious` and counted
/// (`portcullis_clients_blocked_total`, `portcullis_blocked_clients`).
/// Operators list and lift them on the admin API: `GET /v1/blocks`,
/// `DELETE /v1/blocks/clients/{ip}`, `DELETE /v1/blocks/keys/{key_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthFailureSettings {
    /// Authentication failures from one client address within `window`
    /// before it is blocked: for `block_for`, every request from that
    /// address gets 429 `client_blocked` with `Retry-After`, before any key
    /// is looked at. 0 turns this off.
    #[serde(default = "default_failures")]
    pub per_client: u32,
    /// Failures presenting one key id within `window` before that key id is
    /// blocked: for `block_for`, it gets 429 `key_blocked`. 0 turns this off.
    #[serde(default = "default_failures")]
    pub per_key: u32,
    /// The sliding window failures are counted over; greater than 0.
    #[serde(default = "default_failure_window", with = "humantime_serde")]
    #[schemars(with = "super::schema::HumanDuration")]
    pub window: Duration,
    /// How long a block lasts.
    #[serde(default = "default_block_for", with = "humantime_serde")]
    #[schemars(with = "super::schema::HumanDuration")]
    pub block_for: Duration,
}

impl Default for AuthFailureSettings {
    fn default() -> Self {
        AuthFailureSettings {
            per_client: default_failures(),
            per_key: default_failures(),
            window: default_failure_window(),
            block_for: default_block_for(),
        }
    }
}

fn default_failures() -> u32 {
    50
}
fn default_failure_window() -> Duration {
    Duration::from_secs(60)
}
fn default_block_for() -> Duration {
    Duration::from_secs(300)
}

/// Flags a partner whose request or error count in an interval jumps far
/// above its own recent average. Each partner's requests and failures
/// (denials and errors) are counted per `interval` against an
/// exponentially weighted baseline of its own. A count above `factor` ×
/// baseline, and at least `min_count`, sets
/// `portcullis_partner_anomaly{partner,kind}` to 1 (`kind` is
/// `request_rate` or `error_rate`) until it subsides, and writes an
/// `anomaly` event into the audit trail.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AnomalySettings {
    /// The interval each partner's requests and failures are counted per;
    /// greater than 0.
    #[serde(default = "default_anomaly_interval", with = "humantime_serde")]
    #[schemars(with = "super::schema::HumanDuration")]
    pub interval: Duration,
    /// How many times its baseline a count must exceed to be flagged (the
    /// baseline times this counts as a jump); greater than 1.
    #[serde(default = "default_factor")]
    pub factor: f64,
    /// The least count that can be flagged: below this many requests (or
    /// failures) in an interval, nothing is flagged.
    #[serde(default = "default_min_count")]
    pub min_count: u64,
    /// Intervals the (exponentially weighted) baseline averages over; at
    /// least 1.
    #[serde(default = "default_baseline")]
    pub baseline_intervals: u32,
    /// Intervals a newly seen partner is only observed before it can be flagged.
    #[serde(default = "default_warmup")]
    pub warmup_intervals: u32,
}

impl Default for AnomalySettings {
    fn default() -> Self {
        AnomalySettings {
            interval: default_anomaly_interval(),
            factor: default_factor(),
            min_count: default_min_count(),
            baseline_intervals: default_baseline(),
            warmup_intervals: default_warmup(),
        }
    }
}

fn default_anomaly_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_factor() -> f64 {
    5.0
}
fn default_min_count() -> u64 {
    100
}
fn default_baseline() -> u32 {
    30
}
fn default_warmup() -> u32 {
    6
}

/// Abuse detection: blocking of client addresses and key ids that keep
/// failing authentication, and flagging of partners whose traffic jumps
/// far above their own baseline.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AbuseSettings {
    /// Brute-force blocking: a client address or key id that keeps failing
    /// authentication is refused for a while.
    #[serde(default)]
    pub auth_failures: AuthFailureSettings,
    /// Anomalies: a partner whose request or failure count jumps far above
    /// its own baseline is flagged.
    #[serde(default)]
    pub anomaly: AnomalySettings,
}

/// Checks that cannot be expressed by types alone.
pub fn problems(audit: &AuditSettings, abuse: &AbuseSettings) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if !(0.0..=1.0).contains(&audit.sample_allowed) {
        out.push(("audit.sample_allowed", "must be between 0 and 1".into()));
    }
    if audit.queue == 0 {
        out.push(("audit.queue", "must be greater than 0".into()));
    }
    if audit.output == AuditOutput::File && audit.max_bytes < 4096 {
        out.push(("audit.max_bytes", "must be at least 4096".into()));
    }
    let a = &abuse.anomaly;
    if a.interval.is_zero() {
        out.push(("abuse.anomaly.interval", "must be greater than 0".into()));
    }
    if a.factor <= 1.0 {
        out.push(("abuse.anomaly.factor", "must be greater than 1".into()));
    }
    if a.baseline_intervals == 0 {
        out.push((
            "abuse.anomaly.baseline_intervals",
            "must be at least 1".into(),
        ));
    }
    if abuse.auth_failures.window.is_zero() {
        out.push((
            "abuse.auth_failures.window",
            "must be greater than 0".into(),
        ));
    }
    out
}

/// A rate limit's own problems, as a message.
pub fn rate_problem(rate: &RateSpec) -> Option<&'static str> {
    if rate.requests == 0 {
        return Some("requests must be at least 1");
    }
    if rate.per.is_zero() {
        return Some("per must be greater than 0");
    }
    if rate.burst == Some(0) {
        return Some("burst must be at least 1");
    }
    None
}
