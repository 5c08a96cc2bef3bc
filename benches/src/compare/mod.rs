//! The side-by-side load benchmark: Portcullis, nginx and HAProxy doing
//! the same job in front of one upstream, the direct upstream as the
//! floor (`src/bin/compare.rs` drives it).

pub mod idle;
pub mod load;
pub mod peers;
pub mod procs;
