//! The seams between the orchestrator ([`crate::pipeline::Engine`]) and the network: what the
//! engine asks of a retriever, of hydration, of a reranker and of the backends' health. The
//! tonic and Flight clients of [`crate::backends`] and the HTTP [`RerankClient`] are the
//! production implementations ([`Parts::connect`]); tests substitute in-process doubles.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use codeintel_core::proto::v1::{Scope, ScoredChunk};

use codeintel_models::rerank::CrossEncoder;

use crate::backends::Backends;
use crate::rerank::{RerankClient, RerankError};

/// A chunk as hydration returns it: the columns of `codeintel_core::wire`.
pub use codeintel_core::chunk::Chunk;

/// How a downstream call failed.
#[derive(Debug, Clone)]
pub enum CallError {
    /// No answer within the deadline (or the server said DEADLINE_EXCEEDED / CANCELLED).
    Timeout(Duration),
    /// Any other gRPC status.
    Status(tonic::Status),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Timeout(d) => write!(f, "no answer within {} ms", d.as_millis()),
            CallError::Status(s) => write!(f, "{:?}: {}", s.code(), s.message()),
        }
    }
}

/// The retrievers, in the order of the rank slots of a fused hit
/// ([`crate::pipeline::RETRIEVERS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetrieverKind {
    Dense,
    Lexical,
    Sparse,
}

impl RetrieverKind {
    pub const ALL: [RetrieverKind; 3] = [RetrieverKind::Dense, RetrieverKind::Lexical, RetrieverKind::Sparse];

    /// The name in traces, limit codes and metrics.
    pub fn name(self) -> &'static str {
        match self {
            RetrieverKind::Dense => "dense",
            RetrieverKind::Lexical => "lexical",
            RetrieverKind::Sparse => "sparse",
        }
    }

    /// The service that answers it, as limits and errors name it.
    pub fn service(self) -> &'static str {
        match self {
            RetrieverKind::Dense => "vector-svc",
            RetrieverKind::Lexical => "lexical-svc",
            RetrieverKind::Sparse => "lexical-svc (sparse)",
        }
    }

    /// Its rank slot in a fused hit.
    pub fn slot(self) -> usize {
        self as usize
    }
}

/// One ranked retrieval (dense, lexical BM25 or learned sparse).
#[tonic::async_trait]
pub trait Retriever: Send + Sync {
    /// The best `k` chunks for `query` within `scope`, best first, answered within `deadline`.
    /// With a non-empty `exact_symbol` (lexical), definitions of that name come first, flagged
    /// `exact`; the other retrievers ignore it.
    async fn search(
        &self,
        query: &str,
        exact_symbol: &str,
        scope: &Scope,
        k: u32,
        deadline: Duration,
    ) -> Result<Vec<ScoredChunk>, CallError>;
}

/// Fetching chunks' text and metadata by id.
#[tonic::async_trait]
pub trait Hydrator: Send + Sync {
    /// The chunks of `ids` that lie in `scope`, keyed by chunk id, within `deadline`.
    async fn hydrate(&self, ids: &[u64], scope: &Scope, deadline: Duration) -> Result<HashMap<u64, Chunk>, CallError>;

    /// One navigation action of hydrate-svc (`FindDefinitions`, `FindReferences`, `Outline`,
    /// `ReadFile`, `ListRepos`): the protobuf request in, the protobuf answer out.
    async fn navigate(&self, action: &str, body: Vec<u8>, deadline: Duration) -> Result<Vec<u8>, CallError> {
        let _ = (body, deadline);
        Err(CallError::Status(tonic::Status::unimplemented(format!("this hydrator does not answer {action}"))))
    }
}

/// A reranker's answer: document indexes with their scores, best first (every index once), and
/// what produced it for the trace (endpoint and model).
#[derive(Debug, Clone, PartialEq)]
pub struct Ranking {
    pub order: Vec<(usize, f32)>,
    pub label: String,
}

/// Second-stage reranking. Errors: [`RerankError::Timeout`] when the deadline passed,
/// [`RerankError::Failed`] when the reranker is unavailable or answered badly.
#[tonic::async_trait]
pub trait Reranker: Send + Sync {
    async fn rerank(&self, query: &str, documents: &[String], deadline: Duration) -> Result<Ranking, RerankError>;
    /// Fused candidates to rerank when a request does not say; `None`: `answer.rerank_top_n`.
    fn default_depth(&self) -> Option<u32> {
        None
    }
}

