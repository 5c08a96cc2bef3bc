//! Where an upstream's targets are: fixed addresses, and names resolved
//! again every `resolve_every` through the system resolver (`/etc/hosts`,
//! then DNS), so a service whose addresses change is followed without a
//! reload.

use std::collections::{BTreeSet, HashMap};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use pingora::lb::discovery::ServiceDiscovery;
use pingora::lb::Backend;

use super::TargetSet;

/// Most addresses one upstream may have: a name that suddenly resolves to
/// hundreds would otherwise multiply pools, probes and metric labels.
pub(crate) const MAX_TARGETS: usize = 64;

/// The longest a re-resolution may take before the last answer is kept.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Name {
    Address(SocketAddr),
    Host { host: String, port: u16 },
}

impl Name {
    /// `host:port`, `a.b.c.d:port` or `[v6]:port`.
    pub fn parse(text: &str) -> Result<Name, String> {
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(Name::Address(addr));
        }
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| format!("{text:?} is not host:port"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| format!("{text:?} has no valid port"))?;
        let valid_host = !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !valid_host || port == 0 {
            return Err(format!("{text:?} is not host:port"));
        }
        Ok(Name::Host {
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// Resolves without a runtime, for compiling the plan.
    fn resolve_now(&self) -> std::io::Result<Vec<SocketAddr>> {
        match self {
            Name::Address(a) => Ok(vec![*a]),
            Name::Host { host, port } => Ok((host.as_str(), *port).to_socket_addrs()?.collect()),
        }
    }

    async fn resolve(&self) -> std::io::Result<Vec<SocketAddr>> {
        match self {
            Name::Address(a) => Ok(vec![*a]),
            Name::Host { host, port } => {
                let found = tokio::time::timeout(
                    LOOKUP_TIMEOUT,
                    tokio::net::lookup_host((host.as_str(), *port)),
                )
                .await
                .map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "lookup timed out")
                })??;
                Ok(found.collect())
            }
        }
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Name::Address(a) => write!(f, "{a}"),
            Name::Host { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// The upstream's names and the last addresses each resolved to.
pub(crate) struct Discovery {
    upstream: String,
    names: Vec<Name>,
    last: Mutex<Vec<Vec<SocketAddr>>>,
    /// The plan was compiled with fresh answers: the first discovery
    /// publishes them without asking again.
    primed: AtomicBool,
    targets: Arc<TargetSet>,
}

impl Discovery {
    /// Resolves every name once; a name that resolves to nothing is a
    /// configuration error (nothing could be served).
    pub(crate) fn new(
        upstream: &str,
        names: Vec<Name>,
        targets: Arc<TargetSet>,
    ) -> Result<Discovery, String> {
        let mut last = Vec::with_capacity(names.len());
        for name in &names {
            match name.resolve_now() {
                Ok(found) if !found.is_empty() => last.push(found),
                Ok(_) => return Err(format!("{name} resolves to no address")),
                Err(e) => return Err(format!("cannot resolve {name}: {e}")),
            }
        }
        let discovery = Discovery {
            upstream: upstream.to_string(),
            names,
            last: Mutex::new(last),
            primed: AtomicBool::new(true),
            targets,
        };
        discovery.publish(&discovery.lock().clone());
        Ok(discovery)
    }

    /// Whether anything here can change by resolving again.
    pub(crate) fn has_names(&self) -> bool {
        self.names.iter().any(|n| matches!(n, Name::Host { .. }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<SocketAddr>>> {
        self.last.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The union of every name's addresses, capped, with a [`Target`] made
    /// for each new one before the balancer can pick it.
    ///
    /// [`Target`]: super::target::Target
    fn publish(&self, per_name: &[Vec<SocketAddr>]) -> BTreeSet<Backend> {
        let mut addrs: Vec<SocketAddr> = per_name.iter().flatten().copied().collect();
        addrs.sort();
        addrs.dedup();
        if addrs.len() > MAX_TARGETS {
            tracing::warn!(
                target: "portcullis::upstream",
                upstream = %self.upstream,
                found = addrs.len(),
                kept = MAX_TARGETS,
                "more addresses than an upstream may have; the rest are ignored"
            );
            addrs.truncate(MAX_TARGETS);
        }
        self.targets.include(&addrs);
        addrs
            .into_iter()
            .map(|addr| Backend {
                addr: pingora::protocols::l4::socket::SocketAddr::Inet(addr),
                weight: 1,
                ext: http::Extensions::new(),
            })
            .collect()
    }
}

#[async_trait]
impl ServiceDiscovery for Discovery {
    async fn discover(&self) -> pingora::Result<(BTreeSet<Backend>, HashMap<u64, bool>)> {
        if self.primed.swap(false, Relaxed) {
            let current = self.lock().clone();
            return Ok((self.publish(&current), HashMap::new()));
        }
        let mut fresh = Vec::with_capacity(self.names.len());
        for name in &self.names {
            match name.resolve().await {
                Ok(found) if !found.is_empty() => fresh.push(Some(found)),
                outcome => {
                    let error = match outcome {
                        Ok(_) => "no address".to_string(),
                        Err(e) => e.to_string(),
                    };
                    tracing::warn!(
                        target: "portcullis::upstream",
                        upstream = %self.upstream,
                        name = %name,
                        error = %error,
                        "lookup failed; keeping the last addresses"
                    );
                    fresh.push(None);
                }
            }
        }
        let current = {
            let mut last = self.lock();
            for (slot, found) in last.iter_mut().zip(fresh) {
                if let Some(found) = found {
                    if *slot != found {
                        tracing::info!(
                            target: "portcullis::upstream",
                            upstream = %self.upstream,
                            before = ?slot,
                            now = ?found,
                            "target addresses changed"
                        );
                        *slot = found;
                    }
                }
            }
            last.clone()
        };
        Ok((self.publish(&current), HashMap::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_names_parse_and_anything_else_is_refused() {
        assert_eq!(
            Name::parse("10.0.0.1:8080"),
            Ok(Name::Address(SocketAddr::from(([10, 0, 0, 1], 8080))))
        );
        assert!(matches!(Name::parse("[::1]:443"), Ok(Name::Address(_))));
        assert_eq!(
            Name::parse("Orders.Internal:80"),
            Ok(Name::Host {
                host: "orders.internal".into(),
                port: 80
            })
        );
        for bad in [
            "orders",
            "orders:",
            "orders:0",
            "orders:99999",
            ":80",
            "http://orders:80",
            "orders..internal:80",
            "or ders:80",
            "::1:80",
        ] {
            assert!(Name::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn a_name_that_does_not_resolve_is_refused_when_the_plan_compiles() {
        let targets = Arc::new(TargetSet::default());
        let names = vec![Name::parse("no-such-host.invalid:80").unwrap_or_else(|e| panic!("{e}"))];
        assert!(Discovery::new("orders", names, targets).is_err());
    }

    #[test]
    fn localhost_publishes_its_addresses_as_targets() {
        let targets = Arc::new(TargetSet::default());
        let names = vec![Name::parse("localhost:8080").unwrap_or_else(|e| panic!("{e}"))];
        let discovery =
            Discovery::new("orders", names, targets.clone()).unwrap_or_else(|e| panic!("{e}"));
        assert!(discovery.has_names());
        assert!(targets
            .get(&SocketAddr::from(([127, 0, 0, 1], 8080)))
            .is_some());
    }
}
