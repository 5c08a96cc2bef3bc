//! Brute-force blocking: a client address (or a key id) that keeps failing
//! authentication is refused outright for a while, before any key is
//! looked at. Counting uses a sliding window (the previous fixed window,
//! weighted by how much of it still overlaps, plus the current one).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus::{IntCounterVec, IntGauge, Opts};

use crate::config::monitoring::AuthFailureSettings;

#[derive(Clone)]
pub struct AbuseStats {
    pub auth_failures: IntCounterVec,
    pub blocks: IntCounterVec,
    pub blocked_now: IntGauge,
}

impl AbuseStats {
    pub fn new() -> Result<AbuseStats, prometheus::Error> {
        Ok(AbuseStats {
            auth_failures: IntCounterVec::new(
                Opts::new(
                    "auth_failures_total",
                    "Requests refused by authentication, by reason",
                ),
                &["reason"],
            )?,
            blocks: IntCounterVec::new(
                Opts::new(
                    "clients_blocked_total",
                    "Temporary blocks started after repeated authentication failures",
                ),
                &["kind"],
            )?,
            blocked_now: IntGauge::new(
                "blocked_clients",
                "Client addresses and key ids blocked right now",
            )?,
        })
    }
}

struct Tally {
    window_start: Instant,
    previous: u32,
    current: u32,
    blocked_until: Option<Instant>,
}

impl Tally {
    fn new(now: Instant) -> Tally {
        Tally {
            window_start: now,
            previous: 0,
            current: 0,
            blocked_until: None,
        }
    }

    /// Counts one failure; returns the sliding-window estimate.
    fn add(&mut self, now: Instant, window: Duration) -> f64 {
        let elapsed = now.duration_since(self.window_start);
        if elapsed >= window * 2 {
            self.previous = 0;
            self.current = 0;
            self.window_start = now;
        } else if elapsed >= window {
            self.previous = self.current;
            self.current = 0;
            self.window_start += window;
        }
        self.current = self.current.saturating_add(1);
        let into = now.duration_since(self.window_start).as_secs_f64() / window.as_secs_f64();
        f64::from(self.previous) * (1.0 - into).max(0.0) + f64::from(self.current)
    }

    fn blocked(&self, now: Instant) -> Option<Duration> {
        self.blocked_until
            .and_then(|until| until.checked_duration_since(now))
            .filter(|d| !d.is_zero())
    }
}

/// A block that has just begun, for the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewBlock {
    Client(IpAddr),
    Key(String),
}

struct Table<K> {
    limit: u32,
    entries: Mutex<HashMap<K, Tally>>,
}

/// Entries kept before stale ones are swept.
const SWEEP_AT: usize = 50_000;

