//! The `codeintel` command's library: the index lifecycle (index, compact) and benchmarks,
//! callable from tests without a process.

pub mod bench;
pub mod health;
pub use codeintel_models::chat;
pub mod index;
pub mod models;
