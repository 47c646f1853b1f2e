//! Clients for the other services, each call bounded by a deadline that travels as
//! `grpc-timeout`, plus Flight hydration decoded into [`Chunk`]s.

use std::collections::HashMap;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::Ticket;
use codeintel_core::proto::v1::lexical_service_client::LexicalServiceClient;
use codeintel_core::proto::v1::vector_service_client::VectorServiceClient;
use codeintel_core::proto::v1::{RetrieveRequest, Scope, ScoredChunk};
use codeintel_core::ticket::HydrateTicket;
use futures::TryStreamExt;
use tonic::transport::{Channel, Endpoint};

/// The vocabulary of the engine's seams; defined with the traits these clients implement.
pub use crate::retrievers::{CallError, Chunk};
use codeintel_core::wire::decode;

#[derive(Clone)]
pub struct Backends {
    vector: VectorServiceClient<Channel>,
    lexical: LexicalServiceClient<Channel>,
    hydrate: FlightServiceClient<Channel>,
    /// (service name, gRPC health service name, channel) of each backend.
    health: Vec<(&'static str, &'static str, Channel)>,
}

fn channel(url: &str) -> anyhow::Result<Channel> {
    Ok(Endpoint::from_shared(url.to_string())
        .map_err(|e| anyhow::anyhow!("bad service url {url}: {e}"))?
        .connect_timeout(Duration::from_millis(500))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true)
        .connect_lazy())
}

async fn bounded<T>(
    d: Duration,
    f: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, CallError> {
    match tokio::time::timeout(d, f).await {
        Ok(Ok(r)) => Ok(r.into_inner()),
        Ok(Err(s)) if s.code() == tonic::Code::DeadlineExceeded || s.code() == tonic::Code::Cancelled => {
            Err(CallError::Timeout(d))
        }
        Ok(Err(s)) => Err(CallError::Status(s)),
        Err(_) => Err(CallError::Timeout(d)),
    }
}

impl Backends {
    pub fn connect(vector_url: &str, lexical_url: &str, hydrate_url: &str) -> anyhow::Result<Self> {
        let (v, l, h) = (channel(vector_url)?, channel(lexical_url)?, channel(hydrate_url)?);
        Ok(Self {
            vector: VectorServiceClient::new(v.clone()),
            lexical: LexicalServiceClient::new(l.clone()),
            hydrate: FlightServiceClient::new(h.clone()).max_decoding_message_size(64 << 20),
            health: vec![
                ("vector-svc", "codeintel.v1.VectorService", v),
                ("lexical-svc", "codeintel.v1.LexicalService", l),
                ("hydrate-svc", "arrow.flight.protocol.FlightService", h),
            ],
        })
    }

    /// Asks each backend's gRPC health service; returns the ones not serving, with why.
    pub async fn unhealthy(&self, d: Duration) -> Vec<(&'static str, String)> {
        let checks = self.health.iter().map(|(name, svc, ch)| async move {
            let mut c = tonic_health::pb::health_client::HealthClient::new(ch.clone());
            let req = tonic_health::pb::HealthCheckRequest { service: svc.to_string() };
            let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
            match bounded(d, c.check(req)).await {
                Ok(r) if r.status == serving => None,
                Ok(_) => Some((*name, format!("{name} reports NOT_SERVING"))),
                Err(e) => Some((*name, format!("{name} unreachable: {e}"))),
            }
        });
        futures::future::join_all(checks).await.into_iter().flatten().collect()
    }

    fn request(query: &str, scope: &Scope, k: u32, d: Duration, exact_symbol: &str) -> tonic::Request<RetrieveRequest> {
        let mut r = tonic::Request::new(RetrieveRequest {
            query: query.into(),
            scope: Some(scope.clone()),
            top_k: k,
            exact_symbol: exact_symbol.into(),
        });
        r.set_timeout(d);
        codeintel_server::telemetry::inject(r.metadata_mut());
        r
    }

    pub async fn dense(&self, query: &str, scope: &Scope, k: u32, d: Duration) -> Result<Vec<ScoredChunk>, CallError> {
        let mut c = self.vector.clone();
        bounded(d, c.search(Self::request(query, scope, k, d, ""))).await.map(|r| r.hits)
    }

    /// BM25; with `exact_symbol`, definitions of that name come first, flagged `exact`.
    pub async fn lexical(
        &self,
        query: &str,
        exact_symbol: &str,
        scope: &Scope,
        k: u32,
        d: Duration,
    ) -> Result<Vec<ScoredChunk>, CallError> {
        let mut c = self.lexical.clone();
        bounded(d, c.search(Self::request(query, scope, k, d, exact_symbol))).await.map(|r| r.hits)
    }

    /// Learned sparse (SPLADE) retrieval in lexical-svc.
    pub async fn sparse(&self, query: &str, scope: &Scope, k: u32, d: Duration) -> Result<Vec<ScoredChunk>, CallError> {
        let mut c = self.lexical.clone();
        bounded(d, c.sparse_search(Self::request(query, scope, k, d, ""))).await.map(|r| r.hits)
    }

    /// Fetches chunks by id through Flight `DoGet`; returns them keyed by chunk id.
    pub async fn hydrate(&self, ids: &[u64], scope: &Scope, d: Duration) -> Result<HashMap<u64, Chunk>, CallError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let ticket = HydrateTicket::new(ids.to_vec(), Some(scope));
        let mut c = self.hydrate.clone();
        let work = async move {
            let mut req = tonic::Request::new(Ticket::new(ticket.encode()));
            req.set_timeout(d);
            codeintel_server::telemetry::inject(req.metadata_mut());
            let stream = c.do_get(req).await.map_err(CallError::Status)?.into_inner();
            let batches: Vec<RecordBatch> =
                FlightRecordBatchStream::new_from_flight_data(stream.map_err(FlightError::from))
                    .try_collect()
                    .await
                    .map_err(|e| CallError::Status(tonic::Status::internal(e.to_string())))?;
            let mut out = HashMap::new();
            for b in &batches {
                for c in decode(b).map_err(|e| CallError::Status(tonic::Status::internal(e)))? {
                    out.insert(c.chunk_id, c);
                }
            }
            Ok(out)
        };
        match tokio::time::timeout(d, work).await {
            Ok(r) => r,
            Err(_) => Err(CallError::Timeout(d)),
        }
    }
}
