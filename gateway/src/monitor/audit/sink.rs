//! The request path's side of the audit trail: hand a record to the
//! writer thread without waiting. A full queue drops the record and counts
//! it; the writer then writes how many were dropped into the trail itself,
//! so a gap is never silent.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prometheus::{IntCounter, IntGauge};

use super::chain::{Chain, ChainKey};
use super::record::{Decision, Entry};
use super::writer::{self, Output};
use crate::config::monitoring::{AuditOutput, AuditSettings};

#[derive(Clone)]
pub struct AuditStats {
    pub written: IntCounter,
    pub dropped: IntCounter,
    pub queue_depth: IntGauge,
}

impl AuditStats {
    pub fn new() -> Result<AuditStats, prometheus::Error> {
        Ok(AuditStats {
            written: IntCounter::new("audit_records_total", "Audit records written")?,
            dropped: IntCounter::new(
                "audit_records_dropped_total",
                "Audit records dropped because the write queue was full",
            )?,
            queue_depth: IntGauge::new("audit_queue_depth", "Audit records waiting to be written")?,
        })
    }
}

pub struct AuditSink {
    shared: Option<Arc<Shared>>,
    sample_allowed: f64,
    stats: AuditStats,
}

/// What the request path and the writer thread share. A plain locked
/// vector, emptied by the writer every few milliseconds: a request never
/// wakes the writer (waking it per record cost a third of the
/// throughput in `stage_throughput`), and the lock is held for a push.
pub(super) struct Shared {
    pub(super) queue: Mutex<Vec<Entry>>,
    capacity: usize,
    /// Dropped since the writer last reported a gap.
    pub(super) unreported_drops: AtomicU64,
    /// The writer's last round lost records (or it could not start): the
    /// trail is not being written, which readiness reports.
    pub(super) failing: AtomicBool,
}

impl Shared {
    pub(super) fn new(capacity: usize) -> Shared {
        Shared {
            queue: Mutex::new(Vec::new()),
            capacity,
            unreported_drops: AtomicU64::new(0),
            failing: AtomicBool::new(false),
        }
    }
}

impl AuditSink {
    /// A sink that records nothing (`output: off`).
    pub fn off(stats: AuditStats) -> AuditSink {
        AuditSink {
            shared: None,
            sample_allowed: 0.0,
            stats,
        }
    }

    /// Opens the output (a clear error now, not under traffic) and starts
    /// the writer thread.
    pub fn start(settings: &AuditSettings, stats: AuditStats) -> Result<AuditSink, String> {
        let key = match &settings.chain_key_file {
            Some(path) => {
                Some(ChainKey::load(path).map_err(|e| format!("audit.chain_key_file: {e}"))?)
            }
            None => None,
        };
        let mut chain = Chain::new(key);
        let output = match settings.output {
            AuditOutput::Off => return Ok(AuditSink::off(stats)),
            AuditOutput::Stdout => Output::stdout(),
            AuditOutput::File => Output::file(
                &settings.path,
                settings.max_bytes,
                settings.keep,
                &mut chain,
            )
            .map_err(|e| format!("audit.path: {e}"))?,
        };
        let shared = Arc::new(Shared::new(settings.queue));
        // The writer ends once the sink is gone and the queue is empty.
        let _writer = writer::spawn(shared.clone(), output, chain, stats.clone())?;
        Ok(AuditSink {
            shared: Some(shared),
            sample_allowed: settings.sample_allowed,
            stats,
        })
    }

    /// Whether a request with this decision is recorded: denials and
    /// errors always; allowed requests by the sampling rate.
    pub fn wants(&self, decision: Decision) -> bool {
        self.shared.is_some()
            && (decision != Decision::Allow
                || self.sample_allowed >= 1.0
                || rand::random::<f64>() < self.sample_allowed)
    }

    /// Whether the trail is being written. A full queue is not a failure
    /// (it is counted and leaves a gap record); a writer that cannot write
    /// is. `output: off` writes nothing and is never failing.
    pub fn writing(&self) -> bool {
        self.shared
            .as_ref()
            .is_none_or(|s| !s.failing.load(Ordering::Relaxed))
    }

    /// Queues a record; never waits for the writer.
    pub fn submit(&self, entry: Entry) {
        let Some(shared) = &self.shared else {
            return;
        };
        let queued = match shared.queue.lock() {
            Ok(mut queue) if queue.len() < shared.capacity => {
                queue.push(entry);
                Some(queue.len())
            }
            _ => None,
        };
        match queued {
            Some(depth) => self.stats.queue_depth.set(depth as i64),
            None => {
                self.stats.dropped.inc();
                shared.unreported_drops.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::audit::Event;

    #[test]
    fn a_full_queue_drops_counts_and_leaves_a_gap_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let stats = AuditStats::new().unwrap();
        let shared = Arc::new(Shared::new(1));
        let sink = AuditSink {
            shared: Some(shared.clone()),
            sample_allowed: 1.0,
            stats: stats.clone(),
        };
        // No writer yet: the second and third records find the queue full.
        for n in 0..3 {
            sink.submit(Entry::event(Event::new("test").with("n", n)));
        }
        assert_eq!(stats.dropped.get(), 2);
        let mut chain = Chain::new(None);
        let output = Output::file(&path, 1 << 20, 1, &mut chain).unwrap();
        let writer = writer::spawn(shared, output, chain, stats.clone()).unwrap();
        drop(sink);
        writer.join().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let events: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(events.len(), 2, "{text}");
        assert_eq!(events[0]["detail"]["n"], 0);
        assert_eq!(events[1]["event"], "records_dropped");
        assert_eq!(events[1]["detail"]["count"], 2);
        assert_eq!(stats.written.get(), 2);
        assert!(matches!(
            crate::monitor::audit::chain::verify(&[path.as_path()], None).unwrap(),
            crate::monitor::audit::chain::Finding::Intact { records: 2, .. }
        ));
    }
}
