//! vector-svc: dense retrieval over FAISS.

pub mod device;
pub mod error;
pub mod faiss_ext;
#[cfg(feature = "gpu")]
pub mod gpu;
pub mod grpc;
pub mod service;
pub mod store;
pub mod synthetic;

pub use error::VectorError;
pub use service::VectorSearcher;
