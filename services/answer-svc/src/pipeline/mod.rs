//! The answer pipeline, free of gRPC: validate, resolve scope, retrieve in parallel under
//! deadlines, fuse, hydrate, then stream citations, tokens, limits, trace and done.
//!
//! Retrieval runs in stages, each a function of its own ([`stages`]): [`route`] (route,
//! retrievers, candidate depth, deadline), [`Engine::fan_out`] (the retrievers in parallel),
//! [`classify`] (outcomes into ranked lists, limits, or the request's error), [`fuse_lists`],
//! [`Engine::hydrate_stage`] and [`rerank_stage`]; the answer stream is [`stream`]'s. The
//! network sits behind the traits of [`crate::retrievers`].

mod stages;
mod stream;

pub use stages::*;

use std::sync::Arc;
use std::time::Duration;

use codeintel_config::{AnswerConfig, Config};
use codeintel_core::proto::v1::{
    AnswerEvent, AnswerRequest, Limit, RankMove, RetrieverContribution, Scope, ScoredChunk, SearchHit, SearchMode,
    SearchRequest, StageTiming,
};
use codeintel_server::admission::Principal;
use codeintel_server::{Metrics, Readiness, SharedReadiness};
use parking_lot::RwLock;
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::error::AnswerError;
use crate::retrievers::{Chunk, Parts, RetrieverKind};
use crate::session::SessionStore;
use crate::synthesis::ChatClient;

pub use codeintel_core::scope::MAX_TOP_K;
/// The most an Answer's `time_budget_ms` may ask for.
pub const MAX_TIME_BUDGET_MS: u32 = 600_000;

/// The session's key in the store: namespaced by the caller's token, so that one token's
/// holder can neither read nor change another's session of the same id.
pub fn session_key(session: &str, who: Option<&Principal>) -> Result<String, AnswerError> {
    crate::session::validate_session_id(session)?;
    Ok(match who {
        Some(p) => format!("{}/{session}", p.name),
        None => session.to_string(),
    })
}

/// `scope` narrowed to the repos `who` may read: a scope without repos gets exactly those; one
/// that names another repo is PERMISSION_DENIED.
pub fn restrict(who: Option<&Principal>, mut scope: Scope) -> Result<Scope, AnswerError> {
    let Some((name, allowed)) = who.and_then(|p| p.repos.as_ref().map(|r| (&p.name, r))) else { return Ok(scope) };
    if scope.repos.is_empty() {
        scope.repos = allowed.to_vec();
        return Ok(scope);
    }
    if let Some(r) = scope.repos.iter().find(|r| !allowed.contains(r)) {
        return Err(AnswerError::PermissionDenied(format!(
            "token {name:?} may not read repo {}; it may read: {}",
            codeintel_core::scope::excerpt(r, 128),
            allowed.join(", ")
        )));
    }
    Ok(scope)
}

/// Checks an Answer's `time_budget_ms` (0 = the configured default).
pub fn validate_budget(ms: u32) -> Result<(), AnswerError> {
    if ms > MAX_TIME_BUDGET_MS {
        return Err(AnswerError::InvalidArgument(format!(
            "time_budget_ms must be at most {MAX_TIME_BUDGET_MS}, got {ms}"
        )));
    }
    Ok(())
}

/// A fused, hydrated hit.
#[derive(Debug, Clone)]
pub struct Hit {
    pub chunk: Chunk,
    pub score: f32,
    pub dense_rank: u32,
    pub lexical_rank: u32,
    pub sparse_rank: u32,
}

/// Fusion weights and candidate depth of a query route (`answer.*` and `answer.identifier_*`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Route {
    pub name: &'static str,
    pub dense: f32,
    pub lexical: f32,
    pub sparse: f32,
    pub candidates: u32,
}

