//! Lexical retrieval, free of gRPC: BM25 over each repo in scope, merged by score, and learned
//! sparse (SPLADE) retrieval over the same repos when their versions carry sparse documents.

use std::sync::Arc;

use codeintel_config::Config;
use codeintel_core::proto::v1::{InfoResponse, RepoInfo, RetrieveRequest, ScoredChunk};
use codeintel_core::scope::validate_retrieve;
use codeintel_index::catalog::Catalog;
use codeintel_index::manifest;
use codeintel_server::{Metrics, Readiness, SharedReadiness};
use parking_lot::RwLock;

use codeintel_models::sparse::SpladeEncoder;

use crate::error::LexicalError;
use crate::sparse::SparseIndex;
use crate::store::{Boosts, RepoLexical};

/// What one loaded repo version offers.
pub struct RepoIndexes {
    pub bm25: RepoLexical,
    pub sparse: Option<SparseIndex>,
}

pub struct LexicalSearcher {
    catalog: Catalog<RepoIndexes>,
    boosts: Boosts,
    /// The SPLADE query encoder, or why it could not be loaded.
    encoder: Result<Arc<SpladeEncoder>, String>,
    sparse_model_id: String,
    query_max_terms: usize,
    /// SPLADE encodings of recent queries (`embed.query_cache_entries`).
    query_cache: codeintel_models::cache::QueryCache<codeintel_core::SparseVec>,
    /// `data.verify_checksums`: check a version's files before serving it.
    verify: bool,
    pub readiness: SharedReadiness,
    pub metrics: Metrics,
}

impl LexicalSearcher {
    pub fn new(cfg: &Config) -> anyhow::Result<Arc<Self>> {
        let sp = &cfg.sparse;
        let encoder = if sp.enabled {
            codeintel_models::embed::Runtime::from_config(
                cfg,
                "sparse",
                cfg.embed.query_threads,
                codeintel_models::embed::Role::Queries,
            )
            .and_then(|rt| SpladeEncoder::load(&cfg.sparse_model_dir(), sp.max_tokens, 1, sp.workers, &rt))
            .map(Arc::new)
            .map_err(|e| format!("sparse (SPLADE) model not loaded: {e}"))
        } else {
            Err("sparse retrieval is off (sparse.enabled = false)".into())
        };
        let s = Arc::new(Self {
            encoder,
            sparse_model_id: sp.model_id.clone(),
            query_max_terms: sp.query_max_terms,
            query_cache: codeintel_models::cache::QueryCache::new(cfg.embed.query_cache_entries),
            catalog: Catalog::new(&cfg.data.root)
                .serving(&cfg.lexical.repos)
                .map_err(|e| anyhow::anyhow!("lexical.repos: {e}"))?,
            boosts: Boosts {
                symbol: cfg.lexical.symbol_boost,
                path: cfg.lexical.path_boost,
                body: cfg.lexical.body_boost,
                doc: cfg.lexical.doc_boost,
                bm25: crate::bm25::Bm25Params { k1: cfg.lexical.bm25_k1, b: cfg.lexical.bm25_b },
                word_forms: cfg.lexical.word_forms_weight,
            },
            verify: cfg.data.verify_checksums,
            readiness: Arc::new(RwLock::new(Readiness::ready())),
            metrics: Metrics::new("lexical"),
        });
        s.refresh();
        Ok(s)
    }

    pub fn refresh(&self) {
        self.catalog.refresh(|dir, m| {
            if self.verify {
                manifest::verify(dir, m, manifest::Reader::Lexical).map_err(|e| e.to_string())?;
            }
            let bm25 = RepoLexical::open(&dir.join(&m.tantivy_dir)).map_err(|e| e.to_string())?;
            let sparse = SparseIndex::open(dir, m).map_err(|e| e.to_string())?;
            Ok(RepoIndexes { bm25, sparse })
        });
        let loaded = self.catalog.snapshot();
        let mut notes = Vec::new();
        for l in loaded.iter().filter(|l| l.value.sparse.is_some()) {
            if let Some(why) = self.sparse_unusable(&l.manifest) {
                notes.push(format!("repo {}: {why}", l.manifest.repo));
            }
        }
        *self.readiness.write() = Readiness::of_repos(loaded.len(), self.catalog.errors(), notes);
    }

