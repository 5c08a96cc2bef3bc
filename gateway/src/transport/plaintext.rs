//! The optional plaintext listener. It never forwards anything: GET and
//! HEAD are redirected to HTTPS (308 keeps the method), everything else is
//! refused with 426, and the connection is closed after one answer.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::apps::ServerApp;
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;

use crate::stage::problem::{self, Reject};

pub struct RedirectApp {
    https_port: u16,
    header_timeout: Duration,
}

impl RedirectApp {
    pub fn new(https_port: u16, header_timeout: Duration) -> Self {
        RedirectApp {
            https_port,
            header_timeout,
        }
    }
}

/// What the listener answers; a plain function so it is testable.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    Redirect(String),
    Refuse(Reject),
}

/// The host part of a `Host` header, if it is a plausible host name or
/// IP literal (anything else could smuggle a different redirect target).
fn host_only(host_header: &str) -> Option<&str> {
    let host = if host_header.starts_with('[') {
        let end = host_header.find(']')?;
        &host_header[..=end]
    } else {
        host_header.split(':').next()?
    };
    let valid = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b':'));
    valid.then_some(host)
}

pub fn answer(
    method: &http::Method,
    host_header: Option<&str>,
    path_and_query: &str,
    https_port: u16,
) -> Answer {
    if method != http::Method::GET && method != http::Method::HEAD {
        return Answer::Refuse(problem::HTTPS_REQUIRED);
    }
    let Some(host) = host_header.and_then(host_only) else {
        return Answer::Refuse(problem::BAD_REQUEST);
    };
    if !path_and_query.starts_with('/') {
        return Answer::Refuse(problem::BAD_REQUEST);
    }
    let port = if https_port == 443 {
        String::new()
    } else {
        format!(":{https_port}")
    };
    Answer::Redirect(format!("https://{host}{port}{path_and_query}"))
}

impl RedirectApp {
    async fn serve(&self, session: &mut ServerSession) -> pingora::Result<()> {
        let req = session.req_header();
        let host = req
            .headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .or_else(|| req.uri.authority().map(|a| a.as_str()));
        let target = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let request_id = crate::stage::request_id::generate();
        let (mut resp, body) = match answer(&req.method, host, target, self.https_port) {
            Answer::Redirect(location) => {
                let mut resp = ResponseHeader::build(308, Some(4))?;
                resp.insert_header(http::header::LOCATION, location)?;
                resp.insert_header(http::header::CONTENT_LENGTH, "0")?;
                (resp, Bytes::new())
            }
            Answer::Refuse(reject) => {
                let body = Bytes::from(problem::render(&reject, &request_id, None));
                let mut resp = ResponseHeader::build(reject.status, Some(4))?;
                resp.insert_header(http::header::CONTENT_TYPE, problem::CONTENT_TYPE)?;
                resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
                if reject.status == 426 {
                    resp.insert_header(http::header::UPGRADE, "TLS/1.2, HTTP/1.1")?;
                }
                (resp, body)
            }
        };
        resp.insert_header(crate::stage::request_id::HEADER, request_id.as_str())?;
        resp.insert_header(http::header::CONNECTION, "close")?;
        session.set_keepalive(None);
        session.write_response_header(Box::new(resp)).await?;
        if !body.is_empty() {
            session.write_response_body(body, true).await?;
        }
        Ok(())
    }
}

/// pingora's parser refused the request (for example an ambiguous Host):
/// answer with a problem rather than a silent close.
async fn refuse_unparseable(session: &mut ServerSession) -> pingora::Result<()> {
    let request_id = crate::stage::request_id::generate();
    let body = Bytes::from(problem::render(&problem::BAD_REQUEST, &request_id, None));
    let mut resp = ResponseHeader::build(400, Some(4))?;
    resp.insert_header(http::header::CONTENT_TYPE, problem::CONTENT_TYPE)?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    resp.insert_header(crate::stage::request_id::HEADER, request_id.as_str())?;
    resp.insert_header(http::header::CONNECTION, "close")?;
    session.write_error_response(resp, body).await
}

async fn discard_body(session: &mut ServerSession, limit: usize) {
    let mut seen = 0;
    while let Ok(Some(chunk)) = session.read_request_body().await {
        seen += chunk.len();
        if seen > limit {
            return;
        }
    }
}

#[async_trait]
impl ServerApp for RedirectApp {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        _shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let mut session = ServerSession::new_http1(stream);
        // The whole request header must arrive in time; one answer per connection.
        match tokio::time::timeout(self.header_timeout, session.read_request()).await {
            Ok(Ok(true)) => {}
            Ok(Err(e)) if e.etype() == &pingora::ErrorType::InvalidHTTPHeader => {
                let _ = refuse_unparseable(&mut session).await;
                return None;
            }
            _ => return None,
        }
        // Read (and discard) a small body first: closing a socket with
        // unread data makes the kernel send a reset that can destroy our
        // answer before the client reads it.
        let _ =
            tokio::time::timeout(self.header_timeout, discard_body(&mut session, 64 * 1024)).await;
        if let Err(e) = self.serve(&mut session).await {
            tracing::debug!(error = %e, "plaintext listener could not answer");
            return None;
        }
        let _ = session.finish().await;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_methods_are_redirected_to_the_same_host() {
        assert_eq!(
            answer(
                &http::Method::GET,
                Some("api.example.com:8080"),
                "/a?b=1",
                8443
            ),
            Answer::Redirect("https://api.example.com:8443/a?b=1".into())
        );
        assert_eq!(
            answer(&http::Method::HEAD, Some("api.example.com"), "/", 443),
            Answer::Redirect("https://api.example.com/".into())
        );
        assert_eq!(
            answer(&http::Method::GET, Some("[::1]:80"), "/x", 8443),
            Answer::Redirect("https://[::1]:8443/x".into())
        );
    }

    #[test]
    fn other_methods_and_odd_hosts_are_refused() {
        assert_eq!(
            answer(&http::Method::POST, Some("a.example"), "/", 443),
            Answer::Refuse(problem::HTTPS_REQUIRED)
        );
        assert_eq!(
            answer(&http::Method::GET, None, "/", 443),
            Answer::Refuse(problem::BAD_REQUEST)
        );
        assert_eq!(
            answer(&http::Method::GET, Some("evil.example/@x"), "/", 443),
            Answer::Refuse(problem::BAD_REQUEST)
        );
    }
}