impl Route {
    /// `question`: [`codeintel_core::query::is_question`] of the query, which takes
    /// `answer.question_dense_weight` instead of `answer.dense_weight`.
    pub fn natural_language(a: &AnswerConfig, question: bool) -> Self {
        Self {
            name: "natural_language",
            dense: if question { a.question_dense_weight } else { a.dense_weight },
            lexical: a.lexical_weight,
            sparse: a.sparse_weight,
            candidates: a.candidates,
        }
    }

    pub fn identifier(a: &AnswerConfig) -> Self {
        Self {
            name: "identifier",
            dense: a.identifier_dense_weight,
            lexical: a.identifier_lexical_weight,
            sparse: a.identifier_sparse_weight,
            candidates: a.identifier_candidates,
        }
    }

    /// The fusion weight of `kind` on this route.
    pub fn weight(&self, kind: RetrieverKind) -> f32 {
        match kind {
            RetrieverKind::Dense => self.dense,
            RetrieverKind::Lexical => self.lexical,
            RetrieverKind::Sparse => self.sparse,
        }
    }
}

/// Retriever names, in the order of the rank slots of a fused hit.
pub const RETRIEVERS: [&str; 3] = ["dense", "lexical", "sparse"];

/// A fused candidate: chunk id, score, 1-based rank in each retriever of [`RETRIEVERS`] (0 =
/// absent).
pub type Fused = (u64, f32, [u32; 3]);

/// What retrieval produced, with everything the trace reports.
#[derive(Debug, Default)]
pub struct Retrieval {
    pub hits: Vec<Hit>,
    pub limits: Vec<Limit>,
    pub stages: Vec<StageTiming>,
    pub retrievers: Vec<RetrieverContribution>,
    /// `identifier` or `natural_language`.
    pub route: String,
    /// `fusion`, or the rerank endpoint and model that ordered the hits.
    pub reranker: String,
    pub ranks: Vec<RankMove>,
}

pub struct Engine {
    cfg: Config,
    parts: Parts,
    chat: Option<ChatClient>,
    traces: Option<crate::traces::TraceSink>,
    pub sessions: SessionStore,
    pub metrics: Metrics,
    pub readiness: SharedReadiness,
}

/// One retriever's answer: ranked (chunk id, repo) with its own scores.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrieverList {
    pub kind: RetrieverKind,
    pub weight: f32,
    pub hits: Vec<(u64, String)>,
    pub scores: Vec<f32>,
    /// Hits that define the exact symbol the query names (lexical only).
    pub exact: Vec<u64>,
}

impl RetrieverList {
    pub fn new(kind: RetrieverKind, weight: f32, hits: Vec<ScoredChunk>) -> Self {
        // An exact name match carries a constant far above any BM25 score; it is pinned first
        // anyway, so for fusion it counts as the list's best score rather than skewing the
        // list's score distribution.
        let best = hits.iter().filter(|h| !h.exact).map(|h| h.score).fold(f32::NAN, f32::max);
        let best = if best.is_nan() { 1.0 } else { best };
        let scores = hits.iter().map(|h| if h.exact { best } else { h.score }).collect();
        let exact = hits.iter().filter(|h| h.exact).map(|h| h.chunk_id).collect();
        Self { kind, weight, hits: hits.into_iter().map(|h| (h.chunk_id, h.repo)).collect(), scores, exact }
    }
}

impl Engine {
    /// Connects the clients; with `answer.redis_url` set, session scopes live in Redis (the
    /// first connection must succeed).
    pub async fn new(cfg: &Config) -> anyhow::Result<Arc<Self>> {
        let a = &cfg.answer;
        let metrics = Metrics::new("answer");
        let sessions = if a.redis_url.is_empty() {
            SessionStore::local(a)
        } else {
            let opts = crate::session::RedisOptions {
                url: a.redis_url.clone(),
                ttl_s: a.session_ttl_s,
                cache_entries: a.scope_cache_entries,
                cache_ttl: Duration::from_millis(a.scope_cache_ttl_ms),
                invalidation_timeout: Duration::from_millis(a.scope_invalidation_timeout_ms),
            };
            SessionStore::Redis(crate::session::RedisStore::connect(opts, &metrics.registry).await?)
        };
        let parts = Parts::connect(cfg, &metrics.registry).await?;
        Self::build(cfg, parts, sessions, metrics)
    }

