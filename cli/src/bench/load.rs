//! `codeintel bench load`: N concurrent clients against a running answer-svc, each sending
//! `Search` or `Answer` requests back to back for a fixed time, at each concurrency level in
//! turn: queries per second, latency percentiles of the requests that succeeded, and failures by
//! gRPC status code.
//!
//! Every client of a level shares one of `connections` tonic channels (HTTP/2 connections).
//! Requests started during the warm-up are not counted; once the measured time is over no
//! request is started, and those in flight finish (within their deadline) and are counted.
//! An `Answer` is consumed to the end of its stream; it is *degraded* when its `limits` event
//! carries a code other than `extractive` (which says no language model is configured, not that
//! anything was lost), as is a `Search` response with such a limit.

use crate::client::AnswerClient;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use codeintel_core::proto::v1::answer_event::Event;
use codeintel_core::proto::v1::{AnswerRequest, SearchRequest};
use serde::Serialize;
use tonic::Code;

/// Which RPC the clients send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Rpc {
    /// `Answer`, its stream read to the end.
    Answer,
    /// `Search` (retrieval only).
    Search,
}

/// Used round-robin when no `--queries` file is given: generic code questions and identifiers,
/// not tied to any benchmark or repository.
pub const BUILTIN_QUERIES: &[&str] = &[
    "where is the configuration file parsed",
    "how are failed requests retried with backoff",
    "parse command line arguments",
    "open a database connection",
    "read a file line by line",
    "how is the cache invalidated",
    "serialize a struct to json",
    "where is the http request timeout set",
    "how are log messages formatted",
    "spawn a background task",
    "hash a password",
    "handle an incoming request",
    "unit tests for the parser",
    "convert a string to an integer",
    "main",
    "new",
    "parse",
    "Config",
    "Error",
    "from_str",
];

/// Limit codes that do not make a response degraded.
pub const NOT_DEGRADED: &[&str] = &["extractive"];

pub struct LoadOptions {
    pub rpc: Rpc,
    /// answer-svc `host:port` (or `http://host:port`).
    pub addr: String,
    pub concurrency: Vec<usize>,
    /// Measured time at each level.
    pub duration: Duration,
    /// Time at each level before measuring.
    pub warmup: Duration,
    pub queries: Vec<String>,
    pub top_k: u32,
    /// `SearchMode` of `Search` requests.
    pub mode: i32,
    /// `Search` requests ask for reranking (`Answer` reranks whenever the server has a reranker).
    pub rerank: bool,
    /// Deadline of each request (sent as `grpc-timeout`, and enforced here on the whole call).
    pub timeout: Duration,
    /// HTTP/2 connections the clients of a level share.
    pub connections: usize,
    /// TLS of the connections (`tls.*`).
    pub tls: codeintel_config::TlsConfig,
    /// Wait the server's retry hint after a RESOURCE_EXHAUSTED (false: retry at once).
    pub honour_pushback: bool,
    /// Metrics endpoints (`host:port` or a URL) whose resident memory is sampled while the load
    /// runs (a soak), every `sample_every`.
    pub memory_from: Vec<String>,
    pub sample_every: Duration,
}

/// The resident memory of each sampled service at one moment of the run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemorySample {
    /// Seconds since the first level started.
    pub t_s: f64,
    /// Service (its metrics' `service` label, else the endpoint) -> resident MiB; absent when
    /// the endpoint did not answer.
    pub rss_mib: BTreeMap<String, f64>,
}

/// The `service` label and value of `codeintel_process_resident_memory_bytes` in a Prometheus
/// text exposition.
pub fn resident_bytes(metrics: &str) -> Option<(Option<String>, f64)> {
    metrics.lines().find_map(|l| {
        let rest = l.strip_prefix("codeintel_process_resident_memory_bytes")?;
        let (labels, value) = match rest.strip_prefix('{') {
            Some(r) => r.split_once('}')?,
            None => ("", rest),
        };
        let service = labels
            .split(',')
            .find_map(|kv| kv.trim().strip_prefix("service=\"").and_then(|v| v.strip_suffix('"')))
            .map(String::from);
        Some((service, value.trim().parse().ok()?))
    })
}

