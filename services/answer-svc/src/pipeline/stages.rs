//! The stages of retrieval: routing, fan-out, failure classification, fusion, hydration and
//! rerank pinning.

use std::time::{Duration, Instant};

use codeintel_config::AnswerConfig;
use codeintel_core::proto::v1::{Limit, RankMove, RetrieverContribution, Scope, ScoredChunk, SearchMode, StageTiming};
use codeintel_core::scope::{self, ScopeFilter};
use codeintel_server::Metrics;
use tracing::Instrument;

use crate::error::AnswerError;
use crate::fusion::{fuse, Method, RankedList};
use crate::rerank::RerankError;
use crate::retrievers::{CallError, Reranker, RetrieverKind};
use codeintel_core::query::{self, QueryKind};
use codeintel_core::role;
use codeintel_core::subject::{self, Subject};

use super::*;

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

/// Definitions before tests, prose and top-level lines for a natural-language query: each hit
/// that is a test, prose or a top-level window ([`role::role`]) and of a role the query does not
/// ask for ([`role::asked_for`]; a module doc is docs) moves `places` places down, below the
/// definitions it then ties with; the rest keep their order. Hits before `keep` (pinned exact
/// definitions) do not move. `places` = 0 changes nothing.
pub fn code_first(hits: Vec<Hit>, keep: usize, places: usize, query: &str) -> Vec<Hit> {
    let (tests_asked, prose_asked) = role::asked_for(query);
    move_down(hits, keep, places, |h| match role::role(&h.chunk) {
        role::Role::Code => false,
        role::Role::Test => !tests_asked,
        role::Role::Prose | role::Role::TopLevel => !prose_asked,
    })
}

/// Each hit from `keep` on for which `later` holds moves `places` places down, below the hits
/// it then ties with; the others keep their order. `places` = 0 changes nothing.
fn move_down(hits: Vec<Hit>, keep: usize, places: usize, later: impl Fn(&Hit) -> bool) -> Vec<Hit> {
    if places == 0 || hits.len() <= keep + 1 {
        return hits;
    }
    let mut ordered: Vec<(usize, bool, Hit)> = hits
        .into_iter()
        .enumerate()
        .map(|(i, h)| {
            let later = i >= keep && later(&h);
            (if later { i + places } else { i }, later, h)
        })
        .collect();
    ordered.sort_by_key(|(at, later, _)| (*at, *later));
    ordered.into_iter().map(|(_, _, h)| h).collect()
}

/// Code that does something before the declarations of its data for a question about
/// behaviour ([`role::asks_about_behaviour`]): each hit that declares data or an interface
/// ([`role::is_declaration`]: a struct, an enum, a trait, a constant...) moves `places` places
/// down, below the definitions it then ties with. Hits before `keep` (pinned exact definitions)
/// do not move; other queries, and `places` = 0, keep the order.
pub fn behaviour_first(hits: Vec<Hit>, keep: usize, places: usize, query: &str) -> Vec<Hit> {
    if !role::asks_about_behaviour(query) {
        return hits;
    }
    move_down(hits, keep, places, |h| role::is_declaration(&h.chunk))
}

/// The hits of a question's subject search ([`subject::link`]) first, then those of the whole
/// scope it did not find, in their order.
pub fn subject_first(first: Vec<Hit>, rest: Vec<Hit>) -> Vec<Hit> {
    let seen: std::collections::HashSet<u64> = first.iter().map(|h| h.chunk.chunk_id).collect();
    let mut out = first;
    out.extend(rest.into_iter().filter(|h| !seen.contains(&h.chunk.chunk_id)));
    out
}

pub(super) async fn timed<T>(f: impl std::future::Future<Output = T>) -> (T, Duration) {
    let t = Instant::now();
    let r = f.await;
    (r, t.elapsed())
}

pub(super) fn limit(code: &str, message: impl Into<String>) -> Limit {
    Limit { code: code.into(), message: message.into() }
}

pub(super) fn stage(name: &str, since: Instant) -> StageTiming {
    StageTiming { stage: name.into(), ms: since.elapsed().as_secs_f64() * 1e3 }
}

