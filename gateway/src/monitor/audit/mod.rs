//! The audit trail: one JSON record per request (and per notable event),
//! hash-chained so an edited, removed or reordered line is detectable, and
//! written off the request path so a slow disk never slows a request.

pub mod chain;
pub mod record;
pub mod search;
pub mod sink;
pub mod writer;

pub use record::{Decision, Entry, Event, ObjectNamed, Record, Timings};
pub use sink::AuditSink;
