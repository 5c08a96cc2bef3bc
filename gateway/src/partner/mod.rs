//! The partner listener: where a partner manages its own data keys with
//! its management credential. Its own address and TLS listener, apart
//! from the data listener (where keys are used, and where a management
//! credential is malformed) and the admin listener (operators).
//!
//! Each request: throttle by client address, refuse a blocked address,
//! route (one spelling per operation), sign in, check the partner is one
//! the policies know and have not suspended, run the operation, answer,
//! then audit it as its own event and count it.

pub mod activity;
pub mod api;
mod console;
pub mod session;
pub mod sign_in;
pub mod throttle;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::admin::read_body;
use crate::config::partner::PartnerListenerSettings;
use crate::keys::service::KeyService;
use crate::monitor::audit::{Decision, Entry, Event};
use crate::monitor::metrics::Metrics;
use crate::monitor::Monitor;
use crate::server::reload::Live;
use crate::stage::problem::{self, Reject};
use api::{Op, Outcome};
use throttle::Throttle;

/// Largest request body the partner API reads (a key's name and expiry).
const MAX_BODY: usize = 4 * 1024;

pub struct PartnerApp {
    keys: Arc<KeyService>,
    monitor: Arc<Monitor>,
    metrics: Arc<Metrics>,
    live: Arc<Live>,
    throttle: Throttle,
    body_timeout: Duration,
    sessions: session::Sessions,
    /// The last TOTP step each credential signed in with, on this node.
    spent_codes: quick_cache::sync::Cache<crate::keys::pepper::KeyHash, u64>,
    /// The audit trail's file, for the activity view (none when the trail
    /// goes to stdout or nowhere).
    audit_file: Option<std::path::PathBuf>,
}

/// One answer as it will be written.
struct Answer {
    status: StatusCode,
    body: Vec<u8>,
    content_type: &'static str,
    retry_after: Option<Duration>,
    allow: Option<&'static str>,
    set_cookie: Option<String>,
}

impl Answer {
    fn problem(reject: Reject, request_id: &str) -> Answer {
        Answer {
            status: StatusCode::from_u16(reject.status)
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body: problem::render(&reject, request_id, None),
            content_type: problem::CONTENT_TYPE,
            retry_after: None,
            allow: None,
            set_cookie: None,
        }
    }

    fn json(status: StatusCode, value: serde_json::Value) -> Answer {
        Answer {
            status,
            body: value.to_string().into_bytes(),
            content_type: "application/json",
            retry_after: None,
            allow: None,
            set_cookie: None,
        }
    }
}

/// What the audit line and the metric say about one request.
struct Audited {
    op: Option<Op>,
    /// The console's own events (signed in, signed out), which are no
    /// operation; `Some("")` for pages, which are counted, not audited.
    event: Option<&'static str>,
    decision: Decision,
    reason: &'static str,
    partner: Option<String>,
    credential: Option<String>,
    target: Option<String>,
    name: Option<String>,
}

impl Audited {
    fn refused(op: Option<Op>, reject: Reject) -> Audited {
        Audited {
            op,
            event: None,
            decision: decision_of(reject),
            reason: reject.code,
            partner: None,
            credential: None,
            target: None,
            name: None,
        }
    }
}

fn decision_of(reject: Reject) -> Decision {
    if reject.status >= 500 {
        Decision::Error
    } else {
        Decision::Deny
    }
}

impl PartnerApp {
    pub fn new(
        keys: Arc<KeyService>,
        monitor: Arc<Monitor>,
        metrics: Arc<Metrics>,
        live: Arc<Live>,
        settings: &PartnerListenerSettings,
        audit: &crate::config::monitoring::AuditSettings,
    ) -> PartnerApp {
        let sessions = session::Sessions::new(keys.verifier().pepper(), settings.session_ttl);
        let audit_file = (audit.output == crate::config::monitoring::AuditOutput::File)
            .then(|| audit.path.clone());
        PartnerApp {
            sessions,
            spent_codes: quick_cache::sync::Cache::new(10_000),
            audit_file,
            keys,
            monitor,
            metrics,
            live,
            throttle: Throttle::new(crate::limits::Rate::new(&settings.rate)),
            body_timeout: settings.body_timeout,
        }
    }

