//! Dense retrieval, free of gRPC: embed the query, search each repo in scope, merge by score.

use std::sync::Arc;
use std::time::Instant;

use codeintel_config::Config;
use codeintel_core::proto::v1::{InfoResponse, RepoInfo, RetrieveRequest, ScoredChunk};
use codeintel_core::scope::validate_retrieve;
use codeintel_index::catalog::Catalog;
use codeintel_index::manifest;
use codeintel_index::manifest::EmbeddingContract;
use codeintel_models::embed::Embedder;
use codeintel_server::{Metrics, Readiness, SharedReadiness};
use parking_lot::RwLock;

use crate::device::Placement;
use crate::error::VectorError;
use crate::store::RepoVectors;

pub struct VectorSearcher {
    catalog: Catalog<RepoVectors>,
    embedder: Embedder,
    contract: EmbeddingContract,
    params: codeintel_config::VectorConfig,
    placement: Placement,
    /// Embeddings of recent queries (`embed.query_cache_entries`).
    query_cache: codeintel_models::cache::QueryCache<Vec<f32>>,
    /// `data.verify_checksums`: check a version's files before serving it.
    verify: bool,
    pub readiness: SharedReadiness,
    pub metrics: Metrics,
}

/// Why an index cannot be served by an embedder, or `None` when they agree.
pub fn contract_mismatch(index: &EmbeddingContract, embedder: &EmbeddingContract) -> Option<String> {
    if index.dim != embedder.dim {
        return Some(format!("dimension mismatch: index={}, embedder={}", index.dim, embedder.dim));
    }
    if index.model_id != embedder.model_id {
        return Some(format!("model mismatch: index={}, embedder={}", index.model_id, embedder.model_id));
    }
    if index.weights_sha256 != embedder.weights_sha256 {
        let name =
            |w: &str| if w.is_empty() { "unnamed".to_string() } else { format!("sha256 {}", &w[..w.len().min(12)]) };
        return Some(format!(
            "weights mismatch: the index was embedded with weights {}, this embedder has {} (`embed.model_dir`); \
             re-embed it with `codeintel index` or point `embed.model_dir` at the weights it was made with",
            name(&index.weights_sha256),
            name(&embedder.weights_sha256)
        ));
    }
    if index.metric != embedder.metric || index.normalized != embedder.normalized {
        return Some(format!(
            "metric mismatch: index={}/normalized={}, embedder={}/normalized={}",
            index.metric, index.normalized, embedder.metric, embedder.normalized
        ));
    }
    None
}

impl VectorSearcher {
    pub async fn new(cfg: &Config) -> anyhow::Result<Arc<Self>> {
        // Each query is one forward pass on `embed.query_threads` threads; on ONNX Runtime,
        // `embed.workers` sessions let that many queries encode at once.
        let embedder =
            Embedder::from_config(cfg, cfg.embed.query_threads, codeintel_models::embed::Role::Queries).await?;
        let contract = embedder.contract(&cfg.embed.model_id).await?;
        let placement = Placement::choose(&cfg.vector);
        match &placement.degraded {
            Some(why) => tracing::warn!("{why}"),
            None => tracing::info!(device = %placement.device, "dense search device"),
        }
        let s = Arc::new(Self {
            catalog: Catalog::new(&cfg.data.root)
                .serving(&cfg.vector.repos)
                .map_err(|e| anyhow::anyhow!("vector.repos: {e}"))?,
            embedder,
            contract,
            params: cfg.vector.clone(),
            placement,
            query_cache: codeintel_models::cache::QueryCache::new(cfg.embed.query_cache_entries),
            verify: cfg.data.verify_checksums,
            readiness: Arc::new(RwLock::new(Readiness::ready())),
            metrics: Metrics::new("vector"),
        });
        s.refresh();
        Ok(s)
    }