    /// The engine over the given retrievers, hydrator, reranker and health check (test doubles,
    /// say), with session scopes in this process; the language model and trace sink follow
    /// `cfg` as in [`Engine::new`].
    pub fn with_parts(cfg: &Config, parts: Parts) -> anyhow::Result<Arc<Self>> {
        Self::build(cfg, parts, SessionStore::local(&cfg.answer), Metrics::new("answer"))
    }

    fn build(cfg: &Config, parts: Parts, sessions: SessionStore, metrics: Metrics) -> anyhow::Result<Arc<Self>> {
        let a = &cfg.answer;
        let chat = if a.llm_url.is_empty() {
            None
        } else {
            Some(ChatClient::new(&a.llm_url, &a.llm_model, a.llm_max_tokens, &cfg.tls)?)
        };
        let traces = a.traces.then(|| {
            let dir = if !a.trace_dir.as_os_str().is_empty() {
                a.trace_dir.clone()
            } else if cfg.data.root.to_string_lossy().contains("://") {
                cfg.data.cache.join("traces") // an object-store data root: traces stay local
            } else {
                cfg.data.root.join("traces")
            };
            crate::traces::TraceSink::start(dir, a.trace_batch_rows, Duration::from_millis(a.trace_flush_ms.max(100))).0
        });
        Ok(Arc::new(Self {
            traces,
            cfg: cfg.clone(),
            parts,
            chat,
            sessions,
            metrics,
            // Nothing is known of the backends until the first check answers.
            readiness: Arc::new(RwLock::new(Readiness::down("no backend has answered a health check yet"))),
        }))
    }

    /// Writes pending AnswerTrace rows (call at shutdown).
    pub async fn flush_traces(&self) {
        if let Some(t) = &self.traces {
            t.flush().await;
        }
    }

    /// One navigation action of hydrate-svc (see [`crate::navigation`]).
    pub async fn navigate(
        &self,
        action: &str,
        body: Vec<u8>,
        deadline: std::time::Duration,
    ) -> Result<Vec<u8>, crate::retrievers::CallError> {
        self.parts.hydrator.navigate(action, body, deadline).await
    }

    pub fn default_budget_ms(&self) -> u32 {
        self.cfg.answer.time_budget_ms.min(u32::MAX as u64) as u32
    }

    /// Re-derives readiness from the backends' health: `degraded` when a retriever is down
    /// (answers come from the other), `down` when hydration or both retrievers are.
    pub async fn check_backends(&self) {
        let bad = self.parts.health.unhealthy(Duration::from_millis(1000)).await;
        let is_down = |name: &str| bad.iter().any(|b| b.0 == name);
        // Nothing can be answered without hydration, or without any retriever.
        let fatal = is_down("hydrate-svc") || (is_down("vector-svc") && is_down("lexical-svc"));
        let reasons: Vec<String> = bad.into_iter().map(|b| b.1).collect();
        let (unusable, mut impaired) = if fatal { (reasons, Vec::new()) } else { (Vec::new(), reasons) };
        impaired.extend(self.sessions.degraded());
        *self.readiness.write() = Readiness::judge(unusable, impaired);
    }

    /// The request's scope, else the session's, else everything.
    /// The request's own scope, else its session's (with the limits of that lookup), else none;
    /// then narrowed to the repos the caller's token may read.
    pub async fn resolve_scope(
        &self,
        scope: Option<Scope>,
        session: Option<&str>,
        who: Option<&Principal>,
    ) -> Result<(Scope, Vec<Limit>), AnswerError> {
        let (scope, limits) = match (scope.filter(|s| *s != Scope::default()), session) {
            (Some(s), _) => (s, Vec::new()),
            (None, Some(id)) => {
                let found = self.sessions.get(&session_key(id, who)?).await?;
                (found.scope.unwrap_or_default(), found.limits)
            }
            (None, None) => (Scope::default(), Vec::new()),
        };
        Ok((restrict(who, scope)?, limits))
    }

