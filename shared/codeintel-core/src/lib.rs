//! Shared domain code of the CodeIntel mesh.

pub mod catalog;
pub mod chunk;
pub mod config;
pub mod embed;
pub mod manifest;
pub mod query;
pub mod scope;
pub mod server;
pub mod sparse;
pub mod telemetry;
pub mod ticket;
pub mod walk;

pub use codeintel_proto as proto;
