//! lexical-svc: BM25 over tantivy with a code-aware tokenizer, and learned sparse (SPLADE)
//! retrieval.

pub mod bm25;
pub mod error;
pub mod forms;
pub mod grpc;
pub mod service;
pub mod sparse;
pub mod store;
pub use codeintel_index::lexical::tokenizer;

pub use error::LexicalError;
pub use service::LexicalSearcher;
