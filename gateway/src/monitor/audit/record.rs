//! What an audit line says. Never the key, never the query string (partners
//! put secrets there), never a body.

use std::time::SystemTime;

use serde::Serialize;

/// How the gateway dealt with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Let through to the upstream.
    Allow,
    /// Refused by a stage: the caller's request was at fault or not permitted.
    Deny,
    /// Could not be served: upstream failure, store outage, internal error.
    Error,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::Error => "error",
        }
    }
}

/// Time spent in each stage, in microseconds; absent when the stage did
/// not run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    pub total: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub isolation: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validation: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<u64>,
}

/// One request, as the audit trail keeps it.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub request_id: String,
    pub trace_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partner: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    pub route: String,
    pub method: String,
    /// The canonical path when it could be computed, else the raw path
    /// (bounded in length).
    pub path: String,
    pub status: u16,
    pub decision: Decision,
    /// The stable outcome code: `proxied` or the reject code.
    pub reason: String,
    pub timings_us: Timings,
    pub bytes_in: u64,
    pub bytes_out: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    /// The TCP peer (a trusted proxy), when it is not the client.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cipher: Option<String>,
    /// The owned object the request named, on routes with `resource:`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<ObjectNamed>,
}

/// An object a request named, and who owns it when that is not the caller
/// (the two partners of a cross-partner attempt).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectNamed {
    pub kind: String,
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// Something worth an audit line that is not one request: a client
/// blocked, a partner's traffic far above its baseline, records dropped.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub event: &'static str,
    /// For an action someone asked for (a partner managing its keys): was
    /// it done, refused, or did it fail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partner: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub detail: serde_json::Map<String, serde_json::Value>,
}

impl Event {
    pub fn new(event: &'static str) -> Event {
        Event {
            event,
            decision: None,
            partner: None,
            key_id: None,
            client_ip: None,
            detail: serde_json::Map::new(),
        }
    }

    pub fn decided(mut self, decision: Decision) -> Event {
        self.decision = Some(decision);
        self
    }

    pub fn with(mut self, name: &str, value: impl Into<serde_json::Value>) -> Event {
        self.detail.insert(name.to_string(), value.into());
        self
    }
}

/// A line of the audit trail, stamped when it was submitted.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    #[serde(serialize_with = "rfc3339_millis")]
    pub time: SystemTime,
    pub kind: &'static str,
    #[serde(flatten)]
    pub body: Body,
}

#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Body {
    Request(Box<Record>),
    Event(Event),
}

impl Entry {
    pub fn request(record: Record) -> Entry {
        Entry {
            time: SystemTime::now(),
            kind: "request",
            body: Body::Request(Box::new(record)),
        }
    }

    pub fn event(event: Event) -> Entry {
        Entry {
            time: SystemTime::now(),
            kind: "event",
            body: Body::Event(event),
        }
    }
}

fn rfc3339_millis<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_millis(*t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_line_is_flat_json() {
        let entry = Entry::event(Event::new("client_blocked").with("failures", 5));
        let line = serde_json::to_string(&entry).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["kind"], "event");
        assert_eq!(v["event"], "client_blocked");
        assert_eq!(v["detail"]["failures"], 5);
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
    }
}