/// One row per sample: seconds, then each service's resident MiB.
pub fn memory_table(samples: &[MemorySample]) -> String {
    let names: std::collections::BTreeSet<&String> = samples.iter().flat_map(|s| s.rss_mib.keys()).collect();
    let mut out = format!("{:>8}", "t s");
    for n in &names {
        let _ = write!(out, "  {:>12}", format!("{n} MiB"));
    }
    out.push('\n');
    for s in samples {
        let _ = write!(out, "{:>8.0}", s.t_s);
        for n in &names {
            match s.rss_mib.get(*n) {
                Some(v) => {
                    let _ = write!(out, "  {v:>12.1}");
                }
                None => {
                    let _ = write!(out, "  {:>12}", "-");
                }
            }
        }
        out.push('\n');
    }
    out
}

/// Samples the resident memory behind `endpoints` every `every` until `stop` is set.
async fn sample_memory(
    endpoints: Vec<String>,
    every: Duration,
    started: Instant,
    stop: Arc<std::sync::atomic::AtomicBool>,
    http: reqwest::Client,
    scheme: &'static str,
) -> Vec<MemorySample> {
    let mut out = Vec::new();
    loop {
        let mut rss_mib = BTreeMap::new();
        for ep in &endpoints {
            let url = if ep.contains("://") {
                format!("{}/metrics", ep.trim_end_matches('/'))
            } else {
                format!("{scheme}://{ep}/metrics")
            };
            let text = match http.get(&url).send().await {
                Ok(r) => r.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if let Some((service, bytes)) = resident_bytes(&text) {
                rss_mib.insert(service.unwrap_or_else(|| ep.clone()), bytes / (1024.0 * 1024.0));
            }
        }
        let s = MemorySample { t_s: started.elapsed().as_secs_f64(), rss_mib };
        eprintln!(
            "memory at {:.0} s: {}",
            s.t_s,
            s.rss_mib.iter().map(|(k, v)| format!("{k} {v:.1} MiB")).collect::<Vec<_>>().join(", ")
        );
        out.push(s);
        let until = Instant::now() + every;
        while Instant::now() < until {
            if stop.load(Ordering::SeqCst) {
                return out;
            }
            tokio::time::sleep(Duration::from_millis(100).min(every)).await;
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    Degraded,
    Failed(Code),
}

/// One measured request.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Request sent -> response (or the end of the stream, or the failure).
    pub latency_ms: f64,
    pub outcome: Outcome,
    /// Limit codes the response carried, each once.
    pub limits: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LevelFigures {
    pub concurrency: usize,
    pub requests: usize,
    pub completed: usize,
    pub degraded: usize,
    pub failed: usize,
    /// From the end of the warm-up until the last counted request ended.
    pub seconds: f64,
    /// Completed and degraded requests per second.
    pub qps: f64,
    /// Latency of completed and degraded requests.
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Failed requests by gRPC status code (`RESOURCE_EXHAUSTED`).
    pub errors: BTreeMap<String, usize>,
    /// Responses carrying each limit code.
    pub limits: BTreeMap<String, usize>,
}

#[derive(Debug, Serialize)]
pub struct LoadFigures {
    pub rpc: Rpc,
    pub addr: String,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub timeout_ms: u64,
    pub top_k: u32,
    pub connections: usize,
    pub queries: usize,
    pub levels: Vec<LevelFigures>,
    /// Resident memory of the `memory_from` services through the run (empty without them).
    pub memory: Vec<MemorySample>,
}

/// The queries of a JSON-lines file (`query`, as `codeintel eval` reads them; other fields are
/// ignored); blank lines are skipped.
pub fn parse_queries(text: &str) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).with_context(|| format!("line {} is not JSON", n + 1))?;
        let q = v["query"].as_str().with_context(|| format!("line {} has no `query` string", n + 1))?;
        out.push(q.to_string());
    }
    anyhow::ensure!(!out.is_empty(), "no queries");
    Ok(out)
}

/// The `q` quantile (0..=1) of ascending `sorted` by nearest rank; 0 when empty.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (sorted.len() as f64 * q).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Completed, or degraded by one of `limits`.
pub fn classify(limits: &[String]) -> Outcome {
    if limits.iter().all(|c| NOT_DEGRADED.contains(&c.as_str())) {
        Outcome::Completed
    } else {
        Outcome::Degraded
    }
}

