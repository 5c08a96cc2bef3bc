//! End-to-end tests: each test starts its own example upstream, gateway
//! process (fresh certificate) and, when needed, other real peers, on
//! ephemeral loopback ports, and talks to them over real TLS.

mod admin;
mod assertion;
mod auth;
mod balancing;
mod bindings;
mod check;
mod client_address;
mod cluster;
mod collector;
mod common;
mod console;
mod console_browser;
mod demo;
mod differential;
mod faults;
mod frameworks;
mod hostile;
mod isolation;
mod minimise;
mod monitoring;
mod one_meaning;
mod openapi;
mod ownership;
mod partner_api;
mod protocol;
mod readiness;
mod redis;
mod reload;
mod routing;
mod suspension;
mod traces;
mod transport;
mod upgrade;
mod validation;