    pub fn search(&self, req: &RetrieveRequest) -> Result<Vec<ScoredChunk>, LexicalError> {
        let scope = validate_retrieve(req)?;
        let loaded = self.catalog.in_scope(&scope)?;
        let t = std::time::Instant::now();
        let k = req.top_k as usize;
        let mut hits = Vec::new();
        for l in loaded.iter().filter(|l| scope.allows_repo(&l.manifest.repo)) {
            let repo = &l.manifest.repo;
            let found = l.value.bm25.search(
                &req.query,
                &req.exact_symbol,
                k,
                self.boosts,
                &scope.languages,
                |path, lang| scope.allows(repo, path, lang),
                scope.filters_chunks(),
            )?;
            hits.extend(found.into_iter().map(|h| ScoredChunk {
                chunk_id: h.chunk_id,
                repo: repo.clone(),
                score: h.score,
                exact: h.exact,
            }));
        }
        hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.chunk_id.cmp(&b.chunk_id)));
        hits.truncate(k);
        self.metrics.stage("bm25", t.elapsed().as_secs_f64());
        Ok(hits)
    }

    /// Why a version's sparse documents cannot be searched here, if they cannot.
    fn sparse_unusable(&self, m: &codeintel_index::manifest::Manifest) -> Option<String> {
        if let Err(e) = &self.encoder {
            return Some(e.clone());
        }
        let model = m.settings.sparse_model.split('/').next().unwrap_or("");
        (model != self.sparse_model_id).then(|| {
            format!(
                "sparse documents were encoded with {model:?} but this service encodes queries with {:?}; \
                 reindex with `codeintel index --full` or set sparse.model_id",
                self.sparse_model_id
            )
        })
    }

    /// Learned sparse retrieval: the query's SPLADE terms against each repo in scope that has
    /// sparse documents. Repos without them are skipped; none at all is FAILED_PRECONDITION.
    pub fn sparse_search(&self, req: &RetrieveRequest) -> Result<Vec<ScoredChunk>, LexicalError> {
        let scope = validate_retrieve(req)?;
        let loaded = self.catalog.in_scope(&scope)?;
        let in_scope: Vec<_> = loaded.iter().filter(|l| scope.allows_repo(&l.manifest.repo)).collect();
        let usable: Vec<_> = in_scope
            .iter()
            .filter(|l| l.value.sparse.is_some() && self.sparse_unusable(&l.manifest).is_none())
            .collect();
        if usable.is_empty() && !in_scope.is_empty() {
            let why = match &self.encoder {
                Err(e) => e.clone(),
                Ok(_) => "no repo in scope was indexed with sparse documents (index with sparse.enabled = true)".into(),
            };
            return Err(LexicalError::SparseUnavailable(why));
        }
        let encoder = self.encoder.as_ref().map_err(|e| LexicalError::SparseUnavailable(e.clone()))?;
        let t = std::time::Instant::now();
        let (q, cached) = self.query_cache.get_or_encode_sync(&req.query, || {
            encoder
                .encode(std::slice::from_ref(&req.query), self.query_max_terms)
                .map(|mut v| v.pop().unwrap_or_default())
                .map_err(|e| LexicalError::SparseUnavailable(e.to_string()))
        })?;
        self.metrics.stage(if cached { "sparse_encode_cached" } else { "sparse_encode" }, t.elapsed().as_secs_f64());
        let t = std::time::Instant::now();
        let k = req.top_k as usize;
        let mut hits = Vec::new();
        for l in usable {
            let repo = &l.manifest.repo;
            let index = l.value.sparse.as_ref().expect("filtered on sparse");
            hits.extend(
                index
                    .search(&q, k, scope.filters_chunks(), |path, lang| scope.allows(repo, path, lang))
                    .into_iter()
                    .map(|h| ScoredChunk { chunk_id: h.chunk_id, repo: repo.clone(), score: h.score, exact: false }),
            );
        }
        hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.chunk_id.cmp(&b.chunk_id)));
        hits.truncate(k);
        self.metrics.stage("sparse", t.elapsed().as_secs_f64());
        Ok(hits)
    }

    pub fn info(&self) -> InfoResponse {
        let r = self.readiness.read().clone();
        InfoResponse {
            status: r.status.into(),
            reasons: r.reasons,
            repos: self
                .catalog
                .snapshot()
                .iter()
                .map(|l| RepoInfo {
                    repo: l.manifest.repo.clone(),
                    manifest_version: l.manifest.version,
                    chunks: l.value.bm25.docs,
                })
                .collect(),
            ..Default::default()
        }
    }
}
