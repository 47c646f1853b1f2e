//! answer-svc: the orchestrator. Hybrid retrieval with deadlines, score or rank fusion, Flight hydration,
//! streamed answers, session scope.

pub mod backends;
pub mod error;
pub mod fusion;
pub mod grpc;
pub mod navigation;
pub mod pipeline;
pub mod pool;
pub mod rerank;
pub mod retrievers;
pub mod session;
pub mod synthesis;
pub mod traces;

#[cfg(test)]
mod orchestrator_tests;

pub use error::AnswerError;
pub use pipeline::Engine;
