//! The mesh as a hostile caller meets it: tokens and repo confinement, a service token between
//! the services, load shedding past the limits, and thousands of generated malformed requests
//! across every RPC (typed and raw bytes), after which every service is still healthy.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut};
use codeintel_e2e::{fixture, index, Mesh, Proc};
use codeintel_proto::v1::answer_service_client::AnswerServiceClient;
use codeintel_proto::v1::lexical_service_client::LexicalServiceClient;
use codeintel_proto::v1::navigation_service_client::NavigationServiceClient;
use codeintel_proto::v1::vector_service_client::VectorServiceClient;
use codeintel_proto::v1::{
    AnswerRequest, FileRequest, GetScopeRequest, InfoRequest, RetrieveRequest, Scope, SearchMode, SearchRequest,
    SetScopeRequest, SymbolRequest,
};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic::Code;

async fn channel(addr: &str) -> Channel {
    Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap()
}

fn with_meta<T>(msg: T, meta: &[(&'static str, &str)]) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    for (k, v) in meta {
        r.metadata_mut().insert(*k, v.parse().unwrap());
    }
    r
}

fn search(query: &str, scope: Option<Scope>) -> SearchRequest {
    SearchRequest { query: query.into(), scope, top_k: 10, mode: SearchMode::Hybrid as i32, rerank: false }
}

fn repos(r: &[&str]) -> Option<Scope> {
    Some(Scope { repos: r.iter().map(|s| s.to_string()).collect(), ..Default::default() })
}

/// Two repos (the `shop` fixture under two names) in a fresh data root.
fn two_repos() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    index(&fixture("shop"), "shop", &data);
    index(&fixture("shop"), "store", &data);
    (tmp, data)
}

