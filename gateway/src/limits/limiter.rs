//! The rate-limit stage: a partner's limit over all routes and its limit
//! on the route, decided in Redis when the key store is Redis, else (and
//! whenever Redis does not answer in time) by this node alone.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts};

use super::gcra::{self, Rate};
use super::shared::SharedLimiter;
use crate::keys::redis_store::RedisStore;

#[derive(Clone)]
pub struct LimitStats {
    pub limited: IntCounterVec,
    pub store_up: IntGauge,
    pub local_decisions: IntCounter,
}

impl LimitStats {
    pub fn new() -> Result<LimitStats, prometheus::Error> {
        let stats = LimitStats {
            limited: IntCounterVec::new(
                Opts::new(
                    "rate_limited_total",
                    "Requests refused by a rate limit, by route and limit scope",
                ),
                &["route", "scope"],
            )?,
            store_up: IntGauge::new(
                "rate_limit_store_up",
                "1 while shared rate limits are decided in Redis (or none are shared), else 0",
            )?,
            local_decisions: IntCounter::new(
                "rate_limit_local_decisions_total",
                "Rate-limit decisions this node made alone because Redis did not answer",
            )?,
        };
        stats.store_up.set(1);
        Ok(stats)
    }
}

/// One limit that applies to a request.
pub struct Check {
    /// `partner` or `route`: which limit, for headers and metrics.
    pub scope: &'static str,
    pub key: String,
    pub rate: Rate,
}

/// The verdict, with the `RateLimit-Policy` and `RateLimit` header values
/// (draft-ietf-httpapi-ratelimit-headers) a client paces itself by.
#[derive(Debug, Clone)]
pub struct Limited {
    pub allowed: bool,
    /// Which limit refused.
    pub scope: &'static str,
    pub retry_after: Duration,
    pub policy_header: String,
    pub state_header: String,
}

pub struct RateLimiter {
    shared: Option<SharedLimiter>,
    timeout: Duration,
    retry_after_failure: Duration,
    /// Until when (µs on `now_us`'s clock) the node decides alone.
    shared_down_until: AtomicU64,
    local: Mutex<HashMap<String, u64>>,
    stats: LimitStats,
}

/// Local keys are dropped once this many are held and their TAT passed.
const LOCAL_SWEEP_AT: usize = 100_000;

fn now_us() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    // Offset by one so 0 can mean "never" in `shared_down_until`.
    start.elapsed().as_micros() as u64 + 1
}

fn ceil_secs(us: u64) -> u64 {
    us.div_ceil(1_000_000)
}

impl RateLimiter {
    pub fn new(
        redis: Option<Arc<RedisStore>>,
        timeout: Duration,
        retry_after_failure: Duration,
        stats: LimitStats,
    ) -> RateLimiter {
        RateLimiter {
            shared: redis.map(SharedLimiter::new),
            timeout,
            retry_after_failure,
            shared_down_until: AtomicU64::new(0),
            local: Mutex::new(HashMap::new()),
            stats,
        }
    }

    /// Checks every limit; consumes from all only when all allow.
    pub async fn check(&self, route: &str, checks: &[Check]) -> Option<Limited> {
        if checks.is_empty() {
            return None;
        }
        let per_key = match self.decide_shared(checks).await {
            Some(v) => v,
            None => self.decide_locally(checks),
        };
        let refused_by = per_key.iter().position(|(_, retry)| *retry > 0);
        let mut policy = Vec::with_capacity(checks.len());
        let mut state = Vec::with_capacity(checks.len());
        for (check, (ahead, _)) in checks.iter().zip(&per_key) {
            let window = check.rate.per.as_secs().max(1);
            policy.push(format!(
                "\"{}\";q={};w={window}",
                check.scope, check.rate.requests
            ));
            let remaining = if refused_by.is_some() {
                0
            } else {
                check.rate.remaining(*ahead)
            };
            state.push(format!(
                "\"{}\";r={remaining};t={}",
                check.scope,
                ceil_secs(*ahead)
            ));
        }
        let (allowed, scope, retry_us) = match refused_by {
            Some(i) => (false, checks[i].scope, per_key[i].1),
            None => (true, "", 0),
        };
        if !allowed {
            self.stats.limited.with_label_values(&[route, scope]).inc();
        }
        Some(Limited {
            allowed,
            scope,
            retry_after: Duration::from_secs(ceil_secs(retry_us).max(1)),
            policy_header: policy.join(", "),
            state_header: state.join(", "),
        })
    }

