//! Thin gRPC adapter over [`VectorSearcher`].

use std::sync::Arc;

use codeintel_core::proto::v1::vector_service_server::VectorService;
use codeintel_core::proto::v1::{InfoRequest, InfoResponse, RetrieveRequest, RetrieveResponse};
use tonic::{Request, Response, Status};

use crate::service::VectorSearcher;

pub struct VectorGrpc(pub Arc<VectorSearcher>);

#[tonic::async_trait]
impl VectorService for VectorGrpc {
    async fn search(&self, request: Request<RetrieveRequest>) -> Result<Response<RetrieveResponse>, Status> {
        let hits = self.0.search(request.get_ref()).await?;
        Ok(Response::new(RetrieveResponse { hits }))
    }

    async fn info(&self, _request: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        Ok(Response::new(self.0.info()))
    }
}
