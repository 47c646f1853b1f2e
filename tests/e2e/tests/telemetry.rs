//! OpenTelemetry across the mesh: every service exports spans over OTLP/HTTP to a real receiver
//! on loopback, and one `Answer` is one trace, continued from the caller's `traceparent`, with
//! each backend's request span a child of the answer-svc span that called it.

use std::time::{Duration, Instant};

use codeintel_e2e::otlp::{Collector, ReceivedSpan};
use codeintel_e2e::{indexed_shop, Mesh};
use codeintel_proto::v1::answer_service_client::AnswerServiceClient;
use codeintel_proto::v1::AnswerRequest;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_answer_is_one_trace_across_the_mesh() {
    let collector = Collector::start().await;
    let (_tmp, data) = indexed_shop();
    let common = vec![format!("telemetry.otlp_endpoint={}", collector.url), "telemetry.export_interval_ms=200".into()];
    let mesh = Mesh::start_all(&data, &common, &[]);

    let mut c = AnswerServiceClient::connect(format!("http://{}", mesh.answer.addr)).await.unwrap();
    let mut req = tonic::Request::new(AnswerRequest {
        query: "how is the shopping cart total computed".into(),
        scope: None,
        top_k: 3,
        rerank_top_n: 0,
        time_budget_ms: 10_000,
    });
    req.metadata_mut().insert("traceparent", format!("00-{TRACE}-{CALLER_SPAN}-01").parse().unwrap());
    let mut stream = c.answer(req).await.unwrap().into_inner();
    while stream.message().await.unwrap().is_some() {}

    // Spans arrive in batches (every 200 ms here); wait for the four services' request spans.
    let want = [
        ("vector-svc", "VectorService/Search", "retrieve.dense"),
        ("lexical-svc", "LexicalService/Search", "retrieve.lexical"),
        ("lexical-svc", "LexicalService/SparseSearch", "retrieve.sparse"),
        ("hydrate-svc", "FlightService/DoGet", "hydrate"),
    ];
    let started = Instant::now();
    let ours = |spans: &[ReceivedSpan]| -> Vec<ReceivedSpan> {
        spans.iter().filter(|s| hex(&s.trace_id) == TRACE).cloned().collect()
    };
    let mut spans = Vec::new();
    while started.elapsed() < Duration::from_secs(15) {
        spans = ours(&collector.spans());
        let done = spans.iter().any(|s| s.service == "answer-svc" && s.name == "AnswerService/Answer")
            && want.iter().all(|(svc, name, _)| spans.iter().any(|s| s.service == *svc && s.name == *name));
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let names: Vec<String> = spans.iter().map(|s| format!("{}:{}", s.service, s.name)).collect();
    let find = |svc: &str, name: &str| {
        spans
            .iter()
            .find(|s| s.service == svc && s.name == name)
            .unwrap_or_else(|| panic!("no span {svc}:{name} in trace {TRACE}; got {names:?}"))
    };
    // The caller's trace continues: answer-svc's request span is the child of the caller's span.
    let root = find("answer-svc", "AnswerService/Answer");
    assert_eq!(hex(&root.parent_span_id), CALLER_SPAN);
    // Each backend call is a child of the answer-svc span that made it, which is inside the answer.
    for (svc, name, caller) in want {
        let server = find(svc, name);
        let client = find("answer-svc", caller);
        assert_eq!(hex(&server.parent_span_id), hex(&client.span_id), "{svc}:{name} is not a child of {caller}");
        assert_eq!(hex(&client.parent_span_id), hex(&root.span_id), "{caller} is not inside the answer span");
    }
}
