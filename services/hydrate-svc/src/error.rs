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
}

impl HydrateError {
    pub fn code(&self) -> Code {
        match self {
            HydrateError::InvalidArgument(_) | HydrateError::Scope(_) => Code::InvalidArgument,
            HydrateError::Db(_) | HydrateError::Internal(_) => Code::Internal,
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
