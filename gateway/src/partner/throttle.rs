//! Requests per client address on the partner listener, counted on this
//! node: partners call it rarely, so a tight limit costs them nothing and
//! keeps a credential guesser slow before the brute-force blocker starts.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use quick_cache::sync::Cache;

use crate::limits::gcra::{self, Rate};

pub struct Throttle {
    rate: Rate,
    origin: Instant,
    /// Theoretical arrival time per address, in µs since `origin`.
    tats: Cache<IpAddr, u64>,
}

impl Throttle {
    pub fn new(rate: Rate) -> Throttle {
        Throttle {
            rate,
            origin: Instant::now(),
            tats: Cache::new(100_000),
        }
    }

    /// `Err(retry_after)` when `client` is over its rate.
    pub fn admit(&self, client: IpAddr) -> Result<(), Duration> {
        let now = self.origin.elapsed().as_micros() as u64;
        let step = gcra::step(self.tats.get(&client), now, &self.rate);
        if !step.allowed {
            return Err(Duration::from_micros(step.retry_us));
        }
        self.tats.insert(client, step.new_tat);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::monitoring::RateSpec;

    #[test]
    fn a_burst_passes_then_the_address_waits_and_others_do_not() {
        let throttle = Throttle::new(Rate::new(&RateSpec {
            requests: 1,
            per: Duration::from_secs(3600),
            burst: Some(3),
        }));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            assert!(throttle.admit(a).is_ok());
        }
        let wait = throttle.admit(a).unwrap_err();
        assert!(wait > Duration::from_secs(3000), "{wait:?}");
        assert!(throttle.admit(b).is_ok());
    }
}
