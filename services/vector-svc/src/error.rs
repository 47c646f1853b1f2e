use codeintel_core::scope::ScopeError;
use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum VectorError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error(transparent)]
    Scope(#[from] ScopeError),
    #[error("vector index not serving: {0}")]
    NotServing(String),
    #[error("embedding failed: {0}")]
    Embed(#[from] codeintel_core::embed::EmbedError),
    #[error("faiss error: {0}")]
    Faiss(String),
    #[error("index io: {0}")]
    Io(String),
    #[error("GPU search failed: {0}")]
    Gpu(String),
}

impl VectorError {
    pub fn code(&self) -> Code {
        match self {
            VectorError::InvalidArgument(_) | VectorError::Scope(_) => Code::InvalidArgument,
            VectorError::NotServing(_) | VectorError::Embed(_) => Code::Unavailable,
            VectorError::Faiss(_) | VectorError::Io(_) | VectorError::Gpu(_) => Code::Internal,
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
