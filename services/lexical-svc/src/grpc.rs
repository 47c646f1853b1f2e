//! Thin gRPC adapter over [`LexicalSearcher`].

use std::sync::Arc;
use std::time::Instant;

use codeintel_core::proto::v1::lexical_service_server::LexicalService;
use codeintel_core::proto::v1::{InfoRequest, InfoResponse, RetrieveRequest, RetrieveResponse};
use tonic::{Request, Response, Status};

use crate::service::LexicalSearcher;

pub struct LexicalGrpc(pub Arc<LexicalSearcher>);

#[tonic::async_trait]
impl LexicalService for LexicalGrpc {
    async fn search(&self, request: Request<RetrieveRequest>) -> Result<Response<RetrieveResponse>, Status> {
        let t = Instant::now();
        let span = codeintel_core::telemetry::server_span("LexicalService/Search", request.metadata());
        let s = self.0.clone();
        let req = request.into_inner();
        let res = tokio::task::spawn_blocking(move || span.in_scope(|| s.search(&req)))
            .await
            .map_err(|e| Status::internal(e.to_string()))
            .and_then(|r| r.map(|hits| Response::new(RetrieveResponse { hits })).map_err(Status::from));
        self.0.metrics.observe("Search", t, &res);
        res
    }

    async fn sparse_search(&self, request: Request<RetrieveRequest>) -> Result<Response<RetrieveResponse>, Status> {
        let t = Instant::now();
        let span = codeintel_core::telemetry::server_span("LexicalService/SparseSearch", request.metadata());
        let s = self.0.clone();
        let req = request.into_inner();
        let res = tokio::task::spawn_blocking(move || span.in_scope(|| s.sparse_search(&req)))
            .await
            .map_err(|e| Status::internal(e.to_string()))
            .and_then(|r| r.map(|hits| Response::new(RetrieveResponse { hits })).map_err(Status::from));
        self.0.metrics.observe("SparseSearch", t, &res);
        res
    }

    async fn info(&self, _request: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        Ok(Response::new(self.0.info()))
    }
}
