//! The per-request context pingora carries between phases: the facts each
//! stage established, in the order they are learnt.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;

use crate::balance::TargetLease;
use crate::limits::inflight::Permit;
use crate::plan::{Plan, Route};
use crate::proxy::subrequest::SubReport;
use crate::stage::minimise::LeakScanner;
use crate::stage::outcome::Outcome;
use crate::stage::record::StageTimes;
use crate::stage::trace_context::Trace;

pub struct RequestCtx {
    pub(crate) started: Instant,
    pub(crate) request_id: String,
    pub(crate) plan: Option<Arc<Plan>>,
    pub(crate) route: Option<Arc<Route>>,
    /// The authenticated partner, and the id (never the key) of its key.
    pub(crate) partner: Option<String>,
    pub(crate) key_id: Option<String>,
    /// How the request ended, for audit, metrics and logs.
    pub(crate) outcome: Outcome,
    pub(crate) upstream_sent: Option<Instant>,
    pub(crate) upstream_deadline: Option<Instant>,
    /// The upstream target this request is being sent to.
    pub(crate) target: Option<TargetLease>,
    /// Targets already tried and failed before anything was sent, so a
    /// retry goes elsewhere.
    pub(crate) tried: Vec<SocketAddr>,
    /// Bytes of request body streamed so far, against the route's limit.
    pub(crate) body_seen: usize,
    /// This request's slot under its partner's concurrency limit.
    pub(crate) permit: Option<Permit>,
    /// Set in a subrequest started by `subrequest`: where to report back.
    pub(crate) sub_outcome: Option<Arc<Mutex<SubReport>>>,
    /// Where the request was sent, for the access log.
    pub(crate) upstream: UpstreamTries,
    /// The upstream's body is being replaced by this problem document.
    pub(crate) replacing: Option<Replacement>,
    /// Watches a streamed response for secrets.
    pub(crate) leak_scanner: Option<LeakScanner>,
    /// The W3C trace this request belongs to.
    pub(crate) trace: Trace,
    pub(crate) client_ip: Option<IpAddr>,
    /// The TCP peer, when a trusted proxy named another client.
    pub(crate) peer_ip: Option<IpAddr>,
    /// The canonical path, once screening computed it.
    pub(crate) canonical_path: Option<String>,
    pub(crate) stages: StageTimes,
    /// The owned object the request names, and whether the index already
    /// knew it as the caller's (a read of an unknown one is guarded by its
    /// answer and teaches the index).
    pub(crate) object: Option<ObjectSeen>,
    /// Headers every response to this request carries (rate-limit state,
    /// Retry-After).
    pub(crate) extra_headers: Vec<(&'static str, String)>,
}

impl RequestCtx {
    pub fn new() -> RequestCtx {
        RequestCtx {
            started: Instant::now(),
            request_id: String::new(),
            plan: None,
            route: None,
            partner: None,
            key_id: None,
            outcome: Outcome::Pending,
            upstream_sent: None,
            upstream_deadline: None,
            target: None,
            tried: Vec::new(),
            body_seen: 0,
            permit: None,
            sub_outcome: None,
            upstream: UpstreamTries::default(),
            replacing: None,
            leak_scanner: None,
            trace: Trace::default(),
            client_ip: None,
            peer_ip: None,
            canonical_path: None,
            stages: StageTimes::default(),
            object: None,
            extra_headers: Vec::new(),
        }
    }
}

impl Default for RequestCtx {
    fn default() -> Self {
        RequestCtx::new()
    }
}

/// The target a request was last sent to, and how many times it was sent.
#[derive(Debug, Clone, Copy, Default)]
pub struct UpstreamTries {
    pub addr: Option<SocketAddr>,
    pub attempts: u8,
}

/// An upstream answer whose body is swallowed and replaced.
pub(crate) struct Replacement {
    pub(crate) body: Bytes,
    /// The start of the original body, for the log.
    pub(crate) excerpt: Vec<u8>,
    pub(crate) status: u16,
}

/// The object a request named, as the ownership stage found it.
#[derive(Debug, Clone)]
pub struct ObjectSeen {
    pub named: crate::monitor::audit::ObjectNamed,
    pub known: bool,
}
