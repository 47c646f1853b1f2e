//! The answer pipeline, free of gRPC: validate, resolve scope, retrieve in parallel under
//! deadlines, fuse, hydrate, then stream citations, tokens, limits, trace and done.
//!
//! Retrieval runs in stages, each a function of its own: [`route`] (route, retrievers,
//! candidate depth, deadline), [`Engine::fan_out`] (the retrievers in parallel), [`classify`]
//! (outcomes into ranked lists, limits, or the request's error), [`fuse_lists`],
//! [`Engine::hydrate_stage`] and [`rerank_stage`]. The network sits behind the traits of
//! [`crate::retrievers`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use codeintel_config::{AnswerConfig, Config};
use codeintel_core::proto::v1::answer_event::Event;
use codeintel_core::proto::v1::{
    AnswerEvent, AnswerRequest, Citation, Citations, Done, Limit, Limits, RankMove, RetrieverContribution, Scope,
    ScoredChunk, SearchHit, SearchMode, SearchRequest, StageTiming, Token, Trace,
};
use codeintel_core::scope::ScopeFilter;
use codeintel_server::{Metrics, Readiness, SharedReadiness};
use futures::StreamExt;
use parking_lot::RwLock;
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::error::AnswerError;
use crate::fusion::{fuse, Method, RankedList};
use crate::rerank::RerankError;
use crate::retrievers::{CallError, HydratedChunk, Parts, Reranker, RetrieverKind};
use crate::session::SessionStore;
use crate::synth::{build_prompt, extractive_answer, ChatClient, ChatEvent};
use codeintel_core::query::{self, QueryKind};

pub const MAX_TOP_K: u32 = 1000;

