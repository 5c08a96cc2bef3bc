//! API keys: format, hashing, stores, cache and verification.

pub mod change;
#[doc(hidden)]
pub mod contract;
pub mod credential;
pub mod embedded;
pub mod format;
pub mod node;
pub mod pepper;
pub mod redis_store;
pub mod service;
pub mod store;
pub mod totp;
pub mod usage;
pub mod verify;
