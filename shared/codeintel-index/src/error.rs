use crate::manifest::ManifestError;

/// How reading or writing an artifact of a version failed.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The caller asked for something the format cannot hold (vectors that do not match their
    /// ids, too few vectors to train an index).
    #[error("{0}")]
    InvalidArgument(String),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("index io: {0}")]
    Io(String),
    #[error("faiss error: {0}")]
    Faiss(String),
    #[error("lexical index: {0}")]
    Lexical(String),
    #[error("segment: {0}")]
    Segment(String),
}

#[cfg(feature = "vector")]
impl From<faiss::error::Error> for IndexError {
    fn from(e: faiss::error::Error) -> Self {
        IndexError::Faiss(e.to_string())
    }
}
