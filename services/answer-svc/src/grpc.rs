//! Thin gRPC adapter over [`Engine`].

use std::sync::Arc;

use codeintel_core::proto::v1::answer_service_server::AnswerService;
use codeintel_core::proto::v1::{
    AnswerEvent, AnswerRequest, ClearScopeRequest, GetScopeRequest, ScopeResponse, SearchRequest, SearchResponse,
    SetScopeRequest,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::error::AnswerError;
use crate::pipeline::Engine;
use crate::session::SESSION_HEADER;
use codeintel_server::admission::Principal;
use codeintel_server::rpc::parse_grpc_timeout;

pub struct AnswerGrpc(pub Arc<Engine>);

/// The session the request names in its metadata, if any. Errors convert to a `Status` through
/// the one `From<AnswerError>`.
fn session_id<T>(r: &Request<T>) -> Result<Option<String>, AnswerError> {
    match r.metadata().get(SESSION_HEADER) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.to_string()))
            .map_err(|_| AnswerError::InvalidArgument(format!("{SESSION_HEADER} must be printable ASCII"))),
    }
}

fn required_session<T>(r: &Request<T>) -> Result<String, AnswerError> {
    session_id(r)?.ok_or_else(|| {
        AnswerError::InvalidArgument(format!("set the {SESSION_HEADER} request metadata to name the session"))
    })
}

/// The deadline the client sent (`grpc-timeout`).
fn grpc_timeout<T>(r: &Request<T>) -> Option<std::time::Duration> {
    let v = r.metadata().get("grpc-timeout")?.to_str().ok()?;
    parse_grpc_timeout(v)
}

/// The caller's token, when tokens are configured (set by the admission layer).
fn caller<T>(r: &Request<T>) -> Option<Principal> {
    r.extensions().get::<Principal>().cloned()
}

#[tonic::async_trait]
impl AnswerService for AnswerGrpc {
    type AnswerStream = ReceiverStream<Result<AnswerEvent, Status>>;

    async fn answer(&self, request: Request<AnswerRequest>) -> Result<Response<Self::AnswerStream>, Status> {
        let session = session_id(&request)?;
        let who = caller(&request);
        let client_deadline = grpc_timeout(&request);
        let mut req = request.into_inner();
        // Validated as sent, before the client's deadline caps it.
        crate::pipeline::validate_budget(req.time_budget_ms)?;
        // The client's own deadline caps the budget (a little earlier, so that the last events
        // still reach it).
        if let Some(d) = client_deadline {
            let cap = d.saturating_sub(std::time::Duration::from_millis(50)).as_millis().max(1) as u32;
            let asked = if req.time_budget_ms == 0 { self.0.default_budget_ms() } else { req.time_budget_ms };
            req.time_budget_ms = asked.min(cap);
        }
        let events = self.0.answer(req, session.as_deref(), who.as_ref()).await?;
        // Dropping the stream (client gone) closes the channel, which stops the pipeline.
        Ok(Response::new(ReceiverStream::new(events)))
    }

    async fn search(&self, request: Request<SearchRequest>) -> Result<Response<SearchResponse>, Status> {
        let session = session_id(&request)?;
        let who = caller(&request);
        let (hits, limits) = self.0.search(request.into_inner(), session.as_deref(), who.as_ref()).await?;
        Ok(Response::new(SearchResponse { hits, limits }))
    }

    async fn set_scope(&self, request: Request<SetScopeRequest>) -> Result<Response<ScopeResponse>, Status> {
        let session = required_session(&request)?;
        let who = caller(&request);
        let scope = request.into_inner().scope.unwrap_or_default();
        self.0.set_session_scope(&session, scope.clone(), who.as_ref()).await?;
        Ok(Response::new(ScopeResponse { session_id: session, scope: Some(scope) }))
    }

    async fn get_scope(&self, request: Request<GetScopeRequest>) -> Result<Response<ScopeResponse>, Status> {
        let session = required_session(&request)?;
        let scope = self.0.session_scope(&session, caller(&request).as_ref()).await?;
        Ok(Response::new(ScopeResponse { session_id: session, scope }))
    }

    async fn clear_scope(&self, request: Request<ClearScopeRequest>) -> Result<Response<ScopeResponse>, Status> {
        let session = required_session(&request)?;
        self.0.clear_session_scope(&session, caller(&request).as_ref()).await?;
        Ok(Response::new(ScopeResponse { session_id: session, scope: None }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_metadata_errors_are_invalid_argument_with_the_same_words() {
        let none = Request::new(());
        assert_eq!(session_id(&none).unwrap(), None);
        let s = Status::from(required_session(&none).unwrap_err());
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        assert_eq!(s.message(), "set the x-session-id request metadata to name the session");
        let mut bad = Request::new(());
        bad.metadata_mut()
            .insert(SESSION_HEADER, tonic::metadata::AsciiMetadataValue::try_from(&b"caf\xc3\xa9"[..]).unwrap());
        let s = Status::from(session_id(&bad).unwrap_err());
        assert_eq!((s.code(), s.message()), (tonic::Code::InvalidArgument, "x-session-id must be printable ASCII"));
        let mut ok = Request::new(());
        ok.metadata_mut().insert(SESSION_HEADER, "s1".parse().unwrap());
        assert_eq!(required_session(&ok).unwrap(), "s1");
    }
}
