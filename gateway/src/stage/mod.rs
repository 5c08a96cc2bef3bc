//! The checks a request passes, in the order it meets them. Each module is
//! plain Rust over request data, returning facts or a [`problem::Reject`];
//! none of them knows pingora (`.ci/run` fails the build if one does), so
//! each is unit-tested without sockets. `proxy` calls them and maps their
//! results onto pingora's phases.
//!
//! 0. [`client_address`]: who is calling (the peer, or what a trusted proxy
//!    says), before anything decides on the address.
//! 1. [`screen`]: framing, sizes, one meaning ([`protocol`], [`unambiguous`]),
//!    the canonical [`path`].
//! 2. [`authenticate`]: the key, hashed once, against the key store.
//! 3. [`isolation`]: admit the partner, authorize the route, bind every
//!    place the request names a partner to the caller.
//! 4. [`route`]: method and path template; [`own`]: the object it names
//!    belongs to the caller (before anything is forwarded).
//! 5. [`rate_limit`]: which limits apply and what the answer says.
//! 6. [`validate`]: JSON Schema for parameters, headers and body
//!    ([`schemas`], [`body`], [`json_bytes`]); [`inspect`] for a body read
//!    whole (form fields, schema, body binding, `_method`).
//! 7. [`forward`]: what the upstream request carries ([`assertion`],
//!    [`trace_context`], [`request_id`]).
//! 8. [`minimise`]: what the upstream's answer may carry back.
//! 9. [`record`]: the audit record of how it ended ([`outcome`]).

pub mod assertion;
pub mod authenticate;
pub mod body;
pub mod client_address;
pub mod forward;
pub mod inspect;
pub mod isolation;
pub mod json_bytes;
pub mod minimise;
pub mod outcome;
pub mod own;
pub mod path;
pub mod problem;
pub mod protocol;
pub mod rate_limit;
pub mod record;
pub mod request_id;
pub mod route;
pub mod schemas;
pub mod screen;
pub mod trace_context;
pub mod unambiguous;
pub mod validate;

/// A request head for stage tests: these take `http` types, so no socket
/// or pingora session is needed.
#[cfg(test)]
pub(crate) fn test_request(target: &str, headers: &[(&str, &str)]) -> http::request::Parts {
    let mut builder = http::Request::builder().uri(target);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(()).unwrap().into_parts().0
}
