//! Who owns which object, for backends whose URLs name an object
//! (`/orders/{id}`) and never the partner.
//!
//! The index maps (kind, id) to a partner. It is filled from the answers of
//! create routes, from guarded reads and pre-flights (`stage::own`), and by
//! bulk import from the legacy database (`portcullis owners import`); the
//! request path only reads it, before the upstream sees anything.
//!
//! - [`store`]: the interface every engine implements, and its records.
//! - [`embedded`]: one node, an append-only file.
//! - [`redis`]: many nodes, in the key store's Redis and under its lease.
//! - [`service`]: what the gateway, the admin API and the CLI call.

pub mod embedded;
pub mod redis;
pub mod service;
pub mod store;

/// The behaviour every engine must have (run by each engine's tests).
pub mod contract;
