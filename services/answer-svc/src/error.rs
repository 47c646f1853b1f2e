use codeintel_core::scope::ScopeError;
use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error(transparent)]
    Scope(#[from] ScopeError),
    /// A service the request needs is unreachable (every retriever, hydrate-svc, the session
    /// store); the message names it.
    #[error("{0}")]
    Unavailable(String),
    /// The caller's token may not read what it asked for.
    #[error("{0}")]
    PermissionDenied(String),
    /// The request's budget (or a stage's deadline) ran out.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// The request needs something the indexes do not have (a SPARSE search of repos indexed
    /// without sparse documents).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A file or repo the indexes do not hold.
    #[error("{0}")]
    NotFound(String),
    /// Too much work in flight: the caller should back off and retry.
    #[error("{0}")]
    Overloaded(String),
    #[error("internal: {0}")]
    Internal(String),
}

impl AnswerError {
    /// The one table of gRPC codes.
    pub fn code(&self) -> Code {
        match self {
            AnswerError::InvalidArgument(_) | AnswerError::Scope(_) => Code::InvalidArgument,
            AnswerError::Unavailable(_) => Code::Unavailable,
            AnswerError::PermissionDenied(_) => Code::PermissionDenied,
            AnswerError::DeadlineExceeded(_) => Code::DeadlineExceeded,
            AnswerError::FailedPrecondition(_) => Code::FailedPrecondition,
            AnswerError::NotFound(_) => Code::NotFound,
            AnswerError::Overloaded(_) => Code::ResourceExhausted,
            AnswerError::Internal(_) => Code::Internal,
        }
    }
}

/// A `tokio::time::timeout` that ran out.
impl From<tokio::time::error::Elapsed> for AnswerError {
    fn from(e: tokio::time::error::Elapsed) -> Self {
        AnswerError::DeadlineExceeded(e.to_string())
    }
}

impl From<AnswerError> for Status {
    fn from(e: AnswerError) -> Self {
        Status::new(e.code(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_code_and_keeps_its_message() {
        let cases = [
            (AnswerError::InvalidArgument("bad".into()), Code::InvalidArgument, "bad"),
            (
                AnswerError::Unavailable("no retriever answered: vector-svc: down".into()),
                Code::Unavailable,
                "no retriever answered: vector-svc: down",
            ),
            (AnswerError::PermissionDenied("not yours".into()), Code::PermissionDenied, "not yours"),
            (AnswerError::DeadlineExceeded("slow".into()), Code::DeadlineExceeded, "slow"),
            (AnswerError::FailedPrecondition("no sparse".into()), Code::FailedPrecondition, "no sparse"),
            (AnswerError::Overloaded("busy".into()), Code::ResourceExhausted, "busy"),
            (AnswerError::Internal("bug".into()), Code::Internal, "internal: bug"),
        ];
        for (e, code, message) in cases {
            assert_eq!(e.code(), code, "{e:?}");
            let s = Status::from(e);
            assert_eq!((s.code(), s.message()), (code, message));
        }
    }

    #[tokio::test]
    async fn an_elapsed_timeout_is_deadline_exceeded() {
        let elapsed = tokio::time::timeout(std::time::Duration::ZERO, std::future::pending::<()>()).await.unwrap_err();
        let e = AnswerError::from(elapsed);
        assert!(matches!(e, AnswerError::DeadlineExceeded(_)), "{e:?}");
        assert_eq!(Status::from(e).code(), Code::DeadlineExceeded);
    }
}
