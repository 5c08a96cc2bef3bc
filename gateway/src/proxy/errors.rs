//! What a pingora error means for the client: the problem to answer with,
//! or nothing when the client is the one who went away.

use pingora::{Error, ErrorSource, ErrorType};

use crate::stage::problem::{self, Reject};

/// Raised by a body filter for a refusal the gateway decided itself, so
/// `fail_to_proxy` answers with that refusal.
pub(crate) fn refusal(reject: Reject, why: &'static str) -> Box<Error> {
    Error::explain(ErrorType::Custom(reject.code), why)
}

pub(crate) fn reject_for_error(e: &Error) -> Option<Reject> {
    if *e.etype() == ErrorType::Custom(problem::BODY_TOO_LARGE.code) {
        return Some(problem::BODY_TOO_LARGE);
    }
    if *e.etype() == ErrorType::Custom(problem::RESPONSE_LEAK_BLOCKED.code) {
        return Some(problem::RESPONSE_LEAK_BLOCKED);
    }
    match e.etype() {
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
            if *e.esource() == ErrorSource::Downstream {
                None
            } else {
                Some(problem::UPSTREAM_TIMEOUT)
            }
        }
        ErrorType::HTTPStatus(504) => Some(problem::UPSTREAM_TIMEOUT),
        _ => match e.esource() {
            ErrorSource::Upstream => match e.etype() {
                ErrorType::ConnectRefused
                | ErrorType::ConnectNoRoute
                | ErrorType::ConnectError
                | ErrorType::TLSHandshakeFailure
                | ErrorType::TLSHandshakeTimedout
                | ErrorType::InvalidCert
                | ErrorType::HandshakeError
                | ErrorType::SocketError
                | ErrorType::BindError
                | ErrorType::ConnectProxyFailure => Some(problem::UPSTREAM_UNAVAILABLE),
                _ => Some(problem::UPSTREAM_ERROR),
            },
            ErrorSource::Downstream => match e.etype() {
                ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed => None,
                _ => Some(problem::CLIENT_ERROR),
            },
            ErrorSource::Internal | ErrorSource::Unset => Some(problem::INTERNAL_ERROR),
        },
    }
}
