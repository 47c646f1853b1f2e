use codeintel_core::scope::{RetrieveError, ScopeError};
use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum LexicalError {
    #[error(transparent)]
    Scope(#[from] ScopeError),
    #[error(transparent)]
    Request(#[from] RetrieveError),
    #[error("lexical index error: {0}")]
    Index(String),
    #[error("sparse retrieval unavailable: {0}")]
    SparseUnavailable(String),
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error("lexical-svc is overloaded: {0}")]
    Overloaded(String),
    #[error("internal: {0}")]
    Internal(String),
}

impl LexicalError {
    pub fn code(&self) -> Code {
        match self {
            LexicalError::Scope(e) if e.is_unavailable() => Code::Unavailable,
            LexicalError::Request(e) if e.is_unavailable() => Code::Unavailable,
            LexicalError::Scope(_) | LexicalError::Request(_) => Code::InvalidArgument,
            LexicalError::Index(_) | LexicalError::Internal(_) => Code::Internal,
            LexicalError::SparseUnavailable(_) => Code::FailedPrecondition,
            LexicalError::DeadlineExceeded(_) => Code::DeadlineExceeded,
            LexicalError::Overloaded(_) => Code::ResourceExhausted,
        }
    }
}

impl From<LexicalError> for Status {
    fn from(e: LexicalError) -> Self {
        Status::new(e.code(), e.to_string())
    }
}

impl From<tokio::time::error::Elapsed> for LexicalError {
    fn from(_: tokio::time::error::Elapsed) -> Self {
        LexicalError::DeadlineExceeded("the search did not finish within the request's deadline".into())
    }
}

impl From<codeintel_index::IndexError> for LexicalError {
    fn from(e: codeintel_index::IndexError) -> Self {
        LexicalError::Index(e.to_string())
    }
}