    /// Per check: (µs the TAT stands ahead, µs until retry or 0), or None
    /// when this node must decide alone.
    async fn decide_shared(&self, checks: &[Check]) -> Option<Vec<(u64, u64)>> {
        let shared = self.shared.as_ref()?;
        if now_us() < self.shared_down_until.load(Ordering::Relaxed) {
            return None;
        }
        let keyed: Vec<(String, Rate)> = checks.iter().map(|c| (c.key.clone(), c.rate)).collect();
        match tokio::time::timeout(self.timeout, shared.check(&keyed)).await {
            Ok(Ok(verdict)) => {
                self.stats.store_up.set(1);
                let mut per_key = verdict.per_key;
                // Only the first refusing limit reports a retry time.
                if let Some(i) = verdict.refused_by {
                    for (j, entry) in per_key.iter_mut().enumerate() {
                        if j != i {
                            entry.1 = 0;
                        }
                    }
                }
                Some(per_key)
            }
            failed => {
                let reason = match failed {
                    Ok(Err(e)) => e,
                    _ => "no answer in time".to_string(),
                };
                tracing::warn!(
                    target: "portcullis::limits",
                    error = %reason,
                    "shared rate limits unavailable; this node decides alone for now"
                );
                self.stats.store_up.set(0);
                let retry = self.retry_after_failure.as_micros() as u64;
                self.shared_down_until
                    .store(now_us() + retry, Ordering::Relaxed);
                None
            }
        }
    }

    fn decide_locally(&self, checks: &[Check]) -> Vec<(u64, u64)> {
        if self.shared.is_some() {
            self.stats.local_decisions.inc();
        }
        let now = now_us();
        let Ok(mut tats) = self.local.lock() else {
            // A poisoned map means a panic elsewhere; refuse nothing rather
            // than everything, and say so.
            tracing::error!(target: "portcullis::limits", "local rate-limit state unusable");
            return checks.iter().map(|_| (0, 0)).collect();
        };
        if tats.len() >= LOCAL_SWEEP_AT {
            tats.retain(|_, tat| *tat > now);
        }
        let steps: Vec<gcra::Step> = checks
            .iter()
            .map(|c| gcra::step(tats.get(&c.key).copied(), now, &c.rate))
            .collect();
        let refused = steps.iter().position(|s| !s.allowed);
        if refused.is_none() {
            for (c, s) in checks.iter().zip(&steps) {
                tats.insert(c.key.clone(), s.new_tat);
            }
        }
        steps
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let retry = if Some(i) == refused {
                    s.retry_us.max(1)
                } else {
                    0
                };
                (s.ahead_us, retry)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::monitoring::RateSpec;

    fn check(scope: &'static str, key: &str, requests: u32) -> Check {
        Check {
            scope,
            key: key.to_string(),
            rate: Rate::new(&RateSpec {
                requests,
                per: Duration::from_secs(60),
                burst: None,
            }),
        }
    }

    fn limiter() -> RateLimiter {
        RateLimiter::new(
            None,
            Duration::from_millis(50),
            Duration::from_secs(1),
            LimitStats::new().unwrap(),
        )
    }

    #[tokio::test]
    async fn the_tighter_limit_refuses_and_the_other_is_not_consumed() {
        let l = limiter();
        let checks = [
            check("partner", "p:acme", 10),
            check("route", "r:x:acme", 2),
        ];
        for expected_remaining in ["r=9", "r=8"] {
            let v = l.check("x", &checks).await.unwrap();
            assert!(v.allowed);
            assert!(
                v.state_header.contains(expected_remaining),
                "{}",
                v.state_header
            );
        }
        let v = l.check("x", &checks).await.unwrap();
        assert!(!v.allowed);
        assert_eq!(v.scope, "route");
        assert_eq!(v.retry_after, Duration::from_secs(30));
        assert_eq!(v.policy_header, "\"partner\";q=10;w=60, \"route\";q=2;w=60");
        // The partner-wide limit was not charged for the refused request.
        let partner_only = [check("partner", "p:acme", 10)];
        let v = l.check("y", &partner_only).await.unwrap();
        assert!(v.state_header.contains("r=7"), "{}", v.state_header);
    }

    #[tokio::test]
    async fn partners_do_not_share_a_limit() {
        let l = limiter();
        assert!(
            l.check("x", &[check("partner", "p:acme", 1)])
                .await
                .unwrap()
                .allowed
        );
        assert!(
            !l.check("x", &[check("partner", "p:acme", 1)])
                .await
                .unwrap()
                .allowed
        );
        assert!(
            l.check("x", &[check("partner", "p:globex", 1)])
                .await
                .unwrap()
                .allowed
        );
    }
}
