//! vector-svc: dense retrieval over FAISS.

pub mod error;
pub mod grpc;
pub mod service;
pub mod store;

pub use error::VectorError;
pub use service::VectorSearcher;
