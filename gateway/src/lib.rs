//! Portcullis: a security gateway for partner APIs, built on pingora.
//!
//! The tree follows a request (see `docs/src/architecture.md` at the repository
//! root): `transport` accepts and guards the connection, `proxy` is the
//! pingora `ProxyHttp` implementation that calls each `stage` in turn and
//! maps its result, `stage` holds the checks themselves as plain Rust that
//! knows nothing of pingora (CI enforces it), and `monitor` records how the
//! request ended. `config` is the YAML model, `plan` compiles it into what
//! requests read, `keys` and `limits` are the stores behind authentication
//! and rate limiting, `admin` is the separate admin listener, `server`
//! assembles the services and `cli` the operator commands.

// pingora's proxy phases nest many async stages in one future.
#![recursion_limit = "256"]

pub mod admin;
pub mod balance;
pub mod cli;
pub mod config;
pub mod keys;
pub mod limits;
pub mod monitor;
pub mod ownership;
pub mod partner;
pub mod plan;
pub mod proxy;
pub mod server;
pub mod stage;
pub mod transport;
