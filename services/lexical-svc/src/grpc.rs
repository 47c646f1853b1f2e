//! Thin gRPC adapter over [`LexicalSearcher`].

use std::sync::Arc;
use std::time::Instant;

use codeintel_core::proto::v1::lexical_service_server::LexicalService;
use codeintel_core::proto::v1::{InfoRequest, InfoResponse, RetrieveRequest, RetrieveResponse, ScoredChunk};
use tonic::{Request, Response, Status};

use crate::error::LexicalError;
use crate::service::LexicalSearcher;

pub struct LexicalGrpc(pub Arc<LexicalSearcher>);

#[tonic::async_trait]
impl LexicalService for LexicalGrpc {
    async fn search(&self, request: Request<RetrieveRequest>) -> Result<Response<RetrieveResponse>, Status> {
        self.retrieve("Search", "LexicalService/Search", request, LexicalSearcher::search).await
    }

    async fn sparse_search(&self, request: Request<RetrieveRequest>) -> Result<Response<RetrieveResponse>, Status> {
        self.retrieve("SparseSearch", "LexicalService/SparseSearch", request, LexicalSearcher::sparse_search).await
    }

    async fn info(&self, _request: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        Ok(Response::new(self.0.info()))
    }
}

impl LexicalGrpc {
    /// Runs one retrieval method off the async threads, in the caller's trace, with metrics.
    async fn retrieve(
        &self,
        method: &'static str,
        span_name: &'static str,
        request: Request<RetrieveRequest>,
        f: fn(&LexicalSearcher, &RetrieveRequest) -> Result<Vec<ScoredChunk>, LexicalError>,
    ) -> Result<Response<RetrieveResponse>, Status> {
        let t = Instant::now();
        let span = codeintel_core::telemetry::server_span(span_name, request.metadata());
        let s = self.0.clone();
        let req = request.into_inner();
        let res = tokio::task::spawn_blocking(move || span.in_scope(|| f(&s, &req)))
            .await
            .map_err(|e| Status::internal(e.to_string()))
            .and_then(|r| r.map(|hits| Response::new(RetrieveResponse { hits })).map_err(Status::from));
        self.0.metrics.observe(method, t, &res);
        res
    }
}
