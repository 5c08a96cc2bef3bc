//! The partner console: a page served by the partner listener, from files
//! compiled into the binary (no CDN, no inline script or style, so the
//! policy below can forbid both), and its session endpoints. The page
//! calls the same partner API as scripts do, with the session cookie and
//! its CSRF token instead of a bearer credential.

use std::net::IpAddr;

use http::{Method, StatusCode};
use pingora::protocols::http::ServerSession;
use serde::Deserialize;
use serde_json::json;

use super::api::Outcome;
use super::{sign_in, Answer, Audited, PartnerApp};
use crate::monitor::audit::Decision;
use crate::stage::problem;

/// Sent with every answer of the partner listener.
pub const CSP: &str =
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
     img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const INDEX: &str = include_str!("console/index.html");
const SCRIPT: &str = include_str!("console/app.js");
const STYLE: &str = include_str!("console/app.css");

/// Entries the activity view shows.
const ACTIVITY: usize = 50;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    credential: String,
    code: String,
}

fn asset(content_type: &'static str, body: &str) -> Answer {
    Answer {
        status: StatusCode::OK,
        body: body.as_bytes().to_vec(),
        content_type,
        retry_after: None,
        allow: None,
        set_cookie: None,
    }
}

/// Answers that carry no partner and change nothing: counted, not audited.
fn unaudited(reason: &'static str) -> Audited {
    Audited {
        op: None,
        event: Some(""),
        decision: Decision::Allow,
        reason,
        partner: None,
        credential: None,
        target: None,
        name: None,
    }
}

impl PartnerApp {
    pub(super) async fn console(
        &self,
        session: &mut ServerSession,
        path: &str,
        client: Option<IpAddr>,
        request_id: &str,
    ) -> (Answer, Audited) {
        let method = session.req_header().method.clone();
        if session.req_header().uri.query().is_some() {
            let reject = problem::BAD_REQUEST;
            return (
                Answer::problem(reject, request_id),
                Audited::refused(None, reject),
            );
        }
        let (allow, answer) = match path {
            "/console" => (
                "GET",
                (method == Method::GET).then(|| asset("text/html; charset=utf-8", INDEX)),
            ),
            "/console/app.js" => (
                "GET",
                (method == Method::GET).then(|| asset("text/javascript; charset=utf-8", SCRIPT)),
            ),
            "/console/app.css" => (
                "GET",
                (method == Method::GET).then(|| asset("text/css; charset=utf-8", STYLE)),
            ),
            "/console/session" => {
                return self
                    .session_call(session, &method, client, request_id)
                    .await
            }
            _ => {
                let reject = problem::ROUTE_NOT_FOUND;
                return (
                    Answer::problem(reject, request_id),
                    Audited::refused(None, reject),
                );
            }
        };
        match answer {
            Some(answer) => (answer, unaudited("console_page")),
            None => {
                let reject = problem::METHOD_NOT_ALLOWED;
                let mut answer = Answer::problem(reject, request_id);
                answer.allow = Some(allow);
                (answer, Audited::refused(None, reject))
            }
        }
    }

