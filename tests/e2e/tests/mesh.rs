//! The mesh end to end: index a fixture repo, start the four service binaries as separate
//! processes on ephemeral loopback ports, and talk to them over gRPC as a client would.

use codeintel_e2e::{fixture, index, Mesh};
use codeintel_proto::v1::answer_event::Event;
use codeintel_proto::v1::answer_service_client::AnswerServiceClient;
use codeintel_proto::v1::vector_service_client::VectorServiceClient;
use codeintel_proto::v1::{
    AnswerRequest, ClearScopeRequest, GetScopeRequest, InfoRequest, Scope, SearchMode, SearchRequest, SetScopeRequest,
};
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::Code;

async fn channel(addr: &str) -> Channel {
    Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap()
}

async fn list_services(addr: &str) -> Vec<String> {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let mut c = ServerReflectionClient::new(channel(addr).await);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut resp = c.server_reflection_info(tokio_stream::iter(vec![req])).await.unwrap().into_inner();
    let msg = resp.next().await.unwrap().unwrap();
    match msg.message_response {
        Some(MessageResponse::ListServicesResponse(l)) => l.service.into_iter().map(|s| s.name).collect(),
        other => panic!("unexpected reflection answer {other:?}"),
    }
}

async fn list_services_v1alpha(addr: &str) -> Vec<String> {
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
    let mut c = ServerReflectionClient::new(channel(addr).await);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut resp = c.server_reflection_info(tokio_stream::iter(vec![req])).await.unwrap().into_inner();
    match resp.next().await.unwrap().unwrap().message_response {
        Some(MessageResponse::ListServicesResponse(l)) => l.service.into_iter().map(|s| s.name).collect(),
        other => panic!("unexpected reflection answer {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_indexes_answers_with_citations_and_rejects_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    index(&fixture("shop"), "shop", &data);
    let mesh = Mesh::start(&data);

    // Reflection (v1 and v1alpha) and health on every service.
    for (p, svc) in [
        (&mesh.vector, "codeintel.v1.VectorService"),
        (&mesh.lexical, "codeintel.v1.LexicalService"),
        (&mesh.hydrate, "arrow.flight.protocol.FlightService"),
        (&mesh.answer, "codeintel.v1.AnswerService"),
    ] {
        let v1 = list_services(&p.addr).await;
        assert!(v1.contains(&svc.to_string()), "{} reflection v1 lists {v1:?}", p.name);
        assert!(v1.contains(&"grpc.health.v1.Health".to_string()), "{v1:?}");
        let foreign = v1.iter().filter(|s| s.starts_with("codeintel.") && s.as_str() != svc).count();
        assert_eq!(foreign, 0, "{} advertises services it does not serve: {v1:?}", p.name);
        let v1a = list_services_v1alpha(&p.addr).await;
        assert!(v1a.contains(&svc.to_string()), "{} reflection v1alpha lists {v1a:?}", p.name);
        let mut h = tonic_health::pb::health_client::HealthClient::new(channel(&p.addr).await);
        let mut serving = false;
        for _ in 0..20 {
            let st = h
                .check(tonic_health::pb::HealthCheckRequest { service: svc.into() })
                .await
                .unwrap()
                .into_inner()
                .status;
            if st == tonic_health::pb::health_check_response::ServingStatus::Serving as i32 {
                serving = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        assert!(serving, "{} is not SERVING", p.name);
    }

    // vector-svc reports the embedding contract of the embedded model.
    let info =
        VectorServiceClient::new(channel(&mesh.vector.addr).await).info(InfoRequest {}).await.unwrap().into_inner();
    assert_eq!((info.dim, info.status.as_str()), (384, "ready"));
    assert_eq!(info.repos.len(), 1);

    let mut c = AnswerServiceClient::new(channel(&mesh.answer.addr).await);

    // Answer: citations first, naming the right file and a span containing the definition.
    let req = AnswerRequest {
        query: "how is the shopping cart total computed with tax".into(),
        scope: None,
        top_k: 5,
        rerank_top_n: 0,
        time_budget_ms: 10_000,
    };
    let mut stream = c.answer(req).await.unwrap().into_inner();
    let mut events = Vec::new();
    while let Some(ev) = stream.next().await {
        events.push(ev.unwrap().event.unwrap());
    }
    let Event::Citations(cites) = &events[0] else { panic!("first event is not citations: {:?}", events[0]) };
    let top = &cites.citations[0];
    assert_eq!((top.repo.as_str(), top.path.as_str()), ("shop", "src/shop/cart.py"), "{cites:?}");
    assert!(
        top.start_line <= 11 && top.end_line >= 11,
        "span {}-{} must contain compute_total (line 11)",
        top.start_line,
        top.end_line
    );
    let text: String =
        events.iter().filter_map(|e| if let Event::Token(t) = e { Some(t.text.clone()) } else { None }).collect();
    assert!(text.contains("shop/src/shop/cart.py:"), "answer cites the file: {text}");
    assert!(events.iter().any(|e| matches!(e, Event::Limits(l) if l.limits.iter().any(|l| l.code == "extractive"))));
    assert!(
        matches!(events.iter().rev().nth(1), Some(Event::Trace(t)) if t.stages.iter().any(|s| s.stage == "retrieve") && t.route == "natural_language")
    );
    assert!(matches!(events.last(), Some(Event::Done(_))));

    // Search by name, each mode; a scope restricts results.
    for mode in [SearchMode::Hybrid, SearchMode::Lexical, SearchMode::Dense] {
        let r = c
            .search(SearchRequest {
                query: "TokenBucket try_acquire".into(),
                scope: None,
                top_k: 3,
                mode: mode as i32,
                rerank: false,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            r.hits[0].path,
            "engine/ratelimit.rs",
            "{mode:?}: {:?}",
            r.hits.iter().map(|h| &h.path).collect::<Vec<_>>()
        );
        assert!(!r.hits[0].text.is_empty());
    }
    // Learned sparse alone, and as the third retriever of hybrid (sparse_weight > 0 by default).
    let sparse = |mode: SearchMode| SearchRequest {
        query: "rate limiter token bucket".into(),
        scope: None,
        top_k: 3,
        mode: mode as i32,
        rerank: false,
    };
    let r = c.search(sparse(SearchMode::Sparse)).await.unwrap().into_inner();
    assert!(r.hits.iter().any(|h| h.path == "engine/ratelimit.rs"), "{:?}", r.hits);
    assert!(r.hits.iter().enumerate().all(|(i, h)| h.sparse_rank == i as u32 + 1 && h.dense_rank == 0));
    let r = c.search(sparse(SearchMode::Hybrid)).await.unwrap().into_inner();
    assert!(r.hits.iter().any(|h| h.sparse_rank > 0 && h.dense_rank > 0 && h.lexical_rank > 0), "{:?}", r.hits);
    let r = c
        .search(SearchRequest {
            query: "where is SessionManager defined".into(),
            scope: None,
            top_k: 3,
            mode: 0,
            rerank: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.hits[0].symbol.as_str(), r.hits[0].start_line), ("SessionManager", 3), "{:?}", r.hits);
    let js_only = Scope { languages: vec!["javascript".into()], ..Default::default() };
    let r = c
        .search(SearchRequest {
            query: "token".into(),
            scope: Some(js_only.clone()),
            top_k: 10,
            mode: 0,
            rerank: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!r.hits.is_empty() && r.hits.iter().all(|h| h.language == "javascript"), "{:?}", r.hits);

    // Session scope applies when the request has none.
    let mut set = tonic::Request::new(SetScopeRequest { scope: Some(js_only) });
    set.metadata_mut().insert("x-session-id", "s1".parse().unwrap());
    c.set_scope(set).await.unwrap();
    let mut s =
        tonic::Request::new(SearchRequest { query: "token".into(), scope: None, top_k: 10, mode: 0, rerank: false });
    s.metadata_mut().insert("x-session-id", "s1".parse().unwrap());
    let r = c.search(s).await.unwrap().into_inner();
    assert!(r.hits.iter().all(|h| h.language == "javascript"));

    // Bad input: INVALID_ARGUMENT with a sentence.
    let bad = |query: &str, top_k: u32, scope: Option<Scope>| SearchRequest {
        query: query.into(),
        scope,
        top_k,
        mode: 0,
        rerank: false,
    };
    for (req, needle) in [
        (bad("", 5, None), "query is empty"),
        (bad("x", 0, None), "top_k"),
        (bad("x", 1001, None), "top_k"),
        (bad("x", 5, Some(Scope { repos: vec!["nope".into()], ..Default::default() })), "unknown repo"),
        (bad("x", 5, Some(Scope { include_globs: vec!["src/[".into()], ..Default::default() })), "bad glob"),
    ] {
        let e = c.search(req).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains(needle), "{needle}: {}", e.message());
    }

    // A service that is down: UNAVAILABLE naming it (lexical still answers, so hybrid degrades).
    drop(mesh.vector);
    let r = c
        .search(SearchRequest { query: "parse cookie header".into(), scope: None, top_k: 3, mode: 0, rerank: false })
        .await
        .unwrap()
        .into_inner();
    assert!(
        r.limits.iter().any(|l| l.code == "dense_unavailable" && l.message.contains("vector-svc")),
        "{:?}",
        r.limits
    );
    assert_eq!(r.hits[0].symbol, "parseCookieHeader");
    let e = c
        .search(SearchRequest {
            query: "x".into(),
            scope: None,
            top_k: 3,
            mode: SearchMode::Dense as i32,
            rerank: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    assert!(e.message().contains("vector-svc"), "{}", e.message());

    // Every retriever down: Answer ends its stream with UNAVAILABLE naming them.
    drop(mesh.lexical);
    let req = AnswerRequest { query: "cart".into(), scope: None, top_k: 3, rerank_top_n: 0, time_budget_ms: 5_000 };
    let mut stream = c.answer(req).await.unwrap().into_inner();
    let e = match stream.next().await {
        Some(Ok(ev)) => panic!("no event expected without retrievers, got {ev:?}"),
        Some(Err(e)) => e,
        None => panic!("stream ended without a status"),
    };
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(e.message().contains("vector-svc") && e.message().contains("lexical-svc"), "{}", e.message());

    // Every RPC is counted by its final status, session RPCs included, and an Answer that
    // fails inside its stream counts as that failure.
    let before = mesh.answer.metrics();
    for _ in 0..2 {
        let mut r = tonic::Request::new(SetScopeRequest {
            scope: Some(Scope { languages: vec!["rust".into()], ..Default::default() }),
        });
        r.metadata_mut().insert("x-session-id", "metrics".parse().unwrap());
        c.set_scope(r).await.unwrap();
    }
    let mut r = tonic::Request::new(GetScopeRequest {});
    r.metadata_mut().insert("x-session-id", "metrics".parse().unwrap());
    c.get_scope(r).await.unwrap();
    let e = c.clear_scope(ClearScopeRequest {}).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "ClearScope without a session id");
    let metrics = mesh.answer.metrics();
    let count_in = |metrics: &str, rpc: &str, code: &str| -> f64 {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("codeintel_requests_total{")
                    && l.contains(&format!("rpc=\"{rpc}\""))
                    && l.contains(&format!("code=\"{code}\""))
            })
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0.0)
    };
    let added = |rpc: &str, code: &str| count_in(&metrics, rpc, code) - count_in(&before, rpc, code);
    assert_eq!(count_in(&metrics, "Answer", "Unavailable"), 1.0, "{metrics}");
    assert_eq!(added("SetScope", "OK"), 2.0, "{metrics}");
    assert_eq!(added("GetScope", "OK"), 1.0, "{metrics}");
    assert_eq!(added("ClearScope", "InvalidArgument"), 1.0, "{metrics}");
    assert!(metrics.contains("codeintel_request_duration_seconds_count{rpc=\"SetScope\""), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_query_route_fuses_with_its_own_weights() {
    let (_tmp, data) = codeintel_e2e::indexed_shop();
    // Name lookups from BM25 and exact symbols only; natural language keeps every retriever.
    let opts = ["answer.identifier_dense_weight=0".to_string(), "answer.identifier_sparse_weight=0".to_string()];
    let mesh = Mesh::start_with(&data, &opts);
    let mut c = AnswerServiceClient::new(channel(&mesh.answer.addr).await);
    let search = |q: &str| SearchRequest { query: q.into(), scope: None, top_k: 5, mode: 0, rerank: false };
    let r = c.search(search("where is SessionManager defined")).await.unwrap().into_inner();
    assert_eq!(r.hits[0].symbol, "SessionManager");
    assert!(r.hits.iter().all(|h| h.dense_rank == 0 && h.sparse_rank == 0 && h.lexical_rank > 0), "{:?}", r.hits);
    let r = c.search(search("how is the shopping cart total computed")).await.unwrap().into_inner();
    assert!(r.hits.iter().any(|h| h.dense_rank > 0) && r.hits.iter().any(|h| h.sparse_rank > 0), "{:?}", r.hits);
}

#[tokio::test]
async fn answer_svc_with_no_backend_is_not_ready_but_alive() {
    let tmp = tempfile::tempdir().unwrap();
    let dead = ["answer.vector_url", "answer.lexical_url", "answer.hydrate_url"]
        .iter()
        .flat_map(|k| ["--set".to_string(), format!("{k}=http://127.0.0.1:1")])
        .collect::<Vec<_>>();
    let answer = codeintel_e2e::start("answer-svc", tmp.path(), &dead);
    let mut h = tonic_health::pb::health_client::HealthClient::new(channel(&answer.addr).await);
    let status = |s: &str| tonic_health::pb::HealthCheckRequest { service: s.into() };
    let not_serving = tonic_health::pb::health_check_response::ServingStatus::NotServing as i32;
    let t = std::time::Instant::now();
    while h.check(status("")).await.unwrap().into_inner().status != not_serving {
        assert!(t.elapsed() < std::time::Duration::from_secs(20), "answer-svc never reported NOT_SERVING");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let live = h.check(status("codeintel.Liveness")).await.unwrap().into_inner().status;
    assert_eq!(live, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
}

/// `codeintel search ... | head -1`: when its reader closes the pipe, the command ends by
/// SIGPIPE, as `grep` would, not with a panic in `println!`.
#[test]
fn the_cli_ends_quietly_when_its_reader_closes_the_pipe() {
    use std::os::unix::process::ExitStatusExt;
    let (_tmp, data) = codeintel_e2e::indexed_shop();
    let mesh = Mesh::start(&data);
    let mut child = std::process::Command::new(codeintel_e2e::bin_dir().join("codeintel"))
        .arg("--data-root")
        .arg(&data)
        .args(["search", "how is the shopping cart total computed", "--json", "--top-k", "20"])
        .env("CODEINTEL__ANSWER__ADDR", &mesh.answer.addr)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The reader is gone before the first hit is printed (the search takes a round trip).
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.signal(), Some(13), "ended by SIGPIPE: {:?} {stderr}", out.status);
}
