//! hydrate-svc: chunk text and metadata in Parquet, queried through DuckDB, served over Arrow Flight.

pub mod error;
pub mod flight;
pub mod fresh;
pub mod nav;
pub mod store;

pub use error::HydrateError;
pub use store::ChunkStore;
