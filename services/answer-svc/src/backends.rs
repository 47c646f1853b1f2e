//! Clients for the other services, each call bounded by a deadline that travels as
//! `grpc-timeout`, plus Flight hydration decoded into [`Chunk`]s. Each backend is a [`Pool`]
//! of endpoints (replicas, shards) with balancing, ejection and one retry.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::{Action, Ticket};
use codeintel_config::AnswerConfig;
use codeintel_core::proto::v1::lexical_service_client::LexicalServiceClient;
use codeintel_core::proto::v1::vector_service_client::VectorServiceClient;
use codeintel_core::proto::v1::{RetrieveRequest, Scope, ScoredChunk};
use codeintel_core::ticket::HydrateTicket;
use futures::TryStreamExt;

use crate::pool::{Pool, PoolMetrics, PoolOptions, Probe};

/// The vocabulary of the engine's seams; defined with the traits these clients implement.
pub use crate::retrievers::{CallError, Chunk};
use codeintel_core::wire::decode;

/// The three backends, each a [`Pool`] of endpoints.
#[derive(Clone)]
pub struct Backends {
    vector: Arc<Pool>,
    lexical: Arc<Pool>,
    hydrate: Arc<Pool>,
}

impl Backends {
    /// Resolves and probes every endpoint of the configured addresses (see [`crate::pool`]).
    pub async fn connect(
        a: &AnswerConfig,
        tls: &codeintel_config::TlsConfig,
        registry: &prometheus::Registry,
    ) -> anyhow::Result<Self> {
        let opts = PoolOptions {
            discovery: Duration::from_millis(a.discovery_ms.max(50)),
            eject: Duration::from_millis(a.eject_ms.max(1)),
            tls: tls.clone(),
        };
        let metrics = PoolMetrics::new(registry)?;
        let hydrate_probe = Probe::Health("arrow.flight.protocol.FlightService");
        Ok(Self {
            vector: Pool::connect("vector-svc", &a.vector_url, Probe::VectorInfo, opts.clone(), metrics.clone())
                .await?,
            lexical: Pool::connect("lexical-svc", &a.lexical_url, Probe::LexicalInfo, opts.clone(), metrics.clone())
                .await?,
            hydrate: Pool::connect("hydrate-svc", &a.hydrate_url, hydrate_probe, opts, metrics).await?,
        })
    }

    /// The backends none of whose endpoints serves, with why.
    pub async fn unhealthy(&self, d: Duration) -> Vec<(&'static str, String)> {
        let (v, l, h) = tokio::join!(self.vector.serving(d), self.lexical.serving(d), self.hydrate.serving(d));
        [("vector-svc", v), ("lexical-svc", l), ("hydrate-svc", h)]
            .into_iter()
            .filter_map(|(name, r)| r.err().map(|why| (name, why)))
            .collect()
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
        codeintel_server::admission::authorize(r.metadata_mut());
        r
    }

    pub async fn dense(&self, query: &str, scope: &Scope, k: u32, d: Duration) -> Result<Vec<ScoredChunk>, CallError> {
        self.vector
            .retrieve(scope, k, d, |ch, scope, d| async move {
                let r = VectorServiceClient::new(ch).search(Self::request(query, &scope, k, d, "")).await?;
                Ok(r.into_inner().hits)
            })
            .await
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
        self.lexical
            .retrieve(scope, k, d, |ch, scope, d| async move {
                let r = LexicalServiceClient::new(ch).search(Self::request(query, &scope, k, d, exact_symbol)).await?;
                Ok(r.into_inner().hits)
            })
            .await
    }

    /// The repos the retrievers said they serve (`Info` of vector-svc and lexical-svc), if any
    /// has said yet.
    pub fn served_repos(&self) -> Option<Vec<String>> {
        match (self.vector.served_repos(), self.lexical.served_repos()) {
            (None, None) => None,
            (a, b) => {
                let mut v: Vec<String> = a.into_iter().chain(b).flatten().collect();
                v.sort();
                v.dedup();
                Some(v)
            }
        }
    }

    /// Learned sparse (SPLADE) retrieval in lexical-svc.
    pub async fn sparse(&self, query: &str, scope: &Scope, k: u32, d: Duration) -> Result<Vec<ScoredChunk>, CallError> {
        self.lexical
            .retrieve(scope, k, d, |ch, scope, d| async move {
                let r = LexicalServiceClient::new(ch).sparse_search(Self::request(query, &scope, k, d, "")).await?;
                Ok(r.into_inner().hits)
            })
            .await
    }

    /// One navigation action through Flight `DoAction`: hydrate-svc answers with one result
    /// holding the protobuf answer.
    pub async fn navigate(&self, action: &str, body: Vec<u8>, d: Duration) -> Result<Vec<u8>, CallError> {
        let body = bytes::Bytes::from(body);
        self.hydrate
            .call(&Scope::default(), d, |ch, _scope, d| {
                let body = body.clone();
                async move {
                    let mut c = FlightServiceClient::new(ch).max_decoding_message_size(64 << 20);
                    let mut req = tonic::Request::new(Action { r#type: action.to_string(), body });
                    req.set_timeout(d);
                    codeintel_server::telemetry::inject(req.metadata_mut());
                    codeintel_server::admission::authorize(req.metadata_mut());
                    let mut results = c.do_action(req).await?.into_inner();
                    let first = results.message().await?.ok_or_else(|| {
                        tonic::Status::internal(format!("hydrate-svc answered {action} with no result"))
                    })?;
                    Ok(first.body.to_vec())
                }
            })
            .await
    }

    /// Fetches chunks by id through Flight `DoGet`; returns them keyed by chunk id.
    pub async fn hydrate(&self, ids: &[u64], scope: &Scope, d: Duration) -> Result<HashMap<u64, Chunk>, CallError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        self.hydrate
            .call(scope, d, |ch, scope, d| async move {
                let ticket = HydrateTicket::new(ids.to_vec(), Some(&scope));
                let mut c = FlightServiceClient::new(ch).max_decoding_message_size(64 << 20);
                let mut req = tonic::Request::new(Ticket::new(ticket.encode()));
                req.set_timeout(d);
                codeintel_server::telemetry::inject(req.metadata_mut());
                codeintel_server::admission::authorize(req.metadata_mut());
                let stream = c.do_get(req).await?.into_inner();
                let batches: Vec<RecordBatch> =
                    FlightRecordBatchStream::new_from_flight_data(stream.map_err(FlightError::from))
                        .try_collect()
                        .await
                        .map_err(|e| match e {
                            FlightError::Tonic(s) => *s,
                            e => tonic::Status::internal(e.to_string()),
                        })?;
                let mut out = HashMap::new();
                for b in &batches {
                    for c in decode(b).map_err(tonic::Status::internal)? {
                        out.insert(c.chunk_id, c);
                    }
                }
                Ok(out)
            })
            .await
    }
}
