//! Which target of an upstream a request goes to. An upstream is a set of
//! addresses (fixed, or names resolved again on an interval); each request
//! picks one by the upstream's `balance` rule among the targets that pass
//! their health checks and are not ejected, and may be retried on another
//! when that is safe. pingora-load-balancing does the discovery, the probes
//! and the round-robin and consistent-hash orders; what it lacks
//! (least-connections, passive ejection, per-request exclusions) is here.
//!
//! - `discovery`: the addresses, re-resolved.
//! - `health`: the active probes.
//! - `target`: one address's in-flight count, failures and ejection.
//! - `stats`: per-target metrics.
//! - `supervisor`: the background service keeping the live plan's
//!   balancers resolved, probed and reported.

mod discovery;
mod health;
pub mod stats;
pub mod supervisor;
mod target;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use futures_util::FutureExt;
use pingora::lb::health_check::HealthCheck;
use pingora::lb::selection::{Consistent, RoundRobin};
use pingora::lb::{Backend, Backends, LoadBalancer};

use crate::config::model::BalanceSpec;
pub use discovery::Name;
pub(crate) use discovery::{Discovery, MAX_TARGETS};
pub(crate) use health::{probe, ProbeTarget};
pub use target::Ejection;
pub use target::TargetLease;
use target::{clock, Target};

use stats::TargetStats;

/// How many times one request may be sent: the first try and two retries.
pub(crate) const MAX_ATTEMPTS: usize = 3;

/// Bounds the selectors' search for an acceptable target.
const MAX_SCAN: usize = 256;

/// The targets this node knows, by address, with what it has seen of each.
#[derive(Debug, Default)]
pub(crate) struct TargetSet(RwLock<HashMap<SocketAddr, Arc<Target>>>);

impl TargetSet {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<SocketAddr, Arc<Target>>> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<SocketAddr, Arc<Target>>> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a fresh record for each new address; known ones keep theirs.
    fn include(&self, addrs: &[SocketAddr]) {
        if addrs.iter().all(|a| self.read().contains_key(a)) {
            return;
        }
        let mut map = self.write();
        for addr in addrs {
            map.entry(*addr)
                .or_insert_with(|| Arc::new(Target::new(*addr)));
        }
    }

    /// Forgets addresses no longer discovered; returns them.
    fn retain(&self, current: &[SocketAddr]) -> Vec<Arc<Target>> {
        let mut map = self.write();
        let gone: Vec<SocketAddr> = map
            .keys()
            .filter(|a| !current.contains(a))
            .copied()
            .collect();
        gone.iter().filter_map(|a| map.remove(a)).collect()
    }

    pub(crate) fn get(&self, addr: &SocketAddr) -> Option<Arc<Target>> {
        self.read().get(addr).cloned()
    }
}

enum Order {
    RoundRobin(LoadBalancer<RoundRobin>),
    /// Round-robin's balancer holds the membership and health; the choice
    /// among ready targets is by in-flight count.
    LeastConnections(LoadBalancer<RoundRobin>, AtomicUsize),
    PartnerHash(LoadBalancer<Consistent>),
}

pub struct Balancer {
    pub(crate) upstream: String,
    order: Order,
    targets: Arc<TargetSet>,
    ejection: Ejection,
    pub(crate) resolve_every: Option<Duration>,
    pub(crate) check_every: Option<Duration>,
}

impl std::fmt::Debug for Balancer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Balancer")
            .field("upstream", &self.upstream)
            .field("targets", &self.addresses())
            .finish_non_exhaustive()
    }
}

/// What a request got: a target, and whether it was picked although no
/// target was known to be up (every one failing or ejected).
pub struct Pick {
    pub lease: TargetLease,
    pub degraded: bool,
}

pub struct BalancerSpec {
    pub upstream: String,
    pub names: Vec<Name>,
    pub balance: BalanceSpec,
    pub ejection: Ejection,
    pub resolve_every: Duration,
    pub probe: Option<(Box<dyn HealthCheck + Send + Sync>, Duration)>,
}

