//! Rate limits (GCRA) per partner and per partner on a route, shared
//! through Redis with a per-node fallback, and the abuse detectors.

pub mod inflight;

pub mod abuse;
pub mod anomaly;
pub mod gcra;
pub mod limiter;
mod shared;

pub use gcra::Rate;
pub use limiter::{LimitStats, Limited, RateLimiter};