    async fn serve(
        &self,
        session: &mut ServerSession,
        client: Option<IpAddr>,
        request_id: &str,
    ) -> (Answer, Audited) {
        if let Some(ip) = client {
            if let Err(wait) = self.throttle.admit(ip) {
                let mut answer = Answer::problem(problem::RATE_LIMITED, request_id);
                answer.retry_after = Some(wait);
                return (answer, Audited::refused(None, problem::RATE_LIMITED));
            }
            if let Some(wait) = self.monitor.abuse.client_blocked(ip) {
                let mut answer = Answer::problem(problem::CLIENT_BLOCKED, request_id);
                answer.retry_after = Some(wait);
                return (answer, Audited::refused(None, problem::CLIENT_BLOCKED));
            }
        }
        let req = session.req_header();
        let path = req.uri.path().to_string();
        if path == "/console" || path.starts_with("/console/") {
            return self.console(session, &path, client, request_id).await;
        }
        let op = match api::route(&req.method, req.uri.path(), req.uri.query()) {
            Ok(op) => op,
            Err((reject, allow)) => {
                let mut answer = Answer::problem(reject, request_id);
                answer.allow = allow;
                return (answer, Audited::refused(None, reject));
            }
        };
        let signed_in = sign_in::caller(
            self.keys.verifier(),
            &self.monitor,
            &self.sessions,
            &session.req_header().headers,
            session.req_header().method != http::Method::GET,
            client,
            request_id,
        )
        .await;
        let credential = match signed_in {
            Ok(record) => record,
            Err(refused) => {
                let mut answer = Answer::problem(refused.reject, request_id);
                if refused.reject == problem::SESSION_EXPIRED {
                    answer.set_cookie = Some(session::clear_cookie());
                }
                if refused.reject == problem::KEY_BLOCKED {
                    answer.retry_after = refused
                        .credential
                        .as_deref()
                        .and_then(|id| self.monitor.abuse.key_blocked(id));
                }
                let mut audited = Audited::refused(Some(op), refused.reject);
                audited.credential = refused.credential;
                return (answer, audited);
            }
        };
        let partner = credential.partner.clone();
        let admitted = match self.live.plan().partners.get(&partner) {
            None => Err(problem::PARTNER_UNKNOWN),
            Some(p) if p.suspended => Err(problem::PARTNER_SUSPENDED),
            Some(_) => Ok(()),
        };
        let outcome = match admitted {
            Err(reject) => Outcome {
                status: StatusCode::from_u16(reject.status).unwrap_or(StatusCode::FORBIDDEN),
                body: Err(reject),
                target: None,
                name: None,
            },
            Ok(()) => {
                let body = if op == Op::Create {
                    match self.small_body(session).await {
                        Ok(body) => body,
                        Err(reject) => {
                            return self.refused_after_sign_in(op, reject, &credential, request_id)
                        }
                    }
                } else {
                    Vec::new()
                };
                if op == Op::Activity {
                    self.activity(&partner)
                } else {
                    api::run(&self.keys, &partner, &op, &body).await
                }
            }
        };
        let (answer, decision, reason) = match outcome.body {
            Ok(value) => (Answer::json(outcome.status, value), Decision::Allow, "done"),
            Err(reject) => (
                Answer::problem(reject, request_id),
                decision_of(reject),
                reject.code,
            ),
        };
        let audited = Audited {
            op: Some(op),
            event: None,
            decision,
            reason,
            partner: Some(partner),
            credential: Some(credential.key_id.clone()),
            target: outcome.target,
            name: outcome.name,
        };
        (answer, audited)
    }

