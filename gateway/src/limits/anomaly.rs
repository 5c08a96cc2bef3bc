//! Notices a partner whose traffic, or whose share of refused and failed
//! requests, jumps far above its own recent baseline. Counting per request
//! is one atomic increment; the comparison runs once per interval.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use prometheus::{IntCounterVec, IntGaugeVec, Opts};

use crate::config::monitoring::AnomalySettings;
use crate::monitor::audit::Event;

#[derive(Clone)]
pub struct AnomalyStats {
    pub flagged: IntGaugeVec,
    pub anomalies: IntCounterVec,
}

impl AnomalyStats {
    pub fn new() -> Result<AnomalyStats, prometheus::Error> {
        Ok(AnomalyStats {
            flagged: IntGaugeVec::new(
                Opts::new(
                    "partner_anomaly",
                    "1 while a partner's request or error count is far above its own baseline",
                ),
                &["partner", "kind"],
            )?,
            anomalies: IntCounterVec::new(
                Opts::new(
                    "anomalies_total",
                    "Intervals in which a partner's traffic was far above its baseline, by kind",
                ),
                &["kind"],
            )?,
        })
    }
}

#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    errors: AtomicU64,
}

#[derive(Default)]
struct Baseline {
    /// Intervals this partner has been counted in.
    seen: u32,
    requests: f64,
    errors: f64,
    flagged_requests: bool,
    flagged_errors: bool,
}

pub struct AnomalyDetector {
    settings: AnomalySettings,
    counts: RwLock<HashMap<String, Arc<Counts>>>,
    baselines: Mutex<HashMap<String, Baseline>>,
    stats: AnomalyStats,
}

/// One kind of jump, judged against its baseline.
fn jumped(count: u64, baseline: f64, s: &AnomalySettings) -> bool {
    count >= s.min_count && count as f64 > s.factor * baseline.max(1.0)
}

impl AnomalyDetector {
    pub fn new(settings: AnomalySettings, stats: AnomalyStats) -> AnomalyDetector {
        AnomalyDetector {
            settings,
            counts: RwLock::new(HashMap::new()),
            baselines: Mutex::new(HashMap::new()),
            stats,
        }
    }

    pub fn interval(&self) -> std::time::Duration {
        self.settings.interval
    }

    /// Counts one finished request of `partner` (a label already capped).
    pub fn observe(&self, partner: &str, failed: bool) {
        let known = self
            .counts
            .read()
            .ok()
            .and_then(|c| c.get(partner).cloned());
        let counts = match known {
            Some(c) => c,
            None => {
                let Ok(mut all) = self.counts.write() else {
                    return;
                };
                all.entry(partner.to_string()).or_default().clone()
            }
        };
        counts.requests.fetch_add(1, Ordering::Relaxed);
        if failed {
            counts.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Closes an interval: compares each partner's counts with its
    /// baseline, updates the baseline, and returns the audit events for
    /// jumps that just began.
    pub fn tick(&self) -> Vec<Event> {
        let snapshot: Vec<(String, u64, u64)> = match self.counts.read() {
            Ok(all) => all
                .iter()
                .map(|(p, c)| {
                    (
                        p.clone(),
                        c.requests.swap(0, Ordering::Relaxed),
                        c.errors.swap(0, Ordering::Relaxed),
                    )
                })
                .collect(),
            Err(_) => return Vec::new(),
        };
        let Ok(mut baselines) = self.baselines.lock() else {
            return Vec::new();
        };
        let alpha = 2.0 / (f64::from(self.settings.baseline_intervals) + 1.0);
        let mut events = Vec::new();
        for (partner, requests, errors) in snapshot {
            let b = baselines.entry(partner.clone()).or_default();
            // A partner's first intervals only establish its baseline.
            let warm = b.seen > self.settings.warmup_intervals;
            for (kind, count, base, flagged) in [
                (
                    "request_rate",
                    requests,
                    b.requests,
                    &mut b.flagged_requests,
                ),
                ("error_rate", errors, b.errors, &mut b.flagged_errors),
            ] {
                let now_flagged = warm && jumped(count, base, &self.settings);
                if now_flagged && !*flagged {
                    self.stats.anomalies.with_label_values(&[kind]).inc();
                    tracing::warn!(
                        target: "portcullis::suspicious",
                        partner = %partner,
                        kind,
                        count,
                        baseline = base,
                        "partner traffic far above its baseline"
                    );
                    let mut e = Event::new("anomaly")
                        .with("kind", kind)
                        .with("count", count)
                        .with("baseline", (base * 100.0).round() / 100.0)
                        .with("interval_ms", self.settings.interval.as_millis() as u64);
                    e.partner = Some(partner.clone());
                    events.push(e);
                }
                *flagged = now_flagged;
                self.stats
                    .flagged
                    .with_label_values(&[partner.as_str(), kind])
                    .set(i64::from(now_flagged));
            }
            if b.seen == 0 {
                b.requests = requests as f64;
                b.errors = errors as f64;
            } else {
                b.requests += alpha * (requests as f64 - b.requests);
                b.errors += alpha * (errors as f64 - b.errors);
            }
            b.seen = b.seen.saturating_add(1);
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn detector(warmup: u32) -> AnomalyDetector {
        AnomalyDetector::new(
            AnomalySettings {
                interval: Duration::from_secs(10),
                factor: 5.0,
                min_count: 20,
                baseline_intervals: 5,
                warmup_intervals: warmup,
            },
            AnomalyStats::new().unwrap(),
        )
    }

    fn interval(d: &AnomalyDetector, partner: &str, requests: u64, errors: u64) -> Vec<Event> {
        for i in 0..requests {
            d.observe(partner, i < errors);
        }
        d.tick()
    }

    #[test]
    fn a_jump_over_the_baseline_is_flagged_once_and_clears() {
        let d = detector(0);
        for _ in 0..10 {
            assert!(interval(&d, "acme", 30, 0).is_empty());
        }
        let events = interval(&d, "acme", 400, 0);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].detail["kind"], "request_rate");
        assert_eq!(
            d.stats
                .flagged
                .with_label_values(&["acme", "request_rate"])
                .get(),
            1
        );
        // Still high: flagged, but no second event.
        assert!(interval(&d, "acme", 400, 0).is_empty());
        // Back to normal: the flag clears.
        for _ in 0..10 {
            interval(&d, "acme", 30, 0);
        }
        assert_eq!(
            d.stats
                .flagged
                .with_label_values(&["acme", "request_rate"])
                .get(),
            0
        );
    }

    #[test]
    fn steady_traffic_and_small_counts_are_not_flagged() {
        let d = detector(0);
        for _ in 0..20 {
            assert!(interval(&d, "acme", 500, 5).is_empty());
        }
        assert!(interval(&d, "globex", 10, 10).is_empty());
    }

    #[test]
    fn errors_are_judged_on_their_own() {
        let d = detector(0);
        for _ in 0..10 {
            interval(&d, "acme", 100, 1);
        }
        let events = interval(&d, "acme", 100, 60);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].detail["kind"], "error_rate");
    }

    #[test]
    fn nothing_is_flagged_during_warmup() {
        let d = detector(3);
        assert!(interval(&d, "acme", 1000, 0).is_empty());
    }
}