    async fn session_call(
        &self,
        session: &mut ServerSession,
        method: &Method,
        client: Option<IpAddr>,
        request_id: &str,
    ) -> (Answer, Audited) {
        match *method {
            Method::POST => self.sign_in(session, client, request_id).await,
            Method::GET | Method::DELETE => {
                let who = sign_in::caller(
                    self.keys.verifier(),
                    &self.monitor,
                    &self.sessions,
                    &session.req_header().headers,
                    *method == Method::DELETE,
                    client,
                    request_id,
                )
                .await;
                let opened = super::session::cookie_value(&session.req_header().headers)
                    .and_then(|v| self.sessions.open(v, crate::keys::store::now_secs()));
                match (who, opened) {
                    (Ok(record), Some(open)) if *method == Method::GET => (
                        Answer::json(
                            StatusCode::OK,
                            json!({"partner": record.partner, "csrf": open.csrf, "expires_at": open.expires_at}),
                        ),
                        unaudited("console_session"),
                    ),
                    (Ok(record), Some(_)) => {
                        let mut answer = Answer::json(StatusCode::OK, json!({"signed_out": true}));
                        answer.set_cookie = Some(super::session::clear_cookie());
                        (answer, self.signed(&record, "partner_console_signed_out"))
                    }
                    (Err(refused), _) => {
                        let mut audited = Audited::refused(None, refused.reject);
                        audited.credential = refused.credential;
                        let mut answer = Answer::problem(refused.reject, request_id);
                        if refused.reject == problem::SESSION_EXPIRED {
                            answer.set_cookie = Some(super::session::clear_cookie());
                        }
                        (answer, audited)
                    }
                    // A bearer credential has no console session.
                    (Ok(_), None) => {
                        let reject = problem::SESSION_EXPIRED;
                        (
                            Answer::problem(reject, request_id),
                            Audited::refused(None, reject),
                        )
                    }
                }
            }
            _ => {
                let reject = problem::METHOD_NOT_ALLOWED;
                let mut answer = Answer::problem(reject, request_id);
                answer.allow = Some("GET, POST, DELETE");
                (answer, Audited::refused(None, reject))
            }
        }
    }

    async fn sign_in(
        &self,
        session: &mut ServerSession,
        client: Option<IpAddr>,
        request_id: &str,
    ) -> (Answer, Audited) {
        let body = match self.small_body(session).await {
            Ok(body) => body,
            Err(reject) => return self.plain_refusal(reject, request_id),
        };
        let Ok(form) = serde_json::from_slice::<SignIn>(&body) else {
            return self.plain_refusal(problem::ADMIN_BAD_BODY, request_id);
        };
        let signed = sign_in::console_sign_in(
            &self.keys,
            &self.monitor,
            &self.spent_codes,
            form.credential.trim(),
            form.code.trim(),
            client,
            request_id,
        )
        .await;
        let record = match signed {
            Ok(record) => record,
            Err(refused) => {
                let mut audited = Audited::refused(None, refused.reject);
                audited.credential = refused.credential;
                return (Answer::problem(refused.reject, request_id), audited);
            }
        };
        let Some(hash) = record.key_hash() else {
            return self.plain_refusal(problem::INTERNAL_ERROR, request_id);
        };
        let (value, open) =
            self.sessions
                .issue(&record.partner, &hash, crate::keys::store::now_secs());
        let mut answer = Answer::json(
            StatusCode::OK,
            json!({"partner": open.partner, "csrf": open.csrf, "expires_at": open.expires_at}),
        );
        answer.set_cookie = Some(self.sessions.set_cookie(&value));
        (answer, self.signed(&record, "partner_console_signed_in"))
    }

    fn plain_refusal(&self, reject: problem::Reject, request_id: &str) -> (Answer, Audited) {
        (
            Answer::problem(reject, request_id),
            Audited::refused(None, reject),
        )
    }

    /// An allowed console event of `record`'s partner.
    fn signed(&self, record: &crate::keys::store::KeyRecord, event: &'static str) -> Audited {
        Audited {
            op: None,
            event: Some(event),
            decision: Decision::Allow,
            reason: "done",
            partner: Some(record.partner.clone()),
            credential: Some(record.key_id.clone()),
            target: None,
            name: None,
        }
    }

    pub(super) fn activity(&self, partner: &str) -> Outcome {
        let entries = match &self.audit_file {
            Some(path) => match super::activity::recent(path, partner, ACTIVITY) {
                Ok(entries) => entries,
                Err(e) => {
                    tracing::warn!(target: "portcullis::partner", error = %e, "cannot read the audit trail for the activity view");
                    return Outcome::refused(problem::INTERNAL_ERROR);
                }
            },
            None => Vec::new(),
        };
        Outcome::done(StatusCode::OK, json!({ "entries": entries }), None)
    }
}
