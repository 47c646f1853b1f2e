//! Lexical retrieval, free of gRPC: BM25 over each repo in scope, merged by score.

use std::sync::Arc;

use codeintel_core::catalog::Catalog;
use codeintel_core::config::Config;
use codeintel_core::proto::v1::{InfoResponse, RepoInfo, RetrieveRequest, ScoredChunk};
use codeintel_core::scope::validate_retrieve;
use codeintel_core::server::{Metrics, Readiness, SharedReadiness};
use parking_lot::RwLock;

use crate::error::LexicalError;
use crate::store::{Boosts, RepoLexical};

pub struct LexicalSearcher {
    catalog: Catalog<RepoLexical>,
    boosts: Boosts,
    pub readiness: SharedReadiness,
    pub metrics: Metrics,
}

impl LexicalSearcher {
    pub fn new(cfg: &Config) -> Arc<Self> {
        let s = Arc::new(Self {
            catalog: Catalog::new(&cfg.data.root),
            boosts: Boosts {
                symbol: cfg.lexical.symbol_boost,
                path: cfg.lexical.path_boost,
                body: cfg.lexical.body_boost,
                doc: cfg.lexical.doc_boost,
            },
            readiness: Arc::new(RwLock::new(Readiness::ready())),
            metrics: Metrics::new("lexical"),
        });
        s.refresh();
        s
    }

    pub fn refresh(&self) {
        self.catalog.refresh(|dir, m| RepoLexical::open(&dir.join(&m.tantivy_dir)).map_err(|e| e.to_string()));
        let errors = self.catalog.errors();
        *self.readiness.write() =
            if errors.is_empty() { Readiness::ready() } else { Readiness { status: "degraded", reasons: errors } };
    }

    pub fn search(&self, req: &RetrieveRequest) -> Result<Vec<ScoredChunk>, LexicalError> {
        let scope = validate_retrieve(req)?;
        let loaded = self.catalog.snapshot();
        scope.check_repos(&loaded.iter().map(|l| l.manifest.repo.clone()).collect::<Vec<_>>())?;
        let t = std::time::Instant::now();
        let k = req.top_k as usize;
        let mut hits = Vec::new();
        for l in loaded.iter().filter(|l| scope.allows_repo(&l.manifest.repo)) {
            let repo = &l.manifest.repo;
            let found = l.value.search(
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
                    chunks: l.value.docs,
                })
                .collect(),
            ..Default::default()
        }
    }
}
