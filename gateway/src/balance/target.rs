//! One address of an upstream, as this node has seen it: requests in
//! flight, consecutive failures of live traffic, and an ejection deadline.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// When live traffic takes a target out, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ejection {
    /// Consecutive failures that eject; 0 never ejects.
    pub after_failures: u32,
    pub duration: Duration,
}

#[derive(Debug)]
pub(crate) struct Target {
    pub(crate) addr: SocketAddr,
    /// `addr` as a metric label, built once.
    pub(crate) label: String,
    inflight: AtomicUsize,
    failures: AtomicU32,
    /// Milliseconds on [`clock`] until which the target is left out; 0 when
    /// it is not ejected.
    ejected_until: AtomicU64,
    /// This target's request counter, looked up once rather than by label
    /// on every request.
    pub(crate) requests: OnceLock<prometheus::IntCounter>,
}

/// Milliseconds since the first call; never 0, so 0 can mean "not ejected".
pub(crate) fn clock() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_millis())
        .unwrap_or(u64::MAX)
        .saturating_add(1)
}

impl Target {
    pub(crate) fn new(addr: SocketAddr) -> Target {
        Target {
            addr,
            label: addr.to_string(),
            inflight: AtomicUsize::new(0),
            failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            requests: OnceLock::new(),
        }
    }

    pub(crate) fn inflight(&self) -> usize {
        self.inflight.load(Relaxed)
    }

    /// Reads the clock only for a target that was ever ejected, so the
    /// common case costs one atomic load.
    pub(crate) fn ejected(&self) -> bool {
        let until = self.ejected_until.load(Relaxed);
        until != 0 && self.ejected_at(clock())
    }

    fn ejected_at(&self, now: u64) -> bool {
        now < self.ejected_until.load(Relaxed)
    }

    /// Counts a failure; true when this one ejected the target.
    pub(crate) fn failed(&self, ejection: Ejection, now: u64) -> bool {
        if ejection.after_failures == 0 {
            return false;
        }
        let seen = self.failures.fetch_add(1, Relaxed).saturating_add(1);
        if seen < ejection.after_failures {
            return false;
        }
        // Whoever resets the count is the one who ejects, so concurrent
        // failures eject (and count) once.
        if self
            .failures
            .compare_exchange(seen, 0, Relaxed, Relaxed)
            .is_err()
        {
            return false;
        }
        let millis = u64::try_from(ejection.duration.as_millis()).unwrap_or(u64::MAX);
        self.ejected_until
            .store(now.saturating_add(millis), Relaxed);
        true
    }

    pub(crate) fn succeeded(&self) {
        if self.failures.load(Relaxed) != 0 {
            self.failures.store(0, Relaxed);
        }
    }
}

/// A request's hold on the target it was sent to: counted in flight until
/// the request is done with it.
#[derive(Debug)]
pub struct TargetLease {
    pub(crate) target: Arc<Target>,
}

impl TargetLease {
    /// The address this request is sent to.
    pub fn target_addr(&self) -> SocketAddr {
        self.target.addr
    }

    pub(crate) fn new(target: Arc<Target>) -> TargetLease {
        target.inflight.fetch_add(1, Relaxed);
        TargetLease { target }
    }
}

impl Drop for TargetLease {
    fn drop(&mut self) {
        self.target.inflight.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target::new(SocketAddr::from(([127, 0, 0, 1], 8080)))
    }

    const THREE: Ejection = Ejection {
        after_failures: 3,
        duration: Duration::from_secs(30),
    };

    #[test]
    fn the_configured_number_of_consecutive_failures_ejects_for_the_duration() {
        let t = target();
        assert!(!t.failed(THREE, 1000));
        assert!(!t.failed(THREE, 1000));
        assert!(t.failed(THREE, 1000), "the third failure ejects");
        assert!(t.ejected_at(1000));
        assert!(t.ejected_at(30_999));
        assert!(!t.ejected_at(31_000), "back once the duration has passed");
    }

    #[test]
    fn a_success_in_between_resets_the_count() {
        let t = target();
        t.failed(THREE, 1);
        t.failed(THREE, 1);
        t.succeeded();
        assert!(!t.failed(THREE, 1));
        assert!(!t.ejected_at(1));
    }

    #[test]
    fn zero_failures_means_never_ejected() {
        let t = target();
        let off = Ejection {
            after_failures: 0,
            ..THREE
        };
        for _ in 0..100 {
            assert!(!t.failed(off, 1));
        }
        assert!(!t.ejected_at(1));
    }

    #[test]
    fn a_lease_counts_in_flight_until_dropped() {
        let t = Arc::new(target());
        let a = TargetLease::new(t.clone());
        let b = TargetLease::new(t.clone());
        assert_eq!(t.inflight(), 2);
        drop(a);
        assert_eq!(t.inflight(), 1);
        drop(b);
        assert_eq!(t.inflight(), 0);
    }
}
