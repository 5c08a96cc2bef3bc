//! Per-partner limit on requests in flight on this node. Counters outlive
//! configuration reloads, so a reload cannot reset anyone's usage.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};

#[derive(Default)]
pub struct InFlight {
    counters: RwLock<HashMap<String, Arc<AtomicU32>>>,
}

/// Held for the life of one request; releases its slot when dropped.
#[derive(Debug)]
pub struct Permit(Arc<AtomicU32>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl InFlight {
    /// A slot for one more request of `partner`, or `None` at `max`.
    pub fn acquire(&self, partner: &str, max: u32) -> Option<Permit> {
        let counter = self.counter(partner);
        let mut current = counter.load(Ordering::Acquire);
        loop {
            if current >= max {
                return None;
            }
            match counter.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(Permit(counter)),
                Err(actual) => current = actual,
            }
        }
    }

    fn counter(&self, partner: &str) -> Arc<AtomicU32> {
        if let Some(c) = self
            .counters
            .read()
            .ok()
            .and_then(|m| m.get(partner).cloned())
        {
            return c;
        }
        match self.counters.write() {
            Ok(mut m) => m.entry(partner.to_string()).or_default().clone(),
            // A poisoned lock only means another thread panicked while
            // inserting; an unshared counter still bounds this request.
            Err(_) => Arc::new(AtomicU32::new(0)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_and_released() {
        let inflight = InFlight::default();
        let a = inflight.acquire("acme", 2).unwrap();
        let _b = inflight.acquire("acme", 2).unwrap();
        assert!(inflight.acquire("acme", 2).is_none());
        assert!(inflight.acquire("globex", 2).is_some());
        drop(a);
        assert!(inflight.acquire("acme", 2).is_some());
    }
}