/// The backends' health, for readiness.
#[tonic::async_trait]
pub trait HealthCheck: Send + Sync {
    /// The backends not serving (service name, why), each asked within `deadline`.
    async fn unhealthy(&self, deadline: Duration) -> Vec<(&'static str, String)>;
    /// The repos the retrievers serve, when they have said (`SetScope` checks named repos
    /// against it); `None` when not known yet.
    fn served_repos(&self) -> Option<Vec<String>> {
        None
    }
}

/// Everything the engine calls over the network.
#[derive(Clone)]
pub struct Parts {
    pub dense: Arc<dyn Retriever>,
    pub lexical: Arc<dyn Retriever>,
    pub sparse: Arc<dyn Retriever>,
    pub hydrator: Arc<dyn Hydrator>,
    /// The rerank server, else the local cross-encoder (`answer.local_rerank`), else `None`.
    pub reranker: Option<Arc<dyn Reranker>>,
    pub health: Arc<dyn HealthCheck>,
}

impl Parts {
    /// The production clients: vector-svc and lexical-svc over gRPC, hydrate-svc over Flight,
    /// the rerank server (with `answer.rerank_url`) over HTTP, else the local cross-encoder.
    pub async fn connect(cfg: &codeintel_config::Config, registry: &prometheus::Registry) -> anyhow::Result<Self> {
        let a = &cfg.answer;
        let reranker: Option<Arc<dyn Reranker>> = if !a.rerank_url.is_empty() {
            Some(Arc::new(RerankClient::new(&a.rerank_url, &a.rerank_model, &cfg.tls)?))
        } else if a.local_rerank {
            Some(Arc::new(LocalReranker::load(cfg)?))
        } else {
            None
        };
        let b = Backends::connect(a, &cfg.tls, registry).await?;
        let kind = |kind| Arc::new(BackendRetriever { backends: b.clone(), kind });
        Ok(Self {
            dense: kind(RetrieverKind::Dense),
            lexical: kind(RetrieverKind::Lexical),
            sparse: kind(RetrieverKind::Sparse),
            hydrator: Arc::new(b.clone()),
            reranker,
            health: Arc::new(b),
        })
    }

    pub fn retriever(&self, kind: RetrieverKind) -> &dyn Retriever {
        match kind {
            RetrieverKind::Dense => self.dense.as_ref(),
            RetrieverKind::Lexical => self.lexical.as_ref(),
            RetrieverKind::Sparse => self.sparse.as_ref(),
        }
    }
}

/// One retriever of the backends' gRPC clients.
struct BackendRetriever {
    backends: Backends,
    kind: RetrieverKind,
}

#[tonic::async_trait]
impl Retriever for BackendRetriever {
    async fn search(
        &self,
        query: &str,
        exact_symbol: &str,
        scope: &Scope,
        k: u32,
        deadline: Duration,
    ) -> Result<Vec<ScoredChunk>, CallError> {
        match self.kind {
            RetrieverKind::Dense => self.backends.dense(query, scope, k, deadline).await,
            RetrieverKind::Lexical => self.backends.lexical(query, exact_symbol, scope, k, deadline).await,
            RetrieverKind::Sparse => self.backends.sparse(query, scope, k, deadline).await,
        }
    }
}

#[tonic::async_trait]
impl Hydrator for Backends {
    async fn hydrate(&self, ids: &[u64], scope: &Scope, deadline: Duration) -> Result<HashMap<u64, Chunk>, CallError> {
        Backends::hydrate(self, ids, scope, deadline).await
    }

    async fn navigate(&self, action: &str, body: Vec<u8>, deadline: Duration) -> Result<Vec<u8>, CallError> {
        Backends::navigate(self, action, body, deadline).await
    }
}

#[tonic::async_trait]
impl HealthCheck for Backends {
    async fn unhealthy(&self, deadline: Duration) -> Vec<(&'static str, String)> {
        Backends::unhealthy(self, deadline).await
    }