impl Balancer {
    /// Resolves the names and builds the selector, without a runtime (the
    /// plan also compiles in `portcullis check`).
    pub fn new(spec: BalancerSpec) -> Result<Balancer, String> {
        let targets = Arc::new(TargetSet::default());
        let discovery = Discovery::new(&spec.upstream, spec.names, targets.clone())?;
        let resolve_every = discovery.has_names().then_some(spec.resolve_every);
        let mut backends = Backends::new(Box::new(discovery));
        let check_every = spec.probe.map(|(probe, every)| {
            backends.set_health_check(probe);
            every
        });
        let order = match spec.balance {
            BalanceSpec::RoundRobin => Order::RoundRobin(primed(backends)?),
            BalanceSpec::LeastConnections => {
                Order::LeastConnections(primed(backends)?, AtomicUsize::new(0))
            }
            BalanceSpec::PartnerHash => Order::PartnerHash(primed(backends)?),
        };
        Ok(Balancer {
            upstream: spec.upstream,
            order,
            targets,
            ejection: spec.ejection,
            resolve_every,
            check_every,
        })
    }

    fn backends(&self) -> &Backends {
        match &self.order {
            Order::RoundRobin(lb) | Order::LeastConnections(lb, _) => lb.backends(),
            Order::PartnerHash(lb) => lb.backends(),
        }
    }

    /// The addresses currently discovered.
    pub(crate) fn addresses(&self) -> Vec<SocketAddr> {
        self.backends()
            .get_backend()
            .iter()
            .filter_map(|b| b.addr.as_inet().copied())
            .collect()
    }

    /// A target for this request: the upstream's order among targets that
    /// are up, not ejected and not yet tried by this request; when none is
    /// up, any untried one (a request that might succeed beats a certain
    /// refusal); `None` once every target was tried.
    pub fn pick(&self, partner: &str, tried: &[SocketAddr]) -> Option<Pick> {
        let targets = self.targets.read();
        if let Some(pick) = self.only_target(&targets, tried) {
            return pick;
        }
        let untried = |b: &Backend| b.addr.as_inet().is_some_and(|a| !tried.contains(a));
        let usable = |b: &Backend, ready: bool| {
            ready
                && untried(b)
                && b.addr
                    .as_inet()
                    .and_then(|a| targets.get(a))
                    .is_some_and(|t| !t.ejected())
        };
        let chosen = match &self.order {
            Order::RoundRobin(lb) => lb.select_with(b"", MAX_SCAN, usable),
            Order::PartnerHash(lb) => lb.select_with(partner.as_bytes(), MAX_SCAN, usable),
            Order::LeastConnections(lb, turn) => {
                let members = lb.backends().get_backend();
                let start = turn.fetch_add(1, Relaxed) % members.len().max(1);
                members
                    .iter()
                    .cycle()
                    .skip(start)
                    .take(members.len())
                    .filter(|b| usable(b, lb.backends().ready(b)))
                    .min_by_key(|b| {
                        b.addr
                            .as_inet()
                            .and_then(|a| targets.get(a))
                            .map_or(0, |t| t.inflight())
                    })
                    .cloned()
            }
        };
        let (chosen, degraded) = match chosen {
            Some(b) => (b, false),
            None => {
                let any = |b: &Backend, _ready: bool| untried(b);
                let fallback = match &self.order {
                    Order::RoundRobin(lb) | Order::LeastConnections(lb, _) => {
                        lb.select_with(b"", MAX_SCAN, any)
                    }
                    Order::PartnerHash(lb) => lb.select_with(partner.as_bytes(), MAX_SCAN, any),
                }?;
                (fallback, true)
            }
        };
        let target = chosen.addr.as_inet().and_then(|a| targets.get(a))?.clone();
        Some(Pick {
            lease: TargetLease::new(target),
            degraded,
        })
    }

    /// Most upstreams have one target: nothing to choose, so no selector.
    /// `None` when there are several.
    fn only_target(
        &self,
        targets: &HashMap<SocketAddr, Arc<Target>>,
        tried: &[SocketAddr],
    ) -> Option<Option<Pick>> {
        let members = self.backends().get_backend();
        if members.len() != 1 {
            return None;
        }
        let only = members.iter().next()?;
        let target = only
            .addr
            .as_inet()
            .filter(|a| !tried.contains(a))
            .and_then(|a| targets.get(a));
        Some(target.map(|t| Pick {
            degraded: !self.backends().ready(only) || t.ejected(),
            lease: TargetLease::new(t.clone()),
        }))
    }

    /// Whether a request that has tried these targets could try another.
    pub(crate) fn can_retry(&self, tried: &[SocketAddr]) -> bool {
        tried.len() < MAX_ATTEMPTS && self.addresses().iter().any(|a| !tried.contains(a))
    }

