use codeintel_core::scope::{RetrieveError, ScopeError};
use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum VectorError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error(transparent)]
    Scope(#[from] ScopeError),
    #[error(transparent)]
    Request(#[from] RetrieveError),
    #[error("vector index not serving: {0}")]
    NotServing(String),
    #[error("embedding failed: {0}")]
    Embed(#[from] codeintel_models::embed::EmbedError),
    #[error("faiss error: {0}")]
    Faiss(String),
    #[error("index io: {0}")]
    Io(String),
    #[error("GPU search failed: {0}")]
    Gpu(String),
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error("vector-svc is overloaded: {0}")]
    Overloaded(String),
}

impl VectorError {
    pub fn code(&self) -> Code {
        match self {
            VectorError::Scope(e) if e.is_unavailable() => Code::Unavailable,
            VectorError::Request(e) if e.is_unavailable() => Code::Unavailable,
            VectorError::InvalidArgument(_) | VectorError::Scope(_) | VectorError::Request(_) => Code::InvalidArgument,
            VectorError::NotServing(_) | VectorError::Embed(_) => Code::Unavailable,
            VectorError::Faiss(_) | VectorError::Io(_) | VectorError::Gpu(_) => Code::Internal,
            VectorError::DeadlineExceeded(_) => Code::DeadlineExceeded,
            VectorError::Overloaded(_) => Code::ResourceExhausted,
        }
    }
}

impl From<VectorError> for Status {
    fn from(e: VectorError) -> Self {
        Status::new(e.code(), e.to_string())
    }
}

impl From<faiss::error::Error> for VectorError {
    fn from(e: faiss::error::Error) -> Self {
        VectorError::Faiss(e.to_string())
    }
}

impl From<codeintel_index::IndexError> for VectorError {
    fn from(e: codeintel_index::IndexError) -> Self {
        match e {
            codeintel_index::IndexError::InvalidArgument(m) => VectorError::InvalidArgument(m),
            codeintel_index::IndexError::Faiss(m) => VectorError::Faiss(m),
            other => VectorError::Io(other.to_string()),
        }
    }
}

impl From<tokio::time::error::Elapsed> for VectorError {
    fn from(_: tokio::time::error::Elapsed) -> Self {
        VectorError::DeadlineExceeded("the search did not finish within the request's deadline".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repo_that_failed_to_load_is_unavailable_an_unknown_one_invalid() {
        let not_loaded = ScopeError::RepoNotLoaded { repo: "r".into(), reason: "bad index".into() };
        assert_eq!(VectorError::from(not_loaded.clone()).code(), Code::Unavailable);
        assert_eq!(VectorError::from(RetrieveError::Scope(not_loaded)).code(), Code::Unavailable);
        let unknown = ScopeError::UnknownRepo { repo: "r".into(), known: "a".into() };
        assert_eq!(VectorError::from(RetrieveError::Scope(unknown)).code(), Code::InvalidArgument);
    }
}
