//! API keys: format, hashing, stores, cache and verification.

#[cfg(test)]
pub(crate) mod contract;
pub mod credential;
pub mod embedded;
pub mod format;
pub mod pepper;
pub mod service;
pub mod store;
pub mod verify;