fn sha256_hex(s: &str) -> String {
    // The same hash `codeintel token hash` prints.
    codeintel_server::admission::token_hash(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_confine_each_caller_to_its_repos_and_the_backends_answer_only_answer_svc() {
    let (tmp, data) = two_repos();
    let tokens = tmp.path().join("tokens.toml");
    std::fs::write(
        &tokens,
        format!(
            "[[tokens]]\nname = \"ci\"\nsha256 = \"{}\"\nrepos = [\"shop\"]\n\n[[tokens]]\nname = \"ops\"\nsha256 = \"{}\"\n",
            sha256_hex("ci-token-1"),
            sha256_hex("ops-token-2")
        ),
    )
    .unwrap();
    let mesh = Mesh::start_all(
        &data,
        &["auth.service_token=mesh-secret".to_string()],
        &[format!("auth.tokens_file={}", tokens.display())],
    );
    let mut c = AnswerServiceClient::new(channel(&mesh.answer.addr).await);

    // No token, a wrong one: UNAUTHENTICATED, the token never echoed.
    let e = c.search(search("cart total", None)).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    assert!(e.message().contains("authorization: Bearer"), "{}", e.message());
    let e = c.search(with_meta(search("cart total", None), &[("authorization", "Bearer guess")])).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    assert!(!e.message().contains("guess"));

    // ci reads shop only: an unscoped search returns nothing of store; asking for store by
    // name is PERMISSION_DENIED.
    let ci = [("authorization", "Bearer ci-token-1")];
    let hits = c.search(with_meta(search("cart total", None), &ci)).await.unwrap().into_inner().hits;
    assert!(
        !hits.is_empty() && hits.iter().all(|h| h.repo == "shop"),
        "{:?}",
        hits.iter().map(|h| &h.repo).collect::<Vec<_>>()
    );
    let e = c.search(with_meta(search("cart total", repos(&["store"])), &ci)).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("may not read repo \"store\""), "{}", e.message());
    let answer = AnswerRequest {
        query: "how is the cart total computed?".into(),
        scope: repos(&["shop", "store"]),
        top_k: 5,
        ..Default::default()
    };
    let e = c.answer(with_meta(answer, &ci)).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let scope = SetScopeRequest { scope: repos(&["store"]) };
    let e = c.set_scope(with_meta(scope, &[ci[0], ("x-session-id", "s")])).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");

    // ops reads both; its session "s" is its own (ci's session "s" is another one).
    let ops = [("authorization", "Bearer ops-token-2")];
    let hits = c.search(with_meta(search("cart total", None), &ops)).await.unwrap().into_inner().hits;
    let mut seen: Vec<&str> = hits.iter().map(|h| h.repo.as_str()).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen, ["shop", "store"]);
    c.set_scope(with_meta(SetScopeRequest { scope: repos(&["store"]) }, &[ops[0], ("x-session-id", "s")]))
        .await
        .unwrap();
    let got = c.get_scope(with_meta(GetScopeRequest {}, &[ci[0], ("x-session-id", "s")])).await.unwrap().into_inner();
    assert_eq!(got.scope, None, "ci must not see ops's session");
    let hits = c
        .search(with_meta(search("cart total", None), &[ops[0], ("x-session-id", "s")]))
        .await
        .unwrap()
        .into_inner()
        .hits;
    assert!(!hits.is_empty() && hits.iter().all(|h| h.repo == "store"));
    // ci's unscoped search through its own session "s" still sees only shop.
    let hits = c
        .search(with_meta(search("cart total", None), &[ci[0], ("x-session-id", "s")]))
        .await
        .unwrap()
        .into_inner()
        .hits;
    assert!(!hits.is_empty() && hits.iter().all(|h| h.repo == "shop"));

    // The backends refuse callers without the service token, and answer to it.
    let mut v = VectorServiceClient::new(channel(&mesh.vector.addr).await);
    let e = v.info(InfoRequest {}).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    assert!(e.message().contains("only answer-svc"), "{}", e.message());
    v.info(with_meta(InfoRequest {}, &[("authorization", "Bearer mesh-secret")])).await.unwrap();
    let mut l = LexicalServiceClient::new(channel(&mesh.lexical.addr).await);
    let req = RetrieveRequest { query: "cart".into(), scope: None, top_k: 5, exact_symbol: String::new() };
    assert_eq!(l.search(req).await.unwrap_err().code(), Code::Unauthenticated);
    // Health stays open (probes carry no token).
    let mut h = tonic_health::pb::health_client::HealthClient::new(channel(&mesh.vector.addr).await);
    h.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.unwrap();
    // Refusals are counted.
    assert!(mesh.vector.metrics().contains("codeintel_admission_refused_total{reason=\"unauthenticated\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_its_slots_and_queue_a_service_refuses_at_once_with_a_retry_hint_then_recovers() {
    let (_tmp, data) = two_repos();
    let mesh = Mesh::start_with(
        &data,
        &[
            "limits.max_concurrent=1".to_string(),
            "limits.max_queue=0".to_string(),
            "limits.retry_after_ms=150".to_string(),
        ],
    );
    let ch = channel(&mesh.answer.addr).await;
    // Warm up (first query embedding).
    AnswerServiceClient::new(ch.clone()).search(search("cart total", None)).await.unwrap();
    let t = Instant::now();
    let calls: Vec<_> = (0..24)
        .map(|i| {
            let mut c = AnswerServiceClient::new(ch.clone());
            tokio::spawn(async move {
                let started = Instant::now();
                let r = c.search(search(&format!("compute the cart total {i}"), None)).await;
                (r, started.elapsed())
            })
        })
        .collect();
    let (mut ok, mut refused) = (0, 0);
    for call in calls {
        let (r, took) = call.await.unwrap();
        match r {
            Ok(_) => ok += 1,
            Err(e) => {
                assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
                assert!(e.message().contains("server busy"), "{}", e.message());
                assert_eq!(e.metadata().get("grpc-retry-pushback-ms").map(|v| v.to_str().unwrap()), Some("150"));
                assert!(took < Duration::from_secs(2), "a refusal must come at once, took {took:?}");
                refused += 1;
            }
        }
    }
    assert!(ok >= 1 && refused >= 1, "ok {ok}, refused {refused} in {:?}", t.elapsed());
    // Recovered: one at a time, every request is served.
    let mut c = AnswerServiceClient::new(ch);
    for _ in 0..5 {
        c.search(search("cart total", None)).await.unwrap();
    }
    let m = mesh.answer.metrics();
    assert!(m.contains("codeintel_admission_refused_total{reason=\"overload\""), "{m}");
    assert!(m.contains("rpc=\"Search\"") && m.contains("code=\"ResourceExhausted\""));
}

/// Raw bytes as a gRPC message: lets the test send what no generated client would.
#[derive(Clone, Default)]
struct Raw;

struct RawEnc;
struct RawDec;

impl Encoder for RawEnc {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let mut out = vec![0; src.remaining()];
        src.copy_to_slice(&mut out);
        Ok(Some(out))
    }
}

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEnc;
    type Decoder = RawDec;
    fn encoder(&mut self) -> RawEnc {
        RawEnc
    }
    fn decoder(&mut self) -> RawDec {
        RawDec
    }
}

