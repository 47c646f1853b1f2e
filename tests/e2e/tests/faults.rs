//! Faults in the model servers answer-svc depends on, with real processes: the mesh binaries on
//! loopback and a scripted model server (`codeintel_e2e::model_server`) that stalls, hangs or
//! trickles. Each fault must end in an answer within budget, with a `limits` entry saying what
//! was lost.

use std::time::{Duration, Instant};

use codeintel_e2e::model_server::{Behaviour, ModelServer};
use codeintel_e2e::{indexed_shop, Mesh};
use codeintel_proto::v1::answer_event::Event;
use codeintel_proto::v1::answer_service_client::AnswerServiceClient;
use codeintel_proto::v1::{AnswerEvent, AnswerRequest, SearchRequest};
use tonic::transport::Channel;

const QUERY: &str = "how is the cart total computed with tax";

async fn client(mesh: &Mesh) -> AnswerServiceClient<Channel> {
    let ch = Channel::from_shared(format!("http://{}", mesh.answer.addr)).unwrap().connect().await.unwrap();
    AnswerServiceClient::new(ch)
}

fn request(budget_ms: u32, rerank_top_n: u32) -> AnswerRequest {
    AnswerRequest { query: QUERY.into(), scope: None, top_k: 3, rerank_top_n, time_budget_ms: budget_ms }
}

/// Every event of one answer, and how long the whole stream took.
async fn answer_all(c: &mut AnswerServiceClient<Channel>, req: AnswerRequest) -> (Vec<AnswerEvent>, Duration) {
    let t = Instant::now();
    let mut s = c.answer(req).await.unwrap().into_inner();
    let mut out = Vec::new();
    while let Some(ev) = s.message().await.unwrap() {
        out.push(ev);
    }
    (out, t.elapsed())
}

/// The chunk ids a plain hybrid search ranks first (fusion order).
async fn fusion_order(c: &mut AnswerServiceClient<Channel>, top_k: u32) -> Vec<u64> {
    let req = SearchRequest { query: QUERY.into(), scope: None, top_k, mode: 0, rerank: false };
    c.search(req).await.unwrap().into_inner().hits.iter().map(|h| h.chunk_id).collect()
}

