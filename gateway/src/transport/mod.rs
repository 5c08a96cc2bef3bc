//! Below HTTP: TLS and certificates, the connection guard that sits between
//! the socket and pingora's parser, and the plaintext listener that never
//! forwards.

pub mod certgen;
pub mod conn_guard;
pub mod h2_clock;
pub mod h2_refusal;
pub mod plaintext;
pub mod proxy_protocol;
pub mod tls;
