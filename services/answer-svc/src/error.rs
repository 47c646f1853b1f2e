use codeintel_core::scope::ScopeError;
use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error(transparent)]
    Scope(#[from] ScopeError),
    /// Every retriever needed by the request failed.
    #[error("no retriever answered: {0}")]
    Unavailable(String),
    #[error("{0}")]
    DeadlineExceeded(String),
    /// The request needs something the indexes do not have (a SPARSE search of repos indexed
    /// without sparse documents).
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("internal: {0}")]
    Internal(String),
}

impl AnswerError {
    pub fn code(&self) -> Code {
        match self {
            AnswerError::InvalidArgument(_) | AnswerError::Scope(_) => Code::InvalidArgument,
            AnswerError::Unavailable(_) => Code::Unavailable,
            AnswerError::DeadlineExceeded(_) => Code::DeadlineExceeded,
            AnswerError::FailedPrecondition(_) => Code::FailedPrecondition,
            AnswerError::Internal(_) => Code::Internal,
        }
    }
}

impl From<AnswerError> for Status {
    fn from(e: AnswerError) -> Self {
        Status::new(e.code(), e.to_string())
    }
}
