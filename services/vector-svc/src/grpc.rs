//! Thin gRPC adapter over [`VectorSearcher`].

use std::sync::Arc;
use std::time::Instant;

use codeintel_core::proto::v1::vector_service_server::VectorService;
use codeintel_core::proto::v1::{InfoRequest, InfoResponse, RetrieveRequest, RetrieveResponse};
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::service::VectorSearcher;

pub struct VectorGrpc(pub Arc<VectorSearcher>);

#[tonic::async_trait]
impl VectorService for VectorGrpc {
    async fn search(&self, request: Request<RetrieveRequest>) -> Result<Response<RetrieveResponse>, Status> {
        let t = Instant::now();
        let span = codeintel_core::telemetry::server_span("VectorService/Search", request.metadata());
        let res = self
            .0
            .search(request.get_ref())
            .instrument(span)
            .await
            .map(|hits| Response::new(RetrieveResponse { hits }))
            .map_err(Status::from);
        self.0.metrics.observe("Search", t, &res);
        res
    }

    async fn info(&self, _request: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        Ok(Response::new(self.0.info()))
    }
}