    /// Picks up newly published versions; refuses any whose embedding contract differs.
    pub fn refresh(&self) {
        let contract = self.contract.clone();
        self.catalog.refresh(|dir, m| {
            if let Some(why) = contract_mismatch(&m.settings.embedding, &contract) {
                return Err(why);
            }
            if self.verify {
                manifest::verify(dir, m, manifest::Reader::Vector).map_err(|e| e.to_string())?;
            }
            #[allow(unused_mut)]
            let mut r = RepoVectors::open(dir, m, &self.params).map_err(|e| e.to_string())?;
            if r.dim != m.settings.embedding.dim {
                return Err(format!("dimension mismatch: index={}, manifest={}", r.dim, m.settings.embedding.dim));
            }
            #[cfg(feature = "gpu")]
            if let Some(gpu) = &self.placement.gpu {
                if let Err(why) = r.load_on_gpu(gpu, dir, m, self.placement.memory_fraction) {
                    tracing::warn!(repo = %m.repo, "{why}");
                    r.placement_note = Some(why);
                }
            }
            Ok(r)
        });
        // Served from the CPU where a GPU was wanted: degraded, still serving.
        let loaded = self.catalog.snapshot();
        let mut notes: Vec<String> = self.placement.degraded.iter().cloned().collect();
        notes.extend(loaded.iter().filter_map(|l| l.value.placement_note.clone()));
        *self.readiness.write() = Readiness::of_repos(loaded.len(), self.catalog.errors(), notes);
    }

    pub async fn search(&self, req: &RetrieveRequest) -> Result<Vec<ScoredChunk>, VectorError> {
        let scope = validate_retrieve(req)?;
        let loaded = self.catalog.in_scope(&scope)?;
        {
            let r = self.readiness.read();
            if r.is_down() {
                return Err(VectorError::NotServing(r.reasons.join("; ")));
            }
        }
        let t = Instant::now();
        let embed = async {
            Ok::<_, VectorError>(self.embedder.embed(vec![req.query.clone()]).await?.pop().unwrap_or_default())
        };
        let (q, cached) = self.query_cache.get_or_encode(&req.query, embed).await?;
        self.metrics.stage(if cached { "embed_query_cached" } else { "embed_query" }, t.elapsed().as_secs_f64());
        let t = Instant::now();
        let k = req.top_k as usize;
        let mut hits = Vec::new();
        let mut on_gpu = false;
        for l in loaded.iter().filter(|l| scope.allows_repo(&l.manifest.repo)) {
            on_gpu |= l.value.on_gpu();
            let repo = &l.manifest.repo;
            let found = l.value.search(&q, k, |path, lang| scope.allows(repo, path, lang), scope.filters_chunks())?;
            hits.extend(found.into_iter().map(|(id, score)| ScoredChunk {
                chunk_id: id,
                repo: repo.clone(),
                score,
                exact: false,
            }));
        }
        hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.chunk_id.cmp(&b.chunk_id)));
        hits.truncate(k);
        self.metrics.stage(if on_gpu { "gpu_search" } else { "faiss_search" }, t.elapsed().as_secs_f64());
        Ok(hits)
    }

    pub fn info(&self) -> InfoResponse {
        let r = self.readiness.read().clone();
        InfoResponse {
            status: r.status.into(),
            reasons: r.reasons,
            model_id: self.contract.model_id.clone(),
            dim: self.contract.dim,
            metric: self.contract.metric.clone(),
            device: self.placement.device.clone(),
            repos: self
                .catalog
                .snapshot()
                .iter()
                .map(|l| RepoInfo {
                    repo: l.manifest.repo.clone(),
                    manifest_version: l.manifest.version,
                    chunks: l.value.len(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_mismatch_names_the_difference() {
        let a = EmbeddingContract {
            model_id: "m".into(),
            dim: 1024,
            metric: "inner_product".into(),
            normalized: true,
            weights_sha256: String::new(),
        };
        let b = EmbeddingContract { dim: 384, ..a.clone() };
        assert_eq!(contract_mismatch(&a, &b).unwrap(), "dimension mismatch: index=1024, embedder=384");
        assert!(contract_mismatch(&a, &a).is_none());
        let c = EmbeddingContract { model_id: "other".into(), ..a.clone() };
        assert!(contract_mismatch(&a, &c).unwrap().starts_with("model mismatch"));
        // The same model id with other weights (a fine-tune of it, or the base model) is refused.
        let d = EmbeddingContract { weights_sha256: "ab".repeat(32), ..a.clone() };
        let why = contract_mismatch(&a, &d).unwrap();
        assert!(
            why.starts_with("weights mismatch") && why.contains("unnamed") && why.contains("sha256 abababababab"),
            "{why}"
        );
        assert!(contract_mismatch(&d, &d).is_none());
    }
}
