//! The orchestrator's degradation paths over in-process doubles of its own traits
//! ([`crate::retrievers`]): each test asserts what the caller of `retrieve` / `search` sees.
//! The end-to-end tests against the real services stay in `tests/e2e`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use codeintel_config::Config;
use codeintel_core::proto::v1::{Limit, RetrieverContribution, Scope, ScoredChunk, SearchMode, SearchRequest};
use parking_lot::Mutex;
use tonic::Code;

use crate::error::AnswerError;
use crate::fusion::{fuse, Method, RankedList};
use crate::pipeline::{Engine, Retrieval};
use crate::rerank::RerankError;
use crate::retrievers::{CallError, Chunk, HealthCheck, Hydrator, Parts, Ranking, Reranker, Retriever, RetrieverKind};

const NL: &str = "how are sessions stored";
const IDENT: &str = "struct SessionStore";
const SECOND: Duration = Duration::from_secs(1);

/// What a fake retriever answers.
#[derive(Clone)]
enum Reply {
    Hits(Vec<ScoredChunk>),
    /// `CallError::Timeout` with the deadline it was given, as the real clients report it.
    Timeout,
    Fail(Code, &'static str),
    /// `within` for a scope with include globs (a question's subject search), else `whole`.
    Scoped {
        whole: Vec<ScoredChunk>,
        within: Vec<ScoredChunk>,
    },
}

#[derive(Debug, Clone, PartialEq)]
struct Call {
    query: String,
    repos: Vec<String>,
    include: Vec<String>,
    exact_symbol: String,
    k: u32,
    deadline: Duration,
}

struct FakeRetriever {
    reply: Reply,
    calls: Mutex<Vec<Call>>,
}

impl FakeRetriever {
    fn new(reply: Reply) -> Arc<Self> {
        Arc::new(Self { reply, calls: Mutex::new(Vec::new()) })
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().clone()
    }
}

#[tonic::async_trait]
impl Retriever for FakeRetriever {
    async fn search(
        &self,
        query: &str,
        exact_symbol: &str,
        scope: &Scope,
        k: u32,
        deadline: Duration,
    ) -> Result<Vec<ScoredChunk>, CallError> {
        self.calls.lock().push(Call {
            query: query.into(),
            repos: scope.repos.clone(),
            include: scope.include_globs.clone(),
            exact_symbol: exact_symbol.into(),
            k,
            deadline,
        });
        match &self.reply {
            Reply::Hits(h) => Ok(h.clone()),
            Reply::Scoped { whole, within } => Ok(if scope.include_globs.is_empty() { whole } else { within }.clone()),
            Reply::Timeout => Err(CallError::Timeout(deadline)),
            Reply::Fail(code, message) => Err(CallError::Status(tonic::Status::new(*code, *message))),
        }
    }
}

/// A line window of `src/f{id}.rs`; ids 600-699 are functions of `services/answer-svc/`, 700-799
/// structs (`S{id}`), 800-899 functions (`f{id}`) and 900-999 prose (`docs/d{id}.md`), for the
/// tests of roles and subjects.
fn chunk(id: u64) -> Chunk {
    let (path, language, symbol, kind) = match id {
        600..=699 => (format!("services/answer-svc/src/f{id}.rs"), "rust", format!("f{id}"), "function"),
        700..=799 => (format!("src/f{id}.rs"), "rust", format!("S{id}"), "struct"),
        800..=899 => (format!("src/f{id}.rs"), "rust", format!("f{id}"), "function"),
        900..=999 => (format!("docs/d{id}.md"), "text", String::new(), ""),
        _ => (format!("src/f{id}.rs"), "rust", String::new(), ""),
    };
    Chunk {
        chunk_id: id,
        repo: "r".into(),
        path,
        language: language.into(),
        start_line: 1,
        end_line: 2,
        symbol,
        kind: kind.into(),
        text: format!("chunk {id}"),
        ..Default::default()
    }
}

/// Returns every asked chunk, or fails.
struct FakeHydrator {
    fail: Option<CallError>,
    calls: Mutex<Vec<(Vec<u64>, Duration)>>,
}

#[tonic::async_trait]
impl Hydrator for FakeHydrator {
    async fn hydrate(&self, ids: &[u64], _scope: &Scope, deadline: Duration) -> Result<HashMap<u64, Chunk>, CallError> {
        self.calls.lock().push((ids.to_vec(), deadline));
        match &self.fail {
            Some(e) => Err(e.clone()),
            None => Ok(ids.iter().map(|&id| (id, chunk(id))).collect()),
        }
    }
}

enum RerankReply {
    /// The documents in reverse order, scored n-1 .. 0.
    Reverse,
    /// `RerankError::Timeout` with the deadline it was given.
    Timeout,
    Fail(&'static str),
}

struct FakeReranker {
    reply: RerankReply,
    calls: Mutex<Vec<(Vec<String>, Duration)>>,
}

#[tonic::async_trait]
impl Reranker for FakeReranker {
    async fn rerank(&self, _query: &str, documents: &[String], deadline: Duration) -> Result<Ranking, RerankError> {
        self.calls.lock().push((documents.to_vec(), deadline));
        match self.reply {
            RerankReply::Reverse => Ok(Ranking {
                order: (0..documents.len()).rev().map(|i| (i, i as f32)).collect(),
                label: "/rerank fake-model".into(),
            }),
            RerankReply::Timeout => Err(RerankError::Timeout(deadline.as_millis())),
            RerankReply::Fail(m) => Err(RerankError::Failed(m.into())),
        }
    }
}

struct Healthy;

#[tonic::async_trait]
impl HealthCheck for Healthy {
    async fn unhealthy(&self, _deadline: Duration) -> Vec<(&'static str, String)> {
        Vec::new()
    }
}

/// Reports the named backends as unreachable.
struct Unhealthy(Vec<&'static str>);

#[tonic::async_trait]
impl HealthCheck for Unhealthy {
    async fn unhealthy(&self, _deadline: Duration) -> Vec<(&'static str, String)> {
        self.0.iter().map(|n| (*n, format!("{n} unreachable: connection refused"))).collect()
    }
}

#[tokio::test]
async fn readiness_is_down_until_a_check_and_follows_the_one_rule() {
    let f = Fakes::new(hits(&[]), hits(&[]), hits(&[]));
    let engine_with = |down: Vec<&'static str>| {
        let parts = Parts {
            dense: f.dense.clone(),
            lexical: f.lexical.clone(),
            sparse: f.sparse.clone(),
            hydrator: f.hydrator.clone(),
            reranker: None,
            health: Arc::new(Unhealthy(down)),
        };
        Engine::with_parts(&cfg(), parts).unwrap()
    };
    let status = |e: &Engine| e.readiness.read().status;
    let e = engine_with(vec![]);
    assert_eq!(status(&e), "down", "no backend has answered yet");
    e.check_backends().await;
    assert_eq!(status(&e), "ready");
    for (down, want) in [
        (vec!["vector-svc"], "degraded"),
        (vec!["lexical-svc"], "degraded"),
        (vec!["vector-svc", "lexical-svc"], "down"),
        (vec!["hydrate-svc"], "down"),
    ] {
        let e = engine_with(down.clone());
        e.check_backends().await;
        assert_eq!(status(&e), want, "{down:?}");
        let reasons = e.readiness.read().reasons.clone();
        assert!(down.iter().all(|d| reasons.iter().any(|r| r.contains(d))), "{reasons:?}");
    }
}

/// The doubles behind one engine.
struct Fakes {
    dense: Arc<FakeRetriever>,
    lexical: Arc<FakeRetriever>,
    sparse: Arc<FakeRetriever>,
    hydrator: Arc<FakeHydrator>,
    reranker: Option<Arc<FakeReranker>>,
}

impl Fakes {
    fn new(dense: Reply, lexical: Reply, sparse: Reply) -> Self {
        Self {
            dense: FakeRetriever::new(dense),
            lexical: FakeRetriever::new(lexical),
            sparse: FakeRetriever::new(sparse),
            hydrator: Arc::new(FakeHydrator { fail: None, calls: Mutex::new(Vec::new()) }),
            reranker: None,
        }
    }