fn limits(evs: &[AnswerEvent]) -> Vec<String> {
    evs.iter()
        .filter_map(|e| match &e.event {
            Some(Event::Limits(l)) => Some(l.limits.iter().map(|l| l.code.clone()).collect::<Vec<_>>()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn cited(evs: &[AnswerEvent]) -> Vec<u64> {
    evs.iter()
        .find_map(|e| match &e.event {
            Some(Event::Citations(c)) => Some(c.citations.iter().map(|c| c.chunk_id).collect()),
            _ => None,
        })
        .expect("a citations event")
}

/// The answer's text: its tokens, in order.
fn answer_text(evs: &[AnswerEvent]) -> String {
    evs.iter()
        .filter_map(|e| match &e.event {
            Some(Event::Token(t)) => Some(t.text.as_str()),
            _ => None,
        })
        .collect()
}

fn trace(evs: &[AnswerEvent]) -> codeintel_proto::v1::Trace {
    evs.iter()
        .find_map(|e| match &e.event {
            Some(Event::Trace(t)) => Some(t.clone()),
            _ => None,
        })
        .expect("a trace event")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_language_model_gives_a_retrieval_only_answer_within_budget() {
    let (_tmp, data) = indexed_shop();
    let llm = ModelServer::start(Behaviour::Stall).await;
    let mesh = Mesh::start_with(&data, &[format!("answer.llm_url={}", llm.url)]);
    let mut c = client(&mesh).await;
    answer_all(&mut c, request(5_000, 0)).await; // warm up connections and caches
    let (evs, took) = answer_all(&mut c, request(1_500, 0)).await;
    assert!(took <= Duration::from_millis(1_600), "answer took {took:?} on a 1500 ms budget");
    assert!(limits(&evs).contains(&"synthesis_timeout".to_string()), "{:?}", limits(&evs));
    assert!(!cited(&evs).is_empty());
    let tokens = answer_text(&evs);
    assert!(tokens.contains("[1] shop/"), "the retrieved code is the answer: {tokens}");
    assert_eq!(trace(&evs).synthesizer, "extractive");
    assert!(matches!(evs.last().and_then(|e| e.event.as_ref()), Some(Event::Done(_))));
    assert!(llm.seen.requests.load(std::sync::atomic::Ordering::SeqCst) >= 1, "the model was asked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_reranker_leaves_fusion_order_within_budget() {
    let (_tmp, data) = indexed_shop();
    let rr = ModelServer::start(Behaviour::Stall).await;
    let mesh = Mesh::start_with(&data, &[format!("answer.rerank_url={}", rr.url)]);
    let mut c = client(&mesh).await;
    let fusion = fusion_order(&mut c, 3).await;
    let (evs, took) = answer_all(&mut c, request(1_500, 10)).await;
    assert!(took <= Duration::from_millis(1_600), "answer took {took:?} on a 1500 ms budget");
    assert!(limits(&evs).contains(&"rerank_timeout".to_string()), "{:?}", limits(&evs));
    assert_eq!(cited(&evs), fusion, "fusion order is kept when the reranker fails");
    let t = trace(&evs);
    assert_eq!(t.reranker, "fusion");
    assert!(t.ranks.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_score_endpoint_reranks_and_the_trace_records_each_move() {
    let (_tmp, data) = indexed_shop();
    let rr = ModelServer::start(Behaviour::ScoreReversed).await;
    let mesh =
        Mesh::start_with(&data, &[format!("answer.rerank_url={}", rr.url), "answer.trace_flush_ms=200".to_string()]);
    let mut c = client(&mesh).await;
    let fusion = fusion_order(&mut c, 5).await;
    assert_eq!(fusion.len(), 5);
    let (evs, _) = answer_all(&mut c, request(5_000, 5)).await;
    // The server scores candidate i with i: the fifth fused candidate now leads.
    let got = cited(&evs);
    assert_eq!(got, vec![fusion[4], fusion[3], fusion[2]]);
    let t = trace(&evs);
    assert_eq!(t.reranker, "/score default", "no /rerank here, so /score was used");
    assert_eq!((t.ranks[0].chunk_id, t.ranks[0].before, t.ranks[0].after), (fusion[4], 5, 1));
    assert_eq!(rr.seen.paths.lock().unwrap().as_slice(), ["/rerank", "/score"]);
    assert!(limits(&evs).iter().all(|l| !l.starts_with("rerank")), "{:?}", limits(&evs));

    // The answer's AnswerTrace row reaches Parquet under <data root>/traces.
    let rows = wait_for_trace_rows(&data.join("traces")).await;
    let row = rows.iter().find(|r| r.0 == QUERY).expect("a trace row for the query");
    assert_eq!(row.1, "/score default");
    assert_eq!(row.2, format!("[{},{},{}]", fusion[4], fusion[3], fusion[2]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_cross_encoder_reranks_where_switched_on_and_is_asked_for_where_off() {
    let (_tmp, data) = indexed_shop();
    let search = |rerank| SearchRequest { query: QUERY.into(), scope: None, top_k: 3, mode: 0, rerank };
    {
        // Off (the default) and no rerank server: a Search asking for reranking says how to get it.
        let off = Mesh::start(&data);
        let mut c = client(&off).await;
        let e = c.search(search(true)).await.expect_err("rerank with no reranker");
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("answer.local_rerank=true"), "{}", e.message());
        let (evs, _) = answer_all(&mut c, request(5_000, 0)).await;
        assert_eq!(trace(&evs).reranker, "fusion");
    }
    let on = Mesh::start_with(&data, &["answer.local_rerank=true".to_string()]);
    let mut c = client(&on).await;
    let fusion = fusion_order(&mut c, 20).await;
    let (evs, _) = answer_all(&mut c, request(5_000, 0)).await;
    let t = trace(&evs);
    assert!(t.reranker.starts_with("local-cross-encoder "), "{}", t.reranker);
    assert!(limits(&evs).iter().all(|l| !l.starts_with("rerank")), "{:?}", limits(&evs));
    // Answers rerank the fused top 20 (answer.local_rerank_top_n) by default, and record the moves.
    let got = cited(&evs);
    assert_eq!(got.len(), 3);
    assert!(got.iter().all(|id| fusion.contains(id)), "{got:?} not among {fusion:?}");
    assert_eq!(t.ranks.iter().map(|r| r.chunk_id).collect::<Vec<_>>(), got);
    for r in &t.ranks {
        let before = fusion.iter().position(|&id| id == r.chunk_id).unwrap() as u32 + 1;
        assert_eq!(r.before, before, "{r:?}");
    }
    // A Search that asks for reranking gets the same order.
    let hits: Vec<u64> = c.search(search(true)).await.unwrap().into_inner().hits.iter().map(|h| h.chunk_id).collect();
    assert_eq!(hits, got);
}

/// (query, reranker, cited) of every AnswerTrace row written so far (waits for the first file).
async fn wait_for_trace_rows(dir: &std::path::Path) -> Vec<(String, String, String)> {
    use arrow::array::{Array, AsArray};
    let t = Instant::now();
    loop {
        let files: Vec<_> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "parquet")).collect()
            })
            .unwrap_or_default();
        if !files.is_empty() {
            let mut out = Vec::new();
            for f in files {
                let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                    std::fs::File::open(f).unwrap(),
                )
                .unwrap()
                .build()
                .unwrap();
                for b in reader {
                    let b = b.unwrap();
                    let col = |n: &str| b.column_by_name(n).unwrap().as_string::<i32>().clone();
                    let (q, r, c) = (col("query"), col("reranker"), col("cited"));
                    for i in 0..q.len() {
                        out.push((q.value(i).to_string(), r.value(i).to_string(), c.value(i).to_string()));
                    }
                }
            }
            return out;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "no trace file in {}", dir.display());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_cancels_aborts_the_language_model_request() {
    let (_tmp, data) = indexed_shop();
    let llm = ModelServer::start(Behaviour::Trickle { every: Duration::from_millis(50) }).await;
    let mesh = Mesh::start_with(&data, &[format!("answer.llm_url={}", llm.url)]);
    let mut c = client(&mesh).await;
    let mut s = c.answer(request(30_000, 0)).await.unwrap().into_inner();
    let first = s.message().await.unwrap().expect("a first event");
    assert!(matches!(first.event, Some(Event::Citations(_))));
    // Wait until the model is streaming to answer-svc, then go away.
    let t = Instant::now();
    while !matches!(s.message().await.unwrap().and_then(|e| e.event), Some(Event::Token(_))) {
        assert!(t.elapsed() < Duration::from_secs(10), "no token streamed");
    }
    drop(s);
    drop(c);
    let t = Instant::now();
    while !llm.seen.client_closed.load(std::sync::atomic::Ordering::SeqCst) {
        assert!(t.elapsed() < Duration::from_secs(5), "the model server still streams 5 s after the client left");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A loopback URL where nothing listens (a model server that is down).
fn dead_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", l.local_addr().unwrap())
}

fn garbage(status: &'static str, content_type: &'static str, body: &str) -> Behaviour {
    Behaviour::Respond { status, content_type, body: body.to_string() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_language_model_that_is_down_or_answers_garbage_leaves_the_retrieved_code_within_budget() {
    let (_tmp, data) = indexed_shop();
    let sse_garbage = ModelServer::start(garbage("200 OK", "text/event-stream", "data: {\"choices\": [oops\n\n")).await;
    let html_500 = ModelServer::start(garbage("500 Internal Server Error", "text/html", "<html>boom</html>")).await;
    let not_json = ModelServer::start(garbage("200 OK", "application/json", "\u{0}\u{1}garbage")).await;
    let cases = [
        ("down", dead_url(), "synthesis_failed"),
        ("sse garbage", sse_garbage.url.clone(), "synthesis_interrupted"),
        ("http 500", html_500.url.clone(), "synthesis_failed"),
        ("not an event stream", not_json.url.clone(), "synthesis_failed"),
    ];
    let mesh = Mesh::start(&data);
    for (what, url, want) in cases {
        let answer_svc = mesh.another_answer(&data, &[format!("answer.llm_url={url}")]);
        let ch = Channel::from_shared(format!("http://{}", answer_svc.addr)).unwrap().connect().await.unwrap();
        let mut c = AnswerServiceClient::new(ch);
        answer_all(&mut c, request(5_000, 0)).await; // warm up
        let (evs, took) = answer_all(&mut c, request(2_000, 0)).await;
        assert!(took <= Duration::from_millis(2_100), "{what}: answer took {took:?} on a 2000 ms budget");
        let got = limits(&evs);
        assert!(got.iter().any(|l| l == want || l.starts_with("synthesis_")), "{what}: {got:?}");
        assert!(!cited(&evs).is_empty(), "{what}");
        assert_eq!(trace(&evs).synthesizer, "extractive", "{what}");
        let tokens = answer_text(&evs);
        assert!(tokens.contains("[1] shop/"), "{what}: the retrieved code is the answer: {tokens}");
        assert!(!tokens.contains("oops") && !tokens.contains("boom"), "{what}: garbage reached the answer: {tokens}");
        eprintln!("language model {what}: {got:?} in {took:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reranker_that_is_down_or_answers_garbage_leaves_fusion_order() {
    let (_tmp, data) = indexed_shop();
    let bad_index = ModelServer::start(garbage(
        "200 OK",
        "application/json",
        r#"{"results":[{"index":999,"relevance_score":1.0},{"index":0,"relevance_score":0.5}]}"#,
    ))
    .await;
    let not_json = ModelServer::start(garbage("200 OK", "application/json", "<<not json>>")).await;
    let nan = ModelServer::start(garbage(
        "200 OK",
        "application/json",
        r#"{"results":[{"index":0,"relevance_score":"NaN"}]}"#,
    ))
    .await;
    let cases = [
        ("down", dead_url()),
        ("index out of range", bad_index.url.clone()),
        ("not json", not_json.url.clone()),
        ("bad score", nan.url.clone()),
    ];
    let mesh = Mesh::start(&data);
    let mut plain = client(&mesh).await;
    let fusion = fusion_order(&mut plain, 3).await;
    for (what, url) in cases {
        let answer_svc = mesh.another_answer(&data, &[format!("answer.rerank_url={url}")]);
        let ch = Channel::from_shared(format!("http://{}", answer_svc.addr)).unwrap().connect().await.unwrap();
        let mut c = AnswerServiceClient::new(ch);
        let (evs, took) = answer_all(&mut c, request(2_000, 10)).await;
        assert!(took <= Duration::from_millis(2_100), "{what}: {took:?}");
        assert!(limits(&evs).contains(&"rerank_unavailable".to_string()), "{what}: {:?}", limits(&evs));
        assert_eq!(cited(&evs), fusion, "{what}: fusion order is kept when the reranker fails");
        assert_eq!(trace(&evs).reranker, "fusion", "{what}");
        eprintln!("reranker {what}: rerank_unavailable, fusion order kept, {took:?}");
    }
}
