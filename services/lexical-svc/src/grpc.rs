//! Thin gRPC adapter over [`LexicalSearcher`].

use std::sync::Arc;

use codeintel_core::proto::v1::lexical_service_server::LexicalService;
use codeintel_core::proto::v1::{InfoRequest, InfoResponse, RetrieveRequest, RetrieveResponse, ScoredChunk};
use tonic::{Request, Response, Status};

use crate::error::LexicalError;
use crate::service::LexicalSearcher;

pub struct LexicalGrpc(pub Arc<LexicalSearcher>);

#[tonic::async_trait]
impl LexicalService for LexicalGrpc {
    async fn search(&self, request: Request<RetrieveRequest>) -> Result<Response<RetrieveResponse>, Status> {
        self.retrieve(request, LexicalSearcher::search).await
    }

    async fn sparse_search(&self, request: Request<RetrieveRequest>) -> Result<Response<RetrieveResponse>, Status> {
        self.retrieve(request, LexicalSearcher::sparse_search).await
    }

    async fn info(&self, _request: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        Ok(Response::new(self.0.info()))
    }
}

impl LexicalGrpc {
    /// Runs one retrieval method off the async threads, in the request's span (the shared
    /// middleware counts and times it).
    async fn retrieve(
        &self,
        request: Request<RetrieveRequest>,
        f: fn(&LexicalSearcher, &RetrieveRequest) -> Result<Vec<ScoredChunk>, LexicalError>,
    ) -> Result<Response<RetrieveResponse>, Status> {
        let span = tracing::Span::current();
        let s = self.0.clone();
        let req = request.into_inner();
        let hits = tokio::task::spawn_blocking(move || span.in_scope(|| f(&s, &req)))
            .await
            .map_err(|e| LexicalError::Internal(format!("search task failed: {e}")))??;
        Ok(Response::new(RetrieveResponse { hits }))
    }
}
