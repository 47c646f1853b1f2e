//! Session scope shared through a real `redis-server` by separate answer-svc processes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use codeintel_e2e::{indexed_shop, Mesh, Proc, RedisServer};
use codeintel_proto::v1::answer_service_client::AnswerServiceClient;
use codeintel_proto::v1::{Scope, SearchMode, SearchRequest, SetScopeRequest};
use tonic::transport::Channel;

async fn client(p: &Proc) -> AnswerServiceClient<Channel> {
    let ch = Channel::from_shared(format!("http://{}", p.addr)).unwrap().connect().await.unwrap();
    AnswerServiceClient::new(ch)
}

fn with_session<T>(msg: T, session: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert("x-session-id", session.parse().unwrap());
    r
}

fn lang_scope(lang: &str) -> Scope {
    Scope { languages: vec![lang.into()], ..Default::default() }
}

async fn set_scope(c: &mut AnswerServiceClient<Channel>, session: &str, scope: Scope) {
    c.set_scope(with_session(SetScopeRequest { scope: Some(scope) }, session)).await.unwrap();
}

/// Languages of the hits a lexical search returns under the session's scope.
async fn search_langs(c: &mut AnswerServiceClient<Channel>, session: &str) -> Vec<String> {
    search_langs_limits(c, session).await.0
}

