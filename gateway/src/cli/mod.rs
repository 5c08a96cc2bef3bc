//! Operator commands beside `run`: audit trail checks, key management and
//! the self-contained demo.

pub mod audit;
#[cfg(feature = "demo")]
pub mod demo;
pub mod keys;
pub mod owners;
pub mod reference;
