//! The generic cell rate algorithm: one number per limited key, the
//! theoretical arrival time (TAT) of the next request. A request is
//! allowed when it is at most `tolerance` ahead of schedule.

use std::time::Duration;

use crate::config::monitoring::RateSpec;

/// A compiled rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub requests: u32,
    pub per: Duration,
    /// Microseconds between requests at the sustained rate.
    pub interval_us: u64,
    /// Microseconds a request may be ahead of schedule (the burst).
    pub tolerance_us: u64,
}

impl Rate {
    pub fn new(spec: &RateSpec) -> Rate {
        let per_us = spec.per.as_micros().min(u128::from(u64::MAX)) as u64;
        let interval_us = (per_us / u64::from(spec.requests.max(1))).max(1);
        let burst = u64::from(spec.burst.unwrap_or(spec.requests).max(1));
        Rate {
            requests: spec.requests,
            per: spec.per,
            interval_us,
            tolerance_us: interval_us.saturating_mul(burst),
        }
    }

    /// Requests still allowed at once when the TAT is `ahead_us` in the future.
    pub fn remaining(&self, ahead_us: u64) -> u64 {
        self.tolerance_us.saturating_sub(ahead_us) / self.interval_us
    }
}

/// One key's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub allowed: bool,
    /// The TAT to store if the request goes ahead.
    pub new_tat: u64,
    /// How far ahead of now the TAT stands after this step (what
    /// remaining and reset are computed from).
    pub ahead_us: u64,
    /// When refused: how long until a request would be allowed.
    pub retry_us: u64,
}

/// The GCRA step at time `now` (µs) for a key whose stored TAT is `tat`.
pub fn step(tat: Option<u64>, now: u64, rate: &Rate) -> Step {
    let tat = tat.unwrap_or(now).max(now);
    let new_tat = tat + rate.interval_us;
    let allow_at = new_tat.saturating_sub(rate.tolerance_us);
    if allow_at > now {
        Step {
            allowed: false,
            new_tat: tat,
            ahead_us: tat - now,
            retry_us: allow_at - now,
        }
    } else {
        Step {
            allowed: true,
            new_tat,
            ahead_us: new_tat - now,
            retry_us: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(requests: u32, per_ms: u64, burst: Option<u32>) -> Rate {
        Rate::new(&RateSpec {
            requests,
            per: Duration::from_millis(per_ms),
            burst,
        })
    }

    /// Runs `n` requests at `now`, storing TATs as a store would.
    fn burst_at(tat: &mut Option<u64>, now: u64, n: usize, r: &Rate) -> usize {
        let mut allowed = 0;
        for _ in 0..n {
            let s = step(*tat, now, r);
            if s.allowed {
                *tat = Some(s.new_tat);
                allowed += 1;
            }
        }
        allowed
    }

    #[test]
    fn a_burst_is_allowed_then_the_sustained_rate() {
        let r = rate(10, 1000, None);
        let mut tat = None;
        assert_eq!(burst_at(&mut tat, 0, 25, &r), 10);
        // One interval later, exactly one more.
        assert_eq!(burst_at(&mut tat, 100_000, 5, &r), 1);
        // A full period later, the whole burst again.
        assert_eq!(burst_at(&mut tat, 1_200_000, 25, &r), 10);
    }

    #[test]
    fn burst_can_differ_from_the_rate() {
        let r = rate(10, 1000, Some(2));
        let mut tat = None;
        assert_eq!(burst_at(&mut tat, 0, 10, &r), 2);
    }

    #[test]
    fn a_refusal_says_when_to_retry_and_nothing_remains() {
        let r = rate(2, 1000, None);
        let mut tat = None;
        burst_at(&mut tat, 0, 2, &r);
        let s = step(tat, 0, &r);
        assert!(!s.allowed);
        assert_eq!(s.retry_us, 500_000);
        assert_eq!(r.remaining(s.ahead_us), 0);
    }

    #[test]
    fn remaining_counts_down_through_a_burst() {
        let r = rate(5, 1000, None);
        let mut tat = None;
        let mut seen = Vec::new();
        for _ in 0..5 {
            let s = step(tat, 0, &r);
            tat = Some(s.new_tat);
            seen.push(r.remaining(s.ahead_us));
        }
        assert_eq!(seen, vec![4, 3, 2, 1, 0]);
    }
}