/// The status code as gRPC spells it.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The figures of one level from its samples; `elapsed` from the end of the warm-up until the
/// last request ended.
pub fn summarize(concurrency: usize, samples: &[Sample], elapsed: Duration) -> LevelFigures {
    let mut ok: Vec<f64> =
        samples.iter().filter(|s| !matches!(s.outcome, Outcome::Failed(_))).map(|s| s.latency_ms).collect();
    ok.sort_by(f64::total_cmp);
    let (mut completed, mut degraded, mut failed) = (0usize, 0usize, 0usize);
    let mut errors = BTreeMap::new();
    let mut limits = BTreeMap::new();
    for s in samples {
        match s.outcome {
            Outcome::Completed => completed += 1,
            Outcome::Degraded => degraded += 1,
            Outcome::Failed(code) => {
                failed += 1;
                *errors.entry(code_name(code).to_string()).or_insert(0) += 1;
            }
        }
        for l in &s.limits {
            *limits.entry(l.clone()).or_insert(0) += 1;
        }
    }
    let seconds = elapsed.as_secs_f64();
    LevelFigures {
        concurrency,
        requests: samples.len(),
        completed,
        degraded,
        failed,
        seconds,
        qps: if seconds > 0.0 { (completed + degraded) as f64 / seconds } else { 0.0 },
        p50_ms: percentile(&ok, 0.50),
        p95_ms: percentile(&ok, 0.95),
        p99_ms: percentile(&ok, 0.99),
        max_ms: ok.last().copied().unwrap_or(0.0),
        errors,
        limits,
    }
}

fn counts(m: &BTreeMap<String, usize>) -> String {
    if m.is_empty() {
        return "-".to_string();
    }
    m.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
}

/// An aligned table, one row per level (numbers right-aligned), then the limit codes per level.
pub fn table(levels: &[LevelFigures]) -> String {
    let header = [
        "concurrency",
        "requests",
        "completed",
        "degraded",
        "failed",
        "queries/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "errors",
    ];
    let rows: Vec<Vec<String>> = levels
        .iter()
        .map(|l| {
            vec![
                l.concurrency.to_string(),
                l.requests.to_string(),
                l.completed.to_string(),
                l.degraded.to_string(),
                l.failed.to_string(),
                format!("{:.1}", l.qps),
                format!("{:.1}", l.p50_ms),
                format!("{:.1}", l.p95_ms),
                format!("{:.1}", l.p99_ms),
                format!("{:.1}", l.max_ms),
                counts(&l.errors),
            ]
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let last = header.len() - 1;
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(widths.iter().copied()).enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            if i == last {
                s.push_str(c); // the errors column: left-aligned, not padded
            } else {
                let _ = write!(s, "{c:>w$}");
            }
        }
        s
    };
    let head: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    let mut out = line(head.as_slice());
    out.push('\n');
    for r in &rows {
        out.push_str(&line(r.as_slice()));
        out.push('\n');
    }
    for l in levels.iter().filter(|l| !l.limits.is_empty()) {
        let _ = writeln!(out, "limits at concurrency {}: {}", l.concurrency, counts(&l.limits));
    }
    out
}

/// What every client of a run shares.
struct Job {
    rpc: Rpc,
    queries: Vec<String>,
    top_k: u32,
    mode: i32,
    rerank: bool,
    timeout: Duration,
    /// Wait the server's `grpc-retry-pushback-ms` after a refusal.
    honour_pushback: bool,
    /// The next query, round-robin over all clients.
    next: AtomicUsize,
}

/// The retry hint of a RESOURCE_EXHAUSTED status, milliseconds.
fn pushback(status: &tonic::Status) -> Option<u64> {
    if status.code() != Code::ResourceExhausted {
        return None;
    }
    status.metadata().get("grpc-retry-pushback-ms")?.to_str().ok()?.parse().ok()
}

