//! The `codeintel` command's library: the index lifecycle (index, compact), benchmarks and the
//! `up` supervisor, callable from tests without a process.

pub mod bench;
pub mod client;
pub mod git;
pub mod health;
pub use codeintel_models::chat;
pub mod index;
pub mod mcp;
pub mod models;
pub mod train;
pub mod up;