    /// The small JSON body an operation takes, within the size and time
    /// limits.
    async fn small_body(&self, session: &mut ServerSession) -> Result<Vec<u8>, Reject> {
        match tokio::time::timeout(self.body_timeout, read_body(session, MAX_BODY)).await {
            Ok(Some(body)) => Ok(body),
            Ok(None) => Err(problem::BODY_TOO_LARGE),
            Err(_) => Err(problem::BODY_TIMEOUT),
        }
    }

    fn refused_after_sign_in(
        &self,
        op: Op,
        reject: Reject,
        credential: &crate::keys::store::KeyRecord,
        request_id: &str,
    ) -> (Answer, Audited) {
        let mut audited = Audited::refused(Some(op), reject);
        audited.partner = Some(credential.partner.clone());
        audited.credential = Some(credential.key_id.clone());
        (Answer::problem(reject, request_id), audited)
    }

    fn audit(
        &self,
        audited: Audited,
        client: Option<IpAddr>,
        request_id: &str,
        status: StatusCode,
    ) {
        let action = match (&audited.op, audited.event) {
            (Some(op), _) => op.action(),
            (None, Some(_)) => "console",
            (None, None) => "none",
        };
        self.metrics
            .partner_api
            .with_label_values(&[action, audited.decision.as_str()])
            .inc();
        let event_name = match (&audited.op, audited.event, audited.decision) {
            // The console's page and script: nobody signed in, nothing done.
            (_, Some(""), _) => return,
            (_, Some(event), Decision::Allow) => event,
            (Some(op), None, Decision::Allow) => op.event(),
            _ => "partner_request_refused",
        };
        let mut event = Event::new(event_name)
            .decided(audited.decision)
            .with("request_id", request_id)
            .with("action", action)
            .with("status", status.as_u16())
            .with("reason", audited.reason);
        if let Some(credential) = audited.credential {
            event = event.with("credential", credential);
        }
        if let Some(name) = audited.name {
            event = event.with("name", name);
        }
        event.partner = audited.partner;
        event.key_id = audited.target;
        event.client_ip = client.map(|ip| ip.to_string());
        if audited.decision == Decision::Allow && action != "list" {
            tracing::info!(
                target: "portcullis::partner",
                request_id,
                partner = event.partner.as_deref().unwrap_or("-"),
                key_id = event.key_id.as_deref().unwrap_or("-"),
                action,
                "partner changed its keys"
            );
        }
        self.monitor.audit.submit(Entry::event(event));
    }
}

#[async_trait]
impl ServeHttp for PartnerApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let request_id = crate::stage::request_id::generate();
        let client = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let (answer, audited) = self.serve(session, client, &request_id).await;
        self.audit(audited, client, &request_id, answer.status);
        let hsts = self.live.plan().hsts.clone();
        let mut builder = Response::builder()
            .status(answer.status)
            .header(http::header::CONTENT_TYPE, answer.content_type)
            .header(http::header::CONTENT_LENGTH, answer.body.len())
            .header(http::header::CACHE_CONTROL, "no-store")
            .header("x-content-type-options", "nosniff")
            .header("x-request-id", request_id.as_str())
            .header(http::header::CONTENT_SECURITY_POLICY, console::CSP)
            .header(http::header::X_FRAME_OPTIONS, "DENY")
            .header(http::header::REFERRER_POLICY, "no-referrer")
            .header(http::header::STRICT_TRANSPORT_SECURITY, hsts);
        if let Some(wait) = answer.retry_after {
            builder = builder.header(http::header::RETRY_AFTER, wait.as_secs().max(1));
        }
        if let Some(allow) = answer.allow {
            builder = builder.header(http::header::ALLOW, allow);
        }
        if let Some(cookie) = answer.set_cookie {
            builder = builder.header(http::header::SET_COOKIE, cookie);
        }
        if answer.status == StatusCode::UNAUTHORIZED {
            builder = builder.header(
                http::header::WWW_AUTHENTICATE,
                "Bearer realm=\"portcullis-partner\"",
            );
        }
        builder
            .body(answer.body)
            .unwrap_or_else(|_| Response::new(Vec::new()))
    }
}