impl<K: Hash + Eq + Clone> Table<K> {
    fn new(limit: u32) -> Table<K> {
        Table {
            limit,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn blocked(&self, key: &K, now: Instant) -> Option<Duration> {
        if self.limit == 0 {
            return None;
        }
        let entries = self.entries.lock().ok()?;
        entries.get(key).and_then(|t| t.blocked(now))
    }

    /// Counts a failure; true when this failure starts a block.
    fn fail(&self, key: &K, now: Instant, s: &AuthFailureSettings) -> bool {
        if self.limit == 0 {
            return false;
        }
        let Ok(mut entries) = self.entries.lock() else {
            return false;
        };
        if entries.len() >= SWEEP_AT {
            sweep_map(&mut entries, now, s.window);
        }
        let tally = entries
            .entry(key.clone())
            .or_insert_with(|| Tally::new(now));
        if tally.blocked(now).is_some() {
            return false;
        }
        let estimate = tally.add(now, s.window);
        if estimate >= f64::from(self.limit) {
            tally.blocked_until = Some(now + s.block_for);
            return true;
        }
        false
    }

    fn lift(&self, key: &K) -> bool {
        self.entries
            .lock()
            .map(|mut e| e.remove(key).is_some_and(|t| t.blocked_until.is_some()))
            .unwrap_or(false)
    }

    /// Forgets stale tallies; returns how many entries are blocked now.
    fn sweep(&self, now: Instant, window: Duration) -> usize {
        let Ok(mut entries) = self.entries.lock() else {
            return 0;
        };
        sweep_map(&mut entries, now, window);
        entries
            .values()
            .filter(|t| t.blocked(now).is_some())
            .count()
    }

    fn list(&self, now: Instant) -> Vec<(K, Duration)> {
        let Ok(entries) = self.entries.lock() else {
            return Vec::new();
        };
        entries
            .iter()
            .filter_map(|(k, t)| t.blocked(now).map(|d| (k.clone(), d)))
            .collect()
    }
}

fn sweep_map<K>(entries: &mut HashMap<K, Tally>, now: Instant, window: Duration) {
    entries
        .retain(|_, t| t.blocked(now).is_some() || now.duration_since(t.window_start) < window * 2);
}

/// What is blocked, with the time each block has left.
pub struct Blocked {
    pub clients: Vec<(IpAddr, Duration)>,
    pub keys: Vec<(String, Duration)>,
}

pub struct AbuseGuard {
    settings: AuthFailureSettings,
    /// Lets the per-request check skip the lock while nothing is blocked.
    any_blocked: AtomicBool,
    clients: Table<IpAddr>,
    keys: Table<String>,
    stats: AbuseStats,
}

impl AbuseGuard {
    pub fn new(settings: AuthFailureSettings, stats: AbuseStats) -> AbuseGuard {
        AbuseGuard {
            clients: Table::new(settings.per_client),
            keys: Table::new(settings.per_key),
            any_blocked: AtomicBool::new(false),
            settings,
            stats,
        }
    }

    pub fn block_for(&self) -> Duration {
        self.settings.block_for
    }

    /// How much longer this client address is blocked, if it is.
    pub fn client_blocked(&self, ip: IpAddr) -> Option<Duration> {
        if !self.any_blocked.load(Ordering::Relaxed) {
            return None;
        }
        self.clients.blocked(&ip, Instant::now())
    }

    /// How much longer this key id is blocked, if it is.
    pub fn key_blocked(&self, key_id: &str) -> Option<Duration> {
        if !self.any_blocked.load(Ordering::Relaxed) {
            return None;
        }
        self.keys.blocked(&key_id.to_string(), Instant::now())
    }

    /// Counts an authentication failure; returns the blocks it started.
    pub fn failed(
        &self,
        reason: &'static str,
        client: Option<IpAddr>,
        key_id: Option<&str>,
    ) -> Vec<NewBlock> {
        self.stats.auth_failures.with_label_values(&[reason]).inc();
        let now = Instant::now();
        let mut started = Vec::new();
        if let Some(ip) = client {
            if self.clients.fail(&ip, now, &self.settings) {
                self.stats.blocks.with_label_values(&["client_ip"]).inc();
                started.push(NewBlock::Client(ip));
            }
        }
        if let Some(id) = key_id {
            let id = id.to_string();
            if self.keys.fail(&id, now, &self.settings) {
                self.stats.blocks.with_label_values(&["key_id"]).inc();
                started.push(NewBlock::Key(id));
            }
        }
        if !started.is_empty() {
            self.any_blocked.store(true, Ordering::Relaxed);
            self.sweep();
        }
        started
    }

    /// Lifts a client address's block (an operator's decision).
    pub fn unblock_client(&self, ip: IpAddr) -> bool {
        let lifted = self.clients.lift(&ip);
        self.sweep();
        lifted
    }

    pub fn unblock_key(&self, key_id: &str) -> bool {
        let lifted = self.keys.lift(&key_id.to_string());
        self.sweep();
        lifted
    }

    /// What is blocked now, and for how much longer.
    pub fn blocked(&self) -> Blocked {
        let now = Instant::now();
        Blocked {
            clients: self.clients.list(now),
            keys: self.keys.list(now),
        }
    }

    /// Forgets stale tallies and refreshes the gauge of current blocks.
    pub fn sweep(&self) {
        let now = Instant::now();
        let n = self.clients.sweep(now, self.settings.window)
            + self.keys.sweep(now, self.settings.window);
        self.stats.blocked_now.set(n as i64);
        self.any_blocked.store(n > 0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(per_client: u32) -> AuthFailureSettings {
        AuthFailureSettings {
            per_client,
            per_key: 3,
            window: Duration::from_secs(60),
            block_for: Duration::from_secs(300),
        }
    }

    #[test]
    fn a_client_is_blocked_at_the_limit_and_not_before() {
        let g = AbuseGuard::new(settings(5), AbuseStats::new().unwrap());
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        for _ in 0..4 {
            assert!(g.failed("key_invalid", Some(ip), None).is_empty());
            assert!(g.client_blocked(ip).is_none());
        }
        assert_eq!(
            g.failed("key_invalid", Some(ip), None),
            vec![NewBlock::Client(ip)]
        );
        assert!(g.client_blocked(ip).is_some());
        // Other clients are unaffected, and the block can be lifted.
        assert!(g.client_blocked("192.0.2.8".parse().unwrap()).is_none());
        assert!(g.unblock_client(ip));
        assert!(g.client_blocked(ip).is_none());
    }

    #[test]
    fn a_key_id_is_blocked_whoever_presents_it() {
        let g = AbuseGuard::new(settings(100), AbuseStats::new().unwrap());
        for i in 0..3u8 {
            let ip = IpAddr::from([198, 51, 100, i]);
            g.failed("key_expired", Some(ip), Some("k_abc"));
        }
        assert!(g.key_blocked("k_abc").is_some());
        assert!(g.key_blocked("k_def").is_none());
    }

    #[test]
    fn zero_turns_blocking_off() {
        let g = AbuseGuard::new(settings(0), AbuseStats::new().unwrap());
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        for _ in 0..1000 {
            g.failed("key_invalid", Some(ip), None);
        }
        assert!(g.client_blocked(ip).is_none());
    }

    #[test]
    fn the_window_slides() {
        let s = settings(10);
        let start = Instant::now();
        let mut t = Tally::new(start);
        for _ in 0..8 {
            t.add(start, s.window);
        }
        // Three quarters into the next window, a quarter of the old count remains.
        let estimate = t.add(start + s.window + s.window * 3 / 4, s.window);
        assert!((estimate - 3.0).abs() < 0.01, "{estimate}");
        // Two windows on, nothing of the old count remains.
        let estimate = t.add(start + s.window * 4, s.window);
        assert!((estimate - 1.0).abs() < 0.01, "{estimate}");
    }
}