/// A small deterministic generator (splitmix64), so a failure reproduces.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    /// A hostile string and whether it alone makes a query invalid.
    fn query(&mut self) -> (String, bool) {
        match self.below(8) {
            0 => (String::new(), true),
            1 => (" \t\n ".into(), true),
            2 => ("x".repeat(8193 + self.below(3 << 20) as usize), true),
            3 => ("q".repeat(8192), false),
            4 => ("../../etc/passwd \u{0} \u{202e} 💥".into(), false),
            5 => (String::from_utf8_lossy(&self.bytes(64)).into_owned(), false),
            6 => ("fn ".to_string() + &"(".repeat(200), false),
            _ => ("cart total".into(), false),
        }
    }
    fn top_k(&mut self) -> (u32, bool) {
        match self.below(6) {
            0 => (0, true),
            1 => (1001, true),
            2 => (u32::MAX, true),
            3 => (1000, false),
            _ => (1 + self.below(20) as u32, false),
        }
    }
    fn scope(&mut self) -> (Option<Scope>, bool) {
        let mut s = Scope::default();
        let bad = match self.below(10) {
            0 => return (None, false),
            1 => {
                s.include_globs = vec!["src/[".into()];
                true
            }
            2 => {
                s.include_globs = vec!["*.rs".into(); 65 + self.below(2000) as usize];
                true
            }
            3 => {
                s.exclude_globs = vec!["a/".repeat(300)];
                true
            }
            4 => {
                s.repos = vec!["../shop".into()];
                true
            }
            5 => {
                s.repos = vec!["r".repeat(129)];
                true
            }
            6 => {
                s.languages = vec!["rust".into(); 33];
                true
            }
            7 => {
                s.repos = vec!["nope".into()];
                true
            }
            8 => {
                s.include_globs = vec!["**/*.py".into()];
                s.languages = vec!["PYTHON".into()];
                false
            }
            _ => {
                s.repos = vec!["shop".into()];
                false
            }
        };
        (Some(s), bad)
    }
}

/// Reads a response stream to its end: Ok, or the status it failed with.
async fn drain<T>(mut s: tonic::Streaming<T>) -> Result<(), tonic::Status> {
    while s.message().await?.is_some() {}
    Ok(())
}

