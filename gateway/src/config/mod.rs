//! The configuration model: the YAML gateway and policy files as typed
//! data, how they are read, their JSON Schemas, and which settings apply on
//! reload. A leaf: nothing here depends on the rest of the gateway, so the
//! runtime types can be built from it (`plan` compiles it) without a cycle.

mod error;
pub mod load;
pub mod model;
pub mod monitoring;
pub mod partner;
pub mod restart;
pub mod schema;
pub mod traces;

pub use error::{ConfigError, ConfigErrors};
pub use load::{load_settings, resolve_path};