    /// `SetScope`: the scope checked (bounds, globs, the caller's repos, and named repos against
    /// those the retrievers serve, when they have said), then saved for the session.
    pub async fn set_session_scope(
        &self,
        session: &str,
        scope: Scope,
        who: Option<&Principal>,
    ) -> Result<(), AnswerError> {
        let key = session_key(session, who)?;
        let filter = codeintel_core::scope::ScopeFilter::new(Some(&scope))?;
        restrict(who, scope.clone())?;
        if let Some(served) = self.parts.health.served_repos() {
            filter.check_repos(&served, &[])?;
        }
        self.sessions.set(&key, scope).await
    }

    /// `GetScope`: the session's scope as saved.
    pub async fn session_scope(&self, session: &str, who: Option<&Principal>) -> Result<Option<Scope>, AnswerError> {
        Ok(self.sessions.get(&session_key(session, who)?).await?.scope)
    }

    /// `ClearScope`.
    pub async fn clear_session_scope(&self, session: &str, who: Option<&Principal>) -> Result<(), AnswerError> {
        self.sessions.clear(&session_key(session, who)?).await
    }

    pub async fn search(
        &self,
        req: SearchRequest,
        session: Option<&str>,
        who: Option<&Principal>,
    ) -> Result<(Vec<SearchHit>, Vec<Limit>), AnswerError> {
        let top_k = req.top_k;
        validate_query(&req.query, top_k, req.scope.as_ref())?;
        let (scope, scope_limits) = self.resolve_scope(req.scope, session, who).await?;
        let mode = SearchMode::try_from(req.mode).map_err(|_| {
            AnswerError::InvalidArgument(format!("unknown mode {}; use HYBRID, DENSE, LEXICAL or SPARSE", req.mode))
        })?;
        let budget = Duration::from_millis(self.cfg.answer.time_budget_ms);
        let rerank_n = if req.rerank {
            let Some(rr) = &self.parts.reranker else {
                return Err(AnswerError::InvalidArgument(
                    "rerank was requested but no reranker is configured (set answer.rerank_url, or \
                     answer.local_rerank=true for the built-in one)"
                        .into(),
                ));
            };
            rr.default_depth().unwrap_or(self.cfg.answer.rerank_top_n)
        } else {
            0
        };
        let mut r = self.retrieve(&req.query, &scope, mode, top_k, budget, rerank_n).await?;
        r.limits.splice(0..0, scope_limits);
        let hits = r
            .hits
            .into_iter()
            .map(|h| SearchHit {
                chunk_id: h.chunk.chunk_id,
                repo: h.chunk.repo,
                path: h.chunk.path,
                start_line: h.chunk.start_line,
                end_line: h.chunk.end_line,
                language: h.chunk.language,
                symbol: h.chunk.symbol,
                score: h.score,
                text: h.chunk.text,
                dense_rank: h.dense_rank,
                lexical_rank: h.lexical_rank,
                sparse_rank: h.sparse_rank,
                commit: h.chunk.commit,
                stale: h.chunk.stale,
            })
            .collect();
        Ok((hits, r.limits))
    }