type Tally = BTreeMap<(&'static str, String), usize>;

fn record(tally: &mut Tally, rpc: &'static str, must_fail: bool, r: Result<(), tonic::Status>) {
    let code = match &r {
        Ok(()) => Code::Ok,
        Err(s) => s.code(),
    };
    *tally.entry((rpc, format!("{code:?}"))).or_default() += 1;
    if let Err(s) = &r {
        assert!(
            !matches!(s.code(), Code::Internal | Code::Unknown | Code::Unavailable | Code::DeadlineExceeded),
            "{rpc}: {:?} {}",
            s.code(),
            &s.message()[..s.message().len().min(300)]
        );
        assert!(!s.message().is_empty(), "{rpc}: {:?} without a reason", s.code());
        assert!(s.message().len() < 1024, "{rpc}: a {} byte message echoes the input", s.message().len());
    }
    if must_fail {
        let s = r.as_ref().err().unwrap_or_else(|| panic!("{rpc}: an invalid request was accepted"));
        assert_eq!(s.code(), Code::InvalidArgument, "{rpc}: {}", s.message());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_malformed_requests_get_precise_codes_and_leave_every_service_healthy() {
    let (_tmp, data) = two_repos();
    let mesh = Mesh::start(&data);
    let procs: [&Proc; 4] = [&mesh.vector, &mesh.lexical, &mesh.hydrate, &mesh.answer];
    let answer_ch = channel(&mesh.answer.addr).await;
    let (vector_ch, lexical_ch, hydrate_ch) =
        (channel(&mesh.vector.addr).await, channel(&mesh.lexical.addr).await, channel(&mesh.hydrate.addr).await);
    let mut a = AnswerServiceClient::new(answer_ch.clone());
    let mut v = VectorServiceClient::new(vector_ch.clone());
    let mut l = LexicalServiceClient::new(lexical_ch.clone());
    let mut nav = NavigationServiceClient::new(answer_ch.clone());
    let mut g = Gen(0x5EED_2026);
    let mut tally = Tally::new();
    let raw_paths = [
        "/codeintel.v1.AnswerService/Search",
        "/codeintel.v1.AnswerService/Answer",
        "/codeintel.v1.AnswerService/SetScope",
        "/codeintel.v1.NavigationService/FindReferences",
        "/codeintel.v1.NavigationService/ReadFile",
        "/codeintel.v1.VectorService/Search",
        "/codeintel.v1.LexicalService/Search",
        "/codeintel.v1.LexicalService/SparseSearch",
        "/arrow.flight.protocol.FlightService/DoGet",
    ];
    let t = Instant::now();
    let n = 10_000;
    for i in 0..n {
        let (query, bad_q) = g.query();
        let (top_k, bad_k) = g.top_k();
        let (scope, bad_s) = g.scope();
        let must_fail = bad_q || bad_k || bad_s;
        match i % 10 {
            0 => {
                let req = SearchRequest { top_k, ..search(&query, scope) };
                let r = a.search(req).await.map(|_| ());
                record(&mut tally, "answer.Search", must_fail, r);
            }
            1 => {
                let budget = *g.pick(&[0u32, 5_000, 600_000, 600_001, u32::MAX]);
                let bad_b = budget > 600_000;
                let req = AnswerRequest {
                    query,
                    scope,
                    top_k,
                    rerank_top_n: *g.pick(&[0u32, 5, 1001]),
                    time_budget_ms: budget,
                };
                let bad_r = req.rerank_top_n > 1000;
                let mut r = with_meta(req, &[]);
                r.set_timeout(Duration::from_secs(5));
                // A valid request streams; a stream that fails inside must fail precisely.
                let res = match a.answer(r).await {
                    Ok(stream) => drain(stream.into_inner()).await,
                    Err(e) => Err(e),
                };
                record(&mut tally, "answer.Answer", must_fail || bad_b || bad_r, res);
            }
            2 => {
                let session = match g.below(4) {
                    0 => "".to_string(),
                    1 => "s".repeat(257 + g.below(8000) as usize),
                    _ => format!("fuzz-{}", g.below(50)),
                };
                let bad_id = session.is_empty() || session.len() > 256;
                let mut r = tonic::Request::new(SetScopeRequest { scope: scope.clone() });
                if !session.is_empty() {
                    r.metadata_mut().insert("x-session-id", session.parse().unwrap());
                }
                let res = a.set_scope(r).await.map(|_| ());
                record(&mut tally, "answer.SetScope", bad_id || bad_s, res);
                let mut r = tonic::Request::new(GetScopeRequest {});
                if !session.is_empty() {
                    r.metadata_mut().insert("x-session-id", session.parse().unwrap());
                }
                record(&mut tally, "answer.GetScope", bad_id, a.get_scope(r).await.map(|_| ()));
            }
            3 => {
                let exact = if g.below(5) == 0 { "E".repeat(513) } else { String::new() };
                let bad_e = !exact.is_empty();
                let req = RetrieveRequest { query, scope, top_k, exact_symbol: exact };
                record(&mut tally, "vector.Search", must_fail || bad_e, v.search(req).await.map(|_| ()));
            }
            4 => {
                let exact = if g.below(5) == 0 { "E".repeat(513) } else { String::new() };
                let bad_e = !exact.is_empty();
                let req = RetrieveRequest { query, scope, top_k, exact_symbol: exact };
                record(&mut tally, "lexical.Search", must_fail || bad_e, l.search(req).await.map(|_| ()));
            }
            5 => {
                let req = RetrieveRequest { query, scope, top_k, exact_symbol: String::new() };
                let r = l.sparse_search(req).await.map(|_| ());
                // Sparse documents are optional: FAILED_PRECONDITION is precise when absent.
                record(&mut tally, "lexical.SparseSearch", must_fail, r);
            }
            6 => {
                // Flight tickets: garbage, huge, JSON of the wrong shape, ids past the bound.
                let ticket: Vec<u8> = match g.below(5) {
                    0 => {
                        let n = 1 + g.below(512) as usize;
                        g.bytes(n)
                    }
                    1 => b"{\"chunk_ids\": []}".to_vec(),
                    2 => format!("{{\"chunk_ids\": [{}]}}", vec!["1"; 1001].join(",")).into_bytes(),
                    3 => b"{\"chunk_ids\": [1], \"repos\": [\"../x\"]}".to_vec(),
                    _ => b"[1,2,3]".to_vec(),
                };
                // Ticket { bytes ticket = 1 }.
                let mut msg = vec![0x0a];
                let mut len = ticket.len();
                while len >= 0x80 {
                    msg.push((len as u8) | 0x80);
                    len >>= 7;
                }
                msg.push(len as u8);
                msg.extend(ticket);
                let mut grpc = tonic::client::Grpc::new(hydrate_ch.clone());
                grpc.ready().await.unwrap();
                let path =
                    tonic::codegen::http::uri::PathAndQuery::from_static("/arrow.flight.protocol.FlightService/DoGet");
                let res = match grpc.server_streaming(tonic::Request::new(msg), path, Raw).await {
                    Ok(s) => drain(s.into_inner()).await,
                    Err(e) => Err(e),
                };
                record(&mut tally, "hydrate.DoGet", true, res);
            }
            7 => {
                // Navigation: symbols, paths, repos and limits at and past their bounds.
                let (symbol, bad_sym) = *g.pick(&[
                    ("", true),
                    ("   ", true),
                    ("a b(", true),
                    ("::", true),
                    ("Cart.compute_total", false),
                    ("compute_total", false),
                    ("Cart::compute_total", false),
                    ("no_such_symbol", false),
                ]);
                let long = "x".repeat(513 + g.below(4000) as usize);
                let (symbol, bad_sym) = if g.below(8) == 0 { (long.as_str(), true) } else { (symbol, bad_sym) };
                let (repos, bad_repo) = g.pick(&[(vec![], false), (vec!["shop"], false), (vec!["../x"], true)]).clone();
                let limit = *g.pick(&[0u32, 5, 1000, 1001, u32::MAX]);
                let req = SymbolRequest {
                    symbol: symbol.to_string(),
                    repos: repos.iter().map(|r| r.to_string()).collect(),
                    limit,
                };
                let bad = bad_sym || bad_repo || limit > 1000;
                if g.below(2) == 0 {
                    record(&mut tally, "nav.FindDefinitions", bad, nav.find_definitions(req).await.map(|_| ()));
                } else {
                    record(&mut tally, "nav.FindReferences", bad, nav.find_references(req).await.map(|_| ()));
                }
                let (path, bad_path) = *g.pick(&[
                    ("src/shop/cart.py", false),
                    ("src/missing.py", false),
                    ("../../etc/passwd", true),
                    ("/etc/passwd", true),
                    ("", true),
                    ("src/../../x", true),
                ]);
                let (repo, bad_r) = *g.pick(&[("shop", false), ("", true), ("../x", true)]);
                let (start, end) = *g.pick(&[(0u32, 0u32), (1, 5), (5, 1), (100_000, 0), (u32::MAX, u32::MAX)]);
                // A range past the end or backwards is refused; a missing file is NOT_FOUND.
                let bad_range = path == "src/shop/cart.py" && (start > 19 || (end != 0 && end < start));
                let req = FileRequest { repo: repo.into(), path: path.into(), start_line: start, end_line: end };
                let must = bad_path || bad_r || bad_range;
                if g.below(2) == 0 {
                    record(&mut tally, "nav.ReadFile", must, nav.read_file(req).await.map(|_| ()));
                } else {
                    record(&mut tally, "nav.Outline", bad_path || bad_r, nav.outline(req).await.map(|_| ()));
                }
            }
            _ => {
                // Raw bytes that are not the RPC's message.
                let path = *g.pick(&raw_paths);
                let ch = if path.contains("AnswerService") || path.contains("NavigationService") {
                    answer_ch.clone()
                } else if path.contains("Vector") {
                    vector_ch.clone()
                } else if path.contains("Lexical") {
                    lexical_ch.clone()
                } else {
                    hydrate_ch.clone()
                };
                // Bytes that cannot decode as the message: a field with a wire type of 7.
                let mut body = vec![0x0f];
                let n = g.below(256) as usize;
                body.extend(g.bytes(n));
                let mut grpc = tonic::client::Grpc::new(ch);
                grpc.ready().await.unwrap();
                let p = tonic::codegen::http::uri::PathAndQuery::from_static(path);
                let res = if path.ends_with("/Answer") || path.ends_with("/DoGet") {
                    match grpc.server_streaming(tonic::Request::new(body), p, Raw).await {
                        Ok(s) => s.into_inner().message().await.map(|_| ()),
                        Err(e) => Err(e),
                    }
                } else {
                    grpc.unary(tonic::Request::new(body), p, Raw).await.map(|_| ())
                };
                record(&mut tally, "raw bytes", true, res);
            }
        }
    }
    let took = t.elapsed();
    let total: usize = tally.values().sum();
    assert!(total >= n, "{total} requests recorded");
    eprintln!("{total} generated requests in {:.1} s; by rpc and code:", took.as_secs_f64());
    for ((rpc, code), count) in &tally {
        eprintln!("  {rpc:<22} {code:<18} {count}");
    }
    // Every service is still up, healthy, and answering normally.
    for p in procs {
        let mut h = tonic_health::pb::health_client::HealthClient::new(channel(&p.addr).await);
        let st = h.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.unwrap().into_inner();
        assert_eq!(st.status, 1, "{} is not SERVING after the fuzzing", p.name);
    }
    let hits = a.search(search("compute the cart total", None)).await.unwrap().into_inner().hits;
    assert!(!hits.is_empty());
}

/// A TLS channel to `addr` trusting `certs/ca.pem`, presenting the mesh certificate or none.
async fn tls_channel(
    addr: &str,
    certs: &std::path::Path,
    client_cert: bool,
) -> Result<Channel, tonic::transport::Error> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let ca = Certificate::from_pem(std::fs::read(certs.join("ca.pem")).unwrap());
    let mut tls = ClientTlsConfig::new().ca_certificate(ca).domain_name("localhost");
    if client_cert {
        let id = Identity::from_pem(
            std::fs::read(certs.join("mesh.pem")).unwrap(),
            std::fs::read(certs.join("mesh-key.pem")).unwrap(),
        );
        tls = tls.identity(id);
    }
    Channel::from_shared(format!("https://{addr}")).unwrap().tls_config(tls)?.connect().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_between_the_services_refuses_plaintext_and_peers_without_a_certificate() {
    let (tmp, data) = two_repos();
    let certs = tmp.path().join("certs");
    let script = codeintel_e2e::manifest_dir().join("../../scripts/certs.sh");
    let out = std::process::Command::new("bash").arg(&script).arg(&certs).output().unwrap();
    assert!(out.status.success(), "make certs failed: {}", String::from_utf8_lossy(&out.stderr));
    let tls = [
        format!("tls.cert={}", certs.join("mesh.pem").display()),
        format!("tls.key={}", certs.join("mesh-key.pem").display()),
        format!("tls.ca={}", certs.join("ca.pem").display()),
    ];
    // answer-svc reaches the backends over mutual TLS (its URLs say http://; TLS is implied).
    let mesh = Mesh::start_all(&data, &tls, &[]);
    let ch = tls_channel(&mesh.answer.addr, &certs, true).await.unwrap();
    let hits = AnswerServiceClient::new(ch).search(search("cart total", None)).await.unwrap().into_inner().hits;
    assert!(!hits.is_empty(), "search over TLS found nothing");
    // A backend with a client certificate signed by the CA answers.
    let ch = tls_channel(&mesh.vector.addr, &certs, true).await.unwrap();
    VectorServiceClient::new(ch).info(InfoRequest {}).await.unwrap();
    // Without a client certificate, or in plaintext, it does not.
    let no_cert = match tls_channel(&mesh.vector.addr, &certs, false).await {
        Err(_) => true,
        Ok(ch) => VectorServiceClient::new(ch).info(InfoRequest {}).await.is_err(),
    };
    assert!(no_cert, "a peer without a client certificate was served");
    let plain = match Channel::from_shared(format!("http://{}", mesh.vector.addr)).unwrap().connect().await {
        Err(_) => true,
        Ok(ch) => VectorServiceClient::new(ch).info(InfoRequest {}).await.is_err(),
    };
    assert!(plain, "a plaintext peer was served");

    // The HTTP endpoints serve the same certificate: /ready and /metrics over TLS to a client
    // that trusts the CA (Prometheus and probes present no client certificate by default), and
    // nothing to a plaintext client.
    let http = mesh.vector.http.clone().expect("a metrics address");
    let ca = reqwest::Certificate::from_pem(&std::fs::read(certs.join("ca.pem")).unwrap()).unwrap();
    let https = reqwest::Client::builder().add_root_certificate(ca).build().unwrap();
    let ready = https.get(format!("https://{http}/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(ready.json::<serde_json::Value>().await.unwrap()["status"], "ready");
    let metrics = https.get(format!("https://{http}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("codeintel_requests_total"), "{metrics}");
    let plain = reqwest::get(format!("http://{http}/ready")).await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success(), "plaintext /ready was answered");
}
