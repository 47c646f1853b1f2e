//! Thin gRPC adapter over [`Engine`].

use std::sync::Arc;
use std::time::Instant;

use codeintel_core::proto::v1::answer_service_server::AnswerService;
use codeintel_core::proto::v1::{
    AnswerEvent, AnswerRequest, ClearScopeRequest, GetScopeRequest, ScopeResponse, SearchRequest, SearchResponse,
    SetScopeRequest,
};
use codeintel_core::scope::ScopeFilter;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::error::AnswerError;
use crate::pipeline::Engine;
use crate::session::SESSION_HEADER;

pub struct AnswerGrpc(pub Arc<Engine>);

fn session_id<T>(r: &Request<T>) -> Result<Option<String>, Status> {
    match r.metadata().get(SESSION_HEADER) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.to_string()))
            .map_err(|_| Status::invalid_argument(format!("{SESSION_HEADER} must be printable ASCII"))),
    }
}

fn required_session<T>(r: &Request<T>) -> Result<String, Status> {
    session_id(r)?.ok_or_else(|| {
        Status::invalid_argument(format!("set the {SESSION_HEADER} request metadata to name the session"))
    })
}

#[tonic::async_trait]
impl AnswerService for AnswerGrpc {
    type AnswerStream = ReceiverStream<Result<AnswerEvent, Status>>;

    async fn answer(&self, request: Request<AnswerRequest>) -> Result<Response<Self::AnswerStream>, Status> {
        let t = Instant::now();
        let session = session_id(&request)?;
        let res = self.0.answer(request.into_inner(), session.as_deref()).map_err(Status::from);
        self.0.metrics.observe("Answer", t, &res);
        // Dropping the stream (client gone) closes the channel, which stops the pipeline.
        Ok(Response::new(ReceiverStream::new(res?)))
    }

    async fn search(&self, request: Request<SearchRequest>) -> Result<Response<SearchResponse>, Status> {
        let t = Instant::now();
        let session = session_id(&request)?;
        let res = self
            .0
            .search(request.into_inner(), session.as_deref())
            .await
            .map(|(hits, limits)| Response::new(SearchResponse { hits, limits }))
            .map_err(Status::from);
        self.0.metrics.observe("Search", t, &res);
        res
    }

    async fn set_scope(&self, request: Request<SetScopeRequest>) -> Result<Response<ScopeResponse>, Status> {
        let session = required_session(&request)?;
        let scope = request.into_inner().scope.unwrap_or_default();
        ScopeFilter::new(Some(&scope)).map_err(AnswerError::from)?;
        self.0.sessions.set(&session, scope.clone())?;
        Ok(Response::new(ScopeResponse { session_id: session, scope: Some(scope) }))
    }

    async fn get_scope(&self, request: Request<GetScopeRequest>) -> Result<Response<ScopeResponse>, Status> {
        let session = required_session(&request)?;
        let scope = self.0.sessions.get(&session)?;
        Ok(Response::new(ScopeResponse { session_id: session, scope }))
    }

    async fn clear_scope(&self, request: Request<ClearScopeRequest>) -> Result<Response<ScopeResponse>, Status> {
        let session = required_session(&request)?;
        self.0.sessions.clear(&session)?;
        Ok(Response::new(ScopeResponse { session_id: session, scope: None }))
    }
}
