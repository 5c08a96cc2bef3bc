//! Configuration: YAML files are parsed, validated and compiled once into an
//! immutable [`Plan`]; requests read the current plan, and a reload swaps in
//! a new one only if it compiles completely.

mod compile;
mod error;
pub mod model;
pub mod monitoring;
mod openapi;
mod partners;
pub mod restart;
pub mod schema;
mod validate;

pub use compile::{load, load_settings, resolve_path, Loaded, Plan, Route, Timeouts, Upstream};
pub use error::{ConfigError, ConfigErrors};