/// One request: the limit codes of its response (each once), or its status.
async fn call(client: &mut AnswerClient, job: &Job, query: &str) -> Result<Vec<String>, tonic::Status> {
    let mut codes = match job.rpc {
        Rpc::Search => {
            let mut req = tonic::Request::new(SearchRequest {
                query: query.to_string(),
                scope: None,
                top_k: job.top_k,
                mode: job.mode,
                rerank: job.rerank,
            });
            req.set_timeout(job.timeout);
            let resp = client.search(req).await?.into_inner();
            resp.limits.into_iter().map(|l| l.code).collect::<Vec<String>>()
        }
        Rpc::Answer => {
            let mut req = tonic::Request::new(AnswerRequest {
                query: query.to_string(),
                scope: None,
                top_k: job.top_k,
                rerank_top_n: 0,
                time_budget_ms: 0,
            });
            req.set_timeout(job.timeout);
            let mut stream = client.answer(req).await?.into_inner();
            let mut codes = Vec::new();
            while let Some(ev) = stream.message().await? {
                if let Some(Event::Limits(l)) = ev.event {
                    codes.extend(l.limits.into_iter().map(|l| l.code));
                }
            }
            codes
        }
    };
    codes.sort();
    codes.dedup();
    Ok(codes)
}

/// One client: requests back to back until `end`; those started from `measure_from` on are
/// returned.
async fn client_loop(mut client: AnswerClient, job: Arc<Job>, measure_from: Instant, end: Instant) -> Vec<Sample> {
    let mut out = Vec::new();
    loop {
        let start = Instant::now();
        if start >= end {
            return out;
        }
        let i = job.next.fetch_add(1, Ordering::Relaxed) % job.queries.len();
        let r = tokio::time::timeout(job.timeout, call(&mut client, &job, &job.queries[i])).await;
        let latency_ms = start.elapsed().as_secs_f64() * 1e3;
        // A refusal's retry hint is honoured, as a well-behaved client would (unless the run
        // asks for clients that hammer).
        if let Ok(Err(status)) = &r {
            if let Some(ms) = pushback(status).filter(|_| job.honour_pushback) {
                tokio::time::sleep(Duration::from_millis(ms).min(end.saturating_duration_since(Instant::now()))).await;
            }
        }
        if start < measure_from {
            continue;
        }
        let (outcome, limits) = match r {
            Ok(Ok(limits)) => (classify(&limits), limits),
            Ok(Err(status)) => (Outcome::Failed(status.code()), Vec::new()),
            Err(_) => (Outcome::Failed(Code::DeadlineExceeded), Vec::new()),
        };
        out.push(Sample { latency_ms, outcome, limits });
    }
}

