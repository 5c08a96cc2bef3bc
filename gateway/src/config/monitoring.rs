//! Configuration of the audit trail, metrics, rate limits and abuse
//! detection. These settings apply when the gateway starts; a reload
//! changes policies (including the rate limits partners and routes carry),
//! not these.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AuditOutput {
    /// One JSON line per record on stdout (logs go to stderr).
    #[default]
    Stdout,
    /// A file, rotated by size.
    File,
    Off,
}

#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditSettings {
    #[serde(default)]
    pub output: AuditOutput,
    /// The file for `output: file`, relative to the gateway file.
    #[serde(default = "default_audit_path")]
    pub path: PathBuf,
    /// Size at which the file is rotated to `<path>.1`.
    #[serde(default = "default_audit_max_bytes")]
    pub max_bytes: u64,
    /// Rotated files kept (`<path>.1` … `<path>.<keep>`).
    #[serde(default = "default_audit_keep")]
    pub keep: usize,
    /// Share of allowed requests recorded (0.0–1.0). Denials and errors
    /// are always recorded.
    #[serde(default = "default_sample")]
    pub sample_allowed: f64,
    /// Records waiting to be written; when full, records are dropped and
    /// counted (the request is never held up).
    #[serde(default = "default_audit_queue")]
    pub queue: usize,
    /// A secret file (≥ 32 bytes) keying the chain hash, so the trail
    /// cannot be rewritten by someone who can only edit the file.
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

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// Count requests per partner (`portcullis_partner_requests_total`).
    #[serde(default = "default_true")]
    pub partner_label: bool,
    /// Distinct partner label values; later partners count as `_other`.
    #[serde(default = "default_max_partners")]
    pub max_partners: usize,
    /// A listener of its own that serves `/metrics` and nothing else, so
    /// Prometheus needs no path to the admin listener's key API.
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
/// (default: `requests`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateSpec {
    pub requests: u32,
    #[serde(with = "humantime_serde")]
    #[schemars(with = "super::schema::HumanDuration")]
    pub per: Duration,
    #[serde(default)]
    pub burst: Option<u32>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LimitStore {
    /// Shared through the Redis key store when there is one, else local.
    #[default]
    Auto,
    /// Each node counts alone.
    Local,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    #[serde(default)]
    pub store: LimitStore,
    /// How long a shared decision may take before the node decides alone.
    #[serde(default = "default_limit_timeout", with = "humantime_serde")]
    #[schemars(with = "super::schema::HumanDuration")]
    pub timeout: Duration,
    /// After Redis fails, how long the node decides alone before asking again.
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

/// Blocking of clients that keep failing authentication.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthFailureSettings {
    /// Failures from one client address within `window` before it is
    /// blocked; 0 turns this off.
    #[serde(default = "default_failures")]
    pub per_client: u32,
    /// Failures presenting one key id within `window` before that key is
    /// blocked; 0 turns this off.
    #[serde(default = "default_failures")]
    pub per_key: u32,
    #[serde(default = "default_failure_window", with = "humantime_serde")]
    #[schemars(with = "super::schema::HumanDuration")]
    pub window: Duration,
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
/// above its own recent average.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AnomalySettings {
    #[serde(default = "default_anomaly_interval", with = "humantime_serde")]
    #[schemars(with = "super::schema::HumanDuration")]
    pub interval: Duration,
    /// How many times the baseline counts as a jump.
    #[serde(default = "default_factor")]
    pub factor: f64,
    /// Below this many requests (or errors) in an interval, nothing is flagged.
    #[serde(default = "default_min_count")]
    pub min_count: u64,
    /// Intervals the baseline averages over (exponentially weighted).
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

#[derive(Debug, Clone, Default, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AbuseSettings {
    #[serde(default)]
    pub auth_failures: AuthFailureSettings,
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