    /// Validates `req` and starts the answer; events arrive on the returned receiver. The work
    /// stops as soon as the receiver is dropped (client gone).
    pub async fn answer(
        self: &Arc<Self>,
        req: AnswerRequest,
        session: Option<&str>,
        who: Option<&Principal>,
    ) -> Result<mpsc::Receiver<Result<AnswerEvent, tonic::Status>>, AnswerError> {
        let top_k = req.top_k;
        validate_query(&req.query, top_k, req.scope.as_ref())?;
        if req.rerank_top_n > MAX_TOP_K {
            return Err(AnswerError::InvalidArgument(format!(
                "rerank_top_n must be at most {MAX_TOP_K}, got {}",
                req.rerank_top_n
            )));
        }
        validate_budget(req.time_budget_ms)?;
        let scope = self.resolve_scope(req.scope.clone(), session, who).await?;
        let (tx, rx) = mpsc::channel(64);
        let me = self.clone();
        tokio::spawn(
            async move {
                let closed = tx.clone();
                tokio::select! {
                    _ = closed.closed() => {
                        me.metrics.stage("answer_cancelled", 0.0);
                        tracing::info!("client went away; answer cancelled");
                    }
                    _ = me.run_answer(req, scope, top_k, tx) => {}
                }
            }
            .instrument(tracing::Span::current()),
        );
        Ok(rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_explains_what_to_fix() {
        assert!(validate_query("", 5, None).unwrap_err().to_string().contains("query is empty"));
        assert!(validate_query("q", 0, None).unwrap_err().to_string().contains("top_k"));
        assert!(validate_query("q", 1001, None).unwrap_err().to_string().contains("top_k"));
        let bad = Scope { include_globs: vec!["a/[".into()], ..Default::default() };
        assert_eq!(validate_query("q", 5, Some(&bad)).unwrap_err().code(), tonic::Code::InvalidArgument);
        assert!(validate_query("q", 5, None).is_ok());
    }

    #[test]
    fn descriptions_lean_on_dense_and_questions_keep_the_balance() {
        let a = AnswerConfig::default();
        let plan = |q: &str| route(&a, q, SearchMode::Hybrid, 10, Duration::from_secs(2), 0);
        let described = plan("Returns the value of the header as a string");
        assert_eq!((described.route.name, described.route.dense), ("natural_language", a.dense_weight));
        let asked = plan("how does the answer service fuse dense and lexical results?");
        assert_eq!((asked.route.name, asked.route.dense), ("natural_language", a.question_dense_weight));
        assert_ne!(a.dense_weight, a.question_dense_weight, "the defaults weigh the two forms differently");
        // Lexical and sparse are the same on both; identifier lookups keep their own route.
        assert_eq!((described.route.lexical, described.route.sparse), (asked.route.lexical, asked.route.sparse));
        let looked_up = plan("where is _get_text_stream defined?");
        assert_eq!((looked_up.route.name, looked_up.route.dense), ("identifier", a.identifier_dense_weight));
    }

    #[test]
    fn exact_symbol_hits_lead_in_their_own_order() {
        let fused = vec![(1, 0.5, [1, 0, 0]), (2, 0.4, [2, 3, 0]), (3, 0.3, [0, 1, 0]), (4, 0.2, [3, 2, 0])];
        let out: Vec<u64> = exact_first(fused.clone(), &[3, 2]).into_iter().map(|f| f.0).collect();
        assert_eq!(out, vec![3, 2, 1, 4]);
        assert_eq!(exact_first(fused.clone(), &[]), fused);
    }

    fn hit(id: u64, path: &str, language: &str) -> Hit {
        // A definition's chunk (it names a symbol); prose is prose by its language.
        let chunk = Chunk {
            chunk_id: id,
            path: path.into(),
            language: language.into(),
            symbol: format!("f{id}"),
            ..Default::default()
        };
        Hit { chunk, score: 1.0 / id as f32, dense_rank: 0, lexical_rank: 0, sparse_rank: 0 }
    }

    #[test]
    fn tests_and_prose_move_below_code_unless_the_question_asks_for_them() {
        let hits = || {
            vec![
                hit(1, "src/orchestrator_tests.rs", "rust"),
                hit(2, "Makefile", "config"),
                hit(3, "src/pipeline.rs", "rust"),
                hit(4, "docs/configuration.md", "text"),
                hit(5, "src/fusion.rs", "rust"),
                hit(6, "src/config.rs", "rust"),
            ]
        };
        let ids = |h: Vec<Hit>| h.into_iter().map(|h| h.chunk.chunk_id).collect::<Vec<_>>();
        let q = "how are dense and lexical results fused?";
        // Two places down: 1 -> 3 (after code 3), 2 -> 4, 4 -> 6.
        assert_eq!(ids(code_first(hits(), 0, 2, q)), vec![3, 1, 2, 5, 6, 4]);
        // Far enough down: every code hit first, the others in their fused order.
        assert_eq!(ids(code_first(hits(), 0, 10, q)), vec![3, 5, 6, 1, 2, 4]);
        assert_eq!(ids(code_first(hits(), 0, 0, q)), vec![1, 2, 3, 4, 5, 6], "0: fused order");
        // A pinned exact definition stays first whatever it is.
        assert_eq!(ids(code_first(hits(), 1, 10, q)), vec![1, 3, 5, 6, 2, 4]);
        // Named in the question: that role keeps its place.
        assert_eq!(ids(code_first(hits(), 0, 10, "which tests cover fusion?")), vec![1, 3, 5, 6, 2, 4]);
        assert_eq!(ids(code_first(hits(), 0, 10, "where is fusion documented?")), vec![2, 3, 4, 5, 6, 1]);
    }

    #[test]
    fn top_level_windows_move_below_definitions_like_prose() {
        let window = |id: u64, path: &str| {
            let mut h = hit(id, path, "python");
            h.chunk.symbol.clear();
            h
        };
        let hits = || {
            vec![
                window(1, "pkg/core.py"),
                hit(2, "pkg/core.py", "python"),
                hit(3, "src/fusion.rs", "rust"),
                window(4, "src/fusion.rs"),
            ]
        };
        let ids = |h: Vec<Hit>| h.into_iter().map(|h| h.chunk.chunk_id).collect::<Vec<_>>();
        // A description and a question alike: the definitions first.
        assert_eq!(ids(code_first(hits(), 0, 10, "Parse the header of a message")), vec![2, 3, 1, 4]);
        assert_eq!(ids(code_first(hits(), 0, 1, "how is the header parsed?")), vec![2, 1, 3, 4]);
        // A module doc is documentation: asked for, windows keep their place.
        assert_eq!(ids(code_first(hits(), 0, 10, "where is the header format documented?")), vec![1, 2, 3, 4]);
    }

    #[test]
    fn declarations_move_below_code_for_questions_about_behaviour() {
        let of = |id: u64, kind: &str| {
            let mut h = hit(id, "src/fusion.rs", "rust");
            h.chunk.kind = kind.into();
            h
        };
        let hits = || vec![of(1, "struct"), of(2, "enum"), of(3, "function"), of(4, "method"), of(5, "class")];
        let ids = |h: Vec<Hit>| h.into_iter().map(|h| h.chunk.chunk_id).collect::<Vec<_>>();
        let q = "how does the answer service fuse dense and lexical results?";
        assert_eq!(ids(behaviour_first(hits(), 0, 10, q)), vec![3, 4, 5, 1, 2]);
        assert_eq!(ids(behaviour_first(hits(), 0, 2, q)), vec![3, 1, 4, 2, 5], "2 places: ties go to the code");
        assert_eq!(ids(behaviour_first(hits(), 1, 10, q)), vec![1, 3, 4, 5, 2], "a pinned hit keeps its place");
        assert_eq!(ids(behaviour_first(hits(), 0, 0, q)), vec![1, 2, 3, 4, 5], "0: the order as it was");
        // Descriptions, lookups and questions that name a declaration keep the order.
        for q in ["Fused ranked lists", "what is the fused list?", "which struct holds the fused lists?"] {
            assert_eq!(ids(behaviour_first(hits(), 0, 10, q)), vec![1, 2, 3, 4, 5], "{q}");
        }
    }
}