    /// Live traffic failed on this target; ejects it after enough in a row.
    pub(crate) fn failed(&self, lease: &TargetLease, kind: &str, stats: &TargetStats) {
        let target = &lease.target;
        stats
            .failures
            .with_label_values(&[self.upstream.as_str(), target.label.as_str(), kind])
            .inc();
        if target.failed(self.ejection, clock()) {
            stats
                .ejections
                .with_label_values(&[self.upstream.as_str(), target.label.as_str()])
                .inc();
            stats
                .up
                .with_label_values(&[self.upstream.as_str(), target.label.as_str()])
                .set(0);
            tracing::warn!(
                target: "portcullis::upstream",
                upstream = %self.upstream,
                target_addr = %target.addr,
                failures = self.ejection.after_failures,
                seconds = self.ejection.duration.as_secs_f64(),
                "target ejected after consecutive failures"
            );
        }
    }

    pub(crate) fn succeeded(&self, lease: &TargetLease) {
        lease.target.succeeded();
    }

    /// Resolves again and runs the probes, as the intervals come due,
    /// until the task is aborted (the plan was replaced).
    pub(crate) async fn maintain(self: Arc<Self>, stats: Arc<crate::monitor::metrics::Metrics>) {
        let mut resolve = self.resolve_every.map(tokio::time::interval);
        let mut check = self.check_every.map(tokio::time::interval);
        for tick in [resolve.as_mut(), check.as_mut()].into_iter().flatten() {
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        loop {
            self.report(&stats.targets);
            tokio::select! {
                _ = async { match resolve.as_mut() { Some(t) => t.tick().await, None => std::future::pending().await } } => {
                    if let Err(e) = self.update().await {
                        tracing::warn!(target: "portcullis::upstream", upstream = %self.upstream, error = %e, "target update failed");
                    }
                    for gone in self.targets.retain(&self.addresses()) {
                        stats.targets.remove(&self.upstream, &gone.label);
                    }
                }
                _ = async { match check.as_mut() { Some(t) => t.tick().await, None => std::future::pending().await } } => {
                    self.backends().run_health_check(true).await;
                }
                _ = tokio::time::sleep(REPORT_EVERY) => {}
            }
        }
    }

    async fn update(&self) -> pingora::Result<()> {
        match &self.order {
            Order::RoundRobin(lb) | Order::LeastConnections(lb, _) => lb.update().await,
            Order::PartnerHash(lb) => lb.update().await,
        }
    }

    /// Sets `upstream_target_up` for every current target.
    pub(crate) fn report(&self, stats: &TargetStats) {
        let backends = self.backends();
        for b in backends.get_backend().iter() {
            let Some(target) = b.addr.as_inet().and_then(|a| self.targets.get(a)) else {
                continue;
            };
            let up = backends.ready(b) && !target.ejected();
            stats
                .up
                .with_label_values(&[self.upstream.as_str(), target.label.as_str()])
                .set(i64::from(up));
        }
    }

    /// Drops this balancer's gauge series (its plan was replaced).
    pub(crate) fn forget(&self, stats: &TargetStats) {
        for addr in self.addresses() {
            let label = addr.to_string();
            let _ = stats
                .up
                .remove_label_values(&[self.upstream.as_str(), label.as_str()]);
        }
    }
}

/// How often the up gauge follows ejections that ended on their own.
const REPORT_EVERY: Duration = Duration::from_millis(500);

/// A balancer with the compile-time addresses already published: the
/// discovery's first answer needs no lookup, so it completes at once.
fn primed<S>(backends: Backends) -> Result<LoadBalancer<S>, String>
where
    S: pingora::lb::selection::BackendSelection + 'static,
    S::Iter: pingora::lb::selection::BackendIter,
{
    let lb = LoadBalancer::<S>::from_backends(backends);
    match lb.update().now_or_never() {
        Some(Ok(())) => Ok(lb),
        Some(Err(e)) => Err(format!("cannot publish the targets: {e}")),
        None => Err("the targets could not be published without waiting".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn balancer(balance: BalanceSpec, ports: &[u16], after_failures: u32) -> Balancer {
        Balancer::new(BalancerSpec {
            upstream: "orders".into(),
            names: ports.iter().map(|p| Name::Address(addr(*p))).collect(),
            balance,
            ejection: Ejection {
                after_failures,
                duration: Duration::from_secs(60),
            },
            resolve_every: Duration::from_secs(10),
            probe: None,
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn stats() -> TargetStats {
        TargetStats::new().unwrap_or_else(|e| panic!("{e}"))
    }

    fn picked(b: &Balancer, partner: &str, tried: &[SocketAddr]) -> SocketAddr {
        b.pick(partner, tried)
            .map(|p| p.lease.target.addr)
            .unwrap_or_else(|| panic!("no pick"))
    }

    #[test]
    fn round_robin_takes_each_target_in_turn() {
        let b = balancer(BalanceSpec::RoundRobin, &[1, 2, 3], 5);
        let mut seen: Vec<u16> = (0..6).map(|_| picked(&b, "acme", &[]).port()).collect();
        assert_eq!(&seen[..3], &seen[3..], "the same turn repeats");
        seen.truncate(3);
        seen.sort();
        assert_eq!(seen, [1, 2, 3]);
    }

    #[test]
    fn a_single_target_is_used_even_when_ejected_but_never_twice_by_one_request() {
        let b = balancer(BalanceSpec::RoundRobin, &[1], 1);
        let stats = stats();
        let pick = b.pick("acme", &[]).unwrap_or_else(|| panic!("no pick"));
        assert!(!pick.degraded);
        b.failed(&pick.lease, "connect", &stats);
        let again = b.pick("acme", &[]).unwrap_or_else(|| panic!("no pick"));
        assert_eq!(again.lease.target.addr, addr(1));
        assert!(again.degraded, "picked although ejected");
        assert!(b.pick("acme", &[addr(1)]).is_none());
        assert!(!b.can_retry(&[addr(1)]));
    }

    #[test]
    fn least_connections_avoids_the_busy_target() {
        let b = balancer(BalanceSpec::LeastConnections, &[1, 2], 5);
        let busy = b.pick("acme", &[]).unwrap_or_else(|| panic!("no pick"));
        let busy_addr = busy.lease.target.addr;
        for _ in 0..5 {
            assert_ne!(picked(&b, "acme", &[]), busy_addr, "the idle target wins");
        }
        drop(busy);
        let both: std::collections::HashSet<SocketAddr> =
            (0..4).map(|_| picked(&b, "acme", &[])).collect();
        assert_eq!(both.len(), 2, "equal load is shared");
    }

    #[test]
    fn partner_hash_is_stable_per_partner() {
        let b = balancer(BalanceSpec::PartnerHash, &[1, 2, 3, 4], 5);
        for partner in ["acme", "globex", "initech"] {
            let first = picked(&b, partner, &[]);
            for _ in 0..10 {
                assert_eq!(picked(&b, partner, &[]), first);
            }
        }
    }

    #[test]
    fn a_retry_goes_to_a_target_not_yet_tried_and_stops_when_none_is_left() {
        let b = balancer(BalanceSpec::PartnerHash, &[1, 2], 5);
        let first = picked(&b, "acme", &[]);
        let second = picked(&b, "acme", &[first]);
        assert_ne!(first, second);
        assert!(b.can_retry(&[first]));
        assert!(!b.can_retry(&[first, second]));
        assert!(b.pick("acme", &[first, second]).is_none());
    }

    #[test]
    fn an_ejected_target_is_skipped_until_nothing_else_is_left() {
        let b = balancer(BalanceSpec::RoundRobin, &[1, 2], 2);
        let stats = stats();
        let lease = b
            .pick("acme", &[])
            .unwrap_or_else(|| panic!("no pick"))
            .lease;
        let bad = lease.target.addr;
        b.failed(&lease, "connect", &stats);
        b.failed(&lease, "connect", &stats);
        for _ in 0..4 {
            let pick = b.pick("acme", &[]).unwrap_or_else(|| panic!("no pick"));
            assert_ne!(pick.lease.target.addr, bad);
            assert!(!pick.degraded);
        }
        let good = if bad.port() == 1 { addr(2) } else { addr(1) };
        let last = b.pick("acme", &[good]).unwrap_or_else(|| panic!("no pick"));
        assert_eq!(last.lease.target.addr, bad, "better tried than refused");
        assert!(last.degraded);
        let label = bad.to_string();
        let labels = ["orders", label.as_str()];
        assert_eq!(stats.ejections.with_label_values(&labels).get(), 1);
    }
}