    fn hydration_fails(mut self, e: CallError) -> Self {
        self.hydrator = Arc::new(FakeHydrator { fail: Some(e), calls: Mutex::new(Vec::new()) });
        self
    }

    fn reranker(mut self, reply: RerankReply) -> Self {
        self.reranker = Some(Arc::new(FakeReranker { reply, calls: Mutex::new(Vec::new()) }));
        self
    }

    fn engine(&self, cfg: &Config) -> Arc<Engine> {
        let parts = Parts {
            dense: self.dense.clone(),
            lexical: self.lexical.clone(),
            sparse: self.sparse.clone(),
            hydrator: self.hydrator.clone(),
            reranker: self.reranker.clone().map(|r| r as Arc<dyn Reranker>),
            health: Arc::new(Healthy),
        };
        Engine::with_parts(cfg, parts).unwrap()
    }

    fn rerank_calls(&self) -> Vec<(Vec<String>, Duration)> {
        self.reranker.as_ref().unwrap().calls.lock().clone()
    }
}

fn cfg() -> Config {
    let mut c = Config::default();
    c.answer.traces = false;
    c
}

fn sc(id: u64, score: f32) -> ScoredChunk {
    ScoredChunk { chunk_id: id, repo: "r".into(), score, exact: false }
}

fn hits(v: &[(u64, f32)]) -> Reply {
    Reply::Hits(v.iter().map(|&(id, s)| sc(id, s)).collect())
}

async fn retrieve(e: &Engine, query: &str, mode: SearchMode, rerank_n: u32) -> Result<Retrieval, AnswerError> {
    e.retrieve(query, &Scope::default(), mode, 5, Duration::from_millis(2000), rerank_n).await
}

fn ids(r: &Retrieval) -> Vec<u64> {
    r.hits.iter().map(|h| h.chunk.chunk_id).collect()
}

fn stages(r: &Retrieval) -> Vec<&str> {
    r.stages.iter().map(|s| s.stage.as_str()).collect()
}

/// The contributions without their (measured) milliseconds.
fn contributions(r: &Retrieval) -> Vec<RetrieverContribution> {
    r.retrievers.iter().map(|c| RetrieverContribution { ms: 0.0, ..c.clone() }).collect()
}

fn contribution(name: &str, hits: u32, in_top_k: u32, timed_out: bool) -> RetrieverContribution {
    RetrieverContribution { retriever: name.into(), hits, in_top_k, ms: 0.0, timed_out }
}

fn limit(code: &str, message: &str) -> Limit {
    Limit { code: code.into(), message: message.into() }
}

/// One retriever's list as `RankedList` borrows it: weight, (id, repo) hits, scores.
type OwnedList = (f32, Vec<(u64, String)>, Vec<f32>);

/// What `fusion::fuse` makes of the lists (weight, [(id, score)]) with `cfg`'s method.
fn expected_fusion(c: &Config, lists: &[(f32, &[(u64, f32)])]) -> Vec<crate::fusion::Fused> {
    let owned: Vec<OwnedList> = lists
        .iter()
        .map(|(w, l)| (*w, l.iter().map(|(id, _)| (*id, "r".to_string())).collect(), l.iter().map(|p| p.1).collect()))
        .collect();
    let ranked: Vec<RankedList> = owned.iter().map(|(w, h, s)| RankedList { weight: *w, hits: h, scores: s }).collect();
    fuse(&ranked, Method::from_config(&c.answer.fusion, c.answer.rrf_k, c.answer.dbsf_depth).unwrap())
}

const LEX: &[(u64, f32)] = &[(1, 9.0), (2, 5.0), (3, 1.0)];
const SPARSE: &[(u64, f32)] = &[(3, 0.8), (4, 0.2)];

#[tokio::test]
async fn dense_timeout_answers_from_lexical_and_sparse_with_a_dense_timeout_limit() {
    let f = Fakes::new(Reply::Timeout, hits(LEX), hits(SPARSE));
    let c = cfg();
    let r = retrieve(&f.engine(&c), NL, SearchMode::Hybrid, 0).await.unwrap();
    let want = expected_fusion(&c, &[(1.0, LEX), (0.5, SPARSE)]);
    assert_eq!(ids(&r), want.iter().map(|f| f.chunk_id).collect::<Vec<_>>());
    assert!(r.hits.iter().all(|h| h.dense_rank == 0), "{:?}", r.hits);
    assert_eq!(
        r.limits,
        vec![limit(
            "dense_timeout",
            "vector-svc failed (no answer within 1000 ms); results come from the other retrievers only"
        )]
    );
    assert_eq!(
        contributions(&r),
        vec![
            contribution("dense", 0, 0, true),
            contribution("lexical", 3, 3, false),
            contribution("sparse", 2, 2, false)
        ]
    );
    assert_eq!(stages(&r), vec!["retrieve", "fuse", "hydrate"]);
    assert_eq!((r.route.as_str(), r.reranker.as_str()), ("natural_language", "fusion"));
}

#[tokio::test]
async fn dense_unavailable_is_a_dense_unavailable_limit() {
    let f = Fakes::new(Reply::Fail(Code::Unavailable, "connection refused"), hits(LEX), hits(SPARSE));
    let r = retrieve(&f.engine(&cfg()), NL, SearchMode::Hybrid, 0).await.unwrap();
    assert_eq!(ids(&r).len(), 4);
    assert_eq!(
        r.limits,
        vec![limit(
            "dense_unavailable",
            "vector-svc failed (Unavailable: connection refused); results come from the other retrievers only"
        )]
    );
    assert_eq!(contributions(&r)[0], contribution("dense", 0, 0, false));
}

#[tokio::test]
async fn every_retriever_timing_out_is_deadline_exceeded() {
    let f = Fakes::new(Reply::Timeout, Reply::Timeout, Reply::Timeout);
    let e = retrieve(&f.engine(&cfg()), NL, SearchMode::Hybrid, 0).await.unwrap_err();
    assert!(matches!(e, AnswerError::DeadlineExceeded(_)), "{e:?}");
    let s = tonic::Status::from(e);
    assert_eq!(s.code(), Code::DeadlineExceeded);
    assert_eq!(
        s.message(),
        "retrieval did not finish within its budget: vector-svc: no answer within 1000 ms; \
         lexical-svc: no answer within 1000 ms; lexical-svc (sparse): no answer within 1000 ms"
    );
    assert!(f.hydrator.calls.lock().is_empty(), "nothing to hydrate");
}

#[tokio::test]
async fn every_retriever_failing_not_all_by_timeout_is_unavailable() {
    let f = Fakes::new(Reply::Timeout, Reply::Fail(Code::Unavailable, "down"), Reply::Timeout);
    let e = retrieve(&f.engine(&cfg()), NL, SearchMode::Hybrid, 0).await.unwrap_err();
    assert!(matches!(e, AnswerError::Unavailable(_)), "{e:?}");
    let s = tonic::Status::from(e);
    assert_eq!(s.code(), Code::Unavailable);
    assert_eq!(
        s.message(),
        "no retriever answered: vector-svc: no answer within 1000 ms; lexical-svc: Unavailable: down; \
         lexical-svc (sparse): no answer within 1000 ms"
    );
}

/// The decision reads the error's kind, not its words: a status that merely mentions a timeout
/// is not one.
#[tokio::test]
async fn a_status_that_mentions_a_timeout_is_not_a_timeout() {
    let f = Fakes::new(Reply::Timeout, Reply::Fail(Code::Unavailable, "proxy: no answer within 5 ms"), Reply::Timeout);
    let e = retrieve(&f.engine(&cfg()), NL, SearchMode::Hybrid, 0).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
}

#[tokio::test]
async fn invalid_argument_from_a_retriever_is_the_requests_error() {
    let f = Fakes::new(hits(LEX), Reply::Fail(Code::InvalidArgument, "include glob `a/[` is invalid"), hits(SPARSE));
    let e = retrieve(&f.engine(&cfg()), NL, SearchMode::Hybrid, 0).await.unwrap_err();
    assert!(matches!(&e, AnswerError::InvalidArgument(m) if m == "include glob `a/[` is invalid"), "{e:?}");
    let s = tonic::Status::from(e);
    assert_eq!((s.code(), s.message()), (Code::InvalidArgument, "include glob `a/[` is invalid"));
}

const NO_SPARSE: &str = "the repos in scope have no sparse documents";

#[tokio::test]
async fn sparse_without_documents_is_zero_hits_and_no_limit_in_hybrid() {
    let f = Fakes::new(hits(&[(5, 0.9), (6, 0.5)]), hits(LEX), Reply::Fail(Code::FailedPrecondition, NO_SPARSE));
    let r = retrieve(&f.engine(&cfg()), NL, SearchMode::Hybrid, 0).await.unwrap();
    assert!(r.limits.is_empty(), "{:?}", r.limits);
    assert_eq!(ids(&r).len(), 5);
    assert_eq!(
        contributions(&r),
        vec![
            contribution("dense", 2, 2, false),
            contribution("lexical", 3, 3, false),
            contribution("sparse", 0, 0, false)
        ]
    );
}

#[tokio::test]
async fn sparse_without_documents_is_failed_precondition_in_sparse_mode() {
    let f = Fakes::new(hits(LEX), hits(LEX), Reply::Fail(Code::FailedPrecondition, NO_SPARSE));
    let engine = f.engine(&cfg());
    let e = retrieve(&engine, NL, SearchMode::Sparse, 0).await.unwrap_err();
    assert!(matches!(&e, AnswerError::FailedPrecondition(m) if m == NO_SPARSE), "{e:?}");
    assert!(f.dense.calls().is_empty() && f.lexical.calls().is_empty(), "SPARSE mode asks sparse only");
    // Through `search`, as a client sees it.
    let req = SearchRequest { query: NL.into(), top_k: 5, mode: SearchMode::Sparse as i32, ..Default::default() };
    let s = tonic::Status::from(engine.search(req, None, None).await.unwrap_err());
    assert_eq!((s.code(), s.message()), (Code::FailedPrecondition, NO_SPARSE));
}

#[tokio::test]
async fn hydration_timeout_is_deadline_exceeded() {
    let f =
        Fakes::new(hits(LEX), hits(LEX), hits(SPARSE)).hydration_fails(CallError::Timeout(Duration::from_millis(777)));
    let e = retrieve(&f.engine(&cfg()), NL, SearchMode::Hybrid, 0).await.unwrap_err();
    assert!(matches!(e, AnswerError::DeadlineExceeded(_)), "{e:?}");
    let s = tonic::Status::from(e);
    assert_eq!((s.code(), s.message()), (Code::DeadlineExceeded, "hydrate-svc: no answer within 777 ms"));
    // Hydration gets what is left of the budget.
    let (_, deadline) = f.hydrator.calls.lock()[0].clone();
    assert!(deadline > SECOND && deadline <= Duration::from_millis(2000), "{deadline:?}");
}

#[tokio::test]
async fn hydration_unavailable_is_unavailable() {
    let f = Fakes::new(hits(LEX), hits(LEX), hits(SPARSE))
        .hydration_fails(CallError::Status(tonic::Status::unavailable("flight down")));
    let e = retrieve(&f.engine(&cfg()), NL, SearchMode::Hybrid, 0).await.unwrap_err();
    assert!(matches!(e, AnswerError::Unavailable(_)), "{e:?}");
    let s = tonic::Status::from(e);
    assert_eq!(
        (s.code(), s.message()),
        (Code::Unavailable, "the retrievers answered but hydrate-svc, which returns the chunks' text, did not: Unavailable: flight down")
    );
}

#[tokio::test]
async fn fused_order_and_ranks_are_those_of_fusion_fuse() {
    const DENSE: &[(u64, f32)] = &[(10, 0.9), (11, 0.8), (12, 0.1)];
    const LEXICAL: &[(u64, f32)] = &[(12, 9.0), (13, 5.0), (10, 1.0)];
    for method in ["rrf", "dbsf"] {
        let mut c = cfg();
        c.answer.fusion = method.into();
        c.answer.sparse_weight = 0.0;
        let f = Fakes::new(hits(DENSE), hits(LEXICAL), hits(SPARSE));
        let r = retrieve(&f.engine(&c), NL, SearchMode::Hybrid, 0).await.unwrap();
        assert!(f.sparse.calls().is_empty(), "a retriever without weight does not run");
        let want = expected_fusion(&c, &[(1.0, DENSE), (1.0, LEXICAL)]);
        let got: Vec<(u64, f32, u32, u32, u32)> =
            r.hits.iter().map(|h| (h.chunk.chunk_id, h.score, h.dense_rank, h.lexical_rank, h.sparse_rank)).collect();
        let want: Vec<(u64, f32, u32, u32, u32)> =
            want.iter().map(|f| (f.chunk_id, f.score, f.ranks[0], f.ranks[1], 0)).collect();
        assert_eq!(got, want, "{method}");
        if method == "rrf" {
            // 10 and 12 tie (ranks 1 and 3), as do 11 and 13 (rank 2): lower id first.
            let order: Vec<(u64, u32, u32)> = got.iter().map(|g| (g.0, g.2, g.3)).collect();
            assert_eq!(order, vec![(10, 1, 3), (12, 3, 1), (11, 2, 0), (13, 0, 2)]);
        }
    }
}

/// Twelve prose hits (a README's examples) ahead of five definitions in every list: with the
/// default `answer.non_code_demotion` (40) a question hydrates 40 candidates beyond `top_k` and
/// its first five hits are the definitions; with 10 places prose still leads and interleaves.
#[tokio::test]
async fn a_question_gets_definitions_first_even_when_prose_fills_the_head_of_every_list() {
    let fused: Vec<(u64, f32)> =
        (900..912).chain(800..805).enumerate().map(|(i, id)| (id, 1.0 - i as f32 / 100.0)).collect();
    let defs: Vec<u64> = (800..805).collect();
    let c = cfg();
    assert_eq!(c.answer.non_code_demotion, 40);
    let f = Fakes::new(hits(&fused), hits(&fused), hits(&fused));
    let r = retrieve(&f.engine(&c), NL, SearchMode::Hybrid, 0).await.unwrap();
    assert_eq!(ids(&r), defs, "definitions first");
    assert_eq!(f.hydrator.calls.lock()[0].0.len(), fused.len(), "all 17 fused candidates hydrated (5 + 40 wanted)");

    let mut c10 = cfg();
    c10.answer.non_code_demotion = 10;
    let f = Fakes::new(hits(&fused), hits(&fused), hits(&fused));
    let r = retrieve(&f.engine(&c10), NL, SearchMode::Hybrid, 0).await.unwrap();
    assert_eq!(
        ids(&r),
        vec![900, 901, 800, 902, 801],
        "10 places: prose n lands at 10 + n, level with definition n - 2 (definitions win ties)"
    );

    let f = Fakes::new(hits(&fused), hits(&fused), hits(&fused));
    let r = retrieve(&f.engine(&c), "where is this documented?", SearchMode::Hybrid, 0).await.unwrap();
    assert_eq!(ids(&r), vec![900, 901, 902, 903, 904], "asked for docs: fused order");
}

/// Five structs ahead of four functions in every list: a question about behaviour gets the
/// functions first (`answer.declaration_demotion`, 10), a description and 0 the fused order.
#[tokio::test]
async fn a_question_about_behaviour_gets_code_before_the_declarations_of_its_data() {
    let fused: Vec<(u64, f32)> =
        (700..705).chain(800..804).enumerate().map(|(i, id)| (id, 1.0 - i as f32 / 100.0)).collect();
    let c = cfg();
    assert_eq!(c.answer.declaration_demotion, 10);
    let f = Fakes::new(hits(&fused), hits(&fused), hits(&fused));
    let r = retrieve(&f.engine(&c), NL, SearchMode::Hybrid, 0).await.unwrap();
    assert_eq!(ids(&r), vec![800, 801, 802, 803, 700], "functions first, then the structs in order");

    let f = Fakes::new(hits(&fused), hits(&fused), hits(&fused));
    let r = retrieve(&f.engine(&c), "Stores sessions in Redis", SearchMode::Hybrid, 0).await.unwrap();
    assert_eq!(ids(&r), vec![700, 701, 702, 703, 704], "a description: fused order");

    let mut off = cfg();
    off.answer.declaration_demotion = 0;
    let f = Fakes::new(hits(&fused), hits(&fused), hits(&fused));
    let r = retrieve(&f.engine(&off), NL, SearchMode::Hybrid, 0).await.unwrap();
    assert_eq!(ids(&r), vec![700, 701, 702, 703, 704], "0: fused order");
}

/// A question that names a folder ("the answer service" -> `services/answer-svc`) is asked
/// again within it, without those words, and those hits lead; the rest follow in fused order.
#[tokio::test]
async fn a_question_naming_a_folder_is_searched_within_it_first() {
    let whole: Vec<ScoredChunk> = [800, 801, 600, 802, 601].iter().map(|&id| sc(id, 1.0)).collect();
    let within = vec![sc(601, 1.0), sc(600, 0.5)];
    let reply = || Reply::Scoped { whole: whole.clone(), within: within.clone() };
    const Q: &str = "how does the answer service fuse results?";
    let c = cfg();
    assert!(c.answer.subject_scope);
    let f = Fakes::new(reply(), reply(), reply());
    let r = retrieve(&f.engine(&c), Q, SearchMode::Hybrid, 0).await.unwrap();
    assert_eq!(ids(&r), vec![601, 600, 800, 801, 802], "the folder's hits, then the rest in fused order");
    let calls = f.dense.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!((calls[0].query.as_str(), calls[0].include.len()), (Q, 0));
    assert_eq!(calls[1].query, "how does it fuse results?");
    // Within what the first search left: never more time than it had (half the 2 s budget).
    assert!(calls[1].deadline <= calls[0].deadline && calls[0].deadline <= SECOND, "{calls:?}");
    assert_eq!(
        (calls[1].repos.clone(), calls[1].include.clone()),
        (vec!["r".into()], vec!["services/answer-svc/**".into()])
    );
    assert_eq!(f.lexical.calls()[1].query, "how does it fuse results?");
    assert!(stages(&r).contains(&"subject"), "{:?}", stages(&r));

    // No folder named, a scope of the caller's own globs, or the option off: one search.
    for (query, scope, on) in [
        ("how are results fused?", Scope::default(), true),
        (Q, Scope { include_globs: vec!["services/**".into()], ..Default::default() }, true),
        (Q, Scope::default(), false),
    ] {
        let mut c = cfg();
        c.answer.subject_scope = on;
        let f = Fakes::new(reply(), reply(), reply());
        let r =
            f.engine(&c).retrieve(query, &scope, SearchMode::Hybrid, 5, Duration::from_millis(2000), 0).await.unwrap();
        assert_eq!(f.dense.calls().len(), 1, "{query} {scope:?} {on}");
        // The fakes answer a scope with globs (the caller's own here) with the folder's hits.
        let first = if scope.include_globs.is_empty() { [800, 801] } else { [601, 600] };
        assert_eq!(ids(&r)[..2], first, "{query} {scope:?} {on}");
        assert!(!stages(&r).contains(&"subject"));
    }

    // Nothing found within the folder: the whole scope's hits as they were.
    let empty = || Reply::Scoped { whole: whole.clone(), within: Vec::new() };
    let f = Fakes::new(empty(), empty(), empty());
    let r = retrieve(&f.engine(&c), Q, SearchMode::Hybrid, 0).await.unwrap();
    assert_eq!(ids(&r), vec![800, 801, 600, 802, 601]);
    assert_eq!(f.dense.calls().len(), 2);
}

/// The identifier route over these fakes: chunk 20 defines `SessionStore` (lexical flags it
/// exact; dense does not return it).
fn exact_symbol_fakes() -> Fakes {
    let lexical = Reply::Hits(vec![ScoredChunk { exact: true, ..sc(20, 1000.0) }, sc(21, 5.0), sc(22, 4.0)]);
    Fakes::new(hits(&[(23, 0.9), (21, 0.8), (24, 0.7)]), lexical, Reply::Hits(Vec::new()))
}

#[tokio::test]
async fn exact_symbol_hits_stay_first_and_rerank_reorders_only_the_rest() {
    let c = cfg();
    let plain = exact_symbol_fakes();
    let fusion = retrieve(&plain.engine(&c), IDENT, SearchMode::Hybrid, 10).await.unwrap();
    let fusion = ids(&fusion);
    assert_eq!(fusion[0], 20, "pinned before fusion order: {fusion:?}");
    assert_eq!(plain.lexical.calls()[0].exact_symbol, "SessionStore");
    assert_eq!(plain.dense.calls()[0].exact_symbol, "");

    let f = exact_symbol_fakes().reranker(RerankReply::Reverse);
    let r = retrieve(&f.engine(&c), IDENT, SearchMode::Hybrid, 10).await.unwrap();
    let rest: Vec<u64> = fusion[1..].iter().rev().copied().collect();
    assert_eq!(ids(&r), [&[20][..], &rest].concat());
    assert_eq!((r.route.as_str(), r.reranker.as_str()), ("identifier", "/rerank fake-model"));
    assert_eq!(r.hits[0].lexical_rank, 1);
    let docs = &f.rerank_calls()[0].0;
    assert_eq!(docs.len(), 4, "the pinned hit is not reranked");
    assert!(docs[0].starts_with(&format!("src/f{}.rs\n", fusion[1])), "{docs:?}");
    let moves: Vec<(u64, u32, u32, f32)> =
        r.ranks.iter().map(|m| (m.chunk_id, m.before, m.after, m.rerank_score)).collect();
    assert_eq!(
        moves,
        vec![(fusion[4], 5, 2, 3.0), (fusion[3], 4, 3, 2.0), (fusion[2], 3, 4, 1.0), (fusion[1], 2, 5, 0.0)]
    );
    assert_eq!(r.hits[1].score, 3.0, "reranked hits carry the rerank score");
    assert!(r.limits.is_empty(), "{:?}", r.limits);
    assert_eq!(stages(&r), vec!["retrieve", "fuse", "hydrate", "rerank"]);
}

#[tokio::test]
async fn rerank_timeout_keeps_fusion_order_with_a_rerank_timeout_limit() {
    let c = cfg();
    let fusion = ids(&retrieve(&exact_symbol_fakes().engine(&c), IDENT, SearchMode::Hybrid, 10).await.unwrap());
    let f = exact_symbol_fakes().reranker(RerankReply::Timeout);
    let r = retrieve(&f.engine(&c), IDENT, SearchMode::Hybrid, 10).await.unwrap();
    assert_eq!(ids(&r), fusion);
    assert_eq!(r.reranker, "fusion");
    assert!(r.ranks.is_empty());
    assert_eq!(
        r.limits,
        vec![limit("rerank_timeout", "the reranker failed (no answer within 600 ms); hits are in fusion order")]
    );
    assert_eq!(f.rerank_calls()[0].1, Duration::from_millis(600), "answer.rerank_timeout_ms caps the deadline");
    assert_eq!(stages(&r), vec!["retrieve", "fuse", "hydrate", "rerank"]);
}

#[tokio::test]
async fn rerank_failure_keeps_fusion_order_with_a_rerank_unavailable_limit() {
    let c = cfg();
    let fusion = ids(&retrieve(&exact_symbol_fakes().engine(&c), IDENT, SearchMode::Hybrid, 10).await.unwrap());
    let f = exact_symbol_fakes().reranker(RerankReply::Fail("http://rr/rerank: connection refused"));
    let r = retrieve(&f.engine(&c), IDENT, SearchMode::Hybrid, 10).await.unwrap();
    assert_eq!(ids(&r), fusion);
    assert_eq!(r.reranker, "fusion");
    assert_eq!(
        r.limits,
        vec![limit(
            "rerank_unavailable",
            "the reranker failed (http://rr/rerank: connection refused); hits are in fusion order"
        )]
    );
}

#[tokio::test]
async fn retrievers_get_half_the_budget_capped_by_the_retriever_timeout() {
    // (budget ms, answer.retriever_timeout_ms, deadline each retriever gets)
    for (budget, cap, want) in [(2000, 1500, 1000), (1000, 1500, 500), (5000, 1500, 1500), (1000, 300, 300)] {
        let mut c = cfg();
        c.answer.retriever_timeout_ms = cap;
        let f = Fakes::new(hits(LEX), hits(LEX), hits(SPARSE));
        f.engine(&c)
            .retrieve(NL, &Scope::default(), SearchMode::Hybrid, 5, Duration::from_millis(budget), 0)
            .await
            .unwrap();
        for (kind, fake) in
            [(RetrieverKind::Dense, &f.dense), (RetrieverKind::Lexical, &f.lexical), (RetrieverKind::Sparse, &f.sparse)]
        {
            let calls = fake.calls();
            assert_eq!(calls.len(), 1, "{kind:?}");
            assert_eq!(
                calls[0].deadline,
                Duration::from_millis(want),
                "{kind:?} with budget {budget} ms, cap {cap} ms"
            );
            assert_eq!((calls[0].query.as_str(), calls[0].k), (NL, 100), "answer.candidates");
        }
    }
    // A reranker's depth deepens the candidate lists.
    let f = Fakes::new(hits(LEX), hits(LEX), hits(SPARSE)).reranker(RerankReply::Reverse);
    retrieve(&f.engine(&cfg()), NL, SearchMode::Hybrid, 150).await.unwrap();
    assert_eq!(f.dense.calls()[0].k, 150);
}

#[test]
fn retriever_kinds_match_the_rank_slots() {
    for k in RetrieverKind::ALL {
        assert_eq!(crate::pipeline::RETRIEVERS[k.slot()], k.name());
    }
}
