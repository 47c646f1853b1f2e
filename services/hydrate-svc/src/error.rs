use codeintel_core::scope::ScopeError;
use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum HydrateError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error(transparent)]
    Scope(#[from] ScopeError),
    #[error("duckdb: {0}")]
    Db(String),
    #[error("internal: {0}")]
    Internal(String),
    /// A Flight method this read-only service does not offer.
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    DeadlineExceeded(String),
    /// A file or symbol that the served versions do not hold.
    #[error("{0}")]
    NotFound(String),
    #[error("hydrate-svc is overloaded: {0}")]
    Overloaded(String),
}

impl HydrateError {
    pub fn code(&self) -> Code {
        match self {
            HydrateError::Scope(e) if e.is_unavailable() => Code::Unavailable,
            HydrateError::InvalidArgument(_) | HydrateError::Scope(_) => Code::InvalidArgument,
            HydrateError::Db(_) | HydrateError::Internal(_) => Code::Internal,
            HydrateError::Unsupported(_) => Code::Unimplemented,
            HydrateError::DeadlineExceeded(_) => Code::DeadlineExceeded,
            HydrateError::NotFound(_) => Code::NotFound,
            HydrateError::Overloaded(_) => Code::ResourceExhausted,
        }
    }
}

impl From<HydrateError> for Status {
    fn from(e: HydrateError) -> Self {
        Status::new(e.code(), e.to_string())
    }
}

impl From<duckdb::Error> for HydrateError {
    fn from(e: duckdb::Error) -> Self {
        HydrateError::Db(e.to_string())
    }
}

impl From<tokio::time::error::Elapsed> for HydrateError {
    fn from(_: tokio::time::error::Elapsed) -> Self {
        HydrateError::DeadlineExceeded("the lookup did not finish within the request's deadline".into())
    }
}

impl From<arrow::error::ArrowError> for HydrateError {
    fn from(e: arrow::error::ArrowError) -> Self {
        HydrateError::Internal(format!("arrow: {e}"))
    }
}