/// Runs every level in turn against the answer-svc at `opts.addr`.
pub async fn load(opts: &LoadOptions) -> anyhow::Result<LoadFigures> {
    anyhow::ensure!(!opts.queries.is_empty(), "no queries");
    anyhow::ensure!(!opts.concurrency.is_empty(), "no concurrency level");
    anyhow::ensure!(opts.concurrency.iter().all(|c| *c > 0), "every concurrency level must be at least 1");
    anyhow::ensure!(opts.connections > 0, "--connections must be at least 1");
    let mut clients = Vec::new();
    for _ in 0..opts.connections {
        clients.push(crate::client::connect(&opts.addr, &opts.tls).await?);
    }
    let job = Arc::new(Job {
        rpc: opts.rpc,
        queries: opts.queries.clone(),
        top_k: opts.top_k,
        mode: opts.mode,
        rerank: opts.rerank,
        timeout: opts.timeout,
        honour_pushback: opts.honour_pushback,
        next: AtomicUsize::new(0),
    });
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Metrics endpoints serve TLS where the services do (`tls.cert`); the CA is `tls.ca`.
    let http = codeintel_models::http_client(&opts.tls)
        .map_err(anyhow::Error::msg)?
        .timeout(Duration::from_secs(5))
        .build()?;
    let scheme = if opts.tls.calls() { "https" } else { "http" };
    let sampler = (!opts.memory_from.is_empty()).then(|| {
        tokio::spawn(sample_memory(
            opts.memory_from.clone(),
            opts.sample_every,
            Instant::now(),
            stop.clone(),
            http,
            scheme,
        ))
    });
    let mut levels = Vec::new();
    for &concurrency in &opts.concurrency {
        eprintln!(
            "concurrency {concurrency}: warm-up {:.1} s, then {:.1} s measured",
            opts.warmup.as_secs_f64(),
            opts.duration.as_secs_f64()
        );
        let measure_from = Instant::now() + opts.warmup;
        let end = measure_from + opts.duration;
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..concurrency {
            tasks.spawn(client_loop(clients[n % clients.len()].clone(), job.clone(), measure_from, end));
        }
        let mut samples = Vec::new();
        while let Some(r) = tasks.join_next().await {
            samples.extend(r.context("a load client panicked")?);
        }
        let level = summarize(concurrency, &samples, Instant::now().saturating_duration_since(measure_from));
        eprintln!(
            "concurrency {concurrency}: {} requests, {:.1} queries/s, {} failed",
            level.requests, level.qps, level.failed
        );
        levels.push(level);
    }
    stop.store(true, Ordering::SeqCst);
    let memory = match sampler {
        Some(t) => t.await.context("the memory sampler panicked")?,
        None => Vec::new(),
    };
    Ok(LoadFigures {
        rpc: opts.rpc,
        addr: opts.addr.clone(),
        duration_s: opts.duration.as_secs_f64(),
        warmup_s: opts.warmup.as_secs_f64(),
        timeout_ms: opts.timeout.as_millis() as u64,
        top_k: opts.top_k,
        connections: opts.connections,
        queries: opts.queries.len(),
        levels,
        memory,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ms: f64, outcome: Outcome, limits: &[&str]) -> Sample {
        Sample { latency_ms: ms, outcome, limits: limits.iter().map(|s| s.to_string()).collect() }
    }

    #[test]
    fn resident_memory_is_read_from_the_process_collector_and_tabled() {
        let text = "# HELP codeintel_process_resident_memory_bytes Resident memory size in bytes.\n\
                    codeintel_process_resident_memory_bytes{service=\"vector\"} 1.048576e+08\n\
                    codeintel_process_open_fds{service=\"vector\"} 12\n";
        assert_eq!(resident_bytes(text), Some((Some("vector".to_string()), 104_857_600.0)));
        assert_eq!(resident_bytes("codeintel_process_resident_memory_bytes 2048\n"), Some((None, 2048.0)));
        assert_eq!(resident_bytes("codeintel_requests_total 3\n"), None);
        let samples = vec![
            MemorySample { t_s: 0.0, rss_mib: BTreeMap::from([("answer".into(), 20.0), ("vector".into(), 100.0)]) },
            MemorySample { t_s: 60.0, rss_mib: BTreeMap::from([("vector".into(), 100.5)]) },
        ];
        let t = memory_table(&samples);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(lines[0].contains("answer MiB") && lines[0].contains("vector MiB"), "{t}");
        assert!(lines[1].trim_end().ends_with("100.0") && lines[1].contains("20.0"), "{t}");
        assert!(lines[2].contains('-') && lines[2].contains("100.5"), "{t}");
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.50), 50.0);
        assert_eq!(percentile(&v, 0.95), 95.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&v, 1.0), 100.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&[7.5], 0.99), 7.5);
        assert_eq!(percentile(&[], 0.5), 0.0);
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 0.5), 2.0);
    }

    #[test]
    fn extractive_alone_is_not_degraded() {
        assert_eq!(classify(&[]), Outcome::Completed);
        assert_eq!(classify(&["extractive".to_string()]), Outcome::Completed);
        assert_eq!(classify(&["extractive".to_string(), "dense_timeout".to_string()]), Outcome::Degraded);
    }

    #[test]
    fn summarize_counts_outcomes_and_times_only_successes() {
        let samples = vec![
            sample(10.0, Outcome::Completed, &["extractive"]),
            sample(30.0, Outcome::Degraded, &["dense_timeout", "extractive"]),
            sample(20.0, Outcome::Completed, &[]),
            sample(5000.0, Outcome::Failed(Code::ResourceExhausted), &[]),
            sample(1.0, Outcome::Failed(Code::ResourceExhausted), &[]),
            sample(10000.0, Outcome::Failed(Code::DeadlineExceeded), &[]),
        ];
        let f = summarize(8, &samples, Duration::from_secs(2));
        assert_eq!((f.concurrency, f.requests, f.completed, f.degraded, f.failed), (8, 6, 2, 1, 3));
        assert_eq!(f.qps, 1.5);
        assert_eq!((f.p50_ms, f.p95_ms, f.p99_ms, f.max_ms), (20.0, 30.0, 30.0, 30.0));
        let errors: Vec<(&str, usize)> = f.errors.iter().map(|(k, n)| (k.as_str(), *n)).collect();
        assert_eq!(errors, [("DEADLINE_EXCEEDED", 1), ("RESOURCE_EXHAUSTED", 2)]);
        let limits: Vec<(&str, usize)> = f.limits.iter().map(|(k, n)| (k.as_str(), *n)).collect();
        assert_eq!(limits, [("dense_timeout", 1), ("extractive", 2)]);
    }

    #[test]
    fn summarize_of_nothing_is_zeros() {
        let f = summarize(1, &[], Duration::ZERO);
        assert_eq!((f.requests, f.qps, f.p50_ms, f.max_ms), (0, 0.0, 0.0, 0.0));
        assert!(f.errors.is_empty());
    }

    #[test]
    fn the_table_is_aligned_and_names_the_errors() {
        let a = summarize(1, &[sample(12.25, Outcome::Completed, &[])], Duration::from_secs(1));
        let b = summarize(
            128,
            &[
                sample(1500.0, Outcome::Completed, &[]),
                sample(2.0, Outcome::Failed(Code::ResourceExhausted), &[]),
                sample(2.0, Outcome::Failed(Code::Unavailable), &[]),
            ],
            Duration::from_secs(1),
        );
        let t = table(&[a, b]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(lines[0].starts_with("concurrency  requests"), "{t}");
        assert!(lines[1].ends_with("  -"), "{t}");
        assert!(lines[2].ends_with("  RESOURCE_EXHAUSTED 1, UNAVAILABLE 1"), "{t}");
        assert!(lines[2].contains("1500.0"), "{t}");
        // Every right-aligned column ends at the same place on every line.
        // (A column ends where a character is followed by the two-space separator.)
        let ends = |l: &str| -> Vec<usize> {
            let head = &l[..l.rfind("  ").expect("columns")];
            let b = head.as_bytes();
            (0..b.len()).filter(|&i| b[i] != b' ' && (i + 1 == b.len() || head[i + 1..].starts_with("  "))).collect()
        };
        assert_eq!(ends(lines[0]).len(), 10, "{t}");
        assert_eq!(ends(lines[0]), ends(lines[1]), "{t}");
        assert_eq!(ends(lines[1]), ends(lines[2]), "{t}");
    }

    #[test]
    fn the_table_lists_limits_per_level() {
        let a = summarize(4, &[sample(1.0, Outcome::Completed, &["extractive"])], Duration::from_secs(1));
        let t = table(&[a]);
        assert!(t.ends_with("limits at concurrency 4: extractive 1\n"), "{t}");
    }

    #[test]
    fn queries_from_json_lines() {
        let text =
            "{\"id\": \"q1\", \"query\": \"parse a cookie\"}\n\n{\"query\": \"TokenBucket\", \"lang\": \"rust\"}\n";
        assert_eq!(parse_queries(text).unwrap(), ["parse a cookie", "TokenBucket"]);
        let e = parse_queries("{\"id\": \"q1\"}\n").unwrap_err();
        assert!(e.to_string().contains("line 1 has no `query`"), "{e}");
        assert!(parse_queries("not json\n").unwrap_err().to_string().contains("line 1 is not JSON"));
        assert!(parse_queries("\n").is_err());
    }

    #[test]
    fn every_code_has_its_grpc_name() {
        assert_eq!(code_name(Code::ResourceExhausted), "RESOURCE_EXHAUSTED");
        assert_eq!(code_name(Code::DeadlineExceeded), "DEADLINE_EXCEEDED");
        assert_eq!(code_name(Code::from_i32(16)), "UNAUTHENTICATED");
    }

    #[test]
    fn the_builtin_queries_are_enough_and_distinct() {
        let set: std::collections::HashSet<&str> = BUILTIN_QUERIES.iter().copied().collect();
        assert_eq!(set.len(), BUILTIN_QUERIES.len());
        assert!(BUILTIN_QUERIES.len() >= 20);
    }
}