/// Languages of the hits, and the limit codes of the response.
async fn search_langs_limits(c: &mut AnswerServiceClient<Channel>, session: &str) -> (Vec<String>, Vec<String>) {
    let req = SearchRequest {
        query: "token session cart total".into(),
        scope: None,
        top_k: 10,
        mode: SearchMode::Lexical as i32,
        rerank: false,
    };
    let r = c.search(with_session(req, session)).await.unwrap().into_inner();
    (r.hits.into_iter().map(|h| h.language).collect(), r.limits.into_iter().map(|l| l.code).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scope_set_on_one_process_applies_on_another_every_time() {
    let (_tmp, data) = indexed_shop();
    let redis = RedisServer::start();
    let opt = [format!("answer.redis_url={}", redis.url())];
    let mesh = Mesh::start_with(&data, &opt);
    let second = mesh.another_answer(&data, &opt);
    let (mut a, mut b) = (client(&mesh.answer).await, client(&second).await);
    let session = "user-42";
    // Both languages exist in the fixture, so an unscoped search mixes them.
    let all = search_langs(&mut a, "nobody").await;
    assert!(all.contains(&"python".to_string()) && all.contains(&"javascript".to_string()), "{all:?}");
    let t = Instant::now();
    for round in 0..1000 {
        let lang = if round % 2 == 0 { "python" } else { "javascript" };
        // Alternate which process writes and which reads.
        let (w, r) = if round % 2 == 0 { (&mut a, &mut b) } else { (&mut b, &mut a) };
        set_scope(w, session, lang_scope(lang)).await;
        let langs = search_langs(r, session).await;
        assert!(!langs.is_empty() && langs.iter().all(|l| l == lang), "round {round}: wanted {lang}, got {langs:?}");
    }
    eprintln!("1000 alternating rounds in {:?}", t.elapsed());
    // Cleared on one process: no scope on the other.
    a.clear_scope(with_session(codeintel_proto::v1::ClearScopeRequest {}, session)).await.unwrap();
    let got = b.get_scope(with_session(codeintel_proto::v1::GetScopeRequest {}, session)).await.unwrap().into_inner();
    assert_eq!(got.scope, None);
}

async fn wait_status(p: &Proc, want: &str, within: Duration) -> serde_json::Value {
    let t = Instant::now();
    loop {
        let r = p.ready();
        if r["status"] == want {
            return r;
        }
        assert!(t.elapsed() < within, "{} status stayed {r} (wanted {want})", p.name);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_going_away_degrades_and_its_return_recovers() {
    let (_tmp, data) = indexed_shop();
    let mut redis = RedisServer::start();
    let mesh = Mesh::start_with(
        &data,
        &[format!("answer.redis_url={}", redis.url()), "answer.scope_cache_ttl_ms=200".to_string()],
    );
    let mut c = client(&mesh.answer).await;
    wait_status(&mesh.answer, "ready", Duration::from_secs(10)).await;
    set_scope(&mut c, "s1", lang_scope("python")).await;
    assert!(search_langs(&mut c, "s1").await.iter().all(|l| l == "python"));
    // A scope naming a repo no retriever serves is refused (it would fail every request).
    let bad = Scope { repos: vec!["nope".into()], ..Default::default() };
    let e = c.set_scope(with_session(SetScopeRequest { scope: Some(bad) }, "s9")).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("unknown repo \"nope\""), "{}", e.message());

    redis.kill();
    // Requests keep succeeding, with the scope this process knows (past its cache TTL too),
    // and once the store is known down they say so and do not wait for a connect timeout.
    for _ in 0..10 {
        let langs = search_langs(&mut c, "s1").await;
        assert!(!langs.is_empty() && langs.iter().all(|l| l == "python"), "{langs:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = wait_status(&mesh.answer, "degraded", Duration::from_secs(10)).await;
    assert!(r["reasons"].to_string().contains("redis"), "{r}");
    let t = Instant::now();
    while !mesh.answer.metrics().contains("codeintel_scope_store_up{service=\"answer\"} 0") {
        assert!(t.elapsed() < Duration::from_secs(5), "metrics do not show redis down:\n{}", mesh.answer.metrics());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..5 {
        let t = Instant::now();
        let (langs, limits) = search_langs_limits(&mut c, "s1").await;
        assert!(t.elapsed() < Duration::from_millis(500), "a lookup with redis down took {:?}", t.elapsed());
        assert!(langs.iter().all(|l| l == "python"), "{langs:?}");
        assert!(limits.contains(&"session_store_unreachable".to_string()), "{limits:?}");
    }
    // A scope cannot be saved meanwhile, and the error says why.
    let e =
        c.set_scope(with_session(SetScopeRequest { scope: Some(lang_scope("javascript")) }, "s1")).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
    assert!(e.message().contains("redis") && e.message().contains("session store"), "{}", e.message());
    // A session this process never saw cannot be resolved: UNAVAILABLE, never every repo.
    let req = SearchRequest { query: "cart".into(), top_k: 5, mode: SearchMode::Lexical as i32, ..Default::default() };
    let e = c.search(with_session(req, "never-seen")).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");

    // Redis comes back empty (no persistence): s1's scope is gone from the store, but the
    // session keeps the scope it had (the response says the store lost it), and answer-svc,
    // seeing the store's epoch change, writes the scopes it knows back.
    redis.restart();
    assert_eq!(redis.cli(&["EXISTS", "codeintel:scope:s1"]).trim(), "0");
    wait_status(&mesh.answer, "ready", Duration::from_secs(15)).await;
    assert!(mesh.answer.metrics().contains("codeintel_scope_store_up{service=\"answer\"} 1"));
    let t = Instant::now();
    loop {
        let (langs, limits) = search_langs_limits(&mut c, "s1").await;
        assert!(
            !langs.is_empty() && langs.iter().all(|l| l == "python"),
            "the lost scope widened the session: {langs:?}"
        );
        if limits.is_empty() {
            break;
        }
        assert_eq!(limits, ["session_scope_lost"]);
        assert!(t.elapsed() < Duration::from_secs(5), "the scope was not written back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(redis.cli(&["EXISTS", "codeintel:scope:s1"]).trim(), "1", "s1's scope is back in redis");
    // ClearScope drops it for good: the session sees everything again, without a limit.
    c.clear_scope(with_session(codeintel_proto::v1::ClearScopeRequest {}, "s1")).await.unwrap();
    let (langs, limits) = search_langs_limits(&mut c, "s1").await;
    assert!(langs.iter().any(|l| l != "python"), "{langs:?}");
    assert!(limits.is_empty(), "{limits:?}");
    set_scope(&mut c, "s2", lang_scope("javascript")).await;
    assert!(search_langs(&mut c, "s2").await.iter().all(|l| l == "javascript"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_misses_for_one_session_make_one_redis_read() {
    use answer_svc::session::{RedisOptions, RedisStore, SessionStore};
    let redis = RedisServer::start();
    let opts = RedisOptions {
        url: redis.url(),
        ttl_s: 3600,
        cache_entries: 256,
        cache_ttl: Duration::from_secs(60),
        invalidation_timeout: Duration::from_millis(250),
    };
    // Two stores are two processes: the writer's cache holds the scope, the reader's does not.
    let writer = SessionStore::Redis(RedisStore::connect(opts.clone(), &prometheus::Registry::new()).await.unwrap());
    let reader = Arc::new(SessionStore::Redis(RedisStore::connect(opts, &prometheus::Registry::new()).await.unwrap()));
    writer.set("hot", lang_scope("rust")).await.unwrap();
    let before = redis.calls("get");
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let r = reader.clone();
            tokio::spawn(async move { r.get("hot").await.unwrap() })
        })
        .collect();
    for t in futures::future::join_all(tasks).await {
        assert_eq!(t.unwrap().scope, Some(lang_scope("rust")));
    }
    assert_eq!(redis.calls("get") - before, 1, "1000 concurrent misses must share one GET");
    // Later lookups are L1 hits: still one read.
    assert_eq!(reader.get("hot").await.unwrap().scope, Some(lang_scope("rust")));
    assert_eq!(redis.calls("get") - before, 1);
}

/// (completed, failed, answers carrying a session limit, answers that saw outside their scope).
#[derive(Debug, Default, Clone, Copy)]
struct LoadTally {
    completed: usize,
    failed: usize,
    session_limited: usize,
    widened: usize,
}

/// One Answer for `session`: its cited languages and limit codes, or the status.
async fn answer_langs(
    c: &mut AnswerServiceClient<Channel>,
    session: &str,
) -> Result<(Vec<String>, Vec<String>), tonic::Status> {
    use codeintel_proto::v1::answer_event::Event;
    let req = codeintel_proto::v1::AnswerRequest {
        query: "token session cart total".into(),
        top_k: 5,
        time_budget_ms: 3000,
        ..Default::default()
    };
    let mut s = c.answer(with_session(req, session)).await?.into_inner();
    let (mut langs, mut limits, mut done) = (Vec::new(), Vec::new(), false);
    while let Some(ev) = s.message().await? {
        match ev.event {
            Some(Event::Citations(cs)) => langs.extend(cs.citations.into_iter().map(|c| c.language)),
            Some(Event::Limits(l)) => limits.extend(l.limits.into_iter().map(|l| l.code)),
            Some(Event::Done(_)) => done = true,
            _ => {}
        }
    }
    if !done {
        return Err(tonic::Status::unknown("the answer stream ended without its done event"));
    }
    Ok((langs, limits))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_under_load_fails_no_answer_and_the_scopes_come_back() {
    let (_tmp, data) = indexed_shop();
    let mut redis = RedisServer::start();
    let opt = [format!("answer.redis_url={}", redis.url()), "answer.scope_cache_ttl_ms=200".to_string()];
    let mesh = Mesh::start_with(&data, &opt);
    let second = mesh.another_answer(&data, &opt);
    let sessions: Vec<(String, &str)> =
        (0..8).map(|i| (format!("load-{i}"), if i % 2 == 0 { "python" } else { "javascript" })).collect();
    let mut a = client(&mesh.answer).await;
    for (s, lang) in &sessions {
        set_scope(&mut a, s, lang_scope(lang)).await;
    }
    // Both processes answer every session once before the fault, so each knows its scope.
    let mut b = client(&second).await;
    for (s, lang) in &sessions {
        for c in [&mut a, &mut b] {
            let (langs, _) = answer_langs(c, s).await.unwrap();
            assert!(!langs.is_empty() && langs.iter().all(|l| l == lang), "{s}: {langs:?}");
        }
    }
    // Eight clients, half on each process, answering in a loop for 9 s; Redis is killed at
    // 1.5 s and restarted (empty) at 4.5 s.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (i, (s, lang)) in sessions.iter().cloned().enumerate() {
        let addr = if i % 2 == 0 { mesh.answer.addr.clone() } else { second.addr.clone() };
        let (stop, lang) = (stop.clone(), lang.to_string());
        tasks.push(tokio::spawn(async move {
            let ch = Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
            let mut c = AnswerServiceClient::new(ch);
            let mut t = LoadTally::default();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                match answer_langs(&mut c, &s).await {
                    Ok((langs, limits)) => {
                        t.completed += 1;
                        t.widened += usize::from(langs.iter().any(|l| *l != lang));
                        t.session_limited += usize::from(limits.iter().any(|l| l.starts_with("session_")));
                    }
                    Err(e) => {
                        eprintln!("{s}: {e:?}");
                        t.failed += 1;
                    }
                }
            }
            t
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    redis.kill();
    tokio::time::sleep(Duration::from_millis(3000)).await;
    redis.restart();
    let restarted = Instant::now();
    tokio::time::sleep(Duration::from_millis(4500)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut total = LoadTally::default();
    for t in tasks {
        let t = t.await.unwrap();
        total.completed += t.completed;
        total.failed += t.failed;
        total.session_limited += t.session_limited;
        total.widened += t.widened;
    }
    eprintln!("redis killed for 3 s under 8 answering clients: {total:?}");
    assert_eq!(total.failed, 0, "{total:?}");
    assert_eq!(total.widened, 0, "a session saw code outside its scope: {total:?}");
    assert!(total.session_limited > 0, "no answer said the session store was away: {total:?}");
    assert!(total.completed > 16, "{total:?}");
    // Coherent again: each process gave back the scopes it knew, so a process that never saw
    // these sessions resolves each one from Redis, without a limit.
    let t = Instant::now();
    let third = mesh.another_answer(&data, &opt);
    let mut c = client(&third).await;
    for (s, lang) in &sessions {
        let (langs, limits) = answer_langs(&mut c, s).await.unwrap();
        assert!(!langs.is_empty() && langs.iter().all(|l| l == lang), "{s}: {langs:?}");
        assert!(limits.iter().all(|l| !l.starts_with("session_")), "{s}: {limits:?}");
    }
    eprintln!(
        "every scope resolved whole by a fresh process {:?} after the restart (that check took {:?})",
        restarted.elapsed(),
        t.elapsed()
    );
    let restored: u64 = mesh
        .answer
        .metrics()
        .lines()
        .find_map(|l| l.strip_prefix("codeintel_scope_restored_total{service=\"answer\"} ").map(|v| v.parse().unwrap()))
        .expect("the restored counter");
    assert!(restored >= 8, "answer-svc restored {restored} scopes");
}
