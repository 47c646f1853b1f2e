use codeintel_core::scope::ScopeError;
use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum LexicalError {
    #[error(transparent)]
    Scope(#[from] ScopeError),
    #[error("lexical index error: {0}")]
    Index(String),
    #[error("sparse retrieval unavailable: {0}")]
    SparseUnavailable(String),
}

impl LexicalError {
    pub fn code(&self) -> Code {
        match self {
            LexicalError::Scope(_) => Code::InvalidArgument,
            LexicalError::Index(_) => Code::Internal,
            LexicalError::SparseUnavailable(_) => Code::FailedPrecondition,
        }
    }
}

impl From<LexicalError> for Status {
    fn from(e: LexicalError) -> Self {
        Status::new(e.code(), e.to_string())
    }
}
