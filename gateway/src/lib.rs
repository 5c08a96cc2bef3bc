//! Portcullis: a security gateway for partner APIs, built on pingora.
//!
//! Requests walk through a corridor of stages (see `docs/architecture.md` at
//! the repository root); each stage is plain Rust over request data and knows
//! nothing of pingora. `proxy.rs` wires the stages to pingora's phases.

// pingora's proxy phases nest many async stages in one future.
#![recursion_limit = "256"]

pub mod admin;
pub mod admin_keys;
pub mod assertion;
pub mod audit;
pub mod audit_cli;
pub mod auth;
pub mod body;
pub mod buffered;
pub mod certgen;
pub mod config;
pub mod conn_guard;
#[cfg(feature = "demo")]
pub mod demo;
pub mod h2_clock;
pub mod h2_refusal;
pub mod inflight;
pub mod isolation;
pub mod json_bytes;
pub mod keys;
pub mod keys_cli;
pub mod limits;
pub mod metrics;
pub mod minimise;
pub mod monitor;
pub mod outcome;
pub mod path;
pub mod plaintext;
pub mod problem;
pub mod protocol;
pub mod proxy;
pub mod reload;
pub mod request_id;
pub mod router;
pub mod schemas;
pub mod selfservice;
pub mod server;
pub mod tls;
pub mod trace_context;
pub mod unambiguous;
pub mod validation;