/// A fused, hydrated hit.
#[derive(Debug, Clone)]
pub struct Hit {
    pub chunk: HydratedChunk,
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
    pub fn natural_language(a: &AnswerConfig) -> Self {
        Self {
            name: "natural_language",
            dense: a.dense_weight,
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

/// Puts the exact-symbol hits first (in their retriever's order), then the rest as fused.
pub fn exact_first(fused: Vec<Fused>, exact: &[u64]) -> Vec<Fused> {
    if exact.is_empty() {
        return fused;
    }
    let (mut first, rest): (Vec<_>, Vec<_>) = fused.into_iter().partition(|f| exact.contains(&f.0));
    first.sort_by_key(|f| exact.iter().position(|e| *e == f.0));
    first.extend(rest);
    first
}

async fn timed<T>(f: impl std::future::Future<Output = T>) -> (T, Duration) {
    let t = Instant::now();
    let r = f.await;
    (r, t.elapsed())
}

fn limit(code: &str, message: impl Into<String>) -> Limit {
    Limit { code: code.into(), message: message.into() }
}

fn stage(name: &str, since: Instant) -> StageTiming {
    StageTiming { stage: name.into(), ms: since.elapsed().as_secs_f64() * 1e3 }
}

/// Validates the parts every request shares; returns the compiled scope filter.
pub fn validate_query(query: &str, top_k: u32, scope: Option<&Scope>) -> Result<ScopeFilter, AnswerError> {
    if query.trim().is_empty() {
        return Err(AnswerError::InvalidArgument("query is empty: ask a question or name a symbol".into()));
    }
    if query.len() > 8192 {
        return Err(AnswerError::InvalidArgument(format!("query is {} bytes; at most 8192 are allowed", query.len())));
    }
    if top_k == 0 || top_k > MAX_TOP_K {
        return Err(AnswerError::InvalidArgument(format!("top_k must be between 1 and {MAX_TOP_K}, got {top_k}")));
    }
    Ok(ScopeFilter::new(scope)?)
}

/// What the first stage decides for one retrieval.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The symbol the query names (identifier route), else empty.
    pub exact_symbol: String,
    pub route: Route,
    /// Whether each retriever of [`RetrieverKind::ALL`] runs.
    pub run: [bool; 3],
    /// How many candidates each retriever returns.
    pub candidates: u32,
    /// Each retriever's deadline.
    pub deadline: Duration,
}

/// Routes the query: name lookups get an exact symbol match first and their own fusion weights
/// and candidate depth. Which retrievers run: one in a single-retriever mode; in hybrid, those
/// with a fusion weight on the route. Candidates: the route's depth, at least `top_k` and
/// `rerank_depth` (the reranker's `rerank_n` when one runs, else 0). Retrievers get at most
/// half of `budget`, and at most `answer.retriever_timeout_ms`.
pub fn route(a: &AnswerConfig, query: &str, mode: SearchMode, top_k: u32, budget: Duration, rerank_depth: u32) -> Plan {
    let exact_symbol = match a.identifier_routing.then(|| query::classify(query)) {
        Some(QueryKind::Identifier { name }) => name,
        _ => String::new(),
    };
    let route = if exact_symbol.is_empty() { Route::natural_language(a) } else { Route::identifier(a) };
    let candidates = route.candidates.max(top_k).max(rerank_depth);
    let deadline = budget.mul_f32(0.5).min(Duration::from_millis(a.retriever_timeout_ms));
    let hybrid = mode == SearchMode::Hybrid;
    let run = [
        mode == SearchMode::Dense || (hybrid && route.dense > 0.0),
        mode == SearchMode::Lexical || (hybrid && route.lexical > 0.0),
        mode == SearchMode::Sparse || (hybrid && route.sparse > 0.0),
    ];
    Plan { exact_symbol, route, run, candidates, deadline }
}

/// One retriever's outcome and how long it took; `None` when it did not run.
pub type Answered = Option<(Result<Vec<ScoredChunk>, CallError>, Duration)>;

/// What the retrievers gave, ready for fusion.
#[derive(Debug, Default)]
pub struct Classified {
    /// The lists of the retrievers that answered, in [`RetrieverKind::ALL`] order.
    pub lists: Vec<RetrieverList>,
    /// A trace entry per retriever that ran.
    pub retrievers: Vec<RetrieverContribution>,
    /// `{name}_timeout` / `{name}_unavailable` for each retriever that failed.
    pub limits: Vec<Limit>,
}

fn contribution(kind: RetrieverKind, hits: usize, ms: f64, timed_out: bool) -> RetrieverContribution {
    RetrieverContribution { retriever: kind.name().into(), hits: hits as u32, in_top_k: 0, ms, timed_out }
}

/// Turns the retrievers' outcomes (in [`RetrieverKind::ALL`] order) into ranked lists, trace
/// entries and limits. A retriever that fails leaves a limit and the others answer; the request
/// fails when a retriever calls it invalid (INVALID_ARGUMENT), when SPARSE mode finds no
/// sparse documents (FAILED_PRECONDITION; in hybrid that is zero hits, silently), and when no
/// retriever answered (see [`all_failed`]). Records `{name}_timeout` stage metrics.
pub fn classify(
    answered: [Answered; 3],
    route: &Route,
    mode: SearchMode,
    metrics: &Metrics,
) -> Result<Classified, AnswerError> {
    let mut out = Classified::default();
    let mut failures: Vec<(RetrieverKind, CallError)> = Vec::new();
    for (kind, answered) in RetrieverKind::ALL.into_iter().zip(answered) {
        let Some((res, took)) = answered else { continue };
        let (name, svc) = (kind.name(), kind.service());
        let ms = took.as_secs_f64() * 1e3;
        match res {
            Ok(hits) => {
                out.retrievers.push(contribution(kind, hits.len(), ms, false));
                out.lists.push(RetrieverList::new(kind, route.weight(kind), hits));
            }
            Err(CallError::Status(s)) if s.code() == tonic::Code::InvalidArgument => {
                return Err(AnswerError::InvalidArgument(s.message().to_string()));
            }
            Err(CallError::Status(s))
                if s.code() == tonic::Code::FailedPrecondition && kind == RetrieverKind::Sparse =>
            {
                // The repos in scope carry no sparse documents (indexed with sparse off): an
                // error when sparse was asked for, nothing lost in hybrid.
                if mode == SearchMode::Sparse {
                    return Err(AnswerError::FailedPrecondition(s.message().to_string()));
                }
                out.retrievers.push(contribution(kind, 0, ms, false));
            }
            Err(e) => {
                let timed_out = matches!(e, CallError::Timeout(_));
                if timed_out {
                    metrics.stage(&format!("{name}_timeout"), took.as_secs_f64());
                }
                out.retrievers.push(contribution(kind, 0, ms, timed_out));
                let code = if timed_out { format!("{name}_timeout") } else { format!("{name}_unavailable") };
                out.limits
                    .push(limit(&code, format!("{svc} failed ({e}); results come from the other retrievers only")));
                failures.push((kind, e));
            }
        }
    }
    if out.lists.is_empty() {
        return Err(all_failed(&failures));
    }
    Ok(out)
}

/// The request's error when no retriever answered: DEADLINE_EXCEEDED when every failure was a
/// timeout, else UNAVAILABLE; the message names each service and how it failed.
pub fn all_failed(failures: &[(RetrieverKind, CallError)]) -> AnswerError {
    let all = failures.iter().map(|(k, e)| format!("{}: {e}", k.service())).collect::<Vec<_>>().join("; ");
    if failures.iter().all(|(_, e)| matches!(e, CallError::Timeout(_))) {
        AnswerError::DeadlineExceeded(format!("retrieval did not finish within its budget: {all}"))
    } else {
        AnswerError::Unavailable(all)
    }
}

/// Fuses the lists with `answer.fusion` (a single list keeps its order and scores), then pins
/// the exact-symbol hits first. Returns the fused candidates and the exact-symbol ids.
pub fn fuse_lists(a: &AnswerConfig, lists: &[RetrieverList]) -> (Vec<Fused>, Vec<u64>) {
    let fused: Vec<Fused> = if lists.len() == 1 {
        let RetrieverList { kind, hits, scores, .. } = &lists[0];
        hits.iter()
            .zip(scores)
            .enumerate()
            .map(|(i, ((id, _), s))| {
                let mut ranks = [0u32; 3];
                ranks[kind.slot()] = i as u32 + 1;
                (*id, *s, ranks)
            })
            .collect()
    } else {
        let ranked: Vec<RankedList> =
            lists.iter().map(|l| RankedList { weight: l.weight, hits: &l.hits, scores: &l.scores }).collect();
        let method = Method::from_config(&a.fusion, a.rrf_k).expect("answer.fusion is validated");
        fuse(&ranked, method)
            .into_iter()
            .map(|f| {
                let mut ranks = [0u32; 3];
                for (l, r) in lists.iter().zip(&f.ranks) {
                    ranks[l.kind.slot()] = *r;
                }
                (f.chunk_id, f.score, ranks)
            })
            .collect()
    };
    let exact: Vec<u64> = lists.iter().flat_map(|l| l.exact.iter().copied()).collect();
    (exact_first(fused, &exact), exact)
}

/// A hydration failure as the request's error.
fn hydrate_error(e: CallError) -> AnswerError {
    match e {
        CallError::Timeout(_) => AnswerError::DeadlineExceeded(format!("hydrate-svc: {e}")),
        CallError::Status(s) if s.code() == tonic::Code::InvalidArgument => {
            AnswerError::InvalidArgument(s.message().into())
        }
        CallError::Status(_) => AnswerError::Unavailable(format!("hydrate-svc: {e}")),
    }
}

/// What the rerank stage did.
#[derive(Debug)]
pub struct RerankOutcome {
    /// The pinned hits, then the reranked ones (or the rest in fusion order when reranking
    /// failed); at most `rerank_n` in all.
    pub hits: Vec<Hit>,
    /// The reranker's label when it ordered the hits.
    pub reranker: Option<String>,
    /// How the reranked hits that land within `top_k` moved.
    pub ranks: Vec<RankMove>,
    /// `rerank_timeout` or `rerank_unavailable` when the reranker failed.
    pub limit: Option<Limit>,
}

/// Reranks the first `rerank_n` hits after the `pinned` ones within `deadline`; the pinned hits
/// stay first. A reranker that fails leaves the fusion order and a limit.
pub async fn rerank_stage(
    rr: &dyn Reranker,
    query: &str,
    mut hits: Vec<Hit>,
    pinned: usize,
    rerank_n: u32,
    top_k: u32,
    deadline: Duration,
) -> RerankOutcome {
    let mut out = RerankOutcome { hits: Vec::new(), reranker: None, ranks: Vec::new(), limit: None };
    hits.truncate(rerank_n as usize);
    let rest = hits.split_off(pinned.min(hits.len()));
    let docs: Vec<String> = rest.iter().map(|h| rerank_document(&h.chunk)).collect();
    match rr.rerank(query, &docs, deadline).instrument(tracing::info_span!("rerank")).await {
        Ok(r) => {
            out.reranker = Some(r.label);
            let mut slots: Vec<Option<Hit>> = rest.into_iter().map(Some).collect();
            for (i, score) in r.order {
                if let Some(mut h) = slots[i].take() {
                    let after = hits.len();
                    if after < top_k as usize {
                        out.ranks.push(RankMove {
                            chunk_id: h.chunk.chunk_id,
                            before: (pinned + i) as u32 + 1,
                            after: after as u32 + 1,
                            rerank_score: score,
                        });
                    }
                    h.score = score;
                    hits.push(h);
                }
            }
        }
        Err(e) => {
            hits.extend(rest);
            let code = if matches!(e, RerankError::Timeout(_)) { "rerank_timeout" } else { "rerank_unavailable" };
            out.limit = Some(limit(code, format!("the reranker failed ({e}); hits are in fusion order")));
        }
    }
    out.hits = hits;
    out
}

/// How many of `hits` each retriever contributed.
fn count_in_top_k(retrievers: &mut [RetrieverContribution], hits: &[Hit]) {
    for r in retrievers {
        r.in_top_k = hits
            .iter()
            .filter(|h| match r.retriever.as_str() {
                "dense" => h.dense_rank > 0,
                "sparse" => h.sparse_rank > 0,
                _ => h.lexical_rank > 0,
            })
            .count() as u32;
    }
}

impl Engine {
    /// Connects the clients; with `answer.redis_url` set, session scopes live in Redis (the
    /// first connection must succeed).
    pub async fn new(cfg: &Config) -> anyhow::Result<Arc<Self>> {
        let a = &cfg.answer;
        let metrics = Metrics::new("answer");
        let sessions = if a.redis_url.is_empty() {
            SessionStore::default()
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
        Self::build(cfg, Parts::connect(a)?, sessions, metrics)
    }

    /// The engine over the given retrievers, hydrator, reranker and health check (test doubles,
    /// say), with session scopes in this process; the language model and trace sink follow
    /// `cfg` as in [`Engine::new`].
    pub fn with_parts(cfg: &Config, parts: Parts) -> anyhow::Result<Arc<Self>> {
        Self::build(cfg, parts, SessionStore::default(), Metrics::new("answer"))
    }

    fn build(cfg: &Config, parts: Parts, sessions: SessionStore, metrics: Metrics) -> anyhow::Result<Arc<Self>> {
        let a = &cfg.answer;
        let chat = if a.llm_url.is_empty() {
            None
        } else {
            Some(ChatClient::new(&a.llm_url, &a.llm_model, a.llm_max_tokens)?)
        };
        let traces = a.traces.then(|| {
            let dir =
                if a.trace_dir.as_os_str().is_empty() { cfg.data.root.join("traces") } else { a.trace_dir.clone() };
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
    pub async fn resolve_scope(&self, scope: Option<Scope>, session: Option<&str>) -> Result<Scope, AnswerError> {
        if let Some(s) = scope.filter(|s| *s != Scope::default()) {
            return Ok(s);
        }
        match session {
            Some(id) => Ok(self.sessions.get(id).await?.unwrap_or_default()),
            None => Ok(Scope::default()),
        }
    }

    /// Retrieves, fuses, hydrates and (with `rerank_n` > 0 and a rerank server) reranks the
    /// best `top_k` chunks within `budget`. Budget split: retrieval at most half of it (and
    /// `answer.retriever_timeout_ms`), hydration what it needs of the rest, reranking at most
    /// half of what is left then (and `answer.rerank_timeout_ms`); the remainder is synthesis's.
    pub async fn retrieve(
        &self,
        query: &str,
        scope: &Scope,
        mode: SearchMode,
        top_k: u32,
        budget: Duration,
        rerank_n: u32,
    ) -> Result<Retrieval, AnswerError> {
        let started = Instant::now();
        let a = &self.cfg.answer;
        let rerank = self.parts.reranker.as_deref().filter(|_| rerank_n > 0);
        let plan = route(a, query, mode, top_k, budget, if rerank.is_some() { rerank_n } else { 0 });
        let mut out = Retrieval { reranker: "fusion".into(), route: plan.route.name.into(), ..Default::default() };

        let answered = self.fan_out(query, scope, &plan).await;
        out.stages.push(stage("retrieve", started));
        let Classified { lists, retrievers, limits } = classify(answered, &plan.route, mode, &self.metrics)?;
        out.retrievers = retrievers;
        out.limits = limits;

        let t = Instant::now();
        let (fused, exact) = fuse_lists(a, &lists);
        out.stages.push(stage("fuse", t));

        // Hydrate a few more than asked, in case the scope filter at hydration drops some (all
        // the reranker's candidates when one runs).
        let t = Instant::now();
        let want = if rerank.is_some() { rerank_n.max(top_k) as usize } else { top_k as usize + 8 };
        let left = budget.saturating_sub(started.elapsed()).max(Duration::from_millis(200));
        let mut hits = self.hydrate_stage(&fused, want, scope, left).await?;
        out.stages.push(stage("hydrate", t));

        // Definitions of the symbol the query names stay first: the user asked for them.
        let pinned = hits.iter().take_while(|h| exact.contains(&h.chunk.chunk_id)).count();
        if let Some(rr) = rerank.filter(|_| hits.len() > pinned + 1 && pinned < top_k as usize) {
            let t = Instant::now();
            let left = budget.saturating_sub(started.elapsed()) / 2;
            let deadline = left.min(Duration::from_millis(a.rerank_timeout_ms));
            let r = rerank_stage(rr, query, hits, pinned, rerank_n, top_k, deadline).await;
            hits = r.hits;
            if let Some(label) = r.reranker {
                out.reranker = label;
            }
            out.ranks = r.ranks;
            out.limits.extend(r.limit);
            out.stages.push(stage("rerank", t));
        }
        hits.truncate(top_k as usize);
        count_in_top_k(&mut out.retrievers, &hits);
        out.hits = hits;
        for s in &out.stages {
            self.metrics.stage(&s.stage, s.ms / 1e3);
        }
        Ok(out)
    }

    /// Runs the retrievers the plan names, in parallel, each under the plan's deadline; the
    /// outcomes come in [`RetrieverKind::ALL`] order.
    pub async fn fan_out(&self, query: &str, scope: &Scope, plan: &Plan) -> [Answered; 3] {
        let (dense, lexical, sparse) = tokio::join!(
            self.retrieve_one(RetrieverKind::Dense, query, scope, plan),
            self.retrieve_one(RetrieverKind::Lexical, query, scope, plan),
            self.retrieve_one(RetrieverKind::Sparse, query, scope, plan),
        );
        [dense, lexical, sparse]
    }

    async fn retrieve_one(&self, kind: RetrieverKind, query: &str, scope: &Scope, plan: &Plan) -> Answered {
        if !plan.run[kind.slot()] {
            return None;
        }
        // Only lexical search knows exact symbols.
        let exact_symbol = if kind == RetrieverKind::Lexical { plan.exact_symbol.as_str() } else { "" };
        let f = self.parts.retriever(kind).search(query, exact_symbol, scope, plan.candidates, plan.deadline);
        let span = match kind {
            RetrieverKind::Dense => tracing::info_span!("retrieve.dense"),
            RetrieverKind::Lexical => tracing::info_span!("retrieve.lexical"),
            RetrieverKind::Sparse => tracing::info_span!("retrieve.sparse"),
        };
        Some(timed(f).instrument(span).await)
    }

    /// Hydrates the first `want` fused candidates (at most a ticket's worth) within `deadline`;
    /// the ones hydration returns (in scope) become hits, in fused order, with their ranks.
    pub async fn hydrate_stage(
        &self,
        fused: &[Fused],
        want: usize,
        scope: &Scope,
        deadline: Duration,
    ) -> Result<Vec<Hit>, AnswerError> {
        let take: Vec<&Fused> = fused.iter().take(want.min(codeintel_core::ticket::MAX_TICKET_IDS)).collect();
        let ids: Vec<u64> = take.iter().map(|f| f.0).collect();
        let chunks = self
            .parts
            .hydrator
            .hydrate(&ids, scope, deadline)
            .instrument(tracing::info_span!("hydrate"))
            .await
            .map_err(hydrate_error)?;
        Ok(take
            .into_iter()
            .filter_map(|(id, score, ranks)| {
                chunks.get(id).map(|c| Hit {
                    chunk: c.clone(),
                    score: *score,
                    dense_rank: ranks[0],
                    lexical_rank: ranks[1],
                    sparse_rank: ranks[2],
                })
            })
            .collect())
    }

    pub async fn search(
        &self,
        req: SearchRequest,
        session: Option<&str>,
    ) -> Result<(Vec<SearchHit>, Vec<Limit>), AnswerError> {
        let top_k = req.top_k;
        validate_query(&req.query, top_k, req.scope.as_ref())?;
        let scope = self.resolve_scope(req.scope, session).await?;
        let mode = SearchMode::try_from(req.mode).map_err(|_| {
            AnswerError::InvalidArgument(format!("unknown mode {}; use HYBRID, DENSE, LEXICAL or SPARSE", req.mode))
        })?;
        let budget = Duration::from_millis(self.cfg.answer.time_budget_ms);
        let rerank_n = if req.rerank {
            if self.parts.reranker.is_none() {
                return Err(AnswerError::InvalidArgument(
                    "rerank was requested but no rerank server is configured (set answer.rerank_url)".into(),
                ));
            }
            self.cfg.answer.rerank_top_n
        } else {
            0
        };
        let r = self.retrieve(&req.query, &scope, mode, top_k, budget, rerank_n).await?;
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
    ) -> Result<mpsc::Receiver<Result<AnswerEvent, tonic::Status>>, AnswerError> {
        let top_k = req.top_k;
        validate_query(&req.query, top_k, req.scope.as_ref())?;
        if req.rerank_top_n > MAX_TOP_K {
            return Err(AnswerError::InvalidArgument(format!(
                "rerank_top_n must be at most {MAX_TOP_K}, got {}",
                req.rerank_top_n
            )));
        }
        if req.time_budget_ms > 600_000 {
            return Err(AnswerError::InvalidArgument("time_budget_ms must be at most 600000".into()));
        }
        let scope = self.resolve_scope(req.scope.clone(), session).await?;
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

    async fn run_answer(
        &self,
        req: AnswerRequest,
        scope: Scope,
        top_k: u32,
        tx: mpsc::Sender<Result<AnswerEvent, tonic::Status>>,
    ) {
        let started = Instant::now();
        let send = |e: Event| {
            let tx = tx.clone();
            async move { tx.send(Ok(AnswerEvent { event: Some(e) })).await.is_ok() }
        };
        let budget_ms =
            if req.time_budget_ms == 0 { self.cfg.answer.time_budget_ms } else { req.time_budget_ms as u64 };
        let budget = Duration::from_millis(budget_ms);
        let rerank_n = if req.rerank_top_n == 0 { self.cfg.answer.rerank_top_n } else { req.rerank_top_n };
        let r = match self.retrieve(&req.query, &scope, SearchMode::Hybrid, top_k, budget, rerank_n).await {
            Ok(r) => r,
            Err(e) => {
                // Nothing to cite: end the stream with the precise status (UNAVAILABLE naming the
                // services, DEADLINE_EXCEEDED, ...).
                let _ = tx.send(Err(e.into())).await;
                return;
            }
        };
        let citations: Vec<Citation> = r
            .hits
            .iter()
            .enumerate()
            .map(|(i, h)| Citation {
                index: i as u32 + 1,
                repo: h.chunk.repo.clone(),
                path: h.chunk.path.clone(),
                start_line: h.chunk.start_line,
                end_line: h.chunk.end_line,
                score: h.score,
                symbol: h.chunk.symbol.clone(),
                language: h.chunk.language.clone(),
                chunk_id: h.chunk.chunk_id,
            })
            .collect();
        if !send(Event::Citations(Citations { citations })).await {
            return;
        }
        let mut limits = r.limits;
        let mut stages = r.stages;
        let sources: Vec<HydratedChunk> = r.hits.iter().map(|h| h.chunk.clone()).collect();
        let t = Instant::now();
        let mut ttft = 0.0;
        let mut tokens = 0u32;
        let mut synthesizer = "extractive".to_string();
        let mut streamed = false;
        let mut usage = None;
        let mut first_token_at: Option<Instant> = None;
        let mut last_token_at: Option<Instant> = None;
        if sources.is_empty() {
            limits.push(limit("no_results", "nothing in scope matched the question; widen the scope or rephrase"));
        } else if let Some(chat) = &self.chat {
            // Synthesis gets what is left of the budget; a model that misses it leaves the
            // retrieved code as the answer.
            let deadline = tokio::time::Instant::from_std(started + budget);
            let prompt = build_prompt(&req.query, &sources, self.cfg.answer.prompt_chars);
            match tokio::time::timeout_at(deadline, chat.stream(prompt)).await {
                Ok(Ok(stream)) => {
                    synthesizer = chat.model.clone();
                    let mut stream = std::pin::pin!(stream);
                    loop {
                        let item = match tokio::time::timeout_at(deadline, stream.next()).await {
                            Ok(Some(item)) => item,
                            Ok(None) => break,
                            Err(_) => {
                                let (code, what) = if streamed {
                                    ("synthesis_truncated", "stopped streaming at the time budget")
                                } else {
                                    ("synthesis_timeout", "sent no token within the time budget; showing the retrieved code instead")
                                };
                                limits.push(limit(code, format!("the language model {what} ({budget_ms} ms)")));
                                break;
                            }
                        };
                        match item {
                            Ok(ChatEvent::Token(text)) => {
                                if tokens == 0 {
                                    ttft = started.elapsed().as_secs_f64() * 1e3;
                                    first_token_at = Some(Instant::now());
                                }
                                last_token_at = Some(Instant::now());
                                tokens += 1;
                                streamed = true;
                                if !send(Event::Token(Token { text })).await {
                                    return;
                                }
                            }
                            Ok(ChatEvent::Usage(u)) => usage = Some(u),
                            Err(e) => {
                                limits.push(limit(
                                    "synthesis_interrupted",
                                    format!("the language model stream failed: {e}"),
                                ));
                                break;
                            }
                        }
                    }
                }
                Ok(Err(e)) => limits.push(limit(
                    "synthesis_failed",
                    format!("the language model could not be reached ({e}); showing the retrieved code instead"),
                )),
                Err(_) => limits.push(limit(
                    "synthesis_timeout",
                    format!(
                        "the language model did not answer within the time budget ({budget_ms} ms); showing the retrieved code instead"
                    ),
                )),
            }
        } else {
            limits.push(limit(
                "extractive",
                "no language model is configured (set CODEINTEL__ANSWER__LLM_URL to an OpenAI-compatible server); the answer lists the retrieved code",
            ));
        }
        if !streamed && !sources.is_empty() {
            synthesizer = "extractive".into();
            for piece in extractive_answer(&req.query, &sources, 12) {
                if tokens == 0 {
                    ttft = started.elapsed().as_secs_f64() * 1e3;
                }
                tokens += 1;
                if !send(Event::Token(Token { text: piece })).await {
                    return;
                }
            }
        }
        stages.push(stage("synthesize", t));
        let cited: Vec<u64> = sources.iter().map(|c| c.chunk_id).collect();
        let kept_limits = limits.clone();
        if !limits.is_empty() && !send(Event::Limits(Limits { limits })).await {
            return;
        }
        let trace = Trace {
            stages,
            total_ms: started.elapsed().as_secs_f64() * 1e3,
            retrievers: r.retrievers,
            ttft_ms: ttft,
            tokens,
            synthesizer,
            route: r.route,
            reranker: r.reranker,
            ranks: r.ranks,
            tokens_in: usage.map_or(0, |u: crate::synth::Usage| u.prompt_tokens),
            tokens_out: usage.map_or(if streamed { tokens } else { 0 }, |u| u.completion_tokens),
            tokens_per_second: match (first_token_at, last_token_at) {
                (Some(a), Some(b)) if b > a => {
                    usage.map_or(tokens, |u| u.completion_tokens) as f64 / (b - a).as_secs_f64()
                }
                _ => 0.0,
            },
        };
        self.metrics.stage("answer_total", trace.total_ms / 1e3);
        if let Some(sink) = &self.traces {
            sink.record(crate::traces::TraceRow {
                unix_ms: codeintel_core::now_unix_ms(),
                query: req.query.clone(),
                top_k,
                trace: trace.clone(),
                limits: kept_limits,
                cited,
            });
        }
        if send(Event::Trace(trace)).await {
            let _ = send(Event::Done(Done {})).await;
        }
    }
}

/// What the reranker reads of a chunk: where it is and what it defines, then the code.
fn rerank_document(c: &HydratedChunk) -> String {
    let mut s = format!("{}:{}-{}", c.path, c.start_line, c.end_line);
    if !c.symbol.is_empty() {
        s.push_str(&format!(" {} {}", c.kind, c.symbol));
    }
    s.push('\n');
    s.extend(c.text.chars().take(4000));
    s
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
    fn exact_symbol_hits_lead_in_their_own_order() {
        let fused = vec![(1, 0.5, [1, 0, 0]), (2, 0.4, [2, 3, 0]), (3, 0.3, [0, 1, 0]), (4, 0.2, [3, 2, 0])];
        let out: Vec<u64> = exact_first(fused.clone(), &[3, 2]).into_iter().map(|f| f.0).collect();
        assert_eq!(out, vec![3, 2, 1, 4]);
        assert_eq!(exact_first(fused.clone(), &[]), fused);
    }
}