/// Validates the parts every request shares; returns the compiled scope filter.
pub fn validate_query(query: &str, top_k: u32, scope: Option<&Scope>) -> Result<ScopeFilter, AnswerError> {
    scope::validate_query_text(query, "ask a question or name a symbol").map_err(AnswerError::InvalidArgument)?;
    scope::validate_top_k(top_k).map_err(AnswerError::InvalidArgument)?;
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
    let route = if exact_symbol.is_empty() {
        Route::natural_language(a, query::is_question(query))
    } else {
        Route::identifier(a)
    };
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

pub(super) fn contribution(kind: RetrieverKind, hits: usize, ms: f64, timed_out: bool) -> RetrieverContribution {
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
        AnswerError::Unavailable(format!("no retriever answered: {all}"))
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
        let method = Method::from_config(&a.fusion, a.rrf_k, a.dbsf_depth).expect("answer.fusion is validated");
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
pub(super) fn hydrate_error(e: CallError) -> AnswerError {
    match e {
        CallError::Timeout(_) => AnswerError::DeadlineExceeded(format!("hydrate-svc: {e}")),
        CallError::Status(s) if s.code() == tonic::Code::InvalidArgument => {
            AnswerError::InvalidArgument(s.message().into())
        }
        CallError::Status(_) => AnswerError::Unavailable(format!(
            "the retrievers answered but hydrate-svc, which returns the chunks' text, did not: {e}"
        )),
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
    let docs: Vec<String> = rest.iter().map(|h| h.chunk.rerank_text()).collect();
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
pub(super) fn count_in_top_k(retrievers: &mut [RetrieverContribution], hits: &[Hit]) {
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
        // Natural-language queries hydrate as deep as tests, prose and top-level windows may be
        // moved down, so that the definitions they make room for are there.
        let natural = plan.route.name == "natural_language";
        let demote = if natural { a.non_code_demotion as usize } else { 0 };
        let want = if rerank.is_some() { rerank_n.max(top_k) as usize } else { top_k as usize + 8.max(demote) };
        let left = budget.saturating_sub(started.elapsed()).max(Duration::from_millis(200));
        let mut hits = self.hydrate_stage(&fused, want, scope, left).await?;
        out.stages.push(stage("hydrate", t));

        // A question that names a folder of the repo ("the answer service") is asked again of
        // that folder alone, without those words; what it finds comes first.
        if natural && a.subject_scope && scope.include_globs.is_empty() && query::is_question(query) {
            let named = subject::link(query, hits.iter().map(|h| (h.chunk.repo.as_str(), h.chunk.path.as_str())));
            if let Some(s) = named {
                let t = Instant::now();
                // Within what the first search left of the budget: half for its retrievers,
                // the rest for hydration and any rerank after it.
                let left = budget.saturating_sub(started.elapsed());
                let within = Plan { deadline: plan.deadline.min(left / 2), ..plan.clone() };
                let hydration = (left / 2).max(Duration::from_millis(200));
                match self.subject_pass(&s, scope, &within, mode, want, hydration).await {
                    Ok(first) => hits = subject_first(first, hits),
                    Err(e) => out.limits.push(limit(
                        "subject_unavailable",
                        format!("the search within {} failed ({e}); hits come from the whole scope", s.folder),
                    )),
                }
                out.stages.push(stage("subject", t));
            }
        }

        // Definitions of the symbol the query names stay first: the user asked for them.
        let pinned = hits.iter().take_while(|h| exact.contains(&h.chunk.chunk_id)).count();
        hits = code_first(hits, pinned, demote, query);
        if natural {
            hits = behaviour_first(hits, pinned, a.declaration_demotion as usize, query);
        }
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

    /// The search a question's subject asks for: its query (the subject's words gone) within
    /// the subject's folder of its repo, fused and hydrated like the first.
    async fn subject_pass(
        &self,
        s: &Subject,
        scope: &Scope,
        plan: &Plan,
        mode: SearchMode,
        want: usize,
        deadline: Duration,
    ) -> Result<Vec<Hit>, AnswerError> {
        let narrowed = Scope { repos: vec![s.repo.clone()], include_globs: vec![s.glob()], ..scope.clone() };
        tracing::debug!(folder = %s.folder, query = %s.query, "question linked to a folder");
        let answered = self.fan_out(&s.query, &narrowed, plan).await;
        let lists = classify(answered, &plan.route, mode, &self.metrics)?.lists;
        let (fused, _) = fuse_lists(&self.cfg.answer, &lists);
        self.hydrate_stage(&fused, want, &narrowed, deadline).await
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
}
