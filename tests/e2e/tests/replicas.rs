//! Several endpoints per backend, with the real binaries on loopback: replicas that share the
//! load and stand in for one another when one is killed, and shards that each serve some repos.

use std::path::Path;
use std::time::{Duration, Instant};

use codeintel_e2e::{answer_over, fixture, index, start, Proc};
use codeintel_proto::v1::answer_event::Event;
use codeintel_proto::v1::answer_service_client::AnswerServiceClient;
use codeintel_proto::v1::{AnswerRequest, Scope, SearchRequest};
use tonic::transport::Channel;

const QUERY: &str = "how is the cart total computed with tax";

/// `Search` requests a service answered OK, from its `/metrics`.
fn searches(p: &Proc) -> u64 {
    p.metrics()
        .lines()
        .filter(|l| l.contains("requests_total{") && l.contains("rpc=\"Search\"") && l.contains("code=\"OK\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn answer_svc(data: &Path, vector: &[&Proc], lexical: &[&Proc], hydrate: &Proc) -> Proc {
    let opts = ["answer.discovery_ms=200".to_string(), "answer.eject_ms=1000".to_string()];
    answer_over(data, vector, lexical, &[hydrate], &opts)
}

async fn client(p: &Proc) -> AnswerServiceClient<Channel> {
    let ch = Channel::from_shared(format!("http://{}", p.addr)).unwrap().connect().await.unwrap();
    AnswerServiceClient::new(ch)
}

/// One streamed answer: Ok(limit codes) when it ended with citations, Err(why) otherwise.
async fn one_answer(mut c: AnswerServiceClient<Channel>) -> Result<Vec<String>, String> {
    let req = AnswerRequest { query: QUERY.into(), scope: None, top_k: 3, rerank_top_n: 0, time_budget_ms: 10_000 };
    let mut s = c.answer(req).await.map_err(|e| e.to_string())?.into_inner();
    let (mut limits, mut cited) = (Vec::new(), false);
    while let Some(ev) = s.message().await.map_err(|e| e.to_string())? {
        match ev.event {
            Some(Event::Limits(l)) => limits.extend(l.limits.into_iter().map(|l| l.code)),
            Some(Event::Citations(c)) => cited = !c.citations.is_empty(),
            _ => {}
        }
    }
    if cited {
        Ok(limits)
    } else {
        Err("no citations".into())
    }
}

/// What `n` answers, `concurrency` at a time, came to: (latencies, failures, degraded answers).
struct Run {
    ms: Vec<f64>,
    failed: Vec<String>,
    degraded: Vec<Vec<String>>,
}

impl Run {
    fn p95(&self) -> f64 {
        let mut v = self.ms.clone();
        v.sort_by(f64::total_cmp);
        v[((v.len() as f64 * 0.95).ceil() as usize).clamp(1, v.len()) - 1]
    }
}

async fn run(c: &AnswerServiceClient<Channel>, n: usize, concurrency: usize, healthy: &[String]) -> Run {
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers = (0..concurrency).map(|_| {
        let (c, next, healthy) = (c.clone(), next.clone(), healthy.to_vec());
        tokio::spawn(async move {
            let mut out = Vec::new();
            while next.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < n {
                let t = Instant::now();
                let r = one_answer(c.clone()).await;
                out.push((t.elapsed().as_secs_f64() * 1e3, r.map(|l| (l != healthy).then_some(l))));
            }
            out
        })
    });
    let mut r = Run { ms: Vec::new(), failed: Vec::new(), degraded: Vec::new() };
    for w in futures::future::join_all(workers).await {
        for (ms, res) in w.unwrap() {
            r.ms.push(ms);
            match res {
                Ok(None) => {}
                Ok(Some(limits)) => r.degraded.push(limits),
                Err(e) => r.failed.push(e),
            }
        }
    }
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_share_the_load_and_a_killed_one_costs_no_answer() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    index(&fixture("shop"), "shop", &data);
    let v = [start("vector-svc", &data, &[]), start("vector-svc", &data, &[])];
    let l = [start("lexical-svc", &data, &[]), start("lexical-svc", &data, &[])];
    let h = start("hydrate-svc", &data, &[]);
    let mut answer = answer_svc(&data, &[&v[0], &v[1]], &[&l[0], &l[1]], &h);
    let c = client(&answer).await;
    // What a healthy answer carries (the extractive notice, no language model here).
    let healthy = one_answer(c.clone()).await.expect("a first answer");
    assert!(!healthy.iter().any(|l| l.contains("dense") || l.contains("lexical")), "{healthy:?}");

    let before = run(&c, 40, 4, &healthy).await;
    assert!(before.failed.is_empty() && before.degraded.is_empty(), "{:?} {:?}", before.failed, before.degraded);
    let (v0, v1, l0, l1) = (searches(&v[0]), searches(&v[1]), searches(&l[0]), searches(&l[1]));
    eprintln!("searches while both are up: vector {v0} + {v1}, lexical {l0} + {l1}");
    for (name, n) in
        [("vector replica 0", v0), ("vector replica 1", v1), ("lexical replica 0", l0), ("lexical replica 1", l1)]
    {
        // 41 answers, each one dense and one lexical search: neither replica idles.
        assert!(n >= 8, "{name} answered only {n} searches: {v0} {v1} {l0} {l1}");
    }

    // Kill one replica of each while answers are streaming.
    let [mut v0p, v1p] = v;
    let [mut l0p, l1p] = l;
    let load = {
        let (c, healthy) = (c.clone(), healthy.clone());
        tokio::spawn(async move { run(&c, 80, 4, &healthy).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    v0p.child.kill().unwrap(); // SIGKILL
    l0p.child.kill().unwrap();
    let mut during = load.await.unwrap();
    // Answers can be fast enough (query cache, rows in memory) for the load to end before the
    // kill lands: 40 more after it, so the dead endpoints are surely met.
    let after = run(&c, 40, 4, &healthy).await;
    during.ms.extend(after.ms);
    during.failed.extend(after.failed);
    during.degraded.extend(after.degraded);
    eprintln!(
        "answers before the kill: {} (p95 {:.0} ms); during and after it: {} (p95 {:.0} ms), failed {}, degraded {}",
        before.ms.len(),
        before.p95(),
        during.ms.len(),
        during.p95(),
        during.failed.len(),
        during.degraded.len()
    );
    assert_eq!(during.ms.len(), 120);
    assert!(during.failed.is_empty(), "failed answers: {:?}", during.failed);
    assert!(during.degraded.is_empty(), "degraded answers: {:?}", during.degraded);
    let metrics = answer.metrics();
    assert!(metrics.contains("backend_ejections_total{"), "the killed endpoints were ejected:\n{metrics}");
    assert!(searches(&v1p) > v1 && searches(&l1p) > l1, "the survivors took the traffic");
    answer.child.kill().unwrap();
    drop((v0p, l0p));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_route_each_repo_to_the_instance_that_serves_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    index(&fixture("shop"), "alpha", &data);
    index(&fixture("shop"), "beta", &data);
    let serve = |svc: &str, glob: &str| {
        let key = if svc == "vector-svc" { "vector.repos" } else { "lexical.repos" };
        start(svc, &data, &["--set".into(), format!("{key}={glob}")])
    };
    let (va, vb) = (serve("vector-svc", "alph*"), serve("vector-svc", "beta"));
    let (la, lb) = (serve("lexical-svc", "alph*"), serve("lexical-svc", "beta"));
    let h = start("hydrate-svc", &data, &[]);
    let answer = answer_svc(&data, &[&va, &vb], &[&la, &lb], &h);
    let mut c = client(&answer).await;
    let search = |repos: &[&str]| SearchRequest {
        query: QUERY.into(),
        scope: Some(Scope { repos: repos.iter().map(|r| r.to_string()).collect(), ..Default::default() }),
        top_k: 20,
        mode: 0,
        rerank: false,
    };

    let before = (searches(&va), searches(&vb));
    let r = c.search(search(&["alpha"])).await.unwrap().into_inner();
    assert!(!r.hits.is_empty() && r.hits.iter().all(|h| h.repo == "alpha"), "{:?}", r.hits);
    assert!(r.limits.iter().all(|l| !l.code.starts_with("dense") && !l.code.starts_with("lexical")), "{:?}", r.limits);
    // The count is taken when the response ends, which may be just after the client has it.
    let t = Instant::now();
    while searches(&va) < before.0 + 1 && t.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(searches(&va), before.0 + 1, "alpha's shard answered");
    assert_eq!(searches(&vb), before.1, "beta's shard was not asked");

    // No scope: every shard is asked, the hits merged.
    let r = c.search(search(&[])).await.unwrap().into_inner();
    let repos: std::collections::BTreeSet<&str> = r.hits.iter().map(|h| h.repo.as_str()).collect();
    assert_eq!(repos.into_iter().collect::<Vec<_>>(), ["alpha", "beta"], "{:?}", r.hits);
    let r = c.search(search(&["beta", "alpha"])).await.unwrap().into_inner();
    assert!(r.hits.iter().any(|h| h.repo == "beta") && r.hits.iter().any(|h| h.repo == "alpha"));

    // A repo no shard serves is an error naming it.
    let e = c.search(search(&["gamma"])).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("\"gamma\" is not served by any") && e.message().contains("alpha, beta"), "{e:?}");
}
