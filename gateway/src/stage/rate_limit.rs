//! Which rate limits a request counts against, and what the answer tells
//! the client. The counting itself (GCRA, local or shared in Redis) is in
//! `limits`.

use std::time::Duration;

use crate::limits::limiter::{Check, Limited};
use crate::limits::Rate;
use crate::stage::problem;
use crate::stage::problem::Reject;

/// The partner's limit over all routes, then its limit on this route. The
/// keys are partitioned by partner: one partner's traffic never spends
/// another's allowance.
pub fn checks(
    partner: &str,
    partner_rate: Option<Rate>,
    route: &str,
    route_rate: Option<Rate>,
) -> Vec<Check> {
    let mut checks = Vec::with_capacity(2);
    if let Some(rate) = partner_rate {
        checks.push(Check {
            scope: "partner",
            key: format!("p:{partner}"),
            rate,
        });
    }
    if let Some(rate) = route_rate {
        checks.push(Check {
            scope: "route",
            key: format!("r:{route}:{partner}"),
            rate,
        });
    }
    checks
}

/// The headers every response to the request carries (allowed or not),
/// and whether it is refused.
pub fn answer(verdict: Limited) -> (Vec<(&'static str, String)>, Result<(), Reject>) {
    let mut headers = vec![
        ("ratelimit-policy", verdict.policy_header),
        ("ratelimit", verdict.state_header),
    ];
    if verdict.allowed {
        return (headers, Ok(()));
    }
    headers.push(("retry-after", retry_after(verdict.retry_after)));
    (headers, Err(problem::RATE_LIMITED))
}

/// `Retry-After` in whole seconds.
pub fn retry_after(wait: Duration) -> String {
    wait.as_secs().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::monitoring::RateSpec;

    fn rate() -> Rate {
        Rate::new(&RateSpec {
            requests: 10,
            per: Duration::from_secs(1),
            burst: None,
        })
    }

    #[test]
    fn limits_are_keyed_by_partner_and_route() {
        let checks = checks("acme", Some(rate()), "orders", Some(rate()));
        let keys: Vec<(&str, &str)> = checks.iter().map(|c| (c.scope, c.key.as_str())).collect();
        assert_eq!(keys, [("partner", "p:acme"), ("route", "r:orders:acme")]);
        assert!(super::checks("acme", None, "orders", None).is_empty());
        let other = super::checks("globex", Some(rate()), "orders", None);
        assert_ne!(other[0].key, checks[0].key);
    }

    #[test]
    fn a_refusal_says_when_to_retry_and_an_allowance_does_not() {
        let verdict = |allowed| Limited {
            allowed,
            scope: "partner",
            retry_after: Duration::from_millis(2500),
            policy_header: "10;w=1".into(),
            state_header: "limit=10, remaining=0, reset=2".into(),
        };
        let (headers, refused) = answer(verdict(false));
        assert_eq!(refused, Err(problem::RATE_LIMITED));
        assert!(headers.contains(&("retry-after", "2".to_string())));
        let (headers, allowed) = answer(verdict(true));
        assert_eq!(allowed, Ok(()));
        assert_eq!(headers.len(), 2);
        assert!(headers.iter().all(|(name, _)| *name != "retry-after"));
    }
}