    fn served_repos(&self) -> Option<Vec<String>> {
        Backends::served_repos(self)
    }
}

/// The built-in cross-encoder ([`CrossEncoder`]), scoring on the blocking pool of this process.
pub struct LocalReranker {
    model: Arc<CrossEncoder>,
    depth: u32,
    fusion_weight: f32,
}

impl LocalReranker {
    /// Loads `answer.local_rerank_weights` (empty: the built-in weights) over the SPLADE model
    /// folder's base weights.
    pub fn load(cfg: &codeintel_config::Config) -> anyhow::Result<Self> {
        let a = &cfg.answer;
        let base = cfg.sparse_model_dir();
        let model = if a.local_rerank_weights.as_os_str().is_empty() {
            CrossEncoder::builtin(&base)
        } else {
            CrossEncoder::load(&base, &a.local_rerank_weights)
        }
        .map_err(|e| anyhow::anyhow!("answer.local_rerank: {e} (or set answer.local_rerank=false)"))?;
        tracing::info!(reranker = %model.label, depth = a.local_rerank_top_n, "local cross-encoder loaded");
        Ok(Self::new(model, a.local_rerank_top_n, a.local_rerank_fusion_weight))
    }

    pub fn new(model: CrossEncoder, depth: u32, fusion_weight: f32) -> Self {
        Self { model: Arc::new(model), depth, fusion_weight }
    }
}

#[tonic::async_trait]
impl Reranker for LocalReranker {
    async fn rerank(&self, query: &str, documents: &[String], deadline: Duration) -> Result<Ranking, RerankError> {
        let (model, query, docs) = (self.model.clone(), query.to_string(), documents.to_vec());
        let job = tokio::task::spawn_blocking(move || model.score(&query, &docs));
        let scores = match tokio::time::timeout(deadline, job).await {
            Err(_) => return Err(RerankError::Timeout(deadline.as_millis())),
            Ok(Err(e)) => return Err(RerankError::Failed(format!("the local reranker stopped: {e}"))),
            Ok(Ok(Err(e))) => return Err(RerankError::Failed(e.to_string())),
            Ok(Ok(Ok(s))) => s,
        };
        Ok(Ranking { order: blend(&scores, self.fusion_weight), label: self.model.label.clone() })
    }

    fn default_depth(&self) -> Option<u32> {
        Some(self.depth)
    }
}

/// Cross-encoder scores (in fusion order) standardised over the candidates, less `w` times the
/// natural log of each candidate's fusion rank (1 for the first); best first.
pub fn blend(scores: &[f32], w: f32) -> Vec<(usize, f32)> {
    let n = scores.len().max(1) as f32;
    let mean = scores.iter().sum::<f32>() / n;
    let sd = (scores.iter().map(|s| (s - mean).powi(2)).sum::<f32>() / n).sqrt().max(1e-6);
    let mut order: Vec<(usize, f32)> =
        scores.iter().enumerate().map(|(i, s)| (i, (s - mean) / sd - w * (1.0 + i as f32).ln())).collect();
    order.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    order
}

#[tonic::async_trait]
impl Reranker for RerankClient {
    async fn rerank(&self, query: &str, documents: &[String], deadline: Duration) -> Result<Ranking, RerankError> {
        let r = RerankClient::rerank(self, query, documents, deadline).await?;
        Ok(Ranking { order: r.order, label: format!("{} {}", r.endpoint, self.model) })
    }
}

#[cfg(test)]
mod tests {
    use super::blend;

    fn order(v: &[(usize, f32)]) -> Vec<usize> {
        v.iter().map(|o| o.0).collect()
    }

    #[test]
    fn blend_orders_by_the_cross_encoder_and_the_fusion_rank_as_weighted() {
        // The cross-encoder prefers the third fused candidate, then the second.
        let scores = [0.0, 1.0, 2.0, -1.0];
        assert_eq!(order(&blend(&scores, 0.0)), [2, 1, 0, 3]);
        // A heavy fusion weight keeps the fusion order.
        assert_eq!(order(&blend(&scores, 20.0)), [0, 1, 2, 3]);
        // In between: standardised scores -0.45, 0.45, 1.34, -1.34 less 2 ln(rank) give
        // -0.45, -0.94, -0.86, -4.11.
        assert_eq!(order(&blend(&scores, 2.0)), [0, 2, 1, 3]);
        // Scores on another scale give the same order (they are standardised first).
        let scaled: Vec<f32> = scores.iter().map(|s| s * 10.0 + 3.0).collect();
        assert_eq!(order(&blend(&scaled, 2.0)), [0, 2, 1, 3]);
        // Ties and one candidate.
        assert_eq!(order(&blend(&[5.0, 5.0], 0.0)), [0, 1]);
        assert_eq!(order(&blend(&[3.0], 1.0)), [0]);
    }
}
